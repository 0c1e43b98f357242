//! `cargo xtask bench <name>`: benchmarks that report ratios against a baseline measured in
//! the same run on the same machine. One module per benchmark.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::Ctx;

mod decode;
mod index;
mod memory;
mod models;
mod pipeline;
mod reference;
mod serve;
mod sid;
mod store;

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let rest = &args[args.len().min(1)..];
    match args.first().map(String::as_str).unwrap_or("index") {
        "index" => index::run(ctx),
        "decode" => decode::run(ctx, rest),
        "memory" => memory::run(ctx, rest),
        "models" => models::run(ctx, rest),
        "sid" => sid::run(ctx, rest),
        "store" => store::run(ctx, rest),
        "pipeline" => pipeline::run(ctx, rest),
        "reference" => reference::run(ctx, rest),
        "serve" => serve::run(ctx, rest),
        other => bail!(
            "unknown benchmark {other}; known: index, decode, memory, models, sid, store, pipeline, reference, serve"
        ),
    }
}

pub(super) fn opt(args: &[String], name: &str, default: u64) -> Result<u64> {
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

/// `medley index PATHS --db DB --json` with the cache's models, over a fresh database.
pub(super) fn medley_index<P: AsRef<std::ffi::OsStr>>(
    ctx: &Ctx,
    db: &std::path::Path,
    paths: impl IntoIterator<Item = P>,
) -> Command {
    let _ = std::fs::remove_dir_all(db);
    let mut c = Command::new(ctx.medley_bin());
    c.env("MEDLEY_HOME", &ctx.home).arg("index").args(paths).arg("--db").arg(db).arg("--json");
    c
}

/// Run a side of the benchmark; its stderr passes through, `result KEY VALUE` lines on stdout
/// are collected.
pub(super) fn results(cmd: &mut Command) -> Result<BTreeMap<String, f64>> {
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{:?} failed with {}", cmd.get_program(), out.status);
    }
    let mut r = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line.split_whitespace();
        if let (Some("result"), Some(k), Some(v)) = (it.next(), it.next(), it.next()) {
            r.insert(k.to_string(), v.parse::<f64>().with_context(|| format!("bad result line {line:?}"))?);
        }
    }
    Ok(r)
}

/// A scalar field of a JSON object printed by a medley tool (`"key": value`, string quotes
/// dropped): enough for the flat summaries the benchmarks read, without a JSON dependency.
pub(super) fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = json[start..].trim_start();
    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches('"'))
}
