//! `[runtime]`: where the models run (`device`) and how video is decoded (`hwaccel`), resolved
//! once before any work: `auto` picks CUDA when this machine has it and says why not
//! otherwise; `cuda` on a machine without it is refused, naming what is missing.

use medley_media::HwAccel;
use medley_models::{Device, ModelError, ModelHome, Runtime};
use serde::Deserialize;

/// `[runtime]` of a pipeline file; `medley index|watch|serve --device/--hwaccel` win over it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `auto` (CUDA when ONNX Runtime has the CUDA provider, else CPU), `cpu` or `cuda`.
    #[serde(default)]
    pub device: DeviceChoice,
    /// `auto` (NVDEC when the models run on CUDA and FFmpeg has a CUDA device), `none` or `cuda`.
    #[serde(default)]
    pub hwaccel: HwAccelChoice,
    /// What a run resolved these to on this machine (set when the models load).
    #[serde(skip)]
    pub used: Option<UsedRuntime>,
}

/// The device and decoder a run actually uses (recorded in its `--json` summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsedRuntime {
    pub device: Device,
    pub hwaccel: HwAccel,
}

/// `[runtime] device`, also `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub struct DeviceChoice(pub Device);

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<Device>().map(Self).map_err(|e| format!("runtime.device: {e}"))
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// `[runtime] hwaccel`, also `--hwaccel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum HwAccelChoice {
    #[default]
    Auto,
    None,
    Cuda,
}

impl std::str::FromStr for HwAccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!("runtime.hwaccel: unknown hwaccel {other:?} (auto, none, cuda)")),
        }
    }
}

impl TryFrom<String> for HwAccelChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// What a run uses, resolved from [`RuntimeConfig`] on this machine.
pub struct ResolvedRuntime {
    pub runtime: Runtime,
    pub hwaccel: HwAccel,
}

impl RuntimeConfig {
    /// Load ONNX Runtime on the chosen device and settle the decoder. `cuda` for either is an
    /// error (before any work) when this machine cannot do it.
    pub fn resolve(&self, home: &ModelHome) -> Result<ResolvedRuntime, ModelError> {
        let runtime = Runtime::with_device(home, self.device.0)?;
        let hwaccel = match self.hwaccel {
            HwAccelChoice::None => HwAccel::None,
            HwAccelChoice::Cuda => {
                HwAccel::Cuda
                    .check()
                    .map_err(|why| ModelError::Device { device: "cuda", message: format!("hwaccel cuda: {why}") })?;
                HwAccel::Cuda
            }
            // Frames decoded on the GPU pay off when the models run there too.
            HwAccelChoice::Auto if runtime.device() == Device::Cuda => match HwAccel::Cuda.check() {
                Ok(()) => HwAccel::Cuda,
                Err(why) => {
                    // Said once, like the device's own fallback (`Runtime::with_device`).
                    tracing::info!("hwaccel auto: software decoding, because {why}");
                    HwAccel::None
                }
            },
            HwAccelChoice::Auto => HwAccel::None,
        };
        Ok(ResolvedRuntime { runtime, hwaccel })
    }
}
