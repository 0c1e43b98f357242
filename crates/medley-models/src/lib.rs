//! ONNX Runtime encoders for medley: where the runtime and models live, one shared session
//! per model, and the role adapters, each built from the `model.toml` an export script wrote
//! next to the graphs: image, audio and text encoders (also CLIP/CLAP towers), music tagger,
//! encoder-decoder generation (Whisper speech to text, image captioning), prompted
//! vision-language captioning (SmolVLM), the label bridge,
//! and a dynamic batcher.

mod audio;
mod batcher;
mod bridge;
mod captioner;
mod colour;
mod error;
mod graph;
mod home;
mod image;
pub mod import;
mod ocr;
mod runtime;
mod seq2seq;
mod shots;
mod spec;
mod tagger;
mod text;
mod vad;
mod vlm;
pub mod wer;
mod whisper;

pub use audio::{AudioEncoder, LogMel};
pub use batcher::Batcher;
pub use bridge::{Calibration, LabelBridge};
pub use captioner::ImageCaptioner;
pub use colour::{COLOUR_TERMS, ColourBridge, colour_shares};
pub use error::ModelError;
pub use graph::Graph;
pub use home::ModelHome;
pub use image::{ImageEncoder, ImageOutput};
pub use import::{AddOptions, Added, CheckReport, ImportError, ModelEntry};
pub use ocr::{OcrLine, OcrSpec, TextBox, TextReader, reads_as_words};
pub use runtime::{Array, Device, Runtime};
pub use seq2seq::{GenerateOptions, LogitsProcessor};
pub use shots::{ShotDetector, ShotSpec, ShotStream};
pub use spec::{FixedInput, MelSpec};
pub use spec::{ModelSpec, TensorSpec, VlmSpec};
pub use tagger::{MusicTagger, TagOutput};
pub use text::TextEncoder;
pub use vad::{VadOptions, VadSpec, VoiceActivity, speech_regions};
pub use vlm::{VisionLanguageModel, VlmPrompt};
pub use whisper::{Segment, SpeechToText, TranscribeOptions, Transcript};

/// A CLIP-style dual encoder: an image tower and a text tower into one space, from one
/// model folder (`[image]` and `[text]` sections).
pub struct ImageTextModel {
    pub image: ImageEncoder,
    pub text: TextEncoder,
}

impl ImageTextModel {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        let spec = ModelSpec::load(home, id)?;
        Ok(Self { image: ImageEncoder::from_spec(rt, &spec)?, text: TextEncoder::from_spec(rt, &spec)? })
    }
}

/// A CLAP-style dual encoder: an audio tower on raw waveforms and a text tower into one space.
pub struct AudioTextModel {
    pub audio: AudioEncoder,
    pub text: TextEncoder,
}

impl AudioTextModel {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        let spec = ModelSpec::load(home, id)?;
        Ok(Self { audio: AudioEncoder::from_spec(rt, &spec)?, text: TextEncoder::from_spec(rt, &spec)? })
    }
}

pub use medley_core::l2_normalize;

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}
