//! On-screen text: PP-OCR text detection and recognition (scaffold; filled in by the OCR work).

use serde::Deserialize;

use crate::spec::ModelSpec;
use crate::{ModelError, ModelHome, Runtime};

/// The `[ocr]` section of a `model.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct OcrSpec {}

/// One line of text read from a picture.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrLine {
    pub text: String,
    /// Mean character confidence, 0..1.
    pub score: f32,
    /// `[x0, y0, x1, y1]` in pixels of the picture read.
    pub bbox: [f32; 4],
}

/// Reads the lines of text in an RGB picture.
pub struct TextReader {
    id: String,
}

impl TextReader {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(_rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        spec.section(&spec.ocr, "ocr")?;
        Ok(Self { id: spec.id.clone() })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lines of text in an RGB24 picture of `width` x `height`, top to bottom.
    pub fn read(&self, _rgb: &[u8], _width: u32, _height: u32) -> Result<Vec<OcrLine>, ModelError> {
        Ok(Vec::new())
    }
}
