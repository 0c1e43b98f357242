//! One file into its rows: probe, decode, run the models over what streams past, and build the
//! `media` row and the `segments` rows.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

pub use medley_core::hash_file;
use medley_core::now_us;
use medley_media::{DecodeOptions, DecodeStats, MediaKind, Probe, Sampler, ShotParams};
use medley_models::{ModelError, Segment};
use medley_store::{Label, MediaRow, SegmentRow};

use crate::accumulate::{AudioAccumulator, VisualAccumulator};
use crate::clock::Busy;
use crate::config::SegmentBy;
use crate::error::enter_stage;
use crate::models::ModelSet;
use crate::options::IndexOptions;
use crate::pool::{EventPool, MeanPool, miscounted, top_labels};
use crate::segments::Segmenter;
use crate::text_space::{self, TextSpaceParts};
use crate::{FileError, Stage};

/// One file's `media` row and its `segments` rows.
#[derive(Debug)]
pub(crate) struct Indexed {
    pub row: MediaRow,
    pub segments: Vec<SegmentRow>,
}

/// Probe, decode and encode one file into its `media` and `segments` rows.
pub(crate) fn build_item(
    models: &ModelSet,
    opts: &IndexOptions,
    path: &Path,
    content_hash: String,
) -> Result<Indexed, FileError> {
    enter_stage(Stage::Probe);
    let probe = medley_media::probe(path).map_err(|e| FileError::media(Stage::Probe, e))?;
    enter_stage(Stage::Decode);
    let config = &models.config;
    // Pictures have no time to cut.
    let segment_by = if probe.kind == MediaKind::Image { SegmentBy::None } else { config.segment_by() };
    let segmenter = RefCell::new(Segmenter::new(segment_by, config.segments.window_s));
    let stages = config.stages;
    let has_sound = probe.audio.is_some() && probe.kind != MediaKind::Image;
    let decode_opts = DecodeOptions {
        sampler: Some(sampler(models, &probe)),
        frame_size: stages.vision.then(|| models.vision.input_size()),
        // The text reader needs whole pictures: the square crop cuts words at the sides.
        full_frame_side: models.reader.as_ref().map(|_| config.ocr.max_side),
        audio_rate: (stages.audio && has_sound).then(|| models.sound.sample_rate()),
        threads: opts.decode_threads,
        hwaccel: config.runtime.used.map_or(medley_media::HwAccel::None, |u| u.hwaccel),
        ..Default::default()
    };
    let middle_s = probe.duration_s.unwrap_or(0.0) / 2.0;
    let mut visual = VisualAccumulator::new(models, opts.frame_batch, middle_s, &segmenter);
    let mut audio = AudioAccumulator::new(models, opts.window_batch, &segmenter);
    let stats = medley_media::decode(&probe, &decode_opts, &mut |f| visual.push(f), &mut |s| audio.push(s))
        .map_err(|e| FileError::media(Stage::Decode, e))?;
    visual.flush();
    audio.finish();
    let model_err = |e: ModelError| FileError::new(path, Stage::Encode, "model", e);
    if let Some(e) = visual.error.take().or(audio.error.take()) {
        return Err(model_err(e));
    }
    let heard = if has_sound && (models.music.is_some() || models.speech.is_some() || models.sound_events.is_some()) {
        listen(models, &probe, opts, &segmenter)?
    } else {
        Heard::default()
    };
    let clap = match &models.clap {
        Some(tower) if stages.audio && has_sound => soundtrack_space(models, tower.as_ref(), &probe, opts, &segmenter)?,
        _ => None,
    };

    let probabilities = visual.probabilities.mean();
    let labels =
        probabilities.as_deref().map(|p| top_labels(p, models.vision.labels(), opts.top_labels)).unwrap_or_default();
    let music_probabilities = heard.tags.mean();
    let music_tags = match (&models.music, &music_probabilities) {
        (Some(m), Some(p)) => top_labels(p, m.labels(), opts.top_labels),
        _ => Vec::new(),
    };
    let sound_probabilities = heard.sounds.pooled();
    let sound_tags = match (&models.sound_events, &sound_probabilities) {
        (Some(s), Some(p)) => top_labels(p, s.labels(), opts.top_labels),
        _ => Vec::new(),
    };
    let colours = visual.colours.mean();
    let visual_bridge = probabilities.as_deref().map(|p| models.vision.bridge(p, colours.as_deref()));
    let music_bridge = match (&models.music, &music_probabilities) {
        (Some(m), Some(p)) => Some(m.bridge(p)),
        _ => None,
    };
    let sound_bridge = match (&models.sound_events, &sound_probabilities) {
        (Some(s), Some(p)) => Some(s.bridge(p)),
        _ => None,
    };
    let read = std::mem::take(&mut visual.read);
    let ocr_text = read_text(&read);
    // One text-encoder call for what was said, read and captioned.
    let duration_s = duration(&probe, &stats, models.sound.sample_rate());
    let caption = match (&models.captioner, &visual.middle) {
        (Some(c), Some(frame)) => models
            .call(Busy::Caption, || c.caption(&[&frame.rgb], frame.size))
            .map_err(model_err)?
            .pop()
            // A captioner that ends at once says nothing: the composed description stands.
            .filter(|c| !c.trim().is_empty()),
        _ => None,
    };
    let ocr_spelled = ocr_text.as_deref().map(crate::numerals::with_numbers_spelled);
    let [text, ocr, caption_vector] =
        embed_texts(models, [heard.transcript.as_deref(), ocr_spelled.as_deref(), caption.as_deref()])
            .map_err(model_err)?;
    let music_presence = text_space::music_presence(
        sound_probabilities.as_deref(),
        models.sound_events.as_ref().and_then(|s| s.music_class()),
    );
    let semantic = TextSpaceParts {
        visual: visual_bridge.as_deref(),
        sound: sound_bridge.as_deref(),
        music: music_bridge.as_deref(),
        music_presence,
        speech: text.as_deref(),
        ocr: ocr.as_deref(),
        caption: caption_vector.as_deref(),
    }
    .fuse(&config.text_space);
    let description = match caption {
        Some(c) => c,
        None => {
            let why = match (&models.captioner, &visual.middle) {
                (None, _) => "no captioner configured",
                (Some(_), Some(_)) => "the captioner said nothing",
                (Some(_), None) => "no picture to caption",
            };
            let found = Found { labels: &labels, sounds: &sound_tags, tags: &music_tags, music_presence };
            describe(&probe, duration_s, &found, heard.transcript.as_deref(), why)
        }
    };
    let mut row = media_row(&probe, content_hash, duration_s, &stats, models.id.clone());
    row.visual = visual.embedding.mean();
    row.clip = visual.clip.unit_mean();
    row.clap = clap;
    row.audio_windows = audio.embedding.count() as u32;
    row.audio = audio.embedding.mean();
    // The bridge puts an item in the text space: from its pictures' labels, or for sound
    // alone from its music tags.
    row.bridge = visual_bridge.or_else(|| music_bridge.clone());
    row.labels = labels;
    row.music = heard.embedding.mean();
    row.music_tags = music_tags;
    row.sound_tags = sound_tags;
    row.sound_bridge = sound_bridge;
    row.music_bridge = music_bridge;
    row.ocr_text = ocr_text;
    row.ocr = ocr;
    row.semantic = semantic;
    row.text = text;
    row.transcript = heard.transcript;
    row.language = heard.language;
    row.description = description;
    let segments = segmenter
        .into_inner()
        .finish(models, duration_s, &stats.shots, &heard.speech, &read, opts.top_labels)
        .map_err(model_err)?;
    Ok(Indexed { row, segments })
}

