//! Many-machine runs (medley-ray, a Kubernetes Indexed Job, a Slurm array): `index-worker`
//! indexes a task's files into uncommitted data files and describes them in one JSON line;
//! `commit` adds what workers staged to the tables, once, whatever is repeated; `discover`
//! lists the files a run would take, for the driver that cuts them into tasks.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use medley_models::ModelHome;
use medley_pipeline::{Discovery, Encoders, IndexOptions, Indexer, Summary, discover};
use medley_store::{CommitTag, Staged, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::config_err;

/// Exit status of a failure worth retrying (BSD's EX_TEMPFAIL): the database or the network
/// failed, not the input. Configuration errors exit 2, as elsewhere.
const RETRYABLE: u8 = 75;

/// Index one task's files for a many-machine run: like `index` (items already in `media`
/// are skipped, bad files become `failures` rows), but rows are written as data files that
/// no table version references yet, and described on stdout in one JSON line for
/// `medley commit`: {"task", "staged", "summary", "worker"}. Files of an attempt that is never
/// committed are never read (`medley optimize` removes them).
///
/// With `--task`, one task: its files from `--files`, else stdin, one path per line. Without
/// it, tasks are read from stdin as JSON lines {"task": ID, "files": [...]} and each is
/// answered with one line, the models loaded once (a long-lived worker per GPU); a task that
/// fails is answered {"task", "error", "retryable"}.
///
/// The database must exist (`medley commit --begin` creates it, once). Exit status: 0 done,
/// 2 refused (configuration, database of other models), 75 failed but worth retrying.
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// LanceDB database: a directory or an object-store URI (s3://bucket/path).
    #[arg(long)]
    db: String,
    /// The task's id, recorded with its commit.
    #[arg(long)]
    task: Option<String>,
    /// The task's files, one path per line [default: stdin].
    #[arg(long, requires = "task")]
    files: Option<PathBuf>,
    /// Pipeline file (see pipelines/) [default: the built-in video-default].
    #[arg(long)]
    pipeline: Option<PathBuf>,
    #[command(flatten)]
    runtime: crate::runtime_args::RuntimeArgs,
    /// Files decoded and encoded at once [default: as for `index`].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: Option<u32>,
}

/// Add the rows `index-worker`s staged to the tables: one Append per table (`segments`, then
/// `failures`, then `media`, whose rows mark items done), tagged with the run and `--seq`.
/// Reads the workers' JSON lines on stdin. A table that already has this run's commit `--seq`
/// is left alone, so running a commit again (whole, or after it stopped half way) adds no
/// version. Copies of one content at two paths keep one item. Prints what it did as JSON.
///
/// `--begin` starts or resumes a run instead: creates the tables if missing (for the
/// pipeline's models) and prints the run's commits so far and the tables' versions as JSON.
/// Exit status: 0 done, 2 refused, 75 failed but worth retrying.
#[derive(clap::Args)]
pub struct CommitArgs {
    /// LanceDB database: a directory or an object-store URI (s3://bucket/path).
    #[arg(long)]
    db: String,
    /// The run's id (the driver derives it from the inputs, pipeline and database).
    #[arg(long)]
    run: String,
    /// This commit's sequence number in the run.
    #[arg(long, required_unless_present = "begin", conflicts_with = "begin")]
    seq: Option<u64>,
    /// Start or resume the run (see above).
    #[arg(long)]
    begin: bool,
    /// Look for an earlier commit of this `--seq` only in table versions after these
    /// (`--begin`'s "versions", as JSON) [default: all versions].
    #[arg(long, value_name = "JSON")]
    since: Option<String>,
    /// After committing, bring the search indexes up to date, as `index` does after its last
    /// commit (the run's last commit; with nothing on stdin, only that).
    #[arg(long, conflicts_with = "begin")]
    index: bool,
    /// Pipeline file, for the tables `--begin` creates [default: the built-in video-default].
    #[arg(long)]
    pipeline: Option<PathBuf>,
}

/// List the media files `index` would take from PATHS (folders walked as `index` walks them),
/// one per line, or as JSON {"files", "skipped", "unfinished"} with `--json`.
#[derive(clap::Args)]
pub struct DiscoverArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// One task as the long-lived worker reads it.
#[derive(Deserialize)]
struct TaskRequest {
    task: String,
    files: Vec<PathBuf>,
}

/// One task's result line.
#[derive(Serialize, Deserialize)]
struct TaskResult {
    task: String,
    staged: Staged,
    #[serde(default)]
    summary: serde_json::Value,
    #[serde(default)]
    worker: serde_json::Value,
}

