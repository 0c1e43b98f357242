//! The Rust side of `cargo xtask bench serve`.
//!
//! `serve_bench --medley BIN --dir DIR --media DIR --fixtures DIR [--rows N] [--secs S]
//! [--clients 1,10,50] [--only gen,small,mixed] [--json]`:
//!
//! - a generated table of N rows (default 100,000) with the real `media` schema, random unit
//!   `semantic` vectors, labels from a small vocabulary (full-text), built through medley-store's
//!   write API and `optimize` (vector and full-text indexes), kept under DIR between runs;
//! - a real small table: a few files from the media cache indexed by `medley index` with the
//!   default pipeline (also kept);
//! - for each table, the real `medley serve` on loopback, driven by a load generator (one
//!   keep-alive HTTP/1.1 connection per client, on one thread) at each client count for S
//!   seconds, with query texts drawn from a pool (some hot, some unique); every answer is
//!   checked (status 200, a JSON array of hits with finite, sorted scores);
//! - the baseline: the same searches made directly through the store in this process (the
//!   query vectors embedded beforehand), at the same client counts;
//! - a mixed run: a fresh copy of the generated table served while real files are uploaded
//!   through `POST /v1/media` and indexed, 50 clients searching until every job is finished.
//!
//! Prints a table, or `--json`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medley_models::{ModelHome, Runtime, TextEncoder};
use medley_store::{Label, MediaRow, SEARCH_COLUMN, Store, VectorDims};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn err(msg: impl Into<String>) -> Box<dyn std::error::Error + Send + Sync> {
    msg.into().into()
}

struct Args {
    medley: PathBuf,
    dir: PathBuf,
    media: PathBuf,
    fixtures: PathBuf,
    rows: usize,
    secs: f64,
    clients: Vec<usize>,
    only: Vec<String>,
    json: bool,
}

fn parse_args() -> Result<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let need = |name: &str| get(name).ok_or_else(|| err(format!("{name} is required")));
    Ok(Args {
        medley: need("--medley")?.into(),
        dir: need("--dir")?.into(),
        media: need("--media")?.into(),
        fixtures: need("--fixtures")?.into(),
        rows: get("--rows").map_or(Ok(100_000), |v| v.parse()).map_err(|_| err("--rows takes a number"))?,
        secs: get("--secs").map_or(Ok(10.0), |v| v.parse()).map_err(|_| err("--secs takes a number"))?,
        clients: get("--clients")
            .unwrap_or_else(|| "1,10,50".into())
            .split(',')
            .map(|c| c.trim().parse().map_err(|_| err("--clients takes numbers like 1,10,50")))
            .collect::<Result<_>>()?,
        only: get("--only")
            .unwrap_or_else(|| "gen,small,mixed".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
        json: args.iter().any(|a| a == "--json"),
    })
}

/// What people search for: short phrases, a few of them far more often than the rest.
const QUERIES: &[&str] = &[
    "a cat",
    "a rabbit in a meadow",
    "a cup of coffee",
    "a rocket launch",
    "people riding bikes",
    "the earth from space",
    "a man talking on the phone",
    "an astronaut",
    "a motorcycle",
    "music with drums",
    "a dog playing in the snow",
    "sunset over the ocean",
    "a city street at night",
    "children playing football",
    "a bird singing",
    "someone cooking pasta",
    "a red sports car",
    "a crowd cheering",
    "rain on a window",
    "a piano solo",
    "an old black and white film",
    "a butterfly on a flower",
    "fireworks",
    "a train arriving at a station",
    "a lecture about physics",
    "a cartoon character",
    "waves crashing on rocks",
    "a horse running",
    "a mountain landscape",
    "a baby laughing",
    "a busy kitchen",
    "a guitar riff",
    "traffic noise",
    "a forest in autumn",
    "a person dancing",
    "an interview",
    "a squirrel eating a nut",
    "snowy mountains",
    "a waterfall",
    "electronic dance music",
];