/// The pipeline's sampler; with a shot-boundary model and the `shots` sampler, driven by the
/// cuts the model finds in the video. When the model cannot run on the file, the sampler's own
/// frame-difference detector finds the cuts (with a warning).
fn sampler(models: &ModelSet, probe: &Probe) -> Sampler {
    let sampler = models.config.sampler();
    let (Sampler::Shots(params), Some(shots), true) = (&sampler, &models.shots, probe.kind == MediaKind::Video) else {
        return sampler;
    };
    match models.call(Busy::Shots, || shots.cuts(probe)) {
        Ok(cuts) => Sampler::Shots(ShotParams { known_cuts: Some(cuts), ..params.clone() }),
        Err(e) => {
            tracing::warn!("{}: shot-boundary model failed ({e}); cutting by frame differences", probe.path.display());
            sampler
        }
    }
}

/// The distinct lines read on screen, in the order first seen, one per line (a title shown
/// over many frames is read once).
pub(crate) fn read_text(read: &[(f64, String)]) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    for (_, line) in read {
        if !seen.iter().any(|s| s.eq_ignore_ascii_case(line)) {
            seen.push(line);
        }
    }
    (!seen.is_empty()).then(|| seen.join("\n"))
}

/// Embed each text that is there, in one text-encoder call.
fn embed_texts<const N: usize>(
    models: &ModelSet,
    texts: [Option<&str>; N],
) -> Result<[Option<Vec<f32>>; N], ModelError> {
    let present: Vec<&str> = texts.iter().flatten().copied().collect();
    let mut out: [Option<Vec<f32>>; N] = std::array::from_fn(|_| None);
    if present.is_empty() {
        return Ok(out);
    }
    let vectors = models.call(Busy::Text, || models.text.encode(&present))?;
    if vectors.len() != present.len() {
        return Err(miscounted("text encoder", present.len(), vectors.len()));
    }
    let mut vectors = vectors.into_iter();
    for (slot, text) in out.iter_mut().zip(texts) {
        if text.is_some() {
            *slot = vectors.next();
        }
    }
    Ok(out)
}

