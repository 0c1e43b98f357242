use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use medley_models::ModelHome;
use medley_pipeline::{Discoverer, Discovery, Encoders, Event, IndexOptions, Indexer};
use medley_store::Store;

use crate::config_err;
use crate::index::partial_line;

/// Watch folders and index media files as they appear or change.
///
/// The folders are scanned every --interval; a file is indexed once its size and modification
/// time have not changed for --settle (so a file still being copied or uploaded is left alone
/// until it is complete). Items already in the table are skipped by content hash, so restarting
/// the watcher re-indexes nothing. Ctrl-C stops after the current batch.
#[derive(clap::Args)]
pub struct WatchArgs {
    /// Folders to watch (recursively).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// LanceDB database: a directory or an object-store URI such as s3://bucket/path (created if missing).
    #[arg(long)]
    db: String,
    /// Pipeline file (see pipelines/) [default: the built-in video-default].
    #[arg(long)]
    pipeline: Option<PathBuf>,
    #[command(flatten)]
    runtime: crate::runtime_args::RuntimeArgs,
    /// Seconds between scans.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Seconds a file must stay unchanged before it is indexed.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
}

/// What a scan saw of one file, and since when.
struct Seen {
    size: u64,
    modified: Option<SystemTime>,
    stable_since: Instant,
    /// The (size, modified) last indexed, so unchanged files are not offered again.
    indexed: Option<(u64, Option<SystemTime>)>,
}

pub async fn run(home: &ModelHome, args: WatchArgs) -> Result<ExitCode> {
    for (name, v) in [("--interval", args.interval), ("--settle", args.settle)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(config_err(anyhow::anyhow!("{name} must be a number of seconds, got {v}")));
        }
    }
    let mut discoverer = Discoverer::default();
    discoverer.discover(&args.dirs).map_err(config_err)?;
    let config = crate::runtime_args::load_pipeline(home, args.pipeline.as_deref(), &args.runtime)?;
    let encoders = Arc::new(Encoders::load(home, config).map_err(config_err)?);
    let store = Store::open(&args.db, encoders.dims()).await.map_err(config_err)?;
    let opts = IndexOptions { command: "medley watch".into(), ..encoders.index_options() };
    let indexer = Indexer::new(encoders, store, opts);
    let stop = indexer.stop_flag();
    tokio::spawn(async move {
        if crate::index::interrupted().await {
            eprintln!("\nstopping after the current batch");
            stop.store(true, Ordering::Relaxed);
        }
    });
    let (interval, settle) = (Duration::from_secs_f64(args.interval), Duration::from_secs_f64(args.settle));
    eprintln!("watching {} (scan every {:?}, settle {:?})", args.dirs.len(), interval, settle);
    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    while !indexer.stop_flag().load(Ordering::Relaxed) {
        let found = discoverer.discover(&args.dirs)?;
        let now = Instant::now();
        let mut ready = Vec::new();
        for path in found.files {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let (size, modified) = (meta.len(), meta.modified().ok());
            let entry = seen.entry(path.clone()).or_insert(Seen { size, modified, stable_since: now, indexed: None });
            if (entry.size, entry.modified) != (size, modified) {
                (entry.size, entry.modified, entry.stable_since) = (size, modified, now);
            }
            let settled = now.duration_since(entry.stable_since) >= settle;
            if settled && size > 0 && entry.indexed != Some((size, modified)) {
                entry.indexed = Some((size, modified));
                ready.push(path);
            }
        }
        seen.retain(|p, _| p.exists());
        if !ready.is_empty() {
            let discovery = Discovery { files: ready, ..Default::default() };
            let mut on_event = |event: Event<'_>| match event {
                Event::Indexed { partial: Some(p), .. } => eprintln!("warning: {}", partial_line(p)),
                Event::Indexed { path, .. } => eprintln!("indexed {}", path.display()),
                Event::Failed(err) => eprintln!("failed: {err}"),
                Event::AlreadyIndexed(_) => {}
            };
            let summary = indexer.run(&discovery, &mut on_event).await.context("writing to the database")?;
            for warning in &summary.warnings {
                eprintln!("warning: {warning}");
            }
        }
        tokio::time::sleep(interval).await;
    }
    Ok(ExitCode::from(130))
}
