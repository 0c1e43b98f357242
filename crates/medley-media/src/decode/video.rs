use std::path::Path;

use ffmpeg_next::{self as ff, format::Pixel, frame, software};

use super::{DecodeOptions, DecodeStats, Frame, FullFrame, HwAccel, decoder_context, ffmpeg_err};
use crate::error::{MediaError, MediaErrorKind};
use crate::probe::Probe;
use crate::sampler::{Sampler, ShotDetector, ShotEvent, THUMB_H, THUMB_W};

/// Ask for a CUDA device context; `Err` says why there is none.
fn cuda_device() -> Result<*mut ff::ffi::AVBufferRef, String> {
    let mut device: *mut ff::ffi::AVBufferRef = std::ptr::null_mut();
    // SAFETY: av_hwdevice_ctx_create writes a new reference into `device` or fails; nothing
    // else is read or written.
    let r = unsafe {
        ff::ffi::av_hwdevice_ctx_create(
            &mut device,
            ff::ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
        )
    };
    if r < 0 || device.is_null() { Err(format!("no CUDA device ({})", ff::Error::from(r))) } else { Ok(device) }
}

/// Create and release a CUDA device context: `Err` says why decoding with NVDEC cannot work.
pub(crate) fn cuda_device_check() -> Result<(), String> {
    crate::init();
    let mut device = cuda_device()?;
    // SAFETY: `device` is the one reference created above; unref frees it and nulls the pointer.
    unsafe { ff::ffi::av_buffer_unref(&mut device) };
    Ok(())
}

enum Mode {
    Fps { interval: f64, next_s: f64 },
    Uniform { targets: Vec<f64>, next: usize, seeked_for: Option<usize> },
    Keyframes,
    Shots(Box<ShotDetector>),
}

pub(super) struct VideoSampler {
    pub(super) index: usize,
    decoder: ff::decoder::Video,
    pub(super) time_base: f64,
    start_s: f64,
    mode: Mode,
    size: u32,
    rotation: u32,
    pixel_aspect: f64,
    scaler: Option<(Pixel, u32, u32, software::scaling::Context)>,
    thumb_scaler: Option<(Pixel, u32, u32, software::scaling::Context)>,
    /// Longer side of the whole pictures handed out beside the square ones (`None`: none).
    full_side: Option<u32>,
    full_scaler: Option<(Pixel, u32, u32, software::scaling::Context)>,
    full: frame::Video,
    /// A still image: fitted whole onto its plain background rather than centre-cropped
    /// (see [`Self::fit_on_plain`]).
    still: bool,
    fit_scaler: Option<(Pixel, u32, u32, software::scaling::Context)>,
    fitted: frame::Video,
    decoded: frame::Video,
    transferred: frame::Video,
    scaled: frame::Video,
    thumb: frame::Video,
    /// Presentation time of the last packet sent, seconds from the file's start.
    position_s: f64,
    hw: bool,
}