/// The item's duration: what was decoded when the file was cut short of what its header
/// declares, else the header's, else measured from the decoded frames or samples.
fn duration(probe: &Probe, stats: &DecodeStats, sample_rate: u32) -> Option<f64> {
    if let Some(t) = &stats.truncated {
        return Some(t.decoded_s);
    }
    probe.duration_s.or_else(|| match probe.kind {
        MediaKind::Image => None,
        _ => stats.last_video_pts_s.or_else(|| {
            (stats.audio_samples > 0 && sample_rate > 0).then(|| stats.audio_samples as f64 / f64::from(sample_rate))
        }),
    })
}

/// What the 16 kHz stages found: music tags and embedding, and a transcript.
#[derive(Default)]
struct Heard {
    tags: MeanPool,
    /// Sound-event probabilities per window.
    sounds: EventPool,
    sound_windows: usize,
    /// Per sound-event window, the highest probability of a speech class.
    speech_heard: Vec<f32>,
    embedding: MeanPool,
    transcript: Option<String>,
    language: Option<String>,
    /// The transcript's timed pieces, for the segments.
    speech: Vec<Segment>,
}

/// The soundtrack in an audio-text model's space (the `clap` column): an audio-only pass at the
/// model's own rate (48 kHz for CLAP, so it cannot share the other passes), its windows
/// embedded by the audio tower, the unit mean (and each window to its segment). A sound
/// shorter than one window (or a tail of at least a fifth of one) is embedded zero-padded, so
/// short sounds get a vector too.
fn soundtrack_space(
    models: &ModelSet,
    tower: &dyn crate::models::Sound,
    probe: &Probe,
    opts: &IndexOptions,
    segmenter: &RefCell<Segmenter>,
) -> Result<Option<Vec<f32>>, FileError> {
    let path = probe.path.as_path();
    let window = tower.window().max(1);
    let window_s = window as f64 / f64::from(tower.sample_rate().max(1));
    let mut pool = MeanPool::default();
    let mut buffer: Vec<f32> = Vec::new();
    // The windows waiting for a batch, and how many were embedded before them.
    let mut windows: Vec<Vec<f32>> = Vec::new();
    let mut embedded = 0usize;
    let mut error = None;
    let mut embed = |windows: &mut Vec<Vec<f32>>, pool: &mut MeanPool, error: &mut Option<ModelError>| {
        if error.is_none() && !windows.is_empty() {
            let refs: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
            match models.call(Busy::Audio, || tower.encode(&refs)) {
                Ok(outs) if outs.len() == refs.len() => {
                    let mut segments = segmenter.borrow_mut();
                    for (i, v) in outs.iter().enumerate() {
                        pool.add(v);
                        segments.clap(((embedded + i) as f64 + 0.5) * window_s, v);
                    }
                }
                Ok(outs) => *error = Some(miscounted("audio-text model", refs.len(), outs.len())),
                Err(e) => *error = Some(e),
            }
        }
        embedded += windows.len();
        windows.clear();
    };
    let decode_opts = DecodeOptions {
        frame_size: None,
        audio_rate: Some(tower.sample_rate()),
        threads: opts.decode_threads,
        ..Default::default()
    };
    medley_media::decode(probe, &decode_opts, &mut |_| {}, &mut |s| {
        buffer.extend_from_slice(s);
        while buffer.len() >= window {
            let rest = buffer.split_off(window);
            windows.push(std::mem::replace(&mut buffer, rest));
            if windows.len() >= opts.window_batch.max(1) {
                embed(&mut windows, &mut pool, &mut error);
            }
        }
    })
    .map_err(|e| FileError::media(Stage::Decode, e))?;
    if buffer.len() >= window / 5 || (pool.count() == 0 && windows.is_empty() && !buffer.is_empty()) {
        buffer.resize(window, 0.0);
        windows.push(std::mem::take(&mut buffer));
    }
    embed(&mut windows, &mut pool, &mut error);
    if let Some(e) = error {
        return Err(FileError::new(path, Stage::Encode, "model", e));
    }
    Ok(pool.unit_mean())
}

