//! The ONNX models of a pipeline, loaded once and shared, and their side of the seam in
//! [`crate::models`].

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use medley_models::{
    AudioEncoder, Batcher, Calibration, ColourBridge, GenerateOptions, ImageCaptioner, ImageEncoder, ImageOutput,
    LabelBridge, ModelError, ModelHome, ModelSpec, MusicTagger, Runtime, ShotDetector, SpeechToText, TextEncoder,
    TextReader, TranscribeOptions, Transcript, VadOptions, VisionLanguageModel, VoiceActivity,
};
use medley_store::{ClipSpace, VectorDims};

use crate::clock::StageClock;
use crate::config::{CaptionsConfig, LabelText, PipelineConfig};
use crate::models::{
    Caption, CutsError, ImageEmbed, ModelSet, Music, Read, ReadLine, ShotBoundaries, Sound, SoundEvents, Speech,
    Tagged, Text, Vision,
};

/// The models one index run uses, loaded once and shared.
pub struct Encoders {
    pub config: PipelineConfig,
    pub image: Arc<ImageEncoder>,
    pub audio: Arc<AudioEncoder>,
    pub text: Arc<TextEncoder>,
    pub music: Option<Arc<MusicStage>>,
    pub speech: Option<Arc<SpeechStage>>,
    pub captioner: Option<Arc<CaptionStage>>,
    pub sound_events: Option<Arc<SoundEventStage>>,
    pub reader: Option<Arc<TextReader>>,
    pub shots: Option<Arc<ShotDetector>>,
    /// The image-text model (CLIP, SigLIP): its vision tower fills `clip`.
    pub clip: Option<Arc<ClipStage>>,
    /// The audio-text model (CLAP): its audio tower fills `clap`.
    pub clap: Option<Arc<ClapStage>>,
    /// The image encoder behind its cross-file queue, with its label bridge.
    vision: Arc<VisionStage>,
    /// Busy time per stage across every run with these models.
    pub clock: Arc<StageClock>,
    /// Where the sessions run, kept to load the text towers again ([`Encoders::load_text_towers`]).
    runtime: medley_models::Runtime,
}

/// The text towers that put search texts into each vector space: the text model, and the
/// text towers of the image-text and audio-text models when the pipeline has them.
pub struct TextTowers {
    pub text: Arc<TextEncoder>,
    pub clip: Option<Arc<TextEncoder>>,
    pub clap: Option<Arc<TextEncoder>>,
}

/// The image encoder as the pipeline uses it.
struct VisionStage {
    image: Arc<ImageEncoder>,
    /// The image encoder behind a queue shared by every file in flight: frames of several
    /// files are encoded in one call when they arrive while a call runs.
    batches: Batcher<Vec<u8>, ImageOutput>,
    /// ConSE from ImageNet labels into the text space.
    bridge: LabelBridge,
    /// The colours seen, into the same space, and their weight beside the labels; `None`
    /// when `text_space.colour` is 0 or label texts are bare names.
    colours: Option<(ColourBridge, f32)>,
}

pub struct MusicStage {
    pub tagger: MusicTagger,
    /// ConSE from the tagger's tags into the text space.
    pub bridge: LabelBridge,
}

/// An image-text model, as the pipeline uses it: the vision tower fills `clip`; the text tower
/// embeds queries into the same space (the server's searches).
pub struct ClipStage {
    pub id: String,
    pub image: ImageEncoder,
    pub text: Arc<TextEncoder>,
}

/// An audio-text model, as the pipeline uses it: the audio tower fills `clap`; the text tower
/// embeds queries into the same space.
pub struct ClapStage {
    pub id: String,
    pub audio: Arc<AudioEncoder>,
    pub text: Arc<TextEncoder>,
}

/// Whisper behind a voice-activity model: it transcribes only the speech regions found.
/// Whisper's graphs load when the first region is found, so a run over music and sound
/// effects never pays for them (about 2 s of a 6 s run over 31 short sounds on 2 cores).
pub struct SpeechStage {
    /// Whisper's spec (checked at load: it has a `[whisper]` section) and where to run it.
    spec: ModelSpec,
    rt: Runtime,
    stt: OnceLock<SpeechToText>,
    pub vad: VoiceActivity,
    pub vad_options: VadOptions,
}

