//! Tiny random-weight CLIP, CLAP and captioner models (real transformers architectures),
//! loaded through their model.toml: Rust matches Python's onnxruntime, shapes, batching,
//! determinism, and the decode loop stopping on its end token and on a length cap.
//! Needs `cargo xtask models --only tiny-clip` (and tiny-clap, tiny-captioner).

mod common;

use common::{Case, max_diff, runtime};
use medley_models::{AudioTextModel, GenerateOptions, ImageCaptioner, ImageTextModel, LogitsProcessor, l2_normalize};

fn normalized(rows: Vec<f32>, dim: usize) -> Vec<f32> {
    rows.chunks(dim)
        .flat_map(|r| {
            let mut r = r.to_vec();
            l2_normalize(&mut r);
            r
        })
        .collect()
}

fn images(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| (0..size * size * 3).map(|j| ((j * 31 + i * 97) % 256) as u8).collect()).collect()
}

#[test]
fn clip_towers_match_python_batch_and_repeat() {
    let (rt, home) = runtime();
    let clip = ImageTextModel::load(rt, &home, "tiny-clip").unwrap();
    let dir = home.model_dir("tiny-clip").unwrap();
    let case = Case::load(&dir, Some("image"));
    let (x, shape) = case.f32s("inputs", "pixel_values");
    let got = clip.image.run(&x, shape[0]).unwrap();
    let (want, _) = case.f32s("outputs", "image_embeds");
    let d = max_diff(&got.iter().flat_map(|o| o.embedding.clone()).collect::<Vec<_>>(), &normalized(want, 16));
    eprintln!("tiny-clip image: max |rust - python| = {d:.2e}");
    assert!(d < 1e-5);
    assert!(got.iter().all(|o| o.embedding.len() == 16 && o.probabilities.is_empty()));
    let case = Case::load(&dir, Some("text"));
    let text = clip.text.encode(&["a photo of a dog", "music that is loud and fast"]).unwrap();
    let (want, _) = case.f32s("outputs", "text_embeds");
    let d = max_diff(&text.concat(), &normalized(want, 16));
    eprintln!("tiny-clip text (Rust tokenizer): max |rust - python| = {d:.2e}");
    assert!(d < 1e-5);
    // Batching: a batch of N equals N single runs; a second run gives the same numbers.
    let imgs = images(5, 32);
    let refs: Vec<&[u8]> = imgs.iter().map(Vec::as_slice).collect();
    let batch = clip.image.encode(&refs).unwrap();
    for (i, r) in refs.iter().enumerate() {
        let one = clip.image.encode(&[r]).unwrap();
        assert!(max_diff(&one[0].embedding, &batch[i].embedding) < 1e-5);
    }
    assert_eq!(clip.image.encode(&refs).unwrap()[4].embedding, batch[4].embedding, "deterministic");
    let texts = ["dog", "a cat sitting on a tree", "red car"];
    let tb = clip.text.encode(&texts).unwrap();
    for (i, t) in texts.iter().enumerate() {
        assert!(max_diff(&clip.text.encode(&[t]).unwrap()[0], &tb[i]) < 1e-5, "padding does not change {t}");
    }
    assert!(clip.image.encode(&[&[0u8; 10]]).is_err());
}

#[test]
fn clap_towers_match_python_and_batch() {
    let (rt, home) = runtime();
    let clap = AudioTextModel::load(rt, &home, "tiny-clap").unwrap();
    let dir = home.model_dir("tiny-clap").unwrap();
    let case = Case::load(&dir, Some("audio"));
    let (x, shape) = case.f32s("inputs", "waveform");
    let windows: Vec<&[f32]> = x.chunks_exact(shape[1]).collect();
    let got = clap.audio.encode(&windows).unwrap();
    let (want, _) = case.f32s("outputs", "audio_embeds");
    let d = max_diff(&got.concat(), &normalized(want, 16));
    eprintln!("tiny-clap audio: max |rust - python| = {d:.2e}");
    assert!(d < 1e-5);
    for (i, w) in windows.iter().enumerate() {
        assert!(max_diff(&clap.audio.encode(&[w]).unwrap()[0], &got[i]) < 1e-5);
    }
    let case = Case::load(&dir, Some("text"));
    let (want, _) = case.f32s("outputs", "text_embeds");
    let text = clap.text.encode(&["a photo of a dog", "music that is loud and fast"]).unwrap();
    assert!(max_diff(&text.concat(), &normalized(want, 16)) < 1e-5);
    assert_eq!(clap.audio.window(), 16_128);
}

