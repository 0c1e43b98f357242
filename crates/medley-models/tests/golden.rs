//! The Rust adapters compute what Python's onnxruntime computed on the same graphs and inputs
//! (golden tensors written by onnx_models/export.py next to each model), within tolerance.
//! Needs the models from `cargo xtask setup`.

use std::path::Path;

use medley_models::{AudioEncoder, ImageEncoder, ModelHome, Runtime, TextEncoder};
use serde_json::Value;

fn runtime() -> (&'static Runtime, ModelHome) {
    static RT: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    let home = ModelHome::from_env();
    (RT.get_or_init(|| Runtime::load(&home).expect("ONNX Runtime: run `cargo xtask setup`")), home)
}

struct Case {
    dir: std::path::PathBuf,
    json: Value,
}

impl Case {
    fn load(model_dir: &Path) -> Self {
        let dir = model_dir.join("golden");
        let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
        Self { dir, json: json["cases"][0].clone() }
    }
    fn bytes(&self, kind: &str, name: &str) -> (Vec<u8>, Vec<usize>) {
        let entry = &self.json[kind][name];
        let shape = entry["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        (std::fs::read(self.dir.join(entry["file"].as_str().unwrap())).unwrap(), shape)
    }
    fn f32s(&self, kind: &str, name: &str) -> (Vec<f32>, Vec<usize>) {
        let (b, shape) = self.bytes(kind, name);
        (b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), shape)
    }
    fn i64s(&self, name: &str) -> (Vec<i64>, Vec<usize>) {
        let (b, shape) = self.bytes("inputs", name);
        (b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(), shape)
    }
    fn check(&self, output: &str, got: &[Vec<f32>]) {
        let (want, shape) = self.f32s("outputs", output);
        let tol = self.json["tolerance"].as_f64().unwrap() as f32;
        assert_eq!(got.len(), shape[0]);
        let flat: Vec<f32> = got.concat();
        assert_eq!(flat.len(), want.len());
        let diff = flat.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff <= tol, "{output}: max |rust - python| = {diff} > {tol}");
    }
}

#[test]
fn efficientnet_lite0_matches_python() {
    let (rt, home) = runtime();
    let enc = ImageEncoder::efficientnet_lite0(rt, &home).unwrap();
    let case = Case::load(&home.model_dir("efficientnet-lite0").unwrap());
    let (x, shape) = case.f32s("inputs", "pixel_values");
    let out = enc.run(&x, shape[0]).unwrap();
    case.check("embedding", &out.iter().map(|o| o.embedding.clone()).collect::<Vec<_>>());
    assert_eq!(enc.labels().len(), 1000);
    for o in &out {
        assert!((o.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4, "softmax sums to one");
    }
}

#[test]
fn aisfx_matches_python() {
    let (rt, home) = runtime();
    let enc = AudioEncoder::aisfx(rt, &home).unwrap();
    let case = Case::load(&home.model_dir("aisfx").unwrap());
    let (x, shape) = case.f32s("inputs", "waveform");
    let windows: Vec<&[f32]> = x.chunks_exact(shape[1]).collect();
    case.check("embedding", &enc.encode(&windows).unwrap());
}

#[test]
fn minilm_matches_python_and_tokenizes_like_it() {
    let (rt, home) = runtime();
    let enc = TextEncoder::minilm(rt, &home).unwrap();
    let case = Case::load(&home.model_dir("minilm-l6").unwrap());
    let (ids, shape) = case.i64s("input_ids");
    let (mask, _) = case.i64s("attention_mask");
    let (types, _) = case.i64s("token_type_ids");
    case.check("sentence_embedding", &enc.run(&ids, &mask, &types, shape[0], shape[1]).unwrap());
    // The Rust tokenizer gives the same result from the raw sentences.
    case.check("sentence_embedding", &enc.encode(&["a photo of a dog", "music that is slow and calm"]).unwrap());
}
