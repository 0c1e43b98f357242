//! The `medley` binary against databases it did not write as it reads them (a table rewritten
//! by another tool, here pyarrow and Python's `lancedb`): exit 2 and a message naming the
//! table and column, never a panic. Every table exported to Parquet and read back by pyarrow
//! equals the table as Python's `lancedb` reads it. Relative `--db` paths of any name work.
//!
//! Run through `cargo xtask test` (MEDLEY_TEST_FIXTURES, MEDLEY_TEST_PYTHON, the models).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{env_path, medley, stdout_json};

mod common;

/// A small real database: three fixtures indexed with the default pipeline (the slideshow
/// gives segments), and a copy with Semantic IDs trained.
struct Base {
    dir: tempfile::TempDir,
    db: PathBuf,
    trained: PathBuf,
}

const FIXTURES: [&str; 3] = ["slideshow.mp4", "cat_upright.mp4", "bbb_audio.m4a"];

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input");
        std::fs::create_dir(&input).unwrap();
        for name in FIXTURES {
            std::fs::copy(env_path("MEDLEY_TEST_FIXTURES").join(name), input.join(name)).unwrap();
        }
        // A relative `--db` named `db`: lancedb alone takes it for LanceDB Cloud.
        let out = medley().current_dir(dir.path()).args(["index", "input", "--db", "db"]).output().unwrap();
        assert_success(&out);
        let (db, trained) = (dir.path().join("db"), dir.path().join("trained"));
        copy_dir(&db, &trained);
        let out = medley().args(["sid", "train", "--levels", "1", "--codes", "2", "--db"]).arg(&trained).output();
        assert_success(&out.unwrap());
        Base { dir, db, trained }
    })
}

#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    assert!(Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap().success());
}

/// Rewrites one column of one table per database as another tool would (pyarrow, Python's
/// `lancedb`), for each `DB TABLE OP COLUMN` in its arguments: `drop` the column, make it
/// `int64`, `null-first` (a null in the first row), or set the table's `version` metadata to
/// COLUMN. One process for all (importing lancedb takes seconds).
const REWRITE: &str = r#"
import sys, lancedb, pyarrow as pa
args = sys.argv[1:]
for db, table, op, column in zip(args[0::4], args[1::4], args[2::4], args[3::4]):
    conn = lancedb.connect(db)
    t = conn.open_table(table).to_arrow()
    meta = dict(t.schema.metadata or {})
    i = t.schema.get_field_index(column)
    if op == "drop":
        t = t.remove_column(i)
    elif op == "int64":
        t = t.set_column(i, pa.field(column, pa.int64()), pa.array(range(t.num_rows), pa.int64()))
    elif op == "null-first":
        kind = t.schema.field(i).type
        values = t.column(i).to_pylist()
        values[0] = None
        t = t.set_column(i, pa.field(column, kind, nullable=True), pa.array(values, kind))
    elif op == "version":
        meta[b"medley.schema_version"] = column.encode()
    # Null vectors (an item without that modality) are "bad" to lancedb's check: kept null.
    conn.create_table(table, t.replace_schema_metadata(meta), mode="overwrite", on_bad_vectors="null")
"#;

/// One table of a copy of a database to rewrite: (source, table, op, column).
type Rewrite<'a> = (&'a Path, &'a str, &'a str, &'a str);

