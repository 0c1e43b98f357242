//! Pipeline files (`pipelines/*.toml`): which stages run, with which models and sampler.
//! Values with a fixed vocabulary (sampler, segment mode, fusion form) are parsed into types
//! while the file is read, and the whole file is checked before any work, with errors that
//! name the key and the problem.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use medley_fuse::ContentForm;
use medley_media::Sampler;
use medley_models::ModelHome;
use medley_store::VECTOR_COLUMNS;
use serde::{Deserialize, Deserializer};

/// A pipeline file that cannot be used: where it came from and what is wrong (naming the key).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file, or `built-in pipeline`.
    pub origin: String,
    pub message: String,
}

impl ConfigError {
    fn new(origin: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self { origin: origin.to_string(), message: message.to_string() }
    }
}

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
    #[serde(default)]
    pub text_space: TextSpaceConfig,
    #[serde(default)]
    pub ocr: OcrConfig,
    #[serde(default)]
    pub speech: SpeechConfig,
    #[serde(default)]
    pub captions: CaptionsConfig,
    #[serde(default)]
    pub runtime: crate::RuntimeConfig,
}

/// `[captions]`: what the captioner (`models.captioner`) is asked and how much it writes. A
/// prompted vision-language model (SmolVLM) is asked `prompt` about each frame it captions;
/// an image captioner (ViT-GPT2, BLIP) takes no prompt, and a file giving one for it is
/// refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptionsConfig {
    /// The question; unset, the model's default (`Describe this picture in one sentence.`).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Tokens per caption at most.
    #[serde(default = "default_caption_tokens")]
    pub max_new_tokens: usize,
    /// Also caption each segment's middle frame into `segments.caption` (one model call per
    /// segment, batched per item); the item's `description` is its middle frame's caption either way.
    #[serde(default = "default_true")]
    pub segments: bool,
}

fn default_caption_tokens() -> usize {
    40
}
fn default_true() -> bool {
    true
}

impl Default for CaptionsConfig {
    fn default() -> Self {
        Self { prompt: None, max_new_tokens: default_caption_tokens(), segments: true }
    }
}

impl CaptionsConfig {
    fn check(&self) -> Result<(), String> {
        if !(1..=256).contains(&self.max_new_tokens) {
            return Err(format!("captions.max_new_tokens: must be between 1 and 256, got {}", self.max_new_tokens));
        }
        if let Some(p) = &self.prompt
            && (p.trim().is_empty() || p.chars().count() > 1000)
        {
            return Err("captions.prompt: must be a question of 1 to 1000 characters".into());
        }
        Ok(())
    }
}

/// `[speech]`: where Whisper listens. The voice-activity model (`models.vad`) gives a speech
/// probability per 32 ms; regions of speech (padded, merged when close) are what Whisper
/// transcribes, and a file without any is not transcribed at all.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechConfig {
    /// A 32 ms chunk at or above this speech probability is speech (0..1, exclusive).
    #[serde(default = "default_vad_threshold")]
    pub vad_threshold: f32,
    /// Shorter bursts of speech are dropped (milliseconds).
    #[serde(default = "default_min_speech_ms")]
    pub min_speech_ms: u32,
    /// Silence shorter than this does not end a region (milliseconds).
    #[serde(default = "default_min_silence_ms")]
    pub min_silence_ms: u32,
    /// Kept on each side of a region, so words at its edges are heard whole (milliseconds).
    #[serde(default = "default_speech_pad_ms")]
    pub speech_pad_ms: u32,
    /// With sound events on: voice activity and Whisper run only where the sound-event model
    /// also hears speech, a speech class (AudioSet `Speech`, `Conversation`, ...) at this
    /// probability in a window within one window of the region. Music sets off voice
    /// activity; YAMNet tells the two apart. 0 turns the gate off (0..1).
    #[serde(default = "default_sound_event_gate")]
    pub sound_event_gate: f32,
}

fn default_vad_threshold() -> f32 {
    0.5
}
fn default_min_speech_ms() -> u32 {
    250
}
fn default_min_silence_ms() -> u32 {
    medley_models::VadOptions::for_transcription().min_silence_ms
}
fn default_speech_pad_ms() -> u32 {
    medley_models::VadOptions::for_transcription().speech_pad_ms
}
/// YAMNet's speech classes on 4 album tracks, an Opus menu theme and 2 test MP3s (2,586
/// windows): above 0.2 in 0.4% of windows (at most 0.6); on a 198 s LibriVox reading: above
/// 0.3 in every window.
fn default_sound_event_gate() -> f32 {
    0.2
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            vad_threshold: default_vad_threshold(),
            min_speech_ms: default_min_speech_ms(),
            min_silence_ms: default_min_silence_ms(),
            speech_pad_ms: default_speech_pad_ms(),
            sound_event_gate: default_sound_event_gate(),
        }
    }
}

