//! Every video frame as a tiny picture, for shot-boundary models (TransNetV2 takes 48x27).

use std::path::Path;

use ffmpeg_next::{self as ff, format::Pixel, frame, packet::Mut as _, software};

use super::{DecodeOptions, decoder_context, ffmpeg_err};
use crate::error::{MediaError, MediaErrorKind};
use crate::probe::{Probe, open};

/// One decoded frame scaled (not cropped) to the requested size, RGB24, rows packed.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    /// Presentation time in seconds from the file's start.
    pub pts_s: f64,
    pub rgb: Vec<u8>,
}

/// Decode every frame of the first video stream, scaled to `width` x `height` (sizes below
/// one count as one), upright, in presentation order; returns how many were handed out.
///
/// The whole picture is squeezed into the size, aspect not kept, with bicubic filtering and
/// the frame's own colour matrix and range: what `ffmpeg -i FILE -s WxH -pix_fmt rgb24` gives,
/// which is how TransNetV2's frames were made.
pub fn decode_thumbnails(
    probe: &Probe,
    width: u32,
    height: u32,
    on_frame: &mut dyn FnMut(Thumbnail),
) -> Result<u64, MediaError> {
    let path = probe.path.as_path();
    let v = probe.video.as_ref().ok_or_else(|| MediaError::new(path, MediaErrorKind::NoStreams))?;
    let defaults = DecodeOptions::default();
    let mut ictx = open(path)?;
    let mut decoder =
        decoder_context(path, &ictx, v.index, defaults.threads)?.decoder().video().map_err(|e| ffmpeg_err(path, e))?;
    let time_base = ictx.stream(v.index).map(|s| f64::from(s.time_base())).unwrap_or(0.0);
    let mut thumbs = Thumbs::new(path, width.max(1), height.max(1), v.rotation, time_base, probe.start_s, v.fps);
    let mut errors = 0usize;
    let corrupt = |errors: usize, what: String| {
        MediaError::new(path, MediaErrorKind::Corrupt(format!("{what} ({errors} errors)")))
    };
    let mut packet = ff::Packet::empty();
    loop {
        // `Packet::read` does not release the previous packet (see `decode`).
        // SAFETY: `packet` owns a valid AVPacket; unref leaves it blank and reusable.
        unsafe { ff::ffi::av_packet_unref(packet.as_mut_ptr()) };
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => {
                errors += 1;
                if errors > defaults.max_decode_errors || !matches!(e, ff::Error::InvalidData) {
                    // After good frames a read error ends the file (a truncated copy); before
                    // any, or after too many, the file is corrupt.
                    if thumbs.count == 0 || errors > defaults.max_decode_errors {
                        return Err(corrupt(errors, format!("demuxing failed: {e}")));
                    }
                    break;
                }
                continue;
            }
        }
        if packet.stream() != v.index {
            continue;
        }
        let sent = decoder.send_packet(&packet);
        // Drain what is ready even when this packet was bad: earlier packets still count.
        let drained = thumbs.drain(&mut decoder, on_frame)?;
        if let Err(e) = sent.and(drained) {
            errors += 1;
            if errors > defaults.max_decode_errors {
                return Err(corrupt(errors, format!("decoding failed: {e}")));
            }
        }
    }
    if decoder.send_eof().is_ok() {
        // A failure while flushing loses at most the last frames, which were never decoded.
        let _ = thumbs.drain(&mut decoder, on_frame)?;
    }
    if thumbs.count == 0 {
        let what = if errors > 0 { "every video packet failed to decode" } else { "the video stream is empty" };
        return Err(MediaError::new(path, MediaErrorKind::Empty(what.into())));
    }
    Ok(thumbs.count)
}

struct Thumbs<'a> {
    path: &'a Path,
    width: u32,
    height: u32,
    /// Clockwise degrees to turn the scaled picture upright.
    rotation: u32,
    time_base: f64,
    start_s: f64,
    /// Spacing assumed for a frame without a timestamp.
    frame_gap_s: f64,
    last_s: Option<f64>,
    scaler: Option<(Pixel, u32, u32, software::scaling::Context)>,
    decoded: frame::Video,
    scaled: frame::Video,
    count: u64,
}

impl<'a> Thumbs<'a> {
    fn new(
        path: &'a Path,
        width: u32,
        height: u32,
        rotation: u32,
        time_base: f64,
        start_s: f64,
        fps: Option<f64>,
    ) -> Self {
        let frame_gap_s = fps.filter(|f| f.is_finite() && *f > 0.0).map_or(1.0 / 25.0, |f| 1.0 / f);
        Self {
            path,
            width,
            height,
            rotation,
            time_base,
            start_s,
            frame_gap_s,
            last_s: None,
            scaler: None,
            decoded: frame::Video::empty(),
            scaled: frame::Video::empty(),
            count: 0,
        }
    }