impl VideoSampler {
    pub(super) fn new(
        path: &Path,
        ictx: &ff::format::context::Input,
        v: &crate::probe::VideoStream,
        size: u32,
        opts: &DecodeOptions,
        probe: &Probe,
        stats: &mut DecodeStats,
    ) -> Result<Self, MediaError> {
        let mut ctx = decoder_context(path, ictx, v.index, opts.threads)?;
        let sampler = opts.effective_sampler();
        if sampler == Sampler::Keyframes {
            // SAFETY: a field write on the codec context owned here, before it opens.
            unsafe { (*ctx.as_mut_ptr()).skip_frame = ff::ffi::AVDiscard::AVDISCARD_NONKEY };
        }
        let mut hw = false;
        if opts.hwaccel == HwAccel::Cuda {
            match cuda_device() {
                // SAFETY: the codec context (not yet opened) takes ownership of the new device
                // reference and unrefs it when freed.
                Ok(device) => unsafe {
                    (*ctx.as_mut_ptr()).hw_device_ctx = device;
                    hw = true;
                    stats.hwaccel_used = true;
                },
                Err(why) => {
                    tracing::warn!("hwaccel cuda unavailable, decoding in software: {why}");
                    stats.hwaccel_fallback = Some(why);
                }
            }
        }
        let decoder = ctx.decoder().video().map_err(|e| ffmpeg_err(path, e))?;
        let tb = ictx.stream(v.index).map(|s| s.time_base()).ok_or_else(|| {
            MediaError::new(
                path,
                MediaErrorKind::Corrupt(format!("stream {} is gone since the file was probed", v.index)),
            )
        })?;
        let mode = match sampler {
            Sampler::Fps(r) => Mode::Fps { interval: 1.0 / r.max(1e-6), next_s: 0.0 },
            Sampler::Uniform(n) => match probe.duration_s {
                Some(d) if d > 0.0 => Mode::Uniform {
                    targets: (0..n).map(|i| (f64::from(i) + 0.5) * d / f64::from(n)).collect(),
                    next: 0,
                    seeked_for: None,
                },
                // Without a duration there is nothing to spread over: one frame a second.
                _ => Mode::Fps { interval: 1.0, next_s: 0.0 },
            },
            Sampler::Keyframes => Mode::Keyframes,
            Sampler::Shots(p) => Mode::Shots(Box::new(ShotDetector::new(p))),
        };
        Ok(Self {
            index: v.index,
            decoder,
            time_base: f64::from(tb),
            start_s: probe.start_s,
            mode,
            size,
            rotation: v.rotation,
            pixel_aspect: v.pixel_aspect,
            scaler: None,
            thumb_scaler: None,
            full_side: opts.full_frame_side,
            full_scaler: None,
            full: frame::Video::empty(),
            still: probe.kind == crate::MediaKind::Image,
            fit_scaler: None,
            fitted: frame::Video::empty(),
            decoded: frame::Video::empty(),
            transferred: frame::Video::empty(),
            scaled: frame::Video::empty(),
            thumb: frame::Video::empty(),
            position_s: f64::NEG_INFINITY,
            hw,
        })
    }

    /// Nothing more to hand out (uniform sampling past its last target).
    pub(super) fn done(&self) -> bool {
        matches!(&self.mode, Mode::Uniform { targets, next, .. } if *next >= targets.len())
    }

    /// Uniform sampling: jump to the next target when it is far ahead and a key frame lies
    /// between here and there (otherwise decoding through is as cheap).
    pub(super) fn maybe_seek(&mut self, ictx: &mut ff::format::context::Input, stats: &mut DecodeStats) {
        const SEEK_GAP_S: f64 = 3.0;
        let Mode::Uniform { targets, next, seeked_for } = &mut self.mode else { return };
        let Some(&target) = targets.get(*next) else { return };
        // Before the first packet, decoding is at the start.
        let position = if self.position_s.is_finite() { self.position_s } else { 0.0 };
        if *seeked_for == Some(*next) || target - position < SEEK_GAP_S {
            return;
        }
        *seeked_for = Some(*next);
        let to_ts = |s: f64| ((s + self.start_s) / self.time_base).round() as i64;
        let target_ts = to_ts(target);
        // SAFETY: `ictx` owns an open AVFormatContext; `self.index` is a stream of it, and index entries are null-checked before use.
        unsafe {
            let ctx = ictx.as_mut_ptr();
            let st = *(*ctx).streams.add(self.index);
            // With an index (MP4, MKV), only seek when the key frame before the target is
            // ahead of where decoding already is.
            if ff::ffi::avformat_index_get_entries_count(st) > 0 {
                let i = ff::ffi::av_index_search_timestamp(st, target_ts, ff::ffi::AVSEEK_FLAG_BACKWARD);
                if i < 0 {
                    return;
                }
                let entry = ff::ffi::avformat_index_get_entry(st, i);
                if entry.is_null() || ((*entry).timestamp as f64 * self.time_base - self.start_s) <= position {
                    return;
                }
            }
            let min_ts = to_ts(position);
            if ff::ffi::avformat_seek_file(ctx, self.index as i32, min_ts, target_ts, target_ts, 0) >= 0 {
                ff::ffi::avcodec_flush_buffers(self.decoder.as_mut_ptr());
                stats.seeks += 1;
            }
        }
    }

