//! `cargo xtask bench serve [--rows N] [--secs S] [--clients 1,10,50] [--only gen,small,mixed]
//! [--json]`: the query path of `medley serve` under load. The real server on loopback over a
//! generated table (N rows, default 100,000, with vector and full-text indexes) and a small
//! real one, driven by a Rust load generator at each client count for S seconds (default 10),
//! next to the same searches made directly through the store in the same run; then a mixed
//! run, searches while real uploads are indexed. Reports requests per second, p50/p99 latency
//! and errors against the targets. The work is done by
//! `crates/medley-serve/examples/serve_bench.rs`; the tables are kept under
//! `<cache>/bench/serve/` between runs.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Ctx;

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    const OPTS: &[&str] = &["--rows", "--secs", "--clients", "--only"];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--json" {
            continue;
        }
        if !OPTS.contains(&a.as_str()) {
            bail!("unknown option {a}; bench serve takes {} and --json", OPTS.join(", "));
        }
        it.next().with_context(|| format!("{a} takes a value"))?;
    }
    // The whole workspace, as `bench store` does: building the example alone resolves
    // lancedb's features differently and recompiles it.
    ctx.build()?;
    let media = ctx.media()?;
    let bin = ctx.target_dir().join("debug/examples/serve_bench");
    let status = Command::new(&bin)
        .arg("--medley")
        .arg(ctx.medley_bin())
        .arg("--dir")
        .arg(ctx.home.join("bench/serve"))
        .arg("--media")
        .arg(&media)
        .arg("--fixtures")
        .arg(ctx.home.join("fixtures"))
        .args(args)
        .env("MEDLEY_HOME", &ctx.home)
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !status.success() {
        bail!("{} failed with {status}", bin.display());
    }
    Ok(())
}
