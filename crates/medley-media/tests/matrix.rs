//! Every fixture of `fixtures/make.sh` through probe and decode (fps:1, 224 px, 16 kHz mono),
//! checked against `fixtures/expect.toml`: timestamps, frame count within one frame,
//! orientation and colours against a reference clip, audio length within 10 ms, or the
//! expected error kind. Needs `MEDLEY_TEST_FIXTURES` (set by `cargo xtask test`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use medley_media::{DecodeOptions, DecodeStats, Frame, MediaError, Probe, Sampler, decode, probe};
use serde::Deserialize;

const RATE: u32 = 16_000;
const SIZE: u32 = 224;

#[derive(Debug, Deserialize)]
struct Expectations {
    file: Vec<Entry>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    /// Expected error code (`MediaErrorKind::code`) and the stage it comes from.
    error: Option<String>,
    stage: Option<String>,
    kind: Option<String>,
    duration: Option<f64>,
    width: Option<u32>,
    height: Option<u32>,
    rotation: Option<u32>,
    /// Frames sampled at 1 fps (within one).
    frames: Option<u64>,
    /// Presentation time of the first sampled frame.
    first_pts: Option<f64>,
    /// Seconds of mono audio decoded (within 10 ms); 0 means no audio stream.
    audio_s: Option<f64>,
    /// The audio is silent (true) or not (false).
    silent: Option<bool>,
    /// Frames must look like this fixture's frames at the same times (mean absolute RGB
    /// difference below `max_diff`), and upright: turning them further matches worse.
    like: Option<String>,
    max_diff: Option<f64>,
    /// Largest difference of a channel's mean from the reference's (default 2).
    max_shift: Option<f64>,
    /// A transparent region: the left `alpha_cols` of 320 columns, shown white.
    alpha_white: Option<bool>,
    /// Decoding ends well before the header's duration (`DecodeStats::truncated`); every
    /// fixture that decodes and does not say so must not be reported truncated.
    #[serde(default)]
    truncated: bool,
    #[allow(dead_code)]
    note: Option<String>,
}

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("MEDLEY_TEST_FIXTURES").unwrap_or_else(|| {
        panic!("MEDLEY_TEST_FIXTURES is not set: run `cargo xtask test`, or `cargo xtask fixtures` and point it at ~/.cache/medley/fixtures")
    });
    PathBuf::from(dir)
}

fn expectations(dir: &Path) -> Expectations {
    // The repo's copy is the truth; the one next to the fixtures may be older.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/expect.toml");
    let text = std::fs::read_to_string(&repo)
        .or_else(|_| std::fs::read_to_string(dir.join("expect.toml")))
        .expect("fixtures/expect.toml readable");
    toml::from_str(&text).expect("expect.toml parses")
}

struct Decoded {
    probe: Probe,
    stats: DecodeStats,
    frames: Vec<Frame>,
    audio: Vec<f32>,
}

fn run(path: &Path, sampler: Sampler) -> Result<Decoded, (&'static str, MediaError)> {
    let probe = probe(path).map_err(|e| ("probe", e))?;
    let opts = DecodeOptions {
        sampler: Some(sampler),
        frame_size: Some(SIZE),
        audio_rate: Some(RATE),
        threads: 2,
        time_budget: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let mut frames = Vec::new();
    let mut audio = Vec::new();
    let stats = decode(&probe, &opts, &mut |f| frames.push(f), &mut |s| audio.extend_from_slice(s))
        .map_err(|e| ("decode", e))?;
    Ok(Decoded { probe, stats, frames, audio })
}

fn rotate(rgb: &[u8], n: usize, quarter_turns: u32) -> Vec<u8> {
    let mut out = rgb.to_vec();
    for _ in 0..quarter_turns % 4 {
        let src = out.clone();
        for y in 0..n {
            for x in 0..n {
                let (dx, dy) = (n - 1 - y, x);
                out[(dy * n + dx) * 3..(dy * n + dx) * 3 + 3]
                    .copy_from_slice(&src[(y * n + x) * 3..(y * n + x) * 3 + 3]);
            }
        }
    }
    out
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (i32::from(x) - i32::from(y)).unsigned_abs() as u64).sum::<u64>() as f64
        / a.len() as f64
}

