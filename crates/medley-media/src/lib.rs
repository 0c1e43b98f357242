//! Media probing and decoding on FFmpeg: stream facts, frames sampled by presentation time and
//! cropped/scaled/rotated to a model's input in one pass, and mono audio resampled to a
//! model's rate. No machine learning here.

mod decode;
mod error;
mod probe;
mod sampler;

pub use decode::{
    DecodeOptions, DecodeStats, Frame, FullFrame, HwAccel, Thumbnail, Truncation, decode, decode_thumbnails,
};
pub use error::{MediaError, MediaErrorKind};
pub use probe::{AudioStream, MediaKind, Probe, VideoStream, probe};
pub use sampler::{Sampler, Shot, ShotParams};

/// File extensions taken when walking folders (files named explicitly are always taken).
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "wmv", "flv", "mpg", "mpeg", "ts", "m2ts", "mts", "3gp", "3g2", "ogv",
    "mxf", "vob", "asf", "rm", "rmvb", "divx", "f4v", "dv", "mjpeg", "y4m", "nut", "h264", "hevc", "264", "265",
];
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "mp3", "m4a", "m4b", "m4r", "aac", "flac", "ogg", "oga", "opus", "weba", "wma", "aiff", "aif", "aifc",
    "mka", "ac3", "eac3", "dts", "caf", "amr", "mp2", "mpa", "wv", "ape", "tta", "au", "snd", "spx", "w64",
];
pub const IMAGE_EXTENSIONS: &[&str] =
    &["jpg", "jpeg", "jfif", "png", "webp", "bmp", "gif", "tif", "tiff", "avif", "heic", "heif", "jxl", "tga", "ppm"];

/// True when the file name has one of the media extensions above (case-insensitive).
pub fn has_media_extension(path: &std::path::Path) -> bool {
    [VIDEO_EXTENSIONS, AUDIO_EXTENSIONS, IMAGE_EXTENSIONS].iter().any(|list| has_extension_in(path, list))
}

/// True when the file name's extension is in `list` (lower case; the name's case is ignored).
pub fn has_extension_in(path: &std::path::Path, list: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| list.contains(&e.to_ascii_lowercase().as_str()))
}

/// Initialise FFmpeg once per process and keep its own logging quiet: every problem reaches
/// the caller as a typed error instead. `MEDLEY_FFMPEG_LOG=1` turns FFmpeg's log back on.
pub(crate) fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        let level = if std::env::var_os("MEDLEY_FFMPEG_LOG").is_some() {
            ffmpeg_next::util::log::Level::Warning
        } else {
            ffmpeg_next::util::log::Level::Quiet
        };
        ffmpeg_next::util::log::set_level(level);
    });
}

/// The FFmpeg libraries this process decodes with: their version string and the hardware
/// device types they were built with (`cuda`, `vaapi`, ...), for `medley doctor`.
#[derive(Debug, Clone)]
pub struct FfmpegInfo {
    pub version: String,
    pub hwaccels: Vec<String>,
}

pub fn ffmpeg_info() -> FfmpegInfo {
    use ffmpeg_next::ffi;
    init();
    // SAFETY: both functions return pointers to static NUL-terminated strings owned by FFmpeg;
    // the iteration starts and ends at AV_HWDEVICE_TYPE_NONE.
    unsafe {
        let version = std::ffi::CStr::from_ptr(ffi::av_version_info()).to_string_lossy().into_owned();
        let mut hwaccels = Vec::new();
        let mut t = ffi::av_hwdevice_iterate_types(ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_NONE);
        while t != ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_NONE {
            let name = ffi::av_hwdevice_get_type_name(t);
            if !name.is_null() {
                hwaccels.push(std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned());
            }
            t = ffi::av_hwdevice_iterate_types(t);
        }
        FfmpegInfo { version, hwaccels }
    }
}