impl SpeechStage {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// Whisper, loaded on first use.
    pub fn stt(&self) -> Result<&SpeechToText, ModelError> {
        if let Some(stt) = self.stt.get() {
            return Ok(stt);
        }
        let stt = SpeechToText::from_spec(&self.rt, &self.spec)?;
        // Two files finding speech at once may both load it; one copy is kept.
        Ok(self.stt.get_or_init(|| stt))
    }
}

pub struct SoundEventStage {
    pub tagger: MusicTagger,
    /// ConSE from the sound classes into the text space.
    pub bridge: LabelBridge,
    music_class: Option<usize>,
    speech_classes: Vec<usize>,
}

/// AudioSet's classes of someone speaking (not singing, shouting or babbling: Whisper makes
/// nothing of those).
const SPEECH_CLASSES: [&str; 6] = [
    "Speech",
    "Child speech, kid speaking",
    "Conversation",
    "Narration, monologue",
    "Male speech, man speaking",
    "Female speech, woman speaking",
];

/// A cross-file image-encoder call holds at most this many files' frame batches.
const CROSS_FILE_BATCHES: usize = 4;

/// How many classes a ConSE bridge vector mixes: with label texts 10 measured best on the
/// GCompris pictures (MRR 0.561 vs 0.555 at 5; 20 no better) and on music tags.
const BRIDGE_TOP_K: usize = 10;
/// The image bridge's tuning (see [`LabelBridge::calibrated`]): tuned on 785 Tux Paint
/// stamps (`onnx_models/measure_bridge.py`), half for the prior and half to score. Against
/// top 10 at temperature 1 there, MRR 0.215 -> 0.237 (recall@5 0.270 -> 0.293); a prior power
/// of 1 scored 0.242 but 0.5 hurts less on photographs, which the reference set has none of.
const IMAGE_BRIDGE: BridgeTuning = BridgeTuning { top_k: 100, temperature: 1.5, prior_power: 0.5 };
/// The sound-event bridge's tuning, on the 107 Tux Paint stamp
/// sounds with a caption (animals, tools, instruments, vehicles): 53 ranked by their captions,
/// the prior from the other 54. Against top 10 uncalibrated there, MRR 0.263 -> 0.317 (recall@5
/// 0.377 -> 0.396); 53 sounds, so one found sooner moves recall@5 by 0.019.
const SOUND_BRIDGE: BridgeTuning = BridgeTuning { top_k: 30, temperature: 1.0, prior_power: 0.5 };

/// How a calibrated label bridge mixes its classes (see [`Calibration`]).
struct BridgeTuning {
    top_k: usize,
    temperature: f32,
    prior_power: f32,
}
const LABEL_TEMPLATE: &str = "a photo of a {}";
/// Music tag texts already say what they are ("a woman singing", "slow music").
const TAG_TEMPLATE: &str = "{}";
/// AudioSet texts read "Bark (Dog): Principal communication sound produced by dogs.": they
/// measured best as written; bare class names read best as "the sound of {}".
const SOUND_TEMPLATE: &str = "{}";
/// With `label_text = "name"`: the bridges as they were before label texts (top 5, bare tag
/// names read as "music that is {}"), so that baseline can be measured against.
const NAME_TOP_K: usize = 5;
const NAME_TAG_TEMPLATE: &str = "music that is {}";
const NAME_SOUND_TEMPLATE: &str = "the sound of {}";

