//! `medley models add|list|check`: bring a Hugging Face ONNX export (optimum or
//! transformers.js layout) into the model cache, list the cache, re-run a model's smoke check.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use medley_models::import::{self, AddOptions};
use medley_models::{ModelHome, Runtime};

use crate::config_err;

#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// Add an exported model folder (config.json + ONNX graphs, optimum or transformers.js
    /// layout) to the cache: writes its model.toml, smoke-checks it; exit 2 if refused.
    Add {
        /// The export folder (e.g. what `optimum-cli export onnx --model openai/clip-vit-base-patch32 DIR` wrote).
        dir: PathBuf,
        /// The id in the cache, used in pipeline files [default: the folder's name].
        #[arg(long)]
        id: Option<String>,
        /// Only one side of a dual model: `image`/`text` for CLIP and SigLIP, `audio`/`text`
        /// for CLAP [default: the family's role].
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every model in the cache: role, source, size, smoke-check status.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Re-run a model's smoke check and record the result; exit 1 if it fails.
    Check {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(home: &ModelHome, c: ModelsCommand) -> Result<ExitCode> {
    match c {
        ModelsCommand::Add { dir, id, role, json } => {
            let rt = Runtime::load(home).map_err(config_err)?;
            let added = import::add(&rt, home, &dir, &AddOptions { id, role }).map_err(config_err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&added)?);
            } else {
                println!(
                    "added {} (role {}, model_type {}, {} layout) at {}",
                    added.id,
                    added.role,
                    added.model_type,
                    added.layout,
                    added.dir.display()
                );
                for line in &added.check.lines {
                    println!("  check: {line}");
                }
                println!("pipeline keys: {}", added.pipeline_keys.join(", "));
                println!("  e.g. [models] {} = \"{}\"", key_name(&added.pipeline_keys), added.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::List { json } => {
            let models = import::list(home).map_err(config_err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&models)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<22} {:<16} {:>10}  {:<8} source", "id", "role", "size", "check");
            for m in &models {
                let check = m.check.as_ref().map(|c| c.status.as_str()).unwrap_or("-");
                println!("{:<22} {:<16} {:>10}  {:<8} {}", m.id, m.role, human(m.bytes), check, m.source);
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Check { id, json } => {
            let rt = Runtime::load(home).map_err(config_err)?;
            let report = import::check(&rt, home, &id).map_err(config_err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{id}: {}", report.status);
                for line in &report.lines {
                    println!("  {line}");
                }
                if let Some(e) = &report.error {
                    println!("  error: {e}");
                }
            }
            Ok(if report.status == "failed" { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
    }
}

/// The first pipeline key without its note, for the example line.
fn key_name(keys: &[String]) -> String {
    keys.first()
        .and_then(|k| k.split_whitespace().next())
        .map(|k| k.trim_start_matches("models.").to_string())
        .unwrap_or_else(|| "image".into())
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}
