//! Bring your own models: Hugging Face ONNX export folders added with `medley models add`.
//!
//! The folders are tiny random-weight models of the real architectures, exported at setup
//! exactly as users get them (`onnx_models/export_hf_tiny.py`: optimum's layout and the
//! transformers.js layout) into `$MEDLEY_TEST_FIXTURES/hf/<family>-<layout>/`. Every test adds
//! into a temporary model cache (`--home`), never the real one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{env_path, medley, stdout_json};
use serde_json::Value;

/// Each fixture folder and the role `models add` must give it.
const FOLDERS: [(&str, &str); 10] = [
    ("clip-optimum", "dual_image_text"),
    ("clip-tjs", "dual_image_text"),
    ("siglip-optimum", "dual_image_text"),
    ("siglip-tjs", "dual_image_text"),
    ("clap-tjs", "dual_audio_text"),
    ("vit-gpt2-optimum", "captioner"),
    ("vit-gpt2-tjs", "captioner"),
    ("whisper-optimum", "speech_to_text"),
    ("whisper-tjs", "speech_to_text"),
    ("smolvlm-tjs", "captioner"),
];

fn fixtures() -> PathBuf {
    let dir = env_path("MEDLEY_TEST_FIXTURES").join("hf");
    assert!(
        dir.join("clip-optimum/config.json").is_file(),
        "{} has no export folders: run `cargo xtask fixtures`",
        dir.display()
    );
    dir
}

