//! `cargo xtask fuzz --seconds N [--runs N] [--seed N] [--target probe_decode]`: a fuzz target of
//! `crates/medley-media/fuzz` run by libFuzzer for a bounded time or number of inputs, seeded with the generated
//! fixtures and the small sample media. Fails when the fuzzer finds a crash, a leak, a timeout
//! or an out-of-memory input, and says where the input was written.
//!
//! Only a stable toolchain is needed: cargo-fuzz is installed into the cache
//! (`<home>/tools`) and its build runs with `RUSTC_BOOTSTRAP=1`, which lets stable rustc take
//! the `-Zsanitizer=address` flag cargo-fuzz passes. Everything it writes (target dir, corpus,
//! seeds, crashing inputs) lives under `<home>/fuzz`, not in the repo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::Ctx;

/// cargo-fuzz pinned, so a fresh machine builds the same fuzzer as the last one.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Largest input the fuzzer makes or loads: the fixtures are a few MB at most (larger sample
/// files are left out of the seeds rather than cut, which would only test truncation).
const MAX_LEN: u64 = 4_000_000;

/// Seconds one input may take before libFuzzer calls it a hang. The target gives `decode` a
/// 5 s budget; probing has none, and a loaded 2-core CI machine is slow.
const INPUT_TIMEOUT_S: u64 = 60;

pub fn run(ctx: &Ctx, args: &[String]) -> Result<()> {
    let mut seconds: Option<u64> = None;
    let mut target = "probe_decode".to_string();
    let mut seed: Option<u64> = None;
    let mut runs: Option<u64> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds takes a number of seconds")?;
                seconds = Some(v.parse().with_context(|| format!("--seconds takes a number of seconds, not {v:?}"))?);
            }
            "--target" => target = it.next().context("--target takes a fuzz target name")?.clone(),
            "--seed" => {
                let v = it.next().context("--seed takes a number")?;
                seed = Some(v.parse().with_context(|| format!("--seed takes a number, not {v:?}"))?);
            }
            "--runs" => {
                let v = it.next().context("--runs takes a number of inputs")?;
                runs = Some(v.parse().with_context(|| format!("--runs takes a number of inputs, not {v:?}"))?);
            }
            other => bail!("unknown option {other}; fuzz takes --seconds N, --runs N, --target NAME and --seed N"),
        }
    }
    let seconds = match (seconds, runs) {
        (Some(s), _) => s,
        // A cap all the same, for a machine far slower than expected.
        (None, Some(_)) => 1800,
        (None, None) => bail!("fuzz needs --seconds N (how long to fuzz) or --runs N (how many inputs)"),
    };
    fuzz(ctx, &target, seconds, runs, seed)
}

