use std::path::Path;

use ffmpeg_next::{self as ff, ChannelLayout, codec, format::Pixel, frame, software};

use crate::error::{MediaError, MediaErrorKind};
use crate::probe::{MediaKind, Probe, open};

/// What to pull out of a file.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Video frames sampled per second of presentation time (the first frame at or after each
    /// multiple of `1/fps` is taken).
    pub frames_per_second: f64,
    /// Side of the square RGB frames handed out; `None` skips video.
    pub frame_size: Option<u32>,
    /// Mono sample rate handed out; `None` skips audio.
    pub audio_rate: Option<u32>,
    /// FFmpeg decoder threads.
    pub threads: usize,
    /// Packets that may fail to demux or decode before the file is given up as corrupt.
    pub max_decode_errors: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { frames_per_second: 1.0, frame_size: Some(224), audio_rate: None, threads: 2, max_decode_errors: 64 }
    }
}

/// A sampled video frame: square, RGB24, rows packed, already upright.
#[derive(Debug, Clone)]
pub struct Frame {
    pub pts_s: f64,
    pub size: u32,
    pub rgb: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct DecodeStats {
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub audio_samples: u64,
    pub decode_errors: usize,
    /// Presentation time of the last video frame decoded, in seconds from the file's start.
    pub last_video_pts_s: Option<f64>,
}

/// Decode a probed file in one demuxing pass, streaming sampled frames to `on_frame` and
/// mono audio (at `audio_rate`) to `on_audio` as they are decoded, so memory does not grow
/// with the file's duration.
pub fn decode(
    probe: &Probe,
    opts: &DecodeOptions,
    on_frame: &mut dyn FnMut(Frame),
    on_audio: &mut dyn FnMut(&[f32]),
) -> Result<DecodeStats, MediaError> {
    let path = probe.path.as_path();
    let mut ictx = open(path)?;
    let mut video = match (&probe.video, opts.frame_size) {
        (Some(v), Some(size)) => Some(VideoSampler::new(path, &ictx, v, size, opts, probe)?),
        _ => None,
    };
    let mut audio = match (&probe.audio, opts.audio_rate) {
        (Some(a), Some(rate)) => Some(AudioResampler::new(path, &ictx, a.index, rate, opts.threads)?),
        _ => None,
    };
    let mut stats = DecodeStats::default();
    let corrupt = |stats: &DecodeStats, what: String| {
        MediaError::new(path, MediaErrorKind::Corrupt(format!("{what} ({} errors)", stats.decode_errors)))
    };

    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => {
                stats.decode_errors += 1;
                if stats.decode_errors > opts.max_decode_errors || !matches!(e, ff::Error::InvalidData) {
                    // A read error after good data (a truncated file) ends the file; with
                    // nothing decoded yet, or too many errors, it is corrupt.
                    if stats.frames_decoded == 0 && stats.audio_samples == 0 || stats.decode_errors > opts.max_decode_errors {
                        return Err(corrupt(&stats, format!("demuxing failed: {e}")));
                    }
                    break;
                }
                continue;
            }
        }
        let index = packet.stream();
        let result = if let Some(v) = video.as_mut().filter(|v| v.index == index) {
            v.send(&packet, &mut stats, on_frame)
        } else if let Some(a) = audio.as_mut().filter(|a| a.index == index) {
            a.send(Some(&packet), &mut stats, on_audio)
        } else {
            Ok(())
        };
        if let Err(e) = result {
            stats.decode_errors += 1;
            if stats.decode_errors > opts.max_decode_errors {
                return Err(corrupt(&stats, format!("decoding failed: {e}")));
            }
        }
        if probe.kind == MediaKind::Image && stats.frames_sampled > 0 {
            break;
        }
    }
    if let Some(v) = video.as_mut() {
        let _ = v.finish(&mut stats, on_frame);
    }
    if let Some(a) = audio.as_mut() {
        let _ = a.send(None, &mut stats, on_audio);
    }
    let wanted_video = video.is_some();
    let wanted_audio = audio.is_some();
    if (wanted_video && stats.frames_sampled == 0) && (!wanted_audio || stats.audio_samples == 0) {
        let what = if stats.decode_errors > 0 { "every packet failed to decode" } else { "the streams are empty" };
        return Err(MediaError::new(path, MediaErrorKind::Empty(what.into())));
    }
    if !wanted_video && wanted_audio && stats.audio_samples == 0 {
        return Err(MediaError::new(path, MediaErrorKind::Empty("no audio samples decoded".into())));
    }
    Ok(stats)
}

