//! Voice activity: Silero VAD (the 16 kHz ONNX graph of PyPI `silero-vad`, exported by
//! `onnx_models/export_vad.py`) gives a speech probability per 512-sample chunk (32 ms), and
//! [`speech_regions`] turns the probabilities into padded, merged speech regions with the
//! state machine of silero_vad's `get_speech_timestamps`, so the pipeline runs Whisper only
//! where someone speaks.

use std::ops::Range;
use std::sync::Mutex;

use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;

use crate::spec::ModelSpec;
use crate::{ModelError, ModelHome, Runtime};

/// The `[vad]` section of the model's `model.toml`: the graph's names and framing.
#[derive(Debug, Clone, Deserialize)]
pub struct VadSpec {
    pub file: String,
    /// Samples `[batch, context + chunk]`.
    pub input: String,
    /// Recurrent state in, `[2, batch, state_size]`.
    pub state: String,
    /// The sample rate as an int64 scalar (the graph takes it as an input).
    pub rate_input: String,
    /// Speech probability `[batch, 1]`.
    pub output: String,
    /// Recurrent state out, fed back as `state` for the next chunk.
    pub state_output: String,
    pub sample_rate: u32,
    /// New samples per call (512 at 16 kHz: 32 ms).
    pub chunk: usize,
    /// The previous chunk's last samples, prepended to each chunk (64 at 16 kHz), as
    /// silero_vad's `OnnxWrapper` does since v5.
    pub context: usize,
    pub state_size: usize,
}

/// Only the section this adapter reads; the rest of `model.toml` is [`ModelSpec`]'s.
#[derive(Deserialize)]
struct VadToml {
    vad: Option<VadSpec>,
}

/// How probabilities become regions: the parameters of silero_vad's `get_speech_timestamps`
/// (no maximum region length: Whisper windows long regions itself).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadOptions {
    /// A chunk at or above this probability is speech; a region ends below `threshold - 0.15`
    /// (at least 0.01).
    pub threshold: f32,
    /// Regions shorter than this are dropped.
    pub min_speech_ms: u32,
    /// Silence shorter than this does not end a region.
    pub min_silence_ms: u32,
    /// Added at both ends of each region (half the gap each when two regions are closer than
    /// twice this).
    pub speech_pad_ms: u32,
}

impl Default for VadOptions {
    /// silero_vad's own defaults.
    fn default() -> Self {
        Self { threshold: 0.5, min_speech_ms: 250, min_silence_ms: 100, speech_pad_ms: 30 }
    }
}

impl VadOptions {
    /// For cutting audio for Whisper: regions end after 500 ms of silence and keep 400 ms on
    /// each side (faster-whisper's padding), so words at their edges are heard whole: right
    /// after loud music the model is slow to rise (0.5 s late on a LibriVox clip cut in after
    /// an instrumental, whose first word 200 ms of padding lost). faster-whisper's 2000 ms of
    /// silence merges the odd voice-like note of an instrumental into a region long enough
    /// to keep (1.8 s of the sample media's 1918.mp3), which Whisper then transcribes.
    pub fn for_transcription() -> Self {
        Self { min_silence_ms: 500, speech_pad_ms: 400, ..Self::default() }
    }
}

/// Silero VAD: 16 kHz mono in, speech probabilities per chunk and speech regions out.
pub struct VoiceActivity {
    id: String,
    session: Mutex<Session>,
    spec: VadSpec,
}

