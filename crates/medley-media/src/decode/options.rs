use std::time::Duration;

use crate::sampler::{Sampler, Shot};

/// What to pull out of a file.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Video frames sampled per second of presentation time (the first frame at or after each
    /// multiple of `1/fps` is taken). Used when `sampler` is `None`.
    pub frames_per_second: f64,
    /// How video frames are picked; `None` means `Sampler::Fps(frames_per_second)`.
    pub sampler: Option<Sampler>,
    /// Side of the square RGB frames handed out; `None` skips video.
    pub frame_size: Option<u32>,
    /// Mono sample rate handed out; `None` skips audio.
    pub audio_rate: Option<u32>,
    /// FFmpeg decoder threads.
    pub threads: usize,
    /// Packets that may fail to demux or decode before the file is given up as corrupt.
    pub max_decode_errors: usize,
    /// Wall-clock budget for one file; past it the file is given up (`timeout`).
    pub time_budget: Option<Duration>,
    /// Hardware decoding; falls back to software with a notice when unavailable.
    pub hwaccel: HwAccel,
    /// Also hand out each sampled frame whole ([`Frame::full`]), upright and in display
    /// aspect, scaled so its longer side is at most this many pixels (never up); `None`
    /// (the default) skips it.
    pub full_frame_side: Option<u32>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            frames_per_second: 1.0,
            sampler: None,
            frame_size: Some(224),
            audio_rate: None,
            threads: 2,
            max_decode_errors: 64,
            time_budget: Some(Duration::from_secs(30 * 60)),
            hwaccel: HwAccel::None,
            full_frame_side: None,
        }
    }
}

impl DecodeOptions {
    /// The sampler in effect.
    pub fn effective_sampler(&self) -> Sampler {
        self.sampler.clone().unwrap_or(Sampler::Fps(self.frames_per_second))
    }
}

/// Hardware decoding through FFmpeg's hardware device contexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HwAccel {
    #[default]
    None,
    /// NVDEC through a CUDA device context.
    Cuda,
}

impl HwAccel {
    /// Whether this machine can decode this way: `Err` says what is missing (for `cuda`: the
    /// FFmpeg build's CUDA support, the driver or a device), so a run that asks for it can be
    /// refused before any work.
    pub fn check(self) -> Result<(), String> {
        match self {
            Self::None => Ok(()),
            Self::Cuda => super::video::cuda_device_check(),
        }
    }
}

impl std::fmt::Display for HwAccel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Cuda => "cuda",
        })
    }
}

impl std::str::FromStr for HwAccel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Self::None),
            "cuda" | "nvdec" => Ok(Self::Cuda),
            _ => Err(format!("bad hwaccel {s:?}: expected none or cuda")),
        }
    }
}

/// A whole picture, uncropped and upright, aspect kept (for reading on-screen text, where the
/// square crop of [`Frame`] would cut words at the sides). RGB24, rows packed.
#[derive(Debug, Clone)]
pub struct FullFrame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// A sampled video frame: square, RGB24, rows packed, already upright.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Presentation time in seconds from the file's start.
    pub pts_s: f64,
    pub size: u32,
    pub rgb: Vec<u8>,
    /// The decoded picture was a key frame.
    pub keyframe: bool,
    /// With the `shots` sampler: the shot this frame belongs to (index into `DecodeStats::shots`).
    pub shot: Option<u32>,
    /// The whole picture, when `DecodeOptions::full_frame_side` asks for it.
    pub full: Option<FullFrame>,
}

#[derive(Debug, Clone, Default)]
pub struct DecodeStats {
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub audio_samples: u64,
    pub decode_errors: usize,
    /// Presentation time of the last video frame decoded, in seconds from the file's start.
    pub last_video_pts_s: Option<f64>,
    /// Presentation time of the first audio sample handed out, in seconds from the file's start.
    pub first_audio_pts_s: Option<f64>,
    /// With the `shots` sampler: every shot, in order.
    pub shots: Vec<Shot>,
    /// Seeks made (the `uniform` sampler).
    pub seeks: u32,
    /// Why hardware decoding was not used, when it was asked for.
    pub hwaccel_fallback: Option<String>,
    /// Hardware decoding was used.
    pub hwaccel_used: bool,
    /// The data ended well before the duration the header declares (a file cut short, for
    /// example by an interrupted copy): what was decoded and what was promised.
    pub truncated: Option<Truncation>,
}

/// A file whose data ends before its header's duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truncation {
    /// Seconds actually decoded (from the file's start).
    pub decoded_s: f64,
    /// Seconds the container header declares.
    pub declared_s: f64,
}