impl SpeechConfig {
    fn check(&self) -> Result<(), String> {
        let t = self.vad_threshold;
        if !(t > 0.0 && t < 1.0) {
            return Err(format!("speech.vad_threshold: must be between 0 and 1 (exclusive), got {t}"));
        }
        let g = self.sound_event_gate;
        if !(0.0..1.0).contains(&g) {
            return Err(format!("speech.sound_event_gate: must be at least 0 and below 1, got {g}"));
        }
        for (key, ms, max) in [
            ("min_speech_ms", self.min_speech_ms, 30_000),
            ("min_silence_ms", self.min_silence_ms, 30_000),
            ("speech_pad_ms", self.speech_pad_ms, 5_000),
        ] {
            if ms > max {
                return Err(format!("speech.{key}: must be at most {max} milliseconds, got {ms}"));
            }
        }
        Ok(())
    }

    /// The region settings of the voice-activity model.
    pub fn vad_options(&self) -> medley_models::VadOptions {
        medley_models::VadOptions {
            threshold: self.vad_threshold,
            min_speech_ms: self.min_speech_ms,
            min_silence_ms: self.min_silence_ms,
            speech_pad_ms: self.speech_pad_ms,
        }
    }
}

/// `[text_space]`: how an item reaches the text model's space, where text search looks. Each
/// bridge (labels of what is seen, sound events, music tags) and each text (transcript,
/// on-screen text, caption) is a unit vector there; the item's `semantic` vector is their
/// weighted sum, renormalised, over the ones it has. A weight of 0 leaves one out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpaceConfig {
    /// What a class is embedded as in the label bridges: `meaning` (its names and definition,
    /// from the model folder's label texts) or `name` (its first name only).
    #[serde(default)]
    pub label_text: LabelText,
    #[serde(default = "one")]
    pub visual: f32,
    /// The colours seen, named (black, white, red, ...), mixed into the visual bridge at this
    /// weight beside its labels (each a unit vector first); 0 leaves them out. Only with
    /// `label_text = "meaning"`: `name` keeps the bridge as it was, for a baseline.
    #[serde(default = "colour")]
    pub colour: f32,
    #[serde(default = "one")]
    pub sound: f32,
    /// Music tags; scaled by how sure the sound-event model is that music is playing, when it
    /// runs (the tags describe music and mean nothing for a dog barking).
    #[serde(default = "half")]
    pub music: f32,
    #[serde(default = "one")]
    pub speech: f32,
    #[serde(default = "one")]
    pub ocr: f32,
    #[serde(default = "one")]
    pub caption: f32,
}

fn one() -> f32 {
    1.0
}
fn half() -> f32 {
    0.5
}
/// Measured on 392 Tux Paint stamps (`onnx_models/measure_bridge.py`): on the 21 whose caption
/// names a colour, MRR 0.567 -> 0.627 at 0.2 (0.599 at 0.35); on the rest 0.218 -> 0.213.
fn colour() -> f32 {
    0.2
}

impl Default for TextSpaceConfig {
    fn default() -> Self {
        Self {
            label_text: LabelText::default(),
            visual: one(),
            colour: colour(),
            sound: one(),
            music: half(),
            speech: one(),
            ocr: one(),
            caption: one(),
        }
    }
}

impl TextSpaceConfig {
    fn check(&self) -> Result<(), String> {
        let weights = [
            ("visual", self.visual),
            ("colour", self.colour),
            ("sound", self.sound),
            ("music", self.music),
            ("speech", self.speech),
            ("ocr", self.ocr),
            ("caption", self.caption),
        ];
        for (key, w) in weights {
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!("text_space.{key}: must be a number of at least 0, got {w}"));
            }
        }
        if weights.iter().all(|(_, w)| *w == 0.0) {
            return Err("text_space: every weight is 0; nothing would reach the text space".into());
        }
        Ok(())
    }
}

/// `[text_space] label_text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum LabelText {
    /// Names and definition (the model folder's label texts; the names when it has none).
    #[default]
    Meaning,
    /// The first name only.
    Name,
}