fn decoder_context(
    path: &Path,
    ictx: &ff::format::context::Input,
    index: usize,
    threads: usize,
) -> Result<codec::Context, MediaError> {
    let stream = ictx.stream(index).expect("probed stream index exists");
    let params = stream.parameters();
    if ff::decoder::find(params.id()).is_none() {
        return Err(MediaError::new(path, MediaErrorKind::UnsupportedCodec(format!("{:?}", params.id()).to_lowercase())));
    }
    let mut ctx = codec::Context::from_parameters(params).map_err(|e| ffmpeg_err(path, e))?;
    // Threading must be set before the decoder opens; frame threads beat auto on few cores.
    ctx.set_threading(codec::threading::Config { kind: codec::threading::Type::Frame, count: threads.max(1), ..Default::default() });
    unsafe { (*ctx.as_mut_ptr()).pkt_timebase = (*stream.as_ptr()).time_base };
    Ok(ctx)
}

fn ffmpeg_err(path: &Path, e: ff::Error) -> MediaError {
    MediaError::new(path, MediaErrorKind::Ffmpeg(e.to_string()))
}

struct VideoSampler {
    index: usize,
    decoder: ff::decoder::Video,
    time_base: f64,
    start_s: f64,
    interval: f64,
    next_s: f64,
    size: u32,
    rotation: u32,
    pixel_aspect: f64,
    scaler: Option<(Pixel, u32, u32, software::scaling::Context)>,
    decoded: frame::Video,
    scaled: frame::Video,
}

impl VideoSampler {
    fn new(
        path: &Path,
        ictx: &ff::format::context::Input,
        v: &crate::probe::VideoStream,
        size: u32,
        opts: &DecodeOptions,
        probe: &Probe,
    ) -> Result<Self, MediaError> {
        let decoder = decoder_context(path, ictx, v.index, opts.threads)?.decoder().video().map_err(|e| ffmpeg_err(path, e))?;
        let tb = ictx.stream(v.index).expect("stream").time_base();
        Ok(Self {
            index: v.index,
            decoder,
            time_base: f64::from(tb),
            start_s: probe.start_s,
            interval: 1.0 / opts.frames_per_second,
            next_s: 0.0,
            size,
            rotation: v.rotation,
            pixel_aspect: v.pixel_aspect,
            scaler: None,
            decoded: frame::Video::empty(),
            scaled: frame::Video::empty(),
        })
    }

    fn send(&mut self, packet: &ff::Packet, stats: &mut DecodeStats, on_frame: &mut dyn FnMut(Frame)) -> Result<(), ff::Error> {
        let sent = self.decoder.send_packet(packet);
        // Drain what is ready even when this packet was bad: earlier packets still count.
        self.drain(stats, on_frame)?;
        sent
    }

    fn finish(&mut self, stats: &mut DecodeStats, on_frame: &mut dyn FnMut(Frame)) -> Result<(), ff::Error> {
        self.decoder.send_eof()?;
        self.drain(stats, on_frame)
    }

    fn drain(&mut self, stats: &mut DecodeStats, on_frame: &mut dyn FnMut(Frame)) -> Result<(), ff::Error> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => return Err(e),
            }
            stats.frames_decoded += 1;
            let Some(ts) = self.decoded.timestamp().or(self.decoded.pts()) else { continue };
            let t = ts as f64 * self.time_base - self.start_s;
            stats.last_video_pts_s = Some(stats.last_video_pts_s.map_or(t, |l: f64| l.max(t)));
            // Sample by timestamp: the first frame at or after each tick, so variable frame
            // rates and dropped frames still give one frame per interval.
            if t + 1e-6 < self.next_s {
                continue;
            }
            self.next_s = ((t / self.interval + 1e-9).floor() + 1.0) * self.interval;
            let rgb = self.convert()?;
            stats.frames_sampled += 1;
            on_frame(Frame { pts_s: t.max(0.0), size: self.size, rgb });
        }
    }

    /// Centre-crop to a square (in display geometry), scale to `size` with bicubic filtering
    /// in one swscale pass, then rotate upright.
    fn convert(&mut self) -> Result<Vec<u8>, ff::Error> {
        let (w, h) = (self.decoded.width() as f64, self.decoded.height() as f64);
        // Display width is w * pixel_aspect; the square side in display units is the shorter side.
        let display_w = w * self.pixel_aspect;
        let side = display_w.min(h);
        let crop_w = (side / self.pixel_aspect).round().clamp(1.0, w) as usize;
        let crop_h = side.round().clamp(1.0, h) as usize;
        unsafe {
            let f = self.decoded.as_mut_ptr();
            let left = (w as usize - crop_w) / 2;
            let top = (h as usize - crop_h) / 2;
            (*f).crop_left = left;
            (*f).crop_right = w as usize - crop_w - left;
            (*f).crop_top = top;
            (*f).crop_bottom = h as usize - crop_h - top;
            // Moves the plane pointers; without UNALIGNED it rounds offsets to keep SIMD
            // alignment, which would shift the crop by a few pixels at most.
            ff::ffi::av_frame_apply_cropping(f, ff::ffi::AV_FRAME_CROP_UNALIGNED as i32);
        }
        let key = (self.decoded.format(), self.decoded.width(), self.decoded.height());
        if self.scaler.as_ref().map(|s| (s.0, s.1, s.2)) != Some(key) {
            let ctx = software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::RGB24,
                self.size,
                self.size,
                software::scaling::Flags::BICUBIC | software::scaling::Flags::ACCURATE_RND | software::scaling::Flags::FULL_CHR_H_INT,
            )?;
            self.scaler = Some((key.0, key.1, key.2, ctx));
        }
        let scaler = &mut self.scaler.as_mut().expect("scaler set above").3;
        scaler.run(&self.decoded, &mut self.scaled)?;
        let n = self.size as usize;
        let stride = self.scaled.stride(0);
        let data = self.scaled.data(0);
        let mut rgb = vec![0u8; n * n * 3];
        for (y, row) in rgb.chunks_exact_mut(n * 3).enumerate() {
            row.copy_from_slice(&data[y * stride..y * stride + n * 3]);
        }
        Ok(rotate_square(rgb, n, self.rotation))
    }
}

