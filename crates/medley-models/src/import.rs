//! `medley models add`: a Hugging Face ONNX export folder (optimum's `optimum-cli export onnx`
//! output, or the transformers.js layout with the graphs under `onnx/`) into the model cache,
//! with the `model.toml` the role adapters read. The architecture comes from `config.json`'s
//! `model_type`, input and output names from the graphs themselves, preprocessing from
//! `preprocessor_config.json`, padding from `tokenizer_config.json`.
//!
//! A folder is built in a temporary directory inside the cache, smoke-checked through the
//! same adapters the pipeline uses, and renamed into place only when everything passed:
//! nothing half-added is left behind on any error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{
    AudioSpec, FixedInput, GraphSpec, ImageSpec, MelSpec, ModelSpec, Seq2SeqSpec, TensorSpec, TextSpec, VlmSpec,
    WhisperSpec,
};
use crate::{
    AudioEncoder, ImageCaptioner, ImageEncoder, ModelError, ModelHome, Runtime, SpeechToText, TextEncoder,
    VisionLanguageModel,
};

/// Why a folder was refused (each names the file and what is wrong with it).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: model_type {model_type:?} is not one medley can add (known: {known})")]
    UnknownModelType { path: PathBuf, model_type: String, known: &'static str },
    #[error("{path}: model_type {model_type:?} is recognised but not supported yet: {why}")]
    Unsupported { path: PathBuf, model_type: String, why: String },
    #[error("{dir}: no {what} graph (looked for {looked})")]
    MissingGraph { dir: PathBuf, what: &'static str, looked: String },
    #[error("{path}: wrong input names: expected {expected}, the graph has [{found}]")]
    WrongInputs { path: PathBuf, expected: String, found: String },
    #[error("{path}: wrong output names: expected {expected}, the graph has [{found}]")]
    WrongOutputs { path: PathBuf, expected: String, found: String },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: role {role:?} does not fit a {model_type} model (it can be: {allowed})")]
    Role { path: PathBuf, role: String, model_type: String, allowed: String },
    #[error("model id {id:?}: {message}")]
    Id { id: String, message: String },
    #[error("smoke check of {path} failed: {message}")]
    Check { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] ModelError),
}

const KNOWN: &str = "clip, siglip, clap, vision-encoder-decoder, whisper, idefics3 (SmolVLM)";

/// What `models add` was asked.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// The cache id (default: the folder's name, lower-cased, other characters as `-`).
    pub id: Option<String>,
    /// A narrower role than the family's (`image` or `text` for CLIP/SigLIP, `audio` or
    /// `text` for CLAP).
    pub role: Option<String>,
}

/// A model added to the cache.
#[derive(Debug, Clone, Serialize)]
pub struct Added {
    pub id: String,
    pub role: String,
    pub dir: PathBuf,
    pub model_type: String,
    pub layout: String,
    pub pipeline_keys: Vec<String>,
    pub check: CheckReport,
}

/// A smoke check's result, kept in the model folder (`.medley-check.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckReport {
    /// `passed`, `failed` or `skipped` (a role without a smoke check).
    pub status: String,
    /// What ran: one line per graph or tower, with output sizes.
    pub lines: Vec<String>,
    pub error: Option<String>,
    /// Seconds since the Unix epoch.
    pub checked_at: u64,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.status == "passed"
    }
}

/// One model of the cache, as `models list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    pub id: String,
    pub role: String,
    /// `registry export`, `added from <DIR>` or `hand-written`.
    pub source: String,
    pub bytes: u64,
    /// The recorded check (`None`: never checked).
    pub check: Option<CheckReport>,
    pub pipeline_keys: Vec<String>,
}

/// The `[import]` table written into an added model's `model.toml` (provenance; the
/// adapters ignore it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImportInfo {
    from: String,
    model_type: String,
    layout: String,
    /// How frames must be brought to the square input (from preprocessor_config.json).
    #[serde(default)]
    resize: String,
    #[serde(default)]
    pipeline_keys: Vec<String>,
}

/// The `model.toml` written for an added model.
#[derive(Serialize)]
struct Written {
    id: String,
    role: String,
    source: String,
    licence: String,
    graphs: Vec<GraphSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<ImageSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<AudioSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<TextSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq2seq: Option<Seq2SeqSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    whisper: Option<WhisperSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlm: Option<VlmSpec>,
    import: ImportInfo,
}

/// The adapter sections a plan writes into `model.toml`.
#[derive(Default)]
struct Sections {
    image: Option<ImageSpec>,
    audio: Option<AudioSpec>,
    text: Option<TextSpec>,
    seq2seq: Option<Seq2SeqSpec>,
    whisper: Option<WhisperSpec>,
    vlm: Option<VlmSpec>,
}

const CHECK_FILE: &str = ".medley-check.json";

/// A JSON file of the folder, parsed.
fn json(path: &Path) -> Result<Value, ImportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ImportError::Unreadable { path: path.to_path_buf(), message: e.to_string() })?;
    serde_json::from_str(&text)
        .map_err(|e| ImportError::Unreadable { path: path.to_path_buf(), message: e.to_string() })
}

fn config_err(path: &Path, message: impl Into<String>) -> ImportError {
    ImportError::Config { path: path.to_path_buf(), message: message.into() }
}

/// The graphs' names and their metadata, read from ONNX Runtime sessions.
struct GraphInfo {
    /// Path relative to the export folder (`onnx/text_model.onnx` or `model.onnx`).
    rel: String,
    path: PathBuf,
    inputs: Vec<(String, Vec<i64>, String)>,
    outputs: Vec<(String, Vec<i64>, String)>,
    /// The symbolic names of dynamic dimensions (`batch_size`, `sequence_length`), by tensor.
    symbols: std::collections::HashMap<String, Vec<String>>,
}

impl GraphInfo {
    fn open(rt: &Runtime, dir: &Path, rel: &str) -> Result<Self, ImportError> {
        let path = dir.join(rel);
        let session = rt.session("import", &path).map_err(|e| ImportError::Unreadable {
            path: path.clone(),
            message: match e {
                ModelError::Session { message, .. } => message,
                other => other.to_string(),
            },
        })?;
        let session = crate::runtime::lock(&session);
        let describe = |o: &ort::value::Outlet| {
            let shape = o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
            let dtype = o.dtype().tensor_type().map(|t| format!("{t:?}").to_lowercase()).unwrap_or_default();
            (o.name().to_string(), shape, dtype)
        };
        let inputs = session.inputs().iter().map(describe).collect();
        let outputs = session.outputs().iter().map(describe).collect();
        let symbols = session
            .inputs()
            .iter()
            .chain(session.outputs())
            .filter_map(|o| match o.dtype() {
                ort::value::ValueType::Tensor { dimension_symbols, .. } => {
                    Some((o.name().to_string(), dimension_symbols.to_vec()))
                }
                _ => None,
            })
            .collect();
        Ok(Self { rel: rel.to_string(), path, inputs, outputs, symbols })
    }

    fn input_names(&self) -> Vec<&str> {
        self.inputs.iter().map(|i| i.0.as_str()).collect()
    }
    fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|i| i.0 == name)
    }
    fn output(&self, name: &str) -> Option<&(String, Vec<i64>, String)> {
        self.outputs.iter().find(|o| o.0 == name)
    }

    /// Every input is one of `allowed` and all of `required` are there.
    fn expect_inputs(&self, required: &[&str], allowed: &[&str]) -> Result<(), ImportError> {
        let found = self.input_names();
        let ok = required.iter().all(|r| found.contains(r)) && found.iter().all(|f| allowed.contains(f));
        if ok {
            return Ok(());
        }
        let optional: Vec<&str> = allowed.iter().copied().filter(|a| !required.contains(a)).collect();
        let expected = if optional.is_empty() {
            format!("[{}]", required.join(", "))
        } else {
            format!("[{}] (optionally {})", required.join(", "), optional.join(", "))
        };
        Err(ImportError::WrongInputs { path: self.path.clone(), expected, found: found.join(", ") })
    }

    /// The first of `names` among the outputs, with its last dimension when fixed.
    fn pick_output(&self, names: &[&str]) -> Result<(String, Option<usize>), ImportError> {
        for n in names {
            if let Some((name, shape, _)) = self.output(n) {
                let dim = shape.last().copied().filter(|&d| d > 0).map(|d| d as usize);
                return Ok((name.clone(), dim));
            }
        }
        let found: Vec<&str> = self.outputs.iter().map(|o| o.0.as_str()).collect();
        Err(ImportError::WrongOutputs {
            path: self.path.clone(),
            expected: format!("one of [{}]", names.join(", ")),
            found: found.join(", "),
        })
    }

    /// The `present.*` output matching each `past_key_values.*` input (refused when one is
    /// missing), and the cache's heads and head size when the first past input fixes them.
    fn cache_outputs(&self, past: &[String]) -> Result<(Vec<String>, Option<HeadShape>), ImportError> {
        let present: Vec<String> = past.iter().map(|p| p.replacen("past_key_values.", "present.", 1)).collect();
        if let Some(missing) = present.iter().find(|p| self.output(p).is_none()) {
            return Err(ImportError::WrongOutputs {
                path: self.path.clone(),
                expected: format!("{missing} (the cache the decoder returns)"),
                found: self.outputs.iter().map(|o| o.0.as_str()).collect::<Vec<_>>().join(", "),
            });
        }
        let shape = past.first().and_then(|p| self.inputs.iter().find(|i| &i.0 == p)).map(|i| i.1.as_slice());
        let heads = match shape {
            Some([_, h, _, d]) if *h > 0 && *d > 0 => Some((*h as usize, *d as usize)),
            _ => None,
        };
        Ok((present, heads))
    }

    fn spec(&self, file: &str) -> GraphSpec {
        let tensors = |v: &[(String, Vec<i64>, String)]| {
            v.iter()
                .map(|(name, shape, dtype)| TensorSpec {
                    name: name.clone(),
                    dtype: dtype.clone(),
                    shape: shape
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| {
                            if d >= 0 {
                                return toml::Value::Integer(d);
                            }
                            let symbol = self.symbols.get(name).and_then(|s| s.get(i)).filter(|s| !s.is_empty());
                            toml::Value::String(symbol.cloned().unwrap_or_else(|| "dyn".into()))
                        })
                        .collect(),
                })
                .collect()
        };
        GraphSpec {
            file: file.to_string(),
            fp16: None,
            int8: None,
            queries: None,
            inputs: tensors(&self.inputs),
            outputs: tensors(&self.outputs),
        }
    }
}

