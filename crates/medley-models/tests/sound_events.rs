//! YAMNet sound events (521 AudioSet classes) through the generic tagger: Rust matches Python's
//! onnxruntime on the golden windows, and real recordings get the classes a listener would
//! name: music is music, LibriVox readings are speech, silence is silence.
//! Needs `cargo xtask models --only yamnet` and the sample media (`cargo xtask media`); fetches
//! Debian's pocketsphinx-testdata into the cache on first use, as the Whisper test does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Case, runtime};
use medley_models::{ModelSpec, MusicTagger};

fn yamnet() -> &'static MusicTagger {
    static TAGGER: OnceLock<MusicTagger> = OnceLock::new();
    TAGGER.get_or_init(|| {
        let (rt, home) = runtime();
        MusicTagger::load(rt, &home, "yamnet").expect("run `cargo xtask models --only yamnet`")
    })
}

/// Mono 16 kHz samples of any media file, through the ffmpeg CLI (a setup Debian package).
fn decode(path: &Path, seconds: u32) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-t", &seconds.to_string(), "-ac", "1", "-ar", "16000", "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg CLI");
    assert!(out.status.success(), "ffmpeg {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Mean class probabilities over the windows of a recording, one window every 0.48 s (YAMNet's
/// patch hop); a recording shorter than a window is padded with silence.
fn mean_probabilities(samples: &[f32]) -> Vec<f32> {
    let tagger = yamnet();
    let window = tagger.window();
    let mut padded = samples.to_vec();
    padded.resize(padded.len().max(window), 0.0);
    let windows: Vec<&[f32]> = (0..=padded.len() - window).step_by(7680).map(|s| &padded[s..s + window]).collect();
    let mut mean = vec![0f32; tagger.labels().len()];
    for batch in windows.chunks(16) {
        for out in tagger.tag(batch).unwrap() {
            for (m, p) in mean.iter_mut().zip(&out.probabilities) {
                *m += p / windows.len() as f32;
            }
        }
    }
    mean
}

fn top(probabilities: &[f32], k: usize) -> Vec<(String, f32)> {
    medley_models::LabelBridge::top(probabilities, k)
        .into_iter()
        .map(|(i, p)| (yamnet().labels()[i].clone(), p))
        .collect()
}

fn media(rel: &str) -> PathBuf {
    let root =
        std::env::var_os("MEDLEY_TEST_MEDIA").map(PathBuf::from).unwrap_or_else(|| runtime().1.root().join("media"));
    let path = root.join(rel);
    assert!(path.exists(), "{} is missing: run `cargo xtask media`", path.display());
    path
}

/// The LibriVox WAVs of Debian's pocketsphinx-testdata (apt-get download into the cache).
fn librivox() -> Vec<PathBuf> {
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
    let mut wavs: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    wavs.sort();
    assert_eq!(wavs.len(), 5, "LibriVox clips in {}", data.display());
    wavs
}

#[test]
fn yamnet_matches_python() {
    let tagger = yamnet();
    let (_, home) = runtime();
    assert_eq!(tagger.sample_rate(), 16_000);
    assert_eq!(tagger.window(), 15_600);
    assert_eq!(tagger.labels().len(), 521);
    assert_eq!(tagger.labels()[0], "Speech");
    assert_eq!(tagger.embedding(), ("embedding", 1024));
    let case = Case::load(&home.model_dir("yamnet").unwrap(), Some("speech_music_silence"));
    let (x, shape) = case.f32s("inputs", "waveform");
    let windows: Vec<&[f32]> = x.chunks_exact(shape[1]).collect();
    let out = tagger.tag(&windows).unwrap();
    case.check("probabilities", &out.iter().map(|o| o.probabilities.clone()).collect::<Vec<_>>());
    case.check("embedding", &out.iter().map(|o| o.embeddings["embedding"].clone()).collect::<Vec<_>>());
    // The golden windows: two of speech, two of music, silence.
    let firsts: Vec<String> = out.iter().map(|o| o.top(tagger.labels(), 1)[0].0.to_string()).collect();
    assert_eq!(firsts, ["Speech", "Speech", "Music", "Music", "Silence"]);
    for o in &out {
        assert!(o.probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
    }
    // Batching: one window alone gives what it gave in the batch.
    let single = tagger.tag(&windows[2..3]).unwrap();
    assert!(common::max_diff(&single[0].probabilities, &out[2].probabilities) < 1e-5);
    assert!(tagger.tag(&[&x[..100]]).is_err(), "a short window is an input error");
}

#[test]
fn label_texts_say_what_each_class_means() {
    let tagger = yamnet();
    let (labels, texts) = (tagger.labels(), tagger.label_texts());
    assert_eq!(texts.len(), labels.len());
    let bark = labels.iter().position(|l| l == "Bark").unwrap();
    assert!(texts[bark].starts_with("Bark") && texts[bark].contains("dogs"), "{}", texts[bark]);
    // Every text starts with its class name and adds a meaning after it.
    for (l, t) in labels.iter().zip(texts) {
        assert!(t.starts_with(l.as_str()) && t.len() > l.len() + 10, "{l}: {t}");
    }
}

#[test]
fn music_is_music() {
    for file in ["music/funkyrobot.mp3", "music/1918.mp3"] {
        let best = top(&mean_probabilities(&decode(&media(file), 30)), 3);
        eprintln!("{file}: {best:?}");
        assert!(best.iter().any(|(l, p)| l == "Music" && *p > 0.5), "{file}: {best:?}");
    }
}

#[test]
fn librivox_is_speech() {
    for wav in librivox() {
        let best = top(&mean_probabilities(&decode(&wav, 60)), 3);
        eprintln!("{}: {best:?}", wav.file_name().unwrap().to_string_lossy());
        assert_eq!(best[0].0, "Speech", "{}: {best:?}", wav.display());
        assert!(best[0].1 > 0.9, "{}: {best:?}", wav.display());
    }
}

#[test]
fn silence_is_silence_and_quiet() {
    let best = top(&mean_probabilities(&vec![0.0; 32_000]), 2);
    assert_eq!(best[0].0, "Silence", "{best:?}");
    assert!(best[1].1 < 0.05, "nothing else is heard in silence: {best:?}");
}

#[test]
fn a_tagger_without_embeddings_or_label_texts() {
    let (rt, home) = runtime();
    let mut spec = ModelSpec::load(&home, "yamnet").unwrap();
    let section = spec.tagger.as_mut().unwrap();
    section.embedding.clear();
    section.embeddings.clear();
    section.label_texts = None;
    let tagger = MusicTagger::from_spec(rt, &spec).unwrap();
    assert_eq!(tagger.embedding(), ("", 0));
    assert_eq!(tagger.label_texts(), tagger.labels(), "without label texts the names stand in");
    let out = tagger.tag(&[&vec![0.0; tagger.window()]]).unwrap();
    assert!(out[0].embeddings.is_empty());
    assert_eq!(out[0].probabilities.len(), 521);

    // A default embedding that is not an output, or label texts that do not match the labels
    // line for line, are refused at load.
    let mut bad = ModelSpec::load(&home, "yamnet").unwrap();
    bad.tagger.as_mut().unwrap().embedding = "penultimate".into();
    let err = MusicTagger::from_spec(rt, &bad).err().expect("unknown default embedding").to_string();
    assert!(err.contains("penultimate"), "{err}");
    let mut bad = ModelSpec::load(&home, "yamnet").unwrap();
    bad.tagger.as_mut().unwrap().label_texts = Some("model.toml".into());
    let err = MusicTagger::from_spec(rt, &bad).err().expect("label texts of the wrong length").to_string();
    assert!(err.contains("label texts for 521 labels"), "{err}");
}

/// Recordings of the evaluation set (`<home>/eval-set`, built from Debian's gcompris-qt-data
/// by `cargo xtask media`), found by their source file in `items.tsv`, and a class each must
/// have among its five most probable (mean over its windows): AudioSet's parent classes score
/// as high as the species (the duck: Animal 0.990, Livestock 0.987, Fowl 0.986, Duck 0.978).
#[test]
fn animals_instruments_and_events_of_the_eval_set() {
    let (_, home) = runtime();
    let set = home.root().join("eval-set");
    let items = std::fs::read_to_string(set.join("items.tsv"))
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask media`", set.join("items.tsv").display()));
    let expected: &[(&str, &[&str])] = &[
        ("memory-sound/resource/LRBark_3_LA_cut.ogg", &["Dog", "Bark"]),
        ("animals/dog.ogg", &["Dog", "Bark"]),
        ("animals/cat.ogg", &["Cat", "Meow"]),
        ("animals/cow.ogg", &["Cattle, bovinae", "Moo"]),
        ("animals/duck.ogg", &["Duck", "Quack"]),
        ("animals/sheep.ogg", &["Sheep", "Bleat"]),
        ("memory-sound/resource/LRApplauses_1_LA_cut.ogg", &["Applause", "Clapping"]),
        ("memory-sound/resource/LRTrain_slowing_down_01_LA_cut.ogg", &["Train", "Rail transport"]),
        ("memory-sound/resource/LRDoor_Open_2_LA.ogg", &["Door"]),
        ("instruments/resource/trumpet.ogg", &["Trumpet"]),
        ("instruments/resource/harp.ogg", &["Harp"]),
        ("instruments/resource/timpani.ogg", &["Timpani"]),
    ];
    for (source, classes) in expected {
        // items.tsv: file, kind (sound or video: the sound over a picture or black), query, source
        let row = items
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|c| c.len() > 3 && c[3].ends_with(source) && (c[1] == "sound" || c[1] == "video"))
            .unwrap_or_else(|| panic!("no sound of {source} in {}", set.display()));
        let path = set.join(if row[1] == "sound" { "sounds" } else { "videos" }).join(row[0]);
        let best = top(&mean_probabilities(&decode(&path, 30)), 5);
        eprintln!("{} ({source}): {best:?}", row[0]);
        assert!(
            best.iter().any(|(l, _)| classes.contains(&l.as_str())),
            "{source}: want one of {classes:?}, got {best:?}"
        );
    }
}
