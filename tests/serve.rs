//! `medley serve` end to end: the real binary on loopback, the real models, a real LanceDB on
//! disk and real media, spoken to over plain HTTP/1.1 (a small client below, so the tests need
//! no HTTP library and can send malformed requests).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_path, medley, stdout_json};
use serde_json::{Value, json};
use server::ServerProcess;

mod common;
mod server;

/// Small real media: (file, how many times it is uploaded). 50 uploads, 5 distinct contents.
const UPLOADS: &[(&str, usize)] = &[
    ("photos/chelsea.png", 10),
    ("photos/coffee.png", 10),
    ("photos/rocket.jpg", 10),
    ("fixtures/cat_upright.mp4", 10),
    ("fixtures/bbb_audio.m4a", 10),
];

/// The default pipeline without the slow stages (speech, music), two frames per video.
const PIPELINE: &str = r#"
[pipeline]
name = "serve-test"
[sampler]
video = "uniform:2"
[stages]
vision = true
audio = true
music = false
speech = false
[models]
image = "efficientnet-lite0"
audio = "aisfx"
text = "minilm-l6"
"#;

/// [`PIPELINE`] with the music stage, so sound gets tags in the text space (for music-for).
fn music_pipeline() -> String {
    PIPELINE
        .replace("music = false", "music = true")
        .replace("text = \"minilm-l6\"", "text = \"minilm-l6\"\nmusic = \"musicnn-mtt\"")
}

const MAX_UPLOAD_MB: usize = 2;

fn media_file(rel: &str) -> PathBuf {
    let (sub, name) = rel.split_once('/').unwrap();
    if sub == "fixtures" {
        env_path("MEDLEY_TEST_FIXTURES").join(name)
    } else {
        env_path("MEDLEY_TEST_MEDIA").join(rel)
    }
}

fn blake3_hex(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap()).to_hex().to_string()
}

/// A `medley serve` process; killed on drop if still running (printing its log).
struct Server {
    process: ServerProcess,
    token: Option<String>,
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self::with_pipeline(PIPELINE)
    }
    fn with_pipeline(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), pipeline).unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        Self { dir }
    }
    fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root").canonicalize().unwrap()
    }

    fn start(&self, token: Option<&str>) -> Server {
        self.start_with(token, &[])
    }

    fn start_with(&self, token: Option<&str>, extra: &[&str]) -> Server {
        let mut serve = medley();
        serve
            .arg("serve")
            .arg("--db")
            .arg(self.db())
            .arg("--state")
            .arg(self.state())
            .arg("--pipeline")
            .arg(self.dir.path().join("pipeline.toml"))
            .arg("--root")
            .arg(self.root())
            .args(["--bind", "127.0.0.1:0", "--max-upload-mb", &MAX_UPLOAD_MB.to_string(), "--batch", "16"])
            .args(extra)
            .env_remove("MEDLEY_TOKEN");
        if let Some(t) = token {
            serve.env("MEDLEY_TOKEN", t);
        }
        Server { process: ServerProcess::spawn(serve), token: token.map(String::from) }
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{} body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let (mut out, mut rest) = (Vec::new(), &body[..]);
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 4 + n..];
        }
        body = out;
    }
    Response { status, body }
}

const BOUNDARY: &str = "medley-test-boundary-7d3f";

