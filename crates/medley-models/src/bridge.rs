use std::path::Path;

use crate::{ModelError, TextEncoder, l2_normalize};

/// ConSE (Norouzi et al., 2014): maps class probabilities into a text-embedding space as the
/// probability-weighted sum of the embeddings of the top-k classes' texts, so images (and
/// audio tags) can be searched with text.
pub struct LabelBridge {
    label_embeddings: Vec<Vec<f32>>,
    top_k: usize,
    calibration: Option<Calibration>,
}

/// How class probabilities become a bridge's weights: `p^(1/temperature) / prior^prior_power`.
/// A temperature above 1 lets the runners-up speak (a classifier is overconfident on pictures
/// unlike its training set); dividing by the class's mean probability over a reference set of
/// pictures quiets the classes a model gives every drawing ("comic book", "jigsaw puzzle").
#[derive(Debug, Clone)]
pub struct Calibration {
    pub temperature: f32,
    /// Mean probability of each class over a reference picture set, in label order.
    pub prior: Option<Vec<f32>>,
    pub prior_power: f32,
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
        Ok(Self { label_embeddings, top_k, calibration: None })
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
            return Ok(Self {
                label_embeddings: flat.chunks_exact(dim).map(<[f32]>::to_vec).collect(),
                top_k,
                calibration: None,
            });
        }
        let bridge = Self::new(text, labels, template, top_k)?;
        let bytes: Vec<u8> = bridge.label_embeddings.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        // A cache: when it cannot be written, the next run computes the embeddings again.
        if let Err(e) = medley_core::write_atomic(&path, &bytes) {
            tracing::warn!("label embeddings not cached at {}: {e}", path.display());
        }
        Ok(bridge)
    }

    /// Weigh classes by `calibration` before the top k are mixed (see [`Calibration`]).
    /// A prior of the wrong length is ignored, with a warning: the weights stay probabilities.
    pub fn calibrated(mut self, mut calibration: Calibration) -> Self {
        if let Some(prior) = &calibration.prior
            && prior.len() != self.label_embeddings.len()
        {
            tracing::warn!(
                "label prior has {} classes for {} labels: not used",
                prior.len(),
                self.label_embeddings.len()
            );
            calibration.prior = None;
        }
        self.calibration = Some(calibration);
        self
    }

    /// The weight of each class in the bridge: its probability, calibrated when asked.
    fn weights(&self, probabilities: &[f32]) -> Vec<f32> {
        let Some(c) = &self.calibration else { return probabilities.to_vec() };
        let inv_t = 1.0 / c.temperature.max(1e-3);
        probabilities
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let w = p.max(0.0).powf(inv_t);
                match &c.prior {
                    // The floor keeps a class no reference picture showed from dominating.
                    Some(prior) => w / prior[i].max(PRIOR_FLOOR).powf(c.prior_power),
                    None => w,
                }
            })
            .collect()
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
        for (i, p) in Self::top(&self.weights(probabilities), self.top_k) {
            for (o, e) in out.iter_mut().zip(&self.label_embeddings[i]) {
                *o += p * e;
            }
        }
        l2_normalize(&mut out);
        out
    }
}

/// The smallest prior a class is divided by (the reference set's smoothing: 1e-4 was added to
/// every class's mean when the prior was measured).
const PRIOR_FLOOR: f32 = 1e-4;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three labels on the axes of a 3-d space.
    fn bridge(top_k: usize) -> LabelBridge {
        let label_embeddings = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]];
        LabelBridge { label_embeddings, top_k, calibration: None }
    }

    #[test]
    fn a_prior_quiets_the_class_every_picture_gets() {
        // Label 0 is what the model says of any drawing; label 1 is what this one shows.
        let p = [0.6, 0.3, 0.1];
        let plain = bridge(3).project(&p);
        assert!(plain[0] > plain[1], "{plain:?}");
        let prior = Some(vec![0.5, 0.05, 0.05]);
        let calibrated = bridge(3).calibrated(Calibration { temperature: 1.0, prior, prior_power: 0.5 }).project(&p);
        assert!(calibrated[1] > calibrated[0], "{calibrated:?}");
        assert!((calibrated.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_temperature_lets_the_runners_up_speak() {
        let p = [0.9, 0.09, 0.01];
        let plain = bridge(3).project(&p);
        let warm = bridge(3).calibrated(Calibration { temperature: 2.0, prior: None, prior_power: 0.0 }).project(&p);
        assert!(warm[1] / warm[0] > 2.0 * plain[1] / plain[0], "{plain:?} {warm:?}");
    }

    #[test]
    fn a_prior_of_the_wrong_length_is_not_used() {
        let p = [0.6, 0.3, 0.1];
        let c = Calibration { temperature: 1.0, prior: Some(vec![0.5, 0.5]), prior_power: 1.0 };
        assert_eq!(bridge(3).calibrated(c).project(&p), bridge(3).project(&p));
    }
}
