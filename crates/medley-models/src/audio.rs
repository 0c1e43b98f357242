use std::sync::Mutex;

use ort::{session::Session, value::TensorRef};

use crate::spec::{AudioSpec, MelSpec, ModelSpec};
use crate::{ModelError, ModelHome, Runtime, l2_normalize, runtime::rows};

/// An audio encoder on raw mono waveforms built from a model's `[audio]` section (the front
/// end is inside the graph), one embedding per fixed-length window: aiSFX, a CLAP audio tower.
pub struct AudioEncoder {
    id: String,
    session: Mutex<Session>,
    spec: AudioSpec,
    /// The log-mel front end when the graph takes features rather than samples (CLAP).
    mel: Option<LogMel>,
}

impl AudioEncoder {
    /// aiSFX: 44.1 kHz, windows of 101,376 samples (2.3 s), 512-d.
    pub fn aisfx(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        Self::load(rt, home, "aisfx")
    }

    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let section = spec.section(&spec.audio, "audio")?.clone();
        let mel = match &section.features {
            Some(m) => Some(LogMel::new(m, section.sample_rate, section.window).map_err(|message| {
                ModelError::Spec { path: spec.dir.join("model.toml"), message: format!("[audio.features]: {message}") }
            })?),
            None => None,
        };
        let path = spec.file(&section.file)?;
        let session = rt.session(&spec.id, &path)?;
        Ok(Self { id: rt.graph_id(&spec.id, &path), session, spec: section, mel })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }
    pub fn window(&self) -> usize {
        self.spec.window
    }
    pub fn dim(&self) -> usize {
        self.spec.dim
    }

    /// Encode windows of exactly `window()` samples each.
    pub fn encode(&self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let input = concat_windows(&self.id, windows, self.spec.window)?;
        let (shape, input) = match &self.mel {
            Some(mel) => {
                let per = mel.spec.frames * mel.spec.n_mels;
                let mut feats = Vec::with_capacity(windows.len() * per);
                for w in windows {
                    feats.extend(mel.features(w));
                }
                (vec![windows.len(), 1, mel.spec.frames, mel.spec.n_mels], feats)
            }
            None => (vec![windows.len(), self.spec.window], input),
        };
        let tensor =
            TensorRef::from_array_view((shape, input.as_slice())).map_err(|e| ModelError::input(&self.id, e))?;
        let mut inputs = ort::inputs![self.spec.input.as_str() => tensor];
        inputs.extend(crate::spec::fixed_values(&self.spec.fixed_inputs, &self.id)?);
        let mut session = crate::runtime::lock(&self.session);
        let outputs = session.run(inputs).map_err(|e| ModelError::session(&self.id, e))?;
        let mut out = rows(&outputs, &self.spec.embedding, &self.id, self.spec.dim)?;
        if self.spec.normalize {
            out.iter_mut().for_each(|e| l2_normalize(e));
        }
        Ok(out)
    }
}

pub(crate) fn concat_windows(id: &str, windows: &[&[f32]], window: usize) -> Result<Vec<f32>, ModelError> {
    let mut input = Vec::with_capacity(windows.len() * window);
    for (i, w) in windows.iter().enumerate() {
        if w.len() != window {
            return Err(ModelError::input(id, format!("window {i} has {} samples, expected {window}", w.len())));
        }
        input.extend_from_slice(w);
    }
    Ok(input)
}

/// The Hugging Face feature extractors' log-mel spectrogram (`audio_utils.spectrogram`):
/// periodic Hann window, centred reflect padding, power spectrum, mel filter bank; then
/// CLAP's dB (`10 log10(max(x, 1e-10))`, [`LogMel::features`]) or Whisper's scaling
/// ([`LogMel::whisper_features`]). In f64 like numpy.
pub struct LogMel {
    spec: MelSpec,
    window: Vec<f64>,
    /// `[n_mels][n_fft / 2 + 1]`.
    filters: Vec<Vec<f64>>,
    /// `cos` and `sin` of the DFT, `[bins][n_fft]`, when `n_fft` is not a power of two
    /// (Whisper's 400): the direct sum then reads a table instead of calling sin/cos.
    dft: Option<(Vec<f64>, Vec<f64>)>,
}

