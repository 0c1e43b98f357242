//! The Rust side of `cargo xtask bench models`: items per second of each model graph at given
//! batch sizes, on synthetic inputs shaped by the graph's entry in `model.toml`.
//!
//! `model_bench [--device cpu|cuda] [--batches 1,8,32] [--seconds S] [--bound] [MODEL...]`
//! prints `result MODEL/GRAPH/bB ITEMS_PER_S` lines; `--bound` adds `MODEL/GRAPH/bB/bound`
//! lines timed with I/O binding (inputs copied to the device once, outputs left there).
//!
//! Shape rules, shared with `bench/ort_bench.py`: `batch` = B, `seq` = 32 tokens, `tokens` =
//! 32 B (ragged text), `batch_plus_one` = B + 1 (row splits 0, 32, 64, ...). Floats are a
//! fixed sequence in [-1, 1), integer ids are 1. Graphs with `past` inputs (decoder steps)
//! are left out: one call of them is not an item.

use std::time::{Duration, Instant};

use medley_models::{Array, Device, Graph, ModelHome, ModelSpec, Runtime, TensorSpec};

const SEQ: usize = 32;

fn dim(value: &toml::Value, batch: usize) -> Option<usize> {
    match value {
        toml::Value::Integer(n) => Some(*n as usize),
        toml::Value::String(s) => match s.as_str() {
            "batch" => Some(batch),
            "seq" => Some(SEQ),
            "tokens" => Some(SEQ * batch),
            "batch_plus_one" => Some(batch + 1),
            _ => None,
        },
        _ => None,
    }
}

/// Synthetic input for one tensor, or None when a dimension has no rule (a decoder's `past`).
fn synthetic(spec: &TensorSpec, batch: usize) -> Option<Array> {
    let shape: Vec<usize> = spec.shape.iter().map(|d| dim(d, batch)).collect::<Option<_>>()?;
    let n: usize = shape.iter().product();
    let row_splits = spec.shape.len() == 1 && spec.shape[0].as_str() == Some("batch_plus_one");
    let ints = |i: usize| if row_splits { (i * SEQ) as i64 } else { 1 };
    Some(match spec.dtype.as_str() {
        "int64" => Array::I64(shape, (0..n).map(ints).collect()),
        "int32" => Array::I32(shape, (0..n).map(|i| ints(i) as i32).collect()),
        _ => Array::F32(shape, (0..n).map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0).collect()),
    })
}

/// Runs until `budget` has passed (at least 3 runs, or 2 when one run outlasts the budget),
/// after one warm-up run; returns items per second.
fn time(batch: usize, budget: Duration, mut run: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    run()?;
    let start = Instant::now();
    let mut runs = 0usize;
    loop {
        run()?;
        runs += 1;
        let elapsed = start.elapsed();
        if (runs >= 3 && elapsed >= budget) || (runs >= 2 && elapsed >= 2 * budget) {
            return Ok((runs * batch) as f64 / elapsed.as_secs_f64());
        }
    }
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut device, mut batches, mut seconds, mut bound, mut models) =
        (Device::Cpu, vec![1, 8, 32], 2.0, false, vec![]);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--device" => device = value()?.parse()?,
            "--batches" => {
                batches =
                    value()?.split(',').map(|b| b.parse().map_err(|_| "bad --batches")).collect::<Result<_, _>>()?
            }
            "--seconds" => seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--bound" => bound = true,
            m if !m.starts_with("--") => models.push(m.to_string()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let home = ModelHome::from_env();
    if models.is_empty() {
        let dir = std::fs::read_dir(home.root().join("models")).map_err(|e| e.to_string())?;
        models = dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        models.sort();
    }
    let rt = Runtime::with_device(&home, device).map_err(|e| e.to_string())?;
    eprintln!("model_bench: device {}, {} intra-op threads", rt.device(), rt.threads());
    let budget = Duration::from_secs_f64(seconds);
    for id in &models {
        let spec = ModelSpec::load(&home, id).map_err(|e| e.to_string())?;
        let dir = home.model_dir(id).map_err(|e| e.to_string())?;
        for g in &spec.graphs {
            if g.inputs.iter().any(|t| synthetic(t, 1).is_none()) {
                continue;
            }
            let graph = Graph::open(&rt, id, &dir.join(&g.file)).map_err(|e| e.to_string())?;
            let stem = g.file.trim_end_matches(".onnx");
            for &b in &batches {
                let arrays: Vec<Array> = g.inputs.iter().map(|t| synthetic(t, b).expect("checked above")).collect();
                let inputs: Vec<(&str, &Array)> = g.inputs.iter().map(|t| t.name.as_str()).zip(&arrays).collect();
                let rate = time(b, budget, || graph.run(&inputs, &[]).map(drop).map_err(|e| e.to_string()))?;
                println!("result {id}/{stem}/b{b} {rate:.2}");
                if bound {
                    let mut bound = graph.bind(&inputs).map_err(|e| e.to_string())?;
                    let rate = time(b, budget, || bound.run().map_err(|e| e.to_string()))?;
                    println!("result {id}/{stem}/b{b}/bound {rate:.2}");
                }
            }
        }
    }
    Ok(())
}