/// A cache's attention heads and head size.
type HeadShape = (usize, usize);

/// Where a graph named `stem` is in either layout: `<stem>.onnx` at the top (optimum) or
/// `onnx/<stem>.onnx` (transformers.js). The float graph, never a `_quantized`/`_fp16` variant.
fn locate(dir: &Path, stem: &str) -> Option<String> {
    [format!("{stem}.onnx"), format!("onnx/{stem}.onnx")].into_iter().find(|rel| dir.join(rel).is_file())
}

fn looked(stems: &[&str]) -> String {
    stems.iter().flat_map(|s| [format!("{s}.onnx"), format!("onnx/{s}.onnx")]).collect::<Vec<_>>().join(", ")
}

/// One tower of a dual encoder, as [`find_tower`] looks for it.
struct Tower<'a> {
    /// Its own graph's stem (`vision_model`, `text_model`, `audio_model`).
    own: &'a str,
    what: &'static str,
    /// Inputs its own graph must have, and may have.
    own_inputs: [&'a [&'a str]; 2],
    /// Inputs the joint graph must have, and may have, when checked.
    joint_inputs: Option<[&'a [&'a str]; 2]>,
}

/// The tower's own graph, else the joint `model` graph with the other tower's inputs fed as
/// `placeholders` make them. A joint graph the other tower already opened is taken out of
/// `graphs` (the caller keeps the tower's graph).
fn find_tower(
    rt: &Runtime,
    dir: &Path,
    joint: Option<&String>,
    graphs: &mut Vec<GraphInfo>,
    tower: Tower<'_>,
    placeholders: impl FnOnce(&GraphInfo) -> Result<Vec<FixedInput>, ImportError>,
) -> Result<(GraphInfo, Vec<FixedInput>), ImportError> {
    match (locate(dir, tower.own), joint) {
        (Some(rel), _) => {
            let g = GraphInfo::open(rt, dir, &rel)?;
            g.expect_inputs(tower.own_inputs[0], tower.own_inputs[1])?;
            Ok((g, Vec::new()))
        }
        (None, Some(rel)) => {
            let g = match graphs.iter().position(|g| &g.rel == rel) {
                Some(i) => graphs.remove(i),
                None => GraphInfo::open(rt, dir, rel)?,
            };
            if let Some([required, allowed]) = tower.joint_inputs {
                g.expect_inputs(required, allowed)?;
            }
            let fixed = placeholders(&g)?;
            Ok((g, fixed))
        }
        (None, None) => Err(ImportError::MissingGraph {
            dir: dir.to_path_buf(),
            what: tower.what,
            looked: looked(&[tower.own, "model"]),
        }),
    }
}

/// The text inputs a joint graph takes beside an image or a sound: one token (the text
/// tower's cost is negligible).
fn token_placeholders(g: &GraphInfo) -> Result<Vec<FixedInput>, ImportError> {
    let mut fixed = vec![FixedInput { name: "input_ids".into(), dtype: "int64".into(), shape: vec![1, 1], value: 0.0 }];
    if g.has_input("attention_mask") {
        fixed.push(FixedInput { name: "attention_mask".into(), dtype: "int64".into(), shape: vec![1, 1], value: 1.0 });
    }
    Ok(fixed)
}

/// The family-independent facts the spec writers need.
struct Source<'a> {
    dir: &'a Path,
    config: Value,
    config_path: PathBuf,
    model_type: String,
}

impl Source<'_> {
    fn pre(&self) -> Result<(PathBuf, Value), ImportError> {
        let path = self.dir.join("preprocessor_config.json");
        if !path.is_file() {
            return Err(ImportError::Unreadable {
                path,
                message: "missing (the preprocessing is read from it)".into(),
            });
        }
        Ok((path.clone(), json(&path)?))
    }

    fn tokenizer_file(&self) -> Result<PathBuf, ImportError> {
        let path = self.dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ImportError::Unreadable {
                path,
                message: "missing (export the fast tokenizer: optimum and transformers.js both write it)".into(),
            });
        }
        tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| ImportError::Unreadable { path: path.clone(), message: e.to_string() })?;
        Ok(path)
    }

    /// The pad token from tokenizer_config.json / special_tokens_map.json, with its id.
    fn pad(&self) -> Result<Option<(String, u32)>, ImportError> {
        let mut pad = None;
        for name in ["special_tokens_map.json", "tokenizer_config.json"] {
            let path = self.dir.join(name);
            if !path.is_file() {
                continue;
            }
            let v = json(&path)?;
            let token = match &v["pad_token"] {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
                _ => None,
            };
            if token.is_some() {
                pad = token;
            }
        }
        let Some(token) = pad else { return Ok(None) };
        let path = self.tokenizer_file()?;
        let tok = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| ImportError::Unreadable { path: path.clone(), message: e.to_string() })?;
        let id = tok
            .token_to_id(&token)
            .ok_or_else(|| config_err(&path, format!("the pad token {token:?} is not in the vocabulary")))?;
        Ok(Some((token, id)))
    }

    /// The longest text the text tower takes.
    fn max_length(&self, text_config: &Value) -> usize {
        let mut max = text_config["max_position_embeddings"].as_u64().unwrap_or(77) as usize;
        if self.model_type == "clap" {
            // RoBERTa's positions start after the padding index.
            max = max.saturating_sub(2);
        }
        let path = self.dir.join("tokenizer_config.json");
        if let Ok(v) = json(&path)
            && let Some(m) = v["model_max_length"].as_u64()
            && m > 0
        {
            max = max.min(m as usize);
        }
        max.max(1)
    }
}

/// Square input size, mean and std in 0..255 units from an image processor's config.
fn image_preprocessing(path: &Path, pre: &Value) -> Result<(u32, [f32; 3], [f32; 3], String), ImportError> {
    let side = |v: &Value, what: &str| -> Result<Option<(u64, String)>, ImportError> {
        match v {
            Value::Number(n) => Ok(n.as_u64().map(|n| (n, format!("{n}x{n}")))),
            Value::Object(o) => {
                if let (Some(h), Some(w)) =
                    (o.get("height").and_then(Value::as_u64), o.get("width").and_then(Value::as_u64))
                {
                    if h != w {
                        return Err(config_err(path, format!("{what} is {h}x{w}: only square inputs are supported")));
                    }
                    Ok(Some((h, format!("{h}x{w}"))))
                } else if let Some(s) = o.get("shortest_edge").and_then(Value::as_u64) {
                    Ok(Some((s, format!("shortest edge {s}"))))
                } else {
                    Err(config_err(path, format!("{what}: no height/width or shortest_edge")))
                }
            }
            Value::Null => Ok(None),
            other => Err(config_err(path, format!("{what}: unexpected {other}"))),
        }
    };
    let crop = pre["do_center_crop"].as_bool().unwrap_or(false);
    let resize = side(&pre["size"], "size")?;
    let (size, how) = if crop {
        let c = side(&pre["crop_size"], "crop_size")?
            .ok_or_else(|| config_err(path, "do_center_crop is set but crop_size is missing"))?;
        let r = resize.map(|r| r.1).unwrap_or_default();
        (c.0, format!("resize to {r}, centre crop {}", c.1))
    } else {
        let r = resize.ok_or_else(|| config_err(path, "no size"))?;
        (r.0, format!("resize to {} (no crop)", r.1))
    };
    let three = |key: &str, default: f32| -> Result<[f32; 3], ImportError> {
        match &pre[key] {
            Value::Null => Ok([default; 3]),
            Value::Number(n) => Ok([n.as_f64().unwrap_or(default as f64) as f32; 3]),
            Value::Array(a) if a.len() == 3 && a.iter().all(Value::is_number) => {
                Ok([0, 1, 2].map(|i| a[i].as_f64().unwrap_or_default() as f32))
            }
            other => Err(config_err(path, format!("{key}: expected 3 numbers, got {other}"))),
        }
    };
    let (mean, std) = (three("image_mean", 0.5)?, three("image_std", 0.5)?);
    if std.iter().any(|s| *s <= 0.0) {
        return Err(config_err(path, format!("image_std {std:?} has a value that is not positive")));
    }
    let rescale = if pre["do_rescale"].as_bool().unwrap_or(true) {
        pre["rescale_factor"].as_f64().unwrap_or(1.0 / 255.0) as f32
    } else {
        1.0
    };
    // x' = (x * r - mean) / std = (x - mean / r) / (std / r), x in 0..255.
    let (mean, std) = if pre["do_normalize"].as_bool().unwrap_or(true) {
        (mean.map(|m| m / rescale), std.map(|s| s / rescale))
    } else {
        ([0.0; 3], [1.0 / rescale; 3])
    };
    let size = u32::try_from(size).map_err(|_| config_err(path, "image size out of range"))?;
    Ok((size, mean, std, how))
}