    /// Hand out every frame the decoder has ready. The outer error is fatal (the picture
    /// cannot be scaled); the inner one is a decoding error, counted by the caller.
    fn drain(
        &mut self,
        decoder: &mut ff::decoder::Video,
        on_frame: &mut dyn FnMut(Thumbnail),
    ) -> Result<Result<(), ff::Error>, MediaError> {
        loop {
            match decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => return Ok(Ok(())),
                Err(ff::Error::Eof) => return Ok(Ok(())),
                Err(e) => return Ok(Err(e)),
            }
            let pts_s = match self.decoded.timestamp().or(self.decoded.pts()) {
                Some(ts) => ts as f64 * self.time_base - self.start_s,
                None => self.last_s.map_or(0.0, |t| t + self.frame_gap_s),
            };
            self.last_s = Some(pts_s);
            let rgb = self.scale().map_err(|e| ffmpeg_err(self.path, e))?;
            self.count += 1;
            on_frame(Thumbnail { pts_s: pts_s.max(0.0), rgb });
        }
    }

    /// The decoded picture at the thumbnail size, upright, RGB24 packed.
    fn scale(&mut self) -> Result<Vec<u8>, ff::Error> {
        // Scale to the size the picture has before it is turned upright.
        let (w, h) =
            if matches!(self.rotation, 90 | 270) { (self.height, self.width) } else { (self.width, self.height) };
        let pic = &self.decoded;
        let key = (pic.format(), pic.width(), pic.height());
        if self.scaler.as_ref().map(|s| (s.0, s.1, s.2)) != Some(key) {
            let mut ctx = software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::RGB24,
                w,
                h,
                software::scaling::Flags::BICUBIC,
            )?;
            // The frame's colour matrix (BT.601 when untagged) and range, as FFmpeg's scale
            // filter reads them.
            let matrix = ff::ffi::AVColorSpace::from(pic.color_space()) as i32;
            let full_range = pic.color_range() == ff::util::color::Range::JPEG
                || matches!(
                    key.0,
                    Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P | Pixel::YUVJ411P
                );
            // SAFETY: `ctx` owns the scaler context just created; the coefficient tables are
            // FFmpeg statics (an unknown matrix gets the default table).
            unsafe {
                let inv = ff::ffi::sws_getCoefficients(matrix);
                let table = ff::ffi::sws_getCoefficients(ff::ffi::SWS_CS_DEFAULT);
                ff::ffi::sws_setColorspaceDetails(
                    ctx.as_mut_ptr(),
                    inv,
                    i32::from(full_range),
                    table,
                    1,
                    0,
                    1 << 16,
                    1 << 16,
                );
            }
            self.scaler = Some((key.0, key.1, key.2, ctx));
        }
        match &mut self.scaler {
            Some(s) => s.3.run(&self.decoded, &mut self.scaled)?,
            None => return Err(ff::Error::Bug),
        }
        let (w, h) = (w as usize, h as usize);
        let stride = self.scaled.stride(0);
        let data = self.scaled.data(0);
        let mut rgb = vec![0u8; w * h * 3];
        for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
            row.copy_from_slice(&data[y * stride..y * stride + w * 3]);
        }
        Ok(rotate(rgb, w, h, self.rotation))
    }
}

/// Turn a `w` x `h` RGB24 picture clockwise by 0/90/180/270 degrees (90 and 270 give `h` x `w`).
fn rotate(rgb: Vec<u8>, w: usize, h: usize, clockwise: u32) -> Vec<u8> {
    if !matches!(clockwise, 90 | 180 | 270) {
        return rgb;
    }
    let mut out = vec![0u8; rgb.len()];
    for y in 0..h {
        for x in 0..w {
            let d = match clockwise {
                90 => x * h + (h - 1 - y),
                180 => (h - 1 - y) * w + (w - 1 - x),
                _ => (w - 1 - x) * h + y,
            };
            let s = (y * w + x) * 3;
            out[d * 3..d * 3 + 3].copy_from_slice(&rgb[s..s + 3]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rotate;

    #[test]
    fn rotation_turns_a_wide_picture_upright() {
        // 3x2, pixel value = index: 0 1 2 / 3 4 5.
        let img: Vec<u8> = (0..6u8).flat_map(|i| [i, i, i]).collect();
        let px = |v: &[u8]| v.chunks_exact(3).map(|p| p[0]).collect::<Vec<_>>();
        // Clockwise: 2 wide, 3 high, rows 3 0 / 4 1 / 5 2.
        assert_eq!(px(&rotate(img.clone(), 3, 2, 90)), [3, 0, 4, 1, 5, 2]);
        assert_eq!(px(&rotate(img.clone(), 3, 2, 180)), [5, 4, 3, 2, 1, 0]);
        assert_eq!(px(&rotate(img.clone(), 3, 2, 270)), [2, 5, 1, 4, 0, 3]);
        assert_eq!(px(&rotate(img, 3, 2, 0)), [0, 1, 2, 3, 4, 5]);
    }
}
