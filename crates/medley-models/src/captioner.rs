use crate::image::preprocess;
use crate::runtime::Array;
use crate::seq2seq::{GenerateOptions, Generated, Seq2Seq};
use crate::spec::{ImageSpec, ModelSpec};
use crate::{ModelError, ModelHome, Runtime};

/// An image captioner (VisionEncoderDecoder / BLIP-style export): RGB images in, text out, on
/// the same encoder-decoder loop as Whisper.
pub struct ImageCaptioner {
    s2s: Seq2Seq,
    image: ImageSpec,
}

impl ImageCaptioner {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let s2s = Seq2Seq::from_spec(rt, spec)?;
        let image = s2s.spec().image.clone().ok_or_else(|| ModelError::Spec {
            path: spec.dir.join("model.toml"),
            message: "captioner has no [seq2seq.image] section".into(),
        })?;
        Ok(Self { s2s, image })
    }

    pub fn id(&self) -> &str {
        self.s2s.id()
    }
    pub fn input_size(&self) -> u32 {
        self.image.size
    }
    pub fn seq2seq(&self) -> &Seq2Seq {
        &self.s2s
    }

    /// Generate token ids for packed RGB24 images of `input_size()` squared pixels.
    pub fn generate(&self, images: &[&[u8]], opts: &GenerateOptions) -> Result<Vec<Generated>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.image.size as usize;
        let x = Array::F32(vec![images.len(), 3, n, n], preprocess(&self.image, self.id(), images)?);
        let state = self.s2s.encode(&x)?;
        self.s2s.generate(&state, opts, None)
    }

    /// One caption per image.
    pub fn caption(&self, images: &[&[u8]], opts: &GenerateOptions) -> Result<Vec<String>, ModelError> {
        self.generate(images, opts)?.iter().map(|g| self.s2s.decode(&g.tokens)).collect()
    }

    /// Caption one packed RGB24 picture of `size` squared pixels (any size: it is resized
    /// bilinearly to the captioner's input first).
    pub fn caption_square(&self, rgb: &[u8], size: u32, opts: &GenerateOptions) -> Result<String, ModelError> {
        let resized = resize_square(rgb, size as usize, self.image.size as usize);
        Ok(self.caption(&[&resized], opts)?.remove(0))
    }
}

/// Bilinear resize of a square RGB24 picture from `from` to `to` pixels a side.
fn resize_square(rgb: &[u8], from: usize, to: usize) -> Vec<u8> {
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
