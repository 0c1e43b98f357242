use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use ort::session::SessionInputValue;
use ort::session::{Session, builder::GraphOptimizationLevel};
use ort::value::TensorRef;

use crate::error::ModelError;
use crate::home::ModelHome;

/// Where sessions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// CUDA when ONNX Runtime can use it, else CPU (saying why, once).
    #[default]
    Auto,
    Cpu,
    /// CUDA or an error with the reason.
    Cuda,
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!("unknown device {other:?} (auto, cpu, cuda)")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

/// The process's ONNX Runtime environment (one per process), loaded from a shared library,
/// and the device sessions are placed on.
#[derive(Clone)]
pub struct Runtime {
    env: ort::environment::Environment,
    threads: usize,
    requested: Device,
    /// Why `Auto` runs on CPU (set once, printed once).
    fallback: Arc<OnceLock<String>>,
}

impl Runtime {
    /// Load ONNX Runtime from `home`, on CPU (the pipeline's default).
    pub fn load(home: &ModelHome) -> Result<Self, ModelError> {
        Self::with_device(home, Device::Cpu)
    }

    /// Load ONNX Runtime and choose a device. `Cuda` fails here when the library has no CUDA
    /// execution provider; `Auto` then runs on CPU and says why once (on stderr and in
    /// [`Runtime::fallback_reason`]).
    pub fn with_device(home: &ModelHome, device: Device) -> Result<Self, ModelError> {
        let lib = home.ort_library()?;
        let env = environment(&lib)?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let rt = Self { env, threads, requested: device, fallback: Arc::new(OnceLock::new()) };
        if device != Device::Cpu {
            use ort::ep::ExecutionProvider;
            let available = ort::ep::CUDA::is_available().unwrap_or(false);
            if !available {
                let why = format!("the ONNX Runtime library at {} has no CUDA execution provider", lib.display());
                if device == Device::Cuda {
                    return Err(ModelError::Device { device: "cuda", message: why });
                }
                rt.fall_back(why);
            }
        }
        Ok(rt)
    }

    /// The device sessions are created on now: `Cuda`, or `Cpu` (also after an `Auto` fallback).
    pub fn device(&self) -> Device {
        match self.requested {
            Device::Cpu => Device::Cpu,
            Device::Cuda => Device::Cuda,
            Device::Auto if self.fallback.get().is_some() => Device::Cpu,
            Device::Auto => Device::Cuda,
        }
    }

