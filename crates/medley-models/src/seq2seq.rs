//! Encoder plus autoregressive decoder with past key/values: greedy and beam search. Used by
//! Whisper (speech to text) and by image captioners (VisionEncoderDecoder exports).

use std::sync::Mutex;

use ort::session::Session;
use ort::value::{DynValue, Tensor};
use tokenizers::Tokenizer;

use crate::runtime::Array;
use crate::spec::{ModelSpec, Seq2SeqSpec};
use crate::{ModelError, ModelHome, Runtime};

/// Changes the next-token logits of one hypothesis before selection (Whisper's timestamp
/// rules, suppressions). `tokens` is the hypothesis so far, prompt included.
pub trait LogitsProcessor {
    fn process(&self, tokens: &[u32], prompt_len: usize, logits: &mut [f32]);
}

/// How to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// 1 = greedy.
    pub beam_size: usize,
    /// Tokens to generate at most (after the prompt); the length cap.
    pub max_new_tokens: usize,
    /// Overrides the spec's start ids.
    pub prompt: Option<Vec<u32>>,
    /// Beam scores are divided by `length ^ length_penalty`.
    pub length_penalty: f32,
    /// Token ids never generated (added to the spec's).
    pub suppress: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { beam_size: 1, max_new_tokens: 64, prompt: None, length_penalty: 1.0, suppress: Vec::new() }
    }
}

/// One generated sequence (prompt and end token not included).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    /// Sum of the chosen tokens' log-probabilities.
    pub log_prob: f32,
    /// True when it stopped on the end token, false when it hit the length cap.
    pub ended: bool,
}

/// The encoder's outputs for a batch, fed to every decoder step.
pub struct EncoderState {
    batch: usize,
    values: Vec<(String, Array)>,
}

impl EncoderState {
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// An encoder output by name.
    pub fn get(&self, name: &str) -> Option<&Array> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
    /// Rows `rows` of every output (beam expansion, or taking one item of a batch).
    pub fn select(&self, rows: &[usize]) -> EncoderState {
        EncoderState {
            batch: rows.len(),
            values: self.values.iter().map(|(n, a)| (n.clone(), gather(a, rows))).collect(),
        }
    }
}

fn gather(a: &Array, rows: &[usize]) -> Array {
    let shape = a.shape();
    let per: usize = shape[1..].iter().product();
    let mut new_shape = shape.to_vec();
    new_shape[0] = rows.len();
    match a {
        Array::F32(_, d) => {
            Array::F32(new_shape, rows.iter().flat_map(|&r| d[r * per..(r + 1) * per].iter().copied()).collect())
        }
        Array::I64(_, d) => {
            Array::I64(new_shape, rows.iter().flat_map(|&r| d[r * per..(r + 1) * per].iter().copied()).collect())
        }
        Array::I32(_, d) => {
            Array::I32(new_shape, rows.iter().flat_map(|&r| d[r * per..(r + 1) * per].iter().copied()).collect())
        }
    }
}

/// An encoder-decoder generator described by a model's `[seq2seq]` section.
pub struct Seq2Seq {
    id: String,
    spec: Seq2SeqSpec,
    frontend: Option<Mutex<Session>>,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    tokenizer: Tokenizer,
    /// Per past input: part of the cross-attention cache (`cross_past_inputs`).
    cross: Vec<bool>,
}

impl Seq2Seq {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let s = spec.section(&spec.seq2seq, "seq2seq")?.clone();
        if s.past_inputs.len() != s.present_outputs.len() {
            return Err(ModelError::Spec {
                path: spec.dir.join("model.toml"),
                message: "past_inputs and present_outputs differ in length".into(),
            });
        }
        let frontend = match &s.frontend {
            Some(f) => Some(rt.session(&spec.id, &spec.file(f)?)?),
            None => None,
        };
        let encoder = rt.session(&spec.id, &spec.file(&s.encoder)?)?;
        let decoder = rt.session(&spec.id, &spec.file(&s.decoder)?)?;
        let tokenizer = Tokenizer::from_file(spec.file(&s.tokenizer)?)
            .map_err(|e| ModelError::Tokenizer { model: spec.id.clone(), message: e.to_string() })?;
        if let Some(stray) = s.cross_past_inputs.iter().find(|c| !s.past_inputs.contains(c)) {
            return Err(ModelError::Spec {
                path: spec.dir.join("model.toml"),
                message: format!("cross_past_inputs names {stray}, which is not in past_inputs"),
            });
        }
        let cross = s.past_inputs.iter().map(|p| s.cross_past_inputs.contains(p)).collect();
        Ok(Self { id: spec.id.clone(), spec: s, frontend, encoder, decoder, tokenizer, cross })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn spec(&self) -> &Seq2SeqSpec {
        &self.spec
    }
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Run the front-end graph (e.g. waveform `[B, N]` -> log-mel `[B, 80, 3000]`).
    pub fn frontend(&self, input: &Array) -> Result<Array, ModelError> {
        let session = self.frontend.as_ref().ok_or_else(|| ModelError::input(&self.id, "model has no front end"))?;
        let name = self.spec.frontend_input.as_deref().unwrap_or("waveform");
        let mut out = crate::runtime::run_named(session, &self.id, &[(name, input)], &[])?;
        let key = out.keys().next().cloned().ok_or_else(|| ModelError::output(&self.id, "front end has no output"))?;
        out.remove(&key).ok_or_else(|| ModelError::output(&self.id, "front end has no output"))
    }