/// What `add` builds before the files move: the spec and the files to bring along.
struct Plan {
    written: Written,
    /// (source path, name in the cache folder).
    files: Vec<(PathBuf, String)>,
}

/// Read an export folder and plan its model.toml (no files are written).
fn plan(rt: &Runtime, dir: &Path, id: &str, role: Option<&str>) -> Result<Plan, ImportError> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(ImportError::Unreadable {
            path: config_path,
            message: "missing: not a Hugging Face export folder (it says which architecture the model is)".into(),
        });
    }
    let config = json(&config_path)?;
    let model_type =
        config["model_type"].as_str().ok_or_else(|| config_err(&config_path, "no model_type"))?.to_string();
    let src = Source { dir, config, config_path, model_type };
    match src.model_type.as_str() {
        "clip" | "siglip" => plan_image_text(rt, &src, id, role),
        "clap" => plan_audio_text(rt, &src, id, role),
        "vision-encoder-decoder" => plan_captioner(rt, &src, id, role),
        "whisper" => plan_whisper(rt, &src, id, role),
        "idefics3" | "smolvlm" => plan_vlm(rt, &src, id, role),
        // Said plainly rather than "unknown": users expect BLIP next to ViT-GPT2.
        "blip" | "blip-2" => Err(ImportError::Unsupported {
            path: src.config_path.clone(),
            model_type: src.model_type.clone(),
            why: "neither optimum nor transformers.js exports BLIP captioning to ONNX, so there is no layout to \
                  read; use a vision-encoder-decoder captioner or SmolVLM (model_type idefics3)"
                .into(),
        }),
        other => Err(ImportError::UnknownModelType {
            path: src.config_path.clone(),
            model_type: other.to_string(),
            known: KNOWN,
        }),
    }
}

fn check_role(src: &Source<'_>, role: Option<&str>, allowed: &[&str]) -> Result<String, ImportError> {
    let role = role.unwrap_or(allowed[0]);
    if allowed.contains(&role) {
        Ok(role.to_string())
    } else {
        Err(ImportError::Role {
            path: src.config_path.clone(),
            role: role.to_string(),
            model_type: src.model_type.clone(),
            allowed: allowed.join(", "),
        })
    }
}

fn layout_of(rels: &[&str]) -> String {
    if rels.iter().any(|r| r.starts_with("onnx/")) { "transformers.js".into() } else { "optimum".into() }
}

/// The cache file name of a graph: its base name (both layouts' names are unique).
fn base(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).to_string()
}

/// The graph and the external-data files beside it (`model.onnx_data`, `model.onnx.data`).
fn graph_files(dir: &Path, rel: &str) -> Vec<(PathBuf, String)> {
    let mut files = vec![(dir.join(rel), base(rel))];
    for suffix in ["_data", ".data"] {
        let extra = dir.join(format!("{rel}{suffix}"));
        if extra.is_file() {
            files.push((extra, format!("{}{suffix}", base(rel))));
        }
    }
    files
}

