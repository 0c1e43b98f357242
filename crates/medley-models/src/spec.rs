//! `model.toml`: what an exported model is and how to feed it, written by the export script
//! next to the ONNX graphs. The Rust adapters are built from it, not from constants in code.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{ModelError, ModelHome};

/// One exported model: its role, graphs and the sections its adapters read.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    pub id: String,
    /// `image`, `audio`, `text`, `music_tagger`, `sound_events`, `speech_to_text`,
    /// `captioner`, `ocr`, `shots`, `dual_image_text` (CLIP-style) or `dual_audio_text`
    /// (CLAP-style).
    pub role: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub licence: String,
    /// The graphs in the folder with their input and output names and shapes (documentation,
    /// and checked against the session when an adapter loads).
    #[serde(default)]
    pub graphs: Vec<GraphSpec>,
    pub image: Option<ImageSpec>,
    pub audio: Option<AudioSpec>,
    pub text: Option<TextSpec>,
    pub tagger: Option<TaggerSpec>,
    pub seq2seq: Option<Seq2SeqSpec>,
    pub whisper: Option<WhisperSpec>,
    /// A prompted vision-language captioner (SmolVLM / Idefics3).
    #[serde(default)]
    pub vlm: Option<VlmSpec>,
    /// On-screen text reading (PP-OCR detection + recognition).
    pub ocr: Option<crate::ocr::OcrSpec>,
    /// Shot-boundary detection (TransNetV2).
    pub shots: Option<crate::shots::ShotSpec>,
    /// The folder the spec was read from; files in it are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct GraphSpec {
    pub file: String,
    /// A float16 variant of the graph (`<stem>.fp16.onnx`, same inputs and outputs), written
    /// when the manifest entry offers it; sessions on CUDA load it instead.
    #[serde(default)]
    pub fp16: Option<String>,
    /// An int8 variant of the graph (`<stem>.int8.onnx`, same inputs and outputs), written by
    /// the export when it keeps the float graph's outputs (a cosine checked there); sessions
    /// on the CPU load it instead.
    #[serde(default)]
    pub int8: Option<String>,
    /// A variant of a text graph for query texts (`<stem>.queries-int8.onnx`, same inputs and
    /// outputs): int8 MatMuls with per-token activation scales, so a text's vector does not
    /// depend on its batch-mates. Written by the export when every held-out text keeps a
    /// cosine of 0.997 to the float graph; `medley search` and `serve` load it on the CPU.
    #[serde(default)]
    pub queries: Option<String>,
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct TensorSpec {
    pub name: String,
    #[serde(default = "f32_name")]
    pub dtype: String,
    /// Fixed sizes as numbers, symbolic ones (`batch`, `seq`) as strings.
    #[serde(default)]
    pub shape: Vec<toml::Value>,
}

fn f32_name() -> String {
    "float32".into()
}

/// Square RGB images in, an embedding (and optionally class scores) out.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ImageSpec {
    pub file: String,
    pub input: String,
    pub size: u32,
    /// Per channel, in 0..255 pixel units: `x' = (x - mean) / std`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub embedding: String,
    pub dim: usize,
    /// Class scores output and its label file (one name per line).
    pub logits: Option<String>,
    pub labels: Option<String>,
    /// Texts that say what each label means (one per line, in `labels` order: all its names,
    /// its definition), embedded by the label bridge instead of the bare names; a line may
    /// hold several phrasings separated by ` | `, embedded apart and averaged.
    #[serde(default)]
    pub label_texts: Option<String>,
    /// Each class's mean probability over a reference set of pictures (one number per line,
    /// in `labels` order): the label bridge divides by it, so classes the model gives any
    /// picture of a kind (every drawing is a bit of a "comic book") say less.
    #[serde(default)]
    pub label_prior: Option<String>,
    /// `softmax` (default), `sigmoid` or `none`, applied to `logits`.
    #[serde(default)]
    pub activation: Option<String>,
    /// L2-normalise the embedding (CLIP-style towers).
    #[serde(default)]
    pub normalize: bool,
    /// Constant inputs the graph takes besides the image (a joint CLIP-style graph's text
    /// inputs): fed as given, their outputs ignored.
    #[serde(default)]
    pub fixed_inputs: Vec<FixedInput>,
}

