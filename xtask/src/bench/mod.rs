//! `cargo xtask bench <name>`: benchmarks that report ratios against a baseline measured in
//! the same run on the same machine. One module per benchmark.

use anyhow::{Result, bail};

use crate::Ctx;

mod decode;
mod index;
mod pipeline;
mod sid;
mod store;

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let rest = &args[args.len().min(1)..];
    match args.first().map(String::as_str).unwrap_or("index") {
        "index" => index::run(ctx),
        "decode" => decode::run(ctx, rest),
        "sid" => sid::run(ctx, rest),
        "store" => store::run(ctx, rest),
        "pipeline" => pipeline::run(ctx, rest),
        other => bail!("unknown benchmark {other}; known: index, decode, sid, store, pipeline"),
    }
}