fn side_files(dir: &Path) -> Vec<(PathBuf, String)> {
    [
        "config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ]
    .iter()
    .filter(|n| dir.join(n).is_file())
    .map(|n| (dir.join(n), n.to_string()))
    .collect()
}

fn text_spec(
    src: &Source<'_>,
    g: &GraphInfo,
    text_config: &Value,
    fixed: Vec<FixedInput>,
) -> Result<TextSpec, ImportError> {
    let siglip = src.model_type == "siglip";
    src.tokenizer_file()?;
    let (embedding, dim) = g.pick_output(&["text_embeds", "pooler_output"])?;
    let dim = dim
        .or_else(|| src.config["projection_dim"].as_u64().map(|d| d as usize))
        .or_else(|| text_config["hidden_size"].as_u64().map(|d| d as usize))
        .ok_or_else(|| config_err(&g.path, format!("cannot tell the width of {embedding}")))?;
    let pad = src.pad()?;
    Ok(TextSpec {
        file: base(&g.rel),
        tokenizer: "tokenizer.json".into(),
        layout: Some("padded".into()),
        input_ids: "input_ids".into(),
        attention_mask: g.has_input("attention_mask").then(|| "attention_mask".into()),
        token_type_ids: g.has_input("token_type_ids").then(|| "token_type_ids".into()),
        row_splits: None,
        embedding,
        dim,
        max_length: src.max_length(text_config),
        normalize: true,
        padding: siglip.then(|| "max_length".into()),
        pad_token: pad.as_ref().map(|p| p.0.clone()),
        pad_id: pad.map(|p| p.1),
        fixed_inputs: fixed,
    })
}

/// CLIP and SigLIP: the two towers (`vision_model`, `text_model`) or the joint `model` graph.
fn plan_image_text(rt: &Runtime, src: &Source<'_>, id: &str, role: Option<&str>) -> Result<Plan, ImportError> {
    let role = check_role(src, role, &["dual_image_text", "image", "text"])?;
    let dir = src.dir;
    let (pre_path, pre) = src.pre()?;
    let (size, mean, std, resize) = image_preprocessing(&pre_path, &pre)?;
    let text_config = src.config["text_config"].clone();
    let joint = locate(dir, "model");
    let want_image = role != "text";
    let want_text = role != "image";
    let mut graphs: Vec<GraphInfo> = Vec::new();
    let text_allowed: &[&str] = &["input_ids", "attention_mask", "position_ids", "token_type_ids"];
    let mut image = None;
    if want_image {
        let tower = Tower {
            own: "vision_model",
            what: "image tower",
            own_inputs: [&["pixel_values"], &["pixel_values"]],
            joint_inputs: Some([&["input_ids", "pixel_values"], &["input_ids", "pixel_values", "attention_mask"]]),
        };
        let (g, fixed) = find_tower(rt, dir, joint.as_ref(), &mut graphs, tower, token_placeholders)?;
        let (embedding, dim) = g.pick_output(&["image_embeds", "pooler_output"])?;
        let dim = dim
            .or_else(|| src.config["projection_dim"].as_u64().map(|d| d as usize))
            .ok_or_else(|| config_err(&g.path, format!("cannot tell the width of {embedding}")))?;
        image = Some(ImageSpec {
            normalize: true,
            fixed_inputs: fixed,
            ..picture_input(&g, (size, mean, std), embedding, dim)
        });
        graphs.push(g);
    }
    let mut text = None;
    if want_text {
        let tower = Tower {
            own: "text_model",
            what: "text tower",
            own_inputs: [&["input_ids"], text_allowed],
            joint_inputs: Some([&["input_ids", "pixel_values"], &["input_ids", "pixel_values", "attention_mask"]]),
        };
        // One black image as the placeholder the joint graph needs.
        let black = |_: &GraphInfo| {
            Ok(vec![FixedInput {
                name: "pixel_values".into(),
                dtype: "float32".into(),
                shape: vec![1, 3, size as usize, size as usize],
                value: 0.0,
            }])
        };
        let (g, fixed) = find_tower(rt, dir, joint.as_ref(), &mut graphs, tower, black)?;
        text = Some(text_spec(src, &g, &text_config, fixed)?);
        if !graphs.iter().any(|x| x.rel == g.rel) {
            graphs.push(g);
        }
    }
    if let (Some(i), Some(t)) = (&image, &text)
        && i.dim != t.dim
    {
        return Err(config_err(
            &src.config_path,
            format!("the image tower gives {} values and the text tower {}: not one space", i.dim, t.dim),
        ));
    }
    finish(src, id, role, graphs, Sections { image, text, ..Default::default() }, resize)
}

/// CLAP: `audio_model` (log-mel features in, computed in Rust) and `text_model`, or `model`.
fn plan_audio_text(rt: &Runtime, src: &Source<'_>, id: &str, role: Option<&str>) -> Result<Plan, ImportError> {
    let role = check_role(src, role, &["dual_audio_text", "audio", "text"])?;
    let dir = src.dir;
    if src.config["audio_config"]["enable_fusion"].as_bool() == Some(true) {
        return Err(ImportError::Unsupported {
            path: src.config_path.clone(),
            model_type: "clap".into(),
            why: "fused CLAP (enable_fusion, e.g. laion/clap-htsat-fused) takes four mel views and is_longer; \
                  use an unfused model such as laion/clap-htsat-unfused"
                .into(),
        });
    }
    let text_config = src.config["text_config"].clone();
    let joint = locate(dir, "model");
    let mut graphs: Vec<GraphInfo> = Vec::new();
    let mut audio = None;
    if role != "text" {
        let (pre_path, pre) = src.pre()?;
        let num = |k: &str| pre[k].as_f64().ok_or_else(|| config_err(&pre_path, format!("no {k}")));
        if pre["truncation"].as_str() == Some("fusion") {
            return Err(ImportError::Unsupported {
                path: pre_path.clone(),
                model_type: "clap".into(),
                why: "truncation \"fusion\" (the fused front end): only rand_trunc extractors are supported".into(),
            });
        }
        let sample_rate = num("sampling_rate")? as u32;
        let hop = num("hop_length")? as usize;
        let window = match pre["nb_max_samples"].as_u64() {
            Some(n) => n as usize,
            None => (num("max_length_s")? * f64::from(sample_rate)) as usize,
        };
        let mel = MelSpec {
            n_fft: num("fft_window_size")? as usize,
            hop,
            n_mels: num("feature_size")? as usize,
            f_min: num("frequency_min")?,
            f_max: num("frequency_max")?,
            mel_scale: "slaney".into(),
            norm: Some("slaney".into()),
            frames: 1 + window / hop.max(1),
        };
        let tower = Tower {
            own: "audio_model",
            what: "audio tower",
            own_inputs: [&["input_features"], &["input_features"]],
            joint_inputs: Some([&["input_ids", "input_features"], &["input_ids", "input_features", "attention_mask"]]),
        };
        let (g, fixed) = find_tower(rt, dir, joint.as_ref(), &mut graphs, tower, token_placeholders)?;
        // A fixed feature shape in the graph must be the extractor's.
        if let Some((_, shape, _)) = g.inputs.iter().find(|i| i.0 == "input_features") {
            let want = [-1, 1, mel.frames as i64, mel.n_mels as i64];
            let fits = shape.len() == 4 && shape.iter().zip(want).skip(1).all(|(&s, w)| s < 0 || s == w);
            if !fits {
                return Err(ImportError::WrongInputs {
                    path: g.path.clone(),
                    expected: format!(
                        "input_features [batch, 1, {}, {}] (from {})",
                        mel.frames,
                        mel.n_mels,
                        pre_path.display()
                    ),
                    found: format!("input_features {shape:?}"),
                });
            }
        }
        let (embedding, dim) = g.pick_output(&["audio_embeds"])?;
        let dim = dim
            .or_else(|| src.config["projection_dim"].as_u64().map(|d| d as usize))
            .ok_or_else(|| config_err(&g.path, "cannot tell the width of audio_embeds"))?;
        audio = Some(AudioSpec {
            file: base(&g.rel),
            input: "input_features".into(),
            sample_rate,
            window,
            embedding,
            dim,
            normalize: true,
            features: Some(mel),
            fixed_inputs: fixed,
        });
        graphs.push(g);
    }
    let mut text = None;
    if role != "audio" {
        let tower = Tower {
            own: "text_model",
            what: "text tower",
            own_inputs: [&["input_ids"], &["input_ids", "attention_mask", "token_type_ids", "position_ids"]],
            joint_inputs: None,
        };
        // Silence (log-mel -100 dB) as the placeholder the joint graph needs: its shape comes
        // from the audio tower's extractor, so a text-only role cannot use the joint graph.
        let silence = |_: &GraphInfo| {
            let frames = audio.as_ref().and_then(|a| a.features.as_ref()).map(|m| (m.frames, m.n_mels));
            let (frames, mels) = frames.ok_or_else(|| ImportError::MissingGraph {
                dir: dir.to_path_buf(),
                what: "text tower",
                looked: looked(&["text_model"]),
            })?;
            Ok(vec![FixedInput {
                name: "input_features".into(),
                dtype: "float32".into(),
                shape: vec![1, 1, frames, mels],
                value: -100.0,
            }])
        };
        let (g, fixed) = find_tower(rt, dir, joint.as_ref(), &mut graphs, tower, silence)?;
        text = Some(text_spec(src, &g, &text_config, fixed)?);
        if !graphs.iter().any(|x| x.rel == g.rel) {
            graphs.push(g);
        }
    }
    if let (Some(a), Some(t)) = (&audio, &text)
        && a.dim != t.dim
    {
        return Err(config_err(
            &src.config_path,
            format!("the audio tower gives {} values and the text tower {}: not one space", a.dim, t.dim),
        ));
    }
    finish(src, id, role, graphs, Sections { audio, text, ..Default::default() }, String::new())
}

/// VisionEncoderDecoder (ViT + GPT-2 and friends): `encoder_model` and the merged decoder
/// (or the decoder with past).
/// An optimum encoder-decoder export's cached decoder (`decoder_model_merged` or
/// `decoder_with_past_model`), as its graph describes it.
struct CachedDecoder {
    rel: String,
    logits: String,
    /// The logits' width, when the graph fixes it.
    vocab: Option<usize>,
    past: Vec<String>,
    present: Vec<String>,
    /// The cross-attention part of the cache (`past_key_values.<i>.encoder.key/value`).
    cross: Vec<String>,
    heads: usize,
    head_dim: usize,
    use_cache_branch: bool,
    cache_position: bool,
}

impl CachedDecoder {
    /// Reads `dec`: `input_ids`, `encoder_hidden_states`, the `past_key_values.*` inputs with
    /// their `present.*` outputs, and the `required` inputs (`use_cache_branch` for a merged
    /// decoder); `cache_position` where the export has it.
    fn read(dec: &GraphInfo, required: &[&str]) -> Result<Self, ImportError> {
        let past: Vec<String> =
            dec.inputs.iter().map(|i| i.0.clone()).filter(|n| n.starts_with("past_key_values.")).collect();
        let mut allowed = vec!["input_ids", "encoder_hidden_states", "use_cache_branch", "cache_position"];
        allowed.extend(past.iter().map(String::as_str));
        let mut wanted = vec!["input_ids", "encoder_hidden_states"];
        wanted.extend_from_slice(required);
        dec.expect_inputs(&wanted, &allowed)?;
        let cross: Vec<String> = past.iter().filter(|p| p.contains(".encoder.")).cloned().collect();
        let use_cache_branch = dec.has_input("use_cache_branch");
        // A cross-attention cache is filled by a merged decoder's first-step branch.
        if past.is_empty() || (!cross.is_empty() && !use_cache_branch) {
            return Err(ImportError::WrongInputs {
                path: dec.path.clone(),
                expected: "past_key_values.<layer>.key/value (with a cross-attention cache, use_cache_branch too)"
                    .into(),
                found: dec.input_names().join(", "),
            });
        }
        let (present, heads) = dec.cache_outputs(&past)?;
        let (heads, head_dim) = heads.ok_or_else(|| {
            config_err(&dec.path, format!("{}: cannot tell heads and head size from its shape", past[0]))
        })?;
        let (logits, vocab) = dec.pick_output(&["logits"])?;
        Ok(Self {
            rel: dec.rel.clone(),
            logits,
            vocab,
            past,
            present,
            cross,
            heads,
            head_dim,
            use_cache_branch,
            cache_position: dec.has_input("cache_position"),
        })
    }

    /// The `[seq2seq]` section of this decoder after `encoder` (its `input`, and its `output`
    /// fed to the decoder as `encoder_hidden_states`), with a vocabulary of `vocab`; the
    /// tokens (start, end, suppressed) are the caller's to fill in.
    fn seq2seq(self, encoder: &GraphInfo, input: &str, output: String, vocab: usize) -> Seq2SeqSpec {
        Seq2SeqSpec {
            frontend: None,
            frontend_input: None,
            encoder: base(&encoder.rel),
            encoder_input: input.into(),
            encoder_outputs: vec![output],
            decoder: base(&self.rel),
            decoder_input_ids: "input_ids".into(),
            logits: self.logits,
            past_inputs: self.past,
            present_outputs: self.present,
            num_heads: self.heads,
            head_dim: self.head_dim,
            vocab_size: vocab,
            tokenizer: "tokenizer.json".into(),
            start_ids: Vec::new(),
            eos_id: 0,
            pad_id: None,
            max_new_tokens: 64,
            suppress_ids: Vec::new(),
            begin_suppress_ids: Vec::new(),
            decoder_encoder_inputs: vec!["encoder_hidden_states".into()],
            use_cache_branch: self.use_cache_branch.then(|| "use_cache_branch".into()),
            cross_past_inputs: self.cross,
            cache_position: self.cache_position.then(|| "cache_position".into()),
            image: None,
        }
    }
}

/// Whisper of any size, from optimum's `automatic-speech-recognition-with-past` export or the
/// transformers.js layout: `encoder_model` (`input_features` -> `last_hidden_state`) and the
/// merged decoder (`decoder_model_merged`: self- and cross-attention caches and
/// `use_cache_branch`). The log-mel front end is computed by medley from
/// preprocessor_config.json; the special tokens come from generation_config.json and the
/// tokenizer.
fn plan_whisper(rt: &Runtime, src: &Source<'_>, id: &str, role: Option<&str>) -> Result<Plan, ImportError> {
    let role = check_role(src, role, &["speech_to_text"])?;
    let dir = src.dir;
    let (pre_path, pre) = src.pre()?;
    let tok_path = src.tokenizer_file()?;
    let num = |key: &str| -> Result<usize, ImportError> {
        pre[key].as_u64().map(|v| v as usize).ok_or_else(|| config_err(&pre_path, format!("no {key}")))
    };
    let (n_mels, rate, hop, n_fft) =
        (num("feature_size")?, num("sampling_rate")? as u32, num("hop_length")?, num("n_fft")?);
    let chunk = match pre["n_samples"].as_u64() {
        Some(n) => n as usize,
        None => num("chunk_length")? * rate as usize,
    };
    let enc_rel = locate(dir, "encoder_model").ok_or_else(|| ImportError::MissingGraph {
        dir: dir.to_path_buf(),
        what: "encoder",
        looked: looked(&["encoder_model"]),
    })?;
    let dec_rel = locate(dir, "decoder_model_merged").ok_or_else(|| ImportError::MissingGraph {
        dir: dir.to_path_buf(),
        what: "merged decoder (the first step and the cached steps in one graph)",
        looked: looked(&["decoder_model_merged"]),
    })?;
    let enc = GraphInfo::open(rt, dir, &enc_rel)?;
    enc.expect_inputs(&["input_features"], &["input_features"])?;
    let (enc_out, _) = enc.pick_output(&["last_hidden_state"])?;
    if let Some(m) = enc.inputs[0].1.get(1).copied().filter(|&m| m > 0)
        && m as usize != n_mels
    {
        return Err(config_err(&pre_path, format!("feature_size {n_mels}, but {} takes {m} mel bins", enc.rel)));
    }
    let dec = GraphInfo::open(rt, dir, &dec_rel)?;
    let cached = CachedDecoder::read(&dec, &["use_cache_branch"])?;
    let vocab = cached
        .vocab
        .or_else(|| src.config["vocab_size"].as_u64().map(|v| v as usize))
        .ok_or_else(|| config_err(&src.config_path, "no vocab_size"))?;
    let gen_path = dir.join("generation_config.json");
    if !gen_path.is_file() {
        return Err(ImportError::Unreadable {
            path: gen_path,
            message: "missing (Whisper's language and task tokens are read from it)".into(),
        });
    }
    let generation = json(&gen_path)?;
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| ImportError::Unreadable { path: tok_path.clone(), message: e.to_string() })?;
    let id_of = |key: &str, token: &str| -> Result<u32, ImportError> {
        generation[key]
            .as_u64()
            .or_else(|| src.config[key].as_u64())
            .map(|v| v as u32)
            .or_else(|| tokenizer.token_to_id(token))
            .ok_or_else(|| config_err(&gen_path, format!("no {key}, and no {token} in the tokenizer")))
    };
    let sot = id_of("decoder_start_token_id", "<|startoftranscript|>")?;
    let eos = id_of("eos_token_id", "<|endoftext|>")?;
    let no_timestamps = id_of("no_timestamps_token_id", "<|notimestamps|>")?;
    let task = |name: &str| -> Result<u32, ImportError> {
        generation["task_to_id"][name]
            .as_u64()
            .map(|v| v as u32)
            .or_else(|| tokenizer.token_to_id(&format!("<|{name}|>")))
            .ok_or_else(|| config_err(&gen_path, format!("no task_to_id.{name}")))
    };
    let (transcribe, translate) = (task("transcribe")?, task("translate")?);
    // English-only models (`*.en`) have no language tokens in their prompt.
    let mut langs: Vec<(u32, String)> = match generation["lang_to_id"].as_object() {
        Some(map) if generation["is_multilingual"].as_bool() != Some(false) => map
            .iter()
            .filter_map(|(k, v)| {
                Some((v.as_u64()? as u32, k.trim_start_matches("<|").trim_end_matches("|>").to_string()))
            })
            .collect(),
        _ => Vec::new(),
    };
    langs.sort();
    let ids = |key: &str| -> Vec<u32> {
        let v = if generation[key].is_array() { &generation[key] } else { &src.config[key] };
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect()).unwrap_or_default()
    };
    let timestamp_begin = no_timestamps + 1;
    let frames = chunk / hop.max(1);
    // One timestamp step per encoder position: the encoder halves the frames.
    let positions = (frames / 2).max(1);
    if timestamp_begin as usize + positions > vocab || sot as usize >= vocab || eos as usize >= vocab {
        return Err(config_err(
            &gen_path,
            format!(
                "special tokens (start {sot}, end {eos}, timestamps from {timestamp_begin}) do not fit the vocabulary of {vocab}"
            ),
        ));
    }
    let max_new = generation["max_length"].as_u64().unwrap_or(448).clamp(2, 448) as usize / 2;
    let seq2seq = Seq2SeqSpec {
        start_ids: vec![sot],
        eos_id: eos,
        pad_id: generation["pad_token_id"].as_u64().map(|v| v as u32),
        max_new_tokens: max_new,
        suppress_ids: ids("suppress_tokens"),
        begin_suppress_ids: ids("begin_suppress_tokens"),
        ..cached.seq2seq(&enc, "input_features", enc_out, vocab)
    };
    let whisper = WhisperSpec {
        sample_rate: rate,
        chunk,
        time_precision: chunk as f32 / rate as f32 / positions as f32,
        sot,
        transcribe,
        translate,
        no_timestamps,
        timestamp_begin,
        no_speech: tokenizer.token_to_id("<|nospeech|>").or_else(|| tokenizer.token_to_id("<|nocaptions|>")),
        lang_ids: langs.iter().map(|l| l.0).collect(),
        lang_codes: langs.into_iter().map(|l| l.1).collect(),
        features: Some(MelSpec {
            n_fft,
            hop,
            n_mels,
            f_min: 0.0,
            f_max: f64::from(rate / 2),
            mel_scale: "slaney".into(),
            norm: Some("slaney".into()),
            frames,
        }),
    };
    let sections = Sections { seq2seq: Some(seq2seq), whisper: Some(whisper), ..Default::default() };
    finish(src, id, role, vec![enc, dec], sections, String::new())
}

