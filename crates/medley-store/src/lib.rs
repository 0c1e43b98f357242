//! medley's LanceDB tables: the `media` rows (one per item, keyed by content hash) and the
//! `failures` rows (one per file that could not be indexed), the `segments` rows (one per shot
//! or window of an item), idempotent writes, and search.

mod rows;
mod schema;
mod segments;
mod sid;
mod store;

pub use rows::{FailureRow, Label, MediaRow, RunRow, SearchHit};
pub use schema::{FAILURES_TABLE, MEDIA_TABLE, RUNS_TABLE, SCHEMA_VERSION, VECTOR_COLUMNS, VectorDims};
pub use segments::{ItemSegments, SEGMENTS_TABLE, SegmentRow, Span};
pub use sid::{CodebookRow, ItemVectors, SID_CODEBOOKS_TABLE, SIDS_TABLE, SidRow, StoredCodebook};
pub use store::{SEARCH_NPROBES, SEARCH_REFINE_FACTOR, Store, StoreError, VECTOR_INDEX_MIN_ROWS, vector_index};
