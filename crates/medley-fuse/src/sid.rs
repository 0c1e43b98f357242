//! Semantic IDs by residual k-means (RQ-KMeans): training, assignment, the uniqueness code.

use std::collections::HashMap;
use std::fmt::Write as _;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kernel::Packed;
use crate::kmeans::{self, Params};
use crate::{Error, Result, VERSION_DIGITS};

/// Format tag of a serialised [`Codebook`]; bumped when the layout or the meaning changes.
pub const CODEBOOK_FORMAT: &str = "medley-sid-rqkmeans/1";

/// How to train a codebook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Number of levels `L` (1..=8).
    pub levels: usize,
    /// Codes per level `K` (2..=65536).
    pub codes: usize,
    /// Capacity-constrained assignment during Lloyd iterations (each cluster holds at most
    /// `ceil(n / K)` points). Assignment of new items is always to the nearest centroid.
    pub balanced: bool,
    pub seed: u64,
    /// Lloyd iterations per level.
    pub iters: usize,
    /// k-means++ seeding runs on a random sample of this many rows (at least `K`).
    pub init_sample: usize,
}

impl TrainConfig {
    pub fn new(levels: usize, codes: usize) -> Self {
        TrainConfig { levels, codes, balanced: false, seed: 0, iters: 20, init_sample: 64 * codes }
    }
}

/// What training found, per level and overall.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub n: usize,
    /// `sum ||x - mean||^2` over the training set: the denominator of every relative MSE.
    pub total_variance: f64,
    pub levels: Vec<LevelReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelReport {
    /// `sum ||x - x_hat||^2 / sum ||x - mean||^2` after this level (x_hat: sum of the
    /// centroids of levels 1..=this).
    pub relative_mse: f64,
    /// Codes used by at least one training item.
    pub used: usize,
    /// `exp(entropy)` of the code distribution (K when perfectly even).
    pub perplexity: f64,
    pub smallest: u64,
    pub largest: u64,
}

/// A trained RQ-KMeans codebook. Serialises to JSON (`serde_json`); f32 values round-trip exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Codebook {
    /// [`CODEBOOK_FORMAT`].
    pub format: String,
    /// Content hash (BLAKE3, 16 hex digits) of the format, shape and centroids: two codebooks
    /// with the same version assign the same codes.
    pub version: String,
    pub dim: usize,
    pub config: TrainConfig,
    /// `levels` blocks of `codes x dim` row-major centroids.
    pub centroids: Vec<Vec<f32>>,
    pub report: TrainReport,
}

/// Codes of `n` items, `levels` per item, row-major.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Codes {
    pub levels: usize,
    pub data: Vec<u16>,
}

impl Codes {
    pub fn len(&self) -> usize {
        self.data.len() / self.levels.max(1)
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn get(&self, i: usize) -> &[u16] {
        &self.data[i * self.levels..(i + 1) * self.levels]
    }
    pub fn iter(&self) -> impl Iterator<Item = &[u16]> {
        self.data.chunks_exact(self.levels.max(1))
    }
}

fn check_shape(vectors: &[f32], d: usize) -> Result<usize> {
    if d == 0 || !vectors.len().is_multiple_of(d) {
        return Err(Error::Shape(format!("{} values are not rows of {d}", vectors.len())));
    }
    if let Some(i) = vectors.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(i / d));
    }
    Ok(vectors.len() / d)
}

fn level_report(counts: &[u64], rel: f64) -> LevelReport {
    let n: u64 = counts.iter().sum();
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum();
    LevelReport {
        relative_mse: rel,
        used: counts.iter().filter(|&&c| c > 0).count(),
        perplexity: h.exp(),
        smallest: counts.iter().copied().min().unwrap_or(0),
        largest: counts.iter().copied().max().unwrap_or(0),
    }
}

/// `sum ||x - mean||^2`, in f64.
pub(crate) fn total_variance(vectors: &[f32], d: usize) -> f64 {
    let n = vectors.len() / d;
    let mut mean = vec![0f64; d];
    for row in vectors.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    vectors
        .par_chunks(d * 1024)
        .map(|rows| {
            rows.chunks_exact(d)
                .map(|r| r.iter().zip(&mean).map(|(&v, m)| (v as f64 - m).powi(2)).sum::<f64>())
                .sum::<f64>()
        })
        .collect::<Vec<_>>()
        .iter()
        .sum()
}

