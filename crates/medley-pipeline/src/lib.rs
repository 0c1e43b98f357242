//! The index pipeline: discover files, hash, probe, decode, encode, pool, and write rows,
//! with every per-file failure typed by stage and recorded instead of stopping the batch.

mod clock;
mod config;
mod discover;
mod encoders;
mod error;
mod item;
mod models;
mod options;
mod pool;
mod query;
mod run;
mod segments;
mod sids;
mod summary;

pub use config::{
    ConfigError, DEFAULT_PIPELINE, FusionConfig, FusionForm, PipelineConfig, SegmentBy, SegmentMode, SegmentsConfig,
};
pub use discover::{DiscoverError, Discoverer, Discovery, discover, shard};
pub use encoders::{Encoders, MusicStage};
pub use error::{FileError, Stage};
pub use item::hash_file;
pub use models::{Caption, ModelSet, Music, Sound, Speech, Tagged, Text, Vision};
pub use options::IndexOptions;
pub use query::{
    ItemVectorSet, QueryError, SIMILAR_COLUMNS, search_hybrid, search_segments, search_text, similar_items,
    stored_vectors,
};
pub use run::{Indexer, Progress};
pub use sids::{SidAssigner, SidError, TrainedSids, train_sids};
pub use summary::{Event, FailureSummary, Partial, Summary};