impl FromStr for LabelText {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "meaning" => Ok(Self::Meaning),
            "name" => Ok(Self::Name),
            _ => Err(format!("text_space.label_text: {s:?} is not meaning or name")),
        }
    }
}

impl TryFrom<String> for LabelText {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// `[ocr]`: which sampled frames the on-screen text reader looks at (it costs far more per
/// frame than the image encoder).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrConfig {
    /// Every Nth sampled frame (the first always)...
    #[serde(default = "default_ocr_every")]
    pub every: usize,
    /// ...and any frame whose picture changed from the last one read by more than this mean
    /// absolute difference (0..1; 0 turns it off).
    #[serde(default = "default_ocr_changed")]
    pub changed: f32,
    /// The longer side, in pixels, of the whole frame handed to the reader.
    #[serde(default = "default_ocr_side")]
    pub max_side: u32,
    /// Lines read with less confidence are dropped.
    #[serde(default = "default_ocr_min_score")]
    pub min_score: f32,
}

fn default_ocr_every() -> usize {
    5
}
fn default_ocr_changed() -> f32 {
    0.12
}
fn default_ocr_side() -> u32 {
    960
}
fn default_ocr_min_score() -> f32 {
    0.6
}

impl Default for OcrConfig {
    fn default() -> Self {
        Self {
            every: default_ocr_every(),
            changed: default_ocr_changed(),
            max_side: default_ocr_side(),
            min_score: default_ocr_min_score(),
        }
    }
}

impl OcrConfig {
    fn check(&self) -> Result<(), String> {
        if self.every == 0 {
            return Err("ocr.every: must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.changed) {
            return Err(format!("ocr.changed: must be between 0 and 1, got {}", self.changed));
        }
        if !(64..=4096).contains(&self.max_side) {
            return Err(format!("ocr.max_side: must be between 64 and 4096 pixels, got {}", self.max_side));
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(format!("ocr.min_score: must be between 0 and 1, got {}", self.min_score));
        }
        Ok(())
    }
}

/// How items are cut into `segments` rows (time ranges a search can return).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentsConfig {
    /// `shots` (one segment per shot; needs the `shots` sampler), `window` (fixed windows of
    /// `window_s`), `none`, or `auto`: shots with the shots sampler, windows otherwise.
    #[serde(default)]
    pub by: SegmentMode,
    /// Window length in seconds for `window`.
    #[serde(default = "default_window_s")]
    pub window_s: f64,
}

fn default_window_s() -> f64 {
    10.0
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        Self { by: SegmentMode::default(), window_s: default_window_s() }
    }
}

/// `[segments] by`, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum SegmentMode {
    /// Shots under the `shots` sampler, windows otherwise.
    #[default]
    Auto,
    Shots,
    Window,
    None,
}

impl FromStr for SegmentMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "shots" => Ok(Self::Shots),
            "window" => Ok(Self::Window),
            "none" => Ok(Self::None),
            _ => Err(format!("segments.by: {s:?} is not auto, shots, window or none")),
        }
    }
}

impl TryFrom<String> for SegmentMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
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
    #[serde(default)]
    pub form: FusionForm,
}

/// `[fusion] form`: the shape of content vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum FusionForm {
    /// Unit-norm vectors.
    #[default]
    Unit,
    /// Whitened PCA, for 8-bit quantisation as YouTube-8M ships its features.
    Yt8m,
}

impl FusionForm {
    pub fn content_form(self) -> ContentForm {
        match self {
            Self::Unit => ContentForm::Unit,
            Self::Yt8m => ContentForm::Yt8m,
        }
    }
}

impl FromStr for FusionForm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unit" => Ok(Self::Unit),
            "yt8m" => Ok(Self::Yt8m),
            _ => Err(format!("fusion.form: {s:?} is not unit or yt8m")),
        }
    }
}

