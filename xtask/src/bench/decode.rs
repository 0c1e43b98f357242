//! `cargo xtask bench decode [--threads N] [--rounds R] [--size PX] [--file PATH]`: the media
//! crate's samplers on the full Big Buck Bunny (596 s, 720p H.264), next to the `ffmpeg` CLI
//! doing the same work with the same decoder thread count, in one run on one machine:
//!
//! | ours (`decode_bench` example)    | ffmpeg CLI                                                    |
//! |----------------------------------|---------------------------------------------------------------|
//! | `fps:1`, 224x224 RGB, centre crop | `-vf fps=1,crop,scale=224:224:flags=bicubic -f rawvideo`      |
//! | `keyframes`                       | `-skip_frame nokey ... -fps_mode passthrough`                 |
//! | `shots`                           | `-vf select='gt(scene,0.3)',crop,scale` (scene score per frame) |
//!
//! Runs alternate (ours, CLI, ours, CLI...) so background load hits both alike; the best of
//! the rounds is reported, with the CPU use of each (both cores busy = ~200 %).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::json_field;
use crate::Ctx;

struct Opts {
    threads: usize,
    rounds: usize,
    size: u32,
    file: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts { threads: 2, rounds: 2, size: 224, file: None };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--threads" => o.threads = val()?.parse()?,
            "--rounds" => o.rounds = val()?.parse::<usize>()?.max(1),
            "--size" => o.size = val()?.parse()?,
            "--file" => o.file = Some(PathBuf::from(val()?)),
            other => bail!("bench decode: unknown argument {other} (--threads N, --rounds R, --size PX, --file PATH)"),
        }
    }
    Ok(o)
}

/// CPU seconds used by waited-for children so far (user + system), from /proc.
fn children_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which ends at the last ')'): cutime and cstime are the
    // 14th and 15th of them (fields 16 and 17 of the whole line).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(13) + ticks(14)) / 100.0
}

struct Timing {
    wall_s: f64,
    cpu_s: f64,
    stdout: String,
}

fn time(cmd: &mut Command) -> Result<Timing> {
    let cpu0 = children_cpu_s();
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let wall_s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(Timing { wall_s, cpu_s: children_cpu_s() - cpu0, stdout: String::from_utf8_lossy(&out.stdout).into_owned() })
}

fn ffmpeg(film: &Path, threads: usize, size: u32, sampler: &str) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-threads", &threads.to_string()]);
    let crop = format!("crop='min(iw,ih)':'min(iw,ih)',scale={size}:{size}:flags=bicubic");
    let vf = match sampler {
        "fps:1" => format!("fps=1,{crop}"),
        "keyframes" => {
            c.args(["-skip_frame", "nokey"]);
            crop
        }
        _ => format!("select='gt(scene,0.3)',{crop}"),
    };
    c.arg("-i").arg(film).args([
        "-an",
        "-vf",
        &vf,
        "-fps_mode",
        "passthrough",
        "-pix_fmt",
        "rgb24",
        "-f",
        "rawvideo",
        "-y",
        "/dev/null",
    ]);
    c
}

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let film = match &o.file {
        Some(f) => f.clone(),
        None => ctx.media()?.join("film/bbb.mp4"),
    };
    if !film.exists() {
        bail!("{} missing: `cargo xtask media` fetches it", film.display());
    }
    ctx.build()?;
    let bin = ctx.target_dir().join("debug/examples/decode_bench");
    let probe = time(Command::new(&bin).arg(&film).arg("keyframes").arg("1").arg("16"))?;
    let media_s: f64 = json_field(&probe.stdout, "media_s").and_then(|x| x.parse().ok()).unwrap_or(0.0);

    let samplers = ["fps:1", "keyframes", "shots"];
    // best[(sampler, ours?)] = (wall, cpu, frames out)
    let mut best: Vec<[Option<(f64, f64, String)>; 2]> = vec![[None, None]; samplers.len()];
    for round in 0..o.rounds {
        for (i, s) in samplers.iter().enumerate() {
            let ours = time(Command::new(&bin).arg(&film).arg(s).arg(o.threads.to_string()).arg(o.size.to_string()))?;
            let cli = time(&mut ffmpeg(&film, o.threads, o.size, s))?;
            let frames = format!(
                "{} out / {} decoded{}",
                json_field(&ours.stdout, "frames_out").unwrap_or("?"),
                json_field(&ours.stdout, "frames_decoded").unwrap_or("?"),
                match json_field(&ours.stdout, "shots") {
                    Some(n) if *s == "shots" => format!(", {n} shots"),
                    _ => String::new(),
                }
            );
            eprintln!(
                "bench decode: round {} {s:<9} ours {:6.2} s ({:3.0}% cpu)  ffmpeg {:6.2} s ({:3.0}% cpu)",
                round + 1,
                ours.wall_s,
                100.0 * ours.cpu_s / ours.wall_s,
                cli.wall_s,
                100.0 * cli.cpu_s / cli.wall_s
            );
            for (slot, t, info) in [(0, &ours, frames), (1, &cli, String::new())] {
                if best[i][slot].as_ref().is_none_or(|b| t.wall_s < b.0) {
                    best[i][slot] = Some((t.wall_s, t.cpu_s, info));
                }
            }
        }
    }

    println!(
        "bench decode: {} ({media_s:.1} s), {} decoder threads, {}x{} RGB, best of {} rounds, {} CPUs on this machine",
        film.display(),
        o.threads,
        o.size,
        o.size,
        o.rounds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "| sampler | medley wall s | media s / wall s | cpu | ffmpeg CLI wall s | cpu | medley / CLI time | frames |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut walls = Vec::new();
    for (i, s) in samplers.iter().enumerate() {
        let (ow, oc, info) = best[i][0].clone().expect("ran");
        let (cw, cc, _) = best[i][1].clone().expect("ran");
        walls.push(ow);
        println!(
            "| {s} | {ow:.2} | {:.1} | {:.0}% | {cw:.2} | {:.0}% | {:.2}x | {info} |",
            media_s / ow,
            100.0 * oc / ow,
            100.0 * cc / cw,
            ow / cw
        );
    }
    let fps_ratio = best[0][0].as_ref().unwrap().0 / best[0][1].as_ref().unwrap().0;
    let key_speedup = walls[0] / walls[1];
    println!(
        "targets: fps:1 within 1.1x of the CLI: {:.2}x {}; keyframes >= 5x faster than fps:1: {:.1}x {}",
        fps_ratio,
        if fps_ratio <= 1.1 { "(met)" } else { "(MISSED)" },
        key_speedup,
        if key_speedup >= 5.0 { "(met)" } else { "(MISSED)" }
    );
    Ok(())
}
