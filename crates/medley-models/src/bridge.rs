use crate::{ModelError, TextEncoder, l2_normalize};

/// ConSE (Norouzi et al., 2014): maps class probabilities into a text-embedding space as the
/// probability-weighted sum of the embeddings of the top-k class names, so images (and later
/// audio tags) can be searched with text.
pub struct LabelBridge {
    label_embeddings: Vec<Vec<f32>>,
    top_k: usize,
}

impl LabelBridge {
    /// Embed each label through `template` (`{}` is replaced by the label).
    pub fn new(text: &TextEncoder, labels: &[String], template: &str, top_k: usize) -> Result<Self, ModelError> {
        let prompts: Vec<String> = labels.iter().map(|l| template.replace("{}", l)).collect();
        let mut label_embeddings = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(128) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            label_embeddings.extend(text.encode(&refs)?);
        }
        Ok(Self { label_embeddings, top_k })
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
