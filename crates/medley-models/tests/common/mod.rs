//! Shared by the model tests: the runtime, golden tensors written by the export scripts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use medley_models::{ModelHome, Runtime};
use serde_json::Value;

pub fn runtime() -> (&'static Runtime, ModelHome) {
    static RT: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    let home = ModelHome::from_env();
    (RT.get_or_init(|| Runtime::load(&home).expect("ONNX Runtime: run `cargo xtask setup`")), home)
}

pub struct Case {
    pub dir: PathBuf,
    pub json: Value,
}

impl Case {
    /// The golden case `name` (or the first one) of a model folder.
    pub fn load(model_dir: &Path, name: Option<&str>) -> Self {
        let dir = model_dir.join("golden");
        let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
        let case = match name {
            Some(n) => json["cases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == n)
                .unwrap_or_else(|| panic!("no golden case {n}"))
                .clone(),
            None => json["cases"][0].clone(),
        };
        Self { dir, json: case }
    }
    pub fn bytes(&self, kind: &str, name: &str) -> (Vec<u8>, Vec<usize>) {
        let entry = &self.json[kind][name];
        let shape = entry["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        (std::fs::read(self.dir.join(entry["file"].as_str().unwrap())).unwrap(), shape)
    }
    pub fn f32s(&self, kind: &str, name: &str) -> (Vec<f32>, Vec<usize>) {
        let (b, shape) = self.bytes(kind, name);
        (b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), shape)
    }
    pub fn i64s(&self, kind: &str, name: &str) -> (Vec<i64>, Vec<usize>) {
        let (b, shape) = self.bytes(kind, name);
        (b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(), shape)
    }
    pub fn i32s(&self, kind: &str, name: &str) -> (Vec<i32>, Vec<usize>) {
        let (b, shape) = self.bytes(kind, name);
        (b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect(), shape)
    }
    pub fn tolerance(&self) -> f32 {
        self.json["tolerance"].as_f64().unwrap() as f32
    }
    /// Max |got - want| of a float output, asserted within tolerance; returns it.
    pub fn check_flat(&self, output: &str, got: &[f32]) -> f32 {
        let (want, _) = self.f32s("outputs", output);
        assert_eq!(got.len(), want.len(), "{output}: length");
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let tol = self.tolerance();
        eprintln!("{output}: max |rust - python| = {diff:.2e} (tolerance {tol:.0e})");
        assert!(diff <= tol, "{output}: max |rust - python| = {diff} > {tol}");
        diff
    }
    pub fn check(&self, output: &str, got: &[Vec<f32>]) -> f32 {
        self.check_flat(output, &got.concat())
    }
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}