impl VoiceActivity {
    /// Silero VAD as exported by `onnx_models/export_vad.py`.
    pub fn silero(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        Self::load(rt, home, "silero-vad")
    }

    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let path = spec.dir.join("model.toml");
        let spec_err = |message: String| ModelError::Spec { path: path.clone(), message };
        let text = std::fs::read_to_string(&path).map_err(|e| spec_err(e.to_string()))?;
        let toml: VadToml = toml::from_str(&text).map_err(|e| spec_err(e.to_string()))?;
        let vad = spec.section(&toml.vad, "vad")?.clone();
        if vad.chunk == 0 || vad.context > vad.chunk || vad.state_size == 0 {
            return Err(spec_err(format!(
                "[vad] chunk {}, context {}, state_size {}: need 0 < context <= chunk and a state",
                vad.chunk, vad.context, vad.state_size
            )));
        }
        let session = rt.session(&spec.id, &spec.file(&vad.file)?)?;
        Ok(Self { id: spec.id.clone(), session, spec: vad })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }
    /// Samples per probability.
    pub fn chunk(&self) -> usize {
        self.spec.chunk
    }

    /// One speech probability per chunk of `samples` (at [`Self::sample_rate`]), the last
    /// chunk zero-padded, the recurrent state carried from chunk to chunk from zero, as
    /// silero_vad's `OnnxWrapper.audio_forward` computes them.
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>, ModelError> {
        let (chunk, context) = (self.spec.chunk, self.spec.context);
        let width = chunk + context;
        let state_len = 2 * self.spec.state_size;
        let mut input = vec![0f32; width];
        let mut state = vec![0f32; state_len];
        let rate = [i64::from(self.spec.sample_rate)];
        let mut out = Vec::with_capacity(samples.len().div_ceil(chunk));
        let err_in = |e: ort::Error| ModelError::input(&self.id, e);
        let mut session = crate::runtime::lock(&self.session);
        for piece in samples.chunks(chunk) {
            // The context is the last samples of the previous (padded) chunk: zeros at first.
            input.copy_within(width - context.., 0);
            input[context..context + piece.len()].copy_from_slice(piece);
            input[context + piece.len()..].fill(0.0);
            let outputs = session
                .run(ort::inputs![
                    self.spec.input.as_str() => TensorRef::from_array_view(([1usize, width], input.as_slice())).map_err(err_in)?,
                    self.spec.state.as_str() => TensorRef::from_array_view(([2usize, 1, self.spec.state_size], state.as_slice())).map_err(err_in)?,
                    self.spec.rate_input.as_str() => TensorRef::from_array_view((Vec::<usize>::new(), &rate[..])).map_err(err_in)?,
                ])
                .map_err(|e| ModelError::session(&self.id, e))?;
            let value = |name: &str| -> Result<&[f32], ModelError> {
                let v = outputs.get(name).ok_or_else(|| ModelError::output(&self.id, format!("no output {name}")))?;
                v.try_extract_tensor::<f32>()
                    .map(|(_, d)| d)
                    .map_err(|e| ModelError::output(&self.id, format!("{name}: {e}")))
            };
            let p = value(&self.spec.output)?;
            let next = value(&self.spec.state_output)?;
            if p.len() != 1 || next.len() != state_len {
                return Err(ModelError::output(
                    &self.id,
                    format!("{} probabilities and a state of {} values for one chunk", p.len(), next.len()),
                ));
            }
            out.push(p[0]);
            state.copy_from_slice(next);
        }
        Ok(out)
    }

    /// Where someone speaks in `samples`: sample ranges, in order, not overlapping.
    pub fn regions(&self, samples: &[f32], opts: &VadOptions) -> Result<Vec<Range<usize>>, ModelError> {
        let probabilities = self.probabilities(samples)?;
        Ok(speech_regions(&probabilities, samples.len(), self.spec.sample_rate, self.spec.chunk, opts))
    }
}