fn multipart(field: &str, file_name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl Server {
    fn auth(&self) -> Vec<(&str, String)> {
        self.token.iter().map(|t| ("Authorization", format!("Bearer {t}"))).collect()
    }

    fn request(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Response {
        let auth = self.auth();
        let mut headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.extend_from_slice(extra);
        http(self.addr(), method, path, &headers, body)
    }

    fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    fn upload_bytes(&self, field: &str, name: &str, data: &[u8]) -> Response {
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        self.request("POST", "/v1/media", &[("Content-Type", ct.as_str())], &multipart(field, name, data))
    }

    fn submit_path(&self, path: &Path) -> Response {
        let body = json!({ "path": path }).to_string();
        self.request("POST", "/v1/media", &[("Content-Type", "application/json")], body.as_bytes())
    }

    /// Poll until every job is done or failed; their final states.
    fn wait_jobs(&self, ids: &[String], within: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let jobs: Vec<Value> = ids
                .iter()
                .map(|id| {
                    let r = self.get(&format!("/v1/jobs/{id}"));
                    assert_eq!(r.status, 200, "{r:?}");
                    r.json()
                })
                .collect();
            if jobs.iter().all(|j| j["status"] == "done" || j["status"] == "failed") {
                return jobs;
            }
            assert!(start.elapsed() < within, "jobs not finished in {within:?}: {jobs:#?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log(&self) -> String {
        self.process.log()
    }

    fn addr(&self) -> &str {
        &self.process.addr
    }

    fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
    }

    /// Poll `/healthz` until `done` holds for its status code and body; the body.
    fn wait_health(&self, what: &str, within: Duration, done: impl Fn(u16, &Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let r = http(self.addr(), "GET", "/healthz", &[], b"");
            let body = r.json();
            if done(r.status, &body) {
                return body;
            }
            assert!(
                start.elapsed() < within,
                "{what}: not within {within:?}; last {} {body}\n{}",
                r.status,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of one sample in `/metrics`.
    fn metric(&self, sample: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
    }

    /// SIGTERM, and wait for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.process.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.process.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "server did not stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The `content_hash` of every `media` row, through `medley export` to Parquet.
fn media_hashes(db: &Path) -> Vec<String> {
    let file = db.with_extension("media.parquet");
    let out = medley().args(["export", "--db"]).arg(db).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
    let mut hashes = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name("content_hash").unwrap();
        let col = col.as_any().downcast_ref::<arrow_array::StringArray>().expect("content_hash is a string column");
        hashes.extend(col.iter().map(|h| h.unwrap().to_string()));
    }
    hashes
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn assert_error(r: &Response, status: u16, mentions: &str) {
    assert_eq!(r.status, status, "{r:?}");
    let msg = r.json()["error"].as_str().unwrap_or_else(|| panic!("no error message: {r:?}")).to_string();
    assert!(msg.to_lowercase().contains(&mentions.to_lowercase()), "{status}: expected {mentions:?} in {msg:?}");
}

#[test]
fn concurrent_uploads_index_each_content_once_and_bad_requests_leave_nothing() {
    let setup = Setup::new();
    let server = setup.start(None);
    let addr = server.addr().to_string();

    // 50 concurrent uploads of 5 distinct files.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let mut threads = Vec::new();
    for (rel, times) in UPLOADS {
        let path = media_file(rel);
        expected.insert(blake3_hex(&path));
        let data = Arc::new(std::fs::read(&path).unwrap());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for _ in 0..*times {
            let (addr, data, name) = (addr.clone(), data.clone(), name.clone());
            threads.push(std::thread::spawn(move || {
                let ct = format!("multipart/form-data; boundary={BOUNDARY}");
                http(&addr, "POST", "/v1/media", &[("Content-Type", ct.as_str())], &multipart("file", &name, &data))
            }));
        }
    }
    let ids: Vec<String> = threads
        .into_iter()
        .map(|t| {
            let r = t.join().unwrap();
            assert_eq!(r.status, 202, "{r:?}");
            r.json()["job_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 50, "every upload is its own job");
    let jobs = server.wait_jobs(&ids, Duration::from_secs(150));
    for j in &jobs {
        assert_eq!(j["status"], "done", "{j}\n{}", server.log());
        assert!(expected.contains(j["content_hash"].as_str().unwrap()), "{j}");
    }

    // Uploads are stored once per content, named by hash; nothing is left in tmp/.
    let stored: BTreeSet<String> =
        files_in(&setup.state().join("uploads")).into_iter().map(|n| n.split('.').next().unwrap().into()).collect();
    assert_eq!(stored, expected);
    assert_eq!(files_in(&setup.state().join("tmp")), Vec::<String>::new());

    // The media table holds each content exactly once (exported with the CLI while serving).
    let mut rows = media_hashes(&setup.db());
    rows.sort();
    assert_eq!(rows, expected.iter().cloned().collect::<Vec<_>>());

    // Search over HTTP finds the uploaded coffee photo first, with the CLI's JSON shape.
    let r = server.get("/v1/search?q=a%20cup%20of%20coffee&k=3");
    assert_eq!(r.status, 200, "{r:?}");
    let api_hits = r.json();
    let coffee = blake3_hex(&media_file("photos/coffee.png"));
    assert_eq!(api_hits[0]["content_hash"], coffee.as_str(), "{api_hits:#}");
    let out = medley().args(["search", "a cup of coffee", "--db"]).arg(setup.db()).args(["-k", "3", "--json"]).output();
    let cli_hits = stdout_json(&out.unwrap());
    let shape = |v: &Value| -> Vec<(Vec<String>, Value)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| (h.as_object().unwrap().keys().cloned().collect(), h["content_hash"].clone()))
            .collect()
    };
    assert_eq!(shape(&api_hits), shape(&cli_hits), "HTTP and CLI agree on hits and fields");
    // Segment search: the uploaded cat video's windows, each with its time range.
    let r = server.get("/v1/search?q=a%20cat&k=3&segments=true");
    assert_eq!(r.status, 200, "{r:?}");
    let cat = blake3_hex(&media_file("fixtures/cat_upright.mp4"));
    let segments = r.json();
    let top = &segments[0];
    assert_eq!(top["content_hash"], cat.as_str(), "{segments:#}");
    assert!(top["span"]["end_s"].as_f64().unwrap() > top["span"]["start_s"].as_f64().unwrap(), "{segments:#}");

    // Similar: the other items, not the item itself; unknown ids are 404.
    let r = server.get(&format!("/v1/similar/{}?k=10", &coffee[..12]));
    assert_eq!(r.status, 200, "{r:?}");
    let similar = r.json();
    assert!(!similar.as_array().unwrap().is_empty());
    assert!(similar.as_array().unwrap().iter().all(|h| h["content_hash"] != coffee.as_str()));
    assert_error(&server.get("/v1/similar/abcdef0123?k=3"), 404, "no item");
    assert_error(&server.get("/v1/search?k=3"), 400, "q");
    assert_error(&server.get("/v1/jobs/nope"), 404, "no job");
    assert_error(&server.request("DELETE", "/v1/search", &[], b""), 405, "not allowed");
    assert_error(&server.get("/v1/nothing"), 404, "no route");

    // Music for a video: this pipeline has no music stage, so the audio upload has no labels in
    // the text space to match with (422); the hits themselves are tested with music on below.
    let bbb = blake3_hex(&media_file("fixtures/bbb_audio.m4a"));
    assert_error(&server.get(&format!("/v1/music-for/{}", &bbb[..12])), 422, "no labels in the text space");
    assert_error(&server.get("/v1/music-for/abcdef0123"), 404, "no item");
    assert_error(&server.get(&format!("/v1/music-for/{}?k=0", &cat[..12])), 400, "k = 0");
    let r = server.get(&format!("/v1/music-for/{}?k=3", &cat[..12]));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json().as_array().unwrap().iter().all(|h| h["content_hash"] != cat.as_str()), "{r:?}");

    // Eval over HTTP answers what `medley eval --json` prints for the same queries. Uploads are
    // stored by content hash, so targets name items by hash (a prefix) or by stored path.
    let rocket = blake3_hex(&media_file("photos/rocket.jpg"));
    let queries = [
        ("a cup of coffee", coffee[..10].to_string()),
        ("a rocket", rocket.clone()),
        ("a cat in a video", setup.state().join("uploads").join(format!("{cat}.mp4")).display().to_string()),
    ];
    let body = json!({ "queries": queries.iter().map(|(q, t)| json!({"query": q, "target": t})).collect::<Vec<_>>() });
    let r = server.post_json("/v1/eval", &body);
    assert_eq!(r.status, 200, "{r:?}");
    let api_report = r.json();
    let tsv = setup.dir.path().join("queries.tsv");
    let lines: Vec<String> = queries.iter().map(|(q, t)| format!("{q}\t{t}")).collect();
    std::fs::write(&tsv, format!("query\ttarget\n{}\n", lines.join("\n"))).unwrap();
    let out = medley().args(["eval", "--json", "--queries"]).arg(&tsv).arg("--db").arg(setup.db()).output().unwrap();
    assert_eq!(api_report, stdout_json(&out), "HTTP and CLI eval agree");
    assert_eq!(api_report["n"], 3);
    // Every target is in the ranking of 5 items (a missing one would rank 6th).
    assert_eq!(api_report["recall_at_10"], 1.0, "{api_report}");
    assert!(api_report["recall_at_1"].as_f64().unwrap() >= 1.0 / 3.0, "coffee is found first: {api_report}");
    assert_error(&server.post_json("/v1/eval", &json!({ "queries": [] })), 400, "no queries");
    let blank = json!({ "queries": [{ "query": "a cat", "target": " " }] });
    assert_error(&server.post_json("/v1/eval", &blank), 400, "must not be empty");
    let many: Vec<Value> = (0..1001).map(|i| json!({ "query": format!("q{i}"), "target": "x.png" })).collect();
    assert_error(&server.post_json("/v1/eval", &json!({ "queries": many })), 400, "at most 1000");
    assert_error(&server.post_json("/v1/eval", &json!({ "queries": [{ "query": "a cat" }] })), 422, "target");
    assert_error(&server.request("POST", "/v1/eval", &[], b"{}"), 415, "content-type");

    // Bad uploads: each refused with a clear message, leaving no file and no job.
    let jobs_before = files_in(&setup.state().join("jobs")).len();
    let uploads_before = files_in(&setup.state().join("uploads"));
    assert_error(&server.upload_bytes("file", "empty.mp4", b""), 400, "empty");
    let big = vec![7u8; MAX_UPLOAD_MB * 1024 * 1024 + 10];
    assert_error(&server.upload_bytes("file", "big.mp4", &big), 413, "limit");
    let not_media = std::fs::read(media_file("fixtures/not_a_video.mp4")).unwrap();
    let r = server.upload_bytes("file", "not_a_video.mp4", &not_media);
    assert!([415, 422].contains(&r.status), "{r:?}");
    assert_error(&r, r.status, "not_a_video.mp4: not a media file");
    assert_error(&server.upload_bytes("other", "x.png", b"data"), 400, "no `file` field");
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let garbage = b"--medley-test-boundary-7d3f\r\nthis is not a part header\r\n\r\nxx";
    assert_error(&server.request("POST", "/v1/media", &[("Content-Type", ct.as_str())], garbage), 400, "multipart");
    let r = server.request("POST", "/v1/media", &[("Content-Type", "multipart/form-data")], b"xx");
    assert_error(&r, 400, "multipart");
    assert_eq!(files_in(&setup.state().join("uploads")), uploads_before, "refused uploads leave nothing");
    assert_eq!(files_in(&setup.state().join("tmp")), Vec::<String>::new());
    assert_eq!(files_in(&setup.state().join("jobs")).len(), jobs_before, "and no job");

    // Paths: outside the roots 403, missing 404, inside 202 and indexed.
    assert_error(&server.submit_path(&media_file("photos/rocket.jpg")), 403, "outside the allowed roots");
    assert_error(&server.submit_path(Path::new("/etc/passwd")), 403, "outside the allowed roots");
    let escape = setup.root().join("../pipeline.toml");
    assert_error(&server.submit_path(&escape), 403, "outside the allowed roots");
    assert_error(&server.submit_path(&setup.root().join("missing.png")), 404, "no such file");
    let inside = setup.root().join("astronaut.png");
    std::fs::copy(media_file("photos/astronaut.png"), &inside).unwrap();
    let r = server.submit_path(&inside);
    assert_eq!(r.status, 202, "{r:?}");
    let job = &server.wait_jobs(&[r.json()["job_id"].as_str().unwrap().into()], Duration::from_secs(60))[0];
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["path"], inside.display().to_string());

    // Metrics count the jobs and uploads.
    let m = server.get("/metrics");
    assert_eq!(m.status, 200, "{m:?}");
    let text = m.text();
    assert!(text.contains("medley_jobs{status=\"done\"} 51\n"), "{text}");
    assert!(text.contains("medley_uploads_total 50\n"), "{text}");
    assert!(text.contains("medley_uploads_rejected_total 6\n"), "{text}");
    assert!(text.contains("# TYPE medley_index_seconds_total counter"), "{text}");
    // Jobs are indexed in batches: 51 jobs took far fewer runs (commits) than jobs.
    let batches: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("medley_index_batches_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no batch counter: {text}"));
    eprintln!("index batches for 51 jobs: {batches}");
    assert!((4..=20).contains(&batches), "{batches} index runs for 51 jobs: {text}");

    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}

#[test]
fn token_guards_the_api_and_jobs_survive_a_restart() {
    // Open binds without a token are refused before any work (exit 2).
    let mut cmd = medley();
    cmd.args(["serve", "--db", "/nonexistent/db", "--bind", "0.0.0.0:0"]).env_remove("MEDLEY_TOKEN");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));

    let setup = Setup::new();
    // A job left `running` by a process that died mid-batch, written before the server starts.
    let crashed = setup.root().join("chelsea.png");
    std::fs::copy(media_file("photos/chelsea.png"), &crashed).unwrap();
    let jobs_dir = setup.state().join("jobs");
    std::fs::create_dir_all(&jobs_dir).unwrap();
    let stale = json!({
        "id": "0123456789abcdef", "status": "running", "path": crashed, "content_hash": blake3_hex(&crashed),
        "error": null, "submitted_at_us": 1, "finished_at_us": null
    });
    std::fs::write(jobs_dir.join("0123456789abcdef.json"), stale.to_string()).unwrap();

    let server = setup.start(Some("s3cret"));
    let addr = server.addr().to_string();
    // Without the token: 401 with a JSON error on /v1 and /metrics; /healthz stays open.
    assert_error(&http(&addr, "GET", "/v1/search?q=cat", &[], b""), 401, "authorization");
    assert_error(
        &http(&addr, "GET", "/v1/jobs/0123456789abcdef", &[("Authorization", "Bearer nope")], b""),
        401,
        "token",
    );
    assert_error(&http(&addr, "GET", "/metrics", &[], b""), 401, "authorization");
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let r = http(&addr, "POST", "/v1/media", &[("Content-Type", ct.as_str())], &multipart("file", "a.png", b"x"));
    assert_error(&r, 401, "authorization");
    assert_eq!(http(&addr, "GET", "/healthz", &[], b"").status, 200);
    let spec = http(&addr, "GET", "/openapi.json", &[], b"").json();
    assert!(spec["paths"]["/v1/media"]["post"].is_object());

    // With the token: the re-queued job completes.
    let job = &server.wait_jobs(&["0123456789abcdef".into()], Duration::from_secs(90))[0];
    assert_eq!(job["status"], "done", "{job}");

    // Queue uploads and stop at once: whatever was not indexed runs after the restart.
    let mut ids = Vec::new();
    for rel in ["photos/coffee.png", "photos/rocket.jpg", "fixtures/cat_upright.mp4"] {
        let path = media_file(rel);
        let r =
            server.upload_bytes("file", &path.file_name().unwrap().to_string_lossy(), &std::fs::read(&path).unwrap());
        assert_eq!(r.status, 202, "{r:?}");
        ids.push(r.json()["job_id"].as_str().unwrap().to_string());
    }
    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    // The batch in flight was finished: no job is left `running`, the rest wait `queued`.
    for name in files_in(&jobs_dir) {
        let job: Value = serde_json::from_slice(&std::fs::read(jobs_dir.join(&name)).unwrap()).unwrap();
        assert!(["queued", "done"].contains(&job["status"].as_str().unwrap()), "{name}: {job}");
    }

    let server = setup.start(Some("s3cret"));
    for j in server.wait_jobs(&ids, Duration::from_secs(90)) {
        assert_eq!(j["status"], "done", "{j}");
    }
    let r = server.get("/v1/search?q=a%20rocket&k=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()[0]["content_hash"], blake3_hex(&media_file("photos/rocket.jpg")).as_str());
    assert!(server.terminate().success());
}

#[test]
fn the_worker_restarts_when_the_database_fails_and_finished_jobs_are_pruned() {
    let setup = Setup::with_pipeline(&music_pipeline());
    // A job that finished long ago, written before the server starts: pruned at start.
    let jobs_dir = setup.state().join("jobs");
    std::fs::create_dir_all(&jobs_dir).unwrap();
    let old = json!({
        "id": "00000000000000aa", "status": "done", "path": "/gone/x.png", "content_hash": "aa",
        "error": null, "submitted_at_us": 1, "finished_at_us": 2
    });
    std::fs::write(jobs_dir.join("00000000000000aa.json"), old.to_string()).unwrap();
    let server = setup.start_with(None, &["--keep-finished-for", "10s"]);
    assert_error(&server.get("/v1/jobs/00000000000000aa"), 404, "no job");
    assert!(!jobs_dir.join("00000000000000aa.json").exists(), "its file is removed");
    let health = server.wait_health("healthy at start", Duration::from_secs(30), |status, _| status == 200);
    assert_eq!((health["worker"]["state"].as_str(), health["worker"]["restarts"].as_u64()), (Some("running"), Some(0)));

    // The database becomes unusable: its folder is moved away and a plain file takes its place
    // (running as root, permissions would not stop the writes).
    let db = setup.db();
    let away = setup.dir.path().join("db.away");
    std::fs::rename(&db, &away).unwrap();
    std::fs::write(&db, b"not a database").unwrap();
    let mut ids = Vec::new();
    for rel in ["fixtures/cat_upright.mp4", "fixtures/bbb_audio.m4a"] {
        let path = media_file(rel);
        let r =
            server.upload_bytes("file", &path.file_name().unwrap().to_string_lossy(), &std::fs::read(&path).unwrap());
        assert_eq!(r.status, 202, "{r:?}");
        ids.push(r.json()["job_id"].as_str().unwrap().to_string());
    }
    // The index run fails, the worker stops, and every start after it finds the database still
    // unusable: the server says it is unavailable, the jobs wait in the queue.
    let health = server.wait_health("down and restarted twice", Duration::from_secs(180), |status, h| {
        status == 503 && h["worker"]["state"] == "restarting" && h["worker"]["restarts"].as_u64() >= Some(2)
    });
    assert_eq!(health["status"], "unavailable");
    let error = health["worker"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(&db.display().to_string()) && error.contains("not usable"), "{health}");
    for id in &ids {
        let job = server.get(&format!("/v1/jobs/{id}")).json();
        assert_eq!(job["status"], "queued", "{job}");
    }
    assert_eq!(server.metric("medley_worker_up"), 0.0);
    assert_eq!(server.metric("medley_worker_state{state=\"restarting\"}"), 1.0);
    assert!(server.metric("medley_worker_restarts_total") >= 2.0);

    // The database comes back: the next start finds it, and the queued jobs are indexed.
    std::fs::remove_file(&db).unwrap();
    std::fs::rename(&away, &db).unwrap();
    for job in server.wait_jobs(&ids, Duration::from_secs(180)) {
        assert_eq!(job["status"], "done", "{job}\n{}", server.log());
    }
    let health = server.wait_health("healthy again", Duration::from_secs(30), |status, _| status == 200);
    assert_eq!(health["worker"]["state"], "running", "{health}");
    assert!(health["worker"]["restarts"].as_u64() >= Some(2), "{health}");
    assert!(health["worker"]["last_error"].as_str().is_some_and(|e| e.contains("not usable")), "{health}");
    assert_eq!(server.metric("medley_worker_up"), 1.0);

    // Music for the video over HTTP: the sound-only upload, as `medley music-for --json` says.
    let (cat, bbb) =
        (blake3_hex(&media_file("fixtures/cat_upright.mp4")), blake3_hex(&media_file("fixtures/bbb_audio.m4a")));
    let r = server.get(&format!("/v1/music-for/{}?k=5", &cat[..12]));
    assert_eq!(r.status, 200, "{r:?}");
    let api_hits = r.json();
    assert_eq!(api_hits.as_array().map(Vec::len), Some(1), "{api_hits:#}");
    assert_eq!(api_hits[0]["content_hash"], bbb.as_str(), "{api_hits:#}");
    let out = medley().args(["music-for", &cat, "-k", "5", "--json", "--db"]).arg(&db).output().unwrap();
    let cli_hits = stdout_json(&out);
    assert_eq!(hash_list(&api_hits), hash_list(&cli_hits), "HTTP and CLI agree");

    // Finished jobs are forgotten after --keep-finished-for (10 s); the uploads stay (the index
    // refers to them).
    let start = Instant::now();
    while ids.iter().any(|id| server.get(&format!("/v1/jobs/{id}")).status != 404) {
        assert!(start.elapsed() < Duration::from_secs(120), "jobs not pruned:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(files_in(&jobs_dir), Vec::<String>::new());
    assert_eq!(files_in(&setup.state().join("uploads")).len(), 2);
    assert!(server.terminate().success());
}

fn hash_list(hits: &Value) -> Vec<String> {
    hits.as_array().unwrap().iter().map(|h| h["content_hash"].as_str().unwrap().to_string()).collect()
}

/// With an image-text model in the server's pipeline (the registry's tiny CLIP), pictures sent
/// by path get a `clip` vector and `/v1/search` fuses the CLIP and text-space rankings by
/// reciprocal rank, exactly as `medley search` does on the same table: the same items in the
/// same order, every score at most 2 / 61.
#[test]
fn search_fuses_the_image_text_space_like_the_cli() {
    let setup =
        Setup::with_pipeline(&PIPELINE.replace("text = \"minilm-l6\"", "text = \"minilm-l6\"\nclip = \"tiny-clip\""));
    let server = setup.start(None);
    let mut ids = Vec::new();
    for rel in ["photos/chelsea.png", "photos/coffee.png", "photos/rocket.jpg"] {
        let path = setup.root().join(Path::new(rel).file_name().unwrap());
        std::fs::copy(media_file(rel), &path).unwrap();
        let r = server.submit_path(&path);
        assert_eq!(r.status, 202, "{r:?}");
        ids.push(r.json()["job_id"].as_str().unwrap().to_string());
    }
    for j in server.wait_jobs(&ids, Duration::from_secs(120)) {
        assert_eq!(j["status"], "done", "{j}\n{}", server.log());
    }
    let r = server.get("/v1/search?q=a%20cup%20of%20coffee&k=3");
    assert_eq!(r.status, 200, "{r:?}");
    let http_hits = r.json();
    for h in http_hits.as_array().unwrap() {
        let score = h["score"].as_f64().unwrap();
        assert!(score > 0.0 && score <= 2.0 / 61.0 + 1e-6, "a fused score: {h}");
    }
    let out =
        medley().args(["search", "a cup of coffee", "-k", "3", "--json", "--db"]).arg(setup.db()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli_hits = stdout_json(&out);
    assert_eq!(hash_list(&http_hits).len(), 3);
    assert_eq!(hash_list(&http_hits), hash_list(&cli_hits), "the server ranks as the CLI does");
}