impl Encoders {
    pub fn load(home: &ModelHome, mut config: PipelineConfig) -> Result<Self, ModelError> {
        let resolved = config.runtime.resolve(home)?;
        let rt = resolved.runtime;
        config.runtime.used = Some(crate::UsedRuntime { device: rt.device(), hwaccel: resolved.hwaccel });
        let frame_batch =
            *config.index.frame_batch.get_or_insert(crate::IndexOptions::for_device(rt.device()).frame_batch);
        let m = &config.models;
        let image = Arc::new(ImageEncoder::load(&rt, home, &m.image)?);
        let shared = image.clone();
        // No wait for more: a call takes what is queued, so one file alone pays no latency.
        let image_batches =
            Batcher::new(frame_batch * CROSS_FILE_BATCHES, Duration::ZERO, move |frames: Vec<Vec<u8>>| {
                let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                shared.encode(&refs)
            })?;
        let audio = AudioEncoder::load(&rt, home, &m.audio)?;
        let text = TextEncoder::load(&rt, home, &m.text)?;
        let mode = config.text_space.label_text;
        // A label bridge embeds each class's label text (names and definition) with `meaning`,
        // its name with `name`. With `meaning`, a bridge given a tuning is calibrated by it and
        // the model's class prior.
        let bridge_of = |id: &str,
                         (names, texts): (&[String], &[String]),
                         [template, name_template]: [&str; 2],
                         calibrate: Option<(BridgeTuning, Option<&[f32]>)>|
         -> Result<LabelBridge, ModelError> {
            let dir = home.model_dir(id)?;
            Ok(match (mode, calibrate) {
                (LabelText::Meaning, Some((tuning, prior))) => {
                    LabelBridge::cached(&text, texts, template, tuning.top_k, &dir)?.calibrated(Calibration {
                        temperature: tuning.temperature,
                        prior: prior.map(<[f32]>::to_vec),
                        prior_power: tuning.prior_power,
                    })
                }
                (LabelText::Meaning, None) => LabelBridge::cached(&text, texts, template, BRIDGE_TOP_K, &dir)?,
                (LabelText::Name, _) => LabelBridge::cached(&text, names, name_template, NAME_TOP_K, &dir)?,
            })
        };
        let bridge = bridge_of(
            image.id(),
            (image.labels(), image.label_texts()),
            [LABEL_TEMPLATE; 2],
            Some((IMAGE_BRIDGE, image.label_prior())),
        )?;
        let weight = config.text_space.colour;
        let colours =
            if mode == LabelText::Meaning && weight > 0.0 { Some((ColourBridge::new(&text)?, weight)) } else { None };
        let music = match (&m.music, config.stages.music) {
            (Some(id), true) => {
                let tagger = MusicTagger::load(&rt, home, id)?;
                let bridge =
                    bridge_of(id, (tagger.labels(), tagger.label_texts()), [TAG_TEMPLATE, NAME_TAG_TEMPLATE], None)?;
                Some(Arc::new(MusicStage { tagger, bridge }))
            }
            _ => None,
        };
        let sound_events = match (&m.sound_events, config.stages.sound_events) {
            (Some(id), true) => {
                let tagger = MusicTagger::load(&rt, home, id)?;
                let bridge = bridge_of(
                    id,
                    (tagger.labels(), tagger.label_texts()),
                    [SOUND_TEMPLATE, NAME_SOUND_TEMPLATE],
                    Some((SOUND_BRIDGE, tagger.label_prior())),
                )?;
                let music_class = tagger.labels().iter().position(|l| l == "Music");
                let speech_classes = (tagger.labels().iter().enumerate())
                    .filter(|(_, l)| SPEECH_CLASSES.contains(&l.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                Some(Arc::new(SoundEventStage { tagger, bridge, music_class, speech_classes }))
            }
            _ => None,
        };
        let reader = match (&m.ocr, config.stages.ocr) {
            (Some(id), true) => Some(Arc::new(TextReader::load(&rt, home, id)?)),
            _ => None,
        };
        // Only the `shots` sampler asks for cuts.
        let shots = match (&m.shots, &config.sampler.video) {
            (Some(id), medley_media::Sampler::Shots(_)) => Some(Arc::new(ShotDetector::load(&rt, home, id)?)),
            _ => None,
        };
        let speech = match (&m.speech, &m.vad, config.stages.speech) {
            (Some(id), Some(vad), true) => {
                let spec = ModelSpec::load(home, id)?;
                let Some(whisper) = &spec.whisper else {
                    return Err(ModelError::Spec {
                        path: spec.dir.join("model.toml"),
                        message: format!("model {id} (role {}) has no [whisper] section", spec.role),
                    });
                };
                let rate = whisper.sample_rate;
                // On the CPU whatever the device: Silero is one call per 32 ms chunk, each
                // waiting for the last (18,600 calls for a 10-minute film), so a GPU's per-call
                // launch and copy costs exceed the work. On an H200 with it on CUDA, that film
                // did not finish in 190 s while 12 other files did (the cause was not isolated
                // there); on the same machine's 16 cores it took 8.5 s for all 13 files.
                let vad = VoiceActivity::load(&rt.on_cpu(), home, vad)?;
                // Both hear the same 16 kHz samples.
                if vad.sample_rate() != rate {
                    return Err(ModelError::Input {
                        model: vad.id().to_string(),
                        message: format!("listens at {} Hz, but {id} at {rate} Hz", vad.sample_rate()),
                    });
                }
                let vad_options = config.speech.vad_options();
                Some(Arc::new(SpeechStage { spec, rt: rt.clone(), stt: OnceLock::new(), vad, vad_options }))
            }
            _ => None,
        };
        let captioner = m
            .captioner
            .as_deref()
            .map(|id| CaptionStage::load(&rt, home, id, &config.captions).map(Arc::new))
            .transpose()?;
        let clip = m.clip.as_deref().map(|id| load_clip(&rt, home, id).map(Arc::new)).transpose()?;
        let clap = m.clap.as_deref().map(|id| load_clap(&rt, home, id).map(Arc::new)).transpose()?;
        let vision = Arc::new(VisionStage { image: image.clone(), batches: image_batches, bridge, colours });
        Ok(Self {
            config,
            image,
            audio: Arc::new(audio),
            text: Arc::new(text),
            music,
            speech,
            captioner,
            clip,
            clap,
            sound_events,
            reader,
            shots,
            vision,
            clock: Arc::default(),
            runtime: rt,
        })
    }

    /// The text towers in new sessions of their own, not shared with index runs: `medley
    /// serve` embeds queries with them, so a query never waits for the index worker's model
    /// call, and their threads keep the priority of the thread that loads them. The text
    /// model's int8 query graph runs where it has one ([`TextEncoder::for_queries`]).
    pub fn load_text_towers(&self, home: &ModelHome) -> Result<TextTowers, ModelError> {
        let rt = &self.runtime;
        let tower = |id: &str| -> Result<Arc<TextEncoder>, ModelError> {
            Ok(Arc::new(TextEncoder::for_queries(rt, &medley_models::ModelSpec::load(home, id)?)?))
        };
        Ok(TextTowers {
            text: tower(&self.config.models.text)?,
            clip: self.clip.as_ref().map(|c| tower(&c.id)).transpose()?,
            clap: self.clap.as_ref().map(|c| tower(&c.id)).transpose()?,
        })
    }

    /// Index options for where these models run, with the pipeline's `frame_batch` and
    /// `commit_every`.
    pub fn index_options(&self) -> crate::IndexOptions {
        let device = self.config.runtime.used.map_or(medley_models::Device::Cpu, |u| u.device);
        let defaults = crate::IndexOptions::for_device(device);
        crate::IndexOptions {
            frame_batch: self.config.index.frame_batch.unwrap_or(defaults.frame_batch),
            commit_every: self.config.index.commit_every,
            ..defaults
        }
    }

    /// The models as an index run sees them.
    pub fn model_set(&self) -> ModelSet {
        ModelSet {
            config: self.config.clone(),
            id: self.models(),
            vision: self.vision.clone(),
            sound: self.audio.clone(),
            text: self.text.clone(),
            music: self.music.clone().map(|m| m as Arc<dyn Music>),
            speech: self.speech.clone().map(|s| s as Arc<dyn Speech>),
            captioner: self.captioner.clone().map(|c| c as Arc<dyn Caption>),
            sound_events: self.sound_events.clone().map(|s| s as Arc<dyn SoundEvents>),
            reader: self.reader.clone().map(|r| r as Arc<dyn Read>),
            shots: self.shots.clone().map(|s| s as Arc<dyn ShotBoundaries>),
            clip: self.clip.clone().map(|c| c as Arc<dyn ImageEmbed>),
            clap: self.clap.as_ref().map(|c| c.audio.clone() as Arc<dyn Sound>),
            clock: self.clock.clone(),
        }
    }

    pub fn dims(&self) -> VectorDims {
        VectorDims {
            visual: self.image.dim(),
            audio: self.audio.dim(),
            bridge: self.text.dim(),
            music: self.music.as_ref().map_or(MUSIC_DIM_WITHOUT_TAGGER, |m| m.tagger.embedding().1),
            text: self.text.dim(),
            clip: self.clip.as_ref().map(|c| ClipSpace { width: c.image.dim(), model: c.id.clone() }),
            clap: self.clap.as_ref().map(|c| ClipSpace { width: c.audio.dim(), model: c.id.clone() }),
        }
    }

    /// Recorded with each row so a table says which pipeline, settings and models produced it;
    /// a change re-indexes items on the next run.
    pub fn models(&self) -> String {
        let mut ids = vec![self.image.id(), self.audio.id(), self.text.id()];
        ids.extend(self.music.as_ref().map(|m| m.tagger.id()));
        ids.extend(self.speech.as_ref().map(|s| s.id()));
        ids.extend(self.speech.as_ref().map(|s| s.vad.id()));
        ids.extend(self.captioner.as_ref().map(|c| c.id()));
        ids.extend(self.sound_events.as_ref().map(|s| s.tagger.id()));
        ids.extend(self.reader.as_ref().map(|r| r.id()));
        ids.extend(self.shots.as_ref().map(|s| s.id()));
        ids.extend(self.clip.as_ref().map(|c| c.id.as_str()));
        ids.extend(self.clap.as_ref().map(|c| c.id.as_str()));
        format!("{}@{}:{}", self.config.pipeline.name, self.config.output_fingerprint(), ids.join("+"))
    }
}

/// Width of the `music` column when no tagger runs (musicnn's penultimate layer), so tables
/// written with and without the music stage stay compatible.
const MUSIC_DIM_WITHOUT_TAGGER: usize = 200;

impl Vision for VisionStage {
    fn input_size(&self) -> u32 {
        self.image.input_size()
    }
    fn labels(&self) -> &[String] {
        self.image.labels()
    }
    fn encode(&self, frames: Vec<Vec<u8>>) -> Result<Vec<ImageOutput>, ModelError> {
        self.batches.submit_many(frames)
    }
    fn names_colours(&self) -> bool {
        self.colours.is_some()
    }
    fn bridge(&self, probabilities: &[f32], colours: Option<&[f32]>) -> Vec<f32> {
        let mut out = self.bridge.project(probabilities);
        if let (Some((bridge, weight)), Some(shares)) = (&self.colours, colours) {
            out.iter_mut().zip(bridge.project(shares)).for_each(|(o, c)| *o += weight * c);
            medley_models::l2_normalize(&mut out);
        }
        out
    }
}

impl Sound for AudioEncoder {
    fn sample_rate(&self) -> u32 {
        AudioEncoder::sample_rate(self)
    }
    fn window(&self) -> usize {
        AudioEncoder::window(self)
    }
    fn encode(&self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        AudioEncoder::encode(self, windows)
    }
}

impl Text for TextEncoder {
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        TextEncoder::encode(self, texts)
    }
}

impl Music for MusicStage {
    fn window(&self) -> usize {
        self.tagger.window()
    }
    fn labels(&self) -> &[String] {
        self.tagger.labels()
    }
    fn tag(&self, windows: &[&[f32]]) -> Result<Vec<Tagged>, ModelError> {
        let name = self.tagger.embedding().0;
        let outs = self.tagger.tag(windows)?;
        Ok(outs
            .into_iter()
            .map(|mut o| Tagged { embedding: o.embeddings.remove(name), probabilities: o.probabilities })
            .collect())
    }
    fn bridge(&self, probabilities: &[f32]) -> Vec<f32> {
        self.bridge.project(probabilities)
    }
}

impl SoundEvents for SoundEventStage {
    fn window(&self) -> usize {
        self.tagger.window()
    }
    fn labels(&self) -> &[String] {
        self.tagger.labels()
    }
    fn tag(&self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self.tagger.tag(windows)?.into_iter().map(|o| o.probabilities).collect())
    }
    fn bridge(&self, probabilities: &[f32]) -> Vec<f32> {
        self.bridge.project(probabilities)
    }
    fn music_class(&self) -> Option<usize> {
        self.music_class
    }
    fn speech_classes(&self) -> &[usize] {
        &self.speech_classes
    }
}

