//! `cargo xtask bench memory`: peak resident memory of `medley index` on a 60-minute file (Big
//! Buck Bunny looped with `-stream_loop`, streams copied) next to a 5-minute cut of the same
//! film, in the same run. Decoding streams frames and audio windows, so memory must not grow
//! with duration: the target is at most 1.5x. The pipeline is video-default without the
//! music and speech stages (those decode the soundtrack the same streaming way, but Whisper
//! would make the 60-minute run take half an hour).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Ctx;

/// Peak RSS in KiB and wall seconds of `medley index FILE`, by GNU time.
fn peak_kib(ctx: &Ctx, file: &Path, pipeline: &Path, db: &Path) -> Result<(u64, f64)> {
    let _ = std::fs::remove_dir_all(db);
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak_kib %M wall_s %e"])
        .arg(ctx.medley_bin())
        .env("MEDLEY_HOME", &ctx.home)
        .arg("index")
        .arg(file)
        .arg("--pipeline")
        .arg(pipeline)
        .arg("--db")
        .arg(db)
        .output()?;
    if !out.status.success() {
        bail!("indexing {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().rev().find(|l| l.starts_with("peak_kib")).context("no GNU time line")?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Ok((f[1].parse()?, f[3].parse()?))
}

fn cut(film: &Path, out: &Path, args: &[&str]) -> Result<PathBuf> {
    if !out.exists() {
        let tmp = out.with_extension("part.mp4");
        crate::run(
            Command::new("ffmpeg")
                .args(["-nostdin", "-loglevel", "error", "-y"])
                .args(args)
                .arg("-i")
                .arg(film)
                .args(["-t", if args.is_empty() { "300" } else { "3600" }, "-c", "copy"])
                .arg(&tmp),
        )?;
        std::fs::rename(&tmp, out)?;
    }
    Ok(out.to_path_buf())
}

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("bench memory takes no options (got {a})");
    }
    let build = ctx.setup_and_build()?;
    let media = ctx.media()?;
    build.join()?;
    let film = media.join("film/bbb.mp4");
    let dir = ctx.home.join("bench/memory");
    std::fs::create_dir_all(&dir)?;
    let short = cut(&film, &dir.join("bbb_5min.mp4"), &[])?;
    let long = cut(&film, &dir.join("bbb_60min.mp4"), &["-stream_loop", "6"])?;
    let pipeline = dir.join("vision-audio.toml");
    let default = std::fs::read_to_string(ctx.root.join("pipelines/video-default.toml"))?;
    std::fs::write(
        &pipeline,
        default.replace("music = true", "music = false").replace("speech = true", "speech = false"),
    )?;
    let (short_kib, short_s) = peak_kib(ctx, &short, &pipeline, &dir.join("db5"))?;
    let (long_kib, long_s) = peak_kib(ctx, &long, &pipeline, &dir.join("db60"))?;
    let ratio = long_kib as f64 / short_kib as f64;
    println!();
    println!("bench memory: medley index, video-default without music and speech stages");
    println!("{:<24} {:>14} {:>10}", "", "peak RSS (MiB)", "wall (s)");
    println!("{:<24} {:>14.0} {:>10.1}", "5-minute file", short_kib as f64 / 1024.0, short_s);
    println!("{:<24} {:>14.0} {:>10.1}", "60-minute file", long_kib as f64 / 1024.0, long_s);
    let verdict = if ratio <= 1.5 { "met" } else { "NOT met" };
    println!("target: 60-minute peak at most 1.5x the 5-minute peak: {verdict} ({ratio:.2}x)");
    Ok(())
}
