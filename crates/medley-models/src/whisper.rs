//! Whisper speech to text on the [`Seq2Seq`] loop: language detection, 30 s windows over long
//! audio with seeking by timestamps, segment timestamps, greedy or beam search; and
//! transcription of speech regions only (from a voice-activity model), grouped into windows.

use std::ops::Range;

use crate::audio::LogMel;
use crate::runtime::Array;
use crate::seq2seq::{EncoderState, GenerateOptions, LogitsProcessor, Seq2Seq, log_softmax};
use crate::spec::{ModelSpec, WhisperSpec};
use crate::{ModelError, ModelHome, Runtime};

/// Transcription settings.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// Language code (`en`, `de`, ...); `None` detects it on the first window.
    pub language: Option<String>,
    /// Translate to English instead of transcribing.
    pub translate: bool,
    /// 1 = greedy.
    pub beam_size: usize,
    /// Predict segment timestamps (and seek by them); without them each window is one segment.
    pub timestamps: bool,
    /// Tokens per window at most.
    pub max_new_tokens: usize,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self { language: None, translate: false, beam_size: 1, timestamps: true, max_new_tokens: 224 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Seconds from the start of the audio.
    pub start: f32,
    pub end: f32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub language: String,
    /// The detected language's probability (1.0 when the language was given).
    pub language_probability: f32,
    pub segments: Vec<Segment>,
}

impl Transcript {
    /// All segments' text, joined.
    pub fn text(&self) -> String {
        self.segments.iter().map(|s| s.text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ")
    }
}

/// Whisper: 16 kHz mono in, text with timestamps out.
pub struct SpeechToText {
    s2s: Seq2Seq,
    w: WhisperSpec,
    /// The log-mel computed here when the export has no front-end graph.
    mel: Option<LogMel>,
}

impl SpeechToText {
    /// Whisper base, as exported by `onnx_models/export_whisper.py`.
    pub fn whisper_base(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        Self::load(rt, home, "whisper-base")
    }

    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let w = spec.section(&spec.whisper, "whisper")?.clone();
        let s2s = Seq2Seq::from_spec(rt, spec)?;
        let bad = |message: String| ModelError::Spec { path: spec.dir.join("model.toml"), message };
        let mel = match (&w.features, &s2s.spec().frontend) {
            (Some(f), _) => {
                Some(LogMel::whisper(f, w.sample_rate, w.chunk).map_err(|m| bad(format!("[whisper.features]: {m}")))?)
            }
            (None, Some(_)) => None,
            (None, None) => return Err(bad("whisper needs [whisper.features] or a seq2seq frontend graph".into())),
        };
        if w.lang_ids.len() != w.lang_codes.len() {
            return Err(bad("whisper lang_ids and lang_codes differ in length".into()));
        }
        Ok(Self { s2s, w, mel })
    }

    pub fn id(&self) -> &str {
        self.s2s.id()
    }
    pub fn sample_rate(&self) -> u32 {
        self.w.sample_rate
    }
    pub fn seq2seq(&self) -> &Seq2Seq {
        &self.s2s
    }

    /// Encode one window (at most 30 s; zero-padded).
    pub fn encode_window(&self, samples: &[f32]) -> Result<EncoderState, ModelError> {
        let mut wave = vec![0f32; self.w.chunk];
        let n = samples.len().min(self.w.chunk);
        wave[..n].copy_from_slice(&samples[..n]);
        let mel = match &self.mel {
            Some(m) => {
                let feats = m.whisper_features(&wave);
                let n_mels = m.n_mels();
                Array::F32(vec![1, n_mels, feats.len() / n_mels.max(1)], feats)
            }
            None => self.s2s.frontend(&Array::F32(vec![1, self.w.chunk], wave))?,
        };
        self.s2s.encode(&mel)
    }