    pub(super) fn send(
        &mut self,
        packet: &ff::Packet,
        stats: &mut DecodeStats,
        on_frame: &mut dyn FnMut(Frame),
    ) -> Result<(), ff::Error> {
        if let Some(ts) = packet.pts().or(packet.dts()) {
            self.position_s = ts as f64 * self.time_base - self.start_s;
        }
        // Key frames only: non-key packets never reach the decoder.
        if matches!(self.mode, Mode::Keyframes) && !packet.is_key() {
            return Ok(());
        }
        // A picture shown before the next wanted time is never handed out; when no other
        // picture refers to it either, the decoder may skip it (AVDISCARD_NONREF). The wanted
        // time only moves forward, and lags behind while frames are in flight, so this never
        // skips a picture that would be taken.
        let next_wanted = match &self.mode {
            Mode::Fps { next_s, .. } => Some(*next_s),
            Mode::Uniform { targets, next, .. } => Some(targets.get(*next).copied().unwrap_or(f64::INFINITY)),
            _ => None,
        };
        if let Some(next_wanted) = next_wanted {
            let skippable =
                packet.pts().is_some_and(|pts| (pts as f64 * self.time_base - self.start_s) < next_wanted - 1e-3)
                    && !packet.is_key();
            if skippable {
                let t = packet.pts().map_or(0.0, |pts| pts as f64 * self.time_base - self.start_s);
                stats.last_video_pts_s = Some(stats.last_video_pts_s.map_or(t, |l: f64| l.max(t)));
            }
            let discard =
                if skippable { ff::ffi::AVDiscard::AVDISCARD_NONREF } else { ff::ffi::AVDiscard::AVDISCARD_DEFAULT };
            // SAFETY: a field write on the open decoder owned here; FFmpeg reads it per packet.
            unsafe { (*self.decoder.as_mut_ptr()).skip_frame = discard };
        }
        let sent = self.decoder.send_packet(packet);
        // Drain what is ready even when this packet was bad: earlier packets still count.
        self.drain(stats, on_frame)?;
        sent
    }