impl Read for TextReader {
    fn read(&self, rgb: &[u8], width: u32, height: u32) -> Result<Vec<ReadLine>, ModelError> {
        Ok(TextReader::read(self, rgb, width, height)?
            .into_iter()
            .map(|l| ReadLine { text: l.text, score: l.score, whole_picture: l.whole_picture })
            .collect())
    }
}

impl ShotBoundaries for ShotDetector {
    fn cuts(&self, probe: &medley_media::Probe) -> Result<Vec<f64>, CutsError> {
        let (width, height) = self.frame_size();
        let mut stream = self.stream();
        let mut times = Vec::new();
        let mut error = None;
        medley_media::decode_thumbnails(probe, width, height, &mut |t| {
            if error.is_none() {
                match stream.push(&t.rgb) {
                    Ok(()) => times.push(t.pts_s),
                    Err(e) => error = Some(e),
                }
            }
        })?;
        if let Some(e) = error {
            return Err(e.into());
        }
        let probabilities = stream.finish()?;
        Ok(ShotDetector::cuts(self, &probabilities, &times))
    }
}

impl Speech for SpeechStage {
    fn regions(&self, samples: &[f32]) -> Result<Vec<Range<usize>>, ModelError> {
        self.vad.regions(samples, &self.vad_options)
    }
    fn transcribe(&self, samples: &[f32], regions: &[Range<usize>]) -> Result<Option<Transcript>, ModelError> {
        let options = TranscribeOptions { max_new_tokens: 160, ..Default::default() };
        self.stt()?.transcribe_regions(samples, regions, &options)
    }
}

