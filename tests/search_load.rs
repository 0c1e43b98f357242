//! The query path under load: concurrent searches against the real server while a batch is indexed.
//!
//! The real `medley serve` on loopback with the real models and a real LanceDB; real media
//! uploaded through `POST /v1/media` and indexed by the server's worker while 50 clients keep
//! searching. Every answer must be complete and well-formed (status 200, a JSON array of hits,
//! each with its fields, finite scores best first, only items that were uploaded); once the
//! batch is indexed, every item is found and a text finds the picture it describes.
//! Nothing here is timed: speed is `cargo xtask bench serve`'s job.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{env_path, medley, stdout_json};
use serde_json::Value;
use server::ServerProcess;

mod common;
mod server;

/// Real media uploaded while the searches run: pictures, a short video, a sound.
const UPLOADS: &[&str] = &[
    "photos/chelsea.png",
    "photos/coffee.png",
    "photos/rocket.jpg",
    "photos/astronaut.png",
    "photos/motorcycle_left.png",
    "fixtures/cat_upright.mp4",
    "fixtures/bbb_audio.m4a",
];

/// The default pipeline without the slow stages (speech, music), two frames per video.
const PIPELINE: &str = r#"
[pipeline]
name = "search-load-test"
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

/// Searched concurrently; some texts repeat across clients (the server caches them), some
/// carry the client's number (never seen before).
const QUERIES: &[&str] = &["a cat", "a cup of coffee", "a rocket launch", "an astronaut", "a motorcycle", "music"];

const CLIENTS: usize = 50;

fn media_file(rel: &str) -> PathBuf {
    match rel.split_once('/') {
        Some(("fixtures", name)) => env_path("MEDLEY_TEST_FIXTURES").join(name),
        _ => env_path("MEDLEY_TEST_MEDIA").join(rel),
    }
}

fn start(dir: &std::path::Path) -> ServerProcess {
    std::fs::write(dir.join("pipeline.toml"), PIPELINE).unwrap();
    let mut serve = medley();
    serve
        .arg("serve")
        .arg("--db")
        .arg(dir.join("db"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--pipeline")
        .arg(dir.join("pipeline.toml"))
        .args(["--bind", "127.0.0.1:0", "--batch", "16"])
        .env_remove("MEDLEY_TOKEN");
    ServerProcess::spawn(serve)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): status and body.
fn http(addr: &str, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding: chunked"), "JSON answers carry a length: {head}");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

fn upload(addr: &str, file: &std::path::Path) -> String {
    const BOUNDARY: &str = "medley-search-load-7d3f";
    let name = file.file_name().unwrap().to_str().unwrap();
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::fs::read(file).unwrap());
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, answer) = http(addr, "POST", "/v1/media", Some(&ct), &body);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).unwrap();
    v["job_id"].as_str().unwrap().to_string()
}

fn url_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Why a search answer is not complete and well-formed, if it is not: a JSON array of at most
/// `k` hits, each with its fields, the item one of `known`, finite scores best first, no item
/// twice.
fn problem(status: u16, body: &[u8], k: usize, known: &HashMap<String, String>) -> Option<String> {
    if status != 200 {
        return Some(format!("status {status}: {}", String::from_utf8_lossy(body)));
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Some(format!("not JSON ({e}): {}", String::from_utf8_lossy(body))),
    };
    let Some(hits) = v.as_array() else { return Some(format!("not an array: {v}")) };
    if hits.len() > k {
        return Some(format!("{} hits for k = {k}", hits.len()));
    }
    let (mut last, mut seen) = (f64::INFINITY, BTreeSet::new());
    for h in hits {
        let (Some(hash), Some(path), Some(kind), Some(labels)) =
            (h["content_hash"].as_str(), h["path"].as_str(), h["kind"].as_str(), h["labels"].as_array())
        else {
            return Some(format!("a hit without its fields: {h}"));
        };
        if !["image", "video", "audio"].contains(&kind) || path.is_empty() {
            return Some(format!("a hit with kind {kind:?}, path {path:?}"));
        }
        if !known.contains_key(hash) {
            return Some(format!("a hit for an item never uploaded: {h}"));
        }
        if !seen.insert(hash.to_string()) {
            return Some(format!("{hash} twice in one answer"));
        }
        if labels.iter().any(|l| l["label"].as_str().is_none() || l["score"].as_f64().is_none()) {
            return Some(format!("malformed labels: {h}"));
        }
        let Some(score) = h["score"].as_f64() else { return Some(format!("a hit without a score: {h}")) };
        if !score.is_finite() || score > last {
            return Some(format!("scores not finite and best first: {score} after {last}"));
        }
        last = score;
    }
    None
}