impl TryFrom<String> for FusionForm {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

fn default_weights() -> std::collections::BTreeMap<String, f32> {
    [("visual", 1.0), ("audio", 0.5), ("bridge", 0.5)].into_iter().map(|(k, w)| (k.to_string(), w)).collect()
}
fn default_fusion_dim() -> usize {
    256
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self { weights: default_weights(), dim: default_fusion_dim(), form: FusionForm::default() }
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
        if self.form == FusionForm::Yt8m && self.dim == 0 {
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
    #[serde(deserialize_with = "sampler")]
    pub video: Sampler,
}

fn sampler<'de, D: Deserializer<'de>>(d: D) -> Result<Sampler, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|e| serde::de::Error::custom(format!("sampler.video: {e}")))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    pub vision: bool,
    pub audio: bool,
    pub music: bool,
    pub speech: bool,
    /// Sound events (AudioSet classes) into `sound_tags` and the text space.
    #[serde(default)]
    pub sound_events: bool,
    /// On-screen text into `ocr_text` and the text space.
    #[serde(default)]
    pub ocr: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    pub image: String,
    pub audio: String,
    pub text: String,
    pub music: Option<String>,
    pub speech: Option<String>,
    /// A voice-activity model (Silero VAD): needed by `stages.speech`, which transcribes only
    /// the speech it finds.
    pub vad: Option<String>,
    /// An image captioner (VisionEncoderDecoder export) or a prompted vision-language model
    /// (SmolVLM; see `[captions]`): when set, it captions the frame nearest the middle of each
    /// item into `description`, and of each segment into `segments.caption`.
    pub captioner: Option<String>,
    /// A sound-event tagger on 16 kHz windows (YAMNet): needed by `stages.sound_events`.
    pub sound_events: Option<String>,
    /// An on-screen text reader (PP-OCR): needed by `stages.ocr`.
    pub ocr: Option<String>,
    /// A shot-boundary model (TransNetV2): with the `shots` sampler it finds the cuts, with
    /// the frame-difference detector as the fallback when unset.
    pub shots: Option<String>,
    /// An image-text model (CLIP, SigLIP; role `dual_image_text`, see `medley models add`):
    /// its vision tower embeds the frames into the `clip` column, and text search embeds
    /// queries with its text tower into the same space.
    pub clip: Option<String>,
    /// An audio-text model (CLAP; role `dual_audio_text`): its audio tower embeds the
    /// soundtrack into the `clap` column, and text search embeds queries with its text tower
    /// into the same space.
    pub clap: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    #[serde(default = "default_commit_every")]
    pub commit_every: usize,
    /// Frames per image-encoder call; unset, it follows the device (see
    /// [`crate::IndexOptions::for_device`]).
    #[serde(default)]
    pub frame_batch: Option<usize>,
}

fn default_commit_every() -> usize {
    32
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self { commit_every: default_commit_every(), frame_batch: None }
    }
}

impl PipelineConfig {
    /// Eight hex digits that change when a setting that shapes the rows changes (sampling,
    /// stages, fusion, segments, text space, OCR, speech, captions: a new caption prompt or VAD
    /// threshold writes other rows), so the models id recorded per row differs and the next run
    /// re-indexes. Batch sizes, commit spacing and the device are left out: they change how fast
    /// rows are written, not what they hold.
    pub fn output_fingerprint(&self) -> String {
        let settings = format!(
            "{:?}",
            (
                &self.sampler,
                &self.stages,
                &self.fusion,
                &self.segments,
                &self.text_space,
                &self.ocr,
                &self.speech,
                &self.captions
            )
        );
        blake3::hash(settings.as_bytes()).to_hex()[..8].to_string()
    }

