use std::path::Path;
use std::time::{Duration, Instant};

use ffmpeg_next::{self as ff, ChannelLayout, codec, format::Pixel, frame, packet::Mut as _, software};

use crate::error::{MediaError, MediaErrorKind};
use crate::probe::{MediaKind, Probe, open};
use crate::sampler::{Sampler, Shot, ShotDetector, ShotEvent, THUMB_H, THUMB_W};

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
    let started = Instant::now();
    let path = probe.path.as_path();
    let mut ictx = open(path)?;
    let mut stats = DecodeStats::default();
    let mut video = match (&probe.video, opts.frame_size) {
        (Some(v), Some(size)) => Some(VideoSampler::new(path, &ictx, v, size, opts, probe, &mut stats)?),
        _ => None,
    };
    let mut audio = match (&probe.audio, opts.audio_rate) {
        (Some(a), Some(rate)) => Some(AudioResampler::new(path, &ictx, a.index, rate, opts.threads, probe.start_s)?),
        _ => None,
    };
    // Seeking skips audio, so only a video-only pass may seek.
    let may_seek = audio.is_none();
    // Streams nobody reads are not even demuxed into packets worth parsing.
    let wanted: Vec<usize> = video.iter().map(|v| v.index).chain(audio.iter().map(|a| a.index)).collect();
    unsafe {
        let ctx = ictx.as_mut_ptr();
        for i in 0..(*ctx).nb_streams as usize {
            if !wanted.contains(&i) {
                (**(*ctx).streams.add(i)).discard = ff::ffi::AVDiscard::AVDISCARD_ALL;
            }
        }
    }
    let corrupt = |stats: &DecodeStats, what: String| {
        MediaError::new(path, MediaErrorKind::Corrupt(format!("{what} ({} errors)", stats.decode_errors)))
    };

    let mut packet = ff::Packet::empty();
    loop {
        if let Some(budget) = opts.time_budget
            && started.elapsed() > budget
        {
            return Err(MediaError::new(path, MediaErrorKind::Timeout(budget.as_secs_f64())));
        }
        if may_seek && let Some(v) = video.as_mut() {
            if v.done() {
                break;
            }
            v.maybe_seek(&mut ictx, &mut stats);
        }
        // `Packet::read` does not release the previous packet (av_read_frame overwrites it):
        // without this unref every packet's data leaks and memory grows with the file.
        unsafe { ff::ffi::av_packet_unref(packet.as_mut_ptr()) };
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => {
                stats.decode_errors += 1;
                if stats.decode_errors > opts.max_decode_errors || !matches!(e, ff::Error::InvalidData) {
                    // A read error after good data (a truncated file) ends the file; with
                    // nothing decoded yet, or too many errors, it is corrupt.
                    if stats.frames_decoded == 0 && stats.audio_samples == 0
                        || stats.decode_errors > opts.max_decode_errors
                    {
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
        return Err(MediaError::new(
            path,
            MediaErrorKind::UnsupportedCodec(format!("{:?}", params.id()).to_lowercase()),
        ));
    }
    let mut ctx = codec::Context::from_parameters(params).map_err(|e| ffmpeg_err(path, e))?;
    // Threading must be set before the decoder opens; frame threads beat auto on few cores.
    ctx.set_threading(codec::threading::Config {
        kind: codec::threading::Type::Frame,
        count: threads.max(1),
        ..Default::default()
    });
    unsafe { (*ctx.as_mut_ptr()).pkt_timebase = (*stream.as_ptr()).time_base };
    Ok(ctx)
}

fn ffmpeg_err(path: &Path, e: ff::Error) -> MediaError {
    MediaError::new(path, MediaErrorKind::Ffmpeg(e.to_string()))
}

/// Ask for a CUDA device context; `Err` says why there is none.
fn cuda_device() -> Result<*mut ff::ffi::AVBufferRef, String> {
    let mut device: *mut ff::ffi::AVBufferRef = std::ptr::null_mut();
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

enum Mode {
    Fps { interval: f64, next_s: f64 },
    Uniform { targets: Vec<f64>, next: usize, seeked_for: Option<usize> },
    Keyframes,
    Shots(Box<ShotDetector>),
}

struct VideoSampler {
    index: usize,
    decoder: ff::decoder::Video,
    time_base: f64,
    start_s: f64,
    mode: Mode,
    size: u32,
    rotation: u32,
    pixel_aspect: f64,
    scaler: Option<(Pixel, u32, u32, software::scaling::Context)>,
    thumb_scaler: Option<(Pixel, u32, u32, software::scaling::Context)>,
    decoded: frame::Video,
    transferred: frame::Video,
    scaled: frame::Video,
    thumb: frame::Video,
    /// Presentation time of the last packet sent, seconds from the file's start.
    position_s: f64,
    hw: bool,
}

impl VideoSampler {
    fn new(
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
            unsafe { (*ctx.as_mut_ptr()).skip_frame = ff::ffi::AVDiscard::AVDISCARD_NONKEY };
        }
        let mut hw = false;
        if opts.hwaccel == HwAccel::Cuda {
            match cuda_device() {
                Ok(device) => unsafe {
                    (*ctx.as_mut_ptr()).hw_device_ctx = device;
                    hw = true;
                    stats.hwaccel_used = true;
                },
                Err(why) => {
                    eprintln!("medley-media: --hwaccel cuda unavailable, decoding in software: {why}");
                    stats.hwaccel_fallback = Some(why);
                }
            }
        }
        let decoder = ctx.decoder().video().map_err(|e| ffmpeg_err(path, e))?;
        let tb = ictx.stream(v.index).expect("stream").time_base();
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
            decoded: frame::Video::empty(),
            transferred: frame::Video::empty(),
            scaled: frame::Video::empty(),
            thumb: frame::Video::empty(),
            position_s: f64::NEG_INFINITY,
            hw,
        })
    }

    /// Nothing more to hand out (uniform sampling past its last target).
    fn done(&self) -> bool {
        matches!(&self.mode, Mode::Uniform { targets, next, .. } if *next >= targets.len())
    }

    /// Uniform sampling: jump to the next target when it is far ahead and a key frame lies
    /// between here and there (otherwise decoding through is as cheap).
    fn maybe_seek(&mut self, ictx: &mut ff::format::context::Input, stats: &mut DecodeStats) {
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

    fn send(
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
            unsafe { (*self.decoder.as_mut_ptr()).skip_frame = discard };
        }
        let sent = self.decoder.send_packet(packet);
        // Drain what is ready even when this packet was bad: earlier packets still count.
        self.drain(stats, on_frame)?;
        sent
    }

    fn finish(&mut self, stats: &mut DecodeStats, on_frame: &mut dyn FnMut(Frame)) -> Result<(), ff::Error> {
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
            let rgb = self.convert()?;
            stats.frames_sampled += 1;
            on_frame(Frame { pts_s: t.max(0.0), size: self.size, rgb, keyframe, shot });
        }
    }

    /// Copy a hardware frame down to system memory; true when `transferred` holds the picture.
    fn download(&mut self) -> Result<bool, ff::Error> {
        if !self.hw || unsafe { (*self.decoded.as_ptr()).hw_frames_ctx.is_null() } {
            return Ok(false);
        }
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
        if slot.as_ref().map(|s| (s.0, s.1, s.2)) != Some(key) {
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
        slot.as_mut().expect("set above").3.run(pic, &mut self.thumb)
    }

    /// Centre-crop to a square (in display geometry), scale to `size` with bicubic filtering
    /// in one swscale pass (with the source's colour matrix and range), flatten alpha onto
    /// white, then rotate upright.
    fn convert(&mut self) -> Result<Vec<u8>, ff::Error> {
        let size = self.size;
        let pixel_aspect = self.pixel_aspect;
        let rotation = self.rotation;
        let transferred = self.download()?;
        let pic = if transferred { &mut self.transferred } else { &mut self.decoded };
        let (has_alpha, color_matrix, full_range) = unsafe {
            let desc = ff::ffi::av_pix_fmt_desc_get(pic.format().into());
            let flags = if desc.is_null() { 0 } else { (*desc).flags };
            let is_rgb = flags & ff::ffi::AV_PIX_FMT_FLAG_RGB as u64 != 0;
            let has_alpha = flags & ff::ffi::AV_PIX_FMT_FLAG_ALPHA as u64 != 0;
            let j_format = matches!(
                pic.format(),
                Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P | Pixel::YUVJ411P
            );
            let f = pic.as_ptr();
            let full = is_rgb || j_format || (*f).color_range == ff::ffi::AVColorRange::AVCOL_RANGE_JPEG;
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
            (has_alpha, matrix, full)
        };
        let (w, h) = (f64::from(pic.width()), f64::from(pic.height()));
        // Display width is w * pixel_aspect; the square side in display units is the shorter side.
        let display_w = w * pixel_aspect;
        let side = display_w.min(h);
        let crop_w = (side / pixel_aspect).round().clamp(1.0, w) as usize;
        let crop_h = side.round().clamp(1.0, h) as usize;
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
        let key = (pic.format(), pic.width(), pic.height());
        let dst = if has_alpha { Pixel::RGBA } else { Pixel::RGB24 };
        if self.scaler.as_ref().map(|s| (s.0, s.1, s.2)) != Some(key) {
            let mut ctx = software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                dst,
                size,
                size,
                software::scaling::Flags::BICUBIC
                    | software::scaling::Flags::ACCURATE_RND
                    | software::scaling::Flags::FULL_CHR_H_INT,
            )?;
            unsafe {
                let sws = ctx.as_mut_ptr();
                let inv = ff::ffi::sws_getCoefficients(color_matrix);
                let table = ff::ffi::sws_getCoefficients(ff::ffi::SWS_CS_DEFAULT);
                ff::ffi::sws_setColorspaceDetails(sws, inv, i32::from(full_range), table, 1, 0, 1 << 16, 1 << 16);
            }
            self.scaler = Some((key.0, key.1, key.2, ctx));
        }
        let scaler = &mut self.scaler.as_mut().expect("scaler set above").3;
        scaler.run(pic, &mut self.scaled)?;
        let n = size as usize;
        let stride = self.scaled.stride(0);
        let data = self.scaled.data(0);
        let mut rgb = vec![0u8; n * n * 3];
        if has_alpha {
            // Transparent pixels show white, as on a page.
            for (y, row) in rgb.chunks_exact_mut(n * 3).enumerate() {
                let src = &data[y * stride..y * stride + n * 4];
                for (d, s) in row.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
                    let a = u32::from(s[3]);
                    for c in 0..3 {
                        d[c] = ((u32::from(s[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
                    }
                }
            }
        } else {
            for (y, row) in rgb.chunks_exact_mut(n * 3).enumerate() {
                row.copy_from_slice(&data[y * stride..y * stride + n * 3]);
            }
        }
        Ok(rotate_square(rgb, n, rotation))
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
    time_base: f64,
    start_s: f64,
    decoder: ff::decoder::Audio,
    rate: u32,
    resampler: Option<software::resampling::Context>,
    decoded: frame::Audio,
    out: Vec<f32>,
}

impl AudioResampler {
    fn new(
        path: &Path,
        ictx: &ff::format::context::Input,
        index: usize,
        rate: u32,
        threads: usize,
        start_s: f64,
    ) -> Result<Self, MediaError> {
        let decoder =
            decoder_context(path, ictx, index, threads)?.decoder().audio().map_err(|e| ffmpeg_err(path, e))?;
        let time_base = f64::from(ictx.stream(index).expect("stream").time_base());
        Ok(Self {
            index,
            time_base,
            start_s,
            decoder,
            rate,
            resampler: None,
            decoded: frame::Audio::empty(),
            out: Vec::new(),
        })
    }

    /// Feed a packet (or end of stream with `None`) and emit mono samples at the target rate.
    fn send(
        &mut self,
        packet: Option<&ff::Packet>,
        stats: &mut DecodeStats,
        on_audio: &mut dyn FnMut(&[f32]),
    ) -> Result<(), ff::Error> {
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
            if stats.first_audio_pts_s.is_none()
                && let Some(ts) = self.decoded.timestamp().or(self.decoded.pts())
            {
                stats.first_audio_pts_s = Some(ts as f64 * self.time_base - self.start_s);
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

    fn convert(
        &mut self,
        input: *const *const u8,
        n: i32,
        stats: &mut DecodeStats,
        on_audio: &mut dyn FnMut(&[f32]),
    ) -> Result<(), ff::Error> {
        if self.resampler.is_none() {
            let f = &self.decoded;
            let layout = if f.channel_layout().is_empty() {
                ChannelLayout::default(i32::from(f.channels()))
            } else {
                f.channel_layout()
            };
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
