//! Whisper base: the Rust loop reproduces Python's onnxruntime decode, and transcribes the
//! LibriVox WAVs of Debian `pocketsphinx-testdata` with a word error rate of at most 5%.
//! Needs `cargo xtask models --only whisper-base`; fetches the Debian package into the cache.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::{Case, runtime};
use medley_models::wer::{word_error_rate, word_errors, words};
use medley_models::{Array, GenerateOptions, SpeechToText, TranscribeOptions};

fn stt() -> (&'static SpeechToText, PathBuf) {
    static STT: std::sync::OnceLock<SpeechToText> = std::sync::OnceLock::new();
    let (rt, home) = runtime();
    let dir = home.model_dir("whisper-base").expect("run `cargo xtask models --only whisper-base`");
    (STT.get_or_init(|| SpeechToText::whisper_base(rt, &home).unwrap()), dir)
}

/// The LibriVox clips and their transcripts, from Debian's pocketsphinx-testdata (downloaded
/// with apt-get into the cache on first use).
fn librivox() -> Vec<(String, Vec<f32>, String)> {
    let (_, home) = runtime();
    let root = home.root().join("downloads/pocketsphinx-testdata");
    let data = root.join("usr/share/pocketsphinx/test/data/librivox");
    if !data.join("transcription").exists() {
        std::fs::create_dir_all(&root).unwrap();
        let ok =
            Command::new("apt-get").args(["download", "pocketsphinx-testdata"]).current_dir(&root).status().unwrap();
        assert!(ok.success(), "apt-get download pocketsphinx-testdata");
        let deb = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .unwrap();
        assert!(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root).status().unwrap().success());
    }
    let mut out = Vec::new();
    for line in std::fs::read_to_string(data.join("transcription")).unwrap().lines() {
        let (text, id) = line.rsplit_once(" (").unwrap();
        let id = id.trim_end_matches(')');
        let text = text.replace("<s>", "").replace("</s>", "").trim().to_string();
        out.push((id.to_string(), read_wav16(&data.join(format!("{id}.wav"))), text));
    }
    out
}

/// 16-bit PCM mono WAV to f32.
fn read_wav16(path: &std::path::Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    let mut pos = 12;
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if id == b"fmt " {
            let fmt = &b[pos + 8..];
            assert_eq!(u16::from_le_bytes([fmt[0], fmt[1]]), 1, "PCM");
            assert_eq!(u16::from_le_bytes([fmt[2], fmt[3]]), 1, "mono");
            assert_eq!(u32::from_le_bytes(fmt[4..8].try_into().unwrap()), 16_000);
        }
        if id == b"data" {
            let end = (pos + 8 + len).min(b.len());
            return b[pos + 8..end]
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
                .collect();
        }
        pos += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

#[test]
fn logmel_and_greedy_tokens_match_python() {
    let (stt, dir) = stt();
    let case = Case::load(&dir, Some("greedy"));
    let (wave, shape) = case.f32s("inputs", "waveform");
    let mel = stt.seq2seq().frontend(&Array::F32(shape, wave)).unwrap();
    case.check_flat("input_features", mel.f32s().unwrap());
    let (want, _) = case.i64s("outputs", "tokens");
    let state = stt.seq2seq().encode(&mel).unwrap();
    let spec = stt.seq2seq().spec();
    let mut suppress: Vec<u32> = (50258..50364).collect();
    suppress.push(50363);
    let opts = GenerateOptions { max_new_tokens: 24, suppress, ..Default::default() };
    let got = stt.seq2seq().generate(&state, &opts, None).unwrap().remove(0);
    assert_eq!(got.tokens.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), want, "prompt {:?}", spec.start_ids);
}

#[test]
fn encoder_matches_python() {
    let (stt, dir) = stt();
    let case = Case::load(&dir, Some("encoder"));
    let (x, shape) = case.f32s("inputs", "input_features");
    let state = stt.seq2seq().encode(&Array::F32(shape, x)).unwrap();
    case.check_flat("cross_k.0", state.get("cross_k.0").unwrap().f32s().unwrap());
}

#[test]
fn transcribes_librivox_within_5_percent_wer() {
    let (stt, _) = stt();
    let clips = librivox();
    let (mut errors, mut total) = (0, 0);
    let t = Instant::now();
    let mut audio_s = 0.0;
    for (id, wave, truth) in &clips {
        audio_s += wave.len() as f32 / 16_000.0;
        let tr = stt.transcribe(wave, &TranscribeOptions::default()).unwrap();
        let (hyp, refw) = (words(&tr.text()), words(truth));
        let e = word_errors(&refw, &hyp);
        eprintln!("{id}: [{}] {:?} errors {e}/{}", tr.language, tr.text(), refw.len());
        assert_eq!(tr.language, "en");
        assert!(!tr.segments.is_empty());
        for s in &tr.segments {
            assert!(s.start <= s.end && s.end <= wave.len() as f32 / 16_000.0 + 0.5, "{s:?}");
        }
        errors += e;
        total += refw.len();
    }
    let wer = errors as f32 / total as f32;
    eprintln!(
        "WER {:.2}% ({errors}/{total}); {:.1} s for {audio_s:.1} s of audio",
        wer * 100.0,
        t.elapsed().as_secs_f32()
    );
    assert!(wer <= 0.05, "WER {wer}");
}

#[test]
fn long_audio_is_windowed_and_beam_search_agrees() {
    let (stt, _) = stt();
    let clips = librivox();
    // All clips with 2 s of silence between: longer than one 30 s window.
    let mut long = Vec::new();
    let mut truth = Vec::new();
    for (_, wave, text) in &clips {
        long.extend_from_slice(wave);
        long.extend(std::iter::repeat_n(0.0, 32_000));
        truth.extend(words(text));
    }
    assert!(long.len() > 480_000);
    let tr = stt.transcribe(&long, &TranscribeOptions { language: Some("en".into()), ..Default::default() }).unwrap();
    let hyp = words(&tr.text());
    let wer = word_error_rate(&truth, &hyp);
    eprintln!("long: {} segments, WER {:.2}%: {:?}", tr.segments.len(), wer * 100.0, tr.segments);
    assert!(wer <= 0.05, "long-audio WER {wer}");
    assert!(tr.segments.last().unwrap().end > 30.0, "segments go past the first window");
    assert!(tr.segments.windows(2).all(|w| w[0].start <= w[1].start), "segments in order");
    // Beam search (no timestamps) on one clip.
    let (_, wave, text) = &clips[1];
    let opts = TranscribeOptions { language: Some("en".into()), beam_size: 4, timestamps: false, ..Default::default() };
    let tr = stt.transcribe(wave, &opts).unwrap();
    assert_eq!(words(&tr.text()), words(text));
}

#[test]
fn length_cap_stops_generation() {
    let (stt, _) = stt();
    let clips = librivox();
    let state = stt.encode_window(&clips[0].1).unwrap();
    for beam_size in [1, 3] {
        let opts = GenerateOptions { max_new_tokens: 3, beam_size, ..Default::default() };
        let g = stt.seq2seq().generate(&state, &opts, None).unwrap().remove(0);
        assert_eq!(g.tokens.len(), 3, "beam {beam_size}");
        assert!(!g.ended);
    }
    let langs = stt.detect_language(&state).unwrap();
    assert_eq!(langs[0].0, "en");
    assert!(langs[0].1 > 0.5);
}
