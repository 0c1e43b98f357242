//! Universal Sentence Encoder multilingual (ragged ids, SentencePiece via tokenizer.json):
//! Rust matches Python's onnxruntime, and the same sentence across EN/ES/DE scores > 0.8.
//! Needs `cargo xtask models --only use-multilingual`.

mod common;

use common::{Case, runtime};
use medley_models::{TextEncoder, cosine, l2_normalize};

#[test]
fn use_multilingual_matches_python_and_aligns_languages() {
    let (rt, home) = runtime();
    let enc = TextEncoder::load(rt, &home, "use-multilingual").unwrap();
    assert_eq!(enc.dim(), 512);
    let case = Case::load(&home.model_dir("use-multilingual").unwrap(), None);
    let (ids, _) = case.i32s("inputs", "input_ids");
    let (splits, _) = case.i64s("inputs", "row_splits");
    let (want, _) = case.f32s("outputs", "outputs");
    let want: Vec<f32> = want
        .chunks(512)
        .flat_map(|r| {
            let mut r = r.to_vec();
            l2_normalize(&mut r);
            r
        })
        .collect();
    let got = enc.run_ragged(&ids, &splits).unwrap().concat();
    let d = common::max_diff(&got, &want);
    eprintln!("use-multilingual: max |rust - python| = {d:.2e}");
    assert!(d < 1e-4);
    // The Rust tokenizer gives Python's ids: same vectors from raw text.
    let sentences = [
        "The cat sleeps on the sofa.",
        "El gato duerme en el sofá.",
        "Die Katze schläft auf dem Sofa.",
        "I need to buy bread and milk.",
        "Necesito comprar pan y leche.",
        "Ich muss Brot und Milch kaufen.",
        "Музыка очень громкая.",
        "今日はとても良い天気です。",
    ];
    let rust_ids: Vec<i32> = sentences
        .iter()
        .flat_map(|s| enc.tokenizer().encode(*s, true).unwrap().get_ids().iter().map(|&x| x as i32).collect::<Vec<_>>())
        .collect();
    assert_eq!(rust_ids, ids[..], "Rust tokenizer ids equal sentencepiece's");
    let e = enc.encode(&sentences).unwrap();
    // The same batch as Python's: the int8 graph quantises activations per tensor, so a row's
    // numbers depend slightly on the other rows of its batch.
    assert!(common::max_diff(&e.concat(), &want) < 1e-4);
    let alone = enc.encode(&sentences[..1]).unwrap();
    assert!(cosine(&alone[0], &e[0]) > 0.99);
    for g in [0, 3] {
        for o in [g + 1, g + 2] {
            let c = cosine(&e[g], &e[o]);
            eprintln!("{:?} ~ {:?}: {c:.3}", sentences[g], sentences[o]);
            assert!(c > 0.8);
        }
    }
    assert!(cosine(&e[0], &e[3]) < 0.5, "different sentences stay apart");
}
