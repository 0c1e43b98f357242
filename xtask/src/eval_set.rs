//! The labelled evaluation set (`<home>/eval-set/`, built by `cargo xtask media`) and `cargo
//! xtask eval`, which indexes it under pipeline variants and prints recall@1/5/10 and the
//! median rank of each, on all queries and on each kind of item.
//!
//! The set is rebuilt from a registry package by `fixtures/eval_set.py`: Debian's
//! `gcompris-qt-data` (pictures, animal and instrument sounds, sound effects, music, with
//! human-written names and descriptions), each item with a caption query. It lives outside
//! `<home>/media/` so the decoder fuzzer (which seeds from every file there) is unchanged.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{Ctx, fnv, is_root, run};

const DEB_PACKAGE: &str = "gcompris-qt-data";
/// Debian 12's version: pinned so every machine builds the same set.
const DEB_VERSION: &str = "3.1-2";

/// One pipeline variant: `pipelines/video-default.toml` with these keys set (table, key, TOML
/// value). Every variant sets every key the others change, so each differs from `today` only
/// in what its name says.
pub struct Variant {
    pub name: &'static str,
    pub about: &'static str,
    pub set: &'static [(&'static str, &'static str, &'static str)],
}

/// The variants, in the order the table shows them: today's pipeline, each addition alone on
/// top of it, and everything together. Edit here to change what is compared.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "today",
        about: "label names only; no sound events, no OCR",
        set: &[
            ("text_space", "label_text", "\"name\""),
            ("text_space", "sound", "0.0"),
            ("text_space", "ocr", "0.0"),
            ("stages", "sound_events", "false"),
            ("stages", "ocr", "false"),
        ],
    },
    Variant {
        name: "+label_text",
        about: "labels embedded by their meaning (names and WordNet definition); pictures' bridge calibrated",
        set: &[
            ("text_space", "label_text", "\"meaning\""),
            ("text_space", "colour", "0.0"),
            ("text_space", "sound", "0.0"),
            ("text_space", "ocr", "0.0"),
            ("stages", "sound_events", "false"),
            ("stages", "ocr", "false"),
        ],
    },
    Variant {
        name: "+colours",
        about: "+label_text, and the colours seen named in the visual bridge",
        set: &[
            ("text_space", "label_text", "\"meaning\""),
            ("text_space", "colour", "0.2"),
            ("text_space", "sound", "0.0"),
            ("text_space", "ocr", "0.0"),
            ("stages", "sound_events", "false"),
            ("stages", "ocr", "false"),
        ],
    },
    Variant {
        name: "+sound_events",
        about: "YAMNet sound events in the text space",
        set: &[
            ("text_space", "label_text", "\"name\""),
            ("text_space", "sound", "1.0"),
            ("text_space", "ocr", "0.0"),
            ("stages", "sound_events", "true"),
            ("models", "sound_events", "\"yamnet\""),
            ("stages", "ocr", "false"),
        ],
    },
    Variant {
        name: "+ocr",
        about: "PP-OCRv4 on-screen text in the text space",
        set: &[
            ("text_space", "label_text", "\"name\""),
            ("text_space", "sound", "0.0"),
            ("text_space", "ocr", "1.0"),
            ("stages", "sound_events", "false"),
            ("stages", "ocr", "true"),
            ("models", "ocr", "\"pp-ocrv4\""),
        ],
    },
    Variant {
        name: "+shots",
        about: "frames sampled per TransNetV2 shot instead of at 1 fps",
        set: &[
            ("text_space", "label_text", "\"name\""),
            ("text_space", "sound", "0.0"),
            ("text_space", "ocr", "0.0"),
            ("stages", "sound_events", "false"),
            ("stages", "ocr", "false"),
            ("sampler", "video", "\"shots\""),
            ("models", "shots", "\"transnetv2\""),
        ],
    },
    Variant {
        name: "new",
        about: "all of the above",
        set: &[
            ("text_space", "label_text", "\"meaning\""),
            ("text_space", "colour", "0.2"),
            ("text_space", "sound", "1.0"),
            ("text_space", "ocr", "1.0"),
            ("stages", "sound_events", "true"),
            ("models", "sound_events", "\"yamnet\""),
            ("stages", "ocr", "true"),
            ("models", "ocr", "\"pp-ocrv4\""),
            ("sampler", "video", "\"shots\""),
            ("models", "shots", "\"transnetv2\""),
        ],
    },
];

