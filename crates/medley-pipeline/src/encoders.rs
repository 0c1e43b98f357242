use std::sync::Arc;
use std::time::Duration;

use medley_models::{
    AudioEncoder, Batcher, ImageCaptioner, ImageEncoder, ImageOutput, LabelBridge, ModelError, ModelHome, MusicTagger,
    Runtime, SpeechToText, TextEncoder,
};
use medley_store::VectorDims;

use crate::clock::StageClock;
use crate::config::PipelineConfig;

/// The models one index run uses, loaded once and shared.
pub struct Encoders {
    pub config: PipelineConfig,
    pub image: Arc<ImageEncoder>,
    /// The image encoder behind a queue shared by every file in flight: frames of several
    /// files are encoded in one call when they arrive while a call runs.
    pub image_batches: Batcher<Vec<u8>, ImageOutput>,
    pub audio: AudioEncoder,
    pub text: TextEncoder,
    /// ConSE from ImageNet labels into the text space.
    pub bridge: LabelBridge,
    pub music: Option<MusicStage>,
    pub speech: Option<SpeechToText>,
    pub captioner: Option<ImageCaptioner>,
    /// Busy time per stage across every run with these models.
    pub clock: StageClock,
}

pub struct MusicStage {
    pub tagger: MusicTagger,
    /// ConSE from the tagger's tags into the text space.
    pub bridge: LabelBridge,
}

/// A cross-file image-encoder call holds at most this many files' frame batches.
const CROSS_FILE_BATCHES: usize = 4;

/// How many class names a ConSE bridge vector mixes.
const BRIDGE_TOP_K: usize = 5;
const LABEL_TEMPLATE: &str = "a photo of a {}";
const TAG_TEMPLATE: &str = "music that is {}";

impl Encoders {
    pub fn load(home: &ModelHome, config: PipelineConfig) -> Result<Self, ModelError> {
        let rt = Runtime::load(home)?;
        let m = &config.models;
        let image = Arc::new(ImageEncoder::load(&rt, home, &m.image)?);
        let shared = image.clone();
        // No wait for more: a call takes what is queued, so one file alone pays no latency.
        let image_batches =
            Batcher::new(config.index.frame_batch * CROSS_FILE_BATCHES, Duration::ZERO, move |frames: Vec<Vec<u8>>| {
                let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                shared.encode(&refs)
            });
        let audio = AudioEncoder::load(&rt, home, &m.audio)?;
        let text = TextEncoder::load(&rt, home, &m.text)?;
        let bridge =
            LabelBridge::cached(&text, image.labels(), LABEL_TEMPLATE, BRIDGE_TOP_K, &home.model_dir(image.id())?)?;
        let music = match (&m.music, config.stages.music) {
            (Some(id), true) => {
                let tagger = MusicTagger::load(&rt, home, id)?;
                let bridge =
                    LabelBridge::cached(&text, tagger.labels(), TAG_TEMPLATE, BRIDGE_TOP_K, &home.model_dir(id)?)?;
                Some(MusicStage { tagger, bridge })
            }
            _ => None,
        };
        let speech = match (&m.speech, config.stages.speech) {
            (Some(id), true) => Some(SpeechToText::load(&rt, home, id)?),
            _ => None,
        };
        let captioner = m.captioner.as_deref().map(|id| ImageCaptioner::load(&rt, home, id)).transpose()?;
        Ok(Self {
            config,
            image,
            image_batches,
            audio,
            text,
            bridge,
            music,
            speech,
            captioner,
            clock: StageClock::default(),
        })
    }

    pub fn dims(&self) -> VectorDims {
        VectorDims {
            visual: self.image.dim(),
            audio: self.audio.dim(),
            bridge: self.text.dim(),
            music: self.music.as_ref().map_or(MUSIC_DIM_WITHOUT_TAGGER, |m| m.tagger.embedding().1),
            text: self.text.dim(),
        }
    }

    /// Recorded with each row so a table says which pipeline and models produced it; a change
    /// re-indexes items on the next run.
    pub fn models(&self) -> String {
        let mut ids = vec![self.image.id(), self.audio.id(), self.text.id()];
        ids.extend(self.music.as_ref().map(|m| m.tagger.id()));
        ids.extend(self.speech.as_ref().map(|s| s.id()));
        ids.extend(self.captioner.as_ref().map(|c| c.id()));
        format!("{}:{}", self.config.pipeline.name, ids.join("+"))
    }
}

/// Width of the `music` column when no tagger runs (musicnn's penultimate layer), so tables
/// written with and without the music stage stay compatible.
const MUSIC_DIM_WITHOUT_TAGGER: usize = 200;
