//! Decode one file with one sampler and report timing as one JSON line (for `cargo xtask
//! bench decode`). Video only, frames centre-cropped and scaled to SIZE x SIZE RGB.
//!
//! Usage: decode_bench FILE SAMPLER [THREADS] [SIZE] [AUDIO_RATE|-] [HWACCEL]
//!   e.g. decode_bench bbb.mp4 fps:1 2 224

use std::time::Instant;

use medley_media::{DecodeOptions, HwAccel, Sampler, decode, probe};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: decode_bench FILE SAMPLER [THREADS] [SIZE] [AUDIO_RATE|-] [none|cuda]");
        std::process::exit(2);
    }
    let path = std::path::Path::new(&args[0]);
    let sampler: Sampler = args[1].parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let size: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(224);
    let audio_rate: Option<u32> = args.get(4).and_then(|s| s.parse().ok());
    let hwaccel: HwAccel = args.get(5).map_or(Ok(HwAccel::None), |s| s.parse()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let t = Instant::now();
    let p = probe(path).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let opts = DecodeOptions {
        sampler: Some(sampler.clone()),
        frame_size: Some(size),
        audio_rate,
        threads,
        time_budget: None,
        hwaccel,
        ..Default::default()
    };
    let mut frames = 0u64;
    let mut checksum = 0u64;
    let mut samples = 0u64;
    let stats = decode(
        &p,
        &opts,
        &mut |f| {
            frames += 1;
            checksum = checksum.wrapping_add(f.rgb.iter().map(|&b| u64::from(b)).sum::<u64>());
        },
        &mut |s| samples += s.len() as u64,
    )
    .unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let wall = t.elapsed().as_secs_f64();
    let media_s = p.duration_s.unwrap_or(0.0);
    println!(
        "{{\"sampler\":\"{sampler}\",\"wall_s\":{wall:.3},\"media_s\":{media_s:.3},\"speed\":{:.1},\"frames_out\":{frames},\"frames_decoded\":{},\"shots\":{},\"audio_samples\":{samples},\"checksum\":{checksum},\"hwaccel_used\":{}}}",
        media_s / wall,
        stats.frames_decoded,
        stats.shots.len(),
        stats.hwaccel_used
    );
}
