use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{what} not found at {path}; run `cargo xtask setup` (or set {env})")]
    Missing { what: &'static str, path: PathBuf, env: &'static str },
    #[error("loading ONNX Runtime from {path}: {message}")]
    RuntimeLoad { path: PathBuf, message: String },
    #[error("model {model}: {message}")]
    Session { model: String, message: String },
    #[error("model {model}: tokenizer: {message}")]
    Tokenizer { model: String, message: String },
    #[error("model {model}: unexpected output: {message}")]
    Output { model: String, message: String },
    #[error("model {model}: bad input: {message}")]
    Input { model: String, message: String },
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("device {device}: {message}")]
    Device { device: &'static str, message: String },
    #[error("batcher: {0}")]
    Batcher(String),
}

impl ModelError {
    pub(crate) fn session(model: &str, e: impl std::fmt::Display) -> Self {
        Self::Session { model: model.to_string(), message: e.to_string() }
    }
    pub(crate) fn input(model: &str, e: impl std::fmt::Display) -> Self {
        Self::Input { model: model.to_string(), message: e.to_string() }
    }
    pub(crate) fn output(model: &str, e: impl std::fmt::Display) -> Self {
        Self::Output { model: model.to_string(), message: e.to_string() }
    }
}
