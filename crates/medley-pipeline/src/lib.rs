//! The index pipeline: discover files, hash, probe, decode, encode, pool, and write rows,
//! with every per-file failure typed by stage and recorded instead of stopping the batch.

mod accumulate;
mod clock;
mod config;
mod discover;
mod encoders;
mod error;
mod eval;
mod item;
mod models;
mod music;
mod numerals;
mod options;
mod pool;
mod query;
mod run;
mod runtime_config;
mod segments;
mod sid_ops;
mod sids;
mod summary;
mod text_space;

pub use config::{
    ConfigError, DEFAULT_PIPELINE, FusionConfig, FusionForm, PipelineConfig, SegmentBy, SegmentMode, SegmentsConfig,
};
pub use discover::{DiscoverError, Discoverer, Discovery, discover, shard};
pub use encoders::{Encoders, MusicStage, TextTowers};
pub use error::{FileError, Stage};
pub use eval::{EvalError, EvalQuery, EvalReport, check_queries, evaluate, parse_eval_tsv};
pub use item::hash_file;
pub use models::{Caption, ModelSet, Music, Sound, Speech, Tagged, Text, Vision};
pub use music::{music_for, music_prompt, music_query};
pub use options::IndexOptions;
pub use query::{
    DualQuery, ItemVectorSet, QueryEncoders, QueryError, SIMILAR_COLUMNS, resolve_vectors, search_hybrid,
    search_segments, search_segments_spaces, search_spaces, search_text, short_id, similar_items, stored_vectors,
};
pub use query::{search_segments_vector, search_vector};
pub use run::{Indexer, Progress};
pub use runtime_config::{DeviceChoice, HwAccelChoice, ResolvedRuntime, RuntimeConfig, UsedRuntime};
pub use sid_ops::{SidAssignment, assign_missing_sids, sid_report};
pub use sids::{SidAssigner, SidError, TrainedSids, train_sids};
pub use summary::{Event, FailureSummary, Partial, Summary};
