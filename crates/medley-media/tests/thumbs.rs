//! Every frame as a tiny picture (`decode_thumbnails`, what TransNetV2 reads), the `shots`
//! sampler on known cuts, and the cut F1 of the frame-difference detector on the fixtures
//! whose cuts are known (`[[cuts]]` in fixtures/expect.toml). Needs `MEDLEY_TEST_FIXTURES`
//! (set by `cargo xtask test`) and the ffmpeg CLI (which made the fixtures).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use medley_media::{DecodeOptions, Frame, Sampler, Thumbnail, decode, decode_thumbnails, probe};
use serde::Deserialize;

const W: u32 = 48;
const H: u32 = 27;

fn fixtures() -> PathBuf {
    PathBuf::from(std::env::var_os("MEDLEY_TEST_FIXTURES").unwrap_or_else(|| {
        panic!("MEDLEY_TEST_FIXTURES is not set: run `cargo xtask test`, or `cargo xtask fixtures` and point it at ~/.cache/medley/fixtures")
    }))
}

fn fixture(name: &str) -> PathBuf {
    let path = fixtures().join(name);
    assert!(path.exists(), "{} missing: run `cargo xtask fixtures`", path.display());
    path
}

fn thumbnails(path: &Path) -> Vec<Thumbnail> {
    let p = probe(path).unwrap();
    let mut out = Vec::new();
    let n = decode_thumbnails(&p, W, H, &mut |t| out.push(t)).unwrap();
    assert_eq!(n as usize, out.len());
    out
}

/// Every frame as the ffmpeg CLI scales it (`-s 48x27`, the way TransNetV2's frames are
/// made), one frame per decoded picture.
fn cli_thumbnails(path: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-fps_mode", "passthrough", "-s", &format!("{W}x{H}")])
        .args(["-pix_fmt", "rgb24", "-f", "rawvideo", "-"])
        .output()
        .expect("the ffmpeg CLI runs");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact((W * H * 3) as usize).map(<[u8]>::to_vec).collect()
}

/// Frame times as ffprobe reads them.
fn cli_times(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| f64::from((i16::from(x) - i16::from(y)).unsigned_abs())).sum::<f64>()
        / a.len() as f64
}

#[test]
fn thumbnails_are_every_frame_scaled_as_the_ffmpeg_cli_scales_them() {
    // Tagged BT.709, full range, grey, 10-bit HEVC, VP9, anamorphic, odd sizes, frames
    // dropped (a 1.3 s gap), 120 fps.
    for name in [
        "matrix/base.mp4",
        "matrix/fullrange.mp4",
        "matrix/gray.mp4",
        "matrix/hevc_10bit.mp4",
        "matrix/vp9.webm",
        "matrix/anamorphic.mp4",
        "matrix/odd_321x241.mkv",
        "matrix/vfr.mp4",
        "matrix/fps120.mp4",
        "cuts/mixed_sources.mp4",
    ] {
        let path = fixture(name);
        let ours = thumbnails(&path);
        let cli = cli_thumbnails(&path);
        let times = cli_times(&path);
        assert_eq!(ours.len(), cli.len(), "{name}: frame count");
        assert_eq!(ours.len(), times.len(), "{name}: frame count against ffprobe");
        let start = probe(&path).unwrap().start_s;
        let mut worst = 0f64;
        for (i, (t, (c, want_t))) in ours.iter().zip(cli.iter().zip(&times)).enumerate() {
            assert_eq!(t.rgb.len(), (W * H * 3) as usize);
            assert!(
                (t.pts_s - (want_t - start)).abs() < 1e-3,
                "{name}: frame {i} at {} s, ffprobe says {want_t}",
                t.pts_s
            );
            worst = worst.max(mean_abs_diff(&t.rgb, c));
        }
        eprintln!("{name:<26} {:>4} frames, worst mean |ours - ffmpeg CLI| {worst:.3}", ours.len());
        assert!(worst < 1.0, "{name}: a frame differs from the ffmpeg CLI's by {worst:.2} on average");
        assert!(ours.windows(2).all(|w| w[1].pts_s > w[0].pts_s), "{name}: times increase");
    }
}

