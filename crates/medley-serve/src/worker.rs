//! The one indexing worker, and its supervisor.
//!
//! The worker takes up to `batch` queued jobs into one index run (one commit), with the models
//! loaded once for the server's lifetime. It dies on what no job caused and no retry of the
//! same batch can fix right away: the database failing (unreachable, not writable, replaced) or
//! the job files failing to write; or on a panic. The supervisor then puts the jobs it was
//! indexing back in front of the queue and starts it again after a pause that doubles with each
//! failure in a row (capped). A restarted worker first checks that the database answers, so
//! while it is down the server reports itself unavailable and the jobs wait in the queue.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use medley_core::now_us;
use medley_pipeline::{Discovery, Event};
use medley_store::{Store, StoreError};
use serde::Serialize;

use crate::AppState;

/// How long the worker waits after a wake-up for more jobs to arrive, so a burst of uploads
/// becomes one batch instead of one commit each.
const GATHER: Duration = Duration::from_millis(100);

/// The pause before the first restart after a failure; it doubles with each failure in a row.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// The longest pause between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A worker that ran this long before failing starts the pauses over, like one that finished
/// a batch.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(300);

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("database {uri} is not usable: {reason}")]
    Unusable { uri: String, reason: String },
    #[error("checking database before taking jobs: {0}")]
    Check(#[source] StoreError),
    #[error("index run of {files} files: {source}")]
    IndexRun { files: usize, source: StoreError },
    #[error("writing the job queue in {dir}: {source}")]
    Jobs { dir: String, source: std::io::Error },
}

impl WorkerError {
    /// Whether it happened while indexing the jobs it had taken (which may have caused it).
    fn during_batch(&self) -> bool {
        matches!(self, Self::IndexRun { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Taking and indexing jobs.
    Running,
    /// Down after a failure: waiting for its next start, or checking the database.
    Restarting,
    /// The server is shutting down.
    Stopped,
}

impl WorkerState {
    pub const ALL: [WorkerState; 3] = [Self::Running, Self::Restarting, Self::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
        }
    }
}

/// The worker's state as `/healthz` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub state: WorkerState,
    /// Starts after a failure since the server started.
    pub restarts: u64,
    /// Why it last stopped, and when (Unix microseconds).
    pub last_error: Option<String>,
    pub last_error_at_us: Option<i64>,
    /// While restarting: when the next start is due (Unix microseconds).
    pub next_start_at_us: Option<i64>,
    /// Batches the current worker finished (resets the backoff).
    #[serde(skip)]
    batches: u64,
}

/// The worker's status, shared with the handlers.
pub struct Health(Mutex<WorkerStatus>);

impl Default for Health {
    fn default() -> Self {
        Self(Mutex::new(WorkerStatus {
            state: WorkerState::Running,
            restarts: 0,
            last_error: None,
            last_error_at_us: None,
            next_start_at_us: None,
            batches: 0,
        }))
    }
}

impl Health {
    /// The status, even after a panic elsewhere while it was held: each update under it is a
    /// few field stores, so a poisoned lock still holds a whole status.
    fn lock(&self) -> MutexGuard<'_, WorkerStatus> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn status(&self) -> WorkerStatus {
        self.lock().clone()
    }

    fn running(&self) {
        let mut s = self.lock();
        s.state = WorkerState::Running;
        s.next_start_at_us = None;
        s.batches = 0;
    }

    fn batch_done(&self) {
        self.lock().batches += 1;
    }

    fn failed(&self, error: String, next_start_in: Duration) {
        let mut s = self.lock();
        s.state = WorkerState::Restarting;
        s.last_error = Some(error);
        let now = now_us();
        s.last_error_at_us = Some(now);
        s.next_start_at_us = Some(now.saturating_add(i64::try_from(next_start_in.as_micros()).unwrap_or(i64::MAX)));
    }

    fn restarting(&self) {
        let mut s = self.lock();
        s.restarts += 1;
        s.next_start_at_us = None;
    }

    fn stopped(&self) {
        self.lock().state = WorkerState::Stopped;
    }
}

