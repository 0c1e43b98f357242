//! Shot boundaries: TransNetV2 over every frame as a tiny picture (scaffold; filled in by the
//! TransNetV2 work).

use serde::Deserialize;

use crate::spec::ModelSpec;
use crate::{ModelError, ModelHome, Runtime};

/// The `[shots]` section of a `model.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct ShotSpec {}

/// Finds the frames where one shot ends and the next begins.
pub struct ShotDetector {
    id: String,
}

impl ShotDetector {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(_rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        spec.section(&spec.shots, "shots")?;
        Ok(Self { id: spec.id.clone() })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}
