use std::path::{Path, PathBuf};

use ffmpeg_next::{self as ff, codec, format, media};

use crate::error::{MediaError, MediaErrorKind};

/// What a file holds, as far as indexing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Video,
    Audio,
    Image,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Image => "image",
        }
    }
}

#[derive(Debug, Clone)]
pub struct VideoStream {
    pub index: usize,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
    /// Clockwise rotation in degrees (0, 90, 180, 270) to apply for display.
    pub rotation: u32,
    /// Sample (pixel) aspect ratio; 1.0 for square pixels.
    pub pixel_aspect: f64,
}

#[derive(Debug, Clone)]
pub struct AudioStream {
    pub index: usize,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub path: PathBuf,
    pub container: String,
    pub kind: MediaKind,
    pub size_bytes: u64,
    pub duration_s: Option<f64>,
    /// Start of the presentation timeline in seconds (0 for most files).
    pub start_s: f64,
    pub video: Option<VideoStream>,
    pub audio: Option<AudioStream>,
}

fn err(path: &Path, kind: MediaErrorKind) -> MediaError {
    MediaError::new(path, kind)
}

pub(crate) fn open(path: &Path) -> Result<format::context::Input, MediaError> {
    crate::init();
    format::input(path).map_err(|e| err(path, classify_open_failure(path, e)))
}

/// Tell "not media at all" from "a media container that is damaged": probe the first bytes
/// by content only (no file name, so a text file named `.mp4` is not taken for MP4).
fn classify_open_failure(path: &Path, e: ff::Error) -> MediaErrorKind {
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    let n = match std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) {
        Ok(n) => n,
        // Not "empty": a file that cannot be opened or read (permissions, an I/O error).
        Err(io) => return MediaErrorKind::Unreadable(io.to_string()),
    };
    if n == 0 {
        return MediaErrorKind::ZeroBytes;
    }
    head.truncate(n);
    head.resize(n + ff::ffi::AVPROBE_PADDING_SIZE as usize, 0);
    // Only a confident content match counts: above AVPROBE_SCORE_RETRY (a C macro, MAX / 4).
    let mut score = ff::ffi::AVPROBE_SCORE_MAX / 4;
    // SAFETY: `pd` is zeroed then pointed at `head`, which outlives the call and carries the
    // AVPROBE_PADDING_SIZE zero bytes FFmpeg requires; the returned format is a static.
    let recognised = unsafe {
        let mut pd: ff::ffi::AVProbeData = std::mem::zeroed();
        pd.filename = c"".as_ptr();
        pd.buf = head.as_mut_ptr();
        pd.buf_size = n as i32;
        let fmt = ff::ffi::av_probe_input_format2(&pd, 1, &mut score);
        (!fmt.is_null()).then(|| std::ffi::CStr::from_ptr((*fmt).name).to_string_lossy().into_owned())
    };
    match recognised {
        Some(name) => MediaErrorKind::Corrupt(format!("{name} container recognised but unreadable: {e}")),
        None => MediaErrorKind::NotMedia(e.to_string()),
    }
}

