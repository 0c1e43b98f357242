//! Semantic IDs over fused content vectors: training a codebook (with its fusion projection
//! and piece model) on the items in the table, and assigning IDs to items that have none —
//! after every index run when a codebook exists, and by `medley sid assign`.

use std::collections::HashSet;

use medley_core::now_us;
use medley_fuse::{
    Codebook, Fusion, FusionSpec, Modality, SidPieceModel, SuffixCounter, TrainConfig, prefix_ngrams, sid_string,
    unique_suffixes,
};
use medley_store::{CodebookRow, ItemVectors, MediaRow, SidRow, Store, StoreError};

use crate::config::FusionConfig;

#[derive(Debug, thiserror::Error)]
pub enum SidError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("semantic IDs: {0}")]
    Fuse(#[from] medley_fuse::Error),
    #[error("{wanted} codes per level need at least as many items with vectors; the table has {items}")]
    TooFewItems { wanted: usize, items: usize },
    #[error("the stored codebook {version} cannot be read: {message}")]
    Stored { version: String, message: String },
}

/// What [`train_sids`] built and wrote.
#[derive(Debug)]
pub struct TrainedSids {
    pub codebook: Codebook,
    pub fusion: Fusion,
    /// Items that got an ID (items with none of the fused columns get none).
    pub items: usize,
    /// Vocabulary of the piece model.
    pub piece_vocab: usize,
}

/// Fit the fusion projection and train a codebook on every item's content vector, then write
/// the codebook (with fusion and piece model) and every item's ID, pieces and content vector.
pub async fn train_sids(
    store: &Store,
    fusion: &FusionConfig,
    config: &TrainConfig,
    piece_vocab: u32,
) -> Result<TrainedSids, SidError> {
    let columns: Vec<&str> = fusion.weights.keys().map(String::as_str).collect();
    let widths = store.vector_widths(&columns).await?;
    let spec = FusionSpec {
        modalities: columns
            .iter()
            .zip(&widths)
            .filter(|(_, d)| **d > 0)
            .map(|(c, d)| Modality { name: c.to_string(), dim: *d, weight: fusion.weights[*c] })
            .collect(),
    };
    let used: Vec<&str> = spec.modalities.iter().map(|m| m.name.as_str()).collect();
    let items = store.item_vectors(&used).await?;
    let blocks: Vec<Vec<Option<&[f32]>>> =
        items.iter().map(|it| it.vectors.iter().map(|v| v.as_deref()).collect()).collect();
    let form = fusion.form.content_form();
    let fused = if fusion.dim == 0 {
        Fusion::concat_only(spec)
    } else {
        Fusion::fit(spec, &blocks, fusion.dim.min(items.len().max(1)), form)?
    };
    let (hashes, flat) =
        contents(&fused, items.iter().zip(&blocks).map(|(it, b)| (it.content_hash.as_str(), b.as_slice())));
    if hashes.len() < config.codes {
        return Err(SidError::TooFewItems { wanted: config.codes, items: hashes.len() });
    }
    let codebook = medley_fuse::train(&flat, fused.dim(), config)?;
    let codes = codebook.assign(&flat)?;
    let suffixes = unique_suffixes(&codes);
    let vocab = (8 * config.codes as u32).max(piece_vocab);
    let pieces = SidPieceModel::train(codes.iter(), config.levels, config.codes, vocab)?;
    store
        .save_codebook(&CodebookRow {
            version: codebook.version.clone(),
            levels: config.levels as u32,
            codes: config.codes as u32,
            dim: fused.dim() as u32,
            report_json: serde_json::to_string(&codebook.report).map_err(medley_fuse::Error::from)?,
            codebook_json: codebook.to_json()?,
            fusion_json: fused.to_json()?,
            pieces_json: Some(pieces.to_json()?),
            created_at_us: now_us(),
        })
        .await?;
    let mut rows = Vec::with_capacity(hashes.len());
    for (i, hash) in hashes.iter().enumerate() {
        let content = flat[i * fused.dim()..(i + 1) * fused.dim()].to_vec();
        rows.push(sid_row(hash, &codebook.version, codes.get(i), suffixes[i], Some(&pieces), content)?);
    }
    store.save_sids(&rows).await?;
    let piece_vocab = pieces.vocab_size();
    Ok(TrainedSids { items: rows.len(), codebook, fusion: fused, piece_vocab })
}

/// The latest codebook with what assignment needs: its fusion, piece model, and the IDs
/// already given (so new IDs count past them and an item keeps the ID it has).
pub struct SidAssigner {
    codebook: Codebook,
    fusion: Fusion,
    pieces: Option<SidPieceModel>,
    counter: SuffixCounter,
    assigned: HashSet<String>,
}