#[test]
fn turned_videos_give_upright_thumbnails() {
    let base = thumbnails(&fixture("matrix/base.mp4"));
    for name in ["matrix/rot90.mp4", "matrix/rot180.mp4", "matrix/rot270.mp4"] {
        let turned = thumbnails(&fixture(name));
        assert_eq!(turned.len(), base.len(), "{name}");
        let diff = turned.iter().zip(&base).map(|(a, b)| mean_abs_diff(&a.rgb, &b.rgb)).fold(0f64, f64::max);
        // Upside down the same pictures differ by far more (checked on the first frame).
        let flipped: Vec<u8> = base[0].rgb.chunks_exact(3).rev().flatten().copied().collect();
        let wrong = mean_abs_diff(&turned[0].rgb, &flipped);
        eprintln!("{name}: worst mean |thumbnail - upright one| {diff:.2} (upside down: {wrong:.2})");
        assert!(diff < 6.0 && wrong > 3.0 * diff, "{name}: not upright ({diff:.2}, upside down {wrong:.2})");
    }
}

#[test]
fn thumbnail_errors_name_the_file() {
    // Sound only: no video to take frames from.
    let path = fixture("matrix/audio.m4a");
    let err = decode_thumbnails(&probe(&path).unwrap(), W, H, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind.code(), "no_streams");
    assert_eq!(err.path, path);
    // A header and no data.
    let path = fixture("matrix/header_only.mp4");
    let err = decode_thumbnails(&probe(&path).unwrap(), W, H, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind.code(), "empty", "{err}");
    assert!(err.to_string().contains("header_only.mp4"), "{err}");
    // Cut in half: what is there comes out, in order.
    let n = decode_thumbnails(&probe(&fixture("matrix/truncated_middle.mp4")).unwrap(), W, H, &mut |_| {}).unwrap();
    assert!((20..72).contains(&n), "{n} frames from half a 72-frame file");
}

#[derive(Debug, Deserialize)]
struct Expect {
    cuts: Vec<Cuts>,
}

#[derive(Debug, Deserialize)]
struct Cuts {
    name: String,
    cuts: Vec<f64>,
    #[serde(default)]
    gradual: Vec<f64>,
}

fn known_cuts() -> Vec<Cuts> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/expect.toml");
    toml::from_str::<Expect>(&std::fs::read_to_string(path).unwrap()).unwrap().cuts
}

/// True positives, false positives, false negatives: each true cut matches at most one
/// detected cut, within 0.1 s (0.6 s for a gradual transition, which is 1 s long).
fn score(found: &[f64], truth: &Cuts) -> (usize, usize, usize) {
    let mut used = vec![false; found.len()];
    let mut tp = 0;
    for &c in &truth.cuts {
        let tolerance = if truth.gradual.contains(&c) { 0.6 } else { 0.1 };
        let best = (0..found.len())
            .filter(|&i| !used[i] && (found[i] - c).abs() <= tolerance)
            .min_by(|&a, &b| (found[a] - c).abs().total_cmp(&(found[b] - c).abs()));
        if let Some(i) = best {
            used[i] = true;
            tp += 1;
        }
    }
    (tp, found.len() - tp, truth.cuts.len() - tp)
}

fn f1((tp, fp, fn_): (usize, usize, usize)) -> f64 {
    if tp == 0 { 0.0 } else { 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64 }
}

