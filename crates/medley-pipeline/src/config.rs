//! Pipeline files (`pipelines/*.toml`): which stages run, with which models and sampler.
//! Checked completely before any work, with errors that name the key and the problem.

use std::path::Path;

use medley_media::Sampler;
use medley_models::ModelHome;
use medley_store::VECTOR_COLUMNS;
use serde::Deserialize;

/// The built-in default, the same as `pipelines/video-default.toml`.
pub const DEFAULT_PIPELINE: &str = include_str!("../../../pipelines/video-default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub pipeline: Meta,
    pub sampler: SamplerConfig,
    pub stages: Stages,
    pub models: Models,
    #[serde(default)]
    pub index: IndexConfig,
    #[serde(default)]
    pub fusion: FusionConfig,
    #[serde(default)]
    pub segments: SegmentsConfig,
}

/// How items are cut into `segments` rows (time ranges a search can return).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentsConfig {
    /// `shots` (one segment per shot; needs the `shots` sampler), `window` (fixed windows of
    /// `window_s`), `none`, or `auto`: shots with the shots sampler, windows otherwise.
    #[serde(default = "default_segment_by")]
    pub by: String,
    /// Window length in seconds for `window`.
    #[serde(default = "default_window_s")]
    pub window_s: f64,
}

fn default_segment_by() -> String {
    "auto".into()
}
fn default_window_s() -> f64 {
    10.0
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        Self { by: default_segment_by(), window_s: default_window_s() }
    }
}

/// The resolved form of `[segments]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegmentBy {
    None,
    Shots,
    Window(f64),
}

/// How an item's `content` vector (what Semantic IDs quantise) is fused from its `media`
/// vector columns: each L2-normalised and weighted, concatenated, then optionally projected
/// by a PCA fitted on the corpus when a codebook is trained (`medley sid train`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionConfig {
    /// Column name to weight; columns: visual, audio, music, text, bridge.
    #[serde(default = "default_weights")]
    pub weights: std::collections::BTreeMap<String, f32>,
    /// Width after the PCA projection; 0 keeps the concatenation.
    #[serde(default = "default_fusion_dim")]
    pub dim: usize,
    /// `unit` (unit-norm vectors) or `yt8m` (whitened PCA, for 8-bit quantisation).
    #[serde(default = "default_form")]
    pub form: String,
}

fn default_weights() -> std::collections::BTreeMap<String, f32> {
    [("visual", 1.0), ("audio", 0.5), ("bridge", 0.5)].into_iter().map(|(k, w)| (k.to_string(), w)).collect()
}
fn default_fusion_dim() -> usize {
    256
}
fn default_form() -> String {
    "unit".into()
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self { weights: default_weights(), dim: default_fusion_dim(), form: default_form() }
    }
}

impl FusionConfig {
    fn check(&self) -> Result<(), String> {
        if self.weights.is_empty() {
            return Err("fusion.weights: name at least one column".into());
        }
        for (column, w) in &self.weights {
            if !VECTOR_COLUMNS.contains(&column.as_str()) {
                return Err(format!("fusion.weights.{column}: unknown column (known: {})", VECTOR_COLUMNS.join(", ")));
            }
            if !(w.is_finite() && *w > 0.0) {
                return Err(format!("fusion.weights.{column}: must be a positive number, got {w}"));
            }
        }
        if !["unit", "yt8m"].contains(&self.form.as_str()) {
            return Err(format!("fusion.form: {:?} is not unit or yt8m", self.form));
        }
        if self.form == "yt8m" && self.dim == 0 {
            return Err("fusion.dim: the yt8m form needs a projection (dim > 0)".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerConfig {
    /// `fps:R`, `uniform:N`, `keyframes` or `shots[:MIN_SHOT_S]`.
    pub video: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    pub vision: bool,
    pub audio: bool,
    pub music: bool,
    pub speech: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    pub image: String,
    pub audio: String,
    pub text: String,
    pub music: Option<String>,
    pub speech: Option<String>,
    /// An image captioner (VisionEncoderDecoder / BLIP-style export): when set, it captions
    /// the frame nearest the middle of each item into `description`.
    pub captioner: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    #[serde(default = "default_commit_every")]
    pub commit_every: usize,
    #[serde(default = "default_frame_batch")]
    pub frame_batch: usize,
}

fn default_commit_every() -> usize {
    32
}
fn default_frame_batch() -> usize {
    16
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self { commit_every: default_commit_every(), frame_batch: default_frame_batch() }
    }
}

impl PipelineConfig {
    /// Parse and check a pipeline file. `home` is used to check that the models exist.
    pub fn load(path: &Path, home: &ModelHome) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, home).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str, home: &ModelHome) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        config.check(home)?;
        Ok(config)
    }

    pub fn sampler(&self) -> Sampler {
        self.sampler.video.parse().expect("checked in `check`")
    }

    pub fn segment_by(&self) -> SegmentBy {
        let shots = matches!(self.sampler(), Sampler::Shots(_));
        match self.segments.by.as_str() {
            "none" => SegmentBy::None,
            "shots" => SegmentBy::Shots,
            "auto" if shots => SegmentBy::Shots,
            _ => SegmentBy::Window(self.segments.window_s),
        }
    }

    fn check(&self, home: &ModelHome) -> Result<(), String> {
        self.sampler.video.parse::<Sampler>().map_err(|e| format!("sampler.video: {e}"))?;
        self.fusion.check()?;
        let sg = &self.segments;
        if !["auto", "shots", "window", "none"].contains(&sg.by.as_str()) {
            return Err(format!("segments.by: {:?} is not auto, shots, window or none", sg.by));
        }
        if sg.by == "shots" && !matches!(self.sampler(), Sampler::Shots(_)) {
            return Err("segments.by: \"shots\" needs sampler.video = \"shots\" (the shot detector)".into());
        }
        if !(sg.window_s.is_finite() && sg.window_s >= 0.5) {
            return Err(format!("segments.window_s: must be at least 0.5 seconds, got {}", sg.window_s));
        }
        if self.index.commit_every == 0 {
            return Err("index.commit_every: must be at least 1".into());
        }
        if !(1..=1024).contains(&self.index.frame_batch) {
            return Err("index.frame_batch: must be between 1 and 1024".into());
        }
        let m = &self.models;
        let mut wanted =
            vec![("models.image", Some(&m.image)), ("models.audio", Some(&m.audio)), ("models.text", Some(&m.text))];
        if self.stages.music {
            wanted.push(("models.music", m.music.as_ref()));
        }
        if self.stages.speech {
            wanted.push(("models.speech", m.speech.as_ref()));
        }
        if m.captioner.is_some() {
            if !self.stages.vision {
                return Err("models.captioner: needs stages.vision (it captions sampled frames)".into());
            }
            wanted.push(("models.captioner", m.captioner.as_ref()));
        }
        for (key, id) in wanted {
            let Some(id) = id else { return Err(format!("{key}: required because its stage is enabled")) };
            home.model_dir(id).map_err(|e| format!("{key} = {id:?}: {e}"))?;
        }
        Ok(())
    }
}
