//! `cargo xtask bench store [--n N] [--dim D] [--seed S] [--index ivf_pq|ivf_hnsw_sq]
//! [--partitions P] [--sub-vectors M]`: N synthetic clustered unit vectors (default 1,000,000
//! x 384) written to a fresh LanceDB table under `<cache>/bench/store/`, compacted, a cosine
//! vector index built on them (the order `medley optimize` uses), and 200 held-out queries run
//! one at a time. Reports ingest rows per second, compaction and index build time, query
//! latency p50/p99 and recall@10 against exact nearest neighbours (brute force), with
//! LanceDB's flat search (`bypass_vector_index`) in the same run as the baseline, and the
//! issue's target: recall@10 at least 0.95 at p50 under 20 ms.
//! The work is done by `crates/medley-store/examples/store_bench.rs`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use super::results;
use crate::Ctx;

const TARGET_RECALL: f64 = 0.95;
const TARGET_P50_MS: f64 = 20.0;

fn opt(args: &[String], name: &str, default: &str) -> Result<String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).cloned().with_context(|| format!("{name} takes a value")),
        None => Ok(default.to_string()),
    }
}

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    const OPTS: &[&str] = &["--n", "--dim", "--seed", "--index", "--partitions", "--sub-vectors"];
    if let Some(a) = args.iter().step_by(2).find(|a| !OPTS.contains(&a.as_str())) {
        bail!("unknown option {a}; bench store takes {}", OPTS.join(", "));
    }
    let num = |name: &str, default: &str| -> Result<u64> {
        opt(args, name, default)?.parse().with_context(|| format!("{name} takes a number"))
    };
    let (n, dim, seed) = (num("--n", "1000000")?, num("--dim", "384")?, num("--seed", "1")?);
    let index = opt(args, "--index", "ivf_pq")?;
    // The whole workspace, as `build` does: building the example alone (`-p medley-store`)
    // resolves lancedb's features differently and recompiles it.
    ctx.build()?;
    let bin = ctx.target_dir().join("debug/examples/store_bench");
    let dir = ctx.home.join("bench/store");
    let mut cmd = Command::new(&bin);
    cmd.arg(&dir).args([n.to_string(), dim.to_string(), seed.to_string()]).args(["--index", &index]);
    for o in ["--partitions", "--sub-vectors"] {
        if args.iter().any(|a| a == o) {
            cmd.args([o, &opt(args, o, "")?]);
        }
    }
    let r = results(&mut cmd)?;
    let get = |k: &str| r.get(k).copied().with_context(|| format!("no {k} in the results"));

    let (p50, p99, recall, exact_p50) = (get("p50_ms")?, get("p99_ms")?, get("recall_at_10")?, get("exact_p50_ms")?);
    let search = match index.as_str() {
        "ivf_pq" => format!("nprobes {}, refine_factor {}", get("nprobes")?, get("refine_factor")?),
        _ => format!("nprobes {}, ef {}", get("nprobes")?, get("ef")?),
    };
    println!();
    println!("bench store: {n} x {dim} synthetic clustered unit vectors, seed {seed}, cosine distance");
    println!("{:<36} {:>14}", "ingest (rows/s, 100k-row adds)", format!("{:.0}", get("ingest_rows_per_s")?));
    println!("{:<36} {:>14}", "compaction (s)", format!("{:.1}", get("compact_s")?));
    println!("{:<36} {:>14}", format!("index build, {index} (s)"), format!("{:.1}", get("index_s")?));
    println!(
        "{:<36} {:>14}",
        "index parameters",
        format!("{} partitions, {} sub-vectors", get("partitions")?, get("sub_vectors")?)
    );
    println!("{:<36} {:>14}", "search setting (chosen by the sweep)", search);
    println!("{:<36} {:>14.2}", "ANN query p50 (ms)", p50);
    println!("{:<36} {:>14.2}", "ANN query p99 (ms)", p99);
    println!("{:<36} {:>14.4}", "recall@10 vs exact", recall);
    println!("{:<36} {:>14.2}", format!("exact (flat) query p50 (ms, {} q)", get("exact_queries")?), exact_p50);
    println!("{:<36} {:>14.1}", "ANN speedup vs flat (p50 ratio)", exact_p50 / p50);
    println!("{:<36} {:>14.4}", "flat search agrees with brute force", get("exact_agreement")?);
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!("target: recall@10 >= {TARGET_RECALL}: {} ({recall:.4})", verdict(recall >= TARGET_RECALL));
    println!("target: p50 < {TARGET_P50_MS} ms: {} ({p50:.2} ms)", verdict(p50 < TARGET_P50_MS));
    Ok(())
}