    pub(super) fn finish(&mut self, stats: &mut DecodeStats, on_frame: &mut dyn FnMut(Frame)) -> Result<(), ff::Error> {
        self.decoder.send_eof()?;
        let r = self.drain(stats, on_frame);
        if let Mode::Shots(d) = &mut self.mode
            && let Some(last) = d.finish()
        {
            stats.shots.push(last);
        }
        r
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
            let keyframe = self.decoded.is_key();
            let mut shot = None;
            let take = match &mut self.mode {
                // Sample by timestamp: the first frame at or after each tick, so variable frame
                // rates and dropped frames still give one frame per interval.
                Mode::Fps { interval, next_s } => {
                    if t + 1e-6 < *next_s {
                        false
                    } else {
                        *next_s = ((t / *interval + 1e-9).floor() + 1.0) * *interval;
                        true
                    }
                }
                Mode::Uniform { targets, next, .. } => {
                    if targets.get(*next).is_some_and(|&target| t + 1e-6 >= target) {
                        // One frame may stand for several targets when frames are sparse.
                        while targets.get(*next).is_some_and(|&target| t + 1e-6 >= target) {
                            *next += 1;
                        }
                        true
                    } else {
                        false
                    }
                }
                Mode::Keyframes => true,
                Mode::Shots(_) => {
                    self.make_thumb()?;
                    let Mode::Shots(d) = &mut self.mode else { unreachable!() };
                    let thumb = &self.thumb;
                    let stride = thumb.stride(0);
                    let data = thumb.data(0);
                    let mut packed = [0u8; THUMB_W * THUMB_H];
                    for (y, row) in packed.chunks_exact_mut(THUMB_W).enumerate() {
                        row.copy_from_slice(&data[y * stride..y * stride + THUMB_W]);
                    }
                    let (event, ended) = d.push(&packed, t);
                    if let Some(s) = ended {
                        stats.shots.push(s);
                    }
                    shot = Some(d.shots);
                    !matches!(event, ShotEvent::None)
                }
            };
            if !take {
                continue;
            }
            let transferred = self.download()?;
            // Before `convert`, which crops the picture in place.
            let full = self.full_frame(transferred)?;
            let rgb = self.convert(transferred)?;
            stats.frames_sampled += 1;
            on_frame(Frame { pts_s: t.max(0.0), size: self.size, rgb, keyframe, shot, full });
        }
    }

    /// Copy a hardware frame down to system memory; true when `transferred` holds the picture.
    fn download(&mut self) -> Result<bool, ff::Error> {
        // SAFETY: a field read of the frame owned here.
        if !self.hw || unsafe { (*self.decoded.as_ptr()).hw_frames_ctx.is_null() } {
            return Ok(false);
        }
        // SAFETY: both frames are owned here; the transfer allocates `transferred` and copies
        // the GPU picture into it.
        unsafe {
            ff::ffi::av_frame_unref(self.transferred.as_mut_ptr());
            let r = ff::ffi::av_hwframe_transfer_data(self.transferred.as_mut_ptr(), self.decoded.as_ptr(), 0);
            if r < 0 {
                return Err(ff::Error::from(r));
            }
            ff::ffi::av_frame_copy_props(self.transferred.as_mut_ptr(), self.decoded.as_ptr());
        }
        Ok(true)
    }

    /// A small grey thumbnail of the whole picture for the shot detector.
    fn make_thumb(&mut self) -> Result<(), ff::Error> {
        let pic = if self.download()? { &self.transferred } else { &self.decoded };
        let key = (pic.format(), pic.width(), pic.height());
        let slot = &mut self.thumb_scaler;
        if slot.as_ref().is_none_or(|s| (s.0, s.1, s.2) != key) {
            let ctx = software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::GRAY8,
                THUMB_W as u32,
                THUMB_H as u32,
                software::scaling::Flags::FAST_BILINEAR,
            )?;
            *slot = Some((key.0, key.1, key.2, ctx));
        }
        match slot {
            Some(s) => s.3.run(pic, &mut self.thumb),
            None => Err(ff::Error::Bug),
        }
    }

    /// The whole picture, upright, in display geometry (pixel aspect applied), scaled so its
    /// longer side is at most `full_side` (never up), in one bicubic swscale pass; alpha
    /// flattened onto white as in `convert`. `None` when no full frames are wanted.
    fn full_frame(&mut self, transferred: bool) -> Result<Option<FullFrame>, ff::Error> {
        let Some(side) = self.full_side else { return Ok(None) };
        let pic = if transferred { &self.transferred } else { &self.decoded };
        let colour = colour_facts(pic);
        let (w, h) = (f64::from(pic.width()), f64::from(pic.height()));
        let display_w = w * self.pixel_aspect;
        let scale = (f64::from(side.max(1)) / display_w.max(h)).min(1.0);
        let tw = (display_w * scale).round().max(1.0) as u32;
        let th = (h * scale).round().max(1.0) as u32;
        let scaler = scaler(&mut self.full_scaler, pic, tw, th, colour)?;
        scaler.run(pic, &mut self.full)?;
        let rgb = pack(&self.full, tw as usize, th as usize, colour.has_alpha);
        let (rgb, width, height) = rotate(rgb, tw as usize, th as usize, self.rotation);
        Ok(Some(FullFrame { width: width as u32, height: height as u32, rgb }))
    }

    /// Centre-crop to a square (in display geometry), scale to `size` with bicubic filtering
    /// in one swscale pass (with the source's colour matrix and range), flatten alpha onto
    /// white, then rotate upright.
    fn convert(&mut self, transferred: bool) -> Result<Vec<u8>, ff::Error> {
        if self.still
            && let Some(rgb) = self.fit_on_plain(transferred)?
        {
            return Ok(rgb);
        }
        let size = self.size;
        let pixel_aspect = self.pixel_aspect;
        let rotation = self.rotation;
        let pic = if transferred { &mut self.transferred } else { &mut self.decoded };
        let colour = colour_facts(pic);
        let (w, h) = (f64::from(pic.width()), f64::from(pic.height()));
        // Display width is w * pixel_aspect; the square side in display units is the shorter side.
        let display_w = w * pixel_aspect;
        let side = display_w.min(h);
        let crop_w = (side / pixel_aspect).round().clamp(1.0, w) as usize;
        let crop_h = side.round().clamp(1.0, h) as usize;
        // SAFETY: `pic` is a decoded frame owned here; the crop stays inside its width and height, and halving rows keeps plane pointers in bounds.
        unsafe {
            let f = pic.as_mut_ptr();
            let left = (w as usize - crop_w) / 2;
            let top = (h as usize - crop_h) / 2;
            (*f).crop_left = left;
            (*f).crop_right = w as usize - crop_w - left;
            (*f).crop_top = top;
            (*f).crop_bottom = h as usize - crop_h - top;
            // Moves the plane pointers; without UNALIGNED it rounds offsets to keep SIMD
            // alignment, which would shift the crop by a few pixels at most.
            ff::ffi::av_frame_apply_cropping(f, ff::ffi::AV_FRAME_CROP_UNALIGNED as i32);
            // Interlaced pictures with rows to spare: scale one field (every other row) so
            // combing does not smear into the picture. Only for planar/packed formats whose
            // planes all have full vertical resolution or 2:1 chroma (rows pair up).
            if (*f).interlaced_frame != 0 && (*f).height / 2 >= size as i32 && (*f).height >= 4 {
                for p in 0..ff::ffi::AV_NUM_DATA_POINTERS as usize {
                    (*f).linesize[p] *= 2;
                }
                (*f).height /= 2;
            }
        }
        let scaler = scaler(&mut self.scaler, pic, size, size, colour)?;
        scaler.run(pic, &mut self.scaled)?;
        let n = size as usize;
        Ok(rotate_square(pack(&self.scaled, n, n, colour.has_alpha), n, rotation))
    }
}

