//! `medley`: index media files into LanceDB and search them.
//!
//! Exit status: 0 success; 1 the run finished but some files failed (they are listed and
//! recorded in the `failures` table); 2 bad usage or configuration, refused before any work;
//! 3 a fatal error during the run (for example the database could not be written).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use medley_models::{ModelHome, Runtime, TextEncoder};
use medley_pipeline::{Encoders, Event, IndexOptions, Indexer, discover};
use medley_store::Store;

#[derive(Parser)]
#[command(name = "medley", version, about = "Turn media files into embeddings and labels in LanceDB, and search them")]
struct Cli {
    /// Where setup put ONNX Runtime and the models [default: $MEDLEY_HOME or ~/.cache/medley]
    #[arg(long, global = true, env = "MEDLEY_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index media files and folders (recursively) into the `media` table.
    ///
    /// Files named here are always taken; inside folders, files with a video, audio or image
    /// extension are taken and others are counted as skipped. Items already in the table
    /// (same content hash) are skipped. Files that fail are recorded in `failures`.
    Index {
        /// Files or folders to index.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// LanceDB database directory (created if missing).
        #[arg(long)]
        db: String,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Frames per vision-model call.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
        frame_batch: u32,
    },
    /// Find the items whose content best matches a text, by the `bridge` vector.
    Search {
        /// What to look for, in words.
        text: String,
        /// LanceDB database directory written by `medley index`.
        #[arg(long)]
        db: String,
        /// Number of results.
        #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
        k: u32,
        /// Print results as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = cli.home.clone().map(ModelHome::new).unwrap_or_else(ModelHome::from_env);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async {
        match cli.command {
            Command::Index { paths, db, json, frame_batch } => index(&home, paths, &db, json, frame_batch as usize).await,
            Command::Search { text, db, k, json } => search(&home, &text, &db, k as usize, json).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            let config = e.downcast_ref::<ConfigErrorMarker>().is_some();
            eprintln!("error: {e:#}");
            ExitCode::from(if config { 2 } else { 3 })
        }
    }
}

/// Attached as context to errors found before any work started (exit status 2).
#[derive(Debug)]
struct ConfigErrorMarker;
impl std::fmt::Display for ConfigErrorMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("configuration")
    }
}

fn config_err(e: impl Into<anyhow::Error>) -> anyhow::Error {
    e.into().context(ConfigErrorMarker)
}

async fn index(home: &ModelHome, paths: Vec<PathBuf>, db: &str, json: bool, frame_batch: usize) -> Result<ExitCode> {
    // Everything that can be checked is checked before the first file is touched.
    let discovery = discover(&paths).map_err(|e| config_err(anyhow::anyhow!(e)))?;
    let encoders = Arc::new(Encoders::load(home).map_err(config_err)?);
    let store = Store::open(db, encoders.dims()).await.map_err(config_err)?;
    let opts = IndexOptions { frame_batch, ..Default::default() };
    let indexer = Indexer::new(encoders, store, opts);

    let bar = ProgressBar::with_draw_target(Some(discovery.files.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {msg}")
            .expect("valid template"),
    );
    let mut on_event = |event: Event<'_>| match event {
        Event::Started(path) => bar.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
        Event::Indexed { .. } | Event::AlreadyIndexed(_) => bar.inc(1),
        Event::Failed(err) => {
            bar.inc(1);
            bar.suspend(|| eprintln!("failed: {err}"));
        }
    };
    let summary = indexer.run(&discovery, &mut on_event).await.context("indexing stopped")?;
    bar.finish_and_clear();

    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let speed = if summary.wall_seconds > 0.0 { summary.media_seconds / summary.wall_seconds } else { 0.0 };
        println!(
            "indexed {} items, {} already indexed, {} skipped (not media), {} failed; {:.1} media seconds in {:.1} s wall ({:.1}x realtime)",
            summary.indexed,
            summary.already_indexed,
            summary.skipped_not_media,
            summary.failed,
            summary.media_seconds,
            summary.wall_seconds,
            speed
        );
    }
    Ok(if summary.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn search(home: &ModelHome, text: &str, db: &str, k: usize, json: bool) -> Result<ExitCode> {
    if !std::path::Path::new(db).exists() && !db.contains("://") {
        return Err(config_err(anyhow::anyhow!("database {db} does not exist; create it with `medley index PATH --db {db}`")));
    }
    let rt = Runtime::load(home).map_err(config_err)?;
    let encoder = TextEncoder::minilm(&rt, home).map_err(config_err)?;
    let store = Store::open_existing(db).await.map_err(config_err)?;
    let query = encoder.encode(&[text])?.remove(0);
    let hits = store.search("bridge", &query, k).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
    } else if hits.is_empty() {
        println!("no items with a text-searchable vector in {db}");
    } else {
        for (rank, hit) in hits.iter().enumerate() {
            let labels: Vec<String> = hit.labels.iter().take(3).map(|l| format!("{} {:.2}", l.label, l.score)).collect();
            println!("{:>3}. {:.3}  {}  [{}]", rank + 1, hit.score, hit.path, labels.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