/// Build `target` and fuzz it for `seconds` (or `runs` inputs, whichever ends first). With a
/// `seed`, the run is repeatable (CI): the fuzzer's random seed is fixed and it starts from the
/// seeds alone, in a corpus folder of its own emptied first, rather than from what earlier runs
/// found. With `runs` as well, a faster machine does not try more inputs than a slower one
/// (which inputs still varies a little: coverage feedback depends on timing).
pub fn fuzz(ctx: &Ctx, target: &str, seconds: u64, runs: Option<u64>, seed: Option<u64>) -> Result<()> {
    let fuzz_dir = ctx.root.join("crates/medley-media/fuzz");
    let targets = fuzz_targets(&fuzz_dir)?;
    if !targets.iter().any(|t| t == target) {
        bail!(
            "no fuzz target {target} in {}; there are: {}",
            fuzz_dir.join("fuzz_targets").display(),
            targets.join(", ")
        );
    }
    let t = Instant::now();
    // FFmpeg's headers and libraries (the build) and the ffmpeg CLI (the fixtures).
    ctx.apt()?;
    let fixtures = ctx.fixtures()?;
    let media = ctx.home.join("media");
    let cargo_fuzz = install_cargo_fuzz(ctx)?;

    let work = ctx.home.join("fuzz");
    let target_dir = work.join("target");
    let triple = host_triple()?;
    // cargo-fuzz's defaults (release with debug info, AddressSanitizer, coverage
    // instrumentation); `--target` keeps its RUSTFLAGS away from build scripts.
    crate::run(
        Command::new(&cargo_fuzz)
            .args(["fuzz", "build", "--target"])
            .arg(&triple)
            .arg("--target-dir")
            .arg(&target_dir)
            .arg(target)
            .current_dir(fuzz_dir.parent().context("the fuzz dir is inside medley-media")?)
            .env("RUSTC_BOOTSTRAP", "1")
            // Not the workspace's lint wrapper or linker settings: this is its own workspace,
            // built with cargo-fuzz's flags.
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CLIPPY_ARGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS"),
    )?;
    let bin = target_dir.join(&triple).join("release").join(target);
    let built = t.elapsed().as_secs_f64();

    let seeds = work.join("seeds").join(target);
    let n_seeds = write_seeds(&seeds, &[fixtures, media])?;
    // New inputs the fuzzer finds go to the first directory, kept between runs; the seeds are
    // only read.
    let corpus = match seed {
        Some(n) => {
            let dir = work.join(format!("corpus-seed-{n}")).join(target);
            let _ = std::fs::remove_dir_all(&dir);
            dir
        }
        None => work.join("corpus").join(target),
    };
    let artifacts = work.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    eprintln!(
        "fuzz: {target} for {seconds} s ({n_seeds} seeds in {}, corpus {}; build ready after {built:.0} s)",
        seeds.display(),
        corpus.display()
    );
    let started = SystemTime::now();
    let mut fuzzer = Command::new(&bin);
    if let Some(n) = seed {
        fuzzer.arg(format!("-seed={n}"));
    }
    if let Some(n) = runs {
        fuzzer.arg(format!("-runs={n}"));
    }
    let mut child = fuzzer
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg("-rss_limit_mb=4096")
        .arg("-print_final_stats=1")
        // A trailing separator: libFuzzer prepends this to the file name.
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus)
        .arg(&seeds)
        // Inputs that once failed, kept in the repo: replayed first by every run.
        .arg(fuzz_dir.join("regressions"))
        // As cargo-fuzz runs it: ASan's one-definition-rule check misfires on Rust binaries.
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    // libFuzzer checks -max_total_time only after it has run every corpus input once, and the
    // corpus grows from run to run: past the deadline (with room for one slow input) it is
    // interrupted, which ends it like the time limit does.
    let deadline = Duration::from_secs(seconds + INPUT_TIMEOUT_S + 10);
    let clock = Instant::now();
    let mut interrupted = false;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the fuzzer")? {
            break status;
        }
        if !interrupted && clock.elapsed() > deadline {
            eprintln!(
                "fuzz: {target} still running {} s past --seconds: interrupting it",
                deadline.as_secs() - seconds
            );
            let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
            interrupted = true;
        } else if clock.elapsed() > deadline + Duration::from_secs(30) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let found: Vec<PathBuf> = std::fs::read_dir(&artifacts)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.metadata().and_then(|m| m.modified()).is_ok_and(|m| m >= started))
        .collect();
    if status.success() || (interrupted && found.is_empty()) {
        eprintln!("fuzz: {target}: no failure in {:.0} s", clock.elapsed().as_secs_f64());
        return Ok(());
    }
    for input in &found {
        eprintln!("fuzz: failing input: {}", input.display());
        eprintln!("      reproduce: ASAN_OPTIONS=detect_odr_violation=0 {} {}", bin.display(), input.display());
    }
    if found.is_empty() {
        bail!("fuzz target {target} exited with {status} and wrote no input to {}", artifacts.display());
    }
    bail!("fuzz target {target} failed ({status}): {} failing input(s) under {}", found.len(), artifacts.display())
}

/// Targets are the files in `fuzz_targets/`, as cargo-fuzz names them.
fn fuzz_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// cargo-fuzz under `<home>/tools`, installed from crates.io when missing or another version.
fn install_cargo_fuzz(ctx: &Ctx) -> Result<PathBuf> {
    let root = ctx.home.join("tools");
    let bin = root.join("bin/cargo-fuzz");
    let version = Command::new(&bin).arg("--version").output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)) {
        return Ok(bin);
    }
    eprintln!("fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {}", root.display());
    crate::run(
        crate::plain_cargo()
            .args(["install", "--locked", "--force", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--root"])
            .arg(&root)
            // Its own temporary target dir, not the workspace's.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTC_WORKSPACE_WRAPPER"),
    )?;
    Ok(bin)
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output().context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV printed no host line")
}

/// One seed per file under `sources` up to `MAX_LEN` bytes (recursively), written as the
/// probe_decode target reads its input: one selector byte (sampler, audio on or off), then
/// the file. The selector comes from the file's name, so it stays the same from run to run
/// while spreading the files over all eight choices. Existing seeds are kept. Returns how many
/// there are.
fn write_seeds(dir: &Path, sources: &[PathBuf]) -> Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    for s in sources {
        collect_files(s, &mut files)?;
    }
    for (file, len) in files {
        if len == 0 || len >= MAX_LEN {
            continue;
        }
        // `matrix/rot90.mp4` -> `matrix_rot90.mp4`: fixtures in different folders share names.
        let parent = file.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
        let name = format!("{parent}_{}", file.file_name().and_then(|n| n.to_str()).unwrap_or("input"));
        let dest = dir.join(&name);
        if dest.exists() {
            continue;
        }
        let selector = crate::fnv(name.as_bytes()).to_le_bytes()[0] % 8;
        let mut bytes = vec![selector];
        bytes.extend(std::fs::read(&file).with_context(|| format!("reading seed {}", file.display()))?);
        std::fs::write(&dest, bytes).with_context(|| format!("writing seed {}", dest.display()))?;
    }
    Ok(std::fs::read_dir(dir)?.count())
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries {
        let e = e?;
        let p = e.path();
        let meta = e.metadata()?;
        // Skip the fixture script's temporary files.
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if meta.is_dir() {
            collect_files(&p, out)?;
        } else if meta.is_file() {
            out.push((p, meta.len()));
        }
    }
    Ok(())
}