    /// Parse and check a pipeline file. `home` is used to check that the models exist.
    pub fn load(path: &Path, home: &ModelHome) -> Result<Self, ConfigError> {
        let origin = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(&origin, e))?;
        Self::parse_from(&text, home, &origin)
    }

    /// Parse and check the text of a pipeline file (errors say `built-in pipeline`).
    pub fn parse(text: &str, home: &ModelHome) -> Result<Self, ConfigError> {
        Self::parse_from(text, home, &"built-in pipeline")
    }

    fn parse_from(text: &str, home: &ModelHome, origin: &dyn fmt::Display) -> Result<Self, ConfigError> {
        let config = Self::parse_unchecked(text).map_err(|e| ConfigError::new(origin, e))?;
        config.check(home).map_err(|e| ConfigError::new(origin, e))?;
        Ok(config)
    }

    /// Parse the keys and values, without checking that the models are set up.
    pub fn parse_unchecked(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        config.check_values()?;
        Ok(config)
    }

    pub fn sampler(&self) -> Sampler {
        self.sampler.video.clone()
    }

    /// How items are cut into segments, with `auto` resolved against the sampler.
    pub fn segment_by(&self) -> SegmentBy {
        let shots = matches!(self.sampler.video, Sampler::Shots(_));
        match self.segments.by {
            SegmentMode::None => SegmentBy::None,
            SegmentMode::Shots => SegmentBy::Shots,
            SegmentMode::Auto if shots => SegmentBy::Shots,
            SegmentMode::Auto | SegmentMode::Window => SegmentBy::Window(self.segments.window_s),
        }
    }

    fn check(&self, home: &ModelHome) -> Result<(), String> {
        let m = &self.models;
        let mut wanted =
            vec![("models.image", Some(&m.image)), ("models.audio", Some(&m.audio)), ("models.text", Some(&m.text))];
        if self.stages.music {
            wanted.push(("models.music", m.music.as_ref()));
        }
        if self.stages.speech {
            wanted.push(("models.speech", m.speech.as_ref()));
            wanted.push(("models.vad", m.vad.as_ref()));
        }
        if self.stages.sound_events {
            wanted.push(("models.sound_events", m.sound_events.as_ref()));
        }
        if self.stages.ocr {
            wanted.push(("models.ocr", m.ocr.as_ref()));
        }
        if m.captioner.is_some() {
            wanted.push(("models.captioner", m.captioner.as_ref()));
        }
        if m.shots.is_some() {
            wanted.push(("models.shots", m.shots.as_ref()));
        }
        if m.clip.is_some() {
            wanted.push(("models.clip", m.clip.as_ref()));
        }
        if m.clap.is_some() {
            wanted.push(("models.clap", m.clap.as_ref()));
        }
        for (key, id) in wanted {
            let Some(id) = id else { return Err(format!("{key}: required because its stage is enabled")) };
            home.model_dir(id).map_err(|e| format!("{key} = {id:?}: {e}"))?;
        }
        let speech = m.speech.as_ref().filter(|_| self.stages.speech);
        for (key, id, wanted, what) in [
            ("models.clip", m.clip.as_ref(), "dual_image_text", "an image-text model"),
            ("models.clap", m.clap.as_ref(), "dual_audio_text", "an audio-text model"),
            ("models.speech", speech, "speech_to_text", "a speech-to-text model"),
            ("models.captioner", m.captioner.as_ref(), "captioner", "an image captioner"),
        ] {
            let Some(id) = id else { continue };
            let spec = medley_models::ModelSpec::load(home, id).map_err(|e| format!("{key} = {id:?}: {e}"))?;
            if spec.role != wanted {
                return Err(format!("{key} = {id:?}: needs {what} (role {wanted}), not {}", spec.role));
            }
            if key == "models.captioner" && spec.vlm.is_none() && self.captions.prompt.is_some() {
                return Err(format!(
                    "captions.prompt: models.captioner = {id:?} is an image captioner that takes no prompt \
                     (prompted captioning needs a vision-language model such as SmolVLM)"
                ));
            }
        }
        Ok(())
    }

    /// What can be checked without the models: values and how they fit together.
    fn check_values(&self) -> Result<(), String> {
        self.fusion.check()?;
        self.text_space.check()?;
        self.ocr.check()?;
        self.speech.check()?;
        self.captions.check()?;
        if self.stages.ocr && !self.stages.vision {
            return Err("stages.ocr: needs stages.vision (it reads sampled frames)".into());
        }
        let sg = &self.segments;
        if sg.by == SegmentMode::Shots && !matches!(self.sampler.video, Sampler::Shots(_)) {
            return Err("segments.by: \"shots\" needs sampler.video = \"shots\" (the shot detector)".into());
        }
        if !(sg.window_s.is_finite() && sg.window_s >= 0.5) {
            return Err(format!("segments.window_s: must be at least 0.5 seconds, got {}", sg.window_s));
        }
        if self.index.commit_every == 0 {
            return Err("index.commit_every: must be at least 1".into());
        }
        if self.index.frame_batch.is_some_and(|n| !(1..=1024).contains(&n)) {
            return Err("index.frame_batch: must be between 1 and 1024".into());
        }
        if self.models.clip.is_some() && !self.stages.vision {
            return Err("models.clip: needs stages.vision (it embeds sampled frames)".into());
        }
        if self.models.clap.is_some() && !self.stages.audio {
            return Err("models.clap: needs stages.audio (it embeds the soundtrack)".into());
        }
        if self.models.captioner.is_some() && !self.stages.vision {
            return Err("models.captioner: needs stages.vision (it captions sampled frames)".into());
        }
        Ok(())
    }
}
