//! Label texts: the label bridge embeds what each class means (all its names, the kind of thing
//! it is, its definition; for music tags a written phrase) instead of the bare name, so what a
//! user types lands on the classes they mean. Each check below fails with the bare names.
//! Needs `cargo xtask models --only efficientnet-lite0 --only minilm-l6 --only musicnn-mtt`.

mod common;

use common::runtime;
use medley_models::{ImageEncoder, LabelBridge, ModelSpec, TextEncoder, cosine};

/// What the pipeline passes to `LabelBridge::cached` for the image classifier's texts.
const IMAGE_TEMPLATE: &str = "a photo of a {}";
/// The music tag texts already say "music", "a woman singing": no template.
const TAG_TEMPLATE: &str = "{}";
const TOP_K: usize = 10;

/// ImageNet-1k indices: domestic cats 281-285 and the wild cats 286-293 (felids).
const FELIDS: std::ops::RangeInclusive<usize> = 281..=293;
const HIPPOPOTAMUS: usize = 344;
const HIP: usize = 989;
const TRAILER_TRUCK: usize = 867;

/// Labels by how near a picture the classifier is sure shows them comes to `query`, best first,
/// with the similarity: the bridge vector of a one-class distribution, as search ranks it.
fn ranked(bridge: &LabelBridge, text: &TextEncoder, n: usize, query: &str) -> Vec<(usize, f32)> {
    let q = text.encode(&[query]).unwrap().remove(0);
    let mut out: Vec<(usize, f32)> = (0..n)
        .map(|i| {
            let mut p = vec![0f32; n];
            p[i] = 1.0;
            (i, cosine(&q, &bridge.project(&p)))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

struct Vision {
    text: TextEncoder,
    labels: Vec<String>,
    with_texts: LabelBridge,
    names_only: LabelBridge,
}

/// Built once for all tests (the first run embeds two thousand texts; later runs read the
/// model folder's cache, as the pipeline does).
fn vision() -> &'static Vision {
    static VISION: std::sync::OnceLock<Vision> = std::sync::OnceLock::new();
    VISION.get_or_init(load_vision)
}

fn load_vision() -> Vision {
    let (rt, home) = runtime();
    let image = ImageEncoder::efficientnet_lite0(rt, &home).unwrap();
    let text = TextEncoder::minilm(rt, &home).unwrap();
    let dir = home.model_dir(image.id()).unwrap();
    let with_texts = LabelBridge::cached(&text, image.label_texts(), IMAGE_TEMPLATE, TOP_K, &dir).unwrap();
    let names_only = LabelBridge::cached(&text, image.labels(), IMAGE_TEMPLATE, TOP_K, &dir).unwrap();
    Vision { text, labels: image.labels().to_vec(), with_texts, names_only }
}

fn names(v: &Vision, ranked: &[(usize, f32)], n: usize) -> Vec<String> {
    ranked.iter().take(n).map(|&(i, s)| format!("{} {s:.3}", v.labels[i])).collect()
}

#[test]
fn imagenet_label_texts_say_what_each_class_is() {
    let (rt, home) = runtime();
    let image = ImageEncoder::efficientnet_lite0(rt, &home).unwrap();
    assert_eq!(image.labels().len(), 1000);
    assert_eq!(image.label_texts().len(), 1000);
    // The short display name stays; the text holds it, the other names and the kind of thing.
    assert_eq!(image.labels()[281], "tabby");
    let tabby = &image.label_texts()[281];
    for part in ["tabby cat", "a kind of domestic cat", "mottled with black"] {
        assert!(tabby.contains(part), "{tabby:?} lacks {part:?}");
    }
    for (label, text) in image.labels().iter().zip(image.label_texts()) {
        assert!(text.starts_with(label.as_str()) || text.contains(&format!(", {label}")), "{label}: {text}");
    }
    // Latin binomials say nothing to the text encoder; common names with capitals stay.
    assert!(!image.label_texts()[15].contains("Turdus migratorius"), "{}", image.label_texts()[15]);
    assert!(image.label_texts()[15].contains("American robin"), "{}", image.label_texts()[15]);
}

#[test]
fn a_lorry_finds_the_trailer_truck() {
    let v = vision();
    // "articulated lorry" is one of the trailer truck's WordNet names; the first name alone
    // ("trailer truck") put a ladle, a pickup and a llama before it.
    let got = ranked(&v.with_texts, &v.text, v.labels.len(), "a lorry");
    assert_eq!(got[0].0, TRAILER_TRUCK, "a lorry: {:?}", names(v, &got, 5));
    let before = ranked(&v.names_only, &v.text, v.labels.len(), "a lorry");
    assert_ne!(before[0].0, TRAILER_TRUCK, "names only: {:?}", names(v, &before, 5));
}

#[test]
fn a_kitten_finds_cats_only() {
    let v = vision();
    let got = ranked(&v.with_texts, &v.text, v.labels.len(), "a kitten");
    assert!(got.iter().take(5).all(|(i, _)| FELIDS.contains(i)), "a kitten: {:?}", names(v, &got, 5));
    // By name alone a "Madagascar cat" (a lemur) came fourth.
    let before = ranked(&v.names_only, &v.text, v.labels.len(), "a kitten");
    assert!(!before.iter().take(5).all(|(i, _)| FELIDS.contains(i)), "names only: {:?}", names(v, &before, 5));
}

#[test]
fn a_hippo_is_not_a_rose_hip() {
    let v = vision();
    let got = ranked(&v.with_texts, &v.text, v.labels.len(), "a hippo");
    assert_eq!(got[0].0, HIPPOPOTAMUS, "a hippo: {:?}", names(v, &got, 5));
    assert!(got[0].1 - got[1].1 > 0.1, "a hippo: the hippopotamus wins clearly: {:?}", names(v, &got, 3));
    assert!(got.iter().take(5).all(|&(i, _)| i != HIP), "a hippo: {:?}", names(v, &got, 5));
    // By name alone "hip" (the rose hip) came within 0.01 of the hippopotamus.
    let before = ranked(&v.names_only, &v.text, v.labels.len(), "a hippo");
    assert!(before.iter().take(2).any(|&(i, _)| i == HIP), "names only: {:?}", names(v, &before, 3));
}

#[test]
fn a_puppy_finds_dogs() {
    let v = vision();
    let got = ranked(&v.with_texts, &v.text, v.labels.len(), "a puppy");
    // ImageNet's dogs are 151-268.
    assert!(got.iter().take(10).all(|(i, _)| (151..=268).contains(i)), "a puppy: {:?}", names(v, &got, 10));
}

#[test]
fn phrasings_of_a_label_are_averaged() {
    let (rt, home) = runtime();
    let text = TextEncoder::minilm(rt, &home).unwrap();
    let one = |s: &str| LabelBridge::new(&text, &[s.to_string()], "music that is {}", 1).unwrap();
    let both = one("rock | loud");
    let mut mean: Vec<f32> = text
        .encode(&["music that is rock", "music that is loud"])
        .unwrap()
        .iter()
        .fold(vec![0f32; 384], |acc, e| acc.iter().zip(e).map(|(a, b)| a + b).collect());
    medley_models::l2_normalize(&mut mean);
    assert!(cosine(&both.label_embeddings()[0], &mean) > 0.9999);
    // A text without the separator is embedded whole, as before.
    let plain = one("rock");
    let direct = text.encode(&["music that is rock"]).unwrap().remove(0);
    assert!(cosine(&plain.label_embeddings()[0], &direct) > 0.9999);
}

#[test]
fn music_tag_texts_find_the_singer_and_instrumental_music() {
    let (rt, home) = runtime();
    let text = TextEncoder::minilm(rt, &home).unwrap();
    let spec = ModelSpec::load(&home, "musicnn-mtt").unwrap();
    let tagger = spec.tagger.as_ref().unwrap();
    let tags = spec.labels(&tagger.labels).unwrap();
    let texts = spec.labels(tagger.label_texts.as_deref().expect("musicnn-mtt has label_texts")).unwrap();
    assert_eq!(texts.len(), tags.len());
    let with_texts = LabelBridge::new(&text, &texts, TAG_TEMPLATE, TOP_K).unwrap();
    let names_only = LabelBridge::new(&text, &tags, "music that is {}", TOP_K).unwrap();
    let top = |bridge: &LabelBridge, query: &str, n: usize| -> Vec<&str> {
        ranked(bridge, &text, tags.len(), query).iter().take(n).map(|&(i, _)| tags[i].as_str()).collect()
    };
    let female = ["female", "female voice", "woman", "female vocal"];
    let got = top(&with_texts, "a woman singing", 3);
    assert!(got.iter().all(|t| female.contains(t)), "a woman singing: {got:?}");
    // By name alone the plain "singing" tag came first, a man's voice as much as a woman's.
    let before = top(&names_only, "a woman singing", 3);
    assert!(!before.iter().all(|t| female.contains(t)), "names only: {before:?}");

    let got = top(&with_texts, "instrumental music", 1);
    assert!(["no vocals", "no vocal", "no voice"].contains(&got[0]), "instrumental music: {got:?}");
    let before = top(&names_only, "instrumental music", 1);
    assert!(!["no vocals", "no vocal", "no voice"].contains(&before[0]), "names only: {before:?}");
}
