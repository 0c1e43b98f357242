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
    fn top_labels_name_extra_classes_instead_of_panicking() {
        let names = vec!["cat".to_string()];
        let top = top_labels(&[0.2, 0.7, 0.1], &names, 2);
        assert_eq!(top[0].label, "class 1");
        assert_eq!(top[1].label, "cat");
    }
}
