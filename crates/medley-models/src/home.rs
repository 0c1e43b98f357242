use std::path::{Path, PathBuf};

use crate::error::ModelError;

/// Where setup put the ONNX Runtime library and the exported models.
///
/// Resolution: `MEDLEY_HOME`, else `$XDG_CACHE_HOME/medley`, else `~/.cache/medley`. The
/// library can be overridden alone with `MEDLEY_ORT_LIB` (or ort's own `ORT_DYLIB_PATH`).
#[derive(Debug, Clone)]
pub struct ModelHome {
    root: PathBuf,
}

impl ModelHome {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn from_env() -> Self {
        if let Some(home) = std::env::var_os("MEDLEY_HOME") {
            return Self::new(home);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        Self::new(cache.join("medley"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ONNX Runtime shared library, checked to exist.
    pub fn ort_library(&self) -> Result<PathBuf, ModelError> {
        let path = ["MEDLEY_ORT_LIB", "ORT_DYLIB_PATH"]
            .iter()
            .find_map(std::env::var_os)
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("onnxruntime").join("libonnxruntime.so"));
        exists(path, "ONNX Runtime library", "MEDLEY_ORT_LIB")
    }

    /// The ONNX Runtime library with the CUDA execution provider that `cargo xtask setup --gpu`
    /// installs (from the PyPI `onnxruntime-gpu` wheel), if it is there and no override is set.
    /// It runs the CPU provider too. Beside it, `cuda-lib-dirs` lists the folders holding the
    /// CUDA and cuDNN libraries its provider links against (the PyPI `nvidia-*` wheels'), which
    /// [`crate::Runtime`] loads first so that no `LD_LIBRARY_PATH` is needed.
    pub fn gpu_ort_library(&self) -> Option<PathBuf> {
        if ["MEDLEY_ORT_LIB", "ORT_DYLIB_PATH"].iter().any(|v| std::env::var_os(v).is_some()) {
            return None;
        }
        Some(self.root.join("onnxruntime-gpu").join("libonnxruntime.so")).filter(|p| p.exists())
    }

    /// A model's folder (holding `model.toml`, its graphs and side files), checked to exist.
    pub fn model_dir(&self, id: &str) -> Result<PathBuf, ModelError> {
        let dir = self.root.join("models").join(id);
        exists(dir.join("model.toml"), "model", "MEDLEY_HOME")?;
        Ok(dir)
    }
}

fn exists(path: PathBuf, what: &'static str, env: &'static str) -> Result<PathBuf, ModelError> {
    if path.exists() { Ok(path) } else { Err(ModelError::Missing { what, path, env }) }
}
