//! `medley serve`: an HTTP API over the index pipeline. Uploads and paths under `--root`
//! folders become jobs in a persistent queue; one supervised worker indexes them in batches
//! (one table commit per batch) with the models loaded once; search, similar, music-for and
//! eval answer from the same table, with the same JSON as the CLI's `--json`.
//!
//! The API is described in `openapi.json` (served at `/openapi.json`).

mod api;
mod background;
mod embed;
mod jobs;
mod metrics;
mod pool;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use medley_pipeline::{Encoders, Indexer, TextTowers};
use medley_store::Store;

pub use background::{DEFAULT_INDEX_NICE, at_nice};
pub use jobs::{Job, JobQueue, MAX_ATTEMPTS, Status};
pub use worker::{WorkerState, WorkerStatus};

/// The OpenAPI 3.1 description of every route, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    /// Bearer token every `/v1` route and `/metrics` require; `None` leaves them open
    /// (allowed on loopback only).
    pub token: Option<String>,
    /// Folders whose files may be submitted by path (canonical).
    pub roots: Vec<PathBuf>,
    pub max_upload_bytes: u64,
    /// Holds `uploads/` (by content hash), `jobs/` (the queue) and `tmp/` (uploads in flight).
    pub state_dir: PathBuf,
    /// Jobs taken into one index run (one commit).
    pub batch: usize,
    /// Finished (done or failed) jobs are forgotten, and their files removed, this long after
    /// they finished.
    pub keep_finished: Duration,
    /// Bytes of text-search vectors (`semantic`, `clip`, `clap`, `bridge`, in that order)
    /// kept in memory for unfiltered searches; 0 sends every search to the table.
    pub search_memory_bytes: usize,
    /// The nice value the index worker's threads run at (0..=19; 0: the routes' priority).
    /// Its models should be loaded at the same value ([`at_nice`]).
    pub index_nice: i32,
}