/// Check one entry; returns what was wrong (empty when all is well) and a summary line.
fn check(dir: &Path, e: &Entry, refs: &mut HashMap<String, Vec<Frame>>) -> (Vec<String>, String) {
    let mut bad = Vec::new();
    let path = dir.join(&e.name);
    let t = Instant::now();
    let result = run(&path, Sampler::Fps(1.0));
    let elapsed = t.elapsed().as_secs_f64();
    let d = match (result, &e.error) {
        (Err((stage, err)), Some(code)) => {
            if err.kind.code() != code {
                bad.push(format!("expected error {code}, got {} ({err})", err.kind.code()));
            }
            if let Some(s) = &e.stage
                && s != stage
            {
                bad.push(format!("expected the error from {s}, got it from {stage}"));
            }
            if err.path != path {
                bad.push(format!("error names {} instead of the file", err.path.display()));
            }
            return (bad, format!("{stage} error {} ({:.2} s): {err}", err.kind.code(), elapsed));
        }
        (Err((stage, err)), None) => {
            bad.push(format!("unexpected {stage} error {}: {err}", err.kind.code()));
            return (bad, format!("{stage} error {}", err.kind.code()));
        }
        (Ok(_), Some(code)) => {
            bad.push(format!("expected error {code}, but it decoded"));
            return (bad, "decoded".into());
        }
        (Ok(d), None) => d,
    };
    let p = &d.probe;
    let audio_s = d.audio.len() as f64 / f64::from(RATE);
    let summary = format!(
        "kind={} dur={:?} {}x{} rot={} frames={} first_pts={:?} last_pts={:?} audio_s={:.4} first_audio={:?} errors={} ({:.2} s)",
        p.kind.as_str(),
        p.duration_s.map(|x| (x * 1000.0).round() / 1000.0),
        p.video.as_ref().map_or(0, |v| v.width),
        p.video.as_ref().map_or(0, |v| v.height),
        p.video.as_ref().map_or(0, |v| v.rotation),
        d.frames.len(),
        d.frames.first().map(|f| (f.pts_s * 1000.0).round() / 1000.0),
        d.frames.last().map(|f| (f.pts_s * 1000.0).round() / 1000.0),
        audio_s,
        d.stats.first_audio_pts_s.map(|x| (x * 1000.0).round() / 1000.0),
        d.stats.decode_errors,
        elapsed,
    );
    let summary = match d.stats.truncated {
        Some(t) => format!("{summary} truncated: {:.2} of {:.2} s", t.decoded_s, t.declared_s),
        None => summary,
    };
    if d.stats.truncated.is_some() != e.truncated {
        bad.push(format!("truncated {:?}, expected {}", d.stats.truncated, e.truncated));
    }

    if let Some(k) = &e.kind
        && p.kind.as_str() != k
    {
        bad.push(format!("kind {} != {k}", p.kind.as_str()));
    }
    if let Some(want) = e.duration {
        match p.duration_s {
            Some(got) if (got - want).abs() <= 0.1 => {}
            got => bad.push(format!("duration {got:?} != {want}")),
        }
    }
    let v = p.video.as_ref();
    if let Some(w) = e.width
        && v.map(|v| v.width) != Some(w)
    {
        bad.push(format!("width {:?} != {w}", v.map(|v| v.width)));
    }
    if let Some(h) = e.height
        && v.map(|v| v.height) != Some(h)
    {
        bad.push(format!("height {:?} != {h}", v.map(|v| v.height)));
    }
    if let Some(r) = e.rotation
        && v.map_or(0, |v| v.rotation) != r
    {
        bad.push(format!("rotation {:?} != {r}", v.map(|v| v.rotation)));
    }
    // Timestamps: increasing, within the file, frames square and full.
    for w in d.frames.windows(2) {
        if w[1].pts_s <= w[0].pts_s {
            bad.push(format!("timestamps not increasing: {} then {}", w[0].pts_s, w[1].pts_s));
            break;
        }
    }
    if let (Some(last), Some(dur)) = (d.frames.last(), p.duration_s)
        && last.pts_s > dur + 0.1
    {
        bad.push(format!("frame at {} past the duration {dur}", last.pts_s));
    }
    // At 1 fps, frame k is the first at or after k seconds: never before, never two in a second.
    for f in &d.frames {
        if f.rgb.len() != (SIZE * SIZE * 3) as usize {
            bad.push("frame of the wrong size".into());
            break;
        }
    }
    let secs: Vec<i64> = d.frames.iter().map(|f| (f.pts_s + 1e-6).floor() as i64).collect();
    if secs.windows(2).any(|w| w[0] == w[1]) {
        bad.push(format!("two frames in the same second: {secs:?}"));
    }
    if let Some(n) = e.frames
        && (d.frames.len() as i64 - n as i64).abs() > 1
    {
        bad.push(format!("{} frames, expected {n} (within one)", d.frames.len()));
    }
    if let Some(t0) = e.first_pts {
        match d.frames.first() {
            Some(f) if (f.pts_s - t0).abs() <= 0.05 => {}
            f => bad.push(format!("first frame at {:?}, expected {t0}", f.map(|f| f.pts_s))),
        }
    }
    if let Some(want) = e.audio_s {
        if want == 0.0 {
            if p.audio.is_some() {
                bad.push("has an audio stream, expected none".into());
            }
        } else if (audio_s - want).abs() > 0.010 {
            bad.push(format!("audio {audio_s:.4} s, expected {want} s (within 10 ms)"));
        }
    }
    if let Some(silent) = e.silent {
        let rms = (d.audio.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / d.audio.len().max(1) as f64).sqrt();
        if silent != (rms < 1e-4) {
            bad.push(format!("audio rms {rms:.5}, expected {}", if silent { "silence" } else { "sound" }));
        }
    }
    let mut extra = String::new();
    if let Some(reference) = &e.like {
        let refs = refs.entry(reference.clone()).or_insert_with(|| {
            run(&dir.join(reference), Sampler::Fps(1.0))
                .map(|d| d.frames)
                .unwrap_or_else(|(_, e)| panic!("reference {reference}: {e}"))
        });
        let max = e.max_diff.unwrap_or(12.0);
        let mut compared = 0;
        let mut worst = 0f64;
        let mut worst_shift = 0f64;
        for f in &d.frames {
            let Some(r) = refs.iter().find(|r| (r.pts_s - f.pts_s).abs() < 0.03) else { continue };
            compared += 1;
            let diffs: Vec<f64> = (0..4).map(|q| mean_abs_diff(&rotate(&f.rgb, SIZE as usize, q), &r.rgb)).collect();
            worst = worst.max(diffs[0]);
            // Colour casts and range errors move the channel means; coding noise does not.
            let means = |rgb: &[u8]| -> [f64; 3] {
                let mut m = [0f64; 3];
                rgb.chunks_exact(3).for_each(|p| (0..3).for_each(|c| m[c] += f64::from(p[c])));
                m.map(|x| x / (rgb.len() / 3) as f64)
            };
            let (a, b) = (means(&f.rgb), means(&r.rgb));
            let shift = (0..3).map(|c| (a[c] - b[c]).abs()).fold(0.0, f64::max);
            worst_shift = worst_shift.max(shift);
            let max_shift = e.max_shift.unwrap_or(2.0);
            if shift > max_shift {
                bad.push(format!(
                    "frame at {:.3}: channel means {a:.1?} vs {reference} {b:.1?} (max shift {max_shift})",
                    f.pts_s
                ));
            }
            if diffs[0] > max {
                bad.push(format!("frame at {:.3} differs from {reference} by {:.1} (max {max})", f.pts_s, diffs[0]));
            }
            if diffs[1..].iter().any(|&x| x <= diffs[0]) {
                bad.push(format!("frame at {:.3} matches {reference} better turned: {diffs:?}", f.pts_s));
            }
        }
        if compared == 0 {
            bad.push(format!("no frame at the same time as {reference}'s frames"));
        }
        extra = format!(" diff<={worst:.1} shift<={worst_shift:.2}");
    }
    if e.alpha_white == Some(true) {
        // The transparent band (x in 140..180 of 320, see make.sh) lands in the middle of the
        // 180-wide centre crop: columns (140-70)/180..(180-70)/180 of the output.
        let n = SIZE as usize;
        let (x0, x1) = (n * 75 / 180, n * 105 / 180);
        for f in &d.frames {
            let white = (0..n)
                .flat_map(|y| (x0..x1).map(move |x| (y * n + x) * 3))
                .filter(|&i| f.rgb[i..i + 3].iter().all(|&c| c >= 250))
                .count();
            if white * 10 < n * (x1 - x0) * 9 {
                bad.push(format!("transparent band not white at {:.3} ({white} of {} pixels)", f.pts_s, n * (x1 - x0)));
            }
        }
    }
    (bad, format!("{summary}{extra}"))
}

