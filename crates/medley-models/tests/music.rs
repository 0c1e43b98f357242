//! musicnn taggers: Rust matches Python's onnxruntime on the golden windows; names and shapes.
//! Needs `cargo xtask models --only musicnn-mtt` (and `musicnn-msd`).

mod common;

use common::{Case, runtime};
use medley_models::MusicTagger;

fn check(id: &str, first_tag: &str) {
    let (rt, home) = runtime();
    let tagger = MusicTagger::load(rt, &home, id).unwrap();
    assert_eq!(tagger.sample_rate(), 16_000);
    assert_eq!(tagger.window(), 47_616);
    assert_eq!(tagger.labels().len(), 50);
    assert_eq!(tagger.labels()[0], first_tag);
    assert_eq!(tagger.embedding(), ("penultimate", 200));
    let case = Case::load(&home.model_dir(id).unwrap(), None);
    let (x, shape) = case.f32s("inputs", "waveform");
    let windows: Vec<&[f32]> = x.chunks_exact(shape[1]).collect();
    let out = tagger.tag(&windows).unwrap();
    case.check("tags", &out.iter().map(|o| o.probabilities.clone()).collect::<Vec<_>>());
    for name in ["penultimate", "mean_pool", "max_pool"] {
        case.check(name, &out.iter().map(|o| o.embeddings[name].clone()).collect::<Vec<_>>());
    }
    for o in &out {
        assert!(o.probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
        eprintln!("{id}: {:?}", o.top(tagger.labels(), 3));
    }
    // Batching: one window alone gives what it gave in the batch.
    let single = tagger.tag(&windows[1..2]).unwrap();
    assert!(common::max_diff(&single[0].probabilities, &out[1].probabilities) < 1e-5);
    assert!(tagger.tag(&[&x[..100]]).is_err(), "a short window is an input error");
}

#[test]
fn musicnn_mtt_matches_python() {
    check("musicnn-mtt", "guitar");
}

#[test]
fn musicnn_msd_matches_python() {
    check("musicnn-msd", "rock");
}

/// On the CPU musicnn-mtt's int8 variant runs (the golden tensors are its outputs), its tags
/// and embedding stay those of the float graph, and rows name the graph that made them.
#[test]
fn musicnn_mtt_int8_keeps_the_float_tags() {
    let (rt, home) = runtime();
    let dir = home.model_dir("musicnn-mtt").unwrap();
    assert!(dir.join("model.int8.onnx").exists(), "setup writes the int8 variant when it keeps quality");
    let case = Case::load(&dir, None);
    let (x, shape) = case.f32s("inputs", "waveform");
    let windows: Vec<&[f32]> = x.chunks_exact(shape[1]).collect();
    let int8 = MusicTagger::load(rt, &home, "musicnn-mtt").unwrap();
    let float = MusicTagger::load(&rt.float_only(), &home, "musicnn-mtt").unwrap();
    assert_eq!((int8.id(), float.id()), ("musicnn-mtt.int8", "musicnn-mtt"));
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    for (a, b) in int8.tag(&windows).unwrap().iter().zip(&float.tag(&windows).unwrap()) {
        assert!(a.probabilities != b.probabilities, "two different graphs ran");
        let tags = cosine(&a.probabilities, &b.probabilities);
        let embedding = cosine(&a.embeddings["penultimate"], &b.embeddings["penultimate"]);
        assert!(tags >= 0.99 && embedding >= 0.99, "int8 against float: tags {tags}, embedding {embedding}");
        assert_eq!(a.top(int8.labels(), 1)[0].0, b.top(float.labels(), 1)[0].0, "the top tag stays");
    }
}
