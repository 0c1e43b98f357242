//! `cargo xtask bench pipeline`: the full default pipeline (`medley index`) over the sample
//! media (photos, videos, music), in media seconds per wall second, next to the decode-only
//! floor measured in the same run (the same files decoded as the pipeline decodes them:
//! frames at 1 fps to 224x224 RGB and the soundtrack resampled, by the `decode_bench`
//! example), and the pipeline's busy seconds per stage, so the bottleneck is visible. The
//! pipeline runs twice: one file at a time (`--workers 1`) and two at once (`--workers 2`);
//! with `--device cuda`, once on this machine's CPUs and once with `--device cuda --hwaccel
//! cuda` (each with its device's default workers), the speed-up printed.
//! Then the cost of the speech stage where nobody speaks: the evaluation set's 31 short
//! sounds (instruments, sound effects; `cargo xtask media`) indexed by the default pipeline
//! and by the same pipeline with `stages.speech` off, as a ratio of wall times (Whisper ran
//! a 30 s window over every clip before the voice-activity stage: 5.6x).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{json_field, medley_index, results};
use crate::Ctx;

const STAGES: [&str; 13] = [
    "hash", "decode", "vision", "ocr", "shots", "audio", "music", "sounds", "vad", "speech", "text", "caption", "write",
];

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let cuda = match args {
        [] => false,
        [flag, device] if flag == "--device" && device == "cpu" => false,
        [flag, device] if flag == "--device" && device == "cuda" => true,
        _ => bail!("bench pipeline takes only --device cpu|cuda (got {})", args.join(" ")),
    };
    // Each run: its label and its `medley index` options.
    let variants: [(&str, &[&str]); 2] = if cuda {
        [
            ("medley index --device cpu", &["--device", "cpu", "--hwaccel", "none"]),
            ("medley index --device cuda --hwaccel cuda", &["--device", "cuda", "--hwaccel", "cuda"]),
        ]
    } else {
        [("medley index --workers 1", &["--workers", "1"]), ("medley index --workers 2", &["--workers", "2"])]
    };
    let build = ctx.setup_and_build()?;
    let media = ctx.media()?;
    build.join()?;
    let dirs: Vec<_> = ["photos", "videos", "music"].iter().map(|d| media.join(d)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The floor: every video and audio file decoded as the pipeline decodes it.
    let decode_bench = ctx.target_dir().join("debug/examples/decode_bench");
    let mut floor_s = 0.0;
    for dir in &dirs[1..] {
        for entry in std::fs::read_dir(dir)? {
            let file = entry?.path();
            let t = Instant::now();
            let out = Command::new(&decode_bench)
                .arg(&file)
                .args(["fps:1", &threads.to_string(), "224", "44100"])
                .output()
                .with_context(|| format!("running {}", decode_bench.display()))?;
            if !out.status.success() {
                bail!("decode_bench {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr));
            }
            floor_s += t.elapsed().as_secs_f64();
        }
    }

    // Warm-up: medley embeds its label texts once and keeps them in the model folder; after
    // a fresh model export the first timed run would pay for that.
    results(&mut medley_index(ctx, &ctx.home.join("bench/pipeline-warm.lance"), &dirs[..1]))?;

    // The pipeline with one file at a time and with two in flight (decoding one while the
    // models run on another), or on CPU then CUDA; the busy seconds come from the second run.
    let mut runs = Vec::new();
    for (label, options) in variants {
        let mut medley = medley_index(ctx, &ctx.home.join("bench/pipeline.lance"), &dirs);
        let t = Instant::now();
        let out = medley.args(options).output()?;
        let wall = t.elapsed().as_secs_f64();
        if !matches!(out.status.code(), Some(0 | 1)) {
            bail!("medley index failed with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        runs.push((label, wall, String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let (_, wall, summary) = runs.last().expect("two runs");
    let num = |k: &str| -> Result<f64> {
        json_field(summary, k).and_then(|v| v.parse().ok()).with_context(|| format!("no {k} in {summary}"))
    };
    let (media_s, files) = (num("media_seconds")?, num("indexed")?);

    println!();
    println!("bench pipeline: default pipeline over {} sample files ({media_s:.1} media seconds)", files);
    println!("{:<44} {:>10} {:>14}", "", "wall (s)", "media s / s");
    for (label, wall, _) in &runs {
        println!("{label:<44} {wall:>10.1} {:>14.1}", media_s / wall);
    }
    println!("{:<44} {:>10.1} {:>14.1}", "decode only, CPU (the floor)", floor_s, media_s / floor_s);
    println!("pipeline ({}) / floor: {:.2}x the decode-only time", runs[1].0, wall / floor_s);
    println!("{} over {}: {:.2}x the speed", runs[1].0, runs[0].0, runs[0].1 / wall);
    println!("busy seconds per stage (summed over files):");
    let busy: Vec<(&str, f64)> = STAGES.iter().map(|s| (*s, num(s).unwrap_or(0.0))).collect();
    let total: f64 = busy.iter().map(|b| b.1).sum();
    for (stage, s) in &busy {
        println!("  {stage:<8} {s:>8.1} s {:>6.1}%", 100.0 * s / total.max(1e-9));
    }
    let (top, _) = busy.iter().copied().fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    println!("bottleneck: {top}");
    speech_where_nobody_speaks(ctx)
}

/// The default pipeline against the same pipeline without the speech stage, on short sounds
/// with no speech in them: the wall-time ratio, and the voice-activity and Whisper busy
/// seconds.
fn speech_where_nobody_speaks(ctx: &Ctx) -> Result<()> {
    let sounds = ctx.home.join("eval-set/sounds");
    if !sounds.is_dir() {
        println!("no {} (run `cargo xtask media`): speech-stage cost on sounds not measured", sounds.display());
        return Ok(());
    }
    let default = std::fs::read_to_string(ctx.root.join("pipelines/video-default.toml"))?;
    let without = ctx.home.join("bench/no-speech.toml");
    std::fs::create_dir_all(ctx.home.join("bench"))?;
    std::fs::write(&without, default.replacen("speech = true", "speech = false", 1))?;
    let mut runs = Vec::new();
    for pipeline in [None, Some(&without)] {
        let db = ctx.home.join("bench/sounds.lance");
        let _ = std::fs::remove_dir_all(&db);
        let mut cmd = Command::new(ctx.medley_bin());
        cmd.env("MEDLEY_HOME", &ctx.home).arg("index").arg(&sounds).arg("--db").arg(&db).arg("--json");
        if let Some(p) = pipeline {
            cmd.arg("--pipeline").arg(p);
        }
        let t = Instant::now();
        let out = cmd.output()?;
        let wall = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("medley index {} failed: {}", sounds.display(), String::from_utf8_lossy(&out.stderr));
        }
        runs.push((wall, String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let field = |json: &str, k: &str| json_field(json, k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let (with, without) = (&runs[0], &runs[1]);
    println!();
    println!("speech stage on {:.0} files of sound without speech ({}):", field(&with.1, "indexed"), sounds.display());
    println!("  default pipeline        {:>8.1} s wall", with.0);
    println!("  without stages.speech   {:>8.1} s wall", without.0);
    println!(
        "  ratio {:.2}x (target at most 1.5x); busy: vad {:.1} s, speech (Whisper) {:.1} s",
        with.0 / without.0,
        field(&with.1, "vad"),
        field(&with.1, "speech")
    );
    Ok(())
}
