//! A prompted vision-language captioner (SmolVLM / Idefics3 in the transformers.js layout):
//! pictures and a question in, text out. The prompt is tokenised once; each picture's features
//! replace the `<image>` rows of the prompt's token embeddings, and a decoder-only language
//! model generates greedily with its self-attention cache, one embedded token a step.

use std::sync::Mutex;

use ort::session::Session;
use ort::value::{DynValue, Tensor};
use tokenizers::Tokenizer;

use crate::image::{preprocess, resize_square};
use crate::seq2seq::{Generated, argmax, log_softmax};
use crate::spec::{ModelSpec, VlmSpec};
use crate::{ModelError, ModelHome, Runtime};

/// A SmolVLM-style captioner of the model cache (role `captioner` with a `[vlm]` section).
pub struct VisionLanguageModel {
    id: String,
    spec: VlmSpec,
    vision: Mutex<Session>,
    embed: Mutex<Session>,
    decoder: Mutex<Session>,
    tokenizer: Tokenizer,
}

/// A prompt, tokenised with its image block: the same ids for every picture.
#[derive(Debug, Clone, PartialEq)]
pub struct VlmPrompt {
    pub ids: Vec<u32>,
    /// Where the image features go (`image_seq_len` positions).
    pub image_rows: Vec<usize>,
}

