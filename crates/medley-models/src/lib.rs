//! ONNX Runtime encoders for medley: where the runtime and models live, one shared session
//! per model, and the role adapters the index pipeline uses (image, audio, text, label bridge).

mod audio;
mod bridge;
mod error;
mod home;
mod image;
mod runtime;
mod text;

pub use audio::AudioEncoder;
pub use bridge::LabelBridge;
pub use error::ModelError;
pub use home::ModelHome;
pub use image::{ImageEncoder, ImageOutput};
pub use runtime::Runtime;
pub use text::TextEncoder;

/// L2-normalise in place; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
