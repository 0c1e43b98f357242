//! `medley sid stats`: how good a set of Semantic IDs is.

use std::collections::HashSet;
use std::fmt;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::kernel::Packed;
use crate::sid::{Codebook, Codes};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SidStats {
    pub n: usize,
    pub codebook_version: String,
    /// `sum ||x - x_hat||^2 / sum ||x - mean||^2` with all L levels.
    pub relative_mse: f64,
    /// Per level: codes in use and perplexity over these items.
    pub levels: Vec<LevelUsage>,
    /// Distinct L-code tuples.
    pub distinct_codes: usize,
    /// Share of items that collide before the extra code: `1 - distinct / n` (the items whose
    /// extra code is not 0).
    pub collision_rate: f64,
    /// Share of items whose full ID (codes + extra code) is unique; 1.0 when the extra codes are
    /// right.
    pub unique_share: f64,
    /// Items whose exact nearest neighbour (L2 over all items, itself excluded) was searched.
    pub nn_sample: usize,
    /// `nn_prefix_share[i]`: share of sampled items whose nearest neighbour has the same first
    /// `i + 1` codes.
    pub nn_prefix_share: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelUsage {
    pub used: usize,
    pub codes: usize,
    pub perplexity: f64,
}

/// Compute the report. `extra` are the stored uniqueness codes (same order as `codes`);
/// `nn_sample` items (chosen with `seed`) get an exact nearest-neighbour search.
pub fn sid_stats(
    cb: &Codebook,
    vectors: &[f32],
    codes: &Codes,
    extra: &[u32],
    nn_sample: usize,
    seed: u64,
) -> Result<SidStats> {
    let n = codes.len();
    if extra.len() != n {
        return Err(Error::Shape(format!("{} extra codes for {n} items", extra.len())));
    }
    let relative_mse = cb.relative_mse(vectors, codes)?;
    let k = cb.codes();
    let levels = (0..codes.levels)
        .map(|l| {
            let mut counts = vec![0u64; k];
            for c in codes.iter() {
                counts[c[l] as usize] += 1;
            }
            let h: f64 = counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n as f64).map(|p| -p * p.ln()).sum();
            LevelUsage { used: counts.iter().filter(|&&c| c > 0).count(), codes: k, perplexity: h.exp() }
        })
        .collect();
    let distinct_codes = codes.iter().collect::<HashSet<_>>().len();
    let full: HashSet<(&[u16], u32)> = codes.iter().zip(extra.iter().copied()).collect();
    let nn = nearest_neighbours(vectors, cb.dim, nn_sample, seed);
    let nn_prefix_share = (1..=codes.levels)
        .map(|p| {
            let same = nn.iter().filter(|&&(q, m)| codes.get(q)[..p] == codes.get(m)[..p]).count();
            if nn.is_empty() { 0.0 } else { same as f64 / nn.len() as f64 }
        })
        .collect();
    Ok(SidStats {
        n,
        codebook_version: cb.version.clone(),
        relative_mse,
        levels,
        distinct_codes,
        collision_rate: if n == 0 { 0.0 } else { 1.0 - distinct_codes as f64 / n as f64 },
        unique_share: if n == 0 { 1.0 } else { full.len() as f64 / n as f64 },
        nn_sample: nn.len(),
        nn_prefix_share,
    })
}

/// (query, its nearest other item) for a seeded sample of items; exact L2, ties to the lower index.
fn nearest_neighbours(vectors: &[f32], d: usize, sample: usize, seed: u64) -> Vec<(usize, usize)> {
    let n = vectors.len() / d;
    if n < 2 || sample == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut qs = rand::seq::index::sample(&mut rng, n, sample.min(n)).into_vec();
    qs.sort_unstable();
    let q: Vec<f32> = qs.iter().flat_map(|&i| vectors[i * d..(i + 1) * d].iter().copied()).collect();
    let packed = Packed::new(&q, qs.len(), d);
    let kpad = packed.kpad();
    const B: usize = 512;
    let partial: Vec<Vec<(f32, u32)>> = vectors
        .par_chunks(B * d)
        .enumerate()
        .map_init(
            || vec![0f32; B * kpad],
            |buf, (bi, x)| {
                let rows = x.len() / d;
                packed.dots(x, rows, buf);
                let mut best = vec![(f32::INFINITY, u32::MAX); qs.len()];
                for r in 0..rows {
                    let item = bi * B + r;
                    let xn: f32 = x[r * d..(r + 1) * d].iter().map(|v| v * v).sum();
                    for (j, b) in best.iter_mut().enumerate() {
                        if qs[j] == item {
                            continue;
                        }
                        let dist = xn + packed.norms[j] - 2.0 * buf[r * kpad + j];
                        if dist < b.0 {
                            *b = (dist, item as u32);
                        }
                    }
                }
                best
            },
        )
        .collect();
    (0..qs.len())
        .map(|j| {
            let mut b = (f32::INFINITY, u32::MAX);
            for p in &partial {
                if p[j].0 < b.0 {
                    b = p[j];
                }
            }
            (qs[j], b.1 as usize)
        })
        .collect()
}

impl fmt::Display for SidStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "items                 {}", self.n)?;
        writeln!(f, "codebook              {}", self.codebook_version)?;
        writeln!(f, "relative MSE          {:.4}", self.relative_mse)?;
        for (l, u) in self.levels.iter().enumerate() {
            writeln!(
                f,
                "level {}               {}/{} codes used, perplexity {:.1}",
                l + 1,
                u.used,
                u.codes,
                u.perplexity
            )?;
        }
        writeln!(
            f,
            "distinct codes        {} (collision rate before the extra code {:.4})",
            self.distinct_codes, self.collision_rate
        )?;
        writeln!(f, "unique IDs            {:.4}", self.unique_share)?;
        let shares: Vec<String> = self
            .nn_prefix_share
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} code{}: {:.3}", i + 1, if i == 0 { "" } else { "s" }, s))
            .collect();
        write!(f, "nearest neighbour shares (n={}) {}", self.nn_sample, shares.join(", "))
    }
}