/// What `--floor` runs (CI): only the variant the floor applies to. Indexing the set takes
/// minutes per variant on two cores, so the baseline and the single additions are left to a
/// plain `cargo xtask eval` (which prints them side by side).
const FLOOR_VARIANTS: &[&str] = &["new"];

/// `--floor` fails when this variant's recall@5 over all queries is below `FLOOR_RECALL_AT_5`.
const FLOOR_VARIANT: &str = "new";
/// Below what `new` measured (0.466 over 292 queries on 2026-11-30 with the calibrated bridges
/// and colours, `today` 0.229): a loss of about 25 queries found in the top 5 trips it (OCR
/// finding nothing loses 22, the bridges as they were before calibration and colours 23,
/// falling back to today's pipeline 64), tie-breaks and small model updates do not.
const FLOOR_RECALL_AT_5: f64 = 0.38;

/// The query files the set holds: all items, then one kind each.
const QUERY_SETS: &[(&str, &str)] = &[
    ("all", "queries.tsv"),
    ("images", "queries-images.tsv"),
    ("sounds", "queries-sounds.tsv"),
    ("videos", "queries-videos.tsv"),
    ("text", "queries-text.tsv"),
];

impl Ctx {
    /// The evaluation set, built from the Debian package unless it is already there for the
    /// current builder script.
    pub fn eval_set(&self) -> Result<PathBuf> {
        let dest = self.home.join("eval-set");
        let script = self.root.join("fixtures/eval_set.py");
        let code = std::fs::read(&script).with_context(|| format!("reading {}", script.display()))?;
        let stamp = format!("{:x} {DEB_PACKAGE}_{DEB_VERSION}", fnv(&code));
        let stamp_file = dest.join(".medley-eval-set");
        if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
            return Ok(dest);
        }
        let deb = self.eval_deb()?;
        let python = self.runtime_venv()?.join("bin/python");
        let t = Instant::now();
        // Built under a temporary name and renamed when complete: an interrupted build is
        // never taken for the set. The name is this process's own, so two commands building
        // at once (`test` and `eval` from two shells) do not write into one folder.
        let tmp = self.home.join(format!(".eval-set.partial-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        run(Command::new(python).arg(&script).arg(&deb).arg(&tmp))?;
        std::fs::write(tmp.join(".medley-eval-set"), &stamp)?;
        if dest.exists() {
            std::fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
        }
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            // Another command finished the same build first: keep its copy.
            let _ = std::fs::remove_dir_all(&tmp);
            if std::fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp.as_str()) {
                return Err(e).with_context(|| format!("moving {} to {}", tmp.display(), dest.display()));
            }
        }
        eprintln!("media: evaluation set built in {:.0} s ({})", t.elapsed().as_secs_f64(), dest.display());
        Ok(dest)
    }

    /// The package's .deb in `<home>/downloads`, fetched with `apt-get download` (no root
    /// needed; the package lists are updated first only when the download fails).
    fn eval_deb(&self) -> Result<PathBuf> {
        let downloads = self.home.join("downloads");
        let name = format!("{DEB_PACKAGE}_{DEB_VERSION}_all.deb");
        let deb = downloads.join(&name);
        if deb.exists() {
            return Ok(deb);
        }
        // apt-get writes into the current directory: a folder of its own, so a broken download
        // never sits where a finished one is looked for.
        let partial = downloads.join(".apt-download");
        std::fs::create_dir_all(&partial)?;
        let spec = format!("{DEB_PACKAGE}={DEB_VERSION}");
        let download = || Command::new("apt-get").args(["download", "-q", &spec]).current_dir(&partial).status();
        if !download().is_ok_and(|s| s.success()) {
            eprintln!("media: apt-get download {spec} failed; updating the package lists and retrying");
            let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
            let mut cmd: Vec<&str> = sudo.to_vec();
            cmd.extend(["apt-get", "update", "-qq"]);
            run(Command::new(cmd[0]).args(&cmd[1..]))?;
            let status = download().context("starting apt-get")?;
            if !status.success() {
                bail!("apt-get download {spec} failed with {status} (the evaluation set is built from it)");
            }
        }
        std::fs::rename(partial.join(&name), &deb)
            .with_context(|| format!("apt-get download {spec} left no {name} in {}", partial.display()))?;
        let _ = std::fs::remove_dir_all(&partial);
        Ok(deb)
    }
}