impl ImageEmbed for ClipStage {
    fn embed(&self, frames: &[&[u8]], size: u32) -> Result<Vec<Vec<f32>>, ModelError> {
        self.image.embed_squares(frames, size)
    }
}

/// The image-text model `id` (its role was checked with the pipeline file).
fn load_clip(rt: &medley_models::Runtime, home: &ModelHome, id: &str) -> Result<ClipStage, ModelError> {
    let spec = medley_models::ModelSpec::load(home, id)?;
    Ok(ClipStage {
        id: id.into(),
        image: ImageEncoder::from_spec(rt, &spec)?,
        text: Arc::new(TextEncoder::from_spec(rt, &spec)?),
    })
}

/// The audio-text model `id` (its role was checked with the pipeline file).
fn load_clap(rt: &medley_models::Runtime, home: &ModelHome, id: &str) -> Result<ClapStage, ModelError> {
    let spec = medley_models::ModelSpec::load(home, id)?;
    Ok(ClapStage {
        id: id.into(),
        audio: Arc::new(AudioEncoder::from_spec(rt, &spec)?),
        text: Arc::new(TextEncoder::from_spec(rt, &spec)?),
    })
}

/// The captioner: an image captioner (encoder-decoder, no prompt) or a prompted
/// vision-language model asked the pipeline's `captions.prompt`.
pub struct CaptionStage {
    model: CaptionModel,
    prompt: String,
    max_new_tokens: usize,
}

