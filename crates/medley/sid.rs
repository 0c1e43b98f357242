//! `medley sid train|assign|stats`: Semantic IDs over the items' content vectors.

use std::process::ExitCode;

use anyhow::{Context, Result};
use medley_fuse::{
    Codebook, Codes, Fusion, FusionSpec, TrainConfig, prefix_ngrams, sid_stats, sid_string, train, unique_suffixes,
};
use medley_store::{CodebookRow, SidRow, Store};

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
}

/// The content vector: each modality L2-normalised and weighted, missing ones left out with
/// the remaining weights rescaled (see medley-fuse), concatenated.
const MODALITIES: [(&str, f32); 3] = [("visual", 1.0), ("audio", 0.5), ("bridge", 0.5)];

async fn content_vectors(store: &Store) -> Result<(Vec<String>, Vec<f32>, usize, Fusion)> {
    let columns: Vec<&str> = MODALITIES.iter().map(|m| m.0).collect();
    let widths = store.vector_widths(&columns).await?;
    let spec = FusionSpec::new(MODALITIES.iter().zip(&widths).map(|((name, w), d)| (*name, *d, *w)));
    let fusion = Fusion::concat_only(spec);
    let items = store.item_vectors(&columns).await?;
    let mut hashes = Vec::with_capacity(items.len());
    let mut flat = Vec::with_capacity(items.len() * fusion.dim());
    for item in &items {
        let blocks: Vec<Option<&[f32]>> = item.vectors.iter().map(|v| v.as_deref()).collect();
        // Items with no vector at all have no content to quantise; they get no ID.
        if let Ok(v) = fusion.content(&blocks) {
            hashes.push(item.content_hash.clone());
            flat.extend(v);
        }
    }
    let dim = fusion.dim();
    Ok((hashes, flat, dim, fusion))
}

fn sid_rows(hashes: &[String], codes: &Codes, suffixes: &[u32], version: &str) -> Vec<SidRow> {
    hashes
        .iter()
        .enumerate()
        .map(|(i, h)| SidRow {
            content_hash: h.clone(),
            codebook_version: version.to_string(),
            codes: codes.get(i).iter().map(|&c| i32::from(c)).collect(),
            suffix: suffixes[i],
            sid: sid_string(codes.get(i), suffixes[i]),
            ngrams: prefix_ngrams(codes.get(i)),
        })
        .collect()
}

pub async fn run(c: SidCommand) -> Result<ExitCode> {
    match c {
        SidCommand::Train(a) => train_cmd(a).await,
        SidCommand::Assign { db } => assign_cmd(&db).await,
        SidCommand::Stats { db, nn_sample, json } => stats_cmd(&db, nn_sample, json).await,
    }
}

async fn train_cmd(a: TrainArgs) -> Result<ExitCode> {
    let store = open_db(&a.db).await?;
    let (hashes, flat, dim, fusion) = content_vectors(&store).await?;
    if hashes.len() < a.codes as usize {
        return Err(config_err(anyhow::anyhow!(
            "--codes {} is more than the {} items with vectors in {}",
            a.codes,
            hashes.len(),
            a.db
        )));
    }
    let mut config = TrainConfig::new(a.levels as usize, a.codes as usize);
    config.balanced = a.balanced;
    config.seed = a.seed;
    config.iters = a.iters as usize;
    let codebook = train(&flat, dim, &config)?;
    let codes = codebook.assign(&flat)?;
    let suffixes = unique_suffixes(&codes);
    store
        .save_codebook(&CodebookRow {
            version: codebook.version.clone(),
            levels: a.levels,
            codes: a.codes,
            dim: dim as u32,
            report_json: serde_json::to_string(&codebook.report)?,
            codebook_json: codebook.to_json()?,
            fusion_json: fusion.to_json()?,
            created_at_us: now_us(),
        })
        .await?;
    store.save_sids(&sid_rows(&hashes, &codes, &suffixes, &codebook.version)).await?;
    let mse = codebook.report.levels.last().map_or(0.0, |l| l.relative_mse);
    println!(
        "codebook {} ({} levels x {} codes over {} items, {}-d): relative MSE {:.4}; {} IDs written to `sids`",
        codebook.version,
        a.levels,
        a.codes,
        hashes.len(),
        dim,
        mse,
        hashes.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn latest(store: &Store, db: &str) -> Result<Codebook> {
    let (_, json, _) = store.latest_codebook().await?.ok_or_else(|| {
        config_err(anyhow::anyhow!("no codebook in {db}; train one with `medley sid train --db {db}`"))
    })?;
    Codebook::from_json(&json).context("stored codebook")
}

async fn assign_cmd(db: &str) -> Result<ExitCode> {
    let store = open_db(db).await?;
    let codebook = latest(&store, db).await?;
    let existing = store.sids(&codebook.version).await?;
    let (hashes, flat, dim, _) = content_vectors(&store).await?;
    let mut counter = medley_fuse::SuffixCounter::default();
    let done: std::collections::HashSet<&str> = existing.iter().map(|r| r.content_hash.as_str()).collect();
    for r in &existing {
        let codes: Vec<u16> = r.codes.iter().map(|&c| c as u16).collect();
        counter.observe(&codes, r.suffix);
    }
    let new: Vec<usize> = (0..hashes.len()).filter(|&i| !done.contains(hashes[i].as_str())).collect();
    let vectors: Vec<f32> = new.iter().flat_map(|&i| flat[i * dim..(i + 1) * dim].iter().copied()).collect();
    let codes = codebook.assign(&vectors)?;
    let suffixes: Vec<u32> = codes.iter().map(|c| counter.next(c)).collect();
    let new_hashes: Vec<String> = new.iter().map(|&i| hashes[i].clone()).collect();
    store.save_sids(&sid_rows(&new_hashes, &codes, &suffixes, &codebook.version)).await?;
    println!("{} items assigned with codebook {} ({} already had IDs)", new.len(), codebook.version, existing.len());
    Ok(ExitCode::SUCCESS)
}

async fn stats_cmd(db: &str, nn_sample: usize, json: bool) -> Result<ExitCode> {
    let store = open_db(db).await?;
    let codebook = latest(&store, db).await?;
    let (_, flat, _, _) = content_vectors(&store).await?;
    let codes = codebook.assign(&flat)?;
    let suffixes = unique_suffixes(&codes);
    let stats = sid_stats(&codebook, &flat, &codes, &suffixes, nn_sample, 0)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        println!("codebook {}\n{stats}", codebook.version);
    }
    Ok(ExitCode::SUCCESS)
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
