//! PP-OCRv4: the Rust pipeline reads the golden title cards of `export_ocr.py` (rendered
//! with DejaVu fonts, read exactly by rapidocr's Python pipeline) word for word, with its
//! boxes where rapidocr put them, and reads nothing on a blank picture. Needs `cargo xtask models --only pp-ocrv4`.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::runtime;
use medley_models::TextReader;
use serde_json::Value;

fn reader() -> (&'static TextReader, PathBuf) {
    static READER: std::sync::OnceLock<TextReader> = std::sync::OnceLock::new();
    let (rt, home) = runtime();
    let dir = home.model_dir("pp-ocrv4").expect("run `cargo xtask models --only pp-ocrv4`");
    (READER.get_or_init(|| TextReader::load(rt, &home, "pp-ocrv4").unwrap()), dir)
}

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(a) + area(b) - w * h)
}

#[test]
fn golden_cards_read_word_for_word() {
    let (reader, dir) = reader();
    let gdir = dir.join("golden");
    let cards: Value = serde_json::from_str(&std::fs::read_to_string(gdir.join("cards.json")).unwrap()).unwrap();
    let cards = cards["cases"].as_array().unwrap();
    assert!(cards.len() >= 5, "too few golden cards");
    let mut wrong = Vec::new();
    let (mut det_s, mut rec_s, mut pixels) = (0f64, 0f64, 0f64);
    for card in cards {
        let name = card["name"].as_str().unwrap();
        let (w, h) = (card["width"].as_u64().unwrap() as u32, card["height"].as_u64().unwrap() as u32);
        let rgb = std::fs::read(gdir.join(card["file"].as_str().unwrap())).unwrap();
        let want: Vec<&str> = card["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        let t = Instant::now();
        let boxes = reader.detect(&rgb, w, h).unwrap();
        let t_det = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let lines = reader.recognize(&rgb, w, h, &boxes).unwrap();
        let t_rec = t.elapsed().as_secs_f64();
        det_s += t_det;
        rec_s += t_rec;
        pixels += f64::from(w * h);
        // Same as `read`.
        assert_eq!(reader.read(&rgb, w, h).unwrap(), lines, "{name}: read = detect + recognize");
        let got: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        eprintln!(
            "{name} ({w}x{h}): {got:?} scores {:?} boxes {:?} (det {:.2} s, rec {:.2} s)",
            lines.iter().map(|l| (l.score * 100.0).round() / 100.0).collect::<Vec<_>>(),
            lines.iter().map(|l| l.bbox.map(|v| v as u32)).collect::<Vec<_>>(),
            t_det,
            t_rec
        );
        for l in &lines {
            let [x0, y0, x1, y1] = l.bbox;
            assert!(0.0 <= x0 && x0 < x1 && x1 <= w as f32 && 0.0 <= y0 && y0 < y1 && y1 <= h as f32, "{name}: {l:?}");
            assert!((0.5..=1.0).contains(&l.score), "{name}: {l:?}");
        }
        if normalise(&got.join(" ")) != normalise(&want.join(" ")) {
            wrong.push(format!("{name}: read {got:?}, expected {want:?}"));
        }
        // Where rapidocr found a line, the Rust box covers the same words.
        for r in card["reference"].as_array().unwrap() {
            let pts: Vec<[f32; 2]> = r["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32])
                .collect();
            let fold = |i: usize, f: fn(f32, f32) -> f32, init: f32| pts.iter().map(|p| p[i]).fold(init, f);
            let reference = [
                fold(0, f32::min, f32::MAX),
                fold(1, f32::min, f32::MAX),
                fold(0, f32::max, 0.0),
                fold(1, f32::max, 0.0),
            ];
            let best = lines.iter().map(|l| iou(l.bbox, reference)).fold(0.0, f32::max);
            if best < 0.8 {
                wrong.push(format!(
                    "{name}: no box matches rapidocr's {reference:?} for {} (best IoU {best:.2})",
                    r["text"]
                ));
            }
        }
    }
    eprintln!(
        "{} cards, {:.0} kpx mean: det {:.2} s + rec {:.2} s per card on {} threads",
        cards.len(),
        pixels / cards.len() as f64 / 1e3,
        det_s / cards.len() as f64,
        rec_s / cards.len() as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    assert!(wrong.is_empty(), "misread:\n{}", wrong.join("\n"));
}

#[test]
fn lines_come_top_to_bottom_with_boxes_on_their_words() {
    let (reader, dir) = reader();
    let gdir = dir.join("golden");
    let rgb = std::fs::read(gdir.join("navy_two_sizes.rgb")).unwrap();
    let lines = reader.read(&rgb, 1280, 720).unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    // The big title above the smaller subtitle, both centred, the title taller.
    let (a, b) = (lines[0].bbox, lines[1].bbox);
    assert!(a[3] <= b[1], "{lines:?}");
    assert!(a[3] - a[1] > b[3] - b[1], "{lines:?}");
    for bb in [a, b] {
        assert!(((bb[0] + bb[2]) / 2.0 - 640.0).abs() < 20.0, "{lines:?}");
    }
}

#[test]
fn blank_and_noise_pictures_read_nothing() {
    let (reader, _) = reader();
    for (w, h, v) in [(640u32, 360u32, 0u8), (320, 240, 255), (1280, 720, 128)] {
        let rgb = vec![v; (w * h * 3) as usize];
        assert!(reader.read(&rgb, w, h).unwrap().is_empty(), "{w}x{h} of {v}");
    }
    // Seeded grain is no text either.
    let mut x = 12345u32;
    let noise: Vec<u8> = (0..640 * 360 * 3)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            (x >> 24) as u8 / 4 + 96
        })
        .collect();
    let lines = reader.read(&noise, 640, 360).unwrap();
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn bad_input_is_an_error_naming_the_model() {
    let (reader, _) = reader();
    let e = reader.read(&[0u8; 10], 4, 4).unwrap_err().to_string();
    assert!(e.contains("pp-ocrv4") && e.contains("4x4"), "{e}");
    assert!(reader.read(&[], 0, 0).is_err());
    // A picture smaller than the detector's grid still works.
    assert!(reader.read(&[255u8; 5 * 3 * 3], 5, 3).unwrap().is_empty());
}
