//! `cargo xtask bench index`: wall time of `medley index` over the first 120 s of Big Buck
//! Bunny, next to the `ffmpeg` CLI decoding the same 120 s at 1 fps to the same 224x224 RGB
//! frames (the floor), in the same run on the same machine.

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::Ctx;

pub fn run(ctx: &Ctx) -> Result<()> {
    index(ctx)
}

fn time(mut cmd: Command) -> Result<f64> {
    let t = Instant::now();
    let status = cmd.status()?;
    if !status.success() && status.code() != Some(1) {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(t.elapsed().as_secs_f64())
}

fn index(ctx: &Ctx) -> Result<()> {
    let build = ctx.setup_and_build()?;
    let media = ctx.media()?;
    build.join()?;
    let film = media.join("film/bbb.mp4");
    let dir = ctx.home.join("bench");
    let clip_dir = dir.join("bbb120");
    std::fs::create_dir_all(&clip_dir)?;
    let clip = clip_dir.join("bbb_first_120s.mp4");
    if !clip.exists() {
        crate::run(
            Command::new("ffmpeg")
                .args(["-nostdin", "-loglevel", "error", "-y", "-t", "120", "-i"])
                .arg(&film)
                .args(["-c", "copy"])
                .arg(&clip),
        )?;
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string();
    let ffmpeg_video = || {
        let mut c = Command::new("ffmpeg");
        c.args(["-nostdin", "-loglevel", "error", "-threads", &threads, "-i"]).arg(&clip).args([
            "-an",
            "-vf",
            "fps=1,crop='min(iw,ih)':'min(iw,ih)',scale=224:224:flags=bicubic",
            "-pix_fmt",
            "rgb24",
            "-f",
            "rawvideo",
            "-y",
            "/dev/null",
        ]);
        c
    };
    let ffmpeg_av = || {
        let mut c = ffmpeg_video();
        c.args(["-vn", "-ac", "1", "-ar", "44100", "-f", "f32le", "-y", "/dev/null"]);
        c
    };
    let mut rows = Vec::new();
    for round in 0..2 {
        let db = dir.join(format!("bench-{round}.lance"));
        let _ = std::fs::remove_dir_all(&db);
        let v = time(ffmpeg_video())?;
        let av = time(ffmpeg_av())?;
        let mut m = Command::new(ctx.medley_bin());
        m.arg("index").arg(&clip_dir).arg("--db").arg(&db).env("MEDLEY_HOME", &ctx.home);
        let medley = time(m)?;
        rows.push((v, av, medley));
    }
    println!(
        "bench index: 120 s of Big Buck Bunny (1280x720 H.264 24 fps + AAC), {threads} threads, debug-profile medley"
    );
    println!(
        "{:<8} {:>14} {:>20} {:>14} {:>10} {:>10}",
        "round", "ffmpeg video s", "ffmpeg video+audio s", "medley index s", "x video", "x v+a"
    );
    for (i, (v, av, m)) in rows.iter().enumerate() {
        println!("{:<8} {:>14.2} {:>20.2} {:>14.2} {:>10.2} {:>10.2}", i, v, av, m, m / v, m / av);
    }
    Ok(())
}
