//! Fusion of per-modality vectors into one `content` vector.
//!
//! 1. Each present modality block is L2-normalised and multiplied by its weight.
//! 2. Missing blocks (and blocks of zero norm) are zero; the present weights are rescaled so their
//!    squares sum to 1. The concatenation is therefore always unit-norm, whichever modalities an
//!    item has, and an item with only audio sits on the audio part of the same sphere as items
//!    with both. An item with no modality at all is an error.
//! 3. Optionally a PCA fitted on the corpus projects to a chosen dimension:
//!    - [`ContentForm::Unit`]: centred projection, then L2-normalised again;
//!    - [`ContentForm::Yt8m`]: the YouTube-8M form, PCA with whitening (unit variance per
//!      component), then 8-bit quantisation with [`YT8M_MIN`]/[`YT8M_MAX`] ([`quantize_yt8m`]).
//!
//! A fitted [`Fusion`] serialises to JSON and carries a version: a BLAKE3 hash of everything that
//! changes its output.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::linalg::top_eigen;
use crate::{Error, Result, VERSION_DIGITS};

/// Format tag of a serialised [`Fusion`].
pub const FUSION_FORMAT: &str = "medley-fusion/1";
/// The YouTube-8M quantisation range: whitened values are clipped to `[-2, 2]`.
pub const YT8M_MIN: f32 = -2.0;
pub const YT8M_MAX: f32 = 2.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Modality {
    pub name: String,
    pub dim: usize,
    pub weight: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusionSpec {
    pub modalities: Vec<Modality>,
}

impl FusionSpec {
    pub fn new(modalities: impl IntoIterator<Item = (&'static str, usize, f32)>) -> Self {
        FusionSpec {
            modalities: modalities
                .into_iter()
                .map(|(n, d, w)| Modality { name: n.into(), dim: d, weight: w })
                .collect(),
        }
    }

    /// Width of the concatenation.
    pub fn dim(&self) -> usize {
        self.modalities.iter().map(|m| m.dim).sum()
    }

    /// Normalise, weight and concatenate; `blocks[i]` is modality `i` or `None` when missing.
    /// The result has unit norm (see the module docs for missing blocks).
    pub fn concat(&self, blocks: &[Option<&[f32]>]) -> Result<Vec<f32>> {
        if blocks.len() != self.modalities.len() {
            return Err(Error::Shape(format!("{} blocks for {} modalities", blocks.len(), self.modalities.len())));
        }
        let mut norms = Vec::with_capacity(blocks.len());
        for (m, b) in self.modalities.iter().zip(blocks) {
            let norm = match b {
                Some(b) if b.len() != m.dim => {
                    return Err(Error::Shape(format!("{} is {} wide, expected {}", m.name, b.len(), m.dim)));
                }
                Some(b) if b.iter().any(|v| !v.is_finite()) => {
                    return Err(Error::Config(format!("{} has a non-finite value", m.name)));
                }
                Some(b) => b.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt(),
                None => 0.0,
            };
            norms.push(if m.weight > 0.0 && norm > 0.0 { norm } else { 0.0 });
        }
        let wsum: f64 =
            self.modalities.iter().zip(&norms).filter(|(_, n)| **n > 0.0).map(|(m, _)| (m.weight as f64).powi(2)).sum();
        if wsum <= 0.0 {
            return Err(Error::NoModality);
        }
        let mut out = Vec::with_capacity(self.dim());
        for ((m, b), &norm) in self.modalities.iter().zip(blocks).zip(&norms) {
            match b {
                Some(b) if norm > 0.0 => {
                    let s = m.weight as f64 / wsum.sqrt() / norm;
                    out.extend(b.iter().map(|&v| (v as f64 * s) as f32));
                }
                _ => out.extend(std::iter::repeat_n(0.0, m.dim)),
            }
        }
        Ok(out)
    }
}

/// A PCA projection fitted on a corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    pub dim_in: usize,
    pub dim_out: usize,
    pub mean: Vec<f32>,
    /// `dim_out x dim_in` row-major, orthonormal rows, by decreasing variance; each row's
    /// largest coordinate is positive.
    pub components: Vec<f32>,
    /// Variance of the corpus along each component.
    pub variances: Vec<f32>,
    /// Share of the corpus's total variance the components keep.
    pub explained: f64,
    /// Divide each component by `sqrt(variance + WHITEN_EPS)`.
    pub whiten: bool,
}

/// Added to each variance before whitening, so a null direction does not blow up.
pub const WHITEN_EPS: f32 = 1e-8;

impl Pca {
    /// Fit on `n x dim_in` row-major `data` (n >= 2). Covariance in f64, then the top
    /// `dim_out` eigenvectors (of the `n x n` Gram matrix instead when n < dim_in).
    /// Cost is O(n * dim_in^2) time and 8 * n * dim_in bytes: fit on a sample (a few tens of
    /// thousands of items is plenty for a 2,176-wide concatenation).
    pub fn fit(data: &[f32], dim_in: usize, dim_out: usize, whiten: bool) -> Result<Self> {
        if dim_in == 0 || !data.len().is_multiple_of(dim_in) {
            return Err(Error::Shape(format!("{} values are not rows of {dim_in}", data.len())));
        }
        let n = data.len() / dim_in;
        if n < 2 || dim_out == 0 || dim_out > dim_in.min(n) {
            return Err(Error::Config(format!("cannot fit {dim_out} components on {n} rows of {dim_in}")));
        }
        let d = dim_in;
        let mut mean = vec![0f64; d];
        for row in data.chunks_exact(d) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        // Centred data, column-major (d rows of n), so covariance entries are contiguous dots.
        let mut cols = vec![0f64; d * n];
        for (i, row) in data.chunks_exact(d).enumerate() {
            for j in 0..d {
                cols[j * n + i] = row[j] as f64 - mean[j];
            }
        }
        let denom = (n - 1) as f64;
        let (variances, components) = if n >= d {
            let mut cov = vec![0f64; d * d];
            cov.par_chunks_mut(d).enumerate().for_each(|(i, out)| {
                let ci = &cols[i * n..(i + 1) * n];
                for (j, o) in out.iter_mut().enumerate() {
                    *o = ci.iter().zip(&cols[j * n..(j + 1) * n]).map(|(a, b)| a * b).sum::<f64>() / denom;
                }
            });
            top_eigen(&cov, d, dim_out, 0x5EED)
        } else {
            // Gram trick: eigenvectors u of X X^T / (n-1) give components X^T u, normalised.
            let mut gram = vec![0f64; n * n];
            gram.par_chunks_mut(n).enumerate().for_each(|(a, out)| {
                for (b, o) in out.iter_mut().enumerate() {
                    *o = (0..d).map(|j| cols[j * n + a] * cols[j * n + b]).sum::<f64>() / denom;
                }
            });
            let (vals, us) = top_eigen(&gram, n, dim_out, 0x5EED);
            let mut comps = vec![0f64; dim_out * d];
            for (c, u) in comps.chunks_exact_mut(d).zip(us.chunks_exact(n)) {
                for (j, cj) in c.iter_mut().enumerate() {
                    *cj = cols[j * n..(j + 1) * n].iter().zip(u).map(|(a, b)| a * b).sum();
                }
                let nrm = c.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
                c.iter_mut().for_each(|v| *v /= nrm);
                let big = c.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs())).unwrap_or(0.0);
                if big < 0.0 {
                    c.iter_mut().for_each(|v| *v = -*v);
                }
            }
            (vals, comps)
        };
        let total: f64 = (0..d).map(|j| cols[j * n..(j + 1) * n].iter().map(|v| v * v).sum::<f64>() / denom).sum();
        let kept: f64 = variances.iter().map(|v| v.max(0.0)).sum();
        Ok(Pca {
            dim_in,
            dim_out,
            mean: mean.iter().map(|&m| m as f32).collect(),
            components: components.iter().map(|&c| c as f32).collect(),
            variances: variances.iter().map(|&v| v.max(0.0) as f32).collect(),
            explained: if total > 0.0 { kept / total } else { 1.0 },
            whiten,
        })
    }

    /// Project one row.
    pub fn apply(&self, x: &[f32]) -> Result<Vec<f32>> {
        if x.len() != self.dim_in {
            return Err(Error::Shape(format!("{} values for a PCA of {}", x.len(), self.dim_in)));
        }
        let centred: Vec<f64> = x.iter().zip(&self.mean).map(|(&a, &m)| a as f64 - m as f64).collect();
        Ok(self
            .components
            .chunks_exact(self.dim_in)
            .zip(&self.variances)
            .map(|(c, &var)| {
                let y: f64 = c.iter().zip(&centred).map(|(&a, b)| a as f64 * b).sum();
                if self.whiten { (y / ((var + WHITEN_EPS) as f64).sqrt()) as f32 } else { y as f32 }
            })
            .collect())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentForm {
    /// Unit-norm vectors (cosine and L2 agree).
    Unit,
    /// Whitened PCA, meant for [`quantize_yt8m`].
    Yt8m,
}

/// A fusion configuration with its fitted projection: what the index applies to each item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fusion {
    pub format: String,
    /// BLAKE3 (16 hex digits) of the spec, form and projection.
    pub version: String,
    pub spec: FusionSpec,
    pub form: ContentForm,
    pub pca: Option<Pca>,
}

