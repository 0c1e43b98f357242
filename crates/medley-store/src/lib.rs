//! medley's LanceDB tables: the `media` rows (one per item, keyed by content hash) and the
//! `failures` rows (one per file that could not be indexed), the `segments` rows (one per shot
//! or window of an item), the runs and the Semantic-ID tables; idempotent writes, search, and
//! export. A database this medley cannot read (another tool's, another schema version's) is a
//! typed [`StoreError`] naming the table and column, never a panic.

mod error;
mod export;
mod indexes;
mod memory;
mod open;
mod query;
mod readers;
mod rows;
mod schema;
mod segments;
mod sid;
mod staged;
mod write;

pub use error::StoreError;
pub use indexes::{SEARCH_NPROBES, SEARCH_REFINE_FACTOR, TARGET_PARTITION_ROWS, VECTOR_INDEX_MIN_ROWS, vector_index};
pub use memory::KeptColumn;
pub use open::Store;
pub use rows::{FailureRow, Label, MediaRow, RunRow, SearchHit};
pub use schema::{
    CLAP_COLUMN, CLIP_COLUMN, ClipSpace, FAILURES_TABLE, LEGACY_SEARCH_COLUMN, MEDIA_TABLE, RUNS_TABLE, SCHEMA_VERSION,
    SEARCH_COLUMN, SEGMENTS_TABLE, SID_CODEBOOKS_TABLE, SIDS_TABLE, TEXT_SPACE_COLUMNS, TableName, UnknownTable,
    VECTOR_COLUMNS, VectorDims,
};
pub use segments::{ItemSegments, SegmentRow, Span};
pub use sid::{CodebookRow, ItemVectors, SidRow, StoredCodebook};
pub use staged::{CommitOutcome, CommitTag, RunCommits, Staged};
