use std::sync::Mutex;

use ort::{session::Session, value::TensorRef};

use crate::{ModelError, ModelHome, Runtime, runtime::rows};

/// An ImageNet classifier with a pooled embedding (EfficientNet-Lite): square RGB in,
/// embedding and class probabilities out.
pub struct ImageEncoder {
    id: String,
    session: Mutex<Session>,
    size: u32,
    mean: [f32; 3],
    std: [f32; 3],
    labels: Vec<String>,
    dim: usize,
}

#[derive(Debug, Clone)]
pub struct ImageOutput {
    pub embedding: Vec<f32>,
    pub probabilities: Vec<f32>,
}

impl ImageEncoder {
    /// EfficientNet-Lite0: 224 px, `(x - 127) / 128`, 1280-d, ImageNet-1k labels.
    pub fn efficientnet_lite0(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        Self::load(rt, home, "efficientnet-lite0", 224, [127.0; 3], [128.0; 3], 1280)
    }

    fn load(rt: &Runtime, home: &ModelHome, id: &str, size: u32, mean: [f32; 3], std: [f32; 3], dim: usize) -> Result<Self, ModelError> {
        let dir = home.model_dir(id)?;
        let labels_path = dir.join("labels.txt");
        let labels: Vec<String> = std::fs::read_to_string(&labels_path)
            .map_err(|_| ModelError::Missing { what: "label file", path: labels_path, env: "MEDLEY_HOME" })?
            .lines()
            .map(str::to_string)
            .collect();
        let session = rt.session(id, &dir.join("model.onnx"))?;
        Ok(Self { id: id.to_string(), session, size, mean, std, labels, dim })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn input_size(&self) -> u32 {
        self.size
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Encode a batch of packed RGB24 images of `input_size()` squared pixels.
    pub fn encode(&self, images: &[&[u8]]) -> Result<Vec<ImageOutput>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.size as usize;
        let plane = n * n;
        let mut input = vec![0f32; images.len() * 3 * plane];
        for (b, img) in images.iter().enumerate() {
            assert_eq!(img.len(), plane * 3, "image must be {n}x{n} RGB24");
            let base = b * 3 * plane;
            for (i, px) in img.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    input[base + c * plane + i] = (f32::from(px[c]) - self.mean[c]) / self.std[c];
                }
            }
        }
        self.run(&input, images.len())
    }

    /// Run on an already normalised NCHW batch (also used by the golden checks).
    pub fn run(&self, nchw: &[f32], batch: usize) -> Result<Vec<ImageOutput>, ModelError> {
        let n = self.size as usize;
        let tensor = TensorRef::from_array_view(([batch, 3, n, n], nchw)).map_err(|e| ModelError::session(&self.id, e))?;
        let mut session = self.session.lock().expect("session lock");
        let outputs = session.run(ort::inputs!["pixel_values" => tensor]).map_err(|e| ModelError::session(&self.id, e))?;
        let embeddings = rows(&outputs, "embedding", &self.id, self.dim)?;
        let logits = rows(&outputs, "logits", &self.id, self.labels.len())?;
        Ok(embeddings
            .into_iter()
            .zip(logits)
            .map(|(embedding, logits)| ImageOutput { embedding, probabilities: softmax(&logits) })
            .collect())
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|x| x / sum).collect()
}