/// A model cache of its own: the runtime library comes from the real one.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }
    /// A cache holding, as links, these models of the real one (the registry's).
    fn with_registry(ids: &[&str]) -> Self {
        let home = Self::new();
        let models = home.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        let real = env_path("MEDLEY_HOME").join("models");
        for id in ids {
            std::os::unix::fs::symlink(real.join(id), models.join(id)).unwrap();
        }
        home
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn run(&self, args: &[&str]) -> Output {
        let lib = env_path("MEDLEY_HOME").join("onnxruntime/libonnxruntime.so");
        medley().arg("--home").arg(self.path()).args(args).env("MEDLEY_ORT_LIB", lib).output().unwrap()
    }
    /// `medley index MEDIA --db DB --pipeline PIPELINE` with this cache.
    fn index(&self, media: &Path, db: &Path, pipeline: &Path) -> Output {
        self.run(&[
            "index",
            media.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--pipeline",
            pipeline.to_str().unwrap(),
        ])
    }
    fn add(&self, dir: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["models", "add", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }
    /// Everything in the models folder, hidden entries included.
    fn entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.path().join("models")) {
            Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// `<work>/media` with a copy of each file under its own name.
fn media_folder(work: &Path, files: &[PathBuf]) -> PathBuf {
    let media = work.join("media");
    std::fs::create_dir_all(&media).unwrap();
    for f in files {
        std::fs::copy(f, media.join(f.file_name().unwrap())).unwrap();
    }
    media
}

fn text(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn every_family_and_layout_is_added_checked_and_listed() {
    let hf = fixtures();
    let home = Home::new();
    for (folder, role) in FOLDERS {
        let out = home.add(&hf.join(folder), &["--json"]);
        assert!(out.status.success(), "models add {folder} failed\n{}", text(&out));
        let added = stdout_json(&out);
        assert_eq!(added["id"], folder, "{added}");
        assert_eq!(added["role"], role, "{folder}: {added}");
        assert_eq!(added["check"]["status"], "passed", "{folder}: {added}");
        let layout = if folder.ends_with("-tjs") { "transformers.js" } else { "optimum" };
        assert_eq!(added["layout"], layout, "{folder}: {added}");
        assert!(!added["pipeline_keys"].as_array().unwrap().is_empty(), "{folder}: {added}");
        if role == "dual_image_text" {
            assert!(added["pipeline_keys"][0].as_str().unwrap().starts_with("models.clip"), "{added}");
        }
        assert!(home.path().join("models").join(folder).join("model.toml").is_file());
    }
    let out = home.run(&["models", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list = stdout_json(&out);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), FOLDERS.len(), "{list:?}");
    for (folder, role) in FOLDERS {
        let m = list.iter().find(|m| m["id"] == folder).unwrap_or_else(|| panic!("{folder} not listed: {list:?}"));
        assert_eq!(m["role"], role, "{m}");
        assert_eq!(m["check"]["status"], "passed", "{m}");
        assert!(m["source"].as_str().unwrap().starts_with("added from "), "{m}");
        assert!(m["bytes"].as_u64().unwrap() > 10_000, "{m}");
    }
    // The human listing names each model with its role and check.
    let out = home.run(&["models", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    for (folder, role) in FOLDERS {
        assert!(
            listing.lines().any(|l| l.starts_with(folder) && l.contains(role) && l.contains("passed")),
            "{listing}"
        );
    }
    // `models check` re-runs the check on the cached copy.
    let out = home.run(&["models", "check", "siglip-tjs", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = stdout_json(&out);
    assert_eq!(report["status"], "passed", "{report}");
    assert_eq!(report["lines"].as_array().unwrap().len(), 2, "image and text towers: {report}");
}

/// The two layouts of one model are the same model: the separate towers of the
/// transformers.js folder and the joint graph of optimum's give the same vectors.
#[test]
fn the_joint_graph_and_the_separate_towers_agree() {
    let hf = fixtures();
    let home = Home::new();
    for folder in ["clip-optimum", "clip-tjs"] {
        let out = home.add(&hf.join(folder), &["--json"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let spec = |id: &str| std::fs::read_to_string(home.path().join("models").join(id).join("model.toml")).unwrap();
    assert!(spec("clip-optimum").contains("file = \"model.onnx\""), "{}", spec("clip-optimum"));
    assert!(spec("clip-tjs").contains("file = \"vision_model.onnx\""), "{}", spec("clip-tjs"));
    let lines = |id: &str| {
        let out = home.run(&["models", "check", id, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        stdout_json(&out)["lines"].clone()
    };
    // The lines carry the largest difference between the two inputs' vectors, to 3 places.
    assert_eq!(lines("clip-optimum"), lines("clip-tjs"));
}

#[test]
fn a_narrower_role_keeps_one_tower_and_a_wrong_one_is_refused() {
    let hf = fixtures();
    let home = Home::new();
    let out = home.add(&hf.join("clip-tjs"), &["--role", "image", "--id", "clip-image", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout_json(&out)["role"], "image");
    let spec = std::fs::read_to_string(home.path().join("models/clip-image/model.toml")).unwrap();
    assert!(spec.contains("[image]") && !spec.contains("[text]"), "{spec}");

    let out = home.add(&hf.join("clip-tjs"), &["--role", "audio", "--id", "clip-audio"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.json") && err.contains("role \"audio\""), "{err}");
    assert!(!home.path().join("models/clip-audio").exists());

    // The same id twice: refused, the first left as it was.
    let before = std::fs::read_to_string(home.path().join("models/clip-image/model.toml")).unwrap();
    let out = home.add(&hf.join("siglip-tjs"), &["--id", "clip-image"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(home.path().join("models/clip-image/model.toml")).unwrap(), before);
}

/// Replace every occurrence of `from` in an ONNX file by `to` (same length): protobuf strings
/// carry their length, so this renames a tensor consistently in the graph's inputs and in the
/// nodes that read it, and the graph stays valid.
/// Say in the folder's config.json that the model is of another `model_type`.
fn set_model_type(dir: &Path, model_type: &str) {
    let path = dir.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["model_type"] = model_type.into();
    std::fs::write(&path, v.to_string()).unwrap();
}

fn rename_in_graph(path: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let bytes = std::fs::read(path).unwrap();
    let (f, t) = (from.as_bytes(), to.as_bytes());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut n = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(f) {
            out.extend_from_slice(t);
            i += f.len();
            n += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    assert!(n > 0, "{from} not in {}", path.display());
    std::fs::write(path, out).unwrap();
}

#[test]
fn malformed_folders_are_refused_naming_the_file_and_leave_nothing() {
    let hf = fixtures();
    let work = tempfile::tempdir().unwrap();
    struct Case {
        name: &'static str,
        from: &'static str,
        /// What to break in the copy.
        breaks: fn(&Path),
        /// What the message must say (all of them).
        says: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "no-image-graph",
            from: "clip-tjs",
            breaks: |d| {
                std::fs::remove_file(d.join("onnx/vision_model.onnx")).unwrap();
                std::fs::remove_file(d.join("onnx/model.onnx")).unwrap();
            },
            says: &["no-image-graph", "no image tower graph", "onnx/vision_model.onnx"],
        },
        Case {
            name: "no-encoder",
            from: "vit-gpt2-optimum",
            breaks: |d| std::fs::remove_file(d.join("encoder_model.onnx")).unwrap(),
            says: &["no-encoder", "no encoder graph", "encoder_model.onnx"],
        },
        Case {
            name: "nonsense-type",
            from: "siglip-optimum",
            breaks: |d| set_model_type(d, "nonsense"),
            says: &["nonsense-type/config.json", "model_type \"nonsense\"", "clip, siglip, clap"],
        },
        Case {
            name: "renamed-input",
            from: "clip-tjs",
            breaks: |d| rename_in_graph(&d.join("onnx/vision_model.onnx"), "pixel_values", "pixel_valuez"),
            says: &["renamed-input/onnx/vision_model.onnx", "wrong input names", "pixel_values", "pixel_valuez"],
        },
        Case {
            name: "renamed-audio-input",
            from: "clap-tjs",
            breaks: |d| rename_in_graph(&d.join("onnx/audio_model.onnx"), "input_features", "input_featurez"),
            says: &["onnx/audio_model.onnx", "wrong input names", "input_features"],
        },
        Case {
            name: "whisper-without-merged-decoder",
            from: "whisper-optimum",
            breaks: |d| std::fs::remove_file(d.join("decoder_model_merged.onnx")).unwrap(),
            says: &["whisper-without-merged-decoder", "no merged decoder", "decoder_model_merged.onnx"],
        },
        Case {
            name: "whisper-without-generation-config",
            from: "whisper-tjs",
            breaks: |d| std::fs::remove_file(d.join("generation_config.json")).unwrap(),
            says: &["whisper-without-generation-config/generation_config.json", "missing", "language"],
        },
        Case {
            name: "vlm-without-embeddings",
            from: "smolvlm-tjs",
            breaks: |d| std::fs::remove_file(d.join("onnx/embed_tokens.onnx")).unwrap(),
            says: &["vlm-without-embeddings", "no token embedding graph", "onnx/embed_tokens.onnx"],
        },
        Case {
            name: "vlm-renamed-decoder-input",
            from: "smolvlm-tjs",
            breaks: |d| rename_in_graph(&d.join("onnx/decoder_model_merged.onnx"), "inputs_embeds", "inputs_embedz"),
            says: &["onnx/decoder_model_merged.onnx", "wrong input names", "inputs_embeds"],
        },
        Case {
            name: "blip",
            from: "vit-gpt2-tjs",
            breaks: |d| set_model_type(d, "blip"),
            says: &["blip/config.json", "not supported yet", "neither optimum nor transformers.js"],
        },
        Case {
            name: "no-preprocessor",
            from: "clip-optimum",
            breaks: |d| std::fs::remove_file(d.join("preprocessor_config.json")).unwrap(),
            says: &["no-preprocessor/preprocessor_config.json", "missing"],
        },
        Case {
            name: "broken-config",
            from: "clap-tjs",
            breaks: |d| std::fs::write(d.join("config.json"), "{ not json").unwrap(),
            says: &["broken-config/config.json", "cannot read"],
        },
        Case {
            name: "truncated-graph",
            from: "siglip-tjs",
            breaks: |d| {
                let path = d.join("onnx/text_model.onnx");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
            },
            says: &["truncated-graph/onnx/text_model.onnx", "cannot read"],
        },
    ];
    for case in &cases {
        let dir = work.path().join(case.name);
        copy_dir(&hf.join(case.from), &dir);
        (case.breaks)(&dir);
        let home = Home::new();
        let out = home.add(&dir, &[]);
        assert_eq!(out.status.code(), Some(2), "{}: expected exit 2\n{}", case.name, text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for s in case.says {
            assert!(err.contains(s), "{}: the message should say {s:?}: {err}", case.name);
        }
        assert_eq!(home.entries(), Vec::<String>::new(), "{}: something was left in the cache", case.name);
    }
}

#[test]
fn a_registry_model_is_listed_and_checked() {
    let home = Home::new();
    let real = env_path("MEDLEY_HOME").join("models/tiny-clip");
    copy_dir(&real, &home.path().join("models/tiny-clip"));
    let out = home.run(&["models", "list", "--json"]);
    let list = stdout_json(&out);
    assert_eq!(list[0]["id"], "tiny-clip", "{list}");
    assert_eq!(list[0]["source"], "registry export", "{list}");
    assert!(list[0]["check"].is_null(), "never checked yet: {list}");
    let out = home.run(&["models", "check", "tiny-clip", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout_json(&out)["status"], "passed");
    let list = stdout_json(&home.run(&["models", "list", "--json"]));
    assert_eq!(list[0]["check"]["status"], "passed", "{list}");
    // An id that is not in the cache: exit 2, naming it.
    let out = home.run(&["models", "check", "no-such-model"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-model"), "{}", text(&out));
}

/// CLAP's log-mel front end, computed in Rust, against the Hugging Face ClapFeatureExtractor
/// on the same waveform (written by the fixture script).
#[test]
fn clap_features_match_the_hugging_face_extractor() {
    let hf = fixtures();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("golden/clap_features.json")).unwrap()).unwrap();
    let pre: Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("clap-tjs/preprocessor_config.json")).unwrap()).unwrap();
    let num = |k: &str| pre[k].as_f64().unwrap();
    let window = num("nb_max_samples") as usize;
    let hop = num("hop_length") as usize;
    let spec = medley_models::MelSpec {
        n_fft: num("fft_window_size") as usize,
        hop,
        n_mels: num("feature_size") as usize,
        f_min: num("frequency_min"),
        f_max: num("frequency_max"),
        mel_scale: "slaney".into(),
        norm: Some("slaney".into()),
        frames: 1 + window / hop,
    };
    let mel = medley_models::LogMel::new(&spec, num("sampling_rate") as u32, window).unwrap();
    let wave: Vec<f32> = golden["waveform"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let want: Vec<f32> = golden["features"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let shape: Vec<usize> = golden["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    assert_eq!(shape, vec![1, 1, spec.frames, spec.n_mels]);
    let got = mel.features(&wave);
    assert_eq!(got.len(), want.len());
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // dB values around -60..+20: float32 rounding of the reference is ~1e-5.
    assert!(diff < 1e-3, "max |rust - transformers| = {diff} dB");
}

/// The media rows' `clip` vectors and the `clip` field's model, as pyarrow reads an export.
/// A pipeline file in `dir` with vision and audio, and the added model `id` under the
/// `[models]` key `role` (`clip`, `clap`, `captioner`); `extra` sections follow.
fn dual_pipeline(dir: &Path, role: &str, id: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    let toml = format!(
        "[pipeline]\nname = \"{role}-test\"\n[sampler]\nvideo = \"fps:1\"\n[stages]\nvision = true\naudio = true\nmusic = false\n\
         speech = false\nsound_events = false\nocr = false\n[models]\nimage = \"efficientnet-lite0\"\naudio = \"aisfx\"\n\
         text = \"minilm-l6\"\n{role} = \"{id}\"\n{extra}"
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn clip_columns(home: &Home, db: &Path) -> Value {
    space_columns(home, db, "clip")
}

/// The `dim` of a section (`image`, `audio`) of an added model's `model.toml`.
fn section_dim(models: &Path, id: &str, section: &str) -> usize {
    let spec = std::fs::read_to_string(models.join(id).join("model.toml")).unwrap();
    let at = spec.find(&format!("[{section}]")).unwrap_or_else(|| panic!("{id} has no [{section}] section"));
    spec[at..].lines().find_map(|l| l.strip_prefix("dim = ")).unwrap().trim().parse().unwrap()
}

/// The vectors of `names` in a [`space_columns`] answer, each checked to be `width` wide and
/// of unit length.
fn unit_vectors(found: &Value, names: &[&str], width: usize) -> Vec<Vec<f64>> {
    let rows = found["rows"].as_object().unwrap();
    names
        .iter()
        .map(|p| {
            let v: Vec<f64> = rows[*p]
                .as_array()
                .unwrap_or_else(|| panic!("{p}: {found}"))
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(v.len(), width, "{p}");
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "{p}: unit length: {norm}");
            v
        })
        .collect()
}

/// A dual encoder's column (`clip` or `clap`) as pyarrow reads it from an export: the model its
/// metadata names, and each item's vector (or null) by file name.
fn space_columns(home: &Home, db: &Path, column: &str) -> Value {
    let parquet = db.with_extension("parquet");
    let out = home.run(&["export", "--db", db.to_str().unwrap(), parquet.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let script = "import json, sys, pyarrow.parquet as pq\n\
        t, c = pq.read_table(sys.argv[1]), sys.argv[2]\n\
        meta = t.schema.field(c).metadata or {}\n\
        print(json.dumps({'model': meta.get(b'medley.model', b'').decode(),\n\
            'rows': {p.split('/')[-1]: v for p, v in zip(t['path'].to_pylist(), t[c].to_pylist())}}))";
    let out = std::process::Command::new(env_path("MEDLEY_TEST_PYTHON"))
        .args(["-c", script])
        .arg(&parquet)
        .arg(column)
        .output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    stdout_json(&out)
}

/// Two commands from an export folder to a searchable table: `models add` a CLIP export, then
/// `index` with a pipeline naming it in `models.clip`. Each picture gets a unit `clip` vector
/// of the model's width (one per picture, all different), a sound gets none, the column names
/// its model, and `search` embeds the query with that model's text tower and fuses the two
/// spaces' rankings. Another image-text model on the same table, or a model of another role,
/// is refused before any work.
#[test]
fn an_added_clip_model_fills_the_clip_column_that_search_uses() {
    let home = Home::with_registry(&["efficientnet-lite0", "aisfx", "minilm-l6"]);
    let models = home.path().join("models");
    for (folder, id) in [("clip-optimum", "my-clip"), ("siglip-tjs", "my-siglip")] {
        let out = home.add(&fixtures().join(folder), &["--id", id]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let work = tempfile::tempdir().unwrap();
    let (source, fixtures) = (env_path("MEDLEY_TEST_MEDIA"), env_path("MEDLEY_TEST_FIXTURES"));
    let media = media_folder(
        work.path(),
        &[
            source.join("photos/chelsea.png"),
            source.join("photos/coffee.png"),
            source.join("photos/rocket.jpg"),
            source.join("music/funkyrobot.mp3"),
            // A video: its 10 s windows are segments.
            fixtures.join("cat_upright.mp4"),
        ],
    );
    let db = work.path().join("db");
    let segments = "[segments]\nby = \"window\"\nwindow_s = 10.0\n";
    let index = |clip: &str| home.index(&media, &db, &dual_pipeline(work.path(), "clip", clip, segments));
    let out = index("my-clip");
    assert!(out.status.success(), "{}", text(&out));

    let width = section_dim(&models, "my-clip", "image");
    let found = clip_columns(&home, &db);
    assert_eq!(found["model"], "my-clip", "{found}");
    let rows = found["rows"].as_object().unwrap();
    assert!(rows["funkyrobot.mp3"].is_null(), "a sound has no picture: {found}");
    let pictures = unit_vectors(&found, &["chelsea.png", "coffee.png", "rocket.jpg", "cat_upright.mp4"], width);
    assert!(pictures[0] != pictures[1] && pictures[1] != pictures[2], "each picture its own vector");

    // Search fuses the CLIP ranking with the text-space one: reciprocal-rank scores, at most
    // 2 / 61 (first in both lists), and every item with pictures found (the sound, with no
    // sound or music stage here, has nothing in either space).
    let out = home.run(&["search", "a cat", "--db", db.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let hits = stdout_json(&out);
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 4, "{hits:?}");
    for h in hits {
        let score = h["score"].as_f64().unwrap();
        assert!(score > 0.0 && score <= 2.0 / 61.0 + 1e-6, "{h}");
    }

    // Segments (the video's 10 s windows) are ranked the same way.
    let out = home.run(&["search", "a cat", "--segments", "--db", db.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let hits = stdout_json(&out);
    let hits = hits.as_array().unwrap();
    assert!(!hits.is_empty(), "the video's segments are found");
    for h in hits {
        assert!(h["span"]["segment"].is_u64(), "a segment hit: {h}");
        assert!(h["score"].as_f64().unwrap() <= 2.0 / 61.0 + 1e-6, "{h}");
    }

    // Another image-text model cannot write into this table's `clip` column.
    std::fs::write(media.join("astronaut.png"), std::fs::read(source.join("photos/astronaut.png")).unwrap()).unwrap();
    let out = index("my-siglip");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("clip[") && text(&out).contains("my-clip"), "{}", text(&out));
    // A model of another role is refused as the clip model, naming the role it needs.
    let out = index("minilm-l6");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("dual_image_text"), "{}", text(&out));
}

/// The same two commands for sounds: `models add` a CLAP export (transformers.js layout), then
/// `index` with `models.clap`. Each sound gets a unit `clap` vector of the model's width (each
/// its own), a picture gets none, the column names its model, and `search` embeds the query
/// with CLAP's text tower and fuses the rankings, so sounds with nothing in the text space are
/// found. A model of another role is refused as the clap model before any work.
#[test]
fn an_added_clap_model_fills_the_clap_column_that_search_uses() {
    let home = Home::with_registry(&["efficientnet-lite0", "aisfx", "minilm-l6"]);
    let models = home.path().join("models");
    let out = home.add(&fixtures().join("clap-tjs"), &["--id", "my-clap"]);
    assert!(out.status.success(), "{}", text(&out));
    let work = tempfile::tempdir().unwrap();
    let (source, fixtures) = (env_path("MEDLEY_TEST_MEDIA"), env_path("MEDLEY_TEST_FIXTURES"));
    let media = media_folder(
        work.path(),
        &[
            source.join("photos/chelsea.png"),
            source.join("music/1918.mp3"),
            fixtures.join("bbb_audio.m4a"),
            // A video, for music-for.
            fixtures.join("cat_upright.mp4"),
        ],
    );
    let db = work.path().join("db");
    let index = |clap: &str| home.index(&media, &db, &dual_pipeline(work.path(), "clap", clap, ""));
    let out = index("my-clap");
    assert!(out.status.success(), "{}", text(&out));

    let width = section_dim(&models, "my-clap", "audio");
    let found = space_columns(&home, &db, "clap");
    assert_eq!(found["model"], "my-clap", "{found}");
    let rows = found["rows"].as_object().unwrap();
    assert!(rows["chelsea.png"].is_null(), "a picture has no sound: {found}");
    let sounds = unit_vectors(&found, &["1918.mp3", "bbb_audio.m4a"], width);
    assert!(sounds[0] != sounds[1], "each sound its own vector");

    // The sounds have nothing in the text space here (no music or sound-event stage): the CLAP
    // ranking is what finds them, fused with the text space's (which finds the picture).
    let out = home.run(&["search", "a dog barking", "--db", db.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let hits = stdout_json(&out);
    let names: Vec<&str> =
        hits.as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap().rsplit('/').next().unwrap()).collect();
    assert!(names.contains(&"1918.mp3") && names.contains(&"bbb_audio.m4a"), "{hits}");
    for h in hits.as_array().unwrap() {
        let score = h["score"].as_f64().unwrap();
        assert!(score > 0.0 && score <= 2.0 / 61.0 + 1e-6, "reciprocal-rank scores: {h}");
    }

    // Segments have their own `clap` (the unit mean of their windows): a segment search reaches
    // the sounds' stretches through CLAP too.
    let out = home.run(&["search", "a dog barking", "--segments", "-k", "40", "--db", db.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let segment_hits = stdout_json(&out);
    let sound_segments = segment_hits
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["path"].as_str().unwrap().ends_with("1918.mp3") && h["span"]["segment"].is_u64())
        .count();
    assert!(sound_segments >= 2, "the music's stretches are found: {segment_hits}");

    // Music for the video: the sounds have no tags here (no music or sound-event stage), so its
    // labels meet nothing in the text space; CLAP's text tower reads them and ranks the sounds
    // themselves. Only sounds without pictures come back, never the video or the photo.
    let video = hits
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["path"].as_str().unwrap().ends_with("cat_upright.mp4"))
        .map(|h| h["content_hash"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("the video is found too: {hits}"));
    let out = home.run(&["music-for", &video, "--db", db.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let music = stdout_json(&out);
    let mut names: Vec<&str> =
        music.as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap().rsplit('/').next().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["1918.mp3", "bbb_audio.m4a"], "{music}");

    // A model of another role is refused as the clap model, naming the role it needs.
    let out = index("minilm-l6");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("dual_audio_text"), "{}", text(&out));
}

/// The golden written by the fixture script for the tiny Whisper: a waveform, the feature
/// extractor's features of it, the language transformers' model detects, and its greedy
/// English transcription.
struct WhisperGolden {
    wave: Vec<f32>,
    features: Vec<f32>,
    json: Value,
}

fn whisper_golden() -> WhisperGolden {
    let dir = fixtures().join("golden");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("whisper.json")).unwrap()).unwrap();
    let wave = json["waveform"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let bytes = std::fs::read(dir.join("whisper_features.f32")).unwrap();
    let features = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    WhisperGolden { wave, features, json }
}

/// Whisper's log-mel front end, computed in Rust from what `models add` read of
/// preprocessor_config.json, against the Hugging Face WhisperFeatureExtractor.
#[test]
fn whisper_features_match_the_hugging_face_extractor() {
    let home = Home::new();
    let out = home.add(&fixtures().join("whisper-optimum"), &["--id", "w"]);
    assert!(out.status.success(), "{}", text(&out));
    let spec = medley_models::ModelSpec::from_dir(&home.path().join("models/w")).unwrap();
    let w = spec.whisper.as_ref().unwrap();
    let mel_spec = w.features.clone().expect("an optimum export gets medley's front end");
    assert_eq!((mel_spec.n_fft, mel_spec.hop, mel_spec.n_mels, mel_spec.frames), (400, 160, 80, 3000));
    let golden = whisper_golden();
    let shape: Vec<usize> =
        golden.json["features_shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    assert_eq!(shape, vec![1, 80, 3000]);
    let mel = medley_models::LogMel::whisper(&mel_spec, w.sample_rate, w.chunk).unwrap();
    let mut padded = golden.wave.clone();
    padded.resize(w.chunk, 0.0);
    let got = mel.whisper_features(&padded);
    assert_eq!(got.len(), golden.features.len());
    let diff = got.iter().zip(&golden.features).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // Values around -1..2 (log10 scaled): the reference's float32 spectrum rounds near 1e-6.
    assert!(diff < 1e-4, "max |rust - transformers| = {diff}");
}

/// An added Whisper export (both layouts) transcribes as the transformers model it was
/// exported from: the same detected language and the same greedy English tokens, through
/// medley's front end, the encoder and the merged decoder with both caches.
#[test]
fn an_added_whisper_transcribes_like_transformers() {
    let home = Home::new();
    for (folder, id) in [("whisper-optimum", "w-optimum"), ("whisper-tjs", "w-tjs")] {
        let out = home.add(&fixtures().join(folder), &["--id", id]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let golden = whisper_golden();
    let real = medley_models::ModelHome::new(env_path("MEDLEY_HOME"));
    let rt = medley_models::Runtime::load(&real).unwrap();
    let added = medley_models::ModelHome::new(home.path());
    for id in ["w-optimum", "w-tjs"] {
        let stt = medley_models::SpeechToText::load(&rt, &added, id).unwrap();
        let english = medley_models::TranscribeOptions {
            language: Some("en".into()),
            timestamps: false,
            max_new_tokens: golden.json["max_new_tokens"].as_u64().unwrap() as usize,
            ..Default::default()
        };
        let t = stt.transcribe(&golden.wave, &english).unwrap();
        assert_eq!(t.text(), golden.json["text"].as_str().unwrap().trim(), "{id}: {t:?}");
        assert!(!t.text().is_empty(), "{id}: some tokens are text");
        let detected = medley_models::TranscribeOptions { language: None, ..english };
        let t = stt.transcribe(&golden.wave, &detected).unwrap();
        assert_eq!(t.language, golden.json["language"].as_str().unwrap(), "{id}");
    }
}

/// An English-only Whisper (`*.en`: `is_multilingual` false, no language tokens) is added with
/// no language list, and transcribes with the bare prompt, in English, without detecting.
#[test]
fn an_english_only_whisper_needs_no_language_tokens() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("whisper-tiny.en");
    copy_dir(&fixtures().join("whisper-tjs"), &dir);
    let path = dir.join("generation_config.json");
    let mut g: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    g["is_multilingual"] = false.into();
    g.as_object_mut().unwrap().remove("lang_to_id");
    std::fs::write(&path, g.to_string()).unwrap();
    let home = Home::new();
    let out = home.add(&dir, &["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout_json(&out)["check"]["status"], "passed", "{}", text(&out));
    let spec = medley_models::ModelSpec::from_dir(&home.path().join("models/whisper-tiny.en")).unwrap();
    assert!(spec.whisper.as_ref().unwrap().lang_ids.is_empty());
    let rt = medley_models::Runtime::load(&medley_models::ModelHome::new(env_path("MEDLEY_HOME"))).unwrap();
    let stt =
        medley_models::SpeechToText::load(&rt, &medley_models::ModelHome::new(home.path()), "whisper-tiny.en").unwrap();
    let opts = medley_models::TranscribeOptions { timestamps: false, max_new_tokens: 5, ..Default::default() };
    let t = stt.transcribe(&whisper_golden().wave, &opts).unwrap();
    assert_eq!((t.language.as_str(), t.language_probability), ("en", 1.0), "{t:?}");
    assert!(!t.text().is_empty(), "{t:?}");
}

/// The two commands for speech: `models add` a Whisper export, then `index` with it as
/// `models.speech`. Voice activity still decides where it listens: the LibriVox speech gets a
/// transcript (the random model's words) and a language, the music track none.
#[test]
fn an_added_whisper_transcribes_where_someone_speaks() {
    let home = Home::with_registry(&["efficientnet-lite0", "aisfx", "minilm-l6", "silero-vad"]);
    let out = home.add(&fixtures().join("whisper-tjs"), &["--id", "my-whisper"]);
    assert!(out.status.success(), "{}", text(&out));
    let work = tempfile::tempdir().unwrap();
    let pipeline = work.path().join("speech.toml");
    std::fs::write(
        &pipeline,
        "[pipeline]\nname = \"whisper-test\"\n[sampler]\nvideo = \"fps:1\"\n[stages]\nvision = false\naudio = true\nmusic = false\nspeech = true\n\
         sound_events = false\nocr = false\n[models]\nimage = \"efficientnet-lite0\"\naudio = \"aisfx\"\ntext = \"minilm-l6\"\n\
         speech = \"my-whisper\"\nvad = \"silero-vad\"\n",
    )
    .unwrap();
    let librivox =
        env_path("MEDLEY_HOME").join("downloads/pocketsphinx-testdata/usr/share/pocketsphinx/test/data/librivox");
    let speech = std::fs::read_dir(&librivox)
        .expect("no LibriVox clips: run `cargo xtask models --only silero-vad`")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .min()
        .unwrap();
    let spoken = speech.file_name().unwrap().to_string_lossy().into_owned();
    let media = media_folder(work.path(), &[speech, env_path("MEDLEY_TEST_MEDIA").join("music/1918.mp3")]);
    let db = work.path().join("db");
    let out = home.run(&[
        "index",
        media.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout_json(&out)["indexed"], 2, "{}", text(&out));
    let parquet = db.with_extension("parquet");
    let out = home.run(&["export", "--db", db.to_str().unwrap(), parquet.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let script = "import json, sys, pyarrow.parquet as pq\n\
        t = pq.read_table(sys.argv[1])\n\
        print(json.dumps({p.split('/')[-1]: [tr, la] for p, tr, la in zip(t['path'].to_pylist(), \
        t['transcript'].to_pylist(), t['language'].to_pylist())}))";
    let out =
        std::process::Command::new(env_path("MEDLEY_TEST_PYTHON")).args(["-c", script]).arg(&parquet).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rows = stdout_json(&out);
    let transcript = rows[&spoken][0].as_str().unwrap_or_default();
    assert!(!transcript.trim().is_empty(), "the speech is transcribed: {rows}");
    assert!(rows[&spoken][1].as_str().is_some_and(|l| !l.is_empty()), "with a language: {rows}");
    assert!(rows["1918.mp3"][0].as_str().unwrap_or_default().is_empty(), "music gets no transcript: {rows}");

    // A model of another role as the speech model is refused before any work, naming the role.
    let wrong = work.path().join("wrong.toml");
    std::fs::write(&wrong, std::fs::read_to_string(&pipeline).unwrap().replace("\"my-whisper\"", "\"minilm-l6\""))
        .unwrap();
    let out = home.index(&media, &db, &wrong);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("speech_to_text"), "{}", text(&out));
}

/// The golden the fixture script wrote for the tiny SmolVLM: the chat turn and its ids, the
/// processor's pixels of a picture, the vision encoder's features, and the tokens transformers'
/// `generate` picks greedily.
fn smolvlm_golden() -> (Value, Vec<f32>) {
    let dir = fixtures().join("golden");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("smolvlm.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("smolvlm_pixels.f32")).unwrap();
    (json, bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// An added SmolVLM (transformers.js layout) answers as the transformers model it was exported
/// from: the same chat turn and token ids, the same image features, and the same greedy tokens
/// through the token embeddings, the image rows and the cached decoder.
#[test]
fn an_added_smolvlm_answers_like_transformers() {
    let home = Home::new();
    let out = home.add(&fixtures().join("smolvlm-tjs"), &["--id", "vlm", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let added = stdout_json(&out);
    assert_eq!(added["role"], "captioner", "{added}");
    assert_eq!(added["model_type"], "idefics3", "{added}");
    let (golden, pixels) = smolvlm_golden();
    let real = medley_models::ModelHome::new(env_path("MEDLEY_HOME"));
    let rt = medley_models::Runtime::load(&real).unwrap();
    let vlm =
        medley_models::VisionLanguageModel::load(&rt, &medley_models::ModelHome::new(home.path()), "vlm").unwrap();
    let question = "Describe this picture.";
    assert_eq!(vlm.prompt_text(question), golden["prompt_expanded"].as_str().unwrap());
    let prompt = vlm.tokenize(question).unwrap();
    assert_eq!(prompt.ids, u32s(&golden["input_ids"]));

    let features = vlm.image_features(&pixels, 1).unwrap();
    let want: Vec<f32> =
        golden["image_features"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(features.len(), want.len());
    let diff = features.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-4, "image features: max |rust - transformers| = {diff}");

    let max_new = golden["max_new_tokens"].as_u64().unwrap() as usize;
    let g = vlm.generate_from_features(&prompt, &features, 1, max_new, true).unwrap().remove(0);
    let mut tokens = u32s(&golden["tokens"]);
    if tokens.last() == golden["eos_token_id"].as_u64().map(|e| e as u32).as_ref() {
        tokens.pop();
        assert!(g.ended, "{g:?}");
    }
    assert_eq!(g.tokens, tokens);
    assert!(!g.tokens.is_empty(), "the golden has tokens before the end");
    assert_eq!(vlm.decode(&g.tokens).unwrap(), golden["text"].as_str().unwrap().trim());
}

/// Each segment's caption by file name and segment number, as Python reads the table.
fn segment_captions(db: &Path) -> Value {
    let script = "import json, sys, lancedb\n\
        t = lancedb.connect(sys.argv[1]).open_table('segments').to_arrow().to_pylist()\n\
        print(json.dumps({f\"{r['path'].split('/')[-1]}:{r['segment']}\": r['caption'] for r in t}))";
    let out = std::process::Command::new(env_path("MEDLEY_TEST_PYTHON")).args(["-c", script]).arg(db).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    stdout_json(&out)
}

/// Two commands from a SmolVLM export to captions: `models add`, then `index` with it as
/// `models.captioner` and the question in `[captions]`. The item gets its middle frame's
/// caption as its `description`, every segment of the video its own in `segments.caption`,
/// and another question gives other captions (the prompt reaches the model). A prompt for an
/// image captioner that takes none is refused before any work; without one, that captioner
/// (ViT + GPT-2) captions the segments too, and both tables answer segment searches.
#[test]
fn an_added_smolvlm_captions_items_and_segments_with_the_pipelines_prompt() {
    let home = Home::with_registry(&["efficientnet-lite0", "aisfx", "minilm-l6"]);
    for (folder, id) in [("smolvlm-tjs", "my-vlm"), ("vit-gpt2-tjs", "my-vit-gpt2")] {
        let out = home.add(&fixtures().join(folder), &["--id", id]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let work = tempfile::tempdir().unwrap();
    let media = media_folder(work.path(), &[env_path("MEDLEY_TEST_FIXTURES").join("cat_upright.mp4")]);
    let index = |db: &str, id: &str, question: &str| {
        let extra = format!("[segments]\nby = \"window\"\nwindow_s = 1.0\n[captions]\nprompt = \"{question}\"\n");
        let pipeline = dual_pipeline(work.path(), "captioner", id, &extra);
        home.index(&media, &work.path().join(db), &pipeline)
    };
    let out = index("a", "my-vlm", "What animal is this?");
    assert!(out.status.success(), "{}", text(&out));
    let first = segment_captions(&work.path().join("a"));
    let first = first.as_object().unwrap();
    assert!(first.len() >= 2, "the 3 s video has several 1 s windows: {first:?}");
    for (segment, caption) in first {
        assert!(caption.as_str().is_some_and(|c| !c.trim().is_empty()), "{segment} has a caption: {first:?}");
    }
    let rows = space_columns(&home, &work.path().join("a"), "description");
    let description = rows["rows"]["cat_upright.mp4"].as_str().unwrap().to_string();
    assert!(!description.contains("composed from labels"), "the caption, not a composed text: {description}");

    let out = index("b", "my-vlm", "Where was this filmed?");
    assert!(out.status.success(), "{}", text(&out));
    let second = segment_captions(&work.path().join("b"));
    assert_ne!(first, second.as_object().unwrap(), "another question, other captions");

    let out = index("c", "my-vit-gpt2", "What animal is this?");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("captions.prompt") && text(&out).contains("takes no prompt"), "{}", text(&out));
    assert!(!work.path().join("c").exists(), "refused before any work");

    // Without a prompt, the encoder-decoder captioner captions the same segments.
    let plain = dual_pipeline(work.path(), "captioner", "my-vit-gpt2", "[segments]\nby = \"window\"\nwindow_s = 1.0\n");
    let out = home.index(&media, &work.path().join("d"), &plain);
    assert!(out.status.success(), "{}", text(&out));
    let captions = segment_captions(&work.path().join("d"));
    assert_eq!(captions.as_object().unwrap().len(), first.len(), "{captions}");

    // The captioned table is searchable: captions are part of each segment's `semantic`, and
    // each segment hit says its caption.
    for (db, captions) in [("a", first.clone()), ("d", captions.as_object().unwrap().clone())] {
        let db = work.path().join(db);
        let out = home.run(&["search", "a cat", "--segments", "--db", db.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let hits = stdout_json(&out);
        assert_eq!(hits.as_array().unwrap().len(), first.len(), "{}", text(&out));
        for hit in hits.as_array().unwrap() {
            let key = format!("cat_upright.mp4:{}", hit["span"]["segment"]);
            assert_eq!(hit["caption"], captions[&key], "{key}: {hit}");
        }
    }
}