/// The query of request `n`: 40% from 5 hot texts, 40% from the whole pool, 20% unique.
fn pick_query(state: &mut u64, n: u64) -> String {
    let r = splitmix(state) % 100;
    let i = (splitmix(state) % QUERIES.len() as u64) as usize;
    if r < 40 {
        QUERIES[i % 5].to_string()
    } else if r < 80 {
        QUERIES[i].to_string()
    } else {
        format!("{} {n}", QUERIES[i])
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit_vector(state: &mut u64, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            // Sum of uniforms: close enough to Gaussian for directions spread over the sphere.
            (0..4).map(|_| (splitmix(state) >> 40) as f32 / (1u64 << 24) as f32 - 0.5).sum::<f32>()
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

const WORDS: &[&str] = &[
    "cat",
    "dog",
    "rabbit",
    "meadow",
    "coffee",
    "cup",
    "rocket",
    "launch",
    "bike",
    "street",
    "earth",
    "space",
    "phone",
    "astronaut",
    "motorcycle",
    "drums",
    "snow",
    "sunset",
    "ocean",
    "city",
    "night",
    "football",
    "bird",
    "pasta",
    "car",
    "crowd",
    "rain",
    "window",
    "piano",
    "film",
    "butterfly",
    "flower",
    "fireworks",
    "train",
    "station",
    "lecture",
    "cartoon",
    "waves",
    "rocks",
    "horse",
    "mountain",
    "baby",
    "kitchen",
    "guitar",
    "traffic",
    "forest",
    "autumn",
    "dance",
    "interview",
    "squirrel",
    "waterfall",
    "music",
    "tabby",
    "meal",
    "boat",
    "bridge",
];

/// Row `i` of the generated table: a random unit `semantic` vector and three labels.
fn generated_row(i: usize, dims: &VectorDims, state: &mut u64) -> MediaRow {
    let kinds = ["image", "video", "audio"];
    let labels = (0..3)
        .map(|j| Label {
            label: WORDS[(splitmix(state) % WORDS.len() as u64) as usize].to_string(),
            score: 0.9 - 0.2 * j as f32,
        })
        .collect();
    let hash = format!("{:016x}{:016x}{:016x}{:016x}", i, splitmix(state), splitmix(state), splitmix(state));
    MediaRow {
        content_hash: hash,
        path: format!("/bench/generated/item-{i:07}.jpg"),
        file_name: format!("item-{i:07}.jpg"),
        kind: kinds[i % 3].into(),
        container: "jpeg".into(),
        size_bytes: 100_000 + (i as u64 % 1000),
        duration_s: Some((i % 600) as f64),
        labels,
        semantic: Some(unit_vector(state, dims.bridge)),
        description: String::new(),
        models: "bench-generated".into(),
        indexed_at_us: 1_700_000_000_000_000 + i as i64,
        ..Default::default()
    }
}

/// The generated table under `db` (made once; `complete` marks a finished one).
async fn generated_table(db: &Path, rows: usize, dims: &VectorDims) -> Result<()> {
    let done = db.with_extension("complete");
    if done.exists() && std::fs::read_to_string(&done)?.trim() == rows.to_string() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(db);
    let t = Instant::now();
    let uri = db.to_str().ok_or("non-UTF-8 path")?;
    let store = Store::open(uri, dims.clone()).await?;
    let mut state = 7u64;
    const CHUNK: usize = 20_000;
    for from in (0..rows).step_by(CHUNK) {
        let batch: Vec<MediaRow> =
            (from..(from + CHUNK).min(rows)).map(|i| generated_row(i, dims, &mut state)).collect();
        store.upsert_media(&batch).await?;
        eprintln!("bench serve: generated {} of {rows} rows", (from + CHUNK).min(rows));
    }
    for line in store.optimize().await? {
        eprintln!("bench serve: {line}");
    }
    eprintln!("bench serve: generated table ready in {:.0} s", t.elapsed().as_secs_f64());
    std::fs::write(&done, rows.to_string())?;
    Ok(())
}

/// The small real table: a few files of the media cache indexed with the default pipeline.
fn small_table(medley: &Path, db: &Path, files: &[PathBuf]) -> Result<()> {
    let done = db.with_extension("complete");
    if done.exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(db);
    let status = Command::new(medley).arg("index").args(files).arg("--db").arg(db).stdout(Stdio::null()).status()?;
    if !status.success() {
        return Err(err(format!("medley index exited with {status}")));
    }
    std::fs::write(&done, "")?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp").arg("-r").arg(from).arg(to).status()?;
    if !status.success() {
        return Err(err(format!("cp -r {} {} failed", from.display(), to.display())));
    }
    Ok(())
}

/// A running `medley serve`; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(medley: &Path, db: &Path, state: &Path) -> Result<Self> {
        let _ = std::fs::remove_dir_all(state);
        let mut child = Command::new(medley)
            .arg("serve")
            .arg("--db")
            .arg(db)
            .arg("--state")
            .arg(state)
            .args(["--bind", "127.0.0.1:0", "--batch", "8"])
            .env_remove("MEDLEY_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                } else if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("server: {line}");
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(addr) => Ok(Self { child, addr }),
            Err(_) => {
                let _ = child.kill();
                Err(err("medley serve did not start within 180 s"))
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection (enough of the protocol for axum's answers).
struct Conn {
    addr: String,
    stream: Option<tokio::io::BufReader<tokio::net::TcpStream>>,
}

impl Conn {
    fn new(addr: &str) -> Self {
        Self { addr: addr.to_string(), stream: None }
    }

    async fn request(&mut self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let s = tokio::net::TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(tokio::io::BufReader::new(s));
        }
        let result = self.exchange(method, path, body).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<(u16, Vec<u8>)> {
        let s = self.stream.as_mut().ok_or("no connection")?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if let Some((ct, b)) = body {
            head.push_str(&format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        s.get_mut().write_all(head.as_bytes()).await?;
        if let Some((_, b)) = body {
            s.get_mut().write_all(b).await?;
        }
        let mut line = String::new();
        s.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| err(format!("bad status line {line:?}")))?;
        let (mut length, mut close) = (None, false);
        loop {
            line.clear();
            if s.read_line(&mut line).await? == 0 {
                return Err(err("connection closed in the headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    length = v.parse::<usize>().ok();
                } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                    close = true;
                } else if k == "transfer-encoding" {
                    return Err(err("chunked answers are not read by this client"));
                }
            }
        }
        let mut body = vec![0u8; length.ok_or("answer without Content-Length")?];
        s.read_exact(&mut body).await?;
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a search answer is complete: a JSON array of hits, each with its fields, finite
/// scores, best first. Read into a typed hit rather than a `serde_json::Value` tree: the load
/// generator shares the server's cores, and building the trees cost it a tenth of the CPU.
fn check_hits(body: &[u8]) -> std::result::Result<usize, String> {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    #[allow(dead_code)] // the fields are read only to check that they are there
    struct Hit {
        content_hash: IgnoredAny,
        path: IgnoredAny,
        kind: IgnoredAny,
        labels: IgnoredAny,
        score: f64,
    }
    let hits: Vec<Hit> = serde_json::from_slice(body).map_err(|e| format!("not a list of complete hits: {e}"))?;
    let mut last = f64::INFINITY;
    for h in &hits {
        if !h.score.is_finite() || h.score > last + 1e-6 {
            return Err(format!("scores not finite and sorted ({} after {last})", h.score));
        }
        last = h.score;
    }
    Ok(hits.len())
}

#[derive(Default, Clone)]
struct Stats {
    latencies_us: Vec<u64>,
    errors: usize,
    empty: usize,
    first_error: Option<String>,
    wall_s: f64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.empty += other.empty;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        if l.is_empty() {
            return f64::NAN;
        }
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i] as f64 / 1000.0
    }
    fn json(&self, clients: usize) -> Value {
        let n = self.latencies_us.len();
        json!({
            "clients": clients,
            "requests": n,
            "req_per_s": n as f64 / self.wall_s.max(1e-9),
            "p50_ms": self.pct(0.50),
            "p99_ms": self.pct(0.99),
            "max_ms": self.pct(1.0),
            "errors": self.errors,
            "empty_answers": self.empty,
            "first_error": self.first_error,
        })
    }
}

/// `clients` connections searching `addr` until `stop` says so (or `secs` pass when it is None).
async fn http_load(addr: &str, clients: usize, secs: f64, stop: Option<tokio::sync::watch::Receiver<bool>>) -> Stats {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = addr.to_string();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(&addr);
            let mut stats = Stats::default();
            let mut state = 1000 + c as u64;
            let mut n = c as u64 * 1_000_000;
            loop {
                let done = match &stop {
                    Some(s) => *s.borrow(),
                    None => Instant::now() >= deadline,
                };
                if done {
                    break;
                }
                n += 1;
                let q = pick_query(&mut state, n);
                let path = format!("/v1/search?q={}&k=10", url_encode(&q));
                let t = Instant::now();
                let answer = conn.request("GET", &path, None).await;
                let us = t.elapsed().as_micros() as u64;
                match answer {
                    Ok((200, body)) => match check_hits(&body) {
                        Ok(0) => {
                            stats.empty += 1;
                            stats.latencies_us.push(us);
                        }
                        Ok(_) => stats.latencies_us.push(us),
                        Err(e) => stats.error(format!("{q:?}: {e}")),
                    },
                    Ok((status, body)) => {
                        stats.error(format!("{q:?}: status {status}: {}", String::from_utf8_lossy(&body)))
                    }
                    Err(e) => stats.error(format!("{q:?}: {e}")),
                }
            }
            stats
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        if let Ok(s) = t.await {
            all.merge(s);
        }
    }
    all.wall_s = start.elapsed().as_secs_f64();
    all
}

/// The same searches straight through the store, the query vectors embedded beforehand.
async fn direct_load(store: Arc<Store>, vectors: Arc<Vec<Vec<f32>>>, clients: usize, secs: f64) -> Stats {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (store, vectors) = (store.clone(), vectors.clone());
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut state = 1000 + c as u64;
            while Instant::now() < deadline {
                let r = splitmix(&mut state) % 100;
                let i = (splitmix(&mut state) % vectors.len() as u64) as usize;
                let v = if r < 40 { &vectors[i % 5] } else { &vectors[i] };
                let t = Instant::now();
                match store.search(SEARCH_COLUMN, v, 10, None).await {
                    Ok(hits) if hits.is_empty() => stats.empty += 1,
                    Ok(_) => {}
                    Err(e) => {
                        stats.error(e.to_string());
                        continue;
                    }
                }
                stats.latencies_us.push(t.elapsed().as_micros() as u64);
            }
            stats
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        if let Ok(s) = t.await {
            all.merge(s);
        }
    }
    all.wall_s = start.elapsed().as_secs_f64();
    all
}

fn multipart(file: &Path) -> Result<(String, Vec<u8>)> {
    let boundary = "medleybenchboundary7d1f";
    let name = file.file_name().and_then(|n| n.to_str()).ok_or("file name")?;
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::fs::read(file)?);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok((format!("multipart/form-data; boundary={boundary}"), body))
}

/// Upload `files` one after another, then wait until every job is finished.
async fn upload_and_wait(addr: &str, files: &[PathBuf]) -> Result<(usize, usize, f64)> {
    let t = Instant::now();
    let mut conn = Conn::new(addr);
    let mut ids = Vec::new();
    for f in files {
        let (ct, body) = multipart(f)?;
        let (status, answer) = conn.request("POST", "/v1/media", Some((&ct, &body))).await?;
        if status != 202 {
            return Err(err(format!(
                "upload of {}: status {status}: {}",
                f.display(),
                String::from_utf8_lossy(&answer)
            )));
        }
        let v: Value = serde_json::from_slice(&answer)?;
        ids.push(v["job_id"].as_str().ok_or("no job_id")?.to_string());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (mut done, mut failed) = (0, 0);
    for id in &ids {
        loop {
            let (_, answer) = conn.request("GET", &format!("/v1/jobs/{id}"), None).await?;
            let v: Value = serde_json::from_slice(&answer)?;
            match v["status"].as_str() {
                Some("done") => done += 1,
                Some("failed") => {
                    eprintln!("bench serve: job {id} failed: {}", v["error"]);
                    failed += 1
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            break;
        }
    }
    Ok((done, failed, t.elapsed().as_secs_f64()))
}

/// Load runs against a served table at each client count, after a warm-up.
fn serve_runs(rt: &tokio::runtime::Runtime, addr: &str, args: &Args) -> Vec<Value> {
    rt.block_on(http_load(addr, 4, 2.0, None));
    args.clients
        .iter()
        .map(|&c| {
            let s = rt.block_on(http_load(addr, c, args.secs, None));
            if let Some(e) = &s.first_error {
                eprintln!("bench serve: {c} clients: first error: {e}");
            }
            s.json(c)
        })
        .collect()
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    // The load generator on one thread, so the server keeps the machine's other core(s).
    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let photos = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"];
    let small_files: Vec<PathBuf> = photos
        .iter()
        .map(|p| args.media.join("photos").join(p))
        .chain(["bikes.mp4", "earth.mp4"].iter().map(|v| args.media.join("videos").join(v)))
        .chain([args.media.join("music/1918.mp3")])
        .collect();
    let small_db = args.dir.join("small.lance");
    eprintln!("bench serve: the small real table ({} files, default pipeline)", small_files.len());
    small_table(&args.medley, &small_db, &small_files)?;
    let small_uri = small_db.to_str().ok_or("non-UTF-8 path")?.to_string();
    let dims = store_rt.block_on(Store::open_existing(&small_uri))?.dims().clone();
    let gen_db = args.dir.join(format!("generated-{}.lance", args.rows));
    eprintln!("bench serve: the generated table ({} rows)", args.rows);
    store_rt.block_on(generated_table(&gen_db, args.rows, &dims))?;
    let gen_uri = gen_db.to_str().ok_or("non-UTF-8 path")?.to_string();

    let home = ModelHome::from_env();
    let encoder = TextEncoder::minilm(&Runtime::load(&home)?, &home)?;
    let vectors: Arc<Vec<Vec<f32>>> = Arc::new(encoder.encode(QUERIES)?);
    let t = Instant::now();
    for q in QUERIES {
        encoder.encode(&[q])?;
    }
    let encode_ms = t.elapsed().as_secs_f64() * 1000.0 / QUERIES.len() as f64;

    let mut report = json!({ "rows": args.rows, "secs_per_run": args.secs, "text_encode_one_ms": encode_ms });
    for (name, uri, db) in [("gen", &gen_uri, &gen_db), ("small", &small_uri, &small_db)] {
        if !args.only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("bench serve: {name}: direct store searches");
        let store = Arc::new(store_rt.block_on(Store::open_existing(uri))?);
        store_rt.block_on(direct_load(store.clone(), vectors.clone(), 2, 1.0));
        let direct: Vec<Value> = args
            .clients
            .iter()
            .map(|&c| store_rt.block_on(direct_load(store.clone(), vectors.clone(), c, args.secs.min(5.0))).json(c))
            .collect();
        drop(store);
        eprintln!("bench serve: {name}: medley serve");
        // Served from a copy, so uploads by hand or a crash never touch the kept table.
        let served = args.dir.join(format!("served-{name}.lance"));
        copy_dir(db, &served)?;
        let server = Server::start(&args.medley, &served, &args.dir.join(format!("served-{name}.state")))?;
        let http = serve_runs(&client_rt, &server.addr, &args);
        drop(server);
        report[name] = json!({ "direct": direct, "http": http });
    }
    if args.only.iter().any(|o| o == "mixed") {
        eprintln!("bench serve: mixed: searches while uploads are indexed");
        let served = args.dir.join("served-mixed.lance");
        copy_dir(&gen_db, &served)?;
        let server = Server::start(&args.medley, &served, &args.dir.join("served-mixed.state"))?;
        let uploads: Vec<PathBuf> = photos
            .iter()
            .map(|p| args.media.join("photos").join(p))
            .chain(
                ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "earth.mp4"]
                    .iter()
                    .map(|v| args.media.join("videos").join(v)),
            )
            .chain(
                ["cat_upright.mp4", "cat_rotated90.mp4", "slideshow.mp4", "bbb_audio.m4a"]
                    .iter()
                    .map(|f| args.fixtures.join(f)),
            )
            .collect();
        let clients = args.clients.iter().copied().max().unwrap_or(50);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let addr = server.addr.clone();
        let (search, indexed) = client_rt.block_on(async {
            let searches = tokio::spawn(async move { http_load(&addr, clients, 0.0, Some(stop_rx)).await });
            let indexed = upload_and_wait(&server.addr, &uploads).await;
            let _ = stop_tx.send(true);
            (searches.await, indexed)
        });
        let search = search.map_err(|e| err(e.to_string()))?;
        let (done, failed, index_s) = indexed?;
        if let Some(e) = &search.first_error {
            eprintln!("bench serve: mixed: first error: {e}");
        }
        drop(server);
        report["mixed"] = json!({
            "uploads": uploads.len(), "jobs_done": done, "jobs_failed": failed, "index_wall_s": index_s,
            "search": search.json(clients),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Value) {
    println!(
        "\nbench serve: GET /v1/search?k=10 on loopback, {} s per run; text encode alone {:.1} ms",
        r["secs_per_run"],
        r["text_encode_one_ms"].as_f64().unwrap_or(f64::NAN)
    );
    println!("{:<34} {:>7} {:>9} {:>9} {:>9} {:>7}", "run", "clients", "req/s", "p50 ms", "p99 ms", "errors");
    let row = |label: &str, v: &Value| {
        println!(
            "{:<34} {:>7} {:>9.1} {:>9.2} {:>9.2} {:>7}",
            label,
            v["clients"],
            v["req_per_s"].as_f64().unwrap_or(f64::NAN),
            v["p50_ms"].as_f64().unwrap_or(f64::NAN),
            v["p99_ms"].as_f64().unwrap_or(f64::NAN),
            v["errors"]
        )
    };
    for (name, label) in [("gen", format!("generated {} rows", r["rows"])), ("small", "small real table".into())] {
        let Some(t) = r.get(name) else { continue };
        for v in t["http"].as_array().into_iter().flatten() {
            row(&format!("{label}: medley serve"), v);
        }
        for v in t["direct"].as_array().into_iter().flatten() {
            row(&format!("{label}: store direct"), v);
        }
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let gen_http = r.get("gen").and_then(|g| g["http"].as_array());
    let at = |c: u64| gen_http.and_then(|h| h.iter().find(|v| v["clients"].as_u64() == Some(c)));
    if let Some(v) = at(50) {
        let (rps, p99, errors) = (
            v["req_per_s"].as_f64().unwrap_or(0.0),
            v["p99_ms"].as_f64().unwrap_or(f64::INFINITY),
            v["errors"].as_u64().unwrap_or(1),
        );
        println!(
            "target: 50 clients >= 300 req/s, p99 < 100 ms, no errors: {} ({rps:.0} req/s, p99 {p99:.1} ms, {errors} errors)",
            verdict(rps >= 300.0 && p99 < 100.0 && errors == 0)
        );
    }
    if let Some(v) = at(1) {
        let p50 = v["p50_ms"].as_f64().unwrap_or(f64::INFINITY);
        println!("target: 1 client p50 < 10 ms: {} ({p50:.2} ms)", verdict(p50 < 10.0));
    }
    if let Some(m) = r.get("mixed") {
        let p99 = m["search"]["p99_ms"].as_f64().unwrap_or(f64::INFINITY);
        println!("target: mixed p99 < 250 ms: {} ({p99:.1} ms)", verdict(p99 < 250.0));
    }
    if let Some(m) = r.get("mixed") {
        row(
            &format!(
                "mixed: {} uploads indexed in {:.0} s",
                m["jobs_done"],
                m["index_wall_s"].as_f64().unwrap_or(f64::NAN)
            ),
            &m["search"],
        );
    }
}
