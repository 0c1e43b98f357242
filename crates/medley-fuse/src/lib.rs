//! Fusion of per-modality vectors into content embeddings, and Semantic IDs.
//!
//! - [`fusion`]: per-modality normalisation and weights, concatenation, PCA projection fitted on
//!   the corpus ([`Pca`], [`Fusion`], versioned), the YouTube-8M form (whitening, 8-bit).
//! - [`sid`]: residual k-means codebooks ([`train`], [`Codebook::assign`]), the TIGER
//!   uniqueness code ([`unique_suffixes`], [`SuffixCounter`]) and readable IDs ([`sid_string`]).
//! - [`pieces`]: prefix N-grams and unigram pieces of IDs for ranking models.
//! - [`ivf`]: an in-memory inverted-file index for nearest-neighbour search by inner product.
//! - [`stats`]: reconstruction error, code usage, collisions, nearest-neighbour prefix sharing.
//!
//! Vectors are `&[f32]` slices of `n x d` row-major rows throughout.

mod codes;
pub mod fusion;
pub mod ivf;
mod kernel;
mod kmeans;
mod linalg;
pub mod pieces;
pub mod sid;
pub mod stats;

pub use fusion::{ContentForm, Fusion, FusionSpec, Modality, Pca, dequantize_yt8m, quantize_yt8m};
pub use ivf::{Ivf, IvfCentres};
pub use kernel::kernel_name;
pub use pieces::{SidPieceModel, prefix_ngrams};
pub use sid::{
    Codebook, Codes, LevelReport, SuffixCounter, TrainConfig, TrainReport, parse_sid, sid_string, train,
    unique_suffixes,
};
pub use stats::{SidStats, sid_stats};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("wrong shape: {0}")]
    Shape(String),
    #[error("non-finite value in row {0}")]
    NonFinite(usize),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("unreadable: {0}")]
    Format(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unigram pieces: {0}")]
    Pieces(String),
    #[error("the item has none of the modalities")]
    NoModality,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Hex digits of a content hash naming a version of a fitted model.
pub(crate) const VERSION_DIGITS: usize = 16;