/// The vector columns text searches rank by, in the order they are kept in memory.
const SEARCHED_COLUMNS: [&str; 4] = [
    medley_store::SEARCH_COLUMN,
    medley_store::CLIP_COLUMN,
    medley_store::CLAP_COLUMN,
    medley_store::LEGACY_SEARCH_COLUMN,
];

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0} without a token: set --token or MEDLEY_TOKEN, or bind a loopback address")]
    OpenWithoutToken(SocketAddr),
    #[error("--index-nice {0}: must be between 0 and 19")]
    IndexNice(i32),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("opening the database for the routes' reads: {0}")]
    Store(#[from] medley_store::StoreError),
    #[error("starting the query embedder: {0}")]
    Embedder(#[from] medley_models::ModelError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

impl ServeConfig {
    /// Problems found before starting: a non-loopback address without a token.
    pub fn check(&self) -> Result<(), ServeError> {
        if self.token.is_none() && !self.bind.ip().is_loopback() {
            return Err(ServeError::OpenWithoutToken(self.bind));
        }
        if !(0..=19).contains(&self.index_nice) {
            return Err(ServeError::IndexNice(self.index_nice));
        }
        Ok(())
    }

    fn uploads(&self) -> PathBuf {
        self.state_dir.join("uploads")
    }

    fn tmp(&self) -> PathBuf {
        self.state_dir.join("tmp")
    }
}

/// Everything the handlers and the worker share.
pub(crate) struct App {
    config: ServeConfig,
    jobs: JobQueue,
    indexer: Indexer,
    /// What the routes read: the same tables opened again for reading, moved to the latest
    /// version after each batch the worker indexes (so readers never share the worker's handles).
    reader: Store,
    encoders: Arc<Encoders>,
    /// Where the index worker runs: below the routes in CPU priority.
    background: background::Background,
    /// Search texts into the text space: cached, batched across requests, off the async workers.
    queries: embed::QueryEmbedder,
    /// The same into the image-text space, when the pipeline has an image-text model.
    clip_queries: Option<embed::QueryEmbedder>,
    /// The same into the audio-text space, when the pipeline has an audio-text model.
    clap_queries: Option<embed::QueryEmbedder>,
    /// Search answers for the table as the worker last committed it.
    answers: embed::Answers,
    /// Where the routes' table queries run, one per core at a time.
    pool: pool::QueryPool,
    metrics: metrics::Metrics,
    worker: worker::Health,
    /// Set on shutdown: the worker finishes its batch and takes no other.
    stop: tokio::sync::watch::Sender<bool>,
}

type AppState = Arc<App>;

/// Serve until `shutdown` resolves, then stop accepting, let the worker finish the batch in
/// progress (queued jobs stay queued for the next start) and return.
pub async fn run(
    config: ServeConfig,
    encoders: Arc<Encoders>,
    towers: TextTowers,
    indexer: Indexer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.check()?;
    let (uploads, tmp) = (config.uploads(), config.tmp());
    tokio::task::spawn_blocking(move || prepare_state(&uploads, &tmp)).await.map_err(|e| ServeError::Io {
        what: "preparing the state folder".into(),
        source: std::io::Error::other(e),
    })??;
    let jobs_dir = config.state_dir.join("jobs");
    let jobs =
        JobQueue::open(&jobs_dir).await.map_err(io_err(format!("reading the job queue in {}", jobs_dir.display())))?;
    jobs.prune(config.keep_finished)
        .await
        .map_err(io_err(format!("pruning finished jobs in {}", jobs_dir.display())))?;
    let requeued = jobs.queued();
    let listener =
        tokio::net::TcpListener::bind(config.bind).await.map_err(io_err(format!("listening on {}", config.bind)))?;
    let addr = listener.local_addr().map_err(io_err("reading the bound address"))?;
    let reader = Store::open_existing(indexer.store().uri()).await.map_err(ServeError::Store)?;
    if config.search_memory_bytes > 0 {
        let started = std::time::Instant::now();
        for kept in reader.keep_in_memory(&SEARCHED_COLUMNS, config.search_memory_bytes).await? {
            tracing::info!(
                "searching {} from memory: {} rows in {} lists (loaded in {:.1} s)",
                kept.column,
                kept.rows,
                kept.lists,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let embedder = |text: &Arc<medley_models::TextEncoder>| embed::QueryEmbedder::new(text.clone());
    let background =
        background::Background::new(config.index_nice).map_err(io_err("starting the index worker's threads"))?;
    let app = Arc::new(App {
        config,
        jobs,
        indexer,
        reader,
        queries: embedder(&towers.text)?,
        clip_queries: towers.clip.as_ref().map(embedder).transpose()?,
        clap_queries: towers.clap.as_ref().map(embedder).transpose()?,
        background,
        answers: embed::Answers::default(),
        pool: pool::QueryPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .map_err(io_err("starting the query threads"))?,
        encoders,
        metrics: metrics::Metrics::default(),
        worker: worker::Health::default(),
        stop: tokio::sync::watch::Sender::new(false),
    });
    let worker = tokio::spawn(worker::supervise(app.clone()));
    let pruner = tokio::spawn(prune_finished(app.clone()));
    tracing::info!("medley serve: listening on http://{addr} ({requeued} jobs queued from before)");
    let router = api::router(app.clone());
    let served = axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
    tracing::info!("medley serve: shutting down; finishing the batch in progress");
    app.stop.send_replace(true);
    let _ = worker.await;
    pruner.abort();
    served.map_err(io_err("serving"))
}

/// Resolves once the server is stopping. (The receiver's guard is dropped inside, so a task
/// waiting on it in a `select!` stays `Send`.)
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone, which is a stop too.
    let _ = stop.wait_for(|s| *s).await;
}

/// Create `uploads/` and `tmp/`, and empty `tmp/` (uploads a previous process was receiving
/// when it stopped).
fn prepare_state(uploads: &std::path::Path, tmp: &std::path::Path) -> Result<(), ServeError> {
    for dir in [uploads, tmp] {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    if let Ok(entries) = std::fs::read_dir(tmp) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// How often finished jobs are looked at for pruning: a tenth of their age, between a second
/// and an hour.
fn prune_every(keep: Duration) -> Duration {
    (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Forget finished jobs older than `--keep-finished-for`, periodically, until the server stops.
async fn prune_finished(app: AppState) {
    let keep = app.config.keep_finished;
    let mut stop = app.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(prune_every(keep)) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        if let Err(e) = app.jobs.prune(keep).await {
            tracing::error!("pruning finished jobs in {}: {e}", app.config.state_dir.join("jobs").display());
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_looks_often_enough_for_the_age() {
        assert_eq!(prune_every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(prune_every(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(prune_every(Duration::from_secs(7 * 86_400)), Duration::from_secs(3600));
    }
}