fn plan_captioner(rt: &Runtime, src: &Source<'_>, id: &str, role: Option<&str>) -> Result<Plan, ImportError> {
    let role = check_role(src, role, &["captioner"])?;
    let dir = src.dir;
    let (pre_path, pre) = src.pre()?;
    let (size, mean, std, resize) = image_preprocessing(&pre_path, &pre)?;
    src.tokenizer_file()?;
    let enc_rel = locate(dir, "encoder_model").ok_or_else(|| ImportError::MissingGraph {
        dir: dir.to_path_buf(),
        what: "encoder",
        looked: looked(&["encoder_model"]),
    })?;
    let dec_rel =
        locate(dir, "decoder_model_merged").or_else(|| locate(dir, "decoder_with_past_model")).ok_or_else(|| {
            ImportError::MissingGraph {
                dir: dir.to_path_buf(),
                what: "decoder with a cache",
                looked: looked(&["decoder_model_merged", "decoder_with_past_model"]),
            }
        })?;
    let enc = GraphInfo::open(rt, dir, &enc_rel)?;
    enc.expect_inputs(&["pixel_values"], &["pixel_values"])?;
    let (enc_out, hidden) = enc.pick_output(&["last_hidden_state"])?;
    let dec = GraphInfo::open(rt, dir, &dec_rel)?;
    let cached = CachedDecoder::read(&dec, &[])?;
    let dec_cfg = &src.config["decoder"];
    let vocab = cached
        .vocab
        .or_else(|| dec_cfg["vocab_size"].as_u64().map(|v| v as usize))
        .ok_or_else(|| config_err(&src.config_path, "no decoder.vocab_size"))?;
    let generation = json(&dir.join("generation_config.json")).ok();
    let token = |key: &str| -> Option<u32> {
        generation
            .as_ref()
            .and_then(|g| g[key].as_u64())
            .or_else(|| src.config[key].as_u64())
            .or_else(|| dec_cfg[key].as_u64())
            .map(|v| v as u32)
    };
    let start = token("decoder_start_token_id")
        .or_else(|| token("bos_token_id"))
        .ok_or_else(|| config_err(&src.config_path, "no decoder_start_token_id or bos_token_id"))?;
    let eos = token("eos_token_id").ok_or_else(|| config_err(&src.config_path, "no eos_token_id"))?;
    let max_new = generation.as_ref().and_then(|g| g["max_length"].as_u64()).unwrap_or(32).clamp(2, 64) as usize;
    let seq2seq = Seq2SeqSpec {
        start_ids: vec![start],
        eos_id: eos,
        pad_id: token("pad_token_id"),
        max_new_tokens: max_new,
        image: Some(picture_input(&enc, (size, mean, std), enc_out.clone(), hidden.unwrap_or_default())),
        ..cached.seq2seq(&enc, "pixel_values", enc_out, vocab)
    };
    finish(src, id, role, vec![enc, dec], Sections { seq2seq: Some(seq2seq), ..Default::default() }, resize)
}

/// A graph `g` taking `pixel_values` (preprocessed as `size`, `mean` and `std` say) into
/// `output` of width `dim`: an image tower, or a generator's encoder.
fn picture_input(g: &GraphInfo, (size, mean, std): (u32, [f32; 3], [f32; 3]), output: String, dim: usize) -> ImageSpec {
    ImageSpec {
        file: base(&g.rel),
        input: "pixel_values".into(),
        size,
        mean,
        std,
        embedding: output,
        dim,
        logits: None,
        labels: None,
        label_texts: None,
        label_prior: None,
        activation: None,
        normalize: false,
        fixed_inputs: Vec::new(),
    }
}

