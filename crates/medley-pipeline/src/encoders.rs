use medley_models::{AudioEncoder, ImageEncoder, LabelBridge, ModelError, ModelHome, Runtime, TextEncoder};
use medley_store::VectorDims;

/// The models one index run uses, loaded once and shared.
pub struct Encoders {
    pub image: ImageEncoder,
    pub audio: AudioEncoder,
    pub text: TextEncoder,
    pub bridge: LabelBridge,
}

/// How many class names a ConSE bridge vector mixes.
const BRIDGE_TOP_K: usize = 5;
const LABEL_TEMPLATE: &str = "a photo of a {}";

impl Encoders {
    pub fn load(home: &ModelHome) -> Result<Self, ModelError> {
        let rt = Runtime::load(home)?;
        let image = ImageEncoder::efficientnet_lite0(&rt, home)?;
        let audio = AudioEncoder::aisfx(&rt, home)?;
        let text = TextEncoder::minilm(&rt, home)?;
        let cache = home.model_dir(image.id())?;
        let bridge = LabelBridge::cached(&text, image.labels(), LABEL_TEMPLATE, BRIDGE_TOP_K, &cache)?;
        Ok(Self { image, audio, text, bridge })
    }

    pub fn dims(&self) -> VectorDims {
        VectorDims { visual: self.image.dim(), audio: self.audio.dim(), bridge: self.text.dim() }
    }

    /// Recorded with each row so a table says which models produced its vectors.
    pub fn models(&self) -> String {
        [self.image.id(), self.audio.id(), self.text.id()].join("+")
    }
}