    /// Language probabilities for an encoded window, best first.
    pub fn detect_language(&self, state: &EncoderState) -> Result<Vec<(String, f32)>, ModelError> {
        if self.w.lang_ids.is_empty() {
            // An English-only model.
            return Ok(vec![("en".into(), 1.0)]);
        }
        let enc = self.s2s.enc_values(state)?;
        let mut past = crate::seq2seq::Past::default();
        let logits = self.s2s.step(&enc, &mut past, &[vec![self.w.sot]])?;
        let sel: Vec<f32> = self.w.lang_ids.iter().map(|&i| logits[0][i as usize]).collect();
        let lp = log_softmax(&sel);
        let mut out: Vec<(String, f32)> = self.w.lang_codes.iter().cloned().zip(lp.into_iter().map(f32::exp)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }

    /// Transcribe 16 kHz mono samples of any length.
    pub fn transcribe(&self, samples: &[f32], opts: &TranscribeOptions) -> Result<Transcript, ModelError> {
        let all = 0..samples.len();
        self.transcribe_spans(samples, std::slice::from_ref(&all), opts)
    }

    /// Transcribe only where someone speaks: `regions` are sample ranges of `samples` (in
    /// order, from a voice-activity model). Consecutive regions are grouped into windows of at
    /// most 30 s (cut on region boundaries; a longer region is windowed on its own), the
    /// language is identified on the first window (speech), and segment times are the file's.
    /// `None` when there are no regions: nothing is decoded.
    pub fn transcribe_regions(
        &self,
        samples: &[f32],
        regions: &[Range<usize>],
        opts: &TranscribeOptions,
    ) -> Result<Option<Transcript>, ModelError> {
        let regions: Vec<Range<usize>> = regions
            .iter()
            .map(|r| r.start.min(samples.len())..r.end.min(samples.len()))
            .filter(|r| !r.is_empty())
            .collect();
        if regions.is_empty() {
            return Ok(None);
        }
        let spans = group_regions(&regions, self.w.chunk);
        self.transcribe_spans(samples, &spans, opts).map(Some)
    }

    /// The windowed decode over each span of `samples` in turn: windows of at most 30 s from
    /// the span's start, each next one starting where the last segment ended, none past the
    /// span's end.
    fn transcribe_spans(
        &self,
        samples: &[f32],
        spans: &[Range<usize>],
        opts: &TranscribeOptions,
    ) -> Result<Transcript, ModelError> {
        let mut segments = Vec::new();
        let mut language: Option<(String, f32)> = opts.language.clone().map(|l| (l, 1.0));
        for span in spans {
            self.transcribe_span(samples, span.clone(), opts, &mut language, &mut segments)?;
        }
        let (language, language_probability) = language.unwrap_or_else(|| ("en".into(), 0.0));
        Ok(Transcript { language, language_probability, segments })
    }

    fn transcribe_span(
        &self,
        samples: &[f32],
        span: Range<usize>,
        opts: &TranscribeOptions,
        language: &mut Option<(String, f32)>,
        segments: &mut Vec<Segment>,
    ) -> Result<(), ModelError> {
        let rate = self.w.sample_rate as f32;
        let mut seek = span.start;
        while seek < span.end {
            let window = &samples[seek..(seek + self.w.chunk).min(span.end)];
            if window.len() < (rate * 0.1) as usize && seek > span.start {
                break;
            }
            let state = self.encode_window(window)?;
            if language.is_none() {
                *language = self.detect_language(&state)?.into_iter().next();
            }
            let (lang, _) = language.clone().ok_or_else(|| ModelError::output(self.id(), "no language"))?;
            let mut prompt = vec![self.w.sot];
            // English-only models (no language ids) take no language or task token.
            if !self.w.lang_ids.is_empty() {
                let lang_pos = self
                    .w
                    .lang_codes
                    .iter()
                    .position(|c| *c == lang)
                    .ok_or_else(|| ModelError::input(self.id(), format!("unknown language {lang}")))?;
                prompt.push(self.w.lang_ids[lang_pos]);
                prompt.push(if opts.translate { self.w.translate } else { self.w.transcribe });
            }
            if !opts.timestamps {
                prompt.push(self.w.no_timestamps);
            }
            let gen_opts = GenerateOptions {
                beam_size: opts.beam_size,
                max_new_tokens: opts.max_new_tokens,
                prompt: Some(prompt),
                length_penalty: 1.0,
                suppress: Vec::new(),
            };
            let rules = TimestampRules { w: &self.w, eos: self.s2s.spec().eos_id, timestamps: opts.timestamps };
            let generated = self.s2s.generate(&state, &gen_opts, Some(&rules))?.remove(0);
            let offset = seek as f32 / rate;
            let window_s = window.len() as f32 / rate;
            let (segs, consumed) = self.segments(&generated.tokens, offset, window_s)?;
            // A timestamp can point into the zero padding after a short window: what was said
            // lies in the window.
            let end = offset + window_s;
            segments.extend(segs.into_iter().map(|s| Segment { start: s.start.min(end), end: s.end.min(end), ..s }));
            let advance = consumed.map(|s| (s * rate) as usize).filter(|&a| a > 0).unwrap_or(window.len());
            seek += advance.min(window.len());
        }
        Ok(())
    }

    /// Split a window's tokens into segments at timestamp pairs. Returns the segments and, when
    /// the last segment did not reach the window's end, where the next window should start
    /// (seconds from the window start).
    fn segments(&self, tokens: &[u32], offset: f32, window_s: f32) -> Result<(Vec<Segment>, Option<f32>), ModelError> {
        let tb = self.w.timestamp_begin;
        let time = |t: u32| (t - tb) as f32 * self.w.time_precision;
        let mut segs = Vec::new();
        let mut start: Option<f32> = None;
        let mut text: Vec<u32> = Vec::new();
        let mut last_end = None;
        for (i, &t) in tokens.iter().enumerate() {
            if t >= tb {
                let ts = time(t);
                match start {
                    Some(s) if !text.is_empty() => {
                        segs.push(Segment { start: offset + s, end: offset + ts, text: self.s2s.decode(&text)? });
                        text.clear();
                        last_end = Some(ts);
                        start = None;
                        // A pair `<|t|><|t|>` closes one segment and opens the next.
                        if tokens.get(i + 1).is_some_and(|&n| n >= tb) {
                            continue;
                        }
                    }
                    _ => start = Some(ts),
                }
            } else if t < self.s2s.spec().eos_id {
                text.push(t);
            }
        }
        if !text.is_empty() {
            let s = start.or(last_end).unwrap_or(0.0);
            segs.push(Segment { start: offset + s, end: offset + window_s, text: self.s2s.decode(&text)? });
            return Ok((segs, None));
        }
        // Ended on a single timestamp: everything up to the window end was heard.
        let single_ending = tokens.len() >= 2 && tokens[tokens.len() - 1] >= tb && tokens[tokens.len() - 2] < tb;
        Ok((segs, if single_ending { None } else { last_end }))
    }
}

/// OpenAI Whisper's timestamp rules plus suppression of the special tokens.
struct TimestampRules<'a> {
    w: &'a WhisperSpec,
    eos: u32,
    timestamps: bool,
}

