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

/// On the CPU the int8 variant runs (the golden tensors above are its outputs), and its
/// embeddings stay those of the float graph.
#[test]
fn aisfx_int8_keeps_the_float_embeddings() {
    let (rt, home) = runtime();
    let dir = home.model_dir("aisfx").unwrap();
    assert!(dir.join("model.int8.onnx").exists(), "setup writes the int8 variant when it keeps quality");
    let case = Case::load(&dir);
    let (x, shape) = case.f32s("inputs", "waveform");
    let windows: Vec<&[f32]> = x.chunks_exact(shape[1]).collect();
    let int8 = AudioEncoder::aisfx(rt, &home).unwrap().encode(&windows).unwrap();
    let float = AudioEncoder::aisfx(&rt.float_only(), &home).unwrap().encode(&windows).unwrap();
    for (a, b) in int8.iter().zip(&float) {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let cosine = dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt());
        assert!(cosine >= 0.98, "int8 against float: cosine {cosine}");
        assert!(a != b, "two different graphs ran");
    }
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

/// Queries embed with MiniLM's int8 query graph on the CPU: close to the float graph's
/// vectors (which the tables store), and a text's vector is the same in any batch (per-token
/// activation scales; per-tensor ones made it depend on the batch-mates).
#[test]
fn minilm_query_graph_keeps_the_float_vectors_in_any_batch() {
    let (rt, home) = runtime();
    let spec = medley_models::ModelSpec::load(&home, "minilm-l6").unwrap();
    assert!(
        home.model_dir("minilm-l6").unwrap().join("model.queries-int8.onnx").exists(),
        "setup writes the query graph when it keeps quality"
    );
    let queries = TextEncoder::for_queries(rt, &spec).unwrap();
    let float = TextEncoder::from_spec(rt, &spec).unwrap();
    let texts = [
        "a dog running on the beach",
        "rain on a window",
        "electronic dance music with a heavy bass line and a crowd cheering",
        "snow",
        "an old black and white film about a train robbery",
        "piano",
    ];
    let got = queries.encode(&texts).unwrap();
    let want = float.encode(&texts).unwrap();
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let cosine: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(cosine >= 0.997, "{:?}: cosine to float {cosine}", texts[i]);
        assert!(a != b, "the int8 graph ran");
        let alone = queries.encode(&[texts[i]]).unwrap().remove(0);
        let diff = alone.iter().zip(a).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{:?}: alone and in a batch differ by {diff}", texts[i]);
    }
    let float_only = TextEncoder::for_queries(&rt.float_only(), &spec).unwrap().encode(&texts).unwrap();
    assert_eq!(float_only, want, "a float-only runtime embeds queries with the float graph");
}

/// Texts of every length up to the model's limit embed in one batch, each as it does alone;
/// longer ones are truncated to the limit, never refused. (MiniLM's tokenizer.json pads to a
/// fixed 128 tokens while the encoder truncates at 256: a batch holding a 129-256 token text
/// used to be ragged and failed whole.)
#[test]
fn minilm_embeds_texts_of_every_length_in_one_batch() {
    let (rt, home) = runtime();
    let text = TextEncoder::minilm(rt, &home).unwrap();
    let words = |n: usize| {
        (0..n).map(|i| ["river", "guitar", "sunset", "market", "engine"][i % 5]).collect::<Vec<_>>().join(" ")
    };
    let texts: Vec<String> =
        [1, 20, 126, 127, 128, 129, 200, 254, 255, 256, 300, 2000].iter().map(|&n| words(n)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = text.encode(&refs).expect("a mixed-length batch embeds");
    assert_eq!(batch.len(), texts.len());
    for (i, t) in refs.iter().enumerate() {
        let alone = text.encode(&[t]).unwrap().remove(0);
        let norm = batch[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "text {i}: norm {norm}");
        let diff = batch[i].iter().zip(&alone).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(
            diff < 1e-3,
            "text {i} ({} words) embeds differently in a batch: max diff {diff}",
            t.split(' ').count()
        );
    }
    // Past the limit, more words change nothing: the text was cut at 256 tokens.
    let (long, longer) = (batch[10].clone(), batch[11].clone());
    let same = long.iter().zip(&longer).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(same < 1e-4, "texts past the limit are truncated to it: max diff {same}");
}
