use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use medley_store::TableName;

use crate::open_db;

/// Compact the tables, remove old versions, and build indexes (full-text on labels always,
/// vector indexes once `media` is large enough for them to pay off).
#[derive(clap::Args)]
pub struct OptimizeArgs {
    #[arg(long)]
    db: String,
}

/// Export a table to a file for training pipelines.
#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    db: String,
    /// Table to export (`sids` and `sid_codebooks` exist once `medley sid train` ran).
    #[arg(long, default_value = "media", value_parser = table_name())]
    table: TableName,
    /// Output format.
    #[arg(long, default_value = "parquet", value_parser = ["parquet"])]
    format: String,
    /// Output file.
    out: PathBuf,
}

#[derive(clap::Subcommand)]
pub enum PipelineCommand {
    /// Check a pipeline file (keys, values, that its models are set up); exit 2 if it is wrong.
    Check { file: PathBuf },
}

pub fn pipeline(home: &medley_models::ModelHome, c: PipelineCommand) -> Result<ExitCode> {
    match c {
        PipelineCommand::Check { file } => {
            let config = crate::index::load_pipeline(home, Some(&file))?;
            let s = config.stages;
            let clip = config.models.clip.as_deref().map(|id| format!(", image-text model {id}")).unwrap_or_default();
            println!(
                "{}: ok (pipeline {}, sampler {}, stages: vision {}, audio {}, music {}, speech {}{clip})",
                file.display(),
                config.pipeline.name,
                config.sampler.video,
                s.vision,
                s.audio,
                s.music,
                s.speech
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn optimize(a: OptimizeArgs) -> Result<ExitCode> {
    let store = open_db(&a.db).await?;
    for line in store.optimize().await? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(a: ExportArgs) -> Result<ExitCode> {
    let store = open_db(&a.db).await?;
    // A table that is not there, or one of another shape, exits 2 (see `main`).
    let rows = store.export_parquet(a.table, &a.out).await?;
    println!("{rows} rows of {} written to {} ({})", a.table, a.out.display(), a.format);
    Ok(ExitCode::SUCCESS)
}

/// `--table`: one of the store's table names, listed by `--help`.
fn table_name() -> impl TypedValueParser<Value = TableName> {
    PossibleValuesParser::new(TableName::NAMES).try_map(|name| name.parse::<TableName>())
}
