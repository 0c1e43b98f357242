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

    /// Caption packed RGB24 pictures of `size` squared pixels (any size: each is resized
    /// bilinearly to the captioner's input first), one caption per picture.
    pub fn caption_squares(
        &self,
        pictures: &[&[u8]],
        size: u32,
        opts: &GenerateOptions,
    ) -> Result<Vec<String>, ModelError> {
        let to = self.image.size as usize;
        let resized: Vec<Vec<u8>> =
            pictures.iter().map(|rgb| crate::image::resize_square(rgb, size as usize, to)).collect();
        let refs: Vec<&[u8]> = resized.iter().map(Vec::as_slice).collect();
        self.caption(&refs, opts)
    }
}
