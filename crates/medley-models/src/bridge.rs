use std::path::Path;

use crate::{ModelError, TextEncoder, l2_normalize};

/// ConSE (Norouzi et al., 2014): maps class probabilities into a text-embedding space as the
/// probability-weighted sum of the embeddings of the top-k classes' texts, so images (and
/// audio tags) can be searched with text.
pub struct LabelBridge {
    label_embeddings: Vec<Vec<f32>>,
    top_k: usize,
}

/// Bump when the way texts become embeddings changes, so caches made the old way are not read.
const CACHE_FORMAT: &str = "mean-of-alternatives-1";

impl LabelBridge {
    /// Separates phrasings of one label's text (`tabby | tabby cat | a cat with a grey ...`):
    /// each is embedded alone and the label is their normalised mean.
    pub const ALTERNATIVES: &str = " | ";

    /// Embed each label's text through `template` (`{}` is replaced by the text). A text may
    /// hold several phrasings separated by [`Self::ALTERNATIVES`]: each goes through the template
    /// and the encoder alone, and the label's embedding is their mean, at unit length.
    pub fn new(text: &TextEncoder, labels: &[String], template: &str, top_k: usize) -> Result<Self, ModelError> {
        let mut owner = Vec::new();
        let mut prompts = Vec::new();
        for (i, label) in labels.iter().enumerate() {
            for phrase in label.split(Self::ALTERNATIVES) {
                owner.push(i);
                prompts.push(template.replace("{}", phrase));
            }
        }
        let mut embedded = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(128) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            embedded.extend(text.encode(&refs)?);
        }
        let mut label_embeddings = vec![vec![0f32; text.dim()]; labels.len()];
        for (i, e) in owner.into_iter().zip(embedded) {
            for (o, x) in label_embeddings[i].iter_mut().zip(e) {
                *o += x;
            }
        }
        label_embeddings.iter_mut().for_each(|e| l2_normalize(e));
        Ok(Self { label_embeddings, top_k })
    }

    /// Like [`LabelBridge::new`], but keeps the label embeddings in `cache_dir` (keyed by the
    /// text model, template and label texts), so later runs skip embedding a thousand prompts.
    /// A cache that cannot be written is not an error: the embeddings are just recomputed.
    pub fn cached(
        text: &TextEncoder,
        labels: &[String],
        template: &str,
        top_k: usize,
        cache_dir: &Path,
    ) -> Result<Self, ModelError> {
        let key = fnv1a(format!("{CACHE_FORMAT}\n{}\n{template}\n{}", text.id(), labels.join("\n")).as_bytes());
        let path = cache_dir.join(format!("label-embeddings-{}-{key:016x}.f32", text.id()));
        let dim = text.dim();
        if let Ok(bytes) = std::fs::read(&path)
            && bytes.len() == labels.len() * dim * 4
        {
            let flat: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            return Ok(Self { label_embeddings: flat.chunks_exact(dim).map(<[f32]>::to_vec).collect(), top_k });
        }
        let bridge = Self::new(text, labels, template, top_k)?;
        let bytes: Vec<u8> = bridge.label_embeddings.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        // A cache: when it cannot be written, the next run computes the embeddings again.
        if let Err(e) = medley_core::write_atomic(&path, &bytes) {
            tracing::warn!("label embeddings not cached at {}: {e}", path.display());
        }
        Ok(bridge)
    }

    /// The unit-length embedding of each label's text, in label order.
    pub fn label_embeddings(&self) -> &[Vec<f32>] {
        &self.label_embeddings
    }

    /// The top-k `(class index, probability)` pairs, best first.
    pub fn top(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut idx: Vec<usize> = (0..probabilities.len()).collect();
        idx.sort_unstable_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        idx.into_iter().take(k).map(|i| (i, probabilities[i])).collect()
    }

    /// The unit-length bridge vector for a probability distribution over the labels.
    pub fn project(&self, probabilities: &[f32]) -> Vec<f32> {
        let dim = self.label_embeddings.first().map_or(0, Vec::len);
        let mut out = vec![0f32; dim];
        for (i, p) in Self::top(probabilities, self.top_k) {
            for (o, e) in out.iter_mut().zip(&self.label_embeddings[i]) {
                *o += p * e;
            }
        }
        l2_normalize(&mut out);
        out
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}
