//! What medley understands beyond ImageNet labels, on real files from the labelled evaluation
//! set (`<home>/eval-set/`, built by `cargo xtask media` from Debian's gcompris-qt-data): a
//! dog barking with nothing to see is found by "a dog barking" (sound events), a title card
//! by the words on it (on-screen text), a drawn numeral by its name, a paint pot by its paint's
//! colour, each stored in its columns.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{env_path, medley, stdout_json};
use serde_json::Value;

/// The files indexed: the two under test among others of the same kinds (other sounds over a
/// black picture, other title cards, pictures, sounds), so finding them first means something.
const FILES: &[&str] = &[
    "videos/video-001.mp4", // a dog barking over a black picture
    "videos/video-002.mp4",
    "videos/video-003.mp4",
    "videos/video-004.mp4",
    "videos/video-005.mp4",
    "text/text-001.mp4", // title card: "Pierre-Auguste Renoir / Bal du moulin de la Galette / 1876"
    "text/text-002.png",
    "text/text-003.mp4",
    "text/text-004.png",
    "sounds/sound-001.ogg",
    "sounds/sound-004.ogg",
    "images/image-072.png",
    "images/image-001.png",
    // Three paint pots alike but for their paint: blue, orange, red.
    "images/image-002.png",
    "images/image-008.png",
    "images/image-010.png",
    // Numerals drawn to fill the picture, which text detection finds nothing in: 7 and 0.
    "images/image-020.png",
    "images/image-013.png",
];

struct Indexed {
    _dir: tempfile::TempDir,
    db: PathBuf,
}

fn eval_set() -> PathBuf {
    env_path("MEDLEY_HOME").join("eval-set")
}

fn indexed() -> &'static Indexed {
    static INDEXED: OnceLock<Indexed> = OnceLock::new();
    INDEXED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let media = dir.path().join("media");
        std::fs::create_dir_all(&media).expect("media dir");
        for f in FILES {
            let from = eval_set().join(f);
            let name = Path::new(f).file_name().expect("file name");
            std::fs::copy(&from, media.join(name)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        }
        let db = dir.path().join("db");
        let out = medley().arg("index").arg(&media).arg("--db").arg(&db).arg("--json").output().expect("medley runs");
        assert!(out.status.success(), "index failed: {}", String::from_utf8_lossy(&out.stderr));
        let summary = stdout_json(&out);
        assert_eq!(summary["indexed"], FILES.len(), "{summary}");
        Indexed { _dir: dir, db }
    })
}

fn search(query: &str) -> Vec<String> {
    search_k(query, 3)
}

/// The file names of the top `k` hits for `query`, best first.
fn search_k(query: &str, k: usize) -> Vec<String> {
    let db = &indexed().db;
    let out =
        medley().args(["search", query, "--json", "-k", &k.to_string(), "--db"]).arg(db).output().expect("medley runs");
    assert!(out.status.success(), "search failed: {}", String::from_utf8_lossy(&out.stderr));
    let hits = stdout_json(&out);
    hits.as_array()
        .expect("hits")
        .iter()
        .map(|h| {
            Path::new(h["path"].as_str().unwrap_or_default())
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        })
        .collect()
}

/// The `media` row of `file_name`, as Python's lancedb reads it.
fn row(file_name: &str) -> Value {
    let python = env_path("MEDLEY_TEST_PYTHON");
    let script = r#"
import json, sys, lancedb
t = lancedb.connect(sys.argv[1]).open_table("media").to_arrow().to_pylist()
r = [r for r in t if r["file_name"] == sys.argv[2]][0]
print(json.dumps({"sound_tags": r["sound_tags"], "ocr_text": r["ocr_text"],
                  "semantic": r["semantic"] is not None, "description": r["description"]}))
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&indexed().db)
        .arg(file_name)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn a_dog_barking_with_no_dog_visible_is_found_by_its_sound() {
    let r = row("video-001.mp4");
    let tags: Vec<&str> =
        r["sound_tags"].as_array().expect("sound_tags").iter().filter_map(|t| t["label"].as_str()).collect();
    assert!(tags.iter().any(|t| ["Dog", "Bark", "Bow-wow"].contains(t)), "heard: {tags:?}");
    assert_eq!(r["semantic"], true);
    assert_eq!(search("a dog barking").first().map(String::as_str), Some("video-001.mp4"));
}

#[test]
fn a_title_card_is_found_by_the_words_on_it() {
    let r = row("text-001.mp4");
    let read = r["ocr_text"].as_str().unwrap_or_default().to_lowercase();
    assert!(read.contains("moulin de la galette"), "read: {read:?}");
    assert!(read.contains("renoir"), "the whole line, not a square crop of it: {read:?}");
    assert_eq!(search("Bal du moulin de la Galette").first().map(String::as_str), Some("text-001.mp4"));
}

#[test]
fn a_numeral_filling_the_picture_is_read_and_found_by_its_name() {
    // Detection finds no text line in a glyph this size; the whole picture is read instead, and
    // the numeral reaches the text space spelled out ("7 seven").
    for (file, numeral, query) in
        [("image-020.png", "7", "the number seven"), ("image-013.png", "0", "the number zero")]
    {
        assert_eq!(row(file)["ocr_text"].as_str(), Some(numeral), "{file}");
        assert_eq!(search(query).first().map(String::as_str), Some(file), "{query}");
    }
}

#[test]
fn paint_pots_alike_but_for_their_colour_are_found_by_it() {
    // The classifier calls all three the same things (a cup, a coffee mug): only the colours
    // named in the visual bridge tell them apart. Other pictures may come first (a fox is
    // orange too); among the pots, the query's colour must.
    let pots = ["image-002.png", "image-008.png", "image-010.png"];
    for (query, pot) in [("the colour blue", pots[0]), ("the colour orange", pots[1]), ("the colour red", pots[2])] {
        let hits = search_k(query, FILES.len());
        let first_pot = hits.iter().find(|h| pots.contains(&h.as_str()));
        assert_eq!(first_pot.map(String::as_str), Some(pot), "{query}: {hits:?}");
    }
}

#[test]
fn shot_segments_follow_the_cuts_transnetv2_finds() {
    // Six shots of Big Buck Bunny cut together, one of them 0.75 s long (the frame-difference
    // detector's 1 s minimum shot misses it): fixtures/expect.toml.
    let film = env_path("MEDLEY_TEST_FIXTURES").join("cuts/film_hard.mp4");
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/shorts-cold-start.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let out = medley()
        .arg("index")
        .arg(&film)
        .arg("--pipeline")
        .arg(&pipeline)
        .arg("--db")
        .arg(&db)
        .output()
        .expect("medley runs");
    assert!(out.status.success(), "index failed: {}", String::from_utf8_lossy(&out.stderr));
    let python = env_path("MEDLEY_TEST_PYTHON");
    let script = r#"
import json, sys, lancedb
rows = lancedb.connect(sys.argv[1]).open_table("segments").to_arrow().to_pylist()
print(json.dumps(sorted(r["start_s"] for r in rows)))
"#;
    let out = std::process::Command::new(python).arg("-c").arg(script).arg(&db).output().expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let starts: Vec<f64> = serde_json::from_slice(&out.stdout).expect("json");
    let expected = [0.0, 3.0, 5.5, 7.5, 10.5, 11.25];
    assert_eq!(starts.len(), expected.len(), "segments start at {starts:?}");
    for (s, e) in starts.iter().zip(expected) {
        assert!((s - e).abs() <= 0.1, "segments start at {starts:?}, cuts at {expected:?}");
    }
}
