use std::sync::Mutex;

use ort::{session::Session, value::TensorRef};

use crate::spec::{ImageSpec, ModelSpec};
use crate::{ModelError, ModelHome, Runtime, l2_normalize, runtime::rows};

/// An image encoder built from a model's `[image]` section: square RGB in, an embedding and
/// (for classifiers) class probabilities out. EfficientNet-Lite, a CLIP image tower, ...
pub struct ImageEncoder {
    id: String,
    session: Mutex<Session>,
    spec: ImageSpec,
    labels: Vec<String>,
    /// What the label bridge embeds per class (the spec's `label_texts`, else the labels).
    label_texts: Vec<String>,
    /// Each class's mean probability over the reference pictures, when the spec has them.
    label_prior: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
pub struct ImageOutput {
    pub embedding: Vec<f32>,
    /// Class probabilities (empty for towers without a classifier head).
    pub probabilities: Vec<f32>,
}

impl ImageEncoder {
    /// EfficientNet-Lite0: 224 px, `(x - 127) / 128`, 1280-d, ImageNet-1k labels.
    pub fn efficientnet_lite0(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        Self::load(rt, home, "efficientnet-lite0")
    }

    /// The image encoder of model `id`, as its `model.toml` describes it.
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let section = spec.section(&spec.image, "image")?;
        Self::from_section(rt, spec, section)
    }

    pub(crate) fn from_section(rt: &Runtime, spec: &ModelSpec, section: &ImageSpec) -> Result<Self, ModelError> {
        let labels = match &section.labels {
            Some(file) => spec.labels(file)?,
            None => Vec::new(),
        };
        let label_texts = spec.label_texts(section.label_texts.as_deref(), &labels)?;
        let label_prior = section.label_prior.as_deref().map(|f| spec.label_numbers(f, &labels)).transpose()?;
        let session = rt.session(&spec.id, &spec.file(&section.file)?)?;
        Ok(Self { id: spec.id.clone(), session, spec: section.clone(), labels, label_texts, label_prior })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn input_size(&self) -> u32 {
        self.spec.size
    }
    pub fn dim(&self) -> usize {
        self.spec.dim
    }
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
    /// One text per label saying what it means, for the label bridge to embed: the spec's
    /// `label_texts` file (phrasings separated by ` | `), else the labels themselves.
    pub fn label_texts(&self) -> &[String] {
        &self.label_texts
    }
    /// The spec's `label_prior`: each class's mean probability over a reference picture set.
    pub fn label_prior(&self) -> Option<&[f32]> {
        self.label_prior.as_deref()
    }

    /// Normalise packed RGB24 images of `input_size()` squared pixels into an NCHW batch.
    pub fn preprocess(&self, images: &[&[u8]]) -> Result<Vec<f32>, ModelError> {
        preprocess(&self.spec, &self.id, images)
    }

    /// Encode a batch of packed RGB24 images of `input_size()` squared pixels.
    pub fn encode(&self, images: &[&[u8]]) -> Result<Vec<ImageOutput>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let input = self.preprocess(images)?;
        self.run(&input, images.len())
    }

    /// Embed square RGB24 pictures of `size` pixels a side, resized (bilinear) to the model's
    /// own input size when it differs: a second vision model (a CLIP tower) on the frames
    /// decoded for the first.
    pub fn embed_squares(&self, images: &[&[u8]], size: u32) -> Result<Vec<Vec<f32>>, ModelError> {
        let own = self.spec.size;
        let resized: Vec<Vec<u8>> = if size == own {
            Vec::new()
        } else {
            images.iter().map(|rgb| resize_square(rgb, size as usize, own as usize)).collect()
        };
        let refs: Vec<&[u8]> = if size == own { images.to_vec() } else { resized.iter().map(Vec::as_slice).collect() };
        Ok(self.encode(&refs)?.into_iter().map(|o| o.embedding).collect())
    }

    /// Run on an already normalised NCHW batch (also used by the golden checks).
    pub fn run(&self, nchw: &[f32], batch: usize) -> Result<Vec<ImageOutput>, ModelError> {
        let n = self.spec.size as usize;
        let tensor =
            TensorRef::from_array_view(([batch, 3, n, n], nchw)).map_err(|e| ModelError::input(&self.id, e))?;
        let mut inputs = ort::inputs![self.spec.input.as_str() => tensor];
        inputs.extend(crate::spec::fixed_values(&self.spec.fixed_inputs, &self.id)?);
        let mut session = crate::runtime::lock(&self.session);
        let outputs = session.run(inputs).map_err(|e| ModelError::session(&self.id, e))?;
        let mut embeddings = rows(&outputs, &self.spec.embedding, &self.id, self.spec.dim)?;
        if self.spec.normalize {
            embeddings.iter_mut().for_each(|e| l2_normalize(e));
        }
        let probabilities = match &self.spec.logits {
            Some(name) => rows(&outputs, name, &self.id, self.labels.len())?
                .into_iter()
                .map(|l| activate(self.spec.activation.as_deref(), l))
                .collect(),
            None => vec![Vec::new(); batch],
        };
        Ok(embeddings
            .into_iter()
            .zip(probabilities)
            .map(|(embedding, probabilities)| ImageOutput { embedding, probabilities })
            .collect())
    }
}

pub(crate) fn preprocess(spec: &ImageSpec, id: &str, images: &[&[u8]]) -> Result<Vec<f32>, ModelError> {
    let n = spec.size as usize;
    let plane = n * n;
    let mut input = vec![0f32; images.len() * 3 * plane];
    for (b, img) in images.iter().enumerate() {
        if img.len() != plane * 3 {
            return Err(ModelError::input(id, format!("image {b} has {} bytes, expected {n}x{n} RGB24", img.len())));
        }
        let base = b * 3 * plane;
        for (i, px) in img.chunks_exact(3).enumerate() {
            for c in 0..3 {
                input[base + c * plane + i] = (f32::from(px[c]) - spec.mean[c]) / spec.std[c];
            }
        }
    }
    Ok(input)
}

/// Apply a head's activation (`softmax` by default, `sigmoid`, `none`).
pub(crate) fn activate(kind: Option<&str>, logits: Vec<f32>) -> Vec<f32> {
    match kind.unwrap_or("softmax") {
        "sigmoid" => logits.into_iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
        "none" => logits,
        _ => softmax(&logits),
    }
}

pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|x| x / sum).collect()
}

/// Bilinear resize of a square RGB24 picture from `from` to `to` pixels a side.
pub(crate) fn resize_square(rgb: &[u8], from: usize, to: usize) -> Vec<u8> {
    if from == to || from == 0 {
        return rgb.to_vec();
    }
    let scale = from as f32 / to as f32;
    let mut out = vec![0u8; to * to * 3];
    for y in 0..to {
        let sy = ((y as f32 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f32);
        let (y0, fy) = (sy.floor() as usize, sy.fract());
        let y1 = (y0 + 1).min(from - 1);
        for x in 0..to {
            let sx = ((x as f32 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f32);
            let (x0, fx) = (sx.floor() as usize, sx.fract());
            let x1 = (x0 + 1).min(from - 1);
            for c in 0..3 {
                let p = |yy: usize, xx: usize| f32::from(rgb[(yy * from + xx) * 3 + c]);
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                out[(y * to + x) * 3 + c] = (top * (1.0 - fy) + bottom * fy).round() as u8;
            }
        }
    }
    out
}