/// A constant input of a graph: a tensor of `shape` filled with `value`. A joint CLIP/SigLIP
/// export (`model.onnx`) takes both towers' inputs in every run; the adapter of one tower
/// feeds the other a one-item placeholder this way.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct FixedInput {
    pub name: String,
    /// `int64` or `float32`.
    pub dtype: String,
    pub shape: Vec<usize>,
    #[serde(default)]
    pub value: f64,
}

/// A log-mel front end computed in Rust before the graph (the Hugging Face feature
/// extractors' `spectrogram` with a Hann window, centred reflect padding, power 2, a mel filter
/// bank and dB): CLAP's audio tower takes `input_features [B, 1, frames, n_mels]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct MelSpec {
    pub n_fft: usize,
    pub hop: usize,
    pub n_mels: usize,
    pub f_min: f64,
    pub f_max: f64,
    /// `slaney` or `htk`.
    pub mel_scale: String,
    /// `slaney` (area-normalised filters) or none.
    #[serde(default)]
    pub norm: Option<String>,
    /// Frames per window (`1 + window / hop`), checked against the window.
    pub frames: usize,
}

/// Fixed-length raw mono windows in, an embedding out (the front end is in the graph, or
/// computed by medley when `features` is set).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct AudioSpec {
    pub file: String,
    pub input: String,
    pub sample_rate: u32,
    pub window: usize,
    pub embedding: String,
    pub dim: usize,
    #[serde(default)]
    pub normalize: bool,
    /// Log-mel features computed before the graph (its input is then `[B, 1, frames, n_mels]`).
    #[serde(default)]
    pub features: Option<MelSpec>,
    /// Constant inputs besides the audio (a joint CLAP graph's text inputs).
    #[serde(default)]
    pub fixed_inputs: Vec<FixedInput>,
}

/// Texts in (tokenised with `tokenizer`), an embedding out.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct TextSpec {
    pub file: String,
    pub tokenizer: String,
    /// `padded` (ids, mask, types as i64 `[B, S]`, the default) or `ragged` (flat i32 ids
    /// plus i64 row splits `[B+1]`, as Universal Sentence Encoder takes them).
    #[serde(default)]
    pub layout: Option<String>,
    pub input_ids: String,
    pub attention_mask: Option<String>,
    pub token_type_ids: Option<String>,
    pub row_splits: Option<String>,
    pub embedding: String,
    pub dim: usize,
    #[serde(default = "max_len")]
    pub max_length: usize,
    #[serde(default)]
    pub normalize: bool,
    /// `longest` (default: each batch padded to its longest text) or `max_length` (every
    /// text padded to `max_length`, as SigLIP was trained and its processor does).
    #[serde(default)]
    pub padding: Option<String>,
    /// The padding token and id when tokenizer.json names none (hub tokenizer.json files
    /// often have `"padding": null`; the processor's pad token is in tokenizer_config.json).
    #[serde(default)]
    pub pad_token: Option<String>,
    #[serde(default)]
    pub pad_id: Option<u32>,
    /// Constant inputs besides the text (a joint CLIP-style graph's image input).
    #[serde(default)]
    pub fixed_inputs: Vec<FixedInput>,
}

fn max_len() -> usize {
    256
}

/// Fixed-length raw mono windows in, tag probabilities with names and embeddings out.
#[derive(Debug, Clone, Deserialize)]
pub struct TaggerSpec {
    pub file: String,
    pub input: String,
    pub sample_rate: u32,
    pub window: usize,
    pub tags: String,
    pub labels: String,
    /// Texts that say what each tag means (one per line, in `labels` order; ` | ` separates
    /// phrasings, embedded apart and averaged), embedded by the label bridge instead of the
    /// bare names.
    #[serde(default)]
    pub label_texts: Option<String>,
    /// Each class's mean probability over a reference set of sounds (one number per line, in
    /// `labels` order), which the label bridge divides by: see [`ImageSpec::label_prior`].
    #[serde(default)]
    pub label_prior: Option<String>,
    /// `sigmoid` when the graph gives logits, `none` (default) when it gives probabilities.
    #[serde(default)]
    pub activation: Option<String>,
    /// Embedding outputs by name and width, e.g. `penultimate = 200`.
    #[serde(default)]
    pub embeddings: std::collections::BTreeMap<String, usize>,
    /// The embedding the pipeline stores by default (empty: the tagger has none).
    #[serde(default)]
    pub embedding: String,
}

