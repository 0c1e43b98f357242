use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use medley_models::ModelHome;
use medley_pipeline::{
    DEFAULT_PIPELINE, Encoders, Event, IndexOptions, Indexer, Partial, PipelineConfig, Progress, discover, shard,
};
use medley_store::Store;

use crate::config_err;

/// Index media files and folders (recursively) into the `media` table.
///
/// Files named here are always taken; inside folders, files with a video, audio or image
/// extension are taken, and so are files with another (or no) extension that FFmpeg opens as
/// media (documents, archives, code and the like are not asked about); the rest are counted as
/// skipped. Items already in the table (same
/// content hash, same models) are skipped. Files that fail are recorded in `failures`.
/// Files go through three stages (hash, decode and encode, write) joined by bounded buffers;
/// on a terminal each stage has a progress bar, otherwise a line is logged per file.
/// Finished rows are committed every `commit_every` items and at least every 30 s. Ctrl-C or
/// SIGTERM stops after the files in progress and commits what is done (exit 130); re-running
/// the same command resumes.
#[derive(clap::Args)]
pub struct IndexArgs {
    /// Files or folders to index.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// LanceDB database: a directory or an object-store URI such as s3://bucket/path (created if missing).
    #[arg(long)]
    db: String,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Index only shard I of N (0-based), chosen by a hash of each path: start N processes
    /// with the same paths and I = 0..N-1 to split the work across processes or machines.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(u32, u32)>,
    /// Pipeline file (see pipelines/) [default: the built-in video-default].
    #[arg(long)]
    pipeline: Option<PathBuf>,
    #[command(flatten)]
    runtime: crate::runtime_args::RuntimeArgs,
    /// Items gathered before one table commit (each commit is a LanceDB version)
    /// [default: the pipeline's index.commit_every].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    commit_every: Option<u32>,
    /// Frames per vision-model call [default: the pipeline's index.frame_batch, else 16 on CPU
    /// and 64 on CUDA].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    frame_batch: Option<u32>,
    /// Files decoded and encoded at once [default: half the cores (1 to 4) on CPU, the cores
    /// (2 to 8) on CUDA].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: Option<u32>,
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what `timeout`, `kill` and job schedulers send):
/// both stop a run the same way, committing what is finished. False if no handler could be set.
pub async fn interrupted() -> bool {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return tokio::signal::ctrl_c().await.is_ok();
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.is_ok(),
        t = term.recv() => t.is_some(),
    }
}

/// The pipeline file given, or the built-in default, checked.
pub fn load_pipeline(home: &ModelHome, path: Option<&std::path::Path>) -> Result<PipelineConfig> {
    match path {
        Some(p) => PipelineConfig::load(p, home),
        None => PipelineConfig::parse(DEFAULT_PIPELINE, home),
    }
    .map_err(config_err)
}

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, for example 0/4")?;
    let (i, n): (u32, u32) = (i.parse().map_err(|_| "I is not a number")?, n.parse().map_err(|_| "N is not a number")?);
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