/// Forces the end token once a hypothesis has `after` generated tokens.
struct EndAfter(usize, u32);
impl LogitsProcessor for EndAfter {
    fn process(&self, tokens: &[u32], prompt_len: usize, logits: &mut [f32]) {
        if tokens.len() - prompt_len >= self.0 {
            logits.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            logits[self.1 as usize] = 0.0;
        }
    }
}

#[test]
fn captioner_decode_loop() {
    let (rt, home) = runtime();
    let cap = ImageCaptioner::load(rt, &home, "tiny-captioner").unwrap();
    let s2s = cap.seq2seq();
    let eos = s2s.spec().eos_id;
    let case = Case::load(&home.model_dir("tiny-captioner").unwrap(), Some("greedy"));
    let (x, shape) = case.f32s("inputs", "pixel_values");
    let (want, _) = case.i64s("outputs", "tokens");
    // Python's greedy onnxruntime decode (end token suppressed), token for token, batched.
    let state = s2s.encode(&medley_models::Array::F32(shape, x)).unwrap();
    let opts = GenerateOptions { max_new_tokens: 8, suppress: vec![eos], ..Default::default() };
    let got = s2s.generate(&state, &opts, None).unwrap();
    let flat: Vec<i64> = got.iter().flat_map(|g| g.tokens.iter().map(|&t| i64::from(t))).collect();
    assert_eq!(flat, want);
    assert!(got.iter().all(|g| g.tokens.len() == 8 && !g.ended), "length cap");
    // Batch rows equal single runs; beam search with beam 1 equals greedy.
    let one = s2s.generate(&state.select(&[1]), &opts, None).unwrap();
    assert_eq!(one[0], got[1]);
    // Stops on the end token (forced after 3 tokens), with and without beams.
    for beam_size in [1, 3] {
        let o = GenerateOptions { max_new_tokens: 10, beam_size, ..Default::default() };
        let g = s2s.generate(&state, &o, Some(&EndAfter(3, eos))).unwrap();
        assert!(g.iter().all(|g| g.tokens.len() == 3 && g.ended), "beam {beam_size}: {g:?}");
        let capped = s2s
            .generate(
                &state,
                &GenerateOptions { max_new_tokens: 5, beam_size, suppress: vec![eos], ..Default::default() },
                None,
            )
            .unwrap();
        assert!(capped.iter().all(|g| g.tokens.len() == 5 && !g.ended), "beam {beam_size} cap: {capped:?}");
        // Beam search finds a sequence at least as likely as greedy's.
        assert!(
            capped[0].log_prob
                >= s2s
                    .generate(
                        &state.select(&[0]),
                        &GenerateOptions { max_new_tokens: 5, suppress: vec![eos], ..Default::default() },
                        None
                    )
                    .unwrap()[0]
                    .log_prob
                    - 1e-4
        );
    }
    // Images in, text out (random weights: words of the tiny vocabulary), deterministic.
    let imgs = images(2, 32);
    let refs: Vec<&[u8]> = imgs.iter().map(Vec::as_slice).collect();
    let c1 = cap.caption(&refs, &GenerateOptions { max_new_tokens: 6, ..Default::default() }).unwrap();
    assert_eq!(c1, cap.caption(&refs, &GenerateOptions { max_new_tokens: 6, ..Default::default() }).unwrap());
    assert_eq!(c1.len(), 2);
}
