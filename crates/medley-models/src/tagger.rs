use std::collections::BTreeMap;

use crate::audio::concat_windows;
use crate::image::activate;
use crate::runtime::{Array, run_named, split_rows};
use crate::spec::{ModelSpec, TaggerSpec};
use crate::{ModelError, ModelHome, Runtime};

/// Any `[tagger]` model: fixed-length raw mono windows in (the log-mel front end is in the
/// graph), one probability per named class out, plus optional embeddings. Serves the music
/// taggers (musicnn MTT/MSD: 50 tags) and sound events (YAMNet: 521 AudioSet classes). The
/// name is historical.
pub struct MusicTagger {
    id: String,
    session: std::sync::Mutex<ort::session::Session>,
    spec: TaggerSpec,
    labels: Vec<String>,
    /// What each class means (the spec's `label_texts` file), else the labels.
    label_texts: Vec<String>,
    /// Each class's mean probability over the reference sounds, when the spec has them.
    label_prior: Option<Vec<f32>>,
}

/// One window's class probabilities and embeddings.
#[derive(Debug, Clone)]
pub struct TagOutput {
    /// One probability per class, in `MusicTagger::labels()` order.
    pub probabilities: Vec<f32>,
    /// Embeddings by output name (musicnn: `penultimate`, `mean_pool`, `max_pool`; YAMNet:
    /// `embedding`); empty for a tagger without embeddings.
    pub embeddings: BTreeMap<String, Vec<f32>>,
}

impl TagOutput {
    /// The `k` most probable classes with their probabilities, best first.
    pub fn top<'a>(&self, labels: &'a [String], k: usize) -> Vec<(&'a str, f32)> {
        crate::LabelBridge::top(&self.probabilities, k).into_iter().map(|(i, p)| (labels[i].as_str(), p)).collect()
    }
}

impl MusicTagger {
    /// The tagger model `id` of the model home: `musicnn-mtt` (MagnaTagATune), `musicnn-msd`
    /// (Million Song Dataset), `yamnet` (AudioSet sound events), or any folder with a
    /// `[tagger]` section.
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let section = spec.section(&spec.tagger, "tagger")?.clone();
        let labels = spec.labels(&section.labels)?;
        let label_texts = spec.label_texts(section.label_texts.as_deref(), &labels)?;
        let label_prior = section.label_prior.as_deref().map(|f| spec.label_numbers(f, &labels)).transpose()?;
        // The default embedding must be one of the declared outputs (or empty: none).
        if !section.embedding.is_empty() && !section.embeddings.contains_key(&section.embedding) {
            return Err(ModelError::Spec {
                path: spec.dir.join("model.toml"),
                message: format!("[tagger] embedding {:?} is not in [tagger.embeddings]", section.embedding),
            });
        }
        let path = spec.file(&section.file)?;
        let session = rt.session(&spec.id, &path)?;
        Ok(Self { id: rt.graph_id(&spec.id, &path), session, spec: section, labels, label_texts, label_prior })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }
    /// Samples per window (musicnn: 47,616 at 16 kHz, 2.98 s; YAMNet: 15,600, 0.975 s).
    pub fn window(&self) -> usize {
        self.spec.window
    }
    /// Class names, in output order (YAMNet: AudioSet display names such as "Bark").
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
    /// What each class means, in `labels()` order, for embedding by a text model (YAMNet:
    /// "Bark (Dog): Principal communication sound produced by dogs."); the labels themselves
    /// when the model has no label texts.
    pub fn label_texts(&self) -> &[String] {
        &self.label_texts
    }
    /// The spec's `label_prior`: each class's mean probability over a reference sound set.
    pub fn label_prior(&self) -> Option<&[f32]> {
        self.label_prior.as_deref()
    }
    /// The default embedding's name and width; `("", 0)` for a tagger without embeddings.
    pub fn embedding(&self) -> (&str, usize) {
        (&self.spec.embedding, self.spec.embeddings.get(&self.spec.embedding).copied().unwrap_or(0))
    }
    /// All embedding outputs with their widths.
    pub fn embeddings(&self) -> &BTreeMap<String, usize> {
        &self.spec.embeddings
    }

    /// Class probabilities (and embeddings) of windows of exactly `window()` samples each, at
    /// `sample_rate()`.
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