/// Train residual k-means on `vectors` (`n x d`, row-major). Same data and config give a
/// bit-identical codebook on the same CPU kind, whatever the number of threads.
pub fn train(vectors: &[f32], d: usize, config: &TrainConfig) -> Result<Codebook> {
    let n = check_shape(vectors, d)?;
    if !(1..=8).contains(&config.levels) || !(2..=65536).contains(&config.codes) {
        return Err(Error::Config(format!(
            "levels must be 1..=8 and codes 2..=65536, got {} and {}",
            config.levels, config.codes
        )));
    }
    if n < config.codes {
        return Err(Error::Config(format!("{n} vectors cannot train {} codes", config.codes)));
    }
    let total = total_variance(vectors, d);
    let mut residual = vectors.to_vec();
    let mut centroids = Vec::with_capacity(config.levels);
    let mut levels = Vec::with_capacity(config.levels);
    for l in 0..config.levels {
        let p = Params {
            k: config.codes,
            iters: config.iters,
            balanced: config.balanced,
            seed: config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(l as u64),
            init_sample: config.init_sample,
        };
        let lv = kmeans::train_level(&residual, d, &p);
        residual.par_chunks_mut(d).zip(lv.assign.par_iter()).for_each(|(r, &a)| {
            let c = &lv.centroids[a as usize * d..(a as usize + 1) * d];
            r.iter_mut().zip(c).for_each(|(x, y)| *x -= y);
        });
        let err: f64 = residual
            .par_chunks(d * 1024)
            .map(|b| b.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
            .collect::<Vec<_>>()
            .iter()
            .sum();
        levels.push(level_report(&lv.counts, if total > 0.0 { err / total } else { 0.0 }));
        centroids.push(lv.centroids);
    }
    let mut cb = Codebook {
        format: CODEBOOK_FORMAT.into(),
        version: String::new(),
        dim: d,
        config: config.clone(),
        centroids,
        report: TrainReport { n, total_variance: total, levels },
    };
    cb.version = cb.content_hash();
    Ok(cb)
}

impl Codebook {
    pub fn levels(&self) -> usize {
        self.centroids.len()
    }
    pub fn codes(&self) -> usize {
        self.config.codes
    }

    fn content_hash(&self) -> String {
        let mut h = medley_core::ContentHasher::default();
        h.update(self.format.as_bytes());
        h.update(&(self.dim as u64).to_le_bytes());
        h.update(&(self.config.codes as u64).to_le_bytes());
        for c in &self.centroids {
            h.update(&(c.len() as u64).to_le_bytes());
            for v in c {
                h.update(&v.to_le_bytes());
            }
        }
        h.finish_short(VERSION_DIGITS)
    }

    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parse and check a serialised codebook (format, shapes, version hash).
    pub fn from_json(s: &str) -> Result<Self> {
        let cb: Codebook = serde_json::from_str(s)?;
        if cb.format != CODEBOOK_FORMAT {
            return Err(Error::Format(format!(
                "codebook format {:?}, this build reads {CODEBOOK_FORMAT:?}",
                cb.format
            )));
        }
        if cb.centroids.iter().any(|c| c.len() != cb.config.codes * cb.dim) {
            return Err(Error::Format("centroid block of the wrong size".into()));
        }
        if cb.content_hash() != cb.version {
            return Err(Error::Format(format!("codebook version {} does not match its content", cb.version)));
        }
        Ok(cb)
    }

    /// Nearest-centroid codes, level by level on the residual. Deterministic per item: an item
    /// assigned twice (alone or in any batch) gets the same codes.
    pub fn assign(&self, vectors: &[f32]) -> Result<Codes> {
        let d = self.dim;
        let n = check_shape(vectors, d)?;
        let levels = self.levels();
        let packed: Vec<Packed> = self.centroids.iter().map(|c| Packed::new(c, self.config.codes, d)).collect();
        let kpad = packed.first().map_or(0, Packed::kpad);
        const B: usize = 256;
        let mut data = vec![0u16; n * levels];
        vectors.par_chunks(B * d).zip(data.par_chunks_mut(B * levels)).for_each_init(
            || (vec![0f32; B * kpad], vec![0f32; B * d]),
            |(buf, res), (x, out)| {
                let rows = x.len() / d;
                res[..x.len()].copy_from_slice(x);
                for (l, p) in packed.iter().enumerate() {
                    p.dots(&res[..rows * d], rows, buf);
                    for r in 0..rows {
                        let o = &buf[r * kpad..(r + 1) * kpad];
                        let (mut best, mut bi) = (f32::INFINITY, 0usize);
                        for (j, (&dot, &nrm)) in o.iter().zip(&p.norms).enumerate() {
                            let v = nrm - 2.0 * dot;
                            if v < best {
                                best = v;
                                bi = j;
                            }
                        }
                        out[r * levels + l] = bi as u16;
                        let c = &self.centroids[l][bi * d..(bi + 1) * d];
                        res[r * d..(r + 1) * d].iter_mut().zip(c).for_each(|(a, b)| *a -= b);
                    }
                }
            },
        );
        Ok(Codes { levels, data })
    }

    /// The sum of the centroids named by each item's codes.
    pub fn reconstruct(&self, codes: &Codes) -> Result<Vec<f32>> {
        let d = self.dim;
        if codes.levels != self.levels() {
            return Err(Error::Shape(format!(
                "{} levels of codes for a {}-level codebook",
                codes.levels,
                self.levels()
            )));
        }
        if let Some(&c) = codes.data.iter().find(|&&c| c as usize >= self.config.codes) {
            return Err(Error::Shape(format!("code {c} out of range")));
        }
        let mut out = vec![0f32; codes.len() * d];
        out.par_chunks_mut(d).zip(codes.data.par_chunks(codes.levels)).for_each(|(o, cs)| {
            for (l, &c) in cs.iter().enumerate() {
                let cen = &self.centroids[l][c as usize * d..(c as usize + 1) * d];
                o.iter_mut().zip(cen).for_each(|(a, b)| *a += b);
            }
        });
        Ok(out)
    }

    /// `sum ||x - x_hat||^2 / sum ||x - mean||^2` of `vectors` under `codes`.
    pub fn relative_mse(&self, vectors: &[f32], codes: &Codes) -> Result<f64> {
        let d = self.dim;
        let n = check_shape(vectors, d)?;
        if codes.len() != n {
            return Err(Error::Shape(format!("{} codes for {n} vectors", codes.len())));
        }
        let rec = self.reconstruct(codes)?;
        let err: f64 = vectors
            .par_chunks(d * 1024)
            .zip(rec.par_chunks(d * 1024))
            .map(|(a, b)| a.iter().zip(b).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum::<f64>())
            .collect::<Vec<_>>()
            .iter()
            .sum();
        let total = total_variance(vectors, d);
        Ok(if total > 0.0 { err / total } else { 0.0 })
    }
}

/// The TIGER uniqueness code: for each item in order, how many earlier items have the same L
/// codes. Appended as one more level, it makes every ID unique.
pub fn unique_suffixes(codes: &Codes) -> Vec<u32> {
    let mut c = SuffixCounter::default();
    codes.iter().map(|cs| c.next(cs)).collect()
}

/// Incremental form of [`unique_suffixes`]: seed it with the IDs already stored, then call
/// [`SuffixCounter::next`] for each new item, in index order.
#[derive(Clone, Debug, Default)]
pub struct SuffixCounter {
    seen: HashMap<Vec<u16>, u32>,
}

impl SuffixCounter {
    /// Record an existing ID (codes and its stored suffix) so new items count past it.
    pub fn observe(&mut self, codes: &[u16], suffix: u32) {
        let e = self.seen.entry(codes.to_vec()).or_insert(0);
        *e = (*e).max(suffix + 1);
    }
    /// The suffix for a new item with these codes.
    pub fn next(&mut self, codes: &[u16]) -> u32 {
        let e = self.seen.entry(codes.to_vec()).or_insert(0);
        *e += 1;
        *e - 1
    }
}

/// The readable ID: codes then the suffix, dash-separated (`12-7-201-0`).
pub fn sid_string(codes: &[u16], suffix: u32) -> String {
    let mut s = String::with_capacity(codes.len() * 4 + 2);
    for c in codes {
        let _ = write!(s, "{c}-");
    }
    let _ = write!(s, "{suffix}");
    s
}

/// Inverse of [`sid_string`].
pub fn parse_sid(s: &str) -> Result<(Vec<u16>, u32)> {
    let bad = || Error::Format(format!("not a semantic ID: {s:?}"));
    let (codes, last) = s.rsplit_once('-').ok_or_else(bad)?;
    let suffix = last.parse().map_err(|_| bad())?;
    let codes = codes.split('-').map(|c| c.parse().map_err(|_| bad())).collect::<Result<Vec<u16>>>()?;
    Ok((codes, suffix))
}