impl LogMel {
    /// CLAP's front end: `frames` is `1 + samples / hop`.
    pub fn new(spec: &MelSpec, sample_rate: u32, samples: usize) -> Result<Self, String> {
        Self::build(spec, sample_rate, samples, 1 + samples / spec.hop.max(1))
    }

    /// Whisper's front end: `frames` is `samples / hop` (the extractor drops the last of
    /// `1 + samples / hop`).
    pub fn whisper(spec: &MelSpec, sample_rate: u32, samples: usize) -> Result<Self, String> {
        Self::build(spec, sample_rate, samples, samples / spec.hop.max(1))
    }

    fn build(spec: &MelSpec, sample_rate: u32, samples: usize, frames: usize) -> Result<Self, String> {
        if spec.n_fft < 2 || spec.hop == 0 || spec.n_mels == 0 {
            return Err(format!("n_fft {}, hop {}, n_mels {}", spec.n_fft, spec.hop, spec.n_mels));
        }
        if samples <= spec.n_fft / 2 {
            return Err(format!("window of {samples} samples is too short for n_fft {}", spec.n_fft));
        }
        if frames != spec.frames {
            return Err(format!("{samples} samples at hop {} give {frames} frames, not {}", spec.hop, spec.frames));
        }
        let n = spec.n_fft;
        let window = (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).collect();
        let filters = mel_filters(n / 2 + 1, spec, sample_rate)?;
        let dft = (!n.is_power_of_two()).then(|| {
            let angle = |k: usize, t: usize| -2.0 * std::f64::consts::PI * ((k * t) % n) as f64 / n as f64;
            let bins = n / 2 + 1;
            let cos = (0..bins).flat_map(|k| (0..n).map(move |t| angle(k, t).cos())).collect();
            let sin = (0..bins).flat_map(|k| (0..n).map(move |t| angle(k, t).sin())).collect();
            (cos, sin)
        });
        Ok(Self { spec: spec.clone(), window, filters, dft })
    }

    /// Mel bands per frame.
    pub fn n_mels(&self) -> usize {
        self.spec.n_mels
    }

    /// The mel power of every frame: `[frames][n_mels]`, row-major.
    fn mel_power(&self, samples: &[f32]) -> Vec<f64> {
        let n = self.spec.n_fft;
        let half = n / 2;
        let len = samples.len() as isize;
        // numpy's "reflect": the edge sample is not repeated.
        let at = |i: isize| -> f64 {
            let mut j = i;
            if len == 1 {
                return f64::from(samples[0]);
            }
            while j < 0 || j >= len {
                j = if j < 0 { -j } else { 2 * (len - 1) - j };
            }
            f64::from(samples[j as usize])
        };
        let bins = half + 1;
        let mut out = Vec::with_capacity(self.spec.frames * self.spec.n_mels);
        let mut re = vec![0f64; n];
        let mut im = vec![0f64; n];
        let mut power = vec![0f64; bins];
        for f in 0..self.spec.frames {
            let start = (f * self.spec.hop) as isize - half as isize;
            for k in 0..n {
                re[k] = at(start + k as isize) * self.window[k];
                im[k] = 0.0;
            }
            match &self.dft {
                Some((cos, sin)) => {
                    for (b, p) in power.iter_mut().enumerate() {
                        let (c, s) = (&cos[b * n..(b + 1) * n], &sin[b * n..(b + 1) * n]);
                        let sr: f64 = re.iter().zip(c).map(|(x, w)| x * w).sum();
                        let si: f64 = re.iter().zip(s).map(|(x, w)| x * w).sum();
                        *p = sr * sr + si * si;
                    }
                }
                None => {
                    fft(&mut re, &mut im);
                    for b in 0..bins {
                        power[b] = re[b] * re[b] + im[b] * im[b];
                    }
                }
            }
            for filter in &self.filters {
                out.push(filter.iter().zip(&power).map(|(w, p)| w * p).sum());
            }
        }
        out
    }