impl VisionLanguageModel {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let s = spec.section(&spec.vlm, "vlm")?.clone();
        let bad = |message: String| ModelError::Spec { path: spec.dir.join("model.toml"), message };
        if s.past_inputs.len() != s.present_outputs.len() || s.past_inputs.is_empty() {
            return Err(bad("vlm: past_inputs and present_outputs must be non-empty and of equal length".into()));
        }
        if !s.template.contains("{image}") || !s.template.contains("{prompt}") {
            return Err(bad("vlm.template: must contain {image} and {prompt}".into()));
        }
        let tokenizer = Tokenizer::from_file(spec.file(&s.tokenizer)?)
            .map_err(|e| ModelError::Tokenizer { model: spec.id.clone(), message: e.to_string() })?;
        Ok(Self {
            id: spec.id.clone(),
            vision: rt.session(&spec.id, &spec.file(&s.image.file)?)?,
            embed: rt.session(&spec.id, &spec.file(&s.embed)?)?,
            decoder: rt.session(&spec.id, &spec.file(&s.decoder)?)?,
            tokenizer,
            spec: s,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn spec(&self) -> &VlmSpec {
        &self.spec
    }
    pub fn input_size(&self) -> u32 {
        self.spec.image.size
    }

    /// The chat turn asking `prompt` about one picture, as text.
    pub fn prompt_text(&self, prompt: &str) -> String {
        let tokens = self.spec.image_token.repeat(self.spec.image_seq_len);
        let block = self.spec.image_block.replace("{image_tokens}", &tokens);
        // `{prompt}` first: a prompt that itself says "{image}" stays text.
        self.spec.template.replacen("{image}", "\u{0}", 1).replacen("{prompt}", prompt, 1).replacen('\u{0}', &block, 1)
    }

    /// Tokenise the chat turn for `prompt`, checking that it holds exactly one picture's
    /// image tokens.
    pub fn tokenize(&self, prompt: &str) -> Result<VlmPrompt, ModelError> {
        let text = self.prompt_text(prompt);
        let enc = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| ModelError::Tokenizer { model: self.id.clone(), message: e.to_string() })?;
        let ids = enc.get_ids().to_vec();
        let image_rows: Vec<usize> =
            ids.iter().enumerate().filter(|&(_, &t)| t == self.spec.image_token_id).map(|(i, _)| i).collect();
        if image_rows.len() != self.spec.image_seq_len {
            return Err(ModelError::input(
                &self.id,
                format!(
                    "the prompt holds {} image tokens, expected {} (does the prompt contain {:?}?)",
                    image_rows.len(),
                    self.spec.image_seq_len,
                    self.spec.image_token
                ),
            ));
        }
        Ok(VlmPrompt { ids, image_rows })
    }

    /// Pixel values `[B, 1, 3, S, S]` for packed RGB24 pictures of `input_size()` a side.
    pub fn pixels(&self, images: &[&[u8]]) -> Result<Vec<f32>, ModelError> {
        preprocess(&self.spec.image, &self.id, images)
    }

    /// Image features `[B, image_seq_len, width]` (flattened) from pixel values of `batch`
    /// pictures.
    pub fn image_features(&self, pixels: &[f32], batch: usize) -> Result<Vec<f32>, ModelError> {
        let s = self.spec.image.size as usize;
        let err = |e: ort::Error| ModelError::session(&self.id, e);
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![(
            self.spec.image.input.clone(),
            Tensor::from_array(([batch, 1, 3, s, s], pixels.to_vec())).map_err(err)?.into(),
        )];
        if let Some(mask) = &self.spec.pixel_attention_mask {
            inputs.push((
                mask.clone(),
                Tensor::from_array(([batch, 1, s, s], vec![true; batch * s * s])).map_err(err)?.into(),
            ));
        }
        let mut session = crate::runtime::lock(&self.vision);
        let out = session.run(inputs).map_err(err)?;
        let name = &self.spec.image.embedding;
        let value = out.get(name).ok_or_else(|| ModelError::output(&self.id, format!("no output {name}")))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(err)?;
        let want = batch * self.spec.image_seq_len * self.spec.image.dim;
        if data.len() != want {
            return Err(ModelError::output(
                &self.id,
                format!(
                    "{name} has shape {shape:?}, expected {batch} x {} x {}",
                    self.spec.image_seq_len, self.spec.image.dim
                ),
            ));
        }
        Ok(data.to_vec())
    }

    /// Token embeddings `[rows, t, width]` for `rows` rows of `t` ids each.
    fn embed(&self, ids: &[u32], rows: usize) -> Result<Vec<f32>, ModelError> {
        let t = ids.len() / rows.max(1);
        let ids: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
        let err = |e: ort::Error| ModelError::session(&self.id, e);
        let mut session = crate::runtime::lock(&self.embed);
        let out = session
            .run(ort::inputs!["input_ids" => Tensor::from_array(([rows, t], ids)).map_err(err)?])
            .map_err(err)?;
        let value = out.get("inputs_embeds").ok_or_else(|| ModelError::output(&self.id, "no output inputs_embeds"))?;
        let (_, data) = value.try_extract_tensor::<f32>().map_err(err)?;
        if data.len() != rows * t * self.spec.image.dim {
            return Err(ModelError::output(&self.id, "token embeddings of an unexpected size"));
        }
        Ok(data.to_vec())
    }

    /// One decoder step: `embeds` `[rows, t, width]` after `past`; the last position's logits
    /// per row.
    fn step(
        &self,
        embeds: Vec<f32>,
        rows: usize,
        past: &mut Vec<DynValue>,
        past_len: usize,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let width = self.spec.image.dim;
        let t = embeds.len() / (rows * width).max(1);
        let total = past_len + t;
        let err = |e: ort::Error| ModelError::session(&self.id, e);
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
            ("inputs_embeds".into(), Tensor::from_array(([rows, t, width], embeds)).map_err(err)?.into()),
            (
                "attention_mask".into(),
                Tensor::from_array(([rows, total], vec![1i64; rows * total])).map_err(err)?.into(),
            ),
            (
                "position_ids".into(),
                Tensor::from_array((
                    [rows, t],
                    (0..rows).flat_map(|_| (past_len..total).map(|p| p as i64)).collect::<Vec<_>>(),
                ))
                .map_err(err)?
                .into(),
            ),
        ];
        if past.is_empty() {
            let (h, d) = (self.spec.kv_heads, self.spec.head_dim);
            for name in &self.spec.past_inputs {
                inputs.push((
                    name.clone(),
                    Tensor::from_array(([rows, h, 0, d], Vec::<f32>::new())).map_err(err)?.into(),
                ));
            }
        } else {
            for (name, v) in self.spec.past_inputs.iter().zip(past.iter()) {
                inputs.push((name.clone(), v.into()));
            }
        }
        let mut session = crate::runtime::lock(&self.decoder);
        let mut out = session.run(inputs).map_err(err)?;
        let logits = out.get(&self.spec.logits).ok_or_else(|| ModelError::output(&self.id, "no logits"))?;
        let (_, data) = logits.try_extract_tensor::<f32>().map_err(err)?;
        let v = data.len() / (rows * t).max(1);
        let last = (0..rows).map(|r| data[(r * t + t - 1) * v..(r * t + t) * v].to_vec()).collect();
        let mut next = Vec::with_capacity(self.spec.present_outputs.len());
        for name in &self.spec.present_outputs {
            next.push(out.remove(name).ok_or_else(|| ModelError::output(&self.id, format!("no output {name}")))?);
        }
        *past = next;
        Ok(last)
    }