/// One `medley eval` result.
#[derive(Clone, Copy)]
struct Scores {
    n: f64,
    r1: f64,
    r5: f64,
    r10: f64,
    median: f64,
}

/// `cargo xtask eval [--floor] [--variants a,b] [--no-setup] [--reuse]`: `--no-setup` only
/// builds (setup not run), `--reuse` keeps a variant's database from a finished run with the
/// same pipeline file (to re-run the queries), `MEDLEY_EVAL_FLOOR` overrides the floor.
pub fn run_eval(ctx: &Ctx, args: &[String]) -> Result<()> {
    let floor = args.iter().any(|a| a == "--floor");
    let no_setup = args.iter().any(|a| a == "--no-setup");
    let reuse = args.iter().any(|a| a == "--reuse");
    let chosen: Vec<String> = match args.iter().position(|a| a == "--variants") {
        Some(i) => {
            args.get(i + 1).context("--variants needs a comma-separated list")?.split(',').map(str::to_string).collect()
        }
        None if floor => FLOOR_VARIANTS.iter().map(|s| s.to_string()).collect(),
        None => VARIANTS.iter().map(|v| v.name.to_string()).collect(),
    };
    if let Some(unknown) = chosen.iter().find(|c| !VARIANTS.iter().any(|v| v.name == c.as_str())) {
        let names: Vec<_> = VARIANTS.iter().map(|v| v.name).collect();
        bail!("no variant {unknown} (variants: {})", names.join(", "));
    }
    if floor && !chosen.iter().any(|c| c == FLOOR_VARIANT) {
        bail!("--floor checks the {FLOOR_VARIANT} variant; include it in --variants");
    }
    let t = Instant::now();
    if no_setup {
        ctx.build()?;
    } else {
        ctx.setup_and_build()?.join()?;
    }
    let set = ctx.eval_set()?;
    let base: toml::Table = {
        let p = ctx.root.join("pipelines/video-default.toml");
        std::fs::read_to_string(&p)?.parse().with_context(|| format!("parsing {}", p.display()))?
    };
    let dbs = ctx.home.join("eval-dbs");
    let bin = ctx.medley_bin();
    let floor_value = match std::env::var("MEDLEY_EVAL_FLOOR") {
        Ok(v) => v.parse::<f64>().with_context(|| format!("MEDLEY_EVAL_FLOOR={v} is not a number"))?,
        Err(_) => FLOOR_RECALL_AT_5,
    };
    let items = std::fs::read_to_string(set.join("queries.tsv"))?.lines().skip(1).filter(|l| !l.is_empty()).count();
    eprintln!("eval: {items} items in {}, variants {}", set.display(), chosen.join(", "));

    let mut results: Vec<(&Variant, Option<Vec<Scores>>, String)> = Vec::new();
    for variant in VARIANTS.iter().filter(|v| chosen.iter().any(|c| c == v.name)) {
        let dir = dbs.join(variant.name);
        let db = dir.join("media.lance");
        let started = Instant::now();
        let note = match index_variant(ctx, &set, &dir, &variant_toml(&base, variant)?, reuse)? {
            Indexed::Reused(summary) => {
                eprintln!("eval: {}: database reused ({})", variant.name, summary.trim());
                "index reused".to_string()
            }
            Indexed::Done(summary) => {
                let s = started.elapsed().as_secs_f64();
                eprintln!("eval: {}: indexed in {s:.0} s: {}", variant.name, summary.trim());
                format!("index {s:.0} s")
            }
            Indexed::Failed(why) => {
                eprintln!("eval: {}: {why}", variant.name);
                results.push((variant, None, why));
                continue;
            }
        };
        let started = Instant::now();
        let mut scores = Vec::new();
        for (_, file) in QUERY_SETS {
            scores.push(eval_once(&bin, ctx, &db, &set.join(file))?);
        }
        let note = format!("{note}, eval {:.0} s", started.elapsed().as_secs_f64());
        results.push((variant, Some(scores), note));
    }

    print_table(&results, items);
    eprintln!("eval: done in {:.0} s (databases and logs in {})", t.elapsed().as_secs_f64(), dbs.display());

    if floor {
        let measured =
            results.iter().find(|(v, _, _)| v.name == FLOOR_VARIANT).and_then(|(_, s, _)| s.as_ref()).map(|s| s[0].r5);
        match measured {
            None => bail!("eval --floor: the {FLOOR_VARIANT} variant did not run (see above)"),
            Some(r5) if r5 < floor_value => bail!(
                "eval --floor: {FLOOR_VARIANT} recall@5 over all {items} queries is {r5:.3}, below the floor \
                 {floor_value:.3} (FLOOR_RECALL_AT_5 in xtask/src/eval_set.rs): text search got worse"
            ),
            Some(r5) => eprintln!("eval: {FLOOR_VARIANT} recall@5 {r5:.3} >= floor {floor_value:.3}"),
        }
    }
    Ok(())
}

