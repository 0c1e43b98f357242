//! Test helpers: stub models behind the pipeline's model traits (cheap, deterministic, with
//! outputs that say what they saw), small real media files written from scratch, and a
//! pipeline and store in a temporary folder. No model files are needed.

use std::f32::consts::TAU;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use medley_models::{ImageOutput, ModelError};
use medley_pipeline::{ModelSet, PipelineConfig, Sound, Text, Vision};
use medley_store::{Store, VectorDims};

/// Vector widths of the stubs.
pub const DIMS: VectorDims = VectorDims { visual: 4, audio: 3, bridge: 3, music: 2, text: 3, clip: None, clap: None };

/// Frames give `[mean red, mean green, mean blue, 1]` (0..1) and class probabilities over
/// `red`, `green`, `blue` in proportion to those means. With `panic_on_red`, a mostly red
/// frame makes it panic, as a buggy model binding might.
pub struct StubVision {
    labels: Vec<String>,
    panic_on_red: bool,
    pub frames: AtomicUsize,
}

impl Vision for StubVision {
    fn input_size(&self) -> u32 {
        16
    }
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn encode(&self, frames: Vec<Vec<u8>>) -> Result<Vec<ImageOutput>, ModelError> {
        self.frames.fetch_add(frames.len(), Ordering::Relaxed);
        Ok(frames
            .iter()
            .map(|rgb| {
                let mut mean = [0f32; 3];
                for px in rgb.chunks_exact(3) {
                    (0..3).for_each(|c| mean[c] += f32::from(px[c]) / 255.0);
                }
                let n = (rgb.len() / 3).max(1) as f32;
                mean.iter_mut().for_each(|m| *m /= n);
                if self.panic_on_red && mean[0] > 0.7 && mean[1] < 0.3 {
                    panic!("stub vision: a red frame");
                }
                let total = mean.iter().sum::<f32>().max(1e-6);
                ImageOutput {
                    embedding: vec![mean[0], mean[1], mean[2], 1.0],
                    probabilities: mean.iter().map(|m| m / total).collect(),
                }
            })
            .collect())
    }
    fn bridge(&self, probabilities: &[f32], _colours: Option<&[f32]>) -> Vec<f32> {
        probabilities.to_vec()
    }
}

/// 8 kHz, half-second windows; each gives `[RMS, peak, 1]` of the (peak-normalised) window.
pub struct StubSound;

impl Sound for StubSound {
    fn sample_rate(&self) -> u32 {
        8_000
    }
    fn window(&self) -> usize {
        4_000
    }
    fn encode(&self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(windows
            .iter()
            .map(|w| {
                let rms = (w.iter().map(|x| x * x).sum::<f32>() / w.len().max(1) as f32).sqrt();
                vec![rms, w.iter().fold(0f32, |m, x| m.max(x.abs())), 1.0]
            })
            .collect())
    }
}

/// `[characters, words, 1]` per text.
pub struct StubText;

impl Text for StubText {
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(texts.iter().map(|t| vec![t.chars().count() as f32, t.split_whitespace().count() as f32, 1.0]).collect())
    }
}

/// A pipeline file for the stubs: vision and audio, 4 frames a second, 1-second segments,
/// commits of two items.
pub const PIPELINE: &str = r#"
[pipeline]
name = "stub"

[sampler]
video = "fps:4"

[stages]
vision = true
audio = true
music = false
speech = false

[models]
image = "stub-image"
audio = "stub-audio"
text = "stub-text"

[index]
commit_every = 2
frame_batch = 3

[fusion]
weights = { visual = 1.0, audio = 1.0 }
dim = 0

[segments]
by = "window"
window_s = 1.0
"#;

/// The stub models under [`PIPELINE`].
pub fn stub_models(panic_on_red: bool) -> ModelSet {
    let config = PipelineConfig::parse_unchecked(PIPELINE).unwrap();
    ModelSet {
        config,
        id: "stub:stub-image+stub-audio+stub-text".into(),
        vision: Arc::new(StubVision {
            labels: ["red", "green", "blue"].map(String::from).to_vec(),
            panic_on_red,
            frames: AtomicUsize::new(0),
        }),
        sound: Arc::new(StubSound),
        text: Arc::new(StubText),
        music: None,
        speech: None,
        captioner: None,
        sound_events: None,
        reader: None,
        shots: None,
        clip: None,
        clap: None,
        clock: Arc::default(),
    }
}

/// A store in `dir/db` with the stubs' widths.
pub async fn store(dir: &Path) -> Store {
    Store::open(&dir.join("db").to_string_lossy(), DIMS).await.unwrap()
}

/// 16-bit mono PCM WAV: a sine at `freq` Hz.
pub fn wav(path: &Path, seconds: f32, freq: f32) -> PathBuf {
    let rate = 8_000u32;
    let samples = pcm(rate, seconds, freq);
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    write(path, &out)
}

/// Sun/NeXT audio whose header declares `declared_s` seconds but which holds `written_s`: a
/// file cut short, as an interrupted copy leaves it (the AU header's data size is trusted by
/// FFmpeg, unlike WAV's).
pub fn truncated_au(path: &Path, declared_s: f32, written_s: f32) -> PathBuf {
    let rate = 8_000u32;
    let samples = pcm(rate, written_s, 440.0);
    let mut out = Vec::new();
    for word in [0x2e73_6e64u32, 24, (declared_s * rate as f32) as u32 * 2, 3, rate, 1] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend(samples.iter().flat_map(|s| s.to_be_bytes()));
    write(path, &out)
}

/// An uncompressed YUV4MPEG2 video of one flat colour (BT.601 limited-range Y, Cb, Cr), 16x16
/// at 4 frames a second.
pub fn y4m(path: &Path, seconds: f32, ycbcr: [u8; 3]) -> PathBuf {
    let (w, h) = (16usize, 16usize);
    let mut out = b"YUV4MPEG2 W16 H16 F4:1 Ip A1:1 C420jpeg\n".to_vec();
    for _ in 0..(seconds * 4.0).round() as usize {
        out.extend_from_slice(b"FRAME\n");
        out.extend(std::iter::repeat_n(ycbcr[0], w * h));
        out.extend(std::iter::repeat_n(ycbcr[1], w * h / 4));
        out.extend(std::iter::repeat_n(ycbcr[2], w * h / 4));
    }
    write(path, &out)
}

pub const RED: [u8; 3] = [81, 90, 240];
pub const BLUE: [u8; 3] = [41, 240, 110];
pub const GREEN: [u8; 3] = [145, 54, 34];

fn pcm(rate: u32, seconds: f32, freq: f32) -> Vec<i16> {
    let n = (seconds * rate as f32) as usize;
    (0..n).map(|i| ((i as f32 * freq * TAU / rate as f32).sin() * 12_000.0) as i16).collect()
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}
