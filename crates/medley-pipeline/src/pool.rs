//! Pooling model outputs into an item's (or a segment's) vectors and labels.

use medley_models::{LabelBridge, ModelError};
use medley_store::Label;

/// Running mean of equal-length vectors.
#[derive(Debug, Default)]
pub(crate) struct MeanPool {
    sum: Vec<f64>,
    count: usize,
}

impl MeanPool {
    pub(crate) fn add(&mut self, v: &[f32]) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; v.len()];
        }
        self.sum.iter_mut().zip(v).for_each(|(s, x)| *s += f64::from(*x));
        self.count += 1;
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    pub(crate) fn mean(&self) -> Option<Vec<f32>> {
        (self.count > 0).then(|| self.sum.iter().map(|s| (s / self.count as f64) as f32).collect())
    }

    /// The mean scaled to unit length (for spaces compared by cosine, such as `clip`).
    pub(crate) fn unit_mean(&self) -> Option<Vec<f32>> {
        self.mean().map(|mut v| {
            medley_models::l2_normalize(&mut v);
            v
        })
    }
}

/// Sound-event probabilities over windows: the mean of the mean and the max per class, so an
/// event that fills a few seconds of a long file still counts (a mean alone dilutes a bark
/// in a minute of street noise), while one stray window does not rule the item.
#[derive(Debug, Default)]
pub(crate) struct EventPool {
    mean: MeanPool,
    max: Vec<f32>,
}

impl EventPool {
    pub(crate) fn add(&mut self, p: &[f32]) {
        self.mean.add(p);
        if self.max.is_empty() {
            self.max = p.to_vec();
        } else {
            self.max.iter_mut().zip(p).for_each(|(m, x)| *m = m.max(*x));
        }
    }

    pub(crate) fn pooled(&self) -> Option<Vec<f32>> {
        let mean = self.mean.mean()?;
        Some(mean.iter().zip(&self.max).map(|(a, b)| 0.5 * (a + b)).collect())
    }
}

/// The `k` most probable names. A model that gives more probabilities than it has names
/// (a broken export) gets the extra ones named by index rather than a panic.
pub(crate) fn top_labels(probabilities: &[f32], names: &[String], k: usize) -> Vec<Label> {
    LabelBridge::top(probabilities, k)
        .into_iter()
        .map(|(i, score)| Label { label: names.get(i).cloned().unwrap_or_else(|| format!("class {i}")), score })
        .collect()
}

/// A model that answered a batch with the wrong number of outputs.
pub(crate) fn miscounted(model: &str, asked: usize, got: usize) -> ModelError {
    ModelError::Output { model: model.into(), message: format!("{got} outputs for {asked} inputs") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pool_averages_and_is_empty_without_input() {
        let mut pool = MeanPool::default();
        assert_eq!(pool.mean(), None);
        pool.add(&[1.0, 2.0]);
        pool.add(&[3.0, 6.0]);
        assert_eq!(pool.mean(), Some(vec![2.0, 4.0]));
        assert_eq!(pool.count(), 2);
    }

    #[test]
    fn event_pool_keeps_short_events() {
        let mut pool = EventPool::default();
        assert_eq!(pool.pooled(), None);
        for _ in 0..9 {
            pool.add(&[0.0, 0.5]);
        }
        pool.add(&[1.0, 0.5]);
        let p = pool.pooled().unwrap();
        assert!((p[0] - 0.55).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn top_labels_name_extra_classes_instead_of_panicking() {
        let names = vec!["cat".to_string()];
        let top = top_labels(&[0.2, 0.7, 0.1], &names, 2);
        assert_eq!(top[0].label, "class 1");
        assert_eq!(top[1].label, "cat");
    }
}
