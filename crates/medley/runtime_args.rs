//! `--device` and `--hwaccel`, shared by the commands that run models; they win over the
//! pipeline file's `[runtime]` section.

use medley_pipeline::{DeviceChoice, HwAccelChoice, RuntimeConfig};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct RuntimeArgs {
    /// Where the models run: auto (CUDA when ONNX Runtime has its CUDA provider and a GPU
    /// answers, else the CPU, saying why), cpu, or cuda (exit 2 before any work when this
    /// machine cannot) [default: the pipeline's runtime.device, auto].
    #[arg(long, value_parser = ["auto", "cpu", "cuda"])]
    device: Option<String>,
    /// Video decoding: auto (NVDEC when the models run on CUDA and FFmpeg has a CUDA device),
    /// none, or cuda (exit 2 before any work when unavailable) [default: the pipeline's
    /// runtime.hwaccel, auto].
    #[arg(long, value_parser = ["auto", "none", "cuda"])]
    hwaccel: Option<String>,
}

impl RuntimeArgs {
    /// The pipeline's `[runtime]` with these flags applied over it.
    pub fn apply(&self, mut config: RuntimeConfig) -> Result<RuntimeConfig, String> {
        if let Some(d) = &self.device {
            config.device = d.parse::<DeviceChoice>()?;
        }
        if let Some(h) = &self.hwaccel {
            config.hwaccel = h.parse::<HwAccelChoice>()?;
        }
        Ok(config)
    }
}

/// The pipeline file given (or the built-in default), checked, with `--device` / `--hwaccel`
/// applied over its `[runtime]`.
pub fn load_pipeline(
    home: &medley_models::ModelHome,
    path: Option<&std::path::Path>,
    runtime: &RuntimeArgs,
) -> anyhow::Result<medley_pipeline::PipelineConfig> {
    let mut config = crate::index::load_pipeline(home, path)?;
    config.runtime = runtime.apply(config.runtime).map_err(|e| crate::config_err(anyhow::anyhow!(e)))?;
    Ok(config)
}