    /// CLAP's features of one window: `[frames, n_mels]` row-major, in dB.
    pub fn features(&self, samples: &[f32]) -> Vec<f32> {
        self.mel_power(samples).into_iter().map(|m| (10.0 * m.max(1e-10).log10()) as f32).collect()
    }

    /// Whisper's features of one (zero-padded) window: `[n_mels, frames]` row-major,
    /// `log10`, floored 8 below the window's maximum, then `(x + 4) / 4`.
    pub fn whisper_features(&self, samples: &[f32]) -> Vec<f32> {
        let log: Vec<f64> = self.mel_power(samples).into_iter().map(|m| m.max(1e-10).log10()).collect();
        let floor = log.iter().copied().fold(f64::NEG_INFINITY, f64::max) - 8.0;
        let (frames, mels) = (self.spec.frames, self.spec.n_mels);
        let mut out = vec![0f32; frames * mels];
        for (i, x) in log.into_iter().enumerate() {
            let (f, m) = (i / mels, i % mels);
            out[m * frames + f] = ((x.max(floor) + 4.0) / 4.0) as f32;
        }
        out
    }
}

/// In-place radix-2 FFT (`re.len()` a power of two).
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    debug_assert!(n.is_power_of_two());
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * std::f64::consts::PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (s, c) = (ang * k as f64).sin_cos();
                let (a, b) = (start + k, start + k + len / 2);
                let (tr, ti) = (re[b] * c - im[b] * s, re[b] * s + im[b] * c);
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len <<= 1;
    }
}

/// transformers' `mel_filter_bank` (triangles in Hz between mel-spaced edges), as
/// `[n_mels][bins]`.
fn mel_filters(bins: usize, spec: &MelSpec, sample_rate: u32) -> Result<Vec<Vec<f64>>, String> {
    let htk = match spec.mel_scale.as_str() {
        "htk" => true,
        "slaney" => false,
        other => return Err(format!("mel_scale {other:?} (slaney or htk)")),
    };
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 27.0 / 6.4f64.ln());
    let to_mel = |f: f64| {
        if htk {
            2595.0 * (1.0 + f / 700.0).log10()
        } else if f >= min_log_hz {
            min_log_mel + (f / min_log_hz).ln() * logstep
        } else {
            3.0 * f / 200.0
        }
    };
    let to_hz = |m: f64| {
        if htk {
            700.0 * (10f64.powf(m / 2595.0) - 1.0)
        } else if m >= min_log_mel {
            min_log_hz * ((m - min_log_mel) / logstep).exp()
        } else {
            200.0 * m / 3.0
        }
    };
    let n = spec.n_mels;
    let (lo, hi) = (to_mel(spec.f_min), to_mel(spec.f_max));
    let edges: Vec<f64> = (0..n + 2).map(|i| to_hz(lo + (hi - lo) * i as f64 / (n + 1) as f64)).collect();
    let nyquist = f64::from(sample_rate / 2);
    let fft_freqs: Vec<f64> =
        (0..bins).map(|i| if bins == 1 { 0.0 } else { nyquist * i as f64 / (bins - 1) as f64 }).collect();
    let slaney_norm = match spec.norm.as_deref() {
        None => false,
        Some("slaney") => true,
        Some(other) => return Err(format!("norm {other:?} (slaney or none)")),
    };
    Ok((0..n)
        .map(|m| {
            let enorm = if slaney_norm { 2.0 / (edges[m + 2] - edges[m]) } else { 1.0 };
            fft_freqs
                .iter()
                .map(|&f| {
                    let down = (f - edges[m]) / (edges[m + 1] - edges[m]);
                    let up = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1]);
                    down.min(up).max(0.0) * enorm
                })
                .collect()
        })
        .collect())
}
