use std::path::Path;
use std::sync::Mutex;

use ort::session::{Session, builder::GraphOptimizationLevel};

use crate::error::ModelError;
use crate::home::ModelHome;

/// The process's ONNX Runtime environment (one per process), loaded from a shared library.
#[derive(Clone)]
pub struct Runtime {
    env: ort::environment::Environment,
    threads: usize,
}

impl Runtime {
    /// Load ONNX Runtime from `home` and size its thread pool to the machine.
    pub fn load(home: &ModelHome) -> Result<Self, ModelError> {
        let lib = home.ort_library()?;
        let load_err = |e: &dyn std::fmt::Display| ModelError::RuntimeLoad { path: lib.clone(), message: e.to_string() };
        let env = ort::init_from(&lib).map_err(|e| load_err(&e))?.with_name("medley").build().map_err(|e| load_err(&e))?;
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Ok(Self { env, threads })
    }

    /// One session for a model file. Intra-op threads use the machine's cores; the pipeline
    /// runs one model at a time per worker, so inter-op parallelism would oversubscribe.
    pub(crate) fn session(&self, model: &str, path: &Path) -> Result<Mutex<Session>, ModelError> {
        let err = |e: &dyn std::fmt::Display| ModelError::session(model, e);
        let session = Session::builder(&self.env)
            .map_err(|e| err(&e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| err(&e))?
            .with_intra_threads(self.threads)
            .map_err(|e| err(&e))?
            .with_inter_threads(1)
            .map_err(|e| err(&e))?
            .commit_from_file(path)
            .map_err(|e| err(&e))?;
        Ok(Mutex::new(session))
    }
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