/// Copies of databases, each with one table rewritten by `REWRITE`, in the order given.
fn foreign(rewrites: &[Rewrite<'_>]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut python = Command::new(env_path("MEDLEY_TEST_PYTHON"));
    python.args(["-c", REWRITE]);
    let mut copies = Vec::new();
    for (i, (db, table, op, column)) in rewrites.iter().enumerate() {
        let copy = dir.path().join(format!("bad{i}"));
        copy_dir(db, &copy);
        python.arg(&copy).args([table, op, column]);
        copies.push(copy);
    }
    assert_success(&python.output().unwrap());
    (dir, copies)
}

/// Exit 2, with a message naming `table` and `column`, and no panic.
#[track_caller]
fn assert_refused(out: &Output, table: &str, column: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains(&format!("`{table}`")) && stderr.contains(&format!("`{column}`")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn search(db: &Path, extra: &[&str]) -> Output {
    medley().args(["search", "x", "-k", "10"]).args(extra).arg("--db").arg(db).output().unwrap()
}

fn export(db: &Path, table: &str, out: &Path) -> Output {
    medley().args(["export", "--table", table, "--db"]).arg(db).arg(out).output().unwrap()
}

#[test]
fn foreign_tables_exit_2_naming_the_column() {
    let b = base();
    let out_dir = tempfile::tempdir().unwrap();
    let parquet = out_dir.path().join("out.parquet");
    // Refused when the database is opened: a column of another type, one missing.
    let at_open = [
        ("media", "int64", "models"),
        ("media", "drop", "labels"),
        ("segments", "int64", "start_s"),
        ("failures", "drop", "stage"),
        ("runs", "int64", "files"),
    ];
    let mut rewrites: Vec<Rewrite<'_>> = at_open.iter().map(|&(t, op, c)| (b.db.as_path(), t, op, c)).collect();
    // Found by the readers: a null where medley always writes a value.
    rewrites.push((&b.db, "media", "null-first", "path"));
    rewrites.push((&b.db, "segments", "null-first", "start_s"));
    // Semantic-ID tables, read by `sid stats` (the codebook first; the `sids` readers are
    // tested in crates/medley-store/tests/malformed.rs).
    rewrites.push((&b.trained, "sid_codebooks", "int64", "created_at"));
    // Another schema version.
    rewrites.push((&b.db, "media", "version", "0"));
    let (_dir, dbs) = foreign(&rewrites);

    for (db, (table, _, column)) in dbs.iter().zip(at_open) {
        assert_refused(&search(db, &[]), table, column);
        assert_refused(&export(db, "media", &parquet), table, column);
        assert!(!parquet.exists(), "nothing is written");
    }
    assert_refused(&search(&dbs[5], &[]), "media", "path");
    assert_refused(&search(&dbs[6], &["--segments"]), "segments", "start_s");
    let out = medley().args(["sid", "stats", "--db"]).arg(&dbs[7]).output().unwrap();
    assert_refused(&out, "sid_codebooks", "created_at");
    for out in [search(&dbs[8], &[]), export(&dbs[8], "runs", &parquet)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("table `media` has schema version 0"), "{stderr}");
    }
}

/// Compares Parquet exports (`DIR/TABLE.parquet`) with the tables as Python's `lancedb` reads
/// them: the same columns and the same rows (vectors as lists of the same floats), the schema
/// version kept. Arguments: DIR DB TABLE...; prints `TABLE ROWS` lines.
const SAME_ROWS: &str = r#"
import sys, lancedb, pyarrow.parquet as pq
out, db, tables = sys.argv[1], lancedb.connect(sys.argv[2]), sys.argv[3:]
rows = lambda t: sorted(repr(sorted(r.items())) for r in t.to_pylist())
for name in tables:
    exported = pq.read_table(f"{out}/{name}.parquet")
    table = db.open_table(name).to_arrow()
    assert exported.schema.names == table.schema.names, (name, exported.schema.names, table.schema.names)
    meta = (exported.schema.metadata or {}).get(b"medley.schema_version")
    assert meta == b"1", (name, meta)
    assert rows(exported) == rows(table), f"{name}: rows differ"
    print(name, exported.num_rows)
"#;

#[test]
fn every_table_exports_to_parquet_that_pyarrow_reads_back() {
    let b = base();
    let dir = tempfile::tempdir().unwrap();
    let tables = ["media", "segments", "failures", "runs", "sids", "sid_codebooks"];
    let mut exported = Vec::new();
    for table in tables {
        let out = export(&b.trained, table, &dir.path().join(format!("{table}.parquet")));
        assert_success(&out);
        exported.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let check = Command::new(env_path("MEDLEY_TEST_PYTHON"))
        .args(["-c", SAME_ROWS])
        .arg(dir.path())
        .arg(&b.trained)
        .args(tables)
        .output()
        .unwrap();
    assert_success(&check);
    let counts = String::from_utf8_lossy(&check.stdout);
    for ((line, table), stdout) in counts.lines().zip(tables).zip(&exported) {
        let (name, rows) = line.split_once(' ').unwrap();
        assert_eq!(name, table);
        assert!(stdout.starts_with(&format!("{rows} rows of {table} written to")), "{stdout}");
        let rows: usize = rows.parse().unwrap();
        match table {
            "media" | "sids" => assert_eq!(rows, FIXTURES.len(), "{table}"),
            "runs" | "sid_codebooks" => assert_eq!(rows, 1, "{table}"),
            "failures" => assert_eq!(rows, 0, "{table}"),
            // The slideshow is 12 s: two 10-second windows; the other fixtures one each.
            _ => assert!(rows >= 2, "segments: {rows}"),
        }
    }
    assert_eq!(counts.lines().count(), tables.len(), "{counts}");

    // `--help` lists the tables; an unknown one is refused by the parser, a table not there
    // yet is named with what creates it.
    let help = medley().args(["export", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("media, segments, failures, runs, sids, sid_codebooks"), "{help}");
    let out = export(&b.trained, "medias", &dir.path().join("x.parquet"));
    assert_eq!(out.status.code(), Some(2));
    let out = export(&b.db, "sids", &dir.path().join("x.parquet"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no table `sids`") && stderr.contains("medley sid train"), "{stderr}");
    assert!(!dir.path().join("x.parquet").exists());
}

#[test]
fn relative_database_paths_of_any_name_work() {
    // `base` indexed into `--db db`, relative to its directory; here `./x/db`.
    let b = base();
    let nested = b.dir.path().join("x");
    std::fs::create_dir_all(&nested).unwrap();
    copy_dir(&b.db, &nested.join("db"));
    let input = b.dir.path().join("input");
    let out = medley().current_dir(b.dir.path()).args(["index"]).arg(&input).args(["--db", "./x/db"]).output();
    assert_success(&out.unwrap());
    for db in ["db", "./x/db"] {
        let out = medley().current_dir(b.dir.path()).args(["search", "a cat", "--json", "--db", db]).output().unwrap();
        assert_success(&out);
        let hits = stdout_json(&out);
        let top = hits[0]["path"].as_str().unwrap_or_default();
        assert!(top.ends_with("cat_upright.mp4") || top.ends_with("slideshow.mp4"), "{db}: {hits:#}");
    }
}

/// `medley doctor` describes what this machine has (ONNX Runtime version and providers,
/// FFmpeg, the models set up) and the database: rows per table for one medley wrote (exit 0),
/// the column it cannot read for a foreign one (exit 2).
#[test]
fn doctor_describes_the_machine_and_the_database() {
    let b = base();
    let out = medley().args(["doctor", "--json", "--db"]).arg(&b.db).output().unwrap();
    assert_success(&out);
    let r = stdout_json(&out);
    let version = r["onnx_runtime"]["version"].as_str().unwrap();
    assert!(version.starts_with("1.") && version.split('.').count() == 3, "{version}");
    let providers = r["onnx_runtime"]["execution_providers"].as_array().unwrap();
    assert!(providers.iter().any(|p| p == "CPUExecutionProvider"), "{providers:?}");
    assert!(["cpu", "cuda"].contains(&r["device_auto"]["device"].as_str().unwrap()), "{r}");
    assert!(r["ffmpeg"]["version"].as_str().is_some_and(|v| !v.is_empty()), "{r}");
    let models = r["models"].as_array().unwrap();
    let minilm = models.iter().find(|m| m["id"] == "minilm-l6").expect("the text model is listed");
    assert_eq!(minilm["role"], "text");
    assert!(minilm["size_bytes"].as_u64().unwrap() > 1_000_000, "{minilm}");
    assert_eq!(r["database"]["media_rows"], FIXTURES.len());
    assert!(r["database"]["segments_rows"].as_u64().unwrap() > 0, "{r}");

    let (_dir, dbs) = foreign(&[(b.db.as_path(), "media", "drop", "labels")]);
    let out = medley().args(["doctor", "--json", "--db"]).arg(&dbs[0]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let error = stdout_json(&out)["database"]["error"].as_str().unwrap().to_string();
    assert!(error.contains("`media`") && error.contains("`labels`"), "{error}");
}

/// `--device` / `--hwaccel`: `cuda` on a machine without it is refused before any work (exit
/// 2, naming what is missing, no database created); `auto` runs and the summary says what it
/// used, as `medley doctor` predicts.
#[test]
fn device_flags_are_resolved_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = env_path("MEDLEY_TEST_FIXTURES").join(FIXTURES[1]);
    let doctor = stdout_json(&medley().args(["doctor", "--json"]).output().unwrap());
    let auto_device = doctor["device_auto"]["device"].as_str().unwrap().to_string();
    let has_cuda =
        doctor["onnx_runtime"]["execution_providers"].as_array().unwrap().iter().any(|p| p == "CUDAExecutionProvider");
    if !has_cuda {
        let db = dir.path().join("refused");
        let out = medley().arg("index").arg(&input).args(["--device", "cuda", "--db"]).arg(&db).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("CUDA execution provider"), "{stderr}");
        assert!(!db.exists(), "nothing is written");
    }
    let out =
        medley().arg("index").arg(&input).args(["--hwaccel", "sometimes", "--db"]).arg(dir.path().join("x")).output();
    assert_eq!(out.unwrap().status.code(), Some(2), "a bad value is a usage error");
    let db = dir.path().join("auto");
    let out = medley()
        .arg("index")
        .arg(&input)
        .args(["--device", "auto", "--hwaccel", "auto", "--json", "--db"])
        .arg(&db)
        .output();
    let out = out.unwrap();
    assert_success(&out);
    let summary = stdout_json(&out);
    assert_eq!(summary["device"], auto_device.as_str(), "{summary}");
    let expected_hwaccel = if auto_device == "cuda" { ["cuda", "none"].as_slice() } else { ["none"].as_slice() };
    assert!(expected_hwaccel.contains(&summary["hwaccel"].as_str().unwrap()), "{summary}");
}

/// After `cargo xtask setup --gpu`, medley prefers `onnxruntime-gpu/libonnxruntime.so` for
/// `--device auto|cuda`, and first loads the NVIDIA libraries in the folders its
/// `cuda-lib-dirs` lists, with no `LD_LIBRARY_PATH`; `--device cpu` keeps the CPU build. Here
/// that "GPU build" is the CPU library (CI has no GPU wheels) and the listed folders hold no
/// CUDA: doctor names the library it loaded, and auto falls back to CPU saying why.
#[test]
fn the_gpu_build_of_onnx_runtime_is_found_where_setup_puts_it() {
    let home = tempfile::tempdir().unwrap();
    let real = PathBuf::from(std::env::var_os("MEDLEY_HOME").expect("MEDLEY_HOME"));
    let gpu = home.path().join("onnxruntime-gpu");
    std::fs::create_dir_all(&gpu).unwrap();
    std::os::unix::fs::symlink(real.join("onnxruntime/libonnxruntime.so"), gpu.join("libonnxruntime.so")).unwrap();
    std::fs::write(gpu.join("cuda-lib-dirs"), format!("{}\n/nonexistent/nvidia/lib\n", home.path().display())).unwrap();
    std::os::unix::fs::symlink(real.join("models"), home.path().join("models")).unwrap();
    let doctor = |home: &Path| medley().args(["doctor", "--json"]).env("MEDLEY_HOME", home).output().unwrap();
    let out = doctor(home.path());
    assert_success(&out);
    let r = stdout_json(&out);
    assert_eq!(r["onnx_runtime"]["library"], gpu.join("libonnxruntime.so").display().to_string(), "{r}");
    if !r["onnx_runtime"]["execution_providers"].as_array().unwrap().iter().any(|p| p == "CUDAExecutionProvider") {
        assert_eq!(r["device_auto"]["device"], "cpu", "{r}");
        assert!(r["device_auto"]["reason"].as_str().unwrap().contains("no CUDA execution provider"), "{r}");
    }
    // Without the GPU build, the CPU one (and a missing one is named).
    std::fs::remove_file(gpu.join("libonnxruntime.so")).unwrap();
    let r = stdout_json(&doctor(home.path()));
    assert!(r["onnx_runtime"]["error"].as_str().unwrap().contains("onnxruntime/libonnxruntime.so"), "{r}");
}