impl Fusion {
    /// No projection: the unit-norm concatenation is the content vector.
    pub fn concat_only(spec: FusionSpec) -> Self {
        Self::finish(spec, ContentForm::Unit, None)
    }

    /// Fit the projection on the corpus: `items[i][m]` is modality `m` of item `i`. Items with
    /// no modality are skipped.
    pub fn fit(spec: FusionSpec, items: &[Vec<Option<&[f32]>>], dim_out: usize, form: ContentForm) -> Result<Self> {
        let mut rows = Vec::with_capacity(items.len() * spec.dim());
        for it in items {
            match spec.concat(it) {
                Ok(v) => rows.extend(v),
                Err(Error::NoModality) => {}
                Err(e) => return Err(e),
            }
        }
        let pca = Pca::fit(&rows, spec.dim(), dim_out, form == ContentForm::Yt8m)?;
        Ok(Self::finish(spec, form, Some(pca)))
    }

    fn finish(spec: FusionSpec, form: ContentForm, pca: Option<Pca>) -> Self {
        let mut f = Fusion { format: FUSION_FORMAT.into(), version: String::new(), spec, form, pca };
        f.version = f.content_version();
        f
    }

    /// The version: a hash of what the fusion computes with. `explained` is hashed at f32
    /// precision: serde_json (without its `float_roundtrip` feature, which would rebuild the
    /// Lance stack) may read an f64 back one unit in the last place off, and a stored fusion
    /// must verify after it was read; f32 values come back exact.
    fn content_version(&self) -> String {
        let pca = self
            .pca
            .as_ref()
            .map(|p| (p.dim_in, p.dim_out, &p.mean, &p.components, &p.variances, p.explained as f32, p.whiten));
        self.hash_of(&(&self.format, &self.spec, &self.form, pca))
    }