    /// Why `Auto` fell back to CPU, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.get().map(String::as_str)
    }

    fn fall_back(&self, why: String) {
        if self.fallback.set(why.clone()).is_ok() {
            tracing::info!("device auto: using CPU because {why}");
        }
    }

    /// What the loaded ONNX Runtime library says about its build (version branch, commit).
    pub fn build_info(&self) -> String {
        ort::info().trim().to_string()
    }

    /// The ONNX Runtime library's version string (for example `1.32.0`).
    pub fn library_version(home: &ModelHome) -> Result<String, ModelError> {
        let lib = home.ort_library()?;
        let err = |e: &dyn std::fmt::Display| ModelError::RuntimeLoad { path: lib.clone(), message: e.to_string() };
        // SAFETY: the library is ONNX Runtime (already loaded by the environment, so this only
        // adds a reference); `OrtGetApiBase` has this signature in every release and returns a
        // static struct whose `GetVersionString` returns a static NUL-terminated string.
        unsafe {
            let handle = libloading::Library::new(&lib).map_err(|e| err(&e))?;
            let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
                handle.get(b"OrtGetApiBase").map_err(|e| err(&e))?;
            let base = get_base();
            if base.is_null() {
                return Err(err(&"OrtGetApiBase returned null"));
            }
            Ok(std::ffi::CStr::from_ptr(((*base).GetVersionString)()).to_string_lossy().into_owned())
        }
    }

    /// The execution providers the loaded library was built with (for example
    /// `CUDAExecutionProvider`, `CPUExecutionProvider`), in its order of preference.
    pub fn execution_providers(&self) -> Result<Vec<String>, ModelError> {
        let api = ort::api();
        let list_err = |what: &str| ModelError::Device { device: "any", message: what.to_string() };
        let (get, release) = (api.GetAvailableProviders, api.ReleaseAvailableProviders);
        let mut names: *mut *mut std::ffi::c_char = std::ptr::null_mut();
        let mut count: std::ffi::c_int = 0;
        // SAFETY: the API fills `names` with `count` NUL-terminated strings that stay valid
        // until `release` is called with the same pointer and count, which happens below.
        unsafe {
            let status = get(&mut names, &mut count);
            if !status.0.is_null() {
                (api.ReleaseStatus)(status.0);
                return Err(list_err("GetAvailableProviders failed"));
            }
            if names.is_null() {
                return Ok(Vec::new());
            }
            let out = (0..count.max(0) as usize)
                .map(|i| std::ffi::CStr::from_ptr(*names.add(i)).to_string_lossy().into_owned())
                .collect();
            let _ = release(names, count);
            Ok(out)
        }
    }

    /// Intra-op threads per session (the machine's cores).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// One session for a model file. Intra-op threads use the machine's cores; the pipeline
    /// runs one model at a time per worker, so inter-op parallelism would oversubscribe.
    /// On CUDA, a graph's float16 variant (`<stem>.fp16.onnx` beside it, see
    /// [`crate::GraphSpec::fp16`]) is loaded when present: 1.2x the images per second of
    /// float32 on an H100, cosine to float32 at least 0.999 (checked at export).
    pub(crate) fn session(&self, model: &str, path: &Path) -> Result<Mutex<Session>, ModelError> {
        let fp16 = path.with_extension("fp16.onnx");
        let gpu_path = if fp16.exists() { fp16.as_path() } else { path };
        match self.device() {
            Device::Cpu | Device::Auto => self.build(model, path, false),
            Device::Cuda if self.requested == Device::Cuda => self.build(model, gpu_path, true),
            Device::Cuda => self.build(model, gpu_path, true).or_else(|e| {
                self.fall_back(format!("the CUDA execution provider failed for {model}: {e}"));
                self.build(model, path, false)
            }),
        }
        .map(Mutex::new)
    }

    fn build(&self, model: &str, path: &Path, cuda: bool) -> Result<Session, ModelError> {
        let err = |e: &dyn std::fmt::Display| ModelError::session(model, e);
        let mut builder = Session::builder(&self.env)
            .map_err(|e| err(&e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| err(&e))?
            .with_intra_threads(self.threads)
            .map_err(|e| err(&e))?
            .with_inter_threads(1)
            .map_err(|e| err(&e))?
            // Idle intra-op threads spin by default, waiting for the next call: with several
            // sessions and FFmpeg's decoder threads sharing a few cores, that spinning takes
            // the CPU the others need. `MEDLEY_ORT_SPINNING=1` restores it.
            .with_intra_op_spinning(std::env::var_os("MEDLEY_ORT_SPINNING").is_some_and(|v| v == "1"))
            .map_err(|e| err(&e))?;
        if cuda {
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| err(&e))?;
        }
        builder.commit_from_file(path).map_err(|e| err(&e))
    }
}

/// Lock a mutex even when a thread panicked while holding it: what it guards here (sessions,
/// the environment) has no invariant a panic can leave half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// ONNX Runtime allows one environment per process: it is built on first use and shared by
/// every `Runtime` (whatever its device) after that.
fn environment(lib: &Path) -> Result<ort::environment::Environment, ModelError> {
    static ENV: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);
    let mut env = lock(&ENV);
    if let Some(e) = env.as_ref() {
        return Ok(e.clone());
    }
    let load_err =
        |e: &dyn std::fmt::Display| ModelError::RuntimeLoad { path: lib.to_path_buf(), message: e.to_string() };
    let built = ort::init_from(lib).map_err(|e| load_err(&e))?.with_name("medley").build().map_err(|e| load_err(&e))?;
    *env = Some(built.clone());
    Ok(built)
}