impl SidAssigner {
    /// `None` when the table has no codebook yet.
    pub async fn load(store: &Store) -> Result<Option<Self>, SidError> {
        let Some(stored) = store.latest_codebook().await? else { return Ok(None) };
        let bad = |e: medley_fuse::Error| SidError::Stored { version: stored.version.clone(), message: e.to_string() };
        let codebook = Codebook::from_json(&stored.codebook_json).map_err(bad)?;
        let fusion = Fusion::from_json(&stored.fusion_json).map_err(bad)?;
        let pieces = stored.pieces_json.as_deref().map(SidPieceModel::from_json).transpose().map_err(bad)?;
        let mut counter = SuffixCounter::default();
        let mut assigned = HashSet::new();
        for r in store.sids(&codebook.version).await? {
            let codes: Vec<u16> = r.codes.iter().map(|&c| c as u16).collect();
            counter.observe(&codes, r.suffix);
            assigned.insert(r.content_hash);
        }
        Ok(Some(Self { codebook, fusion, pieces, counter, assigned }))
    }

    /// Whether the item has an ID under this codebook.
    pub fn has(&self, content_hash: &str) -> bool {
        self.assigned.contains(content_hash)
    }

    pub fn version(&self) -> &str {
        &self.codebook.version
    }

    pub fn codebook(&self) -> &Codebook {
        &self.codebook
    }

    /// Content vectors (row-major) of the items that have any fused column, with their hashes.
    pub fn content_vectors(&self, items: &[ItemVectors]) -> (Vec<String>, Vec<f32>) {
        item_contents(&self.fusion, items)
    }

    /// The `media` columns the content vector is fused from.
    pub fn columns(&self) -> Vec<&str> {
        self.fusion.spec.modalities.iter().map(|m| m.name.as_str()).collect()
    }

    /// IDs for the items that have none under this codebook, in the order given (which is
    /// the order the uniqueness suffix counts in). Items with none of the columns get none.
    pub fn assign(&mut self, items: &[ItemVectors]) -> Result<Vec<SidRow>, SidError> {
        let blocks =
            items.iter().map(|it| (it.content_hash.as_str(), it.vectors.iter().map(|v| v.as_deref()).collect()));
        self.assign_blocks(blocks.collect())
    }

    /// [`SidAssigner::assign`] for rows just indexed.
    pub fn assign_rows(&mut self, rows: &[MediaRow]) -> Result<Vec<SidRow>, SidError> {
        let columns = self.columns().iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let blocks = rows.iter().map(|r| (r.content_hash.as_str(), columns.iter().map(|c| r.vector(c)).collect()));
        self.assign_blocks(blocks.collect())
    }

    /// Shared by both: `(content hash, one block per fused column)` per item, borrowed.
    fn assign_blocks(&mut self, items: Vec<(&str, Vec<Option<&[f32]>>)>) -> Result<Vec<SidRow>, SidError> {
        let fresh: Vec<(&str, Vec<Option<&[f32]>>)> =
            items.into_iter().filter(|(hash, _)| !self.assigned.contains(*hash)).collect();
        let (hashes, flat) = contents(&self.fusion, fresh.iter().map(|(h, b)| (*h, b.as_slice())));
        let codes = self.codebook.assign(&flat)?;
        let dim = self.fusion.dim();
        let mut rows = Vec::with_capacity(hashes.len());
        for (i, hash) in hashes.iter().enumerate() {
            let suffix = self.counter.next(codes.get(i));
            let content = flat[i * dim..(i + 1) * dim].to_vec();
            rows.push(sid_row(hash, &self.codebook.version, codes.get(i), suffix, self.pieces.as_ref(), content)?);
        }
        // Items without any fused column are settled too: they get no ID, now or later.
        self.assigned.extend(fresh.into_iter().map(|(hash, _)| hash.to_string()));
        Ok(rows)
    }
}

/// Content vectors of the items that have at least one fused column: (hashes, row-major).
fn contents<'a>(
    fusion: &Fusion,
    items: impl Iterator<Item = (&'a str, &'a [Option<&'a [f32]>])>,
) -> (Vec<String>, Vec<f32>) {
    let (mut hashes, mut flat) = (Vec::new(), Vec::new());
    for (hash, blocks) in items {
        if let Ok(v) = fusion.content(blocks) {
            hashes.push(hash.to_string());
            flat.extend(v);
        }
    }
    (hashes, flat)
}

/// [`contents`] of stored items.
fn item_contents(fusion: &Fusion, items: &[ItemVectors]) -> (Vec<String>, Vec<f32>) {
    let blocks: Vec<Vec<Option<&[f32]>>> =
        items.iter().map(|it| it.vectors.iter().map(|v| v.as_deref()).collect()).collect();
    contents(fusion, items.iter().zip(&blocks).map(|(it, b)| (it.content_hash.as_str(), b.as_slice())))
}

fn sid_row(
    hash: &str,
    version: &str,
    codes: &[u16],
    suffix: u32,
    pieces: Option<&SidPieceModel>,
    content: Vec<f32>,
) -> Result<SidRow, SidError> {
    Ok(SidRow {
        content_hash: hash.to_string(),
        codebook_version: version.to_string(),
        codes: codes.iter().map(|&c| i32::from(c)).collect(),
        suffix,
        sid: sid_string(codes, suffix),
        ngrams: prefix_ngrams(codes),
        pieces: pieces.map(|p| p.pieces(codes)).transpose()?.unwrap_or_default(),
        content: Some(content),
    })
}