impl VideoSampler {
    /// A still whose border is one plain colour (a drawing, a product shot on white, a stamp
    /// with a transparent background): the whole picture fitted into the square and padded
    /// with that colour, upright. The centre crop would cut off its sides, and with them often
    /// part of the one thing it shows (on Tux Paint's 785 stamp drawings, captions found their
    /// drawing at recall@5 0.314 instead of 0.296, MRR 0.260 instead of 0.238). `None` for a
    /// square picture or one whose border is not plain (photographs): those are centre-cropped.
    fn fit_on_plain(&mut self, transferred: bool) -> Result<Option<Vec<u8>>, ff::Error> {
        let size = f64::from(self.size);
        let pic = if transferred { &self.transferred } else { &self.decoded };
        let colour = colour_facts(pic);
        let (w, h) = (f64::from(pic.width()) * self.pixel_aspect, f64::from(pic.height()));
        let scale = size / w.max(h);
        let (tw, th) = ((w * scale).round().clamp(1.0, size) as u32, (h * scale).round().clamp(1.0, size) as u32);
        if tw == th {
            return Ok(None);
        }
        let scaler = scaler(&mut self.fit_scaler, pic, tw, th, colour)?;
        scaler.run(pic, &mut self.fitted)?;
        let rgb = pack(&self.fitted, tw as usize, th as usize, colour.has_alpha);
        let (rgb, w, h) = rotate(rgb, tw as usize, th as usize, self.rotation);
        Ok(plain_border(&rgb, w, h).map(|background| pad_square(&rgb, w, h, self.size as usize, background)))
    }
}

/// Border pixels within this much (per channel) of the background colour count as background.
const PLAIN_TOLERANCE: u8 = 24;
/// The share of a border's pixels that must be background for it to be plain.
const PLAIN_SHARE: f64 = 0.9;

