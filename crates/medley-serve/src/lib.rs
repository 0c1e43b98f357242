//! `medley serve`: an HTTP API over the index pipeline. Uploads and paths under `--root`
//! folders become jobs in a persistent queue; one worker indexes them in batches (one table
//! commit per batch) with the models loaded once; search and similar answer from the same
//! table, with the same hits as the CLI's `--json`.
//!
//! The API is described in `openapi.json` (served at `/openapi.json`).

mod api;
mod jobs;
mod metrics;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use medley_pipeline::{Encoders, Indexer};

pub use jobs::{Job, JobQueue, Status};

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
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0} without a token: set --token or MEDLEY_TOKEN, or bind a loopback address")]
    OpenWithoutToken(SocketAddr),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
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
    encoders: Arc<Encoders>,
    metrics: metrics::Metrics,
    /// Set on shutdown: the worker finishes its batch and takes no other.
    stopping: AtomicBool,
    stop: tokio::sync::Notify,
}

type AppState = Arc<App>;

/// Serve until `shutdown` resolves, then stop accepting, let the worker finish the batch in
/// progress (queued jobs stay queued for the next start) and return.
pub async fn run(
    config: ServeConfig,
    encoders: Arc<Encoders>,
    indexer: Indexer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.check()?;
    for dir in [config.uploads(), config.tmp()] {
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    // Uploads a previous process was receiving when it stopped.
    if let Ok(entries) = std::fs::read_dir(config.tmp()) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let jobs_dir = config.state_dir.join("jobs");
    let jobs = JobQueue::open(&jobs_dir).map_err(io_err(format!("reading the job queue in {}", jobs_dir.display())))?;
    let requeued = jobs.queued();
    let listener =
        tokio::net::TcpListener::bind(config.bind).await.map_err(io_err(format!("listening on {}", config.bind)))?;
    let addr = listener.local_addr().map_err(io_err("reading the bound address"))?;
    let app = Arc::new(App {
        config,
        jobs,
        indexer,
        encoders,
        metrics: metrics::Metrics::default(),
        stopping: AtomicBool::new(false),
        stop: tokio::sync::Notify::new(),
    });
    let worker = tokio::spawn(worker::run(app.clone()));
    eprintln!("medley serve: listening on http://{addr} ({requeued} jobs queued from before)");
    let router = api::router(app.clone());
    let served = axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
    eprintln!("medley serve: shutting down; finishing the batch in progress");
    app.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    app.stop.notify_one();
    let _ = worker.await;
    served.map_err(io_err("serving"))
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
