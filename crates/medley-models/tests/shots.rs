//! TransNetV2 shot boundaries: the Rust adapter computes what Python's onnxruntime and the
//! package's own sliding-window inference computed (golden tensors from
//! onnx_models/export_transnet.py), and finds the cuts of the fixtures whose cuts are known
//! (`[[cuts]]` in fixtures/expect.toml), measured as cut F1. Needs the models from `cargo
//! xtask setup`, `MEDLEY_TEST_FIXTURES` and the ffmpeg CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{Case, runtime};
use medley_models::ShotDetector;
use serde::Deserialize;

fn detector() -> ShotDetector {
    let (rt, home) = runtime();
    ShotDetector::load(rt, &home, "transnetv2").expect("TransNetV2: run `cargo xtask models --only transnetv2`")
}

fn golden(name: &str) -> Case {
    let (_, home) = runtime();
    Case::load(&home.model_dir("transnetv2").unwrap(), Some(name))
}

#[test]
fn transnetv2_matches_python_on_whole_windows() {
    let det = detector();
    assert_eq!(det.frame_size(), (48, 27));
    for name in ["random_frames", "film_cut"] {
        let case = golden(name);
        let (frames, shape) = case.bytes("inputs", "frames");
        let out = det.run(&frames, shape[0]).unwrap();
        assert_eq!(out.len(), shape[0]);
        case.check("transition", &out);
    }
    // The real window holds a hard cut after frame 47: the last frame of the old shot peaks.
    let (frames, _) = golden("film_cut").bytes("inputs", "frames");
    let p = det.run(&frames, 1).unwrap().remove(0);
    let times: Vec<f64> = (0..100).map(|i| f64::from(i) / 24.0).collect();
    assert_eq!(det.cuts(&p, &times), vec![times[48]], "{p:?}");
}

#[test]
fn sliding_windows_match_the_packages_predict_frames() {
    // 187 frames of three shots: four windows, both ends padded.
    let case = golden("film_clip");
    let (frames, shape) = case.bytes("inputs", "frames");
    assert_eq!(shape[1..], [27, 48, 3]);
    let frames: Vec<&[u8]> = frames.chunks_exact(27 * 48 * 3).collect();
    let p = detector().detect(&frames).unwrap();
    case.check_flat("transition", &p);
    // Windows batched three at a time, and frames fed one by one, give the same numbers.
    let batched = detector().with_batch(3).detect(&frames).unwrap();
    assert!(common::max_diff(&p, &batched) < 1e-5);
    let det = detector();
    let mut stream = det.stream();
    for f in &frames {
        stream.push(f).unwrap();
    }
    assert_eq!(stream.finish().unwrap(), p);
    // Fewer frames than half a window still get a probability each.
    assert_eq!(detector().detect(&frames[..7]).unwrap().len(), 7);
    assert!(detector().detect::<&[u8]>(&[]).unwrap().is_empty());
}

#[test]
fn wrong_frame_sizes_are_refused_naming_the_model() {
    let err = detector().detect(&[vec![0u8; 64 * 36 * 3]]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("transnetv2") && msg.contains("48x27"), "{msg}");
}

// --- cut F1 on the fixtures with known cuts ------------------------------------------------

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

fn fixtures() -> PathBuf {
    PathBuf::from(std::env::var_os("MEDLEY_TEST_FIXTURES").expect("MEDLEY_TEST_FIXTURES is set (cargo xtask test)"))
}

/// Every frame as the ffmpeg CLI scales it to 48x27 (what `medley_media::decode_thumbnails`
/// gives, as crates/medley-media/tests/thumbs.rs checks), and the frames' times.
fn frames(path: &Path) -> (Vec<Vec<u8>>, Vec<f64>) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-fps_mode", "passthrough", "-s", "48x27", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"])
        .output()
        .expect("the ffmpeg CLI runs");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    let frames: Vec<Vec<u8>> = out.stdout.chunks_exact(48 * 27 * 3).map(<[u8]>::to_vec).collect();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    assert_eq!(frames.len(), times.len(), "{}: frames and times", path.display());
    (frames, times)
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

/// TransNetV2's cut F1 on every fixture with known cuts (the frame-difference detector's is
/// measured on the same files in crates/medley-media/tests/thumbs.rs). It must find every
/// hard cut within two frames.
#[test]
fn transnetv2_finds_the_known_cuts() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/expect.toml");
    let expect: Expect = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let det = detector();
    let (mut total, mut hard) = ((0, 0, 0), (0, 0));
    let (mut n_frames, mut model_s) = (0usize, 0f64);
    eprintln!("TransNetV2 (threshold {}):", det.threshold());
    for truth in &expect.cuts {
        let (frames, times) = frames(&fixtures().join(&truth.name));
        let started = Instant::now();
        let p = det.detect(&frames).unwrap();
        model_s += started.elapsed().as_secs_f64();
        n_frames += frames.len();
        let t0 = times[0];
        let times: Vec<f64> = times.iter().map(|t| t - t0).collect();
        let found = det.cuts(&p, &times);
        let s = score(&found, truth);
        total = (total.0 + s.0, total.1 + s.1, total.2 + s.2);
        // Hard cuts alone: found (within 0.1 s) out of all.
        for &c in truth.cuts.iter().filter(|c| !truth.gradual.contains(c)) {
            hard.1 += 1;
            hard.0 += usize::from(found.iter().any(|f| (f - c).abs() <= 0.1));
        }
        eprintln!("  {:<26} tp {} fp {} fn {}  F1 {:.2}  found {found:.2?}", truth.name, s.0, s.1, s.2, f1(s));
    }
    eprintln!(
        "  all: tp {} fp {} fn {}  F1 {:.3}; hard cuts found {}/{}",
        total.0,
        total.1,
        total.2,
        f1(total),
        hard.0,
        hard.1
    );
    eprintln!("  model: {n_frames} frames in {model_s:.1} s ({:.0} frames/s)", n_frames as f64 / model_s);
    assert_eq!(hard.0, hard.1, "TransNetV2 missed hard cuts");
    assert!(f1(total) >= 0.85, "TransNetV2 cut F1 {:.3} < 0.85", f1(total));
}