/// Speech regions (sample ranges) from per-chunk probabilities, as silero_vad's
/// `get_speech_timestamps_from_probs` (v6.2) finds them with `max_speech_duration_s` infinite:
/// a region starts at the first chunk at or above the threshold, ends where the probability
/// stays below `threshold - 0.15` for `min_silence_ms`, is kept when longer than
/// `min_speech_ms`, and is padded by `speech_pad_ms` (neighbours closer than twice the
/// padding share the gap between them). `len` is the number of samples the probabilities
/// cover; the arithmetic follows Python's, float and integer, so regions match it exactly.
pub fn speech_regions(
    probabilities: &[f32],
    len: usize,
    rate: u32,
    chunk: usize,
    opts: &VadOptions,
) -> Vec<Range<usize>> {
    let rate = f64::from(rate);
    let ms = |v: u32| rate * f64::from(v) / 1000.0;
    let (min_speech, min_silence, pad) = (ms(opts.min_speech_ms), ms(opts.min_silence_ms), ms(opts.speech_pad_ms));
    let threshold = opts.threshold;
    let neg_threshold = (threshold - 0.15).max(0.01);
    let mut found: Vec<(i64, i64)> = Vec::new();
    let mut start: Option<i64> = None;
    let mut temp_end: Option<i64> = None;
    for (i, &p) in probabilities.iter().enumerate() {
        let current = (chunk * i) as i64;
        if p >= threshold && temp_end.is_some() {
            temp_end = None;
        }
        if p >= threshold && start.is_none() {
            start = Some(current);
            continue;
        }
        if let (true, Some(s)) = (p < neg_threshold, start) {
            let end = *temp_end.get_or_insert(current);
            if ((current - end) as f64) < min_silence {
                continue;
            }
            if ((end - s) as f64) > min_speech {
                found.push((s, end));
            }
            start = None;
            temp_end = None;
        }
    }
    let len = len as i64;
    if let Some(s) = start
        && ((len - s) as f64) > min_speech
    {
        found.push((s, len));
    }
    // Padding, in Python's mix of floats (the padding) and integers (the positions).
    let n = found.len();
    for i in 0..n {
        if i == 0 {
            found[0].0 = ((found[0].0 as f64 - pad).max(0.0)) as i64;
        }
        if i + 1 < n {
            let silence = found[i + 1].0 - found[i].1;
            if (silence as f64) < 2.0 * pad {
                found[i].1 += silence.div_euclid(2);
                found[i + 1].0 = (found[i + 1].0 - silence.div_euclid(2)).max(0);
            } else {
                found[i].1 = (found[i].1 as f64 + pad).min(len as f64) as i64;
                found[i + 1].0 = (found[i + 1].0 as f64 - pad).max(0.0) as i64;
            }
        } else {
            found[i].1 = (found[i].1 as f64 + pad).min(len as f64) as i64;
        }
    }
    found.into_iter().map(|(s, e)| s.max(0) as usize..e.max(0) as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(p: &[f32], opts: &VadOptions) -> Vec<Range<usize>> {
        speech_regions(p, p.len() * 512, 16_000, 512, opts)
    }

    #[test]
    fn silence_has_no_regions_and_speech_is_padded() {
        let opts = VadOptions::default();
        assert!(regions(&[0.0; 100], &opts).is_empty());
        // 20 chunks of speech (640 ms) from chunk 10, then silence.
        let mut p = vec![0.0; 100];
        p[10..30].fill(0.9);
        assert_eq!(regions(&p, &opts), vec![5120 - 480..15360 + 480]);
    }

    #[test]
    fn short_bursts_are_dropped_and_short_gaps_kept() {
        let opts = VadOptions::default();
        // 5 chunks = 160 ms < 250 ms: dropped.
        let mut p = vec![0.0; 100];
        p[10..15].fill(0.9);
        assert!(regions(&p, &opts).is_empty());
        // A gap of 2 chunks (64 ms < 100 ms) does not split a region.
        let mut p = vec![0.0; 100];
        p[10..30].fill(0.9);
        p[32..50].fill(0.9);
        assert_eq!(regions(&p, &opts).len(), 1);
        // Between the thresholds (0.35..0.5) speech goes on.
        p[30..32].fill(0.4);
        p[20..25].fill(0.4);
        assert_eq!(regions(&p, &opts), vec![5120 - 480..25600 + 480]);
    }

    #[test]
    fn close_regions_share_the_gap() {
        let opts = VadOptions { speech_pad_ms: 100, ..VadOptions::default() };
        // Two regions 5 chunks (2560 samples) apart: less than twice the 1600-sample padding.
        let mut p = vec![0.0; 100];
        p[10..30].fill(0.9);
        p[35..60].fill(0.9);
        let r = regions(&p, &opts);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].end, r[1].start, "{r:?}");
        // Speech to the end of the audio ends there.
        let p = vec![0.9; 50];
        assert_eq!(regions(&p, &opts), vec![0..50 * 512]);
    }
}