pub async fn run(home: &ModelHome, args: IndexArgs) -> Result<ExitCode> {
    // Everything that can be checked is checked before the first file is touched.
    let mut discovery = discover(&args.paths).map_err(config_err)?;
    if let Some((i, n)) = args.shard {
        discovery.files = shard(discovery.files, i, n);
    }
    let config = crate::runtime_args::load_pipeline(home, args.pipeline.as_deref(), &args.runtime)?;
    let encoders = Arc::new(Encoders::load(home, config).map_err(config_err)?);
    let store = Store::open(&args.db, encoders.dims()).await.map_err(config_err)?;
    let defaults = encoders.index_options();
    let opts = IndexOptions {
        frame_batch: args.frame_batch.map_or(defaults.frame_batch, |n| n as usize),
        commit_every: args.commit_every.map_or(defaults.commit_every, |n| n as usize),
        workers: args.workers.map_or(defaults.workers, |n| n as usize),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        shard: args.shard.map(|(i, n)| format!("{i}/{n}")),
        ..defaults
    };
    let indexer = Indexer::new(encoders, store, opts);

    let stop = indexer.stop_flag();
    tokio::spawn(async move {
        if interrupted().await {
            eprintln!("\ninterrupted: finishing the files in progress and committing (Ctrl-C again to abort)");
            stop.store(true, Ordering::Relaxed);
            interrupted().await;
            std::process::exit(130);
        }
    });

    let bars = StageBars::new(indexer.progress());
    let terminal = std::io::stderr().is_terminal();
    let mut on_event = |event: Event<'_>| match event {
        Event::Indexed { partial: Some(p), .. } => bars.suspend(|| eprintln!("warning: {}", partial_line(p))),
        Event::Indexed { path, media_s, .. } if !terminal => eprintln!("indexed {} ({media_s:.1} s)", path.display()),
        Event::AlreadyIndexed(path) if !terminal => eprintln!("already indexed {}", path.display()),
        Event::Failed(err) => bars.suspend(|| eprintln!("failed: {err}")),
        _ => {}
    };
    let summary = indexer.run(&discovery, &mut on_event).await.context("indexing stopped")?;
    bars.finish();
    for path in &summary.unfinished {
        eprintln!("warning: {path}: named as an unfinished download or copy; not indexed until it has its final name");
    }
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let speed = if summary.wall_seconds > 0.0 { summary.media_seconds / summary.wall_seconds } else { 0.0 };
        let partial = match summary.partial.len() {
            0 => String::new(),
            n => format!(" ({n} partial: cut short of their declared length)"),
        };
        let unfinished = match summary.unfinished.len() {
            0 => String::new(),
            n => format!(", {n} unfinished (not indexed)"),
        };
        println!(
            "indexed {} items{partial}, {} already indexed, {} skipped (not media){unfinished}, {} failed; {:.1} media seconds in {:.1} s wall ({:.1}x realtime){}",
            summary.indexed,
            summary.already_indexed,
            summary.skipped_not_media,
            summary.failed,
            summary.media_seconds,
            summary.wall_seconds,
            speed,
            if summary.interrupted { "; interrupted, re-run to resume" } else { "" }
        );
    }
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The warning for a file indexed only as far as it decoded.
pub fn partial_line(p: &Partial) -> String {
    format!(
        "{}: partial file: decoding ended at {:.1} s of the {:.1} s its header declares; indexed what was decoded",
        p.path, p.decoded_s, p.declared_s
    )
}

/// A progress bar per stage (hash, decode + encode, write), redrawn from the indexer's counts.
struct StageBars {
    multi: MultiProgress,
    bars: [ProgressBar; 3],
    ticker: tokio::task::JoinHandle<()>,
}

impl StageBars {
    fn new(progress: Arc<Progress>) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = |unit: &str| {
            ProgressStyle::with_template(&format!(
                "{{prefix:>14}} {{bar:30}} {{pos}}/{{len}} {unit} ({{per_sec}}) {{msg}}"
            ))
            // The template is a constant with only known keys: it always parses.
            .expect("valid template")
        };
        let bar = |prefix: &'static str, unit: &str| {
            let b = multi.add(ProgressBar::new(0).with_style(style(unit)).with_prefix(prefix));
            b.enable_steady_tick(std::time::Duration::from_millis(250));
            b
        };
        let bars = [bar("hash", "files"), bar("decode+encode", "files"), bar("write", "committed")];
        let [hash, build, write] = bars.clone();
        let ticker = tokio::spawn(async move {
            loop {
                let files = progress.files.load(Ordering::Relaxed) as u64;
                for (b, n) in [(&hash, &progress.hashed), (&build, &progress.built), (&write, &progress.committed)] {
                    b.set_length(files);
                    b.set_position(n.load(Ordering::Relaxed) as u64);
                }
                build.set_message(format!("{} in flight", progress.building.load(Ordering::Relaxed)));
                write.set_message(format!("{} commits", progress.commits.load(Ordering::Relaxed)));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
        Self { multi, bars, ticker }
    }

    fn suspend(&self, f: impl FnOnce()) {
        self.multi.suspend(f)
    }

    fn finish(self) {
        self.ticker.abort();
        // Each bar, not the group: a bar with a steady tick would draw itself again.
        self.bars.iter().for_each(ProgressBar::finish_and_clear);
    }
}