/// Idefics3's chat turn (SmolVLM's chat template for one user message with a picture, with
/// the generation prompt) and the block its processor puts where the picture goes when the
/// image is not split into tiles.
const IDEFICS3_TEMPLATE: &str = "<|im_start|>User:{image}{prompt}<end_of_utterance>\nAssistant:";
const IDEFICS3_IMAGE_BLOCK: &str = "<fake_token_around_image><global-img>{image_tokens}<fake_token_around_image>";

/// A prompted vision-language model of the Idefics3 family (SmolVLM), in the transformers.js
/// layout its hub repositories ship (`onnx/vision_encoder`, `onnx/embed_tokens`,
/// `onnx/decoder_model_merged`). Each frame is fed as one whole picture at the vision tower's
/// size (the processor's tiling, `do_image_splitting`, is not used: one picture is
/// `image_seq_len` tokens, 64 for SmolVLM-256M, against 13 times that tiled).
fn plan_vlm(rt: &Runtime, src: &Source<'_>, id: &str, role: Option<&str>) -> Result<Plan, ImportError> {
    let role = check_role(src, role, &["captioner"])?;
    let dir = src.dir;
    let (pre_path, pre) = src.pre()?;
    let tokenizer_path = src.tokenizer_file()?;
    let cfg = &src.config;
    let text_cfg = &cfg["text_config"];
    let vision_cfg = &cfg["vision_config"];
    let number = |v: &Value, key: &str| -> Result<u64, ImportError> {
        v[key].as_u64().filter(|&n| n > 0).ok_or_else(|| config_err(&src.config_path, format!("no {key}")))
    };
    let side = number(vision_cfg, "image_size")?;
    let patch = number(vision_cfg, "patch_size")?;
    let scale = cfg["scale_factor"].as_u64().unwrap_or(1).max(1);
    let per_side = side / patch;
    if side % patch != 0 || per_side % scale != 0 {
        return Err(config_err(
            &src.config_path,
            format!("vision_config: image_size {side} is not patch_size {patch} x a multiple of scale_factor {scale}"),
        ));
    }
    let image_seq_len = ((per_side / scale) * (per_side / scale)) as usize;
    let image_token_id = number(cfg, "image_token_id")? as u32;
    let width = number(text_cfg, "hidden_size")? as usize;
    // The mean and std as the processor applies them, at the vision tower's square size.
    let mut square = pre.clone();
    square["size"] = serde_json::json!({ "height": side, "width": side });
    square["do_center_crop"] = Value::Bool(false);
    let (size, mean, std, _) = image_preprocessing(&pre_path, &square)?;
    let tok = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| ImportError::Unreadable { path: tokenizer_path.clone(), message: e.to_string() })?;
    let image_token = tok.id_to_token(image_token_id).ok_or_else(|| {
        config_err(&tokenizer_path, format!("image_token_id {image_token_id} is not in the vocabulary"))
    })?;
    for needed in ["<|im_start|>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"] {
        if tok.token_to_id(needed).is_none() {
            return Err(config_err(&tokenizer_path, format!("no {needed} token: not an Idefics3 (SmolVLM) tokenizer")));
        }
    }
    let generation = json(&dir.join("generation_config.json")).ok();
    let mut eos_ids: Vec<u32> = Vec::new();
    for v in
        [generation.as_ref().map(|g| &g["eos_token_id"]), Some(&text_cfg["eos_token_id"]), Some(&cfg["eos_token_id"])]
            .into_iter()
            .flatten()
    {
        let ids: Vec<u64> = match v {
            Value::Number(n) => n.as_u64().into_iter().collect(),
            Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
            _ => Vec::new(),
        };
        for id in ids.into_iter().map(|i| i as u32) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    if let Some(end) = tok.token_to_id("<end_of_utterance>")
        && !eos_ids.contains(&end)
    {
        eos_ids.insert(0, end);
    }

    let find = |stem: &'static str, what: &'static str| {
        locate(dir, stem).ok_or_else(|| ImportError::MissingGraph {
            dir: dir.to_path_buf(),
            what,
            looked: looked(&[stem]),
        })
    };
    let vision = GraphInfo::open(rt, dir, &find("vision_encoder", "vision encoder")?)?;
    vision.expect_inputs(&["pixel_values"], &["pixel_values", "pixel_attention_mask"])?;
    let (features, _) = vision.pick_output(&["image_features"])?;
    let embed = GraphInfo::open(rt, dir, &find("embed_tokens", "token embedding")?)?;
    embed.expect_inputs(&["input_ids"], &["input_ids"])?;
    embed.pick_output(&["inputs_embeds"])?;
    let dec = GraphInfo::open(rt, dir, &find("decoder_model_merged", "language model decoder")?)?;
    let past: Vec<String> =
        dec.inputs.iter().map(|i| i.0.clone()).filter(|n| n.starts_with("past_key_values.")).collect();
    let mut allowed = vec!["inputs_embeds", "attention_mask", "position_ids"];
    allowed.extend(past.iter().map(String::as_str));
    dec.expect_inputs(&["inputs_embeds", "attention_mask", "position_ids"], &allowed)?;
    if past.is_empty() {
        return Err(ImportError::WrongInputs {
            path: dec.path.clone(),
            expected: "past_key_values.<layer>.key/value (the decoder's cache)".into(),
            found: dec.input_names().join(", "),
        });
    }
    let (present, kv) = dec.cache_outputs(&past)?;
    let (kv_heads, head_dim) = match kv {
        Some(kv) => kv,
        None => {
            let heads = number(text_cfg, "num_attention_heads")? as usize;
            let kv = text_cfg["num_key_value_heads"].as_u64().map_or(heads, |k| k as usize);
            (kv, text_cfg["head_dim"].as_u64().map_or(width / heads.max(1), |d| d as usize))
        }
    };
    let (logits, _) = dec.pick_output(&["logits"])?;
    let vlm = VlmSpec {
        image: picture_input(&vision, (size, mean, std), features, width),
        pixel_attention_mask: vision.has_input("pixel_attention_mask").then(|| "pixel_attention_mask".into()),
        embed: base(&embed.rel),
        decoder: base(&dec.rel),
        tokenizer: "tokenizer.json".into(),
        logits,
        past_inputs: past,
        present_outputs: present,
        kv_heads,
        head_dim,
        image_token_id,
        image_seq_len,
        template: IDEFICS3_TEMPLATE.into(),
        image_block: IDEFICS3_IMAGE_BLOCK.into(),
        image_token,
        eos_ids,
        max_new_tokens: 48,
        default_prompt: DEFAULT_CAPTION_PROMPT.into(),
    };
    let resize = format!("resize to {size}x{size} whole (one picture per frame; the processor's tiling is not used)");
    finish(src, id, role, vec![vision, embed, dec], Sections { vlm: Some(vlm), ..Default::default() }, resize)
}

/// What a prompted captioner is asked when the pipeline file does not say.
pub const DEFAULT_CAPTION_PROMPT: &str = "Describe this picture in one sentence.";

/// Which pipeline file keys can name a model of `role`.
pub fn pipeline_keys(role: &str) -> Vec<String> {
    let keys: &[&str] = match role {
        "dual_image_text" => {
            &["models.clip (the clip column, and queries through its text tower)", "models.image (vision tower)"]
        }
        "dual_audio_text" => &[
            "models.clap (the clap column, and queries through its text tower)",
            "models.audio (audio tower)",
            "models.text (text tower)",
        ],
        "image" => &["models.image"],
        "audio" => &["models.audio"],
        "text" => &["models.text"],
        "captioner" => &["models.captioner"],
        "speech_to_text" => &["models.speech"],
        "music_tagger" => &["models.music"],
        "sound_events" => &["models.sound_events"],
        "ocr" => &["models.ocr"],
        "shots" => &["models.shots"],
        _ => &[],
    };
    keys.iter().map(|k| k.to_string()).collect()
}

fn finish(
    src: &Source<'_>,
    id: &str,
    role: String,
    graphs: Vec<GraphInfo>,
    sections: Sections,
    resize: String,
) -> Result<Plan, ImportError> {
    let Sections { image, audio, text, seq2seq, whisper, vlm } = sections;
    let rels: Vec<&str> = graphs.iter().map(|g| g.rel.as_str()).collect();
    let layout = layout_of(&rels);
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for g in &graphs {
        files.extend(graph_files(src.dir, &g.rel));
    }
    files.extend(side_files(src.dir));
    let from = src.dir.canonicalize().unwrap_or_else(|_| src.dir.to_path_buf());
    let keys = pipeline_keys(&role);
    let written = Written {
        id: id.to_string(),
        role,
        source: format!("added from {} ({} export, model_type {})", from.display(), layout, src.model_type),
        licence: "see the model's card".into(),
        graphs: graphs.iter().map(|g| g.spec(&base(&g.rel))).collect(),
        image,
        audio,
        text,
        seq2seq,
        whisper,
        vlm,
        import: ImportInfo {
            from: from.display().to_string(),
            model_type: src.model_type.clone(),
            layout,
            resize,
            pipeline_keys: keys,
        },
    };
    Ok(Plan { written, files })
}

