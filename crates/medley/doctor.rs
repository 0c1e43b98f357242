//! `medley doctor`: what this machine has and what medley will use on it: the ONNX Runtime
//! library and its execution providers, the GPUs the driver sees, FFmpeg and its hardware
//! decoders, the models in the cache, and (with `--db`) the database.

use std::process::ExitCode;

use anyhow::Result;
use medley_models::{Device, ModelHome, ModelSpec, Runtime};
use serde::Serialize;

/// Show what this machine has and what medley will use: ONNX Runtime and its execution
/// providers, GPUs, FFmpeg and its hardware decoders, the models in the cache, the database.
/// Exit status 0 when medley can run here, 2 when it cannot (no loadable ONNX Runtime, or a
/// database it cannot read).
#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Also describe this database (tables, rows, schema version).
    #[arg(long)]
    db: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    medley: &'static str,
    home: String,
    onnx_runtime: OnnxRuntime,
    /// What `--device auto` resolves to here, and why when it is the CPU.
    device_auto: DeviceChoice,
    gpus: Gpus,
    ffmpeg: Ffmpeg,
    models: Vec<Model>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<Database>,
}

#[derive(Serialize)]
struct Ffmpeg {
    version: String,
    hwaccels: Vec<String>,
}

#[derive(Serialize)]
struct OnnxRuntime {
    library: Option<String>,
    version: Option<String>,
    build_info: Option<String>,
    execution_providers: Vec<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct DeviceChoice {
    device: String,
    reason: Option<String>,
}

#[derive(Serialize)]
struct Gpus {
    devices: Vec<Gpu>,
    /// Why no GPU is listed (no `nvidia-smi`, or it failed).
    note: Option<String>,
}

#[derive(Serialize)]
struct Gpu {
    name: String,
    memory_mib: Option<u64>,
    driver: String,
}

#[derive(Serialize)]
struct Model {
    id: String,
    role: Option<String>,
    source: Option<String>,
    size_bytes: u64,
    /// Golden inputs and outputs saved at export (checked by `cargo xtask models`).
    golden_files: usize,
    error: Option<String>,
}

#[derive(Serialize)]
struct Database {
    uri: String,
    schema_version: Option<&'static str>,
    media_rows: Option<usize>,
    segments_rows: Option<usize>,
    failures_rows: Option<usize>,
    error: Option<String>,
}

pub async fn run(home: &ModelHome, a: DoctorArgs) -> Result<ExitCode> {
    let (onnx_runtime, device_auto) = onnx_runtime(home);
    let database = match &a.db {
        Some(uri) => Some(database(uri).await),
        None => None,
    };
    let report = Report {
        medley: env!("CARGO_PKG_VERSION"),
        home: home.root().display().to_string(),
        onnx_runtime,
        device_auto,
        gpus: gpus(),
        ffmpeg: {
            let f = medley_media::ffmpeg_info();
            Ffmpeg { version: f.version, hwaccels: f.hwaccels }
        },
        models: models(home),
        database,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    let usable = report.onnx_runtime.error.is_none() && report.database.as_ref().is_none_or(|d| d.error.is_none());
    Ok(if usable { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn onnx_runtime(home: &ModelHome) -> (OnnxRuntime, DeviceChoice) {
    let library = Runtime::library_for(home, Device::Auto).ok().map(|p| p.display().to_string());
    match Runtime::with_device(home, Device::Auto) {
        Ok(rt) => {
            let library = Some(rt.library().display().to_string());
            let version = rt.library_version().ok();
            let (execution_providers, error) = match rt.execution_providers() {
                Ok(eps) => (eps, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            let choice =
                DeviceChoice { device: rt.device().to_string(), reason: rt.fallback_reason().map(str::to_string) };
            (OnnxRuntime { library, version, build_info: Some(rt.build_info()), execution_providers, error }, choice)
        }
        Err(e) => (
            OnnxRuntime {
                library,
                version: None,
                build_info: None,
                execution_providers: Vec::new(),
                error: Some(e.to_string()),
            },
            DeviceChoice { device: "none".into(), reason: Some(e.to_string()) },
        ),
    }
}

/// GPUs as the NVIDIA driver reports them; `nvidia-smi` ships with the driver, so its absence
/// means no usable NVIDIA GPU.
fn gpus() -> Gpus {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"])
        .output();
    match out {
        Err(e) => Gpus { devices: Vec::new(), note: Some(format!("nvidia-smi not runnable ({e}): no NVIDIA driver")) },
        Ok(o) if !o.status.success() => Gpus {
            devices: Vec::new(),
            note: Some(format!("nvidia-smi failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        },
        Ok(o) => {
            let devices = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let f: Vec<&str> = l.split(',').map(str::trim).collect();
                    Gpu {
                        name: f.first().unwrap_or(&"").to_string(),
                        memory_mib: f.get(1).and_then(|m| m.parse().ok()),
                        driver: f.get(2).unwrap_or(&"").to_string(),
                    }
                })
                .collect();
            Gpus { devices, note: None }
        }
    }
}

fn models(home: &ModelHome) -> Vec<Model> {
    let Ok(entries) = std::fs::read_dir(home.root().join("models")) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("model.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let dir = home.root().join("models").join(&id);
            let golden_files = std::fs::read_dir(dir.join("golden")).map(|d| d.count()).unwrap_or(0);
            let size_bytes = dir_size(&dir);
            match ModelSpec::load(home, &id) {
                Ok(spec) => Model {
                    id,
                    role: Some(spec.role),
                    source: Some(spec.source).filter(|s| !s.is_empty()),
                    size_bytes,
                    golden_files,
                    error: None,
                },
                Err(e) => Model { id, role: None, source: None, size_bytes, golden_files, error: Some(e.to_string()) },
            }
        })
        .collect()
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn database(uri: &str) -> Database {
    let mut d = Database {
        uri: uri.to_string(),
        schema_version: None,
        media_rows: None,
        segments_rows: None,
        failures_rows: None,
        error: None,
    };
    // Opening checks every table's columns and schema version: success means this medley reads it.
    match medley_store::Store::open_existing(uri).await {
        Ok(store) => {
            d.schema_version = Some(medley_store::SCHEMA_VERSION);
            let counts = async {
                Ok::<_, medley_store::StoreError>((
                    store.count_media().await?,
                    store.count_segments().await?,
                    store.count_failures().await?,
                ))
            };
            match counts.await {
                Ok((m, s, f)) => (d.media_rows, d.segments_rows, d.failures_rows) = (Some(m), Some(s), Some(f)),
                Err(e) => d.error = Some(e.to_string()),
            }
        }
        Err(e) => d.error = Some(e.to_string()),
    }
    d
}

fn print_text(r: &Report) {
    println!("medley {} (home {})", r.medley, r.home);
    let o = &r.onnx_runtime;
    println!("\nONNX Runtime");
    println!("  library     {}", o.library.as_deref().unwrap_or("not found"));
    if let Some(v) = &o.version {
        println!("  version     {v}");
    }
    if let Some(b) = &o.build_info {
        println!("  build       {b}");
    }
    if !o.execution_providers.is_empty() {
        println!("  providers   {}", o.execution_providers.join(", "));
    }
    if let Some(e) = &o.error {
        println!("  error       {e}");
    }
    let why = r.device_auto.reason.as_deref().map(|w| format!(" ({w})")).unwrap_or_default();
    println!("  --device auto uses {}{why}", r.device_auto.device);
    println!("\nGPUs");
    for g in &r.gpus.devices {
        let mem = g.memory_mib.map(|m| format!(", {m} MiB")).unwrap_or_default();
        println!("  {}{mem}, driver {}", g.name, g.driver);
    }
    if let Some(n) = &r.gpus.note {
        println!("  none: {n}");
    }
    println!("\nFFmpeg {}", r.ffmpeg.version);
    let hw = if r.ffmpeg.hwaccels.is_empty() { "none".to_string() } else { r.ffmpeg.hwaccels.join(", ") };
    println!("  hardware decoders: {hw}");
    println!("\nModels ({})", r.models.len());
    for m in &r.models {
        let mib = m.size_bytes as f64 / (1024.0 * 1024.0);
        match &m.error {
            Some(e) => println!("  {:<20} unreadable: {e}", m.id),
            None => println!(
                "  {:<20} {:<16} {mib:>7.1} MiB  golden files {:<3} {}",
                m.id,
                m.role.as_deref().unwrap_or("?"),
                m.golden_files,
                m.source.as_deref().unwrap_or("")
            ),
        }
    }
    if let Some(d) = &r.database {
        println!("\nDatabase {}", d.uri);
        match &d.error {
            Some(e) => println!("  cannot be read: {e}"),
            None => println!(
                "  schema version {}; media {} rows, segments {}, failures {}",
                d.schema_version.unwrap_or("?"),
                d.media_rows.unwrap_or(0),
                d.segments_rows.unwrap_or(0),
                d.failures_rows.unwrap_or(0)
            ),
        }
    }
}
