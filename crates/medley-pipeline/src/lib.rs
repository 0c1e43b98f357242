//! The index pipeline: discover files, hash, probe, decode, encode, pool, and write rows,
//! with every per-file failure typed by stage and recorded instead of stopping the batch.

mod clock;
mod config;
mod discover;
mod encoders;
mod error;
mod index;
mod query;
mod segments;
mod sids;

pub use config::{DEFAULT_PIPELINE, FusionConfig, PipelineConfig, SegmentBy, SegmentsConfig};
pub use discover::{Discovery, discover, shard};
pub use encoders::{Encoders, MusicStage};
pub use error::{FileError, Stage};
pub use index::{Event, IndexOptions, Indexer, Progress, Summary, hash_file};
pub use query::{
    ItemVectorSet, QueryError, SIMILAR_COLUMNS, search_hybrid, search_segments, search_text, similar_items,
    stored_vectors,
};
pub use sids::{SidAssigner, SidError, TrainedSids, train_sids};
