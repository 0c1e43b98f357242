use std::sync::Mutex;

use ort::{session::Session, value::TensorRef};

use crate::spec::{AudioSpec, ModelSpec};
use crate::{ModelError, ModelHome, Runtime, l2_normalize, runtime::rows};

/// An audio encoder on raw mono waveforms built from a model's `[audio]` section (the front
/// end is inside the graph), one embedding per fixed-length window: aiSFX, a CLAP audio tower.
pub struct AudioEncoder {
    id: String,
    session: Mutex<Session>,
    spec: AudioSpec,
}

impl AudioEncoder {
    /// aiSFX: 44.1 kHz, windows of 101,376 samples (2.3 s), 512-d.
    pub fn aisfx(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        Self::load(rt, home, "aisfx")
    }

    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let section = spec.section(&spec.audio, "audio")?.clone();
        let session = rt.session(&spec.id, &spec.file(&section.file)?)?;
        Ok(Self { id: spec.id.clone(), session, spec: section })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }
    pub fn window(&self) -> usize {
        self.spec.window
    }
    pub fn dim(&self) -> usize {
        self.spec.dim
    }

    /// Encode windows of exactly `window()` samples each.
    pub fn encode(&self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let input = concat_windows(&self.id, windows, self.spec.window)?;
        let tensor = TensorRef::from_array_view(([windows.len(), self.spec.window], input.as_slice()))
            .map_err(|e| ModelError::input(&self.id, e))?;
        let mut session = crate::runtime::lock(&self.session);
        let outputs = session
            .run(ort::inputs![self.spec.input.as_str() => tensor])
            .map_err(|e| ModelError::session(&self.id, e))?;
        let mut out = rows(&outputs, &self.spec.embedding, &self.id, self.spec.dim)?;
        if self.spec.normalize {
            out.iter_mut().for_each(|e| l2_normalize(e));
        }
        Ok(out)
    }
}

pub(crate) fn concat_windows(id: &str, windows: &[&[f32]], window: usize) -> Result<Vec<f32>, ModelError> {
    let mut input = Vec::with_capacity(windows.len() * window);
    for (i, w) in windows.iter().enumerate() {
        if w.len() != window {
            return Err(ModelError::input(id, format!("window {i} has {} samples, expected {window}", w.len())));
        }
        input.extend_from_slice(w);
    }
    Ok(input)
}