    /// Run the encoder on a batch (first dimension = batch).
    pub fn encode(&self, input: &Array) -> Result<EncoderState, ModelError> {
        let wanted: Vec<&str> = self.spec.encoder_outputs.iter().map(String::as_str).collect();
        let mut out =
            crate::runtime::run_named(&self.encoder, &self.id, &[(self.spec.encoder_input.as_str(), input)], &wanted)?;
        let values = self
            .spec
            .encoder_outputs
            .iter()
            .map(|n| {
                let value =
                    out.remove(n).ok_or_else(|| ModelError::output(&self.id, format!("encoder has no output {n}")))?;
                Ok((n.clone(), value))
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(EncoderState { batch: input.shape()[0], values })
    }

    /// Token ids to text, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer { model: self.id.clone(), message: e.to_string() })
    }

    /// Generate one sequence per encoder batch row.
    pub fn generate(
        &self,
        state: &EncoderState,
        opts: &GenerateOptions,
        processor: Option<&dyn LogitsProcessor>,
    ) -> Result<Vec<Generated>, ModelError> {
        if opts.beam_size <= 1 {
            self.greedy(state, opts, processor)
        } else {
            (0..state.batch).map(|b| self.beam(&state.select(&[b]), opts, processor)).collect()
        }
    }

    /// One decoder step for `rows` hypotheses: feeds `new_tokens` (same count per row) after
    /// the cached past; returns the last position's logits per row and updates `past`.
    /// `enc` is [`Seq2Seq::enc_values`] of the hypotheses' encoder states.
    pub fn step(
        &self,
        enc: &[(String, DynValue)],
        past: &mut Past,
        new_tokens: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let rows = new_tokens.len();
        let t = new_tokens[0].len();
        let ids: Vec<i64> = new_tokens.iter().flat_map(|r| r.iter().map(|&x| i64::from(x))).collect();
        let err = |e: ort::Error| ModelError::session(&self.id, e);
        let first = past.values.is_empty();
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::new();
        inputs.push((self.spec.decoder_input_ids.clone(), Tensor::from_array(([rows, t], ids)).map_err(err)?.into()));
        for (name, v) in enc {
            inputs.push((name.clone(), v.into()));
        }
        if first {
            let (h, d) = (self.spec.num_heads, self.spec.head_dim);
            for name in &self.spec.past_inputs {
                inputs.push((
                    name.clone(),
                    Tensor::from_array(([rows, h, 0, d], Vec::<f32>::new())).map_err(err)?.into(),
                ));
            }
        } else {
            for (name, v) in self.spec.past_inputs.iter().zip(&past.values) {
                inputs.push((name.clone(), v.into()));
            }
        }
        if let Some(name) = &self.spec.use_cache_branch {
            inputs.push((name.clone(), Tensor::from_array(([1usize], vec![!first])).map_err(err)?.into()));
        }
        if let Some(name) = &self.spec.cache_position {
            let positions: Vec<i64> = (past.len..past.len + t).map(|p| p as i64).collect();
            inputs.push((name.clone(), Tensor::from_array(([t], positions)).map_err(err)?.into()));
        }
        let mut session = crate::runtime::lock(&self.decoder);
        let mut out = session.run(inputs).map_err(err)?;
        let logits = out.get(&self.spec.logits).ok_or_else(|| ModelError::output(&self.id, "no logits"))?;
        let (shape, data) = logits.try_extract_tensor::<f32>().map_err(err)?;
        let v = *shape.last().unwrap_or(&0) as usize;
        let steps = data.len() / (rows * v).max(1);
        let last: Vec<Vec<f32>> =
            (0..rows).map(|r| data[(r * steps + steps - 1) * v..(r * steps + steps) * v].to_vec()).collect();
        let mut old = std::mem::take(&mut past.values).into_iter();
        for (name, &cross) in self.spec.present_outputs.iter().zip(&self.cross) {
            let kept = old.next();
            let value = match kept {
                // The cross-attention cache is the first step's, whatever later steps return.
                Some(kept) if cross => kept,
                _ => out.remove(name).ok_or_else(|| ModelError::output(&self.id, format!("no output {name}")))?,
            };
            past.values.push(value);
        }
        past.len += t;
        Ok(last)
    }

    /// The encoder's outputs as decoder inputs, under the names the decoder takes them.
    pub fn enc_values(&self, state: &EncoderState) -> Result<Vec<(String, DynValue)>, ModelError> {
        state
            .values
            .iter()
            .enumerate()
            .map(|(i, (n, a))| {
                let v = match a {
                    Array::F32(s, d) => Tensor::from_array((s.clone(), d.clone())).map(|t| t.into_dyn()),
                    Array::I64(s, d) => Tensor::from_array((s.clone(), d.clone())).map(|t| t.into_dyn()),
                    Array::I32(s, d) => Tensor::from_array((s.clone(), d.clone())).map(|t| t.into_dyn()),
                };
                let name = self.spec.decoder_encoder_inputs.get(i).unwrap_or(n).clone();
                v.map(|v| (name, v)).map_err(|e| ModelError::input(&self.id, e))
            })
            .collect()
    }

    fn prepare(
        &self,
        tokens: &[u32],
        prompt_len: usize,
        opts: &GenerateOptions,
        processor: Option<&dyn LogitsProcessor>,
        logits: &mut [f32],
    ) {
        for &s in self.spec.suppress_ids.iter().chain(&opts.suppress) {
            if let Some(x) = logits.get_mut(s as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
        if tokens.len() == prompt_len {
            for &s in &self.spec.begin_suppress_ids {
                if let Some(x) = logits.get_mut(s as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        if let Some(p) = processor {
            p.process(tokens, prompt_len, logits);
        }
    }

    fn greedy(
        &self,
        state: &EncoderState,
        opts: &GenerateOptions,
        processor: Option<&dyn LogitsProcessor>,
    ) -> Result<Vec<Generated>, ModelError> {
        let rows = state.batch;
        let prompt = opts.prompt.clone().unwrap_or_else(|| self.spec.start_ids.clone());
        let enc = self.enc_values(state)?;
        let mut past = Past::default();
        let mut seqs: Vec<Vec<u32>> = vec![prompt.clone(); rows];
        let mut out: Vec<Generated> = vec![Generated { tokens: Vec::new(), log_prob: 0.0, ended: false }; rows];
        let mut feed: Vec<Vec<u32>> = vec![prompt.clone(); rows];
        for _ in 0..opts.max_new_tokens {
            let logits = self.step(&enc, &mut past, &feed)?;
            for (r, mut l) in logits.into_iter().enumerate() {
                if out[r].ended {
                    feed[r] = vec![self.spec.eos_id];
                    continue;
                }
                self.prepare(&seqs[r], prompt.len(), opts, processor, &mut l);
                let lp = log_softmax(&l);
                let (best, score) = argmax(&lp);
                seqs[r].push(best);
                feed[r] = vec![best];
                out[r].log_prob += score;
                if best == self.spec.eos_id {
                    out[r].ended = true;
                } else {
                    out[r].tokens.push(best);
                }
            }
            if out.iter().all(|g| g.ended) {
                break;
            }
        }
        Ok(out)
    }

    fn beam(
        &self,
        state: &EncoderState,
        opts: &GenerateOptions,
        processor: Option<&dyn LogitsProcessor>,
    ) -> Result<Generated, ModelError> {
        let k = opts.beam_size;
        let prompt = opts.prompt.clone().unwrap_or_else(|| self.spec.start_ids.clone());
        let enc = self.enc_values(&state.select(&vec![0; k]))?;
        let mut past = Past::default();
        let mut beams: Vec<(Vec<u32>, f32)> =
            (0..k).map(|i| (prompt.clone(), if i == 0 { 0.0 } else { f32::NEG_INFINITY })).collect();
        let mut finished: Vec<(Vec<u32>, f32, f32, bool)> = Vec::new(); // tokens, normalised score, raw, ended
        let mut feed: Vec<Vec<u32>> = vec![prompt.clone(); k];
        let norm = |len: usize, s: f32| s / (len.max(1) as f32).powf(opts.length_penalty);
        for step in 0..opts.max_new_tokens {
            let logits = self.step(&enc, &mut past, &feed)?;
            let mut cands: Vec<(f32, usize, u32)> = Vec::new();
            for (r, mut l) in logits.into_iter().enumerate() {
                if beams[r].1 == f32::NEG_INFINITY {
                    continue;
                }
                self.prepare(&beams[r].0, prompt.len(), opts, processor, &mut l);
                let lp = log_softmax(&l);
                for (tok, s) in top_k(&lp, 2 * k) {
                    cands.push((beams[r].1 + s, r, tok));
                }
            }
            cands.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut next: Vec<(Vec<u32>, f32)> = Vec::new();
            let mut origin = Vec::new();
            for (rank, &(score, r, tok)) in cands.iter().enumerate() {
                if tok == self.spec.eos_id {
                    if rank < k {
                        let toks = beams[r].0[prompt.len()..].to_vec();
                        finished.push((toks.clone(), norm(toks.len() + 1, score), score, true));
                    }
                    continue;
                }
                let mut seq = beams[r].0.clone();
                seq.push(tok);
                next.push((seq, score));
                origin.push(r);
                if next.len() == k {
                    break;
                }
            }
            let best_alive = next.first().map(|b| norm(b.0.len() - prompt.len(), b.1)).unwrap_or(f32::NEG_INFINITY);
            let best_done = finished.iter().map(|f| f.1).fold(f32::NEG_INFINITY, f32::max);
            if next.is_empty() || (finished.len() >= k && best_done >= best_alive) {
                break;
            }
            if step + 1 == opts.max_new_tokens {
                // The length cap: alive hypotheses compete with the ended ones.
                for (seq, score) in next.iter().filter(|b| b.1.is_finite()) {
                    let toks = seq[prompt.len()..].to_vec();
                    finished.push((toks.clone(), norm(toks.len(), *score), *score, false));
                }
                break;
            }
            while next.len() < k {
                next.push((next[0].0.clone(), f32::NEG_INFINITY));
                origin.push(origin[0]);
            }
            past.reorder(&origin).map_err(|e| ModelError::session(&self.id, e))?;
            // Every beam holds at least the start token it grew from.
            feed = next.iter().map(|(s, _)| vec![s.last().copied().unwrap_or_default()]).collect();
            beams = next;
        }
        let best = finished
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .ok_or_else(|| ModelError::output(&self.id, "beam search produced nothing"))?;
        Ok(Generated { tokens: best.0, log_prob: best.2, ended: best.3 })
    }
}

/// The decoder's self-attention cache between steps.
#[derive(Default)]
pub struct Past {
    values: Vec<DynValue>,
    len: usize,
}

impl Past {
    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Keep rows in the order `origin` (beam search).
    fn reorder(&mut self, origin: &[usize]) -> ort::Result<()> {
        if origin.iter().enumerate().all(|(i, &o)| i == o) {
            return Ok(());
        }
        for v in &mut self.values {
            let (shape, data) = v.try_extract_tensor::<f32>()?;
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let a = gather(&Array::F32(shape.clone(), data.to_vec()), origin);
            if let Array::F32(s, d) = a {
                *v = Tensor::from_array((s, d))?.into_dyn();
            }
        }
        Ok(())
    }
}

pub(crate) fn log_softmax(l: &[f32]) -> Vec<f32> {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = l.iter().map(|x| (x - max).exp()).sum();
    let lse = max + sum.ln();
    l.iter().map(|x| x - lse).collect()
}

pub(crate) fn argmax(l: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &x) in l.iter().enumerate() {
        if x > best.1 {
            best = (i as u32, x);
        }
    }
    best
}

fn top_k(l: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> =
        l.iter().enumerate().filter(|(_, x)| x.is_finite()).map(|(i, &x)| (i as u32, x)).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return idx;
    }
    idx.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
    idx.truncate(k);
    idx.sort_by(|a, b| b.1.total_cmp(&a.1));
    idx
}
