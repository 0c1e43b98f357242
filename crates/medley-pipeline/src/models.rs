//! The seam between an index run and its models: what the run asks of each model, as small
//! traits. [`crate::Encoders`] implements them with the ONNX models; tests implement them with
//! stubs, so staging, batching, commits, failures and pooling run without any model.

use std::ops::Range;
use std::sync::Arc;

use medley_models::{ImageOutput, ModelError, Transcript};

use crate::clock::StageClock;
use crate::config::PipelineConfig;

/// Pictures in: an embedding and class probabilities per frame.
pub trait Vision: Send + Sync {
    /// Side of the square RGB24 frames it takes.
    fn input_size(&self) -> u32;
    /// Class names, in the order of [`ImageOutput::probabilities`].
    fn labels(&self) -> &[String];
    /// One output per frame, in order.
    fn encode(&self, frames: Vec<Vec<u8>>) -> Result<Vec<ImageOutput>, ModelError>;
    /// Whether [`Vision::bridge`] uses the colours seen (so frames' colour shares are worth
    /// counting).
    fn names_colours(&self) -> bool {
        false
    }
    /// Class probabilities into the text space (ConSE over the label names), with the
    /// colours seen ([`medley_models::colour_shares`], mean over frames) when it names them.
    fn bridge(&self, probabilities: &[f32], colours: Option<&[f32]>) -> Vec<f32>;
}

/// Pictures into an image-text space (a CLIP/SigLIP vision tower).
pub trait ImageEmbed: Send + Sync {
    /// One unit vector per square RGB24 frame of `size` pixels a side, in order.
    fn embed(&self, frames: &[&[u8]], size: u32) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// Sound in: an embedding per fixed window of mono samples.
pub trait Sound: Send + Sync {
    fn sample_rate(&self) -> u32;
    /// Samples per window.
    fn window(&self) -> usize;
    /// One embedding per window (each `window()` samples), in order.
    fn encode(&self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// Text in: an embedding per text (transcripts; the bridge's space).
pub trait Text: Send + Sync {
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// One music-tagger window's outputs.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// Tag probabilities, in the order of [`Music::labels`].
    pub probabilities: Vec<f32>,
    /// The embedding stored in the `music` column, when the tagger has one.
    pub embedding: Option<Vec<f32>>,
}

/// Music tagging over 16 kHz mono windows.
pub trait Music: Send + Sync {
    /// Samples per window at 16 kHz.
    fn window(&self) -> usize;
    fn labels(&self) -> &[String];
    fn tag(&self, windows: &[&[f32]]) -> Result<Vec<Tagged>, ModelError>;
    /// Tag probabilities into the text space (ConSE over the tag names).
    fn bridge(&self, probabilities: &[f32]) -> Vec<f32>;
}

/// Sound events (AudioSet classes) over 16 kHz mono windows.
pub trait SoundEvents: Send + Sync {
    /// Samples per window at 16 kHz.
    fn window(&self) -> usize;
    fn labels(&self) -> &[String];
    /// Class probabilities per window, in order.
    fn tag(&self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError>;
    /// Class probabilities into the text space (ConSE over the class texts).
    fn bridge(&self, probabilities: &[f32]) -> Vec<f32>;
    /// The class that means music is playing (AudioSet `Music`), if the vocabulary has one.
    fn music_class(&self) -> Option<usize>;
    /// The classes that mean someone speaks (AudioSet `Speech`, `Conversation`, ...), which
    /// gate voice activity; empty when the vocabulary has none.
    fn speech_classes(&self) -> &[usize] {
        &[]
    }
}

/// One line of on-screen text.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadLine {
    pub text: String,
    pub score: f32,
    /// The whole picture read as one line (nothing was detected in it): kept even when short.
    pub whole_picture: bool,
}

/// Reads the text in a whole RGB24 picture.
pub trait Read: Send + Sync {
    fn read(&self, rgb: &[u8], width: u32, height: u32) -> Result<Vec<ReadLine>, ModelError>;
}

/// Shot boundaries of a whole video (TransNetV2 over every frame).
pub trait ShotBoundaries: Send + Sync {
    /// Cut times in seconds, in order: where each shot after the first begins.
    fn cuts(&self, probe: &medley_media::Probe) -> Result<Vec<f64>, CutsError>;
}

/// Why shot boundaries could not be found (the pipeline then falls back to the frame-difference
/// detector).
#[derive(Debug, thiserror::Error)]
pub enum CutsError {
    #[error(transparent)]
    Media(#[from] medley_media::MediaError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Speech recognition over 16 kHz mono samples, where a voice-activity model hears speech.
pub trait Speech: Send + Sync {
    /// Where someone speaks: sample ranges of `samples`, in order.
    fn regions(&self, samples: &[f32]) -> Result<Vec<Range<usize>>, ModelError>;
    /// What is said in `regions` (segment times are the file's); `None` when there are no
    /// regions, and nothing is decoded.
    fn transcribe(&self, samples: &[f32], regions: &[Range<usize>]) -> Result<Option<Transcript>, ModelError>;
}

/// Captions for square RGB24 frames of `size` pixels a side, one per frame.
pub trait Caption: Send + Sync {
    fn caption(&self, frames: &[&[u8]], size: u32) -> Result<Vec<String>, ModelError>;
}

/// The pipeline an index run executes: its configuration and a model per stage, behind the
/// traits above. Cheap to clone (the models are shared).
#[derive(Clone)]
pub struct ModelSet {
    pub config: PipelineConfig,
    /// Recorded with each row (`models` column): the pipeline and model ids; an item indexed
    /// under another value is indexed again.
    pub id: String,
    pub vision: Arc<dyn Vision>,
    pub sound: Arc<dyn Sound>,
    pub text: Arc<dyn Text>,
    pub music: Option<Arc<dyn Music>>,
    pub speech: Option<Arc<dyn Speech>>,
    pub captioner: Option<Arc<dyn Caption>>,
    pub sound_events: Option<Arc<dyn SoundEvents>>,
    pub reader: Option<Arc<dyn Read>>,
    pub shots: Option<Arc<dyn ShotBoundaries>>,
    /// The image-text model's vision tower (`clip` column), when the pipeline has one.
    pub clip: Option<Arc<dyn ImageEmbed>>,
    /// The audio-text model's audio tower (`clap` column), when the pipeline has one.
    pub clap: Option<Arc<dyn Sound>>,
    /// Busy time per stage, shared by every run with these models.
    pub clock: Arc<StageClock>,
}

impl ModelSet {
    /// Run a model call: its time counted for `busy`, and a panic in it reported as the
    /// file's encode stage.
    pub(crate) fn call<T>(&self, busy: crate::clock::Busy, f: impl FnOnce() -> T) -> T {
        crate::error::in_stage(crate::Stage::Encode, || self.clock.time(busy, f))
    }
}
