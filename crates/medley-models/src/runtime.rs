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
    /// The shared library the process's environment was loaded from.
    library: std::path::PathBuf,
    threads: usize,
    requested: Device,
    /// Why `Auto` runs on CPU (set once, printed once).
    fallback: Arc<OnceLock<String>>,
    /// Load float graphs even where an int8 variant exists ([`Runtime::float_only`]).
    float_only: bool,
}

impl Runtime {
    /// Load ONNX Runtime from `home`, on CPU (the pipeline's default).
    pub fn load(home: &ModelHome) -> Result<Self, ModelError> {
        Self::with_device(home, Device::Cpu)
    }

    /// Load ONNX Runtime and choose a device. `Cuda` fails here when the library has no CUDA
    /// execution provider; `Auto` then runs on CPU and says why once (on stderr and in
    /// [`Runtime::fallback_reason`]).
    ///
    /// The library is the GPU build when setup installed one and the device may be CUDA
    /// ([`ModelHome::gpu_ort_library`]), else the CPU build; the first `Runtime` of a process
    /// decides, as ONNX Runtime has one environment per process.
    pub fn with_device(home: &ModelHome, device: Device) -> Result<Self, ModelError> {
        let (env, lib) = environment(&Self::library_for(home, device)?)?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let rt = Self {
            env,
            library: lib.clone(),
            threads,
            requested: device,
            fallback: Arc::new(OnceLock::new()),
            float_only: false,
        };
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

    /// The same environment with sessions on the CPU: for models made of many tiny sequential
    /// calls (voice activity, one 32 ms chunk per call), where a GPU's per-call launch and copy
    /// costs exceed the work.
    pub fn on_cpu(&self) -> Self {
        Self { requested: Device::Cpu, ..self.clone() }
    }

    /// The same runtime, loading float graphs even where an int8 variant exists (to compare
    /// the two).
    pub fn float_only(&self) -> Self {
        Self { float_only: true, ..self.clone() }
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

    /// The library a process's first `Runtime` on `device` loads: the GPU build for `Auto` and
    /// `Cuda` when setup installed one, else the CPU build (checked to exist).
    pub fn library_for(home: &ModelHome, device: Device) -> Result<std::path::PathBuf, ModelError> {
        match device {
            Device::Auto | Device::Cuda => home.gpu_ort_library().map_or_else(|| home.ort_library(), Ok),
            Device::Cpu => home.ort_library(),
        }
    }

    /// The shared library this process's ONNX Runtime was loaded from.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The loaded ONNX Runtime library's version string (for example `1.32.0`).
    pub fn library_version(&self) -> Result<String, ModelError> {
        let lib = self.library.clone();
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
    /// float32 on an H100, cosine to float32 at least 0.999 (checked at export). On the CPU, its
    /// int8 variant (`<stem>.int8.onnx`, [`crate::GraphSpec::int8`]) is: aiSFX's int8 CNN
    /// is 2x the windows per second, cosine to float32 at least 0.98; musicnn-mtt's, with its
    /// timbral convolutions in int8, about 1.8x, cosine at least 0.995 (both checked at export).
    pub(crate) fn session(&self, model: &str, path: &Path) -> Result<Mutex<Session>, ModelError> {
        self.session_with_cpu_graph(model, path, self.int8_variant(path))
    }

    /// A session for embedding query texts with the text graph at `path`: on the CPU, its
    /// query variant (`<stem>.queries-int8.onnx`, [`crate::GraphSpec::queries`]) when there is
    /// one. MiniLM's is 1.6-1.9x the texts per second of float32 at batch 32 (short queries),
    /// cosine to float32 at least 0.997 (checked at export); stored vectors stay float32.
    pub(crate) fn query_session(&self, model: &str, path: &Path) -> Result<Mutex<Session>, ModelError> {
        let queries = Some(path.with_extension("queries-int8.onnx")).filter(|p| !self.float_only && p.exists());
        let cpu_graph = queries.or_else(|| self.int8_variant(path));
        self.session_with_cpu_graph(model, path, cpu_graph)
    }

    /// A session for the graph at `path`, loading `cpu_graph` instead where it runs on the CPU.
    fn session_with_cpu_graph(
        &self,
        model: &str,
        path: &Path,
        cpu_graph: Option<std::path::PathBuf>,
    ) -> Result<Mutex<Session>, ModelError> {
        let fp16 = Some(path.with_extension("fp16.onnx")).filter(|p| p.exists());
        let (gpu_path, cpu_path) = (fp16.as_deref().unwrap_or(path), cpu_graph.as_deref().unwrap_or(path));
        match self.device() {
            Device::Cpu | Device::Auto => self.build(model, cpu_path, false),
            Device::Cuda if self.requested == Device::Cuda => self.build(model, gpu_path, true),
            Device::Cuda => self.build(model, gpu_path, true).or_else(|e| {
                self.fall_back(format!("the CUDA execution provider failed for {model}: {e}"));
                self.build(model, cpu_path, false)
            }),
        }
        .map(Mutex::new)
    }

    /// The int8 variant of the graph at `path` that CPU sessions load, if there is one.
    fn int8_variant(&self, path: &Path) -> Option<std::path::PathBuf> {
        Some(path.with_extension("int8.onnx")).filter(|p| !self.float_only && p.exists())
    }

    /// The id rows record for model `id` whose graph is `path`: `id.int8` where this runtime
    /// runs its int8 variant, so a table says which numbers produced its vectors, and tables
    /// indexed with the float graph are indexed again rather than mixed.
    pub(crate) fn graph_id(&self, id: &str, path: &Path) -> String {
        match (self.device(), self.int8_variant(path)) {
            (Device::Cpu | Device::Auto, Some(_)) => format!("{id}.int8"),
            _ => id.to_string(),
        }
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
            builder =
                builder.with_execution_providers([cuda_provider().build().error_on_failure()]).map_err(|e| err(&e))?;
        }
        builder.commit_from_file(path).map_err(|e| err(&e))
    }
}

/// The CUDA execution provider's options: cuDNN's exhaustive convolution search (ONNX
/// Runtime's default) and NHWC layouts for convolutions, which Hopper's tensor cores prefer
/// (EfficientNet-Lite0 fp16 on an H200: 17,075 against 14,165 images/s at batch 128 with I/O
/// binding, 7,882 against 5,973 at batch 32 from host arrays; `xtask/gpu/check.sh`). Two
/// variables override them for measuring: `MEDLEY_CUDNN_CONV_SEARCH=heuristic|default`,
/// `MEDLEY_CUDA_NHWC=0`.
fn cuda_provider() -> ort::ep::CUDA {
    use ort::ep::cuda::ConvAlgorithmSearch;
    let mut ep = ort::ep::CUDA::default();
    match std::env::var("MEDLEY_CUDNN_CONV_SEARCH").as_deref() {
        Ok("heuristic") => ep = ep.with_conv_algorithm_search(ConvAlgorithmSearch::Heuristic),
        Ok("default") => ep = ep.with_conv_algorithm_search(ConvAlgorithmSearch::Default),
        _ => {}
    }
    ep.with_prefer_nhwc(std::env::var_os("MEDLEY_CUDA_NHWC").is_none_or(|v| v != "0"))
}

/// Lock a mutex even when a thread panicked while holding it: what it guards here (sessions,
/// the environment) has no invariant a panic can leave half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// ONNX Runtime allows one environment per process: it is built on first use and shared by
/// every `Runtime` (whatever its device) after that; the library it came from is returned with it.
fn environment(lib: &Path) -> Result<(ort::environment::Environment, std::path::PathBuf), ModelError> {
    type Loaded = (ort::environment::Environment, std::path::PathBuf);
    static ENV: Mutex<Option<Loaded>> = Mutex::new(None);
    let mut env = lock(&ENV);
    if let Some(e) = env.as_ref() {
        return Ok(e.clone());
    }
    let load_err =
        |e: &dyn std::fmt::Display| ModelError::RuntimeLoad { path: lib.to_path_buf(), message: e.to_string() };
    if let Some(dir) = lib.parent() {
        preload_cuda_libraries(dir);
    }
    let built = ort::init_from(lib).map_err(|e| load_err(&e))?.with_name("medley").build().map_err(|e| load_err(&e))?;
    *env = Some((built.clone(), lib.to_path_buf()));
    Ok((built, lib.to_path_buf()))
}

/// The CUDA, cuBLAS, cuFFT, cuRAND and cuDNN libraries ONNX Runtime's CUDA provider needs, by
/// file-name prefix (what onnxruntime's own `preload_dlls` loads).
const CUDA_LIBRARIES: [&str; 6] =
    ["libcudart.so", "libcublasLt.so", "libcublas.so", "libcufft.so", "libcurand.so", "libcudnn"];

/// Load, process-wide (`RTLD_GLOBAL`), the CUDA libraries found in the folders `dir/cuda-lib-dirs`
/// lists (one per line; setup writes it beside the GPU build of ONNX Runtime). The CUDA provider
/// and cuDNN then find them by soname when they are loaded, without `LD_LIBRARY_PATH`. A library
/// that fails to load is skipped: the provider then reports what it lacks when a session asks
/// for CUDA, which is where the user hears of it.
fn preload_cuda_libraries(dir: &Path) {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    let Ok(list) = std::fs::read_to_string(dir.join("cuda-lib-dirs")) else { return };
    let mut pending: Vec<std::path::PathBuf> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            CUDA_LIBRARIES.iter().any(|prefix| name.starts_with(prefix)) && name.contains(".so")
        })
        .collect();
    pending.sort();
    // Dependencies among them (cuBLAS needs cuBLASLt, cuDNN's parts need cuDNN) are met by
    // retrying what failed until a pass loads nothing new.
    loop {
        let before = pending.len();
        pending.retain(|path| {
            // SAFETY: these are the NVIDIA runtime libraries; their initialisers have no
            // preconditions. The handles are leaked on purpose: they must stay loaded for the
            // life of the process, as the ONNX Runtime environment does.
            match unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) } {
                Ok(lib) => {
                    std::mem::forget(lib);
                    false
                }
                Err(_) => true,
            }
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    for path in &pending {
        tracing::debug!("CUDA library not loaded: {}", path.display());
    }
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