/// A second, audio-only pass at 16 kHz for the music tagger and speech recognition.
/// Audio-only decoding runs at well over 1000x realtime, so this costs little next to the
/// models, and keeps the first pass at the audio encoder's own rate.
fn listen(
    models: &ModelSet,
    probe: &Probe,
    opts: &IndexOptions,
    segmenter: &RefCell<Segmenter>,
) -> Result<Heard, FileError> {
    const RATE: u32 = 16_000;
    let path = probe.path.as_path();
    let model_err = |e: ModelError| FileError::new(path, Stage::Encode, "model", e);
    let window = models.music.as_ref().map_or(0, |m| m.window());
    let mut heard = Heard::default();
    let mut buffer: Vec<f32> = Vec::new();
    let mut windows: Vec<Vec<f32>> = Vec::new();
    let mut speech: Vec<f32> = Vec::new();
    let mut error = None;
    let tag = |windows: &mut Vec<Vec<f32>>, heard: &mut Heard, error: &mut Option<ModelError>| {
        if let (Some(m), None, false) = (&models.music, &error, windows.is_empty()) {
            let refs: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
            let window_s = m.window() as f64 / f64::from(RATE);
            match models.call(Busy::Music, || m.tag(&refs)) {
                Ok(outs) if outs.len() == refs.len() => outs.iter().for_each(|o| {
                    let middle_s = (heard.tags.count() as f64 + 0.5) * window_s;
                    segmenter.borrow_mut().music(middle_s, o.embedding.as_deref(), &o.probabilities);
                    heard.tags.add(&o.probabilities);
                    if let Some(e) = &o.embedding {
                        heard.embedding.add(e);
                    }
                }),
                Ok(outs) => *error = Some(miscounted("music tagger", refs.len(), outs.len())),
                Err(e) => *error = Some(e),
            }
        }
        windows.clear();
    };
    let sound_window = models.sound_events.as_ref().map_or(0, |m| m.window());
    let mut sound_buffer: Vec<f32> = Vec::new();
    let mut sound_windows: Vec<Vec<f32>> = Vec::new();
    let mut sound_error = None;
    let hear = |windows: &mut Vec<Vec<f32>>, heard: &mut Heard, error: &mut Option<ModelError>| {
        if let (Some(m), None, false) = (&models.sound_events, &error, windows.is_empty()) {
            let refs: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
            let window_s = m.window() as f64 / f64::from(RATE);
            match models.call(Busy::Sounds, || m.tag(&refs)) {
                Ok(outs) if outs.len() == refs.len() => outs.iter().for_each(|p| {
                    let middle_s = (heard.sound_windows as f64 + 0.5) * window_s;
                    heard.sound_windows += 1;
                    heard.speech_heard.push(m.speech_classes().iter().map(|&c| p[c]).fold(0.0, f32::max));
                    segmenter.borrow_mut().sound(middle_s, p);
                    heard.sounds.add(p);
                }),
                Ok(outs) => *error = Some(miscounted("sound-event tagger", refs.len(), outs.len())),
                Err(e) => *error = Some(e),
            }
        }
        windows.clear();
    };
    let decode_opts =
        DecodeOptions { frame_size: None, audio_rate: Some(RATE), threads: opts.decode_threads, ..Default::default() };
    medley_media::decode(probe, &decode_opts, &mut |_| {}, &mut |s| {
        if models.speech.is_some() {
            speech.extend_from_slice(s);
        }
        if sound_window > 0 {
            sound_buffer.extend_from_slice(s);
            while sound_buffer.len() >= sound_window {
                let rest = sound_buffer.split_off(sound_window);
                sound_windows.push(std::mem::replace(&mut sound_buffer, rest));
                if sound_windows.len() >= opts.window_batch.max(1) {
                    hear(&mut sound_windows, &mut heard, &mut sound_error);
                }
            }
        }
        if window > 0 {
            buffer.extend_from_slice(s);
            while buffer.len() >= window {
                let rest = buffer.split_off(window);
                windows.push(std::mem::replace(&mut buffer, rest));
                if windows.len() >= opts.window_batch.max(1) {
                    tag(&mut windows, &mut heard, &mut error);
                }
            }
        }
    })
    .map_err(|e| FileError::media(Stage::Decode, e))?;
    // A clip shorter than one window is tagged zero-padded, so short sounds get tags too.
    if window > 0 && heard.tags.count() == 0 && windows.is_empty() && buffer.len() >= RATE as usize / 2 {
        buffer.resize(window, 0.0);
        windows.push(std::mem::take(&mut buffer));
    }
    tag(&mut windows, &mut heard, &mut error);
    // The tail of at least a fifth of a window (all of a short clip) is heard zero-padded.
    if sound_window > 0 && sound_buffer.len() >= sound_window / 5 {
        sound_buffer.resize(sound_window, 0.0);
        sound_windows.push(std::mem::take(&mut sound_buffer));
    }
    hear(&mut sound_windows, &mut heard, &mut sound_error);
    if let Some(e) = error.or(sound_error) {
        return Err(model_err(e));
    }
    if let Some(stt) = &models.speech
        && !speech.is_empty()
    {
        // Whisper hears only the speech the voice-activity model finds (and the sound-event
        // model agrees is speech): a file without any is not transcribed (no transcript, no
        // language).
        let gate = speech_gate(models, &heard, sound_window);
        let regions = match &gate {
            Some(gate) if gate.nothing_heard() => Vec::new(),
            _ => {
                let mut regions = models.call(Busy::Vad, || stt.regions(&speech)).map_err(model_err)?;
                if let Some(gate) = &gate {
                    regions.retain(|r| gate.heard(r));
                }
                regions
            }
        };
        let transcript = if regions.is_empty() {
            None
        } else {
            models.call(Busy::Speech, || stt.transcribe(&speech, &regions)).map_err(model_err)?
        };
        if let Some(transcript) = transcript {
            let text = transcript.text();
            if !text.trim().is_empty() {
                heard.transcript = Some(text);
                heard.language = Some(transcript.language.clone());
                heard.speech = transcript.segments;
            }
        }
    }
    Ok(heard)
}