/// The colour of a `w` x `h` RGB24 picture's outermost pixels when nearly all of them are one
/// colour: the mean of the most common colour (to 16 levels a channel), if at least
/// [`PLAIN_SHARE`] of the border is within [`PLAIN_TOLERANCE`] of it.
fn plain_border(rgb: &[u8], w: usize, h: usize) -> Option<[u8; 3]> {
    let px = |x: usize, y: usize| -> [u8; 3] {
        let i = (y * w + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let border: Vec<[u8; 3]> = (0..w)
        .flat_map(|x| [px(x, 0), px(x, h - 1)])
        .chain((1..h.saturating_sub(1)).flat_map(|y| [px(0, y), px(w - 1, y)]))
        .collect();
    let mut bins: std::collections::HashMap<[u8; 3], (usize, [u64; 3])> = std::collections::HashMap::new();
    for p in &border {
        let bin = bins.entry(p.map(|c| c >> 4)).or_default();
        bin.0 += 1;
        (0..3).for_each(|c| bin.1[c] += u64::from(p[c]));
    }
    let (n, sum) = bins.into_values().max_by_key(|(n, _)| *n)?;
    let background = sum.map(|s| (s / n as u64) as u8);
    let near = border.iter().filter(|p| (0..3).all(|c| p[c].abs_diff(background[c]) <= PLAIN_TOLERANCE)).count();
    (near as f64 >= PLAIN_SHARE * border.len() as f64).then_some(background)
}

/// A `w` x `h` RGB24 picture centred on a `side` x `side` square of `background`.
fn pad_square(rgb: &[u8], w: usize, h: usize, side: usize, background: [u8; 3]) -> Vec<u8> {
    let mut out: Vec<u8> = std::iter::repeat_n(background, side * side).flatten().collect();
    let (x0, y0) = ((side - w.min(side)) / 2, (side - h.min(side)) / 2);
    for (y, row) in rgb.chunks_exact(w * 3).take(side).enumerate() {
        let start = ((y0 + y) * side + x0) * 3;
        let n = row.len().min((side - x0) * 3);
        out[start..start + n].copy_from_slice(&row[..n]);
    }
    out
}

/// What swscale must know about a decoded picture's colours.
#[derive(Clone, Copy)]
struct Colour {
    has_alpha: bool,
    matrix: i32,
    full_range: bool,
}

fn colour_facts(pic: &frame::Video) -> Colour {
    // SAFETY: the descriptor comes from FFmpeg's static table (null-checked) and `pic`
    // is a decoded frame owned by the caller; only fields are read.
    unsafe {
        let desc = ff::ffi::av_pix_fmt_desc_get(pic.format().into());
        let flags = if desc.is_null() { 0 } else { (*desc).flags };
        let is_rgb = flags & ff::ffi::AV_PIX_FMT_FLAG_RGB as u64 != 0;
        let has_alpha = flags & ff::ffi::AV_PIX_FMT_FLAG_ALPHA as u64 != 0;
        let j_format = matches!(
            pic.format(),
            Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P | Pixel::YUVJ411P
        );
        let f = pic.as_ptr();
        let full_range = is_rgb || j_format || (*f).color_range == ff::ffi::AVColorRange::AVCOL_RANGE_JPEG;
        use ff::ffi::AVColorSpace as Cs;
        let matrix = match (*f).colorspace {
            Cs::AVCOL_SPC_BT709 => ff::ffi::SWS_CS_ITU709,
            Cs::AVCOL_SPC_BT2020_NCL | Cs::AVCOL_SPC_BT2020_CL => ff::ffi::SWS_CS_BT2020,
            Cs::AVCOL_SPC_SMPTE240M => ff::ffi::SWS_CS_SMPTE240M,
            Cs::AVCOL_SPC_FCC => ff::ffi::SWS_CS_FCC,
            Cs::AVCOL_SPC_BT470BG | Cs::AVCOL_SPC_SMPTE170M => ff::ffi::SWS_CS_ITU601,
            // Untagged: HD is BT.709, SD is BT.601 (what players assume).
            _ if (*f).height >= 720 => ff::ffi::SWS_CS_ITU709,
            _ => ff::ffi::SWS_CS_ITU601,
        };
        Colour { has_alpha, matrix, full_range }
    }
}

/// The cached bicubic scaler in `slot` from `pic`'s format and size to `w` x `h` RGB24 (RGBA
/// when the source has alpha), with the source's colour matrix and range; rebuilt when the
/// source changes.
fn scaler<'a>(
    slot: &'a mut Option<(Pixel, u32, u32, software::scaling::Context)>,
    pic: &frame::Video,
    w: u32,
    h: u32,
    colour: Colour,
) -> Result<&'a mut software::scaling::Context, ff::Error> {
    let key = (pic.format(), pic.width(), pic.height());
    let stale =
        slot.as_ref().is_none_or(|s| (s.0, s.1, s.2) != key || s.3.output().width != w || s.3.output().height != h);
    if stale {
        let dst = if colour.has_alpha { Pixel::RGBA } else { Pixel::RGB24 };
        let mut ctx = software::scaling::Context::get(
            key.0,
            key.1,
            key.2,
            dst,
            w,
            h,
            software::scaling::Flags::BICUBIC
                | software::scaling::Flags::ACCURATE_RND
                | software::scaling::Flags::FULL_CHR_H_INT,
        )?;
        // SAFETY: `sws` is the scaler context just created and owned by `ctx`; the coefficient tables are FFmpeg statics.
        unsafe {
            let sws = ctx.as_mut_ptr();
            let inv = ff::ffi::sws_getCoefficients(colour.matrix);
            let table = ff::ffi::sws_getCoefficients(ff::ffi::SWS_CS_DEFAULT);
            ff::ffi::sws_setColorspaceDetails(sws, inv, i32::from(colour.full_range), table, 1, 0, 1 << 16, 1 << 16);
        }
        *slot = Some((key.0, key.1, key.2, ctx));
    }
    slot.as_mut().map(|s| &mut s.3).ok_or(ff::Error::Bug)
}

