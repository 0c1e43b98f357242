//! `cargo xtask bench sid [--n N] [--iters I] [--seed S]`: RQ-KMeans (L=3, K=256, 256-d) of
//! medley-fuse against residual k-means built from faiss-cpu's `faiss.Kmeans`, on the same
//! synthetic data file, in the same run. Reports training time, relative reconstruction error
//! and medley-fuse's assignment throughput (then its `sid stats` report and unigram piece
//! training time), with the targets (error within 2% of faiss,
//! time at most 1.5x faiss's).

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{opt, results};
use crate::Ctx;

const D: usize = 256;
const LEVELS: usize = 3;
const CODES: usize = 256;

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let n = opt(args, "--n", 1_000_000)?;
    let iters = opt(args, "--iters", 10)?;
    let seed = opt(args, "--seed", 1)?;
    if let Some(a) = args.iter().find(|a| a.starts_with("--") && !["--n", "--iters", "--seed"].contains(&a.as_str())) {
        bail!("unknown option {a}; bench sid takes --n N, --iters I, --seed S");
    }
    let venv = ctx.venv("venv-bench", &ctx.root.join("onnx_models/requirements-bench.txt"), None)?;
    ctx.build()?;
    let bin = ctx.target_dir().join("debug/examples/sid_bench");

    let dir = ctx.home.join("bench/sid");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join(format!("clustered-{n}x{D}-seed{seed}.npy"));
    if !data.exists() {
        let tmp = data.with_extension("npy.part");
        crate::run(Command::new(&bin).arg("gen").arg(&tmp).args([n.to_string(), D.to_string(), seed.to_string()]))?;
        std::fs::rename(&tmp, &data)?;
    }
    let shape = [LEVELS.to_string(), CODES.to_string(), iters.to_string(), seed.to_string()];
    let rust = results(Command::new(&bin).arg("train").arg(&data).args(&shape))?;
    let faiss = results(
        Command::new(venv.join("bin/python"))
            .arg(ctx.root.join("crates/medley-fuse/bench/faiss_rq.py"))
            .arg(&data)
            .args(&shape),
    )?;
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().with_context(|| format!("no {k} in the results"));

    println!();
    println!(
        "bench sid: {n} x {D} synthetic clustered vectors, L={LEVELS}, K={CODES}, {iters} Lloyd iterations per level (both sides), seed {seed}"
    );
    println!("{:<28} {:>14} {:>14} {:>10}", "", "medley-fuse", "faiss-cpu", "ratio");
    let (rt, ft) = (get(&rust, "train_s")?, get(&faiss, "train_s")?);
    println!("{:<28} {:>14.1} {:>14.1} {:>10.2}", "training time (s)", rt, ft, rt / ft);
    for l in 1..=LEVELS {
        let k = format!("rel_mse_l{l}");
        let (a, b) = (get(&rust, &k)?, get(&faiss, &k)?);
        println!("{:<28} {:>14.4} {:>14.4} {:>10.3}", format!("relative MSE after level {l}"), a, b, a / b);
    }
    println!("{:<28} {:>14.0} {:>14} {:>10}", "assignment (vectors/s)", get(&rust, "assign_vps")?, "-", "");
    println!("{:<28} {:>14.1} {:>14} {:>10}", "stats, 1000 exact NN (s)", get(&rust, "stats_s")?, "-", "");
    println!("{:<28} {:>14.1} {:>14} {:>10}", "unigram pieces (s)", get(&rust, "pieces_s")?, "-", "");
    let (re, fe) = (get(&rust, "rel_mse")?, get(&faiss, "rel_mse")?);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("target: error within 2% of faiss: {} ({:+.2}%)", verdict(re <= fe * 1.02), (re / fe - 1.0) * 100.0);
    println!("target: training time at most 1.5x faiss's: {} ({:.2}x)", verdict(rt <= ft * 1.5), rt / ft);
    Ok(())
}