/// A float or integer tensor with its shape, as adapters pass them between graphs.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    F32(Vec<usize>, Vec<f32>),
    I64(Vec<usize>, Vec<i64>),
    I32(Vec<usize>, Vec<i32>),
}

impl Array {
    pub fn shape(&self) -> &[usize] {
        match self {
            Self::F32(s, _) | Self::I64(s, _) | Self::I32(s, _) => s,
        }
    }
    pub fn f32s(&self) -> Option<&[f32]> {
        if let Self::F32(_, d) = self { Some(d) } else { None }
    }
    /// A view of the array as a session input: ONNX Runtime reads the data in place.
    fn to_input(&self) -> ort::Result<SessionInputValue<'_>> {
        Ok(match self {
            Self::F32(s, d) => TensorRef::from_array_view((s.clone(), d.as_slice()))?.into(),
            Self::I64(s, d) => TensorRef::from_array_view((s.clone(), d.as_slice()))?.into(),
            Self::I32(s, d) => TensorRef::from_array_view((s.clone(), d.as_slice()))?.into(),
        })
    }
}

/// Run a session on named arrays; returns the named float outputs (all of them when `wanted`
/// is empty).
pub(crate) fn run_named(
    session: &Mutex<Session>,
    model: &str,
    inputs: &[(&str, &Array)],
    wanted: &[&str],
) -> Result<HashMap<String, Array>, ModelError> {
    let mut values = Vec::with_capacity(inputs.len());
    for (name, a) in inputs {
        values.push((name.to_string(), a.to_input().map_err(|e| ModelError::input(model, e))?));
    }
    let mut session = lock(session);
    let outputs = session.run(values).map_err(|e| ModelError::session(model, e))?;
    let mut out = HashMap::new();
    for (name, value) in outputs.iter() {
        if !wanted.is_empty() && !wanted.contains(&name) {
            continue;
        }
        let (shape, data) =
            value.try_extract_tensor::<f32>().map_err(|e| ModelError::output(model, format!("{name}: {e}")))?;
        let shape = shape.iter().map(|&d| d as usize).collect();
        out.insert(name.to_string(), Array::F32(shape, data.to_vec()));
    }
    for w in wanted {
        if !out.contains_key(*w) {
            return Err(ModelError::output(model, format!("no output named {w}")));
        }
    }
    Ok(out)
}

/// Copy a named 2-d float output of a run into one `Vec` per batch row.
pub(crate) fn rows(
    outputs: &ort::session::SessionOutputs<'_>,
    name: &str,
    model: &str,
    expect_cols: usize,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let out_err = |m: String| ModelError::Output { model: model.to_string(), message: m };
    let value = outputs.get(name).ok_or_else(|| out_err(format!("no output named {name}")))?;
    let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| out_err(e.to_string()))?;
    if shape.len() != 2 || shape[1] as usize != expect_cols {
        return Err(out_err(format!("{name} has shape {shape:?}, expected [batch, {expect_cols}]")));
    }
    Ok(data.chunks_exact(expect_cols).map(<[f32]>::to_vec).collect())
}

/// Split a `[batch, cols]` array into rows, checking the width.
pub(crate) fn split_rows(a: &Array, model: &str, name: &str, cols: usize) -> Result<Vec<Vec<f32>>, ModelError> {
    let data = a.f32s().ok_or_else(|| ModelError::output(model, format!("{name} is not float")))?;
    let shape = a.shape();
    if shape.len() != 2 || shape[1] != cols {
        return Err(ModelError::output(model, format!("{name} has shape {shape:?}, expected [batch, {cols}]")));
    }
    Ok(data.chunks_exact(cols).map(<[f32]>::to_vec).collect())
}
