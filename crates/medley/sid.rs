//! `medley sid train|assign|stats`: Semantic IDs over the items' content vectors.

use std::process::ExitCode;

use anyhow::Result;
use medley_fuse::TrainConfig;
use medley_models::ModelHome;
use medley_pipeline::{SidError, assign_missing_sids, sid_report, train_sids};

use crate::index::load_pipeline;
use crate::{config_err, open_db};

#[derive(clap::Subcommand)]
pub enum SidCommand {
    /// Train a residual k-means codebook on the content vectors and assign every item an ID.
    Train(TrainArgs),
    /// Assign IDs with the latest codebook to items that have none (items indexed since).
    Assign {
        #[arg(long)]
        db: String,
    },
    /// Report reconstruction error, code usage, collisions and neighbour agreement.
    Stats {
        #[arg(long)]
        db: String,
        /// Items sampled for the nearest-neighbour agreement.
        #[arg(long, default_value_t = 1000)]
        nn_sample: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[arg(long)]
    db: String,
    /// Levels of the code (L).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=8))]
    levels: u32,
    /// Codes per level (K); at most the number of items.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(2..=65536))]
    codes: u32,
    /// Balance cluster sizes during training (fewer collisions).
    #[arg(long)]
    balanced: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Lloyd iterations per level.
    #[arg(long, default_value_t = 20)]
    iters: u32,
    /// Pipeline file whose `[fusion]` section builds the content vectors [default: built-in].
    #[arg(long)]
    pipeline: Option<std::path::PathBuf>,
    /// Vocabulary of the unigram piece model (at least 8 x codes).
    #[arg(long, default_value_t = 4096)]
    piece_vocab: u32,
}

pub async fn run(home: &ModelHome, c: SidCommand) -> Result<ExitCode> {
    match c {
        SidCommand::Train(a) => train_cmd(home, a).await,
        SidCommand::Assign { db } => assign_cmd(&db).await,
        SidCommand::Stats { db, nn_sample, json } => stats_cmd(&db, nn_sample, json).await,
    }
}

async fn train_cmd(home: &ModelHome, a: TrainArgs) -> Result<ExitCode> {
    let pipeline = load_pipeline(home, a.pipeline.as_deref())?;
    let store = open_db(&a.db).await?;
    let mut config = TrainConfig::new(a.levels as usize, a.codes as usize);
    config.balanced = a.balanced;
    config.seed = a.seed;
    config.iters = a.iters as usize;
    let trained = match train_sids(&store, &pipeline.fusion, &config, a.piece_vocab).await {
        Err(e @ SidError::TooFewItems { .. }) => return Err(config_err(anyhow::anyhow!("--codes {}: {e}", a.codes))),
        other => other?,
    };
    let mse = trained.codebook.report.levels.last().map_or(0.0, |l| l.relative_mse);
    println!(
        "codebook {} ({} levels x {} codes over {} items, content {}-d, fusion {}): relative MSE {:.4}; {} IDs with pieces ({} piece vocabulary) and content vectors written to `sids`",
        trained.codebook.version,
        a.levels,
        a.codes,
        trained.items,
        trained.fusion.dim(),
        trained.fusion.version,
        mse,
        trained.items,
        trained.piece_vocab,
    );
    Ok(ExitCode::SUCCESS)
}

fn no_codebook(db: &str) -> anyhow::Error {
    config_err(anyhow::anyhow!("no codebook in {db}; train one with `medley sid train --db {db}`"))
}

async fn assign_cmd(db: &str) -> Result<ExitCode> {
    let store = open_db(db).await?;
    let done = assign_missing_sids(&store).await?.ok_or_else(|| no_codebook(db))?;
    println!(
        "{} items assigned with codebook {} ({} items in the table)",
        done.assigned, done.codebook_version, done.items
    );
    Ok(ExitCode::SUCCESS)
}

async fn stats_cmd(db: &str, nn_sample: usize, json: bool) -> Result<ExitCode> {
    let store = open_db(db).await?;
    let (version, stats) = sid_report(&store, nn_sample).await?.ok_or_else(|| no_codebook(db))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        println!("codebook {version}\n{stats}");
    }
    Ok(ExitCode::SUCCESS)
}
