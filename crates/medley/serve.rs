use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use medley_models::ModelHome;
use medley_pipeline::{Encoders, IndexOptions, Indexer};
use medley_serve::ServeConfig;
use medley_store::Store;

use crate::config_err;

/// Serve an HTTP API: upload files (or name files under --root folders) to index them, poll
/// their jobs, search and find similar items. See /openapi.json on the server.
///
/// Binding an address other than loopback needs a token. Ctrl-C or SIGTERM stops accepting,
/// finishes the batch being indexed and exits 0; queued jobs run on the next start.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// LanceDB database: a directory or an object-store URI such as s3://bucket/path (created if missing).
    #[arg(long)]
    db: String,
    /// Address to listen on (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Bearer token required on /v1 routes and /metrics.
    #[arg(long, env = "MEDLEY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A folder whose files may be submitted by path (repeatable); without one, only uploads.
    #[arg(long = "root", value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// Largest upload accepted, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_upload_mb: u64,
    /// Pipeline file (see pipelines/) [default: the built-in video-default].
    #[arg(long)]
    pipeline: Option<PathBuf>,
    #[command(flatten)]
    runtime: crate::runtime_args::RuntimeArgs,
    /// Folder for uploads and the job queue [default: <db>.serve next to a local --db].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Most jobs indexed in one run (one table commit).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// How long finished (done or failed) jobs are kept before they are forgotten (their
    /// /v1/jobs/{id} answers 404 then): a number with s, m, h or d, such as 90s, 12h, 7d.
    #[arg(long, value_name = "AGE", default_value = "7d", value_parser = parse_age)]
    keep_finished_for: Duration,
    /// MiB of text-search vectors kept in memory: unfiltered searches are answered from there
    /// (an in-memory IVF index, refreshed after each indexed batch) instead of a table query;
    /// 0 sends every search to the table.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    search_memory_mb: usize,
    /// Nice value of the index worker's threads (0 to 19): searches get the CPU first while
    /// uploads are indexed, and indexing uses what they leave. 0 runs both at one priority.
    #[arg(long, value_name = "N", default_value_t = medley_serve::DEFAULT_INDEX_NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    index_nice: i32,
}

/// `90s`, `15m`, `12h`, `7d` (at most 100 years).
fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let unit_s: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: expected a number with s, m, h or d, such as 90s, 12h, 7d")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?}: expected a number before the unit, such as 7d"))?;
    match n.checked_mul(unit_s) {
        Some(secs) if secs <= 100 * 365 * 86_400 => Ok(Duration::from_secs(secs)),
        _ => Err(format!("{s:?}: at most 100 years")),
    }
}

pub async fn run(home: &ModelHome, args: ServeArgs) -> Result<ExitCode> {
    let state_dir = match (&args.state, args.db.contains("://")) {
        (Some(s), _) => s.clone(),
        (None, false) => PathBuf::from(format!("{}.serve", args.db.trim_end_matches('/'))),
        (None, true) => return Err(config_err(anyhow::anyhow!("--state DIR is required with a remote --db"))),
    };
    let state_dir = std::path::absolute(&state_dir)
        .map_err(|e| config_err(anyhow::anyhow!("--state {}: {e}", state_dir.display())))?;
    let roots = args
        .roots
        .iter()
        .map(|r| r.canonicalize().map_err(|e| config_err(anyhow::anyhow!("--root {}: {e}", r.display()))))
        .collect::<Result<Vec<_>>>()?;
    let config = ServeConfig {
        bind: args.bind,
        token: args.token.filter(|t| !t.is_empty()),
        roots,
        max_upload_bytes: args.max_upload_mb << 20,
        state_dir,
        batch: args.batch as usize,
        keep_finished: args.keep_finished_for,
        search_memory_bytes: args.search_memory_mb << 20,
        index_nice: args.index_nice,
    };
    config.check().map_err(config_err)?;
    let pipeline = crate::runtime_args::load_pipeline(home, args.pipeline.as_deref(), &args.runtime)?;
    // rayon's global pool starts on first use, and its threads would inherit the priority of
    // the thread that used it first: the model-loading thread below. The query path uses it
    // too (the tokenizer's batches), so it starts here, at the routes' priority.
    let _ = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("medley-rayon-{i}")).build_global();
    // The index worker's models load on a thread at its priority, so the threads ONNX Runtime
    // starts for them run there too; the text towers that embed queries load here.
    let encoders = medley_serve::at_nice(args.index_nice, || Encoders::load(home, pipeline))
        .context("starting a thread to load the models")?;
    let encoders = Arc::new(encoders.map_err(config_err)?);
    let towers = encoders.load_text_towers(home).map_err(config_err)?;
    let store = Store::open(&args.db, encoders.dims()).await.map_err(config_err)?;
    let opts = IndexOptions {
        // One commit per batch of jobs.
        commit_every: config.batch,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..encoders.index_options()
    };
    let indexer = Indexer::new(encoders.clone(), store, opts);
    medley_serve::run(config, encoders, towers, indexer, medley_serve::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_have_units() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        for bad in ["7", "d", "7w", "-1d", "1.5h", "99999999999999999999d", "40000d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