/// An encoder plus an autoregressive decoder with past key/values.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Seq2SeqSpec {
    /// Optional preprocessing graph (e.g. waveform -> log-mel) run before the encoder.
    pub frontend: Option<String>,
    pub frontend_input: Option<String>,
    pub encoder: String,
    pub encoder_input: String,
    /// Encoder outputs passed to every decoder step under the same names.
    pub encoder_outputs: Vec<String>,
    pub decoder: String,
    pub decoder_input_ids: String,
    pub logits: String,
    /// Self-attention cache, one name per layer and kind, in matching order.
    pub past_inputs: Vec<String>,
    pub present_outputs: Vec<String>,
    pub num_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub tokenizer: String,
    pub start_ids: Vec<u32>,
    pub eos_id: u32,
    #[serde(default)]
    pub pad_id: Option<u32>,
    #[serde(default = "max_new")]
    pub max_new_tokens: usize,
    #[serde(default)]
    pub suppress_ids: Vec<u32>,
    #[serde(default)]
    pub begin_suppress_ids: Vec<u32>,
    /// The names the decoder takes the encoder outputs under, in `encoder_outputs` order,
    /// when they differ (optimum exports: encoder `last_hidden_state`, decoder
    /// `encoder_hidden_states`). Empty: the same names.
    #[serde(default)]
    pub decoder_encoder_inputs: Vec<String>,
    /// A merged decoder's boolean `[1]` switch between its first-step and cached branches
    /// (optimum's `decoder_model_merged.onnx`: `use_cache_branch`), false on the first step.
    #[serde(default)]
    pub use_cache_branch: Option<String>,
    /// Those `past_inputs` the first step fills and later steps only read: a merged
    /// decoder's cross-attention cache (optimum's `past_key_values.<i>.encoder.key/value`),
    /// whose later `present` outputs are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_past_inputs: Vec<String>,
    /// The positions of the new tokens, `int64 [T]` from the cached length on (the decoders
    /// optimum 1.22+ exports with transformers 4.4x: `cache_position`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_position: Option<String>,
    /// For captioners: image preprocessing of the encoder input.
    pub image: Option<ImageSpec>,
}

fn max_new() -> usize {
    64
}

/// A prompted vision-language model in the transformers.js layout of SmolVLM (Idefics3): a
/// vision encoder (`pixel_values [B, images, 3, S, S]`, `pixel_attention_mask` -> image
/// features, `image_seq_len` rows per image), a token-embedding graph (`input_ids` ->
/// `inputs_embeds`) and a decoder-only language model with a self-attention cache fed
/// `inputs_embeds`, `attention_mask` and `position_ids`. The prompt's image-token rows are
/// replaced by the image features before the first decoder step.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct VlmSpec {
    /// The vision encoder and its preprocessing (`file`, `input` = pixel values, `size`,
    /// `mean`/`std`, `embedding` = the image-features output, `dim` = the text model's width).
    pub image: ImageSpec,
    /// The vision encoder's boolean pixel mask input, when it has one (all true: medley feeds
    /// one whole picture per frame).
    #[serde(default)]
    pub pixel_attention_mask: Option<String>,
    pub embed: String,
    pub decoder: String,
    pub tokenizer: String,
    pub logits: String,
    /// Self-attention cache, one name per layer and kind, with the outputs in matching order.
    pub past_inputs: Vec<String>,
    pub present_outputs: Vec<String>,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The `<image>` token: its rows take the image features.
    pub image_token_id: u32,
    /// Image-feature rows per picture.
    pub image_seq_len: usize,
    /// The chat turn, `{image}` where the picture goes and `{prompt}` where the question goes
    /// (Idefics3: `<|im_start|>User:{image}{prompt}<end_of_utterance>\nAssistant:`).
    pub template: String,
    /// What `{image}` stands for, `{image_tokens}` being `image_seq_len` image tokens.
    pub image_block: String,
    /// The `<image>` token's text.
    pub image_token: String,
    /// Generation stops at any of these.
    pub eos_ids: Vec<u32>,
    #[serde(default = "max_new")]
    pub max_new_tokens: usize,
    /// Asked when the pipeline file gives no `captions.prompt`.
    pub default_prompt: String,
}

