//! One demuxing pass over a probed file: the loop here, the video sampler (frames picked by
//! time, cropped, scaled and rotated) in `video`, the mono resampler in `audio`.

mod audio;
mod options;
mod thumbs;
mod video;

use std::path::Path;
use std::time::Instant;

use ffmpeg_next::{self as ff, codec, packet::Mut as _};

use crate::error::{MediaError, MediaErrorKind};
use crate::probe::{MediaKind, Probe, open};
use audio::AudioResampler;
pub use options::{DecodeOptions, DecodeStats, Frame, FullFrame, HwAccel, Truncation};
pub use thumbs::{Thumbnail, decode_thumbnails};
use video::VideoSampler;

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
    // SAFETY: `ictx` owns a valid AVFormatContext whose `streams` array holds `nb_streams`
    // valid stream pointers; only each stream's `discard` field is written.
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

    // Where the demuxed data of the wanted streams ends, to tell a file cut short (its header
    // promises more than its data holds) from a whole one.
    let mut demuxed_end_s = f64::NEG_INFINITY;
    // The sampler had all it wanted before the end of the file: nothing to compare.
    let mut stopped_early = false;
    let mut packet = ff::Packet::empty();
    loop {
        if let Some(budget) = opts.time_budget
            && started.elapsed() > budget
        {
            return Err(MediaError::new(path, MediaErrorKind::Timeout(budget.as_secs_f64())));
        }
        if may_seek && let Some(v) = video.as_mut() {
            if v.done() {
                stopped_early = true;
                break;
            }
            v.maybe_seek(&mut ictx, &mut stats);
        }
        // `Packet::read` does not release the previous packet (av_read_frame overwrites it):
        // without this unref every packet's data leaks and memory grows with the file.
        // SAFETY: `packet` owns a valid AVPacket; unref leaves it blank and reusable.
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
        let (result, time_base) = if let Some(v) = video.as_mut().filter(|v| v.index == index) {
            (v.send(&packet, &mut stats, on_frame), v.time_base)
        } else if let Some(a) = audio.as_mut().filter(|a| a.index == index) {
            (a.send(Some(&packet), &mut stats, on_audio), a.time_base)
        } else {
            continue;
        };
        if let Some(ts) = packet.pts().or(packet.dts()) {
            let end = (ts + packet.duration().max(0)) as f64 * time_base - probe.start_s;
            demuxed_end_s = demuxed_end_s.max(end);
        }
        if let Err(e) = result {
            stats.decode_errors += 1;
            if stats.decode_errors > opts.max_decode_errors {
                return Err(corrupt(&stats, format!("decoding failed: {e}")));
            }
        }
        if probe.kind == MediaKind::Image && stats.frames_sampled > 0 {
            stopped_early = true;
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
    if !stopped_early && probe.kind != MediaKind::Image {
        let audio_end = stats
            .first_audio_pts_s
            .zip(opts.audio_rate)
            .map(|(first, rate)| first + stats.audio_samples as f64 / f64::from(rate));
        let decoded_s =
            [Some(demuxed_end_s), stats.last_video_pts_s, audio_end].into_iter().flatten().fold(0f64, f64::max);
        let declared = declared_duration(&ictx, &wanted).or(probe.duration_s);
        stats.truncated = declared.and_then(|declared_s| {
            let estimated = duration_from_bitrate(&ictx);
            is_truncated(decoded_s, declared_s, estimated).then_some(Truncation { decoded_s, declared_s })
        });
    }
    Ok(stats)
}

/// Decoding ended this far short of the declared duration: more than a second and 3% (10%
/// and two seconds when the container guessed its duration from the bit rate, as MP3s
/// without a Xing header do), so frame-timing slop and estimates are not reported.
fn is_truncated(decoded_s: f64, declared_s: f64, estimated: bool) -> bool {
    let (floor_s, share): (f64, f64) = if estimated { (2.0, 0.10) } else { (1.0, 0.03) };
    declared_s.is_finite() && declared_s - decoded_s > floor_s.max(share * declared_s)
}

/// The longest duration the header gives for the streams being read (a file whose streams
/// differ in length is judged by the ones decoded, not by the container's maximum).
fn declared_duration(ictx: &ff::format::context::Input, wanted: &[usize]) -> Option<f64> {
    wanted
        .iter()
        .filter_map(|&i| ictx.stream(i))
        .filter(|s| s.duration() > 0)
        .map(|s| s.duration() as f64 * f64::from(s.time_base()))
        .reduce(f64::max)
}

fn duration_from_bitrate(ictx: &ff::format::context::Input) -> bool {
    // SAFETY: `ictx` owns a valid, opened AVFormatContext; a plain field read.
    unsafe {
        (*ictx.as_ptr()).duration_estimation_method == ff::ffi::AVDurationEstimationMethod::AVFMT_DURATION_FROM_BITRATE
    }
}

pub(crate) fn decoder_context(
    path: &Path,
    ictx: &ff::format::context::Input,
    index: usize,
    threads: usize,
) -> Result<codec::Context, MediaError> {
    // The file may have changed since it was probed (watch and serve see files being replaced).
    let stream = ictx.stream(index).ok_or_else(|| {
        MediaError::new(path, MediaErrorKind::Corrupt(format!("stream {index} is gone since the file was probed")))
    })?;
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
    // SAFETY: both pointers come from live FFmpeg objects owned here; a plain field copy.
    unsafe { (*ctx.as_mut_ptr()).pkt_timebase = (*stream.as_ptr()).time_base };
    Ok(ctx)
}

pub(crate) fn ffmpeg_err(path: &Path, e: ff::Error) -> MediaError {
    MediaError::new(path, MediaErrorKind::Ffmpeg(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::is_truncated;

    #[test]
    fn truncation_needs_a_real_gap() {
        // A 30.5 s MP4 cut after 6 s is truncated; frame-timing slop at the end is not.
        assert!(is_truncated(6.0, 30.5, false));
        assert!(!is_truncated(30.47, 30.5, false));
        assert!(!is_truncated(118.0, 120.0, false));
        // A bit-rate estimate 8% off is not called truncated; half the file missing is.
        assert!(!is_truncated(92.0, 100.0, true));
        assert!(is_truncated(50.0, 100.0, true));
        assert!(!is_truncated(5.0, f64::NAN, false));
    }
}