    /// The version as fusions written before `content_version` hashed them (f64 `explained`),
    /// so codebooks trained then still load.
    fn legacy_version(&self) -> String {
        self.hash_of(&(&self.format, &self.spec, &self.form, &self.pca))
    }

    fn hash_of(&self, content: &impl Serialize) -> String {
        // Serialising plain structs of numbers and strings to a String has no way to fail
        // (serde_json fails only on non-string map keys and failing Serialize impls).
        let described = serde_json::to_string(content).expect("plain data serialises");
        let mut h = medley_core::ContentHasher::default();
        h.update(described.as_bytes());
        h.finish_short(VERSION_DIGITS)
    }

    /// Width of the content vectors.
    pub fn dim(&self) -> usize {
        self.pca.as_ref().map_or(self.spec.dim(), |p| p.dim_out)
    }

    /// The content vector of one item (`blocks` as in [`FusionSpec::concat`]).
    pub fn content(&self, blocks: &[Option<&[f32]>]) -> Result<Vec<f32>> {
        let x = self.spec.concat(blocks)?;
        let Some(pca) = &self.pca else { return Ok(x) };
        let mut y = pca.apply(&x)?;
        if self.form == ContentForm::Unit {
            let n = y.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
            if n > 0.0 {
                y.iter_mut().for_each(|v| *v = (*v as f64 / n) as f32);
            }
        }
        Ok(y)
    }

    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(s: &str) -> Result<Self> {
        let f: Fusion = serde_json::from_str(s)?;
        if f.format != FUSION_FORMAT {
            return Err(Error::Format(format!("fusion format {:?}, this build reads {FUSION_FORMAT:?}", f.format)));
        }
        if f.version != f.content_version() && f.version != f.legacy_version() {
            return Err(Error::Format(format!("fusion version {} does not match its content", f.version)));
        }
        Ok(f)
    }
}

/// YouTube-8M 8-bit quantisation: clip to `[YT8M_MIN, YT8M_MAX]` and take one of 256 equal bins.
pub fn quantize_yt8m(x: &[f32]) -> Vec<u8> {
    let range = YT8M_MAX - YT8M_MIN;
    x.iter()
        .map(|&v| ((v.clamp(YT8M_MIN, YT8M_MAX) - YT8M_MIN) * 255.0 / range).floor().clamp(0.0, 255.0) as u8)
        .collect()
}

/// The YouTube-8M starter code's dequantisation: `q * range / 255 + range / 512 + min`.
pub fn dequantize_yt8m(q: &[u8]) -> Vec<f32> {
    let range = YT8M_MAX - YT8M_MIN;
    q.iter().map(|&b| b as f32 * (range / 255.0) + range / 512.0 + YT8M_MIN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fusion written to JSON reads back and verifies, whatever numbers its PCA holds: its
    /// version must not depend on serde_json reading every f64 back exactly.
    #[test]
    fn fitted_fusions_verify_after_a_json_round_trip() -> Result<()> {
        let spec = FusionSpec::new([("visual", 6, 1.0), ("text", 4, 0.5)]);
        for seed in 0..200u32 {
            // A small deterministic corpus per seed (an LCG), so many `explained` values occur.
            let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
            let mut next = || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            };
            let vectors: Vec<(Vec<f32>, Vec<f32>)> =
                (0..12).map(|_| ((0..6).map(|_| next()).collect(), (0..4).map(|_| next()).collect())).collect();
            let items: Vec<Vec<Option<&[f32]>>> =
                vectors.iter().map(|(v, t)| vec![Some(v.as_slice()), Some(t.as_slice())]).collect();
            let fusion = Fusion::fit(spec.clone(), &items, 3, ContentForm::Unit)?;
            let json = fusion.to_json()?;
            let back = Fusion::from_json(&json).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(back.version, fusion.version);
        }
        Ok(())
    }
}
