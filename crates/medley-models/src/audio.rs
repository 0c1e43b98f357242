use std::sync::Mutex;

use ort::{session::Session, value::TensorRef};

use crate::{ModelError, ModelHome, Runtime, runtime::rows};

/// A general-audio encoder on raw mono waveforms (aiSFX: the log-mel front end is inside the
/// graph), one embedding per fixed-length window.
pub struct AudioEncoder {
    id: String,
    session: Mutex<Session>,
    sample_rate: u32,
    window: usize,
    dim: usize,
}

impl AudioEncoder {
    /// aiSFX: 44.1 kHz, windows of 101,376 samples (2.3 s), 512-d.
    pub fn aisfx(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        let id = "aisfx";
        let session = rt.session(id, &home.model_dir(id)?.join("model.onnx"))?;
        Ok(Self { id: id.to_string(), session, sample_rate: 44_100, window: 101_376, dim: 512 })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
    pub fn window(&self) -> usize {
        self.window
    }
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Encode windows of exactly `window()` samples each.
    pub fn encode(&self, windows: &[&[f32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = Vec::with_capacity(windows.len() * self.window);
        for w in windows {
            assert_eq!(w.len(), self.window, "audio window must be {} samples", self.window);
            input.extend_from_slice(w);
        }
        let tensor = TensorRef::from_array_view(([windows.len(), self.window], input.as_slice())).map_err(|e| ModelError::session(&self.id, e))?;
        let mut session = self.session.lock().expect("session lock");
        let outputs = session.run(ort::inputs!["waveform" => tensor]).map_err(|e| ModelError::session(&self.id, e))?;
        rows(&outputs, "embedding", &self.id, self.dim)
    }
}