/// Run the worker until the server stops, starting it again whenever it dies.
pub async fn supervise(app: AppState) {
    let mut stop = app.stop.subscribe();
    let mut pause = BACKOFF_FIRST;
    loop {
        let started = Instant::now();
        // On the background runtime: the worker and the CPU work it hands out run below the
        // routes in priority.
        let Some(worker) = app.background.spawn(run(app.clone())) else { break };
        let (error, during_batch) = match worker.await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => (e.to_string(), e.during_batch()),
            Err(e) if e.is_panic() => (format!("the worker panicked: {}", panic_message(e.into_panic())), true),
            Err(e) => (format!("the worker was cancelled: {e}"), false),
        };
        match app.jobs.requeue_running(&error, during_batch).await {
            Ok(r) if r.failed > 0 => {
                tracing::warn!("{} jobs failed: the worker stopped too often while indexing them", r.failed)
            }
            Ok(_) => {}
            // The jobs are queued again in memory; their files say `running`, which a restart
            // of the server also queues again.
            Err(e) => tracing::error!("writing the job queue after the worker stopped: {e}"),
        }
        if app.worker.status().batches > 0 || started.elapsed() >= BACKOFF_RESET_AFTER {
            pause = BACKOFF_FIRST;
        }
        tracing::error!("the index worker stopped: {error}; starting it again in {:.1} s", pause.as_secs_f64());
        app.worker.failed(error, pause);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = crate::stopped(&mut stop) => break,
        }
        pause = (pause * 2).min(BACKOFF_MAX);
        app.worker.restarting();
    }
    app.worker.stopped();
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// Take jobs until the server stops; an error ends the worker (see the module comment).
async fn run(app: AppState) -> Result<(), WorkerError> {
    check_database(app.indexer.store()).await?;
    app.worker.running();
    let mut stop = app.stop.subscribe();
    let jobs_err = |source| WorkerError::Jobs { dir: app.config.state_dir.join("jobs").display().to_string(), source };
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let batch = app.jobs.take(app.config.batch).await.map_err(jobs_err)?;
        if batch.is_empty() {
            tokio::select! {
                _ = app.jobs.wake.notified() => tokio::time::sleep(GATHER).await,
                _ = crate::stopped(&mut stop) => {}
            }
            continue;
        }
        index_batch(&app, batch).await?;
        app.worker.batch_done();
    }
}

/// That the database answers: a local one is still a folder, and every table can be moved to
/// its latest version (which lists the table's versions where they are stored).
pub async fn check_database(store: &Store) -> Result<(), WorkerError> {
    let uri = store.uri();
    if !uri.contains("://") {
        let unusable = |reason: String| WorkerError::Unusable { uri: uri.to_string(), reason };
        match tokio::fs::metadata(uri).await {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(unusable("not a folder".into())),
            Err(e) => return Err(unusable(e.to_string())),
        }
    }
    store.refresh().await.map_err(WorkerError::Check)
}

async fn index_batch(app: &AppState, batch: Vec<crate::Job>) -> Result<(), WorkerError> {
    let mut files: Vec<PathBuf> = batch.iter().map(|j| PathBuf::from(&j.path)).collect();
    files.sort();
    files.dedup();
    let discovery = Discovery { files, ..Default::default() };
    let mut outcomes: HashMap<PathBuf, Result<(), String>> = HashMap::new();
    let mut on_event = |event: Event<'_>| match event {
        Event::Indexed { path, .. } | Event::AlreadyIndexed(path) => {
            outcomes.insert(path.to_path_buf(), Ok(()));
        }
        Event::Failed(err) => {
            outcomes.insert(err.path.clone(), Err(err.to_string()));
        }
    };
    // A database error leaves the jobs `running`: the supervisor queues them again.
    let summary = app.indexer.run(&discovery, &mut on_event).await;
    // Committed or not, the tables may have moved: the routes read the new version, and
    // cached search answers are stale. A failed refresh leaves the reads on the version
    // before until the next batch.
    if let Err(e) = app.reader.refresh().await {
        tracing::warn!("medley serve: reading the new version of the tables: {e}");
    }
    app.answers.invalidate();
    let summary = summary.map_err(|source| WorkerError::IndexRun { files: discovery.files.len(), source })?;
    app.metrics.add_run(summary.wall_seconds, summary.media_seconds);
    for job in batch {
        let outcome = outcomes
            .get(&PathBuf::from(&job.path))
            .cloned()
            .unwrap_or_else(|| Err("the index run ended without a result for this file".into()));
        app.jobs.finish(&job.id, outcome).await.map_err(|source| WorkerError::Jobs {
            dir: app.config.state_dir.join("jobs").display().to_string(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_failures_and_restarts() -> Result<(), serde_json::Error> {
        let h = Health::default();
        assert_eq!(h.status().state, WorkerState::Running);
        h.failed("database x is not usable: not a folder".into(), Duration::from_secs(1));
        let s = h.status();
        assert_eq!((s.state, s.restarts), (WorkerState::Restarting, 0));
        assert!(s.next_start_at_us > s.last_error_at_us && s.last_error_at_us.is_some());
        h.restarting();
        assert_eq!((h.status().state, h.status().restarts), (WorkerState::Restarting, 1));
        h.running();
        let s = h.status();
        assert_eq!((s.state, s.restarts), (WorkerState::Running, 1));
        assert_eq!(s.last_error.as_deref(), Some("database x is not usable: not a folder"), "kept for /healthz");
        let json = serde_json::to_value(&s)?;
        assert_eq!(json["state"], "running");
        assert!(json.get("batches").is_none());
        Ok(())
    }

    #[test]
    fn panic_messages_are_read() {
        assert_eq!(panic_message(Box::new("boom")), "boom");
        assert_eq!(panic_message(Box::new(String::from("bang"))), "bang");
        assert_eq!(panic_message(Box::new(7)), "(no message)");
    }
}