/// Open a file and read its stream facts. Cover art (an attached picture) is not video.
pub fn probe(path: &Path) -> Result<Probe, MediaError> {
    let size_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let ictx = open(path)?;
    let container = ictx.format().name().to_string();
    let is_image_container = container == "image2" || container.ends_with("_pipe");

    let mut video: Option<(bool, u64, VideoStream)> = None;
    let mut audio: Option<(bool, u64, AudioStream)> = None;
    for stream in ictx.streams() {
        let params = stream.parameters();
        let disposition = stream.disposition();
        let is_default = disposition.contains(format::stream::Disposition::DEFAULT);
        let codec_name = codec_name(params.id());
        match params.medium() {
            media::Type::Video if !disposition.contains(format::stream::Disposition::ATTACHED_PIC) => {
                // SAFETY: `params` wraps the stream's live AVCodecParameters; a plain copy.
                let (width, height, sar) = unsafe {
                    let p = *params.as_ptr();
                    (p.width.max(0) as u32, p.height.max(0) as u32, p.sample_aspect_ratio)
                };
                let score = u64::from(width) * u64::from(height);
                let candidate = VideoStream {
                    index: stream.index(),
                    codec: codec_name,
                    width,
                    height,
                    fps: rate(stream.avg_frame_rate()).or_else(|| rate(stream.rate())),
                    rotation: rotation_degrees(&stream),
                    pixel_aspect: if sar.num > 0 && sar.den > 0 {
                        f64::from(sar.num) / f64::from(sar.den)
                    } else {
                        1.0
                    },
                };
                if better(&video, is_default, score) {
                    video = Some((is_default, score, candidate));
                }
            }
            media::Type::Audio => {
                // SAFETY: `params` wraps the stream's live AVCodecParameters; a plain copy.
                let (sample_rate, channels) = unsafe {
                    let p = *params.as_ptr();
                    (p.sample_rate.max(0) as u32, p.ch_layout.nb_channels.max(0) as u16)
                };
                let candidate = AudioStream { index: stream.index(), codec: codec_name, sample_rate, channels };
                if better(&audio, is_default, u64::from(channels)) {
                    audio = Some((is_default, u64::from(channels), candidate));
                }
            }
            _ => {}
        }
    }
    let video = video.map(|v| v.2);
    let audio = audio.map(|a| a.2);
    let kind = match (&video, &audio) {
        (None, None) => return Err(err(path, MediaErrorKind::NoStreams)),
        (Some(_), _) if is_image_container => MediaKind::Image,
        (Some(_), _) => MediaKind::Video,
        (None, Some(_)) => MediaKind::Audio,
    };
    let time_base = f64::from(ff::ffi::AV_TIME_BASE);
    let duration_s = (ictx.duration() > 0 && kind != MediaKind::Image).then(|| ictx.duration() as f64 / time_base);
    // SAFETY: a field read of the open AVFormatContext owned by `ictx`.
    let start = unsafe { (*ictx.as_ptr()).start_time };
    let start_s = if start == ff::ffi::AV_NOPTS_VALUE { 0.0 } else { start as f64 / time_base };
    Ok(Probe { path: path.to_path_buf(), container, kind, size_bytes, duration_s, start_s, video, audio })
}

/// Prefer the stream marked default, then the larger one (pixels, channels).
fn better<T>(current: &Option<(bool, u64, T)>, is_default: bool, score: u64) -> bool {
    match current {
        None => true,
        Some((cur_default, cur_score, _)) => (is_default, score) > (*cur_default, *cur_score),
    }
}

fn codec_name(id: codec::Id) -> String {
    ff::decoder::find(id).map(|c| c.name().to_string()).unwrap_or_else(|| format!("{id:?}").to_lowercase())
}

fn rate(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r))
}

/// Clockwise display rotation from the stream's display matrix, as `ffmpeg` itself applies it
/// (`theta = -av_display_rotation_get(matrix)`), falling back to a legacy `rotate` tag.
fn rotation_degrees(stream: &format::stream::Stream) -> u32 {
    let mut theta = None;
    for side in stream.side_data() {
        if side.kind() == codec::packet::side_data::Type::DisplayMatrix && side.data().len() >= 36 {
            // SAFETY: the side data holds a 3x3 i32 display matrix (length checked: 36 bytes).
            let angle = unsafe { ff::ffi::av_display_rotation_get(side.data().as_ptr() as *const i32) };
            if angle.is_finite() {
                theta = Some(-angle);
            }
        }
    }
    let theta = theta.or_else(|| stream.metadata().get("rotate").and_then(|r| r.parse::<f64>().ok())).unwrap_or(0.0);
    let quarter_turns = (theta / 90.0).round() as i64;
    (quarter_turns.rem_euclid(4) * 90) as u32
}
