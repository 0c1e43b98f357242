//! Every video frame as a tiny picture, for shot-boundary models (TransNetV2 takes 48x27).
//! (Scaffold: filled in by the TransNetV2 work.)

use crate::error::{MediaError, MediaErrorKind};
use crate::probe::Probe;

/// One decoded frame scaled (not cropped) to the requested size, RGB24, rows packed.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    /// Presentation time in seconds from the file's start.
    pub pts_s: f64,
    pub rgb: Vec<u8>,
}

/// Decode every frame of the first video stream, scaled to `width` x `height`, in order.
pub fn decode_thumbnails(
    probe: &Probe,
    width: u32,
    height: u32,
    on_frame: &mut dyn FnMut(Thumbnail),
) -> Result<u64, MediaError> {
    let _ = (width, height, on_frame);
    Err(MediaError::new(&probe.path, MediaErrorKind::NoStreams))
}