    /// Greedy generation from image features already computed (`[B, image_seq_len, width]`):
    /// one sequence per picture, the end token not included (`stop_at_eos` false: every step
    /// runs, for checks).
    pub fn generate_from_features(
        &self,
        prompt: &VlmPrompt,
        features: &[f32],
        batch: usize,
        max_new_tokens: usize,
        stop_at_eos: bool,
    ) -> Result<Vec<Generated>, ModelError> {
        let width = self.spec.image.dim;
        let per_image = self.spec.image_seq_len * width;
        if features.len() != batch * per_image {
            return Err(ModelError::input(&self.id, "image features of an unexpected size"));
        }
        let one = self.embed(&prompt.ids, 1)?;
        let len = prompt.ids.len();
        let mut embeds = Vec::with_capacity(batch * len * width);
        for b in 0..batch {
            let start = embeds.len();
            embeds.extend_from_slice(&one);
            let image = &features[b * per_image..(b + 1) * per_image];
            for (k, &row) in prompt.image_rows.iter().enumerate() {
                embeds[start + row * width..start + (row + 1) * width]
                    .copy_from_slice(&image[k * width..(k + 1) * width]);
            }
        }
        let mut out = vec![Generated { tokens: Vec::new(), log_prob: 0.0, ended: false }; batch];
        let mut past = Vec::new();
        let mut past_len = 0;
        for _ in 0..max_new_tokens {
            let logits = self.step(embeds, batch, &mut past, past_len)?;
            past_len += if past_len == 0 { len } else { 1 };
            let mut feed = Vec::with_capacity(batch);
            for (g, l) in out.iter_mut().zip(logits) {
                if g.ended {
                    feed.push(self.spec.eos_ids[0]);
                    continue;
                }
                let lp = log_softmax(&l);
                let (best, score) = argmax(&lp);
                g.log_prob += score;
                if stop_at_eos && self.spec.eos_ids.contains(&best) {
                    g.ended = true;
                } else {
                    g.tokens.push(best);
                }
                feed.push(best);
            }
            if out.iter().all(|g| g.ended) {
                break;
            }
            embeds = self.embed(&feed, batch)?;
        }
        Ok(out)
    }

    /// Token ids to text, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer
            .decode(ids, true)
            .map(|t| t.trim().to_string())
            .map_err(|e| ModelError::Tokenizer { model: self.id.clone(), message: e.to_string() })
    }

    /// Answer `prompt` about each packed RGB24 picture of `size` squared pixels (resized
    /// bilinearly to the model's input first), at most `max_new_tokens` tokens each.
    pub fn describe(
        &self,
        images: &[&[u8]],
        size: u32,
        prompt: &str,
        max_new_tokens: usize,
    ) -> Result<Vec<String>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.input_size() as usize;
        let resized: Vec<Vec<u8>> = images.iter().map(|rgb| resize_square(rgb, size as usize, n)).collect();
        let refs: Vec<&[u8]> = resized.iter().map(Vec::as_slice).collect();
        let prompt = self.tokenize(prompt)?;
        let features = self.image_features(&self.pixels(&refs)?, refs.len())?;
        let generated = self.generate_from_features(&prompt, &features, refs.len(), max_new_tokens, true)?;
        generated.iter().map(|g| self.decode(&g.tokens)).collect()
    }
}
