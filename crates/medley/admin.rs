use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::{config_err, open_db};

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
    /// Table to export: media, failures or runs.
    #[arg(long, default_value = "media")]
    table: String,
    /// Output format.
    #[arg(long, default_value = "parquet", value_parser = ["parquet"])]
    format: String,
    /// Output file.
    out: PathBuf,
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
    let (schema, batches) = store.scan(&a.table).await.map_err(config_err)?;
    // Written to a temporary name and renamed, so a reader never sees half a file.
    let tmp = a.out.with_extension("partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
    let mut rows = 0;
    for b in &batches {
        rows += b.num_rows();
        writer.write(b)?;
    }
    writer.close()?;
    std::fs::rename(&tmp, &a.out)?;
    println!("{rows} rows of {} written to {} ({})", a.table, a.out.display(), a.format);
    Ok(ExitCode::SUCCESS)
}