/// Whisper's special tokens and audio framing.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct WhisperSpec {
    pub sample_rate: u32,
    /// Samples per window (30 s).
    pub chunk: usize,
    /// Seconds per timestamp step (0.02).
    pub time_precision: f32,
    pub sot: u32,
    pub transcribe: u32,
    pub translate: u32,
    pub no_timestamps: u32,
    pub timestamp_begin: u32,
    pub no_speech: Option<u32>,
    /// Empty for an English-only model (`*.en`): its prompt has no language or task token.
    pub lang_ids: Vec<u32>,
    pub lang_codes: Vec<String>,
    /// Whisper's log-mel computed by medley, when the export has no front-end graph
    /// (optimum and transformers.js exports take `input_features [B, n_mels, frames]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<MelSpec>,
}

impl ModelSpec {
    /// Read `<dir>/model.toml`.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("model.toml");
        let text = std::fs::read_to_string(&path).map_err(|_| ModelError::Missing {
            what: "model.toml",
            path: path.clone(),
            env: "MEDLEY_HOME",
        })?;
        let mut spec: ModelSpec =
            toml::from_str(&text).map_err(|e| ModelError::Spec { path: path.clone(), message: e.to_string() })?;
        spec.dir = dir.to_path_buf();
        Ok(spec)
    }

    /// The spec of model `id` in `home`.
    pub fn load(home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_dir(&home.model_dir(id)?)
    }

    /// A file of the model folder, checked to exist.
    pub fn file(&self, name: &str) -> Result<PathBuf, ModelError> {
        let path = self.dir.join(name);
        if path.exists() { Ok(path) } else { Err(ModelError::Missing { what: "model file", path, env: "MEDLEY_HOME" }) }
    }

    /// The lines of a label file of the model folder.
    pub fn labels(&self, name: &str) -> Result<Vec<String>, ModelError> {
        let path = self.file(name)?;
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Spec { path, message: e.to_string() })?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// The label texts in `file` (one per label, checked), or the labels themselves when the
    /// model has none.
    pub(crate) fn label_texts(&self, file: Option<&str>, labels: &[String]) -> Result<Vec<String>, ModelError> {
        let Some(file) = file else { return Ok(labels.to_vec()) };
        let texts = self.labels(file)?;
        if texts.len() != labels.len() {
            return Err(ModelError::Spec {
                path: self.dir.join(file),
                message: format!("{} label texts for {} labels", texts.len(), labels.len()),
            });
        }
        Ok(texts)
    }

    /// One number per label from `file` (a class prior), checked against the label count.
    pub(crate) fn label_numbers(&self, file: &str, labels: &[String]) -> Result<Vec<f32>, ModelError> {
        let path = self.dir.join(file);
        let bad = |message: String| ModelError::Spec { path: path.clone(), message };
        let numbers = self
            .labels(file)?
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| bad(format!("line {}: {l:?} is not a non-negative number", i + 1)))
            })
            .collect::<Result<Vec<f32>, _>>()?;
        if numbers.len() != labels.len() {
            return Err(bad(format!("{} numbers for {} labels", numbers.len(), labels.len())));
        }
        Ok(numbers)
    }

    pub(crate) fn section<'a, T>(&self, s: &'a Option<T>, name: &str) -> Result<&'a T, ModelError> {
        s.as_ref().ok_or_else(|| ModelError::Spec {
            path: self.dir.join("model.toml"),
            message: format!("model {} (role {}) has no [{name}] section", self.id, self.role),
        })
    }
}

/// The session inputs for `fixed` (owned tensors, so they outlive nothing but the run).
pub(crate) fn fixed_values(
    fixed: &[FixedInput],
    model: &str,
) -> Result<Vec<(std::borrow::Cow<'static, str>, ort::session::SessionInputValue<'static>)>, ModelError> {
    use ort::value::Tensor;
    fixed
        .iter()
        .map(|f| {
            let n: usize = f.shape.iter().product();
            let value = match f.dtype.as_str() {
                "int64" => Tensor::from_array((f.shape.clone(), vec![f.value as i64; n])).map(|t| t.into_dyn()),
                "float32" => Tensor::from_array((f.shape.clone(), vec![f.value as f32; n])).map(|t| t.into_dyn()),
                other => {
                    return Err(ModelError::input(model, format!("fixed input {}: unknown dtype {other:?}", f.name)));
                }
            }
            .map_err(|e| ModelError::input(model, e))?;
            Ok((std::borrow::Cow::Owned(f.name.clone()), value.into()))
        })
        .collect()
}