/// Where the sound-event model heard speech, to gate voice activity by.
struct SpeechGate<'a> {
    /// Per window, the highest speech-class probability.
    heard: &'a [f32],
    window: usize,
    threshold: f32,
}

impl SpeechGate<'_> {
    fn nothing_heard(&self) -> bool {
        self.heard.iter().all(|&p| p < self.threshold)
    }

    /// Whether speech was heard in a window overlapping `region` (samples), or the window
    /// either side of it.
    fn heard(&self, region: &std::ops::Range<usize>) -> bool {
        let first = (region.start / self.window).saturating_sub(1);
        let last = (region.end / self.window + 1).min(self.heard.len().saturating_sub(1));
        self.heard.get(first..=last).is_some_and(|w| w.iter().any(|&p| p >= self.threshold))
    }
}

/// The gate, when sound events ran over the file with a vocabulary that has speech classes
/// and `speech.sound_event_gate` is on.
fn speech_gate<'a>(models: &ModelSet, heard: &'a Heard, window: usize) -> Option<SpeechGate<'a>> {
    let threshold = models.config.speech.sound_event_gate;
    let events = models.sound_events.as_ref()?;
    (threshold > 0.0 && window > 0 && !events.speech_classes().is_empty() && !heard.speech_heard.is_empty())
        .then_some(SpeechGate { heard: &heard.speech_heard, window, threshold })
}