impl LogitsProcessor for TimestampRules<'_> {
    fn process(&self, tokens: &[u32], prompt_len: usize, logits: &mut [f32]) {
        let n = logits.len();
        let tb = (self.w.timestamp_begin as usize).min(n);
        let eos = self.eos as usize;
        // Special tokens between the end token and the timestamps are never generated.
        for x in &mut logits[eos + 1..tb] {
            *x = f32::NEG_INFINITY;
        }
        if !self.timestamps {
            for x in &mut logits[tb..] {
                *x = f32::NEG_INFINITY;
            }
            return;
        }
        let seq = &tokens[prompt_len..];
        let last_ts = seq.last().is_some_and(|&t| t as usize >= tb);
        let penult_ts = seq.len() < 2 || seq[seq.len() - 2] as usize >= tb;
        if last_ts {
            if penult_ts {
                logits[tb..].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            } else {
                logits[..eos].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            }
        }
        if let Some(&last) = seq.iter().rev().find(|&&t| t as usize >= tb) {
            let upto = if last_ts && !penult_ts { last as usize } else { last as usize + 1 };
            logits[tb..upto.min(n)].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        }
        if seq.is_empty() {
            logits[..tb].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            let last_allowed = tb + 50; // max initial timestamp 1.0 s
            logits[(last_allowed + 1).min(n)..].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        }
        let lp = log_softmax(logits);
        let ts_max = lp[tb..].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let ts_lse = ts_max + lp[tb..].iter().map(|x| (x - ts_max).exp()).sum::<f32>().ln();
        let text_max = lp[..tb].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if ts_lse > text_max {
            logits[..tb].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        }
    }
}

/// Consecutive regions grouped into spans of at most `max` samples, each from its first
/// region's start to its last region's end; a region longer than `max` is a span of its own.
fn group_regions(regions: &[Range<usize>], max: usize) -> Vec<Range<usize>> {
    let mut spans: Vec<Range<usize>> = Vec::new();
    for r in regions {
        match spans.last_mut() {
            Some(last) if r.end.saturating_sub(last.start) <= max => last.end = last.end.max(r.end),
            _ => spans.push(r.clone()),
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::group_regions;

    #[test]
    fn regions_group_into_windows_on_their_boundaries() {
        // 30 s windows at 16 kHz; regions at 1-5 s, 10-20 s, 25-32 s, 40-100 s, 101-102 s.
        let s = |a: f32, b: f32| (a * 16_000.0) as usize..(b * 16_000.0) as usize;
        let regions = [s(1.0, 5.0), s(10.0, 20.0), s(25.0, 32.0), s(40.0, 100.0), s(101.0, 102.0)];
        let spans = group_regions(&regions, 480_000);
        assert_eq!(spans, vec![s(1.0, 20.0), s(25.0, 32.0), s(40.0, 100.0), s(101.0, 102.0)]);
        // A region ending exactly 30 s after the window start still joins it.
        assert_eq!(group_regions(&[s(1.0, 5.0), s(25.0, 31.0)], 480_000), vec![s(1.0, 31.0)]);
        assert!(group_regions(&[], 480_000).is_empty());
    }
}
