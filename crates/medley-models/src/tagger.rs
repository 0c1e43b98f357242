use std::collections::BTreeMap;

use crate::audio::concat_windows;
use crate::image::activate;
use crate::runtime::{Array, run_named, split_rows};
use crate::spec::{ModelSpec, TaggerSpec};
use crate::{ModelError, ModelHome, Runtime};

/// A music tagger on raw mono windows (musicnn MTT/MSD: the log-mel front end is in the
/// graph): tag probabilities with names, plus embeddings.
pub struct MusicTagger {
    id: String,
    session: std::sync::Mutex<ort::session::Session>,
    spec: TaggerSpec,
    labels: Vec<String>,
}

/// One window's tags and embeddings.
#[derive(Debug, Clone)]
pub struct TagOutput {
    /// One probability per tag, in `MusicTagger::labels()` order.
    pub probabilities: Vec<f32>,
    /// Embeddings by output name (`penultimate`, `mean_pool`, `max_pool`, ...).
    pub embeddings: BTreeMap<String, Vec<f32>>,
}

impl TagOutput {
    /// The `k` best tags with their probabilities, best first.
    pub fn top<'a>(&self, labels: &'a [String], k: usize) -> Vec<(&'a str, f32)> {
        crate::LabelBridge::top(&self.probabilities, k).into_iter().map(|(i, p)| (labels[i].as_str(), p)).collect()
    }
}

impl MusicTagger {
    /// musicnn trained on MagnaTagATune (`musicnn-mtt`) or the Million Song Dataset (`musicnn-msd`).
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let section = spec.section(&spec.tagger, "tagger")?.clone();
        let labels = spec.labels(&section.labels)?;
        let session = rt.session(&spec.id, &spec.file(&section.file)?)?;
        Ok(Self { id: spec.id.clone(), session, spec: section, labels })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }
    /// Samples per window (musicnn: 47,616 at 16 kHz, 2.98 s).
    pub fn window(&self) -> usize {
        self.spec.window
    }
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
    /// The default embedding's name and width.
    pub fn embedding(&self) -> (&str, usize) {
        (&self.spec.embedding, self.spec.embeddings.get(&self.spec.embedding).copied().unwrap_or(0))
    }
    /// All embedding outputs with their widths.
    pub fn embeddings(&self) -> &BTreeMap<String, usize> {
        &self.spec.embeddings
    }

    /// Tag windows of exactly `window()` samples each.
    pub fn tag(&self, windows: &[&[f32]]) -> Result<Vec<TagOutput>, ModelError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let input =
            Array::F32(vec![windows.len(), self.spec.window], concat_windows(&self.id, windows, self.spec.window)?);
        let mut wanted: Vec<&str> = vec![self.spec.tags.as_str()];
        wanted.extend(self.spec.embeddings.keys().map(String::as_str));
        let out = run_named(&self.session, &self.id, &[(self.spec.input.as_str(), &input)], &wanted)?;
        let tags = split_rows(&out[&self.spec.tags], &self.id, &self.spec.tags, self.labels.len())?;
        let mut per_name = BTreeMap::new();
        for (name, &dim) in &self.spec.embeddings {
            per_name.insert(name.clone(), split_rows(&out[name], &self.id, name, dim)?);
        }
        Ok(tags
            .into_iter()
            .enumerate()
            .map(|(b, t)| TagOutput {
                probabilities: activate(Some(self.spec.activation.as_deref().unwrap_or("none")), t),
                embeddings: per_name.iter().map(|(k, v)| (k.clone(), v[b].clone())).collect(),
            })
            .collect())
    }
}