pub fn discover_files(a: DiscoverArgs) -> Result<ExitCode> {
    let found = discover(&a.paths).map_err(config_err)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "files": found.files, "skipped": found.skipped, "unfinished": found.unfinished }),
        )?;
        writeln!(out)?;
    } else {
        for f in &found.files {
            writeln!(out, "{}", f.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(home: &ModelHome, a: WorkerArgs) -> Result<ExitCode> {
    let config = crate::runtime_args::load_pipeline(home, a.pipeline.as_deref(), &a.runtime)?;
    let encoders = Arc::new(Encoders::load(home, config).map_err(config_err)?);
    // Opened as existing first: a worker never creates the tables (two creations of one new
    // database race); then checked against this pipeline's models.
    Store::open_existing(&a.db).await.map_err(config_err)?;
    let store = Store::open(&a.db, encoders.dims()).await.map_err(config_err)?;
    let defaults = encoders.index_options();
    let opts = IndexOptions {
        workers: a.workers.map_or(defaults.workers, |n| n as usize),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..defaults
    };
    let indexer = Indexer::new(encoders, store, opts).staging();
    if let Some(task) = a.task {
        let text = match &a.files {
            Some(f) => {
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())).map_err(config_err)?
            }
            None => std::io::read_to_string(std::io::stdin()).context("reading the file list from stdin")?,
        };
        let files = text.lines().filter(|l| !l.trim().is_empty()).map(PathBuf::from).collect();
        return match run_task(&indexer, &task, files).await {
            Ok(line) => {
                println!("{line}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: task {task}: {e}");
                Ok(ExitCode::from(RETRYABLE))
            }
        };
    }
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.context("reading tasks from stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let request: TaskRequest = serde_json::from_str(&line)
            .with_context(|| format!("a task line is not {{\"task\": ID, \"files\": [...]}}: {line}"))
            .map_err(config_err)?;
        let answer = match run_task(&indexer, &request.task, request.files).await {
            Ok(line) => line,
            Err(e) => {
                serde_json::json!({ "task": request.task, "error": e.to_string(), "retryable": true }).to_string()
            }
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Index one task's files and describe what was staged, as one JSON line.
async fn run_task(indexer: &Indexer, task: &str, files: Vec<PathBuf>) -> Result<String, StoreError> {
    indexer.store().refresh().await?;
    // The files as named, not walked: a file gone since the driver listed it is a failure row.
    let discovery = Discovery { files, ..Default::default() };
    let summary: Summary = indexer.run(&discovery, &mut |_| {}).await?;
    let staged = indexer.take_staged();
    let worker = serde_json::json!({
        "host": hostname(),
        "pid": std::process::id(),
        "cuda_visible_devices": std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        "device": summary.device,
    });
    let result =
        TaskResult { task: task.into(), staged, summary: serde_json::to_value(&summary).unwrap_or_default(), worker };
    Ok(serde_json::to_string(&result).unwrap_or_default())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

pub async fn commit(home: &ModelHome, a: CommitArgs) -> Result<ExitCode> {
    if a.begin {
        let config = crate::runtime_args::load_pipeline(home, a.pipeline.as_deref(), &Default::default())?;
        let dims = Encoders::load(home, config).map_err(config_err)?.dims();
        let store = Store::open(&a.db, dims).await.map_err(config_err)?;
        let commits = store.run_commits(&a.run).await;
        return report(commits.map(|c| serde_json::to_string(&c).unwrap_or_default()));
    }
    let since: BTreeMap<String, u64> = match &a.since {
        Some(json) => serde_json::from_str(json)
            .with_context(|| format!("--since {json}: expected {{\"media\": N, ...}}"))
            .map_err(config_err)?,
        None => BTreeMap::new(),
    };
    let mut staged = Staged::default();
    let mut tasks = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading staged rows from stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let result: TaskResult = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {}: not an index-worker result", n + 1))
            .map_err(config_err)?;
        tasks.push(result.task);
        staged.merge(result.staged);
    }
    let store = crate::open_db(&a.db).await?;
    // `open_db` fixes the widths from the table; `seq` is present unless `--begin`.
    let tag = CommitTag { run: a.run, seq: a.seq.ok_or_else(|| config_err(anyhow!("--seq is required")))?, tasks };
    // Nothing staged: no commit to record (an empty one would still add versions).
    let outcome = if staged.is_empty() {
        Ok(
            serde_json::json!({ "already_committed": false, "media_rows": 0, "failure_rows": 0, "nothing_staged": true }),
        )
    } else {
        store.commit_staged(&staged, &tag, &since).await.map(|o| serde_json::to_value(o).unwrap_or_default())
    };
    let outcome = match outcome {
        Ok(o) if a.index => store.maintain_indexes().await.map(|_| o),
        other => other,
    };
    report(outcome.map(|o| o.to_string()))
}

/// Print a result line, or say why there is none: a database that is not medley's is refused
/// (2); anything else the database did may pass on a retry (75).
fn report(result: Result<String, StoreError>) -> Result<ExitCode> {
    match result {
        Ok(line) => {
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_bad_database() => Err(config_err(e)),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(RETRYABLE))
        }
    }
}
