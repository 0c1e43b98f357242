//! `cargo xtask bench reference`: medley against a plain Python pipeline (PyAV + onnxruntime +
//! lancedb, `reference.py` beside this file, in a pinned venv) over the same sample media in
//! the same run, at equal stages: frames at 1 fps through EfficientNet-Lite0 with the label
//! bridge, aiSFX on the soundtrack, the musicnn tagger, YAMNet sound events, the description
//! embedded by MiniLM, rows written to LanceDB. Speech and on-screen text are off on both
//! sides (the reference has no Whisper decoding loop or OCR post-processing). Reports wall
//! time, media seconds per wall second, the ratio, and each side's peak resident memory
//! (GNU time), so the ratio is measured rather than remembered.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{json_field, medley_index, results};
use crate::Ctx;

const REFERENCE_PY: &str = include_str!("reference.py");

/// video-default with the stages the reference implements.
fn pipeline(ctx: &Ctx) -> Result<String> {
    let default = std::fs::read_to_string(ctx.root.join("pipelines/video-default.toml"))?;
    let mut out = String::new();
    for line in default.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match key {
            "speech" | "ocr" if line.contains("true") => out.push_str(&format!("{key} = false\n")),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !out.contains("speech = false") || !out.contains("ocr = false") {
        bail!("pipelines/video-default.toml changed shape: cannot switch speech and OCR off");
    }
    Ok(out.replace("name = \"video-default\"", "name = \"bench-reference\""))
}

/// Peak RSS (MiB), wall seconds and stdout of a command run under GNU time.
fn timed(cmd: &mut Command) -> Result<(f64, f64, String)> {
    let mut time = Command::new("/usr/bin/time");
    time.args(["-f", "peak_kib %M"]).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            time.env(k, v);
        }
    }
    let t = Instant::now();
    let out = time.output().with_context(|| format!("running {:?} under /usr/bin/time", cmd.get_program()))?;
    let wall = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !matches!(out.status.code(), Some(0 | 1)) {
        bail!("{:?} failed with {}: {err}", cmd.get_program(), out.status);
    }
    let line = err.lines().rev().find(|l| l.starts_with("peak_kib")).context("no GNU time line")?;
    let kib: f64 = line.split_whitespace().nth(1).context("GNU time line")?.parse()?;
    Ok((kib / 1024.0, wall, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn files(media: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in ["photos", "videos", "music"] {
        for entry in std::fs::read_dir(media.join(dir))? {
            files.push(entry?.path());
        }
    }
    files.sort();
    Ok(files)
}

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("bench reference takes no options (got {a})");
    }
    let build = ctx.setup_and_build()?;
    let media = ctx.media()?;
    let venv = ctx.venv("venv-reference", &ctx.root.join("onnx_models/requirements-reference.txt"), None)?;
    build.join()?;
    let dir = ctx.home.join("bench/reference");
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("reference.py");
    std::fs::write(&script, REFERENCE_PY)?;
    let pipeline_file = dir.join("pipeline.toml");
    std::fs::write(&pipeline_file, pipeline(ctx)?)?;
    let files = files(&media)?;
    let models = ctx.home.join("models");
    let python = venv.join("bin/python");
    let reference = |db: &Path, files: &[PathBuf]| {
        let mut c = Command::new(&python);
        c.arg(&script).arg("--models").arg(&models).arg("--db").arg(db).args(files);
        c
    };
    // Warm-up: each side embeds its 1000 label texts once and keeps them (the reference beside
    // its database, medley in the model folder), and both read the same files.
    let warm_db = dir.join("warm.lance");
    results(&mut reference(&warm_db, &files[..1]))?;
    let medley = |db: &Path, files: &[PathBuf]| {
        let mut c = medley_index(ctx, db, files);
        c.arg("--pipeline").arg(&pipeline_file);
        c
    };
    results(&mut medley(&dir.join("medley-warm.lance"), &files[..1]))?;

    let ref_db = dir.join("reference.lance");
    let _ = std::fs::remove_dir_all(&ref_db);
    let _ = std::fs::copy(warm_db.with_extension("lance.labels.npy"), ref_db.with_extension("lance.labels.npy"));
    let (ref_mib, ref_wall, ref_out) = timed(&mut reference(&ref_db, &files))?;
    let ref_media: f64 = ref_out
        .lines()
        .find_map(|l| l.strip_prefix("result media_s "))
        .and_then(|v| v.trim().parse().ok())
        .context("the reference printed no media_s")?;

    let (medley_mib, medley_wall, summary) = timed(&mut medley(&dir.join("medley.lance"), &files))?;
    let media_s: f64 = json_field(&summary, "media_seconds")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no media_seconds in {summary}"))?;

    println!();
    println!(
        "bench reference: {} sample files, stages vision + audio + music + sound events + text, speech and OCR off",
        files.len()
    );
    println!("{:<28} {:>10} {:>14} {:>12} {:>16}", "", "wall (s)", "media s / s", "peak MiB", "media s counted");
    println!(
        "{:<28} {ref_wall:>10.1} {:>14.1} {ref_mib:>12.0} {ref_media:>16.1}",
        "Python reference",
        ref_media / ref_wall
    );
    println!(
        "{:<28} {medley_wall:>10.1} {:>14.1} {medley_mib:>12.0} {media_s:>16.1}",
        "medley index",
        media_s / medley_wall
    );
    let speed = (media_s / medley_wall) / (ref_media / ref_wall);
    println!(
        "medley / reference throughput: {speed:.2}x (target at least 2x); peak memory {:.2}x",
        medley_mib / ref_mib
    );
    println!("reference busy seconds:");
    for line in ref_out.lines().filter_map(|l| l.strip_prefix("result busy_")) {
        println!("  {line}");
    }
    // medley's are summed over the files in flight (two on 2 cores), so they add up to more
    // than its wall time; stages that did not run are left out.
    println!("medley busy seconds:");
    for (stage, seconds) in stage_seconds(&summary).into_iter().filter(|(_, s)| *s > 0.0) {
        println!("  {stage} {seconds:.3}");
    }
    Ok(())
}

/// The `stage_seconds` object of medley's `--json` summary (a flat object of numbers).
fn stage_seconds(summary: &str) -> Vec<(String, f64)> {
    let Some(body) = summary.split_once("\"stage_seconds\"").and_then(|(_, rest)| rest.split_once('{')).map(|(_, b)| b)
    else {
        return Vec::new();
    };
    body[..body.find('}').unwrap_or(body.len())]
        .split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once(':')?;
            Some((key.trim().trim_matches('"').to_string(), value.trim().parse().ok()?))
        })
        .collect()
}