/// Rotate a square RGB24 image clockwise by 0/90/180/270 degrees.
pub(crate) fn rotate_square(rgb: Vec<u8>, n: usize, clockwise: u32) -> Vec<u8> {
    if clockwise == 0 {
        return rgb;
    }
    let mut out = vec![0u8; rgb.len()];
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = match clockwise {
                90 => (n - 1 - y, x),
                180 => (n - 1 - x, n - 1 - y),
                _ => (y, n - 1 - x),
            };
            let s = (y * n + x) * 3;
            let d = (dy * n + dx) * 3;
            out[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
        }
    }
    out
}

struct AudioResampler {
    index: usize,
    decoder: ff::decoder::Audio,
    rate: u32,
    resampler: Option<software::resampling::Context>,
    decoded: frame::Audio,
    out: Vec<f32>,
}

impl AudioResampler {
    fn new(path: &Path, ictx: &ff::format::context::Input, index: usize, rate: u32, threads: usize) -> Result<Self, MediaError> {
        let decoder = decoder_context(path, ictx, index, threads)?.decoder().audio().map_err(|e| ffmpeg_err(path, e))?;
        Ok(Self { index, decoder, rate, resampler: None, decoded: frame::Audio::empty(), out: Vec::new() })
    }

    /// Feed a packet (or end of stream with `None`) and emit mono samples at the target rate.
    fn send(&mut self, packet: Option<&ff::Packet>, stats: &mut DecodeStats, on_audio: &mut dyn FnMut(&[f32])) -> Result<(), ff::Error> {
        let sent = match packet {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(e),
            }
            let n = self.decoded.samples();
            if n == 0 {
                continue;
            }
            let ptrs = unsafe { (*self.decoded.as_ptr()).extended_data as *const *const u8 };
            self.convert(ptrs, n as i32, stats, on_audio)?;
        }
        if packet.is_none() && self.resampler.is_some() {
            // Flush what swresample still holds (its filter delay).
            self.convert(std::ptr::null(), 0, stats, on_audio)?;
        }
        sent
    }

    fn convert(&mut self, input: *const *const u8, n: i32, stats: &mut DecodeStats, on_audio: &mut dyn FnMut(&[f32])) -> Result<(), ff::Error> {
        if self.resampler.is_none() {
            let f = &self.decoded;
            let layout = if f.channel_layout().is_empty() { ChannelLayout::default(i32::from(f.channels())) } else { f.channel_layout() };
            // swresample's default matrix downmixes (5.1 to mono keeps centre and surrounds at -3 dB).
            self.resampler = Some(software::resampling::Context::get(
                f.format(),
                layout,
                f.rate(),
                ff::format::Sample::F32(ff::format::sample::Type::Packed),
                ChannelLayout::MONO,
                self.rate,
            )?);
        }
        unsafe {
            let swr = self.resampler.as_mut().expect("resampler set above").as_mut_ptr();
            let capacity = ff::ffi::swr_get_out_samples(swr, n).max(0) as usize + 32;
            self.out.resize(capacity, 0.0);
            let mut out_ptr = self.out.as_mut_ptr() as *mut u8;
            let got = ff::ffi::swr_convert(swr, &mut out_ptr, capacity as i32, input as *mut *const u8, n);
            if got < 0 {
                return Err(ff::Error::from(got));
            }
            if got > 0 {
                stats.audio_samples += got as u64;
                on_audio(&self.out[..got as usize]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::rotate_square;

    #[test]
    fn rotation_moves_the_top_left_pixel_where_display_expects_it() {
        // 2x2 image, pixel value = index.
        let img: Vec<u8> = (0..4u8).flat_map(|i| [i, i, i]).collect();
        let cw = rotate_square(img.clone(), 2, 90);
        // Clockwise: the bottom-left pixel (2) becomes top-left.
        assert_eq!(cw[0], 2);
        assert_eq!(rotate_square(img.clone(), 2, 180)[0], 3);
        assert_eq!(rotate_square(img, 2, 270)[0], 1);
    }
}