enum Indexed {
    Reused(String),
    Done(String),
    /// `medley index` refused or stopped (an unknown pipeline key, a missing model): why.
    Failed(String),
}

/// Index the set into `<dir>/media.lance` with the pipeline `toml` (written to
/// `<dir>/pipeline.toml`, the run's output to `<dir>/index.log`), into a fresh database unless
/// `reuse` and the last run with the same pipeline finished.
fn index_variant(ctx: &Ctx, set: &Path, dir: &Path, toml: &str, reuse: bool) -> Result<Indexed> {
    let (pipeline, db, log, done) =
        (dir.join("pipeline.toml"), dir.join("media.lance"), dir.join("index.log"), dir.join("index.done"));
    if reuse
        && std::fs::read_to_string(&pipeline).ok().as_deref() == Some(toml)
        && let Ok(summary) = std::fs::read_to_string(&done)
    {
        return Ok(Indexed::Reused(summary));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(&pipeline, toml)?;
    let log_file = std::fs::File::create(&log)?;
    let bin = ctx.medley_bin();
    let status = Command::new(&bin)
        .arg("index")
        // The media folders, not the set's own files (queries, manifest, licences).
        .args(["images", "sounds", "videos", "text"].map(|sub| set.join(sub)))
        .arg("--db")
        .arg(&db)
        .arg("--pipeline")
        .arg(&pipeline)
        .env("MEDLEY_HOME", &ctx.home)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    // 0: all indexed; 1: finished with some files failed (their targets then rank last).
    if !matches!(status.code(), Some(0 | 1)) {
        return Ok(Indexed::Failed(format!("medley index exited with {status}: {last} (log {})", log.display())));
    }
    std::fs::write(&done, &last)?;
    Ok(Indexed::Done(last))
}

/// `base` with the variant's keys set, as TOML text.
fn variant_toml(base: &toml::Table, variant: &Variant) -> Result<String> {
    let mut t = base.clone();
    if let Some(p) = t.get_mut("pipeline").and_then(|p| p.as_table_mut()) {
        p.insert("name".into(), toml::Value::String(format!("eval-{}", variant.name.trim_start_matches('+'))));
    }
    for (table, key, value) in variant.set {
        let parsed: toml::Table = format!("v = {value}")
            .parse()
            .with_context(|| format!("variant {}: {table}.{key} = {value}", variant.name))?;
        let entry = t.entry(table.to_string()).or_insert(toml::Value::Table(toml::Table::new()));
        let tbl = entry.as_table_mut().with_context(|| format!("{table} is not a table in video-default.toml"))?;
        tbl.insert(key.to_string(), parsed["v"].clone());
    }
    Ok(format!(
        "# Written by `cargo xtask eval`: pipelines/video-default.toml, variant {}: {}\n{t}",
        variant.name, variant.about
    ))
}

fn eval_once(bin: &Path, ctx: &Ctx, db: &Path, queries: &Path) -> Result<Scores> {
    let out = Command::new(bin)
        .arg("eval")
        .arg("--db")
        .arg(db)
        .arg("--queries")
        .arg(queries)
        .arg("--json")
        .env("MEDLEY_HOME", &ctx.home)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "medley eval --queries {} failed with {}: {}",
            queries.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let field = |k: &str| json_number(&text, k).with_context(|| format!("medley eval --json printed no {k}: {text}"));
    Ok(Scores {
        n: field("n")?,
        r1: field("recall_at_1")?,
        r5: field("recall_at_5")?,
        r10: field("recall_at_10")?,
        median: field("median_rank")?,
    })
}

/// The number after `"key":` in a flat JSON object (what `medley eval --json` prints); xtask
/// has no JSON parser of its own, and a new dependency would change the shared lock file.
fn json_number(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let end =
        rest.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn print_table(results: &[(&Variant, Option<Vec<Scores>>, String)], items: usize) {
    println!(
        "\nmedley eval on the labelled set ({items} items; recall@k and median rank of the target among all items)"
    );
    println!(
        "{:<14} {:<7} {:>4} {:>6} {:>6} {:>6} {:>7} {:>8}",
        "variant", "queries", "n", "R@1", "R@5", "R@10", "median", "ΔR@5"
    );
    let today = results.iter().find(|(v, _, _)| v.name == "today").and_then(|(_, s, _)| s.clone());
    for (variant, scores, note) in results {
        let Some(scores) = scores else {
            println!("{:<14} {note}", variant.name);
            continue;
        };
        for (i, ((set, _), s)) in QUERY_SETS.iter().zip(scores).enumerate() {
            let delta = match &today {
                Some(t) if variant.name != "today" => format!("{:+.3}", s.r5 - t[i].r5),
                _ => String::new(),
            };
            let name = if i == 0 { variant.name } else { "" };
            println!(
                "{name:<14} {set:<7} {:>4.0} {:>6.3} {:>6.3} {:>6.3} {:>7.1} {delta:>8}",
                s.n, s.r1, s.r5, s.r10, s.median
            );
        }
    }
    println!();
    for (variant, _, note) in results {
        println!("  {:<14} {} ({note})", variant.name, variant.about);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_are_read_by_key() {
        let j = "{\n  \"n\": 292,\n  \"recall_at_1\": 0.25,\n  \"recall_at_10\": 1e-1,\n  \"median_rank\": 12.5\n}";
        assert_eq!(json_number(j, "n"), Some(292.0));
        assert_eq!(json_number(j, "recall_at_1"), Some(0.25));
        assert_eq!(json_number(j, "recall_at_10"), Some(0.1));
        assert_eq!(json_number(j, "median_rank"), Some(12.5));
        assert_eq!(json_number(j, "recall_at_5"), None);
    }

    #[test]
    fn variants_set_keys_in_the_default_pipeline() {
        let base: toml::Table = "[pipeline]\nname = \"video-default\"\n[stages]\nvision = true\n".parse().unwrap();
        let new = VARIANTS.iter().find(|v| v.name == "new").unwrap();
        let t: toml::Table = variant_toml(&base, new).unwrap().parse().unwrap();
        assert_eq!(t["pipeline"]["name"].as_str(), Some("eval-new"));
        assert_eq!(t["stages"]["vision"].as_bool(), Some(true));
        assert_eq!(t["stages"]["ocr"].as_bool(), Some(true));
        assert_eq!(t["text_space"]["label_text"].as_str(), Some("meaning"));
        assert_eq!(t["text_space"]["sound"].as_float(), Some(1.0));
        // Each single addition differs from today in its own keys only.
        let today = VARIANTS.iter().find(|v| v.name == "today").unwrap();
        for v in VARIANTS.iter().filter(|v| v.name.starts_with('+')) {
            let differs: Vec<_> = v.set.iter().filter(|kv| !today.set.contains(kv)).collect();
            assert!(!differs.is_empty() && differs.len() <= 3, "{}: {differs:?}", v.name);
        }
    }
}