#[test]
fn fifty_concurrent_searches_while_a_batch_is_indexed_all_answer_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr.clone();
    let files: Vec<PathBuf> = UPLOADS.iter().map(|f| media_file(f)).collect();
    // content hash -> file name, for the answers to be checked against.
    let known: Arc<HashMap<String, String>> = Arc::new(
        files
            .iter()
            .map(|f| {
                let hash = blake3::hash(&std::fs::read(f).unwrap()).to_hex().to_string();
                (hash, f.file_name().unwrap().to_string_lossy().into_owned())
            })
            .collect(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (addr, stop, known) = (addr.clone(), stop.clone(), known.clone());
            std::thread::spawn(move || {
                let (mut answers, mut nonempty, mut problems) = (0usize, 0usize, Vec::new());
                let mut n = 0;
                // At least a few searches each, and on until the batch is indexed.
                while n < 3 || !stop.load(Ordering::Relaxed) {
                    let text = match n % 3 {
                        2 => format!("{} {c}", QUERIES[(c + n) % QUERIES.len()]),
                        _ => QUERIES[(c + n) % QUERIES.len()].to_string(),
                    };
                    let k = 1 + (c + n) % 10;
                    let segments = if c % 5 == 4 { "&segments=true" } else { "" };
                    let path = format!("/v1/search?q={}&k={k}{segments}", url_encode(&text));
                    let (status, body) = http(&addr, "GET", &path, None, b"");
                    answers += 1;
                    match problem(status, &body, k, &known) {
                        Some(p) => problems.push(format!("{path}: {p}")),
                        None if body.len() > 2 => nonempty += 1,
                        None => {}
                    }
                    n += 1;
                }
                (answers, nonempty, problems)
            })
        })
        .collect();

    // The batch: every file uploaded while the clients search, then indexed by the worker.
    let ids: Vec<String> = files.iter().map(|f| upload(&addr, f)).collect();
    let started = Instant::now();
    loop {
        let states: Vec<Value> = ids
            .iter()
            .map(|id| {
                let (status, body) = http(&addr, "GET", &format!("/v1/jobs/{id}"), None, b"");
                assert_eq!(status, 200);
                serde_json::from_slice(&body).unwrap()
            })
            .collect();
        if states.iter().all(|j| j["status"] == "done" || j["status"] == "failed") {
            let failed: Vec<&Value> = states.iter().filter(|j| j["status"] == "failed").collect();
            assert!(failed.is_empty(), "jobs failed: {failed:#?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "jobs not done: {states:#?}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(250));
    }
    // A little more load on the finished table before the clients stop.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);

    let (mut answers, mut nonempty, mut problems) = (0, 0, Vec::new());
    for c in clients {
        let (a, n, p) = c.join().unwrap();
        answers += a;
        nonempty += n;
        problems.extend(p);
    }
    assert!(problems.is_empty(), "{} of {answers} answers were not whole:\n{}", problems.len(), problems.join("\n"));
    assert!(answers >= CLIENTS * 3, "{answers} answers");
    assert!(nonempty > 0, "no search found anything while or after the batch was indexed");

    // Once indexed, the whole batch is searchable and ranked sensibly.
    let (status, body) = http(&addr, "GET", "/v1/search?q=a%20cat&k=10", None, b"");
    assert_eq!(problem(status, &body, 10, &known), None);
    let hits: Vec<Value> = serde_json::from_slice(&body).unwrap();
    // Every item with pictures is in the text space (the sound alone may not be: no stage
    // here puts it there).
    let found: BTreeSet<&str> = hits.iter().map(|h| known[h["content_hash"].as_str().unwrap()].as_str()).collect();
    for f in UPLOADS.iter().filter(|f| !f.ends_with(".m4a")) {
        let name = f.rsplit('/').next().unwrap();
        assert!(found.contains(name), "{name} is not found after indexing: {found:?}");
    }
    // The shell's search reads the same table while the server holds it, and agrees.
    let out =
        medley().args(["search", "a cat", "-k", "10", "--json", "--db"]).arg(dir.path().join("db")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shell = stdout_json(&out);
    assert_eq!(problem(200, shell.to_string().as_bytes(), 10, &known), None);
    let ids = |v: &[Value]| v.iter().map(|h| h["content_hash"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(shell.as_array().unwrap()), ids(&hits), "the shell and the server rank alike");
    let first = hits[0]["content_hash"].as_str().unwrap();
    assert!(
        ["chelsea.png", "cat_upright.mp4"].contains(&known[first].as_str()),
        "a cat is found first for \"a cat\", not {}",
        known[first]
    );
}