/// The scaled picture as packed RGB24 rows; transparent pixels show white, as on a page.
fn pack(scaled: &frame::Video, w: usize, h: usize, has_alpha: bool) -> Vec<u8> {
    let stride = scaled.stride(0);
    let data = scaled.data(0);
    let mut rgb = vec![0u8; w * h * 3];
    for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
        if has_alpha {
            let src = &data[y * stride..y * stride + w * 4];
            for (d, s) in row.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
                let a = u32::from(s[3]);
                for c in 0..3 {
                    d[c] = ((u32::from(s[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
                }
            }
        } else {
            row.copy_from_slice(&data[y * stride..y * stride + w * 3]);
        }
    }
    rgb
}

/// Rotate a `w` x `h` RGB24 image clockwise by 0/90/180/270 degrees; returns it with its new
/// width and height.
fn rotate(rgb: Vec<u8>, w: usize, h: usize, clockwise: u32) -> (Vec<u8>, usize, usize) {
    if clockwise == 0 {
        return (rgb, w, h);
    }
    let (nw, nh) = if clockwise == 180 { (w, h) } else { (h, w) };
    let mut out = vec![0u8; rgb.len()];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = match clockwise {
                90 => (h - 1 - y, x),
                180 => (w - 1 - x, h - 1 - y),
                _ => (y, w - 1 - x),
            };
            let s = (y * w + x) * 3;
            let d = (dy * nw + dx) * 3;
            out[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
        }
    }
    (out, nw, nh)
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

#[cfg(test)]
mod tests {
    use super::{pad_square, plain_border, rotate, rotate_square};

    /// A `w` x `h` picture of `fill` with a `inner` block at (x0, y0)-(x1, y1).
    fn picture(w: usize, h: usize, fill: [u8; 3], inner: [u8; 3], block: (usize, usize, usize, usize)) -> Vec<u8> {
        let (x0, y0, x1, y1) = block;
        (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| if (x0..x1).contains(&x) && (y0..y1).contains(&y) { inner } else { fill })
            })
            .collect()
    }

    #[test]
    fn a_drawing_on_a_plain_background_has_a_plain_border_and_a_photograph_not() {
        let drawing = picture(40, 20, [250, 250, 250], [200, 0, 0], (5, 5, 35, 15));
        assert_eq!(plain_border(&drawing, 40, 20), Some([250, 250, 250]));
        // Noise within the tolerance is still plain.
        let noisy: Vec<u8> = drawing.iter().enumerate().map(|(i, &v)| v.saturating_sub((i % 7) as u8 * 2)).collect();
        assert!(plain_border(&noisy, 40, 20).is_some());
        // Content reaching a side over a fifth of the border: not plain.
        let photo = picture(40, 20, [250, 250, 250], [30, 90, 40], (0, 0, 40, 8));
        assert_eq!(plain_border(&photo, 40, 20), None);
    }

    #[test]
    fn padding_centres_the_picture_on_its_background() {
        let wide = picture(4, 2, [9, 9, 9], [9, 9, 9], (0, 0, 0, 0));
        let out = pad_square(&wide, 4, 2, 4, [1, 2, 3]);
        let px = |x: usize, y: usize| &out[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3];
        assert_eq!((px(0, 0), px(3, 3)), (&[1, 2, 3][..], &[1, 2, 3][..]), "top and bottom bands");
        assert_eq!((px(0, 1), px(3, 2)), (&[9, 9, 9][..], &[9, 9, 9][..]), "the picture in rows 1 and 2");
        let tall = pad_square(&picture(1, 3, [9, 9, 9], [9, 9, 9], (0, 0, 0, 0)), 1, 3, 3, [0, 0, 0]);
        assert_eq!(tall.chunks(3).map(|p| p[0]).collect::<Vec<_>>(), vec![0, 9, 0, 0, 9, 0, 0, 9, 0]);
    }

    #[test]
    fn rotating_a_wide_picture_swaps_its_sides() {
        // 3x2, pixel value = index: 0 1 2 / 3 4 5.
        let img: Vec<u8> = (0..6u8).flat_map(|i| [i, i, i]).collect();
        let px = |(v, w, h): (Vec<u8>, usize, usize)| (v.chunks(3).map(|p| p[0]).collect::<Vec<_>>(), w, h);
        assert_eq!(px(rotate(img.clone(), 3, 2, 90)), (vec![3, 0, 4, 1, 5, 2], 2, 3));
        assert_eq!(px(rotate(img.clone(), 3, 2, 180)), (vec![5, 4, 3, 2, 1, 0], 3, 2));
        assert_eq!(px(rotate(img, 3, 2, 270)), (vec![2, 5, 1, 4, 0, 3], 2, 3));
    }

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
