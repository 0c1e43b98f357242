//! `medley`: index media files into LanceDB and search them.
//!
//! Exit status: 0 success; 1 the run finished but some files failed (they are listed and
//! recorded in the `failures` table); 2 bad usage or configuration, or a database medley cannot
//! read (another tool's, schema version's or models'), refused before any work;
//! 3 a fatal error during the run (for example the database could not be written);
//! 130 interrupted by Ctrl-C or SIGTERM (what was done is committed).

mod admin;
mod cluster;
mod doctor;
mod index;
mod models;
mod query;
mod runtime_args;
mod serve;
mod sid;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medley_models::ModelHome;

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
    Index(index::IndexArgs),
    Search(query::SearchArgs),
    Similar(query::SimilarArgs),
    MusicFor(query::MusicForArgs),
    Eval(query::EvalArgs),
    Optimize(admin::OptimizeArgs),
    /// Semantic IDs: residual k-means codes over the items' content vectors.
    #[command(subcommand)]
    Sid(sid::SidCommand),
    /// Pipeline files: `medley pipeline check FILE` validates one before any work.
    #[command(subcommand)]
    Pipeline(admin::PipelineCommand),
    Export(admin::ExportArgs),
    Serve(serve::ServeArgs),
    Watch(watch::WatchArgs),
    Doctor(doctor::DoctorArgs),
    /// The model cache: `models add DIR` brings a Hugging Face ONNX export in, `models list`,
    /// `models check ID`.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    IndexWorker(cluster::WorkerArgs),
    Commit(cluster::CommitArgs),
    Discover(cluster::DiscoverArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = cli.home.clone().map(ModelHome::new).unwrap_or_else(ModelHome::from_env);
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Index(a) => index::run(&home, a).await,
            Command::Search(a) => query::search(&home, a).await,
            Command::Similar(a) => query::similar(&home, a).await,
            Command::MusicFor(a) => query::music_for(&home, a).await,
            Command::Pipeline(c) => admin::pipeline(&home, c),
            Command::Sid(c) => sid::run(&home, c).await,
            Command::Eval(a) => query::eval(&home, a).await,
            Command::Optimize(a) => admin::optimize(a).await,
            Command::Export(a) => admin::export(a).await,
            Command::Serve(a) => serve::run(&home, a).await,
            Command::Watch(a) => watch::run(&home, a).await,
            Command::Doctor(a) => doctor::run(&home, a).await,
            Command::Models(c) => models::run(&home, c),
            Command::IndexWorker(a) => cluster::worker(&home, a).await,
            Command::Commit(a) => cluster::commit(&home, a).await,
            Command::Discover(a) => cluster::discover_files(a),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            // The marker only picks the exit status; print the cause chain beneath it.
            let causes: Vec<String> = e.chain().skip(1).map(ToString::to_string).collect();
            eprintln!("error: {}", causes.join(": "));
            ExitCode::from(2)
        }
        Err(e) if is_bad_database(&e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// Warnings and notes from the library crates (they log through `tracing`) go to stderr:
/// medley's own at info and above, other crates' (LanceDB, ...) at warn and above.
/// `MEDLEY_LOG=debug|info|warn|error|off` sets medley's level.
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level = match std::env::var("MEDLEY_LOG").as_deref().map(str::to_ascii_lowercase).as_deref() {
        Ok("trace") => LevelFilter::TRACE,
        Ok("debug") => LevelFilter::DEBUG,
        Ok("warn") => LevelFilter::WARN,
        Ok("error") => LevelFilter::ERROR,
        Ok("off") => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    };
    let filter = Targets::new().with_target("medley", level).with_default(LevelFilter::WARN.min(level));
    let fmt = tracing_subscriber::fmt::layer().without_time().with_target(false).with_writer(std::io::stderr);
    // Fails only if a subscriber is already set, which nothing else here does.
    let _ = tracing_subscriber::registry().with(fmt).with(filter).try_init();
}

/// Attached as context to errors found before any work started (exit status 2).
#[derive(Debug)]
struct ConfigError;

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused before starting")
    }
}

fn config_err(e: impl Into<anyhow::Error>) -> anyhow::Error {
    e.into().context(ConfigError)
}

/// A bad user query (for example an unknown column in `--where`) or a database medley cannot
/// read is a usage error (exit 2); other database errors are fatal (exit 3).
fn query_error(e: medley_store::StoreError) -> anyhow::Error {
    match e {
        medley_store::StoreError::Query { .. } => config_err(e),
        e if e.is_bad_database() => config_err(e),
        other => other.into(),
    }
}

/// A database written by another tool, schema version or models (a column missing or of
/// another type, a table absent), wherever a command meets it: exit 2, like a bad `--db`.
/// The pipeline's errors wrap the store's transparently, so they are looked into.
fn is_bad_database(e: &anyhow::Error) -> bool {
    use medley_pipeline::{QueryError, SidError};
    use medley_store::StoreError;
    e.chain().any(|cause| {
        let store = cause.downcast_ref::<StoreError>().or_else(|| match cause.downcast_ref::<QueryError>() {
            Some(QueryError::Store(e)) => Some(e),
            _ => match cause.downcast_ref::<SidError>() {
                Some(SidError::Store(e)) => Some(e),
                _ => None,
            },
        });
        store.is_some_and(StoreError::is_bad_database)
    })
}

/// Open an existing database for reading, refusing (exit 2) when it does not exist.
async fn open_db(db: &str) -> anyhow::Result<medley_store::Store> {
    if !std::path::Path::new(db).exists() && !db.contains("://") {
        return Err(config_err(anyhow::anyhow!(
            "database {db} does not exist; create it with `medley index PATH --db {db}`"
        )));
    }
    medley_store::Store::open_existing(db).await.map_err(config_err)
}
