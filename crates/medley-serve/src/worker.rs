//! The one indexing worker: takes up to `batch` queued jobs into one index run (one commit),
//! with the models loaded once for the server's lifetime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use medley_pipeline::{Discovery, Event};

use crate::AppState;

/// How long the worker waits after a wake-up for more jobs to arrive, so a burst of uploads
/// becomes one batch instead of one commit each.
const GATHER: Duration = Duration::from_millis(100);

pub async fn run(app: AppState) {
    loop {
        if app.stopping.load(Ordering::SeqCst) {
            return;
        }
        let batch = match app.jobs.take(app.config.batch) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: writing the job queue: {e}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = app.jobs.wake.notified() => tokio::time::sleep(GATHER).await,
                _ = app.stop.notified() => {}
            }
            continue;
        }
        index_batch(&app, batch).await;
    }
}

async fn index_batch(app: &AppState, batch: Vec<crate::Job>) {
    let mut files: Vec<PathBuf> = batch.iter().map(|j| PathBuf::from(&j.path)).collect();
    files.sort();
    files.dedup();
    let discovery = Discovery { files, skipped: Vec::new() };
    let mut outcomes: HashMap<PathBuf, Result<(), String>> = HashMap::new();
    let mut on_event = |event: Event<'_>| match event {
        Event::Indexed { path, .. } | Event::AlreadyIndexed(path) => {
            outcomes.insert(path.to_path_buf(), Ok(()));
        }
        Event::Failed(err) => {
            outcomes.insert(err.path.clone(), Err(err.to_string()));
        }
    };
    let result = app.indexer.run(&discovery, &mut on_event).await;
    match &result {
        Ok(summary) => app.metrics.add_run(summary.wall_seconds, summary.media_seconds),
        Err(e) => eprintln!("error: index run of {} files: {e}", discovery.files.len()),
    }
    for job in batch {
        let outcome = match &result {
            Err(e) => Err(format!("database error: {e}")),
            Ok(_) => outcomes
                .get(&PathBuf::from(&job.path))
                .cloned()
                .unwrap_or_else(|| Err("the index run ended without a result for this file".into())),
        };
        if let Err(e) = app.jobs.finish(&job.id, outcome) {
            eprintln!("error: recording job {}: {e}", job.id);
        }
    }
}