/// The default id of a folder: its name, lower-cased, anything but letters, digits, `-`, `_`
/// and `.` as `-`.
pub fn default_id(dir: &Path) -> String {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c.to_ascii_lowercase() } else { '-' })
        .collect()
}

fn valid_id(id: &str) -> Result<(), ImportError> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ImportError::Id {
            id: id.to_string(),
            message: "use letters, digits, '-', '_' and '.' (not starting with '.')".into(),
        })
    }
}

/// Add the export folder `dir` to `home`'s model cache: plan, copy into a temporary folder of
/// the cache, write model.toml, smoke-check it through the adapters, rename into place.
pub fn add(rt: &Runtime, home: &ModelHome, dir: &Path, opts: &AddOptions) -> Result<Added, ImportError> {
    if !dir.is_dir() {
        return Err(ImportError::Unreadable { path: dir.to_path_buf(), message: "not a folder".into() });
    }
    let id = opts.id.clone().unwrap_or_else(|| default_id(dir));
    valid_id(&id)?;
    let models = home.root().join("models");
    let dest = models.join(&id);
    if dest.exists() {
        return Err(ImportError::Id {
            id,
            message: format!("{} already exists; pass --id to add it under another name", dest.display()),
        });
    }
    let plan = plan(rt, dir, &id, opts.role.as_deref())?;
    let io = |path: &Path, e: std::io::Error| ImportError::Io { path: path.to_path_buf(), message: e.to_string() };
    std::fs::create_dir_all(&models).map_err(|e| io(&models, e))?;
    let tmp = models.join(format!(".{id}.adding-{}", std::process::id()));
    // Whatever fails below, the temporary folder goes.
    let result = build(rt, &plan, &tmp).and_then(|check| {
        std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
        Ok(check)
    });
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let check = result?;
    let w = &plan.written;
    Ok(Added {
        id,
        role: w.role.clone(),
        dir: dest,
        model_type: w.import.model_type.clone(),
        layout: w.import.layout.clone(),
        pipeline_keys: w.import.pipeline_keys.clone(),
        check,
    })
}

fn build(rt: &Runtime, plan: &Plan, tmp: &Path) -> Result<CheckReport, ImportError> {
    let io = |path: &Path, e: std::io::Error| ImportError::Io { path: path.to_path_buf(), message: e.to_string() };
    std::fs::create_dir_all(tmp).map_err(|e| io(tmp, e))?;
    for (from, name) in &plan.files {
        let to = tmp.join(name);
        // A hard link costs no space for multi-gigabyte graphs; across file systems, a copy.
        if std::fs::hard_link(from, &to).is_err() {
            std::fs::copy(from, &to).map_err(|e| io(from, e))?;
        }
    }
    let toml = toml::to_string(&plan.written).map_err(|e| ImportError::Io {
        path: tmp.join("model.toml"),
        message: format!("cannot write the spec: {e}"),
    })?;
    let header = "# Written by `medley models add`: what this model is and how to feed it.\n";
    std::fs::write(tmp.join("model.toml"), format!("{header}{toml}")).map_err(|e| io(&tmp.join("model.toml"), e))?;
    let check = check_dir(rt, tmp);
    write_check(tmp, &check)?;
    if !check.passed() {
        return Err(ImportError::Check {
            path: plan.written.import.from.clone().into(),
            message: check.error.clone().unwrap_or_else(|| "no result".into()),
        });
    }
    Ok(check)
}

fn write_check(dir: &Path, check: &CheckReport) -> Result<(), ImportError> {
    let path = dir.join(CHECK_FILE);
    let text = serde_json::to_string_pretty(check)
        .map_err(|e| ImportError::Io { path: path.clone(), message: e.to_string() })?;
    std::fs::write(&path, text).map_err(|e| ImportError::Io { path, message: e.to_string() })
}

/// Re-run the smoke check of model `id` of the cache and record the result.
pub fn check(rt: &Runtime, home: &ModelHome, id: &str) -> Result<CheckReport, ImportError> {
    let dir = home.model_dir(id)?;
    let report = check_dir(rt, &dir);
    write_check(&dir, &report)?;
    Ok(report)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// The smoke check of the model folder `dir` through its role's adapters: real inputs
/// through every graph, outputs of the declared width, finite, and different for different
/// inputs.
pub fn check_dir(rt: &Runtime, dir: &Path) -> CheckReport {
    let mut lines = Vec::new();
    let result = ModelSpec::from_dir(dir).map_err(|e| e.to_string()).and_then(|spec| run_check(rt, &spec, &mut lines));
    let status = match &result {
        Ok(true) => "passed",
        Ok(false) => "skipped",
        Err(_) => "failed",
    };
    CheckReport { status: status.into(), lines, error: result.err(), checked_at: now() }
}

/// Two pictures that differ everywhere: a colour gradient and a checkerboard.
fn test_images(n: usize) -> [Vec<u8>; 2] {
    let mut a = Vec::with_capacity(n * n * 3);
    let mut b = Vec::with_capacity(n * n * 3);
    for y in 0..n {
        for x in 0..n {
            a.extend([(x * 255 / n.max(1)) as u8, (y * 255 / n.max(1)) as u8, 128]);
            let on = ((x * 8 / n.max(1)) + (y * 8 / n.max(1))).is_multiple_of(2);
            b.extend(if on { [240, 30, 30] } else { [20, 20, 200] });
        }
    }
    [a, b]
}

/// Two sounds: a 440 Hz tone with its octave, and noise bursts.
fn test_sounds(rate: u32, n: usize) -> [Vec<f32>; 2] {
    let tone = (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            0.4 * (2.0 * std::f32::consts::PI * 440.0 * t).sin() + 0.2 * (2.0 * std::f32::consts::PI * 880.0 * t).sin()
        })
        .collect();
    let mut state = 0x2545_f491_u32;
    let noise = (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let burst = if (i * 8 / n.max(1)).is_multiple_of(2) { 0.5 } else { 0.05 };
            burst * ((state as f32 / u32::MAX as f32) * 2.0 - 1.0)
        })
        .collect();
    [tone, noise]
}

const TEXTS: [&str; 2] = ["a photo of a dog on the sea", "loud music with drums and guitar"];