/// A short description composed from what the models found, for full-text search and for
/// people, when no caption stands in for it; it says that it was composed, and `why`.
/// Sound events named in a description need at least this probability (the `sound_tags`
/// column keeps the top classes with their scores): the tagger gives every class some, and
/// "hears: Speech" for a silent clip at 0.0001 is untrue.
const HEARD_MIN: f32 = 0.1;
/// Music tags are named only when the sound-event model hears music at least this likely
/// (always without one): on speech or silence the music tagger still ranks its tags, and
/// "sounds like: techno" for an audiobook is untrue.
const MUSIC_MIN: f32 = 0.2;

/// What the models found that a composed description names.
#[derive(Clone, Copy)]
struct Found<'a> {
    labels: &'a [Label],
    sounds: &'a [Label],
    tags: &'a [Label],
    music_presence: f32,
}

fn describe(probe: &Probe, duration_s: Option<f64>, found: &Found<'_>, transcript: Option<&str>, why: &str) -> String {
    let Found { labels, sounds, tags, music_presence } = *found;
    let heard: Vec<Label> = sounds.iter().filter(|l| l.score >= HEARD_MIN).cloned().collect();
    let (sounds, tags) = (heard.as_slice(), if music_presence >= MUSIC_MIN { tags } else { &[] });
    let names = |l: &[Label]| l.iter().take(3).map(|l| l.label.as_str()).collect::<Vec<_>>().join(", ");
    let mut parts = vec![match duration_s {
        Some(d) => format!("{} of {:.0} s", probe.kind.as_str(), d),
        None => probe.kind.as_str().to_string(),
    }];
    if !labels.is_empty() {
        parts.push(format!("looks like: {}", names(labels)));
    }
    if !sounds.is_empty() {
        parts.push(format!("hears: {}", names(sounds)));
    }
    if !tags.is_empty() {
        parts.push(format!("sounds like: {}", names(tags)));
    }
    if let Some(t) = transcript {
        let short: String = t.chars().take(160).collect();
        parts.push(format!("speech: \"{short}{}\"", if t.chars().count() > 160 { "..." } else { "" }));
    }
    format!("{} (composed from labels and tags; {why})", parts.join("; "))
}

/// The row's file and stream facts (the caller fills in what the models found).
fn media_row(
    probe: &Probe,
    content_hash: String,
    duration_s: Option<f64>,
    stats: &DecodeStats,
    models: String,
) -> MediaRow {
    let v = probe.video.as_ref();
    let a = probe.audio.as_ref().filter(|_| probe.kind != MediaKind::Image);
    MediaRow {
        content_hash,
        path: absolute(&probe.path).display().to_string(),
        file_name: probe.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        kind: probe.kind.as_str().into(),
        container: probe.container.clone(),
        size_bytes: probe.size_bytes,
        duration_s,
        partial: stats.truncated.is_some(),
        declared_duration_s: stats.truncated.map(|t| t.declared_s).or(probe.duration_s),
        video_codec: v.map(|v| v.codec.clone()),
        width: v.map(|v| v.width),
        height: v.map(|v| v.height),
        fps: v.and_then(|v| v.fps).filter(|_| probe.kind == MediaKind::Video),
        rotation: v.map(|v| v.rotation),
        audio_codec: a.map(|a| a.codec.clone()),
        sample_rate: a.map(|a| a.sample_rate),
        channels: a.map(|a| u32::from(a.channels)),
        frames_sampled: stats.frames_sampled as u32,
        models,
        indexed_at_us: now_us(),
        ..Default::default()
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
