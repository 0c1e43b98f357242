use std::path::Path;

use std::ptr::NonNull;

use ffmpeg_next::{self as ff, ChannelLayout, frame};

use super::{DecodeStats, decoder_context, ffmpeg_err};
use crate::error::{MediaError, MediaErrorKind};

pub(super) struct AudioResampler {
    pub(super) index: usize,
    pub(super) time_base: f64,
    start_s: f64,
    decoder: ff::decoder::Audio,
    rate: u32,
    resampler: Option<Swr>,
    /// The input the resampler was set up for: format, channels, layout, rate.
    input: Option<(ff::format::Sample, u16, ChannelLayout, u32)>,
    decoded: frame::Audio,
    out: Vec<f32>,
}

impl AudioResampler {
    pub(super) fn new(
        path: &Path,
        ictx: &ff::format::context::Input,
        index: usize,
        rate: u32,
        threads: usize,
        start_s: f64,
    ) -> Result<Self, MediaError> {
        let decoder =
            decoder_context(path, ictx, index, threads)?.decoder().audio().map_err(|e| ffmpeg_err(path, e))?;
        let time_base = ictx.stream(index).map(|s| f64::from(s.time_base())).ok_or_else(|| {
            MediaError::new(path, MediaErrorKind::Corrupt(format!("stream {index} is gone since the file was probed")))
        })?;
        Ok(Self {
            index,
            time_base,
            start_s,
            decoder,
            rate,
            resampler: None,
            input: None,
            decoded: frame::Audio::empty(),
            out: Vec::new(),
        })
    }

    /// Feed a packet (or end of stream with `None`) and emit mono samples at the target rate.
    pub(super) fn send(
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
            if n == 0 || !self.has_planes() {
                continue;
            }
            // A stream may change format, channels or rate between frames (a damaged or spliced
            // file): swresample reads the planes it was set up for, so a changed frame gets a
            // new one, after the old one gives up what it holds.
            let f = &self.decoded;
            let input = (f.format(), f.channels(), f.channel_layout(), f.rate());
            if self.input.is_some_and(|was| was != input) {
                self.convert(std::ptr::null(), 0, stats, on_audio)?;
                self.resampler = None;
            }
            self.input = Some(input);
            if stats.first_audio_pts_s.is_none()
                && let Some(ts) = self.decoded.timestamp().or(self.decoded.pts())
            {
                stats.first_audio_pts_s = Some(ts as f64 * self.time_base - self.start_s);
            }
            // SAFETY: `decoded` holds a frame just received from the decoder; its
            // `extended_data` points at one plane pointer per channel (or one for packed).
            let ptrs = unsafe { (*self.decoded.as_ptr()).extended_data as *const *const u8 };
            self.convert(ptrs, n as i32, stats, on_audio)?;
        }
        if packet.is_none() && self.resampler.is_some() {
            // Flush what swresample still holds (its filter delay).
            self.convert(std::ptr::null(), 0, stats, on_audio)?;
        }
        sent
    }

    /// Whether the decoded frame has the sample planes its format and channels promise (a
    /// decoder can hand back a frame with none, or with a rate or channel count of 0).
    fn has_planes(&self) -> bool {
        let f = &self.decoded;
        let channels = usize::from(f.channels());
        if channels == 0 || f.rate() == 0 {
            return false;
        }
        let planes = if f.is_planar() { channels } else { 1 };
        // SAFETY: `decoded` holds a frame just received from the decoder; `extended_data`,
        // when set, points at one plane pointer per channel (planar) or one (packed).
        unsafe {
            let ptrs = (*f.as_ptr()).extended_data;
            !ptrs.is_null() && (0..planes).all(|i| !(*ptrs.add(i)).is_null())
        }
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
            // A layout that disagrees with the frame's channel count (a damaged header) would
            // make swresample read planes the frame does not have: the count wins.
            let layout = f.channel_layout();
            let layout = if layout.is_empty() || layout.channels() != i32::from(f.channels()) {
                ChannelLayout::default(i32::from(f.channels()))
            } else {
                layout
            };
            // swresample's default matrix downmixes (5.1 to mono keeps centre and surrounds at -3 dB).
            self.resampler = Some(Swr::to_mono(f.format(), layout, f.rate(), self.rate)?);
        }
        let Some(resampler) = self.resampler.as_ref() else { return Err(ff::Error::Bug) };
        // SAFETY: `swr` is the live SwrContext owned by `resampler`; `out` has room for
        // `capacity` f32 samples (mono, packed); `input` holds `n` samples per channel in the
        // decoded frame's layout (or is null with n = 0 to flush).
        unsafe {
            let swr = resampler.0.as_ptr();
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

/// An owned SwrContext converting to packed f32 mono. ffmpeg-next's `resampling::Context::get`
/// leaks the context when `swr_init` refuses the parameters (a damaged file's layout or rate;
/// found by the fuzzer), so medley holds it itself and frees it on every path.
struct Swr(NonNull<ff::ffi::SwrContext>);

impl Swr {
    fn to_mono(format: ff::format::Sample, layout: ChannelLayout, rate: u32, out_rate: u32) -> Result<Self, ff::Error> {
        let out_format = ff::format::Sample::F32(ff::format::sample::Type::Packed);
        let mut ptr: *mut ff::ffi::SwrContext = std::ptr::null_mut();
        // SAFETY: plain allocation calls; the layouts are read, not kept.
        unsafe {
            #[cfg(not(feature = "ffmpeg_7_0"))]
            {
                ptr = ff::ffi::swr_alloc_set_opts(
                    ptr,
                    ChannelLayout::MONO.bits() as i64,
                    out_format.into(),
                    out_rate as i32,
                    layout.bits() as i64,
                    format.into(),
                    rate as i32,
                    0,
                    std::ptr::null_mut(),
                );
            }
            #[cfg(feature = "ffmpeg_7_0")]
            {
                let e = ff::ffi::swr_alloc_set_opts2(
                    &mut ptr,
                    &ChannelLayout::MONO.into(),
                    out_format.into(),
                    out_rate as i32,
                    &layout.into(),
                    format.into(),
                    rate as i32,
                    0,
                    std::ptr::null_mut(),
                );
                if e < 0 {
                    ff::ffi::swr_free(&mut ptr);
                    return Err(ff::Error::from(e));
                }
            }
        }
        let swr = Swr(NonNull::new(ptr).ok_or(ff::Error::InvalidData)?);
        // SAFETY: `swr` holds a live, not yet initialised context; on failure its drop frees it.
        let e = unsafe { ff::ffi::swr_init(swr.0.as_ptr()) };
        if e < 0 {
            return Err(ff::Error::from(e));
        }
        Ok(swr)
    }
}

impl Drop for Swr {
    fn drop(&mut self) {
        let mut ptr = self.0.as_ptr();
        // SAFETY: the context is owned by this value and freed once, here.
        unsafe { ff::ffi::swr_free(&mut ptr) };
    }
}

// SAFETY: a SwrContext has no thread affinity; `Swr` owns it exclusively.
unsafe impl Send for Swr {}
