//! The samplers, the time budget and the hardware fallback on fixtures of `fixtures/make.sh`.
//! Needs `MEDLEY_TEST_FIXTURES` (set by `cargo xtask test`).

use std::path::PathBuf;
use std::time::Duration;

use medley_media::{DecodeOptions, DecodeStats, Frame, HwAccel, MediaError, Sampler, decode, probe};

fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var_os("MEDLEY_TEST_FIXTURES").unwrap_or_else(|| {
        panic!("MEDLEY_TEST_FIXTURES is not set: run `cargo xtask test`, or `cargo xtask fixtures` and point it at ~/.cache/medley/fixtures")
    });
    let path = PathBuf::from(dir).join(name);
    assert!(path.exists(), "{} missing: run `cargo xtask fixtures`", path.display());
    path
}

fn run(name: &str, opts: DecodeOptions) -> Result<(DecodeStats, Vec<Frame>), MediaError> {
    let p = probe(&fixture(name))?;
    let mut frames = Vec::new();
    let stats = decode(&p, &opts, &mut |f| frames.push(f), &mut |_| {})?;
    Ok((stats, frames))
}

fn video(sampler: &str) -> DecodeOptions {
    DecodeOptions {
        sampler: Some(sampler.parse().unwrap()),
        frame_size: Some(64),
        audio_rate: None,
        ..Default::default()
    }
}

#[test]
fn keyframes_decodes_only_key_frames() {
    // One key frame every 600 frames (25 s) in 26 s.
    let (stats, frames) = run("matrix/gop600.mp4", video("keyframes")).unwrap();
    let times: Vec<f64> = frames.iter().map(|f| f.pts_s).collect();
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(times[0].abs() < 1e-6 && (times[1] - 25.0).abs() < 1e-6, "{times:?}");
    assert!(frames.iter().all(|f| f.keyframe));
    assert_eq!(stats.frames_decoded, 2);
    // Every 2 s (48 frames at 24 fps) in 60 s.
    let (_, frames) = run("matrix/seekable.mp4", video("keyframes")).unwrap();
    assert_eq!(frames.len(), 30);
    assert!(frames.iter().enumerate().all(|(i, f)| (f.pts_s - 2.0 * i as f64).abs() < 1e-6));
}

#[test]
fn uniform_seeks_and_matches_decoding_through() {
    let (stats, frames) = run("matrix/seekable.mp4", video("uniform:5")).unwrap();
    let times: Vec<f64> = frames.iter().map(|f| f.pts_s).collect();
    // Targets at the centres of five 12 s slices: 6, 18, 30, 42, 54 s.
    assert_eq!(times.len(), 5, "{times:?}");
    for (t, want) in times.iter().zip([6.0, 18.0, 30.0, 42.0, 54.0]) {
        assert!((t - want).abs() < 0.05, "{times:?}");
    }
    assert!(stats.seeks >= 4, "expected seeks, got {}", stats.seeks);
    assert!(stats.frames_decoded < 5 * 60, "decoded {} frames: seeking should skip most", stats.frames_decoded);
    // The same pictures as decoding every frame at 1 fps.
    let (_, through) = run("matrix/seekable.mp4", video("fps:1")).unwrap();
    for f in &frames {
        let same = through.iter().find(|g| (g.pts_s - f.pts_s).abs() < 1e-6).expect("same time decoded through");
        assert_eq!(same.rgb, f.rgb, "picture at {} differs after a seek", f.pts_s);
    }
    // Long GOPs: no key frame between targets, so no seek, still the right frames.
    let (stats, frames) = run("matrix/gop600.mp4", video("uniform:4")).unwrap();
    assert_eq!(frames.len(), 4);
    assert_eq!(stats.seeks, 0);
    for (f, want) in frames.iter().zip([3.25, 9.75, 16.25, 22.75]) {
        assert!(f.pts_s >= want - 1e-6 && f.pts_s < want + 0.05, "{} vs {want}", f.pts_s);
    }
}

#[test]
fn uniform_without_seeking_when_audio_is_wanted() {
    let p = probe(&fixture("matrix/base.mp4")).unwrap();
    let opts = DecodeOptions {
        sampler: Some(Sampler::Uniform(3)),
        frame_size: Some(32),
        audio_rate: Some(16000),
        ..Default::default()
    };
    let mut frames = Vec::new();
    let mut samples = 0usize;
    let stats = decode(&p, &opts, &mut |f| frames.push(f), &mut |s| samples += s.len()).unwrap();
    assert_eq!(stats.seeks, 0);
    assert_eq!(frames.len(), 3);
    assert!((samples as f64 / 16000.0 - 3.008).abs() < 0.01, "{samples}");
}

#[test]
fn shots_finds_the_cuts() {
    // Three 2 s shots from far apart in the film.
    let (stats, frames) = run("matrix/shots.mp4", video("shots")).unwrap();
    let bounds: Vec<(f64, f64)> = stats.shots.iter().map(|s| (s.start_s, s.end_s)).collect();
    assert_eq!(bounds.len(), 3, "{bounds:?}");
    for ((start, end), (want_start, want_end)) in bounds.iter().zip([(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]) {
        assert!((start - want_start).abs() < 0.1 && (end - want_end).abs() < 0.1, "{bounds:?}");
    }
    // The first frame of each shot, tagged with its shot.
    assert_eq!(frames.iter().map(|f| f.shot).collect::<Vec<_>>(), vec![Some(0), Some(1), Some(2)]);
    assert!(frames.iter().zip(&stats.shots).all(|(f, s)| (f.pts_s - s.start_s).abs() < 1e-6));
    // A continuous clip is one shot.
    let (stats, _) = run("matrix/base.mp4", video("shots")).unwrap();
    assert!(stats.shots.len() <= 2, "{:?}", stats.shots);
}

#[test]
fn time_budget_gives_up_with_a_typed_error() {
    let opts = DecodeOptions { time_budget: Some(Duration::ZERO), ..video("fps:1") };
    let err = run("matrix/gop600.mp4", opts).unwrap_err();
    assert_eq!(err.kind.code(), "timeout");
    assert!(err.path.ends_with("matrix/gop600.mp4"));
}

#[test]
fn cuda_falls_back_to_software_with_a_notice() {
    let opts = DecodeOptions { hwaccel: HwAccel::Cuda, ..video("fps:1") };
    let (stats, frames) = run("matrix/base.mp4", opts).unwrap();
    assert_eq!(frames.len(), 3);
    // Either the machine has NVDEC, or it says why not.
    assert!(stats.hwaccel_used != stats.hwaccel_fallback.is_some(), "{stats:?}");
    let (_, sw) = run("matrix/base.mp4", video("fps:1")).unwrap();
    if !stats.hwaccel_used {
        assert!(frames.iter().zip(&sw).all(|(a, b)| a.rgb == b.rgb));
    }
}