/// Rows of the expected width, finite, and not all the same.
fn vectors(what: &str, rows: &[Vec<f32>], dim: usize, lines: &mut Vec<String>) -> Result<(), String> {
    if rows.len() != 2 || rows.iter().any(|r| r.len() != dim) {
        let got: Vec<usize> = rows.iter().map(Vec::len).collect();
        return Err(format!("{what}: expected 2 vectors of {dim} values, got sizes {got:?}"));
    }
    if rows.iter().flatten().any(|x| !x.is_finite()) {
        return Err(format!("{what}: output has values that are not finite"));
    }
    let diff = rows[0].iter().zip(&rows[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    if diff <= 1e-6 {
        return Err(format!("{what}: two different inputs gave the same vector"));
    }
    lines.push(format!("{what}: 2 inputs -> {dim} values each, finite, different (max difference {diff:.3})"));
    Ok(())
}

fn run_check(rt: &Runtime, spec: &ModelSpec, lines: &mut Vec<String>) -> Result<bool, String> {
    let image = |lines: &mut Vec<String>| -> Result<usize, String> {
        let enc = ImageEncoder::from_spec(rt, spec).map_err(|e| e.to_string())?;
        let n = enc.input_size() as usize;
        let [a, b] = test_images(n);
        let out = enc.encode(&[&a, &b]).map_err(|e| e.to_string())?;
        let rows: Vec<Vec<f32>> = out.into_iter().map(|o| o.embedding).collect();
        vectors(&format!("image tower ({n}x{n} RGB)"), &rows, enc.dim(), lines)?;
        Ok(enc.dim())
    };
    let text = |lines: &mut Vec<String>| -> Result<usize, String> {
        let enc = TextEncoder::from_spec(rt, spec).map_err(|e| e.to_string())?;
        let rows = enc.encode(&TEXTS).map_err(|e| e.to_string())?;
        vectors("text tower", &rows, enc.dim(), lines)?;
        Ok(enc.dim())
    };
    let audio = |lines: &mut Vec<String>| -> Result<usize, String> {
        let enc = AudioEncoder::from_spec(rt, spec).map_err(|e| e.to_string())?;
        let [a, b] = test_sounds(enc.sample_rate(), enc.window());
        let rows = enc.encode(&[&a, &b]).map_err(|e| e.to_string())?;
        let what = format!("audio tower ({} samples at {} Hz)", enc.window(), enc.sample_rate());
        vectors(&what, &rows, enc.dim(), lines)?;
        Ok(enc.dim())
    };
    match spec.role.as_str() {
        "dual_image_text" => {
            let (i, t) = (image(lines)?, text(lines)?);
            if i != t {
                return Err(format!("image vectors have {i} values and text vectors {t}"));
            }
        }
        "dual_audio_text" => {
            let (a, t) = (audio(lines)?, text(lines)?);
            if a != t {
                return Err(format!("audio vectors have {a} values and text vectors {t}"));
            }
        }
        "image" => {
            image(lines)?;
        }
        "text" => {
            text(lines)?;
        }
        "audio" => {
            audio(lines)?;
        }
        "captioner" if spec.vlm.is_some() => vlm_check(rt, spec, lines)?,
        "captioner" => caption_check(rt, spec, lines)?,
        "speech_to_text" => speech_check(rt, spec, lines)?,
        other => {
            lines.push(format!("role {other} has no smoke check"));
            return Ok(false);
        }
    }
    Ok(true)
}

/// A captioner, through [`ImageCaptioner`]: the encoder on two pictures (states finite and
/// different), then greedy decoding of a few tokens with the cache (the end token suppressed,
/// so every step runs).
fn caption_check(rt: &Runtime, spec: &ModelSpec, lines: &mut Vec<String>) -> Result<(), String> {
    let s = spec.seq2seq.as_ref().ok_or("captioner without a [seq2seq] section")?;
    let cap = ImageCaptioner::from_spec(rt, spec).map_err(|e| e.to_string())?;
    let n = cap.input_size() as usize;
    let [a, b] = test_images(n);
    let img = s.image.as_ref().ok_or("captioner without [seq2seq.image]")?;
    let x = crate::image::preprocess(img, &spec.id, &[&a, &b]).map_err(|e| e.to_string())?;
    let state = cap.seq2seq().encode(&crate::Array::F32(vec![2, 3, n, n], x)).map_err(|e| e.to_string())?;
    let name = &s.encoder_outputs[0];
    let states = state.get(name).and_then(crate::Array::f32s).ok_or_else(|| format!("encoder has no float {name}"))?;
    let shape = state.get(name).map(|a| a.shape().to_vec()).unwrap_or_default();
    let half = states.len() / 2;
    let rows = vec![states[..half].to_vec(), states[half..].to_vec()];
    vectors(&format!("encoder ({n}x{n} RGB) {name} {shape:?}"), &rows, half, lines)?;
    let steps = 4;
    let opts = crate::GenerateOptions { max_new_tokens: steps, suppress: vec![s.eos_id], ..Default::default() };
    let out = cap.generate(&[&a, &b], &opts).map_err(|e| e.to_string())?;
    if out.iter().any(|g| g.tokens.len() != steps || !g.log_prob.is_finite()) {
        return Err(format!("decoder: expected {steps} tokens with finite scores per picture, got {out:?}"));
    }
    lines.push(format!(
        "decoder: {steps} cached greedy steps per picture, vocabulary {}; tokens {:?} and {:?}",
        s.vocab_size, out[0].tokens, out[1].tokens
    ));
    Ok(())
}

/// A prompted captioner, through [`VisionLanguageModel`]: the vision encoder on two pictures
/// (features finite and different), the prompt tokenised with one picture's image tokens, then
/// a few greedy steps of the cached decoder from each picture (the end tokens ignored, so every
/// step runs).
fn vlm_check(rt: &Runtime, spec: &ModelSpec, lines: &mut Vec<String>) -> Result<(), String> {
    let vlm = VisionLanguageModel::from_spec(rt, spec).map_err(|e| e.to_string())?;
    let n = vlm.input_size() as usize;
    let [a, b] = test_images(n);
    let pixels = vlm.pixels(&[&a, &b]).map_err(|e| e.to_string())?;
    let features = vlm.image_features(&pixels, 2).map_err(|e| e.to_string())?;
    let half = features.len() / 2;
    let rows = vec![features[..half].to_vec(), features[half..].to_vec()];
    let s = vlm.spec();
    let what = format!("vision encoder ({n}x{n} RGB) -> {} x {}", s.image_seq_len, s.image.dim);
    vectors(&what, &rows, half, lines)?;
    let prompt = vlm.tokenize(&s.default_prompt).map_err(|e| e.to_string())?;
    let steps = 4;
    let out = vlm.generate_from_features(&prompt, &features, 2, steps, false).map_err(|e| e.to_string())?;
    if out.iter().any(|g| g.tokens.len() != steps || !g.log_prob.is_finite()) {
        return Err(format!("decoder: expected {steps} tokens with finite scores per picture, got {out:?}"));
    }
    lines.push(format!(
        "decoder: a {}-token prompt, then {steps} cached greedy steps per picture; tokens {:?} and {:?}",
        prompt.ids.len(),
        out[0].tokens,
        out[1].tokens
    ));
    Ok(())
}

/// A speech-to-text model, through [`SpeechToText`]: two 5 s sounds through the front end
/// and the encoder (states finite and different), then greedy decoding of a few tokens with
/// both caches after an English transcription prompt (the end token suppressed, so every
/// step runs).
fn speech_check(rt: &Runtime, spec: &ModelSpec, lines: &mut Vec<String>) -> Result<(), String> {
    let stt = SpeechToText::from_spec(rt, spec).map_err(|e| e.to_string())?;
    let s = stt.seq2seq().spec();
    let w = spec.whisper.as_ref().ok_or("speech model without a [whisper] section")?;
    let [a, b] = test_sounds(stt.sample_rate(), stt.sample_rate() as usize * 5);
    let mut states = Vec::new();
    let mut rows = Vec::new();
    for sound in [&a, &b] {
        let state = stt.encode_window(sound).map_err(|e| e.to_string())?;
        let name = &s.encoder_outputs[0];
        rows.push(
            state
                .get(name)
                .and_then(crate::Array::f32s)
                .ok_or_else(|| format!("encoder has no float {name}"))?
                .to_vec(),
        );
        states.push(state);
    }
    let width = rows[0].len();
    vectors(&format!("front end and encoder (5 s at {} Hz)", stt.sample_rate()), &rows, width, lines)?;
    let steps = 4;
    let mut prompt = vec![w.sot];
    if let Some(pos) = w.lang_codes.iter().position(|c| c == "en") {
        prompt.extend([w.lang_ids[pos], w.transcribe]);
    }
    prompt.push(w.no_timestamps);
    let opts = crate::GenerateOptions {
        max_new_tokens: steps,
        prompt: Some(prompt),
        suppress: vec![s.eos_id],
        ..Default::default()
    };
    let mut tokens = Vec::new();
    for state in &states {
        let g = stt.seq2seq().generate(state, &opts, None).map_err(|e| e.to_string())?.remove(0);
        if g.tokens.len() != steps || !g.log_prob.is_finite() {
            return Err(format!("decoder: expected {steps} tokens with a finite score, got {g:?}"));
        }
        tokens.push(g.tokens);
    }
    lines.push(format!(
        "decoder: {steps} cached greedy steps per sound, vocabulary {}, {} languages; tokens {:?} and {:?}",
        s.vocab_size,
        w.lang_ids.len(),
        tokens[0],
        tokens[1]
    ));
    Ok(())
}

/// Every model of the cache with its role, source, size and recorded check.
pub fn list(home: &ModelHome) -> Result<Vec<ModelEntry>, ImportError> {
    let models = home.root().join("models");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&models) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ImportError::Io { path: models, message: e.to_string() }),
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') || !dir.join("model.toml").is_file() {
            continue;
        }
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            role: String,
            import: Option<ImportInfo>,
        }
        let path = dir.join("model.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ImportError::Io { path: path.clone(), message: e.to_string() })?;
        let head: Head =
            toml::from_str(&text).map_err(|e| ImportError::Config { path: path.clone(), message: e.to_string() })?;
        let source = match &head.import {
            Some(i) => format!("added from {}", i.from),
            None if dir.join(".medley-export").is_file() => "registry export".into(),
            None => "hand-written".into(),
        };
        let check = std::fs::read_to_string(dir.join(CHECK_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok());
        out.push(ModelEntry {
            id: name,
            pipeline_keys: pipeline_keys(&head.role),
            role: head.role,
            source,
            bytes: size(&dir),
            check,
        });
    }
    Ok(out)
}

/// Bytes of the files under `dir` (hard links counted as files).
fn size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Counts per model type and role, for messages.
pub fn known_model_types() -> &'static str {
    KNOWN
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixture folder through `add` into a scratch cache, checked through the adapters
    /// (the binary's tests in tests/own_models.rs cover the CLI, refusals and the listing).
    #[test]
    fn fixtures_are_added_through_the_adapters() {
        let (Some(fixtures), Some(home)) = (std::env::var_os("MEDLEY_TEST_FIXTURES"), std::env::var_os("MEDLEY_HOME"))
        else {
            panic!("MEDLEY_TEST_FIXTURES and MEDLEY_HOME are not set: run the tests with `cargo xtask test`");
        };
        let hf = PathBuf::from(fixtures).join("hf");
        let rt = Runtime::load(&ModelHome::new(home)).unwrap();
        let scratch = std::env::temp_dir().join(format!("medley-import-test-{}", std::process::id()));
        let cache = ModelHome::new(&scratch);
        for (folder, role) in
            [("vit-gpt2-tjs", "captioner"), ("vit-gpt2-optimum", "captioner"), ("clap-tjs", "dual_audio_text")]
        {
            let added = add(&rt, &cache, &hf.join(folder), &AddOptions::default()).unwrap();
            assert_eq!(added.role, role);
            assert!(added.check.passed(), "{folder}: {:?}", added.check);
            if role == "captioner" {
                let cap = ImageCaptioner::load(&rt, &cache, folder).unwrap();
                let [a, b] = test_images(cap.input_size() as usize);
                let opts = crate::GenerateOptions { max_new_tokens: 3, ..Default::default() };
                let captions = cap.caption(&[&a, &b], &opts).unwrap();
                assert_eq!(captions.len(), 2);
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
