//! The Rust side of `cargo xtask bench sid`.
//!
//! `sid_bench gen PATH N D SEED`: write N synthetic clustered D-dim float32 vectors as `.npy`
//! (64 top clusters x 16 sub-clusters each, plus noise; deterministic for the seed).
//! `sid_bench train PATH LEVELS CODES ITERS SEED`: train RQ-KMeans on them, assign them all,
//! print a report and `result KEY VALUE` lines for the harness.

use std::io::{BufWriter, Read, Write};
use std::time::Instant;

use medley_fuse::{SidPieceModel, TrainConfig, kernel_name, sid_stats, train, unique_suffixes};
use rayon::prelude::*;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Standard normal pairs by Box-Muller.
fn normals(state: &mut u64, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let u = ((splitmix(state) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let v = (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * v;
        pair[0] = (r * t.cos()) as f32;
        if pair.len() > 1 {
            pair[1] = (r * t.sin()) as f32;
        }
    }
}

fn generate(path: &str, n: usize, d: usize, seed: u64) -> std::io::Result<()> {
    const TOP: usize = 64;
    const SUB: usize = 16;
    let mut s = seed;
    let mut top = vec![0f32; TOP * d];
    normals(&mut s, &mut top);
    let mut sub = vec![0f32; TOP * SUB * d];
    normals(&mut s, &mut sub);
    let mut data = vec![0f32; n * d];
    data.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
        let mut st = seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let c = (splitmix(&mut st) % (TOP * SUB) as u64) as usize;
        normals(&mut st, row);
        let (t, sc) = (c / SUB, c);
        for j in 0..d {
            row[j] = top[t * d + j] + 0.5 * sub[sc * d + j] + 0.25 * row[j];
        }
    });
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    let pad = 64 - (10 + header.len() + 1) % 64;
    let header = format!("{header}{}\n", " ".repeat(pad % 64));
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for v in &data {
        w.write_all(&v.to_le_bytes())?;
    }
    w.flush()
}

fn load(path: &str) -> std::io::Result<(Vec<f32>, usize, usize)> {
    let mut f = std::fs::File::open(path)?;
    let mut pre = [0u8; 10];
    f.read_exact(&mut pre)?;
    let hl = u16::from_le_bytes([pre[8], pre[9]]) as usize;
    let mut header = vec![0u8; hl];
    f.read_exact(&mut header)?;
    let header = String::from_utf8_lossy(&header);
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("npy shape");
    let dims: Vec<usize> = shape.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let (n, d) = (dims[0], dims[1]);
    let mut bytes = vec![0u8; n * d * 4];
    f.read_exact(&mut bytes)?;
    let data = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok((data, n, d))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> u64 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("argument {i}: a number"))
    };
    match args.first().map(String::as_str) {
        Some("gen") => {
            let t = Instant::now();
            generate(&args[1], num(2) as usize, num(3) as usize, num(4)).expect("writing the data");
            eprintln!("sid_bench: wrote {} in {:.1} s", args[1], t.elapsed().as_secs_f64());
        }
        Some("train") => {
            let (data, n, d) = load(&args[1]).expect("reading the data");
            let cfg = TrainConfig {
                balanced: false,
                seed: num(5),
                iters: num(4) as usize,
                ..TrainConfig::new(num(2) as usize, num(3) as usize)
            };
            eprintln!(
                "sid_bench: {n} x {d}, L={} K={} iters={}, kernel {}, {} threads",
                cfg.levels,
                cfg.codes,
                cfg.iters,
                kernel_name(),
                rayon::current_num_threads()
            );
            let t = Instant::now();
            let cb = train(&data, d, &cfg).expect("training");
            let train_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let codes = cb.assign(&data).expect("assigning");
            let assign_s = t.elapsed().as_secs_f64();
            let rel = cb.relative_mse(&data, &codes).expect("error");
            println!("result train_s {train_s:.3}");
            for (l, r) in cb.report.levels.iter().enumerate() {
                println!("result rel_mse_l{} {:.6}", l + 1, r.relative_mse);
                println!("result perplexity_l{} {:.1}", l + 1, r.perplexity);
            }
            println!("result rel_mse {rel:.6}");
            println!("result assign_s {assign_s:.3}");
            println!("result assign_vps {:.0}", n as f64 / assign_s);
            let t = Instant::now();
            let extra = unique_suffixes(&codes);
            let stats = sid_stats(&cb, &data, &codes, &extra, 1000, 7).expect("stats");
            eprintln!("{stats}");
            println!("result stats_s {:.3}", t.elapsed().as_secs_f64());
            let t = Instant::now();
            let pieces = SidPieceModel::train(codes.iter(), cb.levels(), cb.codes(), 4096).expect("pieces");
            let example = pieces.pieces(codes.get(0)).expect("pieces");
            eprintln!("unigram pieces: vocabulary {}, item 0 {:?} -> {example:?}", pieces.vocab_size(), codes.get(0));
            println!("result pieces_s {:.3}", t.elapsed().as_secs_f64());
        }
        _ => panic!("usage: sid_bench gen PATH N D SEED | train PATH LEVELS CODES ITERS SEED"),
    }
}
