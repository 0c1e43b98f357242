use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, ListArray, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

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
            println!(
                "{}: ok (pipeline {}, sampler {}, stages: vision {}, audio {}, music {}, speech {})",
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
    let (schema, batches) = store.scan(&a.table).await.map_err(config_err)?;
    let schema = parquet_schema(&schema);
    let batches = batches.iter().map(|b| parquet_batch(&schema, b)).collect::<Result<Vec<_>, _>>()?;
    // Written to a temporary name and renamed, so a reader never sees half a file.
    let tmp = a.out.with_extension("partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
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

/// Vector columns go to Parquet as variable-length lists: Parquet has no fixed-size list, and
/// readers (pyarrow) reject a null fixed-size list written with no values.
fn parquet_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::FixedSizeList(item, _) => Field::new(f.name(), DataType::List(item.clone()), f.is_nullable()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn parquet_batch(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| match c.as_any().downcast_ref::<FixedSizeListArray>() {
            Some(fixed) => {
                let DataType::FixedSizeList(item, n) = fixed.data_type() else { unreachable!() };
                let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(*n as usize, fixed.len()));
                Ok(Arc::new(ListArray::try_new(item.clone(), offsets, fixed.values().clone(), fixed.nulls().cloned())?)
                    as ArrayRef)
            }
            None => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
