//! Query texts into the text space for the search routes: a cache of recent texts in front of
//! the text encoder's dynamic batcher.
//!
//! Every search used to run the text model itself, on the async worker that took the request
//! and under the session's lock, so concurrent searches queued behind each other's model calls
//! and stalled the other requests on that worker. Now a text seen recently is answered from the
//! cache; the others join one queue that a dedicated thread runs in batches (whatever arrived
//! while the previous batch ran), and the request waits for its row on the blocking pool.
//!
//! Whole answers are cached too ([`Answers`]), per version of the table the server writes: a
//! search repeated before the worker commits again is answered without touching the table.

use std::sync::Arc;
use std::time::Duration;

use medley_models::{Batcher, ModelError, TextEncoder};

/// Texts kept (each a few hundred floats): the hot queries of a busy server fit many times.
const CACHE_TEXTS: usize = 4096;

/// Most texts in one model call. Query texts are short, so a batch of this many costs a few
/// single calls, and a burst of concurrent searches needs only a couple of calls.
const MAX_BATCH: usize = 32;

/// Why a query text could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding the query with {model}: {source}")]
    Model { model: String, source: ModelError },
    #[error("embedding the query with {model}: the batcher's task failed: {message}")]
    Task { model: String, message: String },
}

pub struct QueryEmbedder {
    model: String,
    batcher: Batcher<String, Vec<f32>>,
    cache: quick_cache::sync::Cache<String, Arc<[f32]>>,
}

impl QueryEmbedder {
    pub fn new(encoder: Arc<TextEncoder>) -> Result<Self, ModelError> {
        let model = encoder.id().to_string();
        // No wait for more texts: a batch is what queued while the previous one ran, so a lone
        // request pays nothing for batching and a burst is gathered by the model's own latency.
        let batcher = Batcher::new(MAX_BATCH, Duration::ZERO, move |texts: Vec<String>| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            encoder.encode(&refs)
        })?;
        Ok(Self { model, batcher, cache: quick_cache::sync::Cache::new(CACHE_TEXTS) })
    }

    /// The unit vector of `text` in the text space.
    ///
    /// Requests for a text already being embedded wait for that result instead of embedding it
    /// again (a burst of the same query, as when a popular search goes out, costs one row).
    pub async fn embed(&self, text: &str) -> Result<Arc<[f32]>, EmbedError> {
        let claim = match self.cache.get_value_or_guard_async(text).await {
            Ok(v) => return Ok(v),
            Err(claim) => claim,
        };
        let (batcher, owned) = (self.batcher.clone(), text.to_string());
        // The batcher's submit blocks until the batch holding this text has run.
        let vector = tokio::task::spawn_blocking(move || batcher.submit(owned))
            .await
            .map_err(|e| EmbedError::Task { model: self.model.clone(), message: e.to_string() })?
            .map_err(|source| EmbedError::Model { model: self.model.clone(), source })?;
        let vector: Arc<[f32]> = vector.into();
        // An error leaves the claim unfilled: the next waiter embeds the text itself.
        let _ = claim.insert(vector.clone());
        Ok(vector)
    }
}

/// Answers kept: a few megabytes of JSON at k = 10.
const CACHE_ANSWERS: usize = 2048;

/// What a search answer depends on besides the table: the text, `k`, items or segments.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    pub text: String,
    pub k: usize,
    pub segments: bool,
}

type AnswerGuard<'a> = quick_cache::sync::PlaceholderGuard<
    'a,
    (u64, AnswerKey),
    axum::body::Bytes,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    quick_cache::sync::DefaultLifecycle<(u64, AnswerKey), axum::body::Bytes>,
>;

/// The right to compute an answer the cache lacks; dropped unfilled (the search failed), the
/// next request waiting for the same answer gets it.
pub struct AnswerClaim<'a>(AnswerGuard<'a>);

impl AnswerClaim<'_> {
    pub fn fill(self, answer: axum::body::Bytes) {
        // Err only when the entry was replaced meanwhile, by an answer as good as this one.
        let _ = self.0.insert(answer);
    }
}

/// Search answers (their JSON) by query, for the table as the worker last committed it. The
/// worker is the only writer the server's table handles see, so bumping the generation when it
/// finishes an index run is what makes older answers unreachable (they age out of the cache).
pub struct Answers {
    generation: std::sync::atomic::AtomicU64,
    cache: quick_cache::sync::Cache<(u64, AnswerKey), axum::body::Bytes>,
}

impl Default for Answers {
    fn default() -> Self {
        Self { generation: Default::default(), cache: quick_cache::sync::Cache::new(CACHE_ANSWERS) }
    }
}

impl Answers {
    /// The generation an answer computed now belongs to: read before searching, so an answer
    /// computed while a commit lands is filed under the older generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The cached answer, or the claim to compute it: until the claim is filled or dropped,
    /// the same search from other requests waits for its answer rather than running again.
    pub async fn get_or_claim(&self, generation: u64, key: AnswerKey) -> Result<axum::body::Bytes, AnswerClaim<'_>> {
        self.cache.get_value_or_guard_async(&(generation, key)).await.map_err(AnswerClaim)
    }

    /// The table changed: answers computed before are stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}