#[test]
fn every_fixture_decodes_as_expected() {
    let dir = fixtures();
    let exp = expectations(&dir);
    let mut refs = HashMap::new();
    let mut failures = Vec::new();
    for e in &exp.file {
        if !dir.join(&e.name).exists() {
            failures.push(format!("{}: fixture missing (run `cargo xtask fixtures`)", e.name));
            continue;
        }
        let (bad, summary) = check(&dir, e, &mut refs);
        eprintln!("{:<28} {}{}", e.name, if bad.is_empty() { "ok   " } else { "FAIL " }, summary);
        for b in bad {
            eprintln!("{:<28}   - {b}", "");
            failures.push(format!("{}: {b}", e.name));
        }
    }
    // Every file the script makes has an expectation.
    let listed: Vec<&str> = exp.file.iter().map(|e| e.name.as_str()).collect();
    for sub in ["", "matrix"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            let name = if sub.is_empty() {
                entry.file_name().to_string_lossy().into_owned()
            } else {
                format!("{sub}/{}", entry.file_name().to_string_lossy())
            };
            if entry.path().is_file()
                && !name.contains(".tmp.")
                && !name.ends_with(".toml")
                && !listed.contains(&name.as_str())
            {
                failures.push(format!("{name}: no expectation in fixtures/expect.toml"));
            }
        }
    }
    assert!(failures.is_empty(), "{} fixture checks failed:\n{}", failures.len(), failures.join("\n"));
}