/// The frame-difference detector (`shots` sampler), the baseline TransNetV2 is measured
/// against in crates/medley-models/tests/shots.rs: its cut F1 on every fixture with known cuts.
#[test]
fn difference_detector_cut_f1_on_fixtures_with_known_cuts() {
    let mut total = (0, 0, 0);
    let mut slideshow = None;
    eprintln!("frame-difference detector (shots sampler):");
    for truth in known_cuts() {
        let p = probe(&fixture(&truth.name)).unwrap();
        let opts = DecodeOptions {
            sampler: Some(Sampler::Shots(Default::default())),
            frame_size: Some(32),
            ..Default::default()
        };
        let stats = decode(&p, &opts, &mut |_| {}, &mut |_| {}).unwrap();
        let found: Vec<f64> = stats.shots.iter().skip(1).map(|s| s.start_s).collect();
        let s = score(&found, &truth);
        total = (total.0 + s.0, total.1 + s.1, total.2 + s.2);
        eprintln!("  {:<26} tp {} fp {} fn {}  F1 {:.2}  found {found:.2?}", truth.name, s.0, s.1, s.2, f1(s));
        if truth.name == "slideshow.mp4" {
            slideshow = Some(f1(s));
        }
    }
    eprintln!("  all: tp {} fp {} fn {}  F1 {:.3}", total.0, total.1, total.2, f1(total));
    // Cuts between still photos are what it is built for.
    assert_eq!(slideshow, Some(1.0), "the detector misses the slideshow's cuts");
}

#[test]
fn known_cuts_hand_out_the_first_frame_of_each_shot() {
    let path = fixture("cuts/film_hard.mp4");
    let truth = known_cuts().into_iter().find(|c| c.name == "cuts/film_hard.mp4").unwrap();
    let p = probe(&path).unwrap();
    let run = |sampler: Sampler| {
        let opts = DecodeOptions { sampler: Some(sampler), frame_size: Some(64), ..Default::default() };
        let mut frames: Vec<Frame> = Vec::new();
        let stats = decode(&p, &opts, &mut |f| frames.push(f), &mut |_| {}).unwrap();
        (stats, frames)
    };
    let (stats, frames) = run(Sampler::cuts(truth.cuts.clone(), None));
    let starts: Vec<f64> = frames.iter().map(|f| f.pts_s).collect();
    let mut want = vec![0.0];
    want.extend(&truth.cuts);
    assert_eq!(starts.len(), want.len(), "{starts:?}");
    assert!(starts.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "{starts:?} vs {want:?}");
    assert_eq!(frames.iter().map(|f| f.shot).collect::<Vec<_>>(), (0..6).map(Some).collect::<Vec<_>>());
    // The shots tile the file: each ends where the next starts, the last at the end.
    let bounds: Vec<(f64, f64)> = stats.shots.iter().map(|s| (s.start_s, s.end_s)).collect();
    assert_eq!(bounds.len(), 6, "{bounds:?}");
    assert!(bounds.windows(2).all(|w| (w[0].1 - w[1].0).abs() < 1e-9), "{bounds:?}");
    assert!((bounds[5].1 - 13.25).abs() < 1e-6, "{bounds:?}");
    // Each picture handed out is a new shot: far from the one before.
    for w in frames.windows(2) {
        let d = mean_abs_diff(&w[0].rgb, &w[1].rgb);
        assert!(d > 10.0, "frames at {} and {} look alike ({d:.1})", w[0].pts_s, w[1].pts_s);
    }
    // With another frame after 2 s inside long shots (just under, so that rounding in frame
    // times cannot move it a frame): the 2.5 and 3 s shots give two frames each.
    let (stats, frames) = run(Sampler::cuts(truth.cuts.clone(), Some(1.999)));
    let times: Vec<f64> = frames.iter().map(|f| (f.pts_s * 1000.0).round() / 1000.0).collect();
    assert_eq!(times, vec![0.0, 2.0, 3.0, 5.0, 5.5, 7.5, 9.5, 10.5, 11.25], "{times:?}");
    assert_eq!(stats.shots.len(), 6);
}

/// How fast every frame comes out as a thumbnail, on the 720p H.264 sample (printed, not
/// asserted: the machine's load decides).
#[test]
fn thumbnail_speed_on_720p() {
    let media = std::env::var_os("MEDLEY_TEST_MEDIA").map(PathBuf::from).expect("MEDLEY_TEST_MEDIA is set");
    let path = media.join("videos/bigbuckbunny.mp4");
    let started = Instant::now();
    let frames = thumbnails(&path);
    let s = started.elapsed().as_secs_f64();
    eprintln!(
        "decode_thumbnails: {} frames of 1280x720 H.264 in {s:.2} s ({:.0} frames/s)",
        frames.len(),
        frames.len() as f64 / s
    );
    assert_eq!(frames.len(), 132);
}