enum CaptionModel {
    Plain(Box<ImageCaptioner>),
    Prompted(Box<VisionLanguageModel>),
}

impl CaptionStage {
    /// Pictures per model call: a vision-language model keeps a cache per picture for every
    /// prompt token and generated token.
    const BATCH: usize = 8;

    fn load(rt: &Runtime, home: &ModelHome, id: &str, config: &CaptionsConfig) -> Result<Self, ModelError> {
        let spec = ModelSpec::load(home, id)?;
        let (model, prompt) = match &spec.vlm {
            Some(v) => {
                let prompt = config.prompt.clone().unwrap_or_else(|| v.default_prompt.clone());
                let model = VisionLanguageModel::from_spec(rt, &spec)?;
                // A prompt the model cannot take (no room for the picture) fails here, not per file.
                model.tokenize(&prompt)?;
                (CaptionModel::Prompted(Box::new(model)), prompt)
            }
            None => (CaptionModel::Plain(Box::new(ImageCaptioner::from_spec(rt, &spec)?)), String::new()),
        };
        Ok(Self { model, prompt, max_new_tokens: config.max_new_tokens })
    }

    pub fn id(&self) -> &str {
        match &self.model {
            CaptionModel::Plain(c) => c.id(),
            CaptionModel::Prompted(v) => v.id(),
        }
    }
}

impl Caption for CaptionStage {
    fn caption(&self, frames: &[&[u8]], size: u32) -> Result<Vec<String>, ModelError> {
        let mut out = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(Self::BATCH) {
            out.extend(match &self.model {
                CaptionModel::Plain(c) => {
                    let options = GenerateOptions { max_new_tokens: self.max_new_tokens, ..Default::default() };
                    c.caption_squares(chunk, size, &options)?
                }
                CaptionModel::Prompted(v) => v.describe(chunk, size, &self.prompt, self.max_new_tokens)?,
            });
        }
        Ok(out)
    }
}
