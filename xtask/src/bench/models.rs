//! `cargo xtask bench models [--device cpu|cuda] [--seconds S] [--batches 1,8,32] [MODEL...]`:
//! items per second of every model graph at each batch size, through medley's Rust runtime
//! (`ort`) and, on CPU, through Python onnxruntime on the same graph, shapes, inputs and thread
//! count, in the same run. On CUDA the Rust side is timed with host arrays and with I/O binding;
//! its baseline there is PyTorch fp16 (`xtask/gpu/torch_bench.py`, run by `xtask/gpu/check.sh`).
//! Decoder-step graphs are left out (one call is not an item).

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::results;
use crate::Ctx;

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let (mut seconds, mut batches, mut device) = ("2".to_string(), "1,8,32".to_string(), "cpu".to_string());
    let mut models: Vec<String> = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().context("--seconds takes a number")?.clone(),
            "--batches" => batches = it.next().context("--batches takes a list like 1,8,32")?.clone(),
            "--device" => {
                device = it.next().context("--device takes cpu or cuda")?.clone();
                if !["cpu", "cuda"].contains(&device.as_str()) {
                    bail!("--device takes cpu or cuda, not {device}");
                }
            }
            m if !m.starts_with("--") => models.push(m.to_string()),
            other => {
                bail!("unknown option {other}; bench models takes --device D, --seconds S, --batches LIST, MODEL...")
            }
        }
    }
    let build = ctx.setup_and_build()?;
    let venv = ctx.runtime_venv()?;
    let models_dir = ctx.home.join("models");
    if models.is_empty() {
        models = std::fs::read_dir(&models_dir)?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        models.sort();
    }
    // The workspace build (examples included): building one package alone resolves other
    // dependency features and recompiles the lance stack.
    build.join()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Model by model, Rust then Python, so both sides of a row see the same machine load.
    let (mut rust, mut python) = (BTreeMap::new(), BTreeMap::new());
    let cuda = device == "cuda";
    for model in &models {
        let mut bench = Command::new(ctx.target_dir().join("debug/examples/model_bench"));
        bench.env("MEDLEY_HOME", &ctx.home).args(["--device", &device, "--seconds", &seconds, "--batches", &batches]);
        if cuda {
            bench.arg("--bound");
        }
        rust.extend(results(bench.arg(model))?);
        if cuda {
            continue;
        }
        python.extend(results(
            Command::new(venv.join("bin/python"))
                .arg(ctx.root.join("crates/medley-models/bench/ort_bench.py"))
                .arg(&models_dir)
                .args([threads.to_string(), seconds.clone(), batches.clone(), model.to_string()]),
        )?);
    }
    println!();
    if cuda {
        println!("bench models: items per second on CUDA, synthetic inputs (see model_bench.rs)");
        println!("{:<40} {:>12}", "model/graph/batch[/bound]", "rust ort");
        for (key, r) in &rust {
            println!("{key:<40} {r:>12.1}");
        }
        println!("/bound: I/O binding (inputs copied to the device once, outputs left there)");
        return Ok(());
    }
    println!(
        "bench models: items per second on CPU, {threads} intra-op threads, synthetic inputs (see model_bench.rs)"
    );
    println!("{:<34} {:>6} {:>12} {:>12} {:>8}", "model/graph", "batch", "rust ort", "python ort", "ratio");
    let mut rows = vec![];
    for (key, &r) in &rust {
        let (graph, batch) = key.rsplit_once("/b").context("result key without a batch")?;
        let p = python.get(key).copied().with_context(|| format!("python reported no {key}"))?;
        rows.push((graph.to_string(), batch.parse::<usize>()?, r, p));
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut slower = vec![];
    for (graph, batch, r, p) in rows {
        println!("{graph:<34} {batch:>6} {r:>12.1} {p:>12.1} {:>8.2}", r / p);
        // Within 5% is timing noise on a shared 2-core machine, not a slower path.
        if r < p * 0.95 {
            slower.push(format!("{graph} b{batch}"));
        }
    }
    println!("ratio = Rust items/s over Python items/s (above 1: Rust faster)");
    if slower.is_empty() {
        println!("target: the Rust path is not slower: met");
    } else {
        println!("target: the Rust path is not slower: NOT met for {}", slower.join(", "));
    }
    Ok(())
}
