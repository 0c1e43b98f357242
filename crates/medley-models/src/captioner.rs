use std::sync::Mutex;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

use crate::image::preprocess;
use crate::runtime::Array;
use crate::seq2seq::{EncoderState, GenerateOptions, Generated, Seq2Seq};
use crate::spec::{ImageSpec, ModelSpec};
use crate::{ModelError, ModelHome, Runtime};

/// An image captioner (VisionEncoderDecoder / BLIP-style export): RGB images in, text out, on
/// the same encoder-decoder loop as Whisper.
pub struct ImageCaptioner {
    s2s: Seq2Seq,
    image: ImageSpec,
    /// An optimum export's decoder (encoder states under another name, a merged decoder's
    /// `use_cache_branch`), which [`Seq2Seq`]'s step does not feed: decoded here, greedily.
    optimum: Option<Mutex<Session>>,
}

impl ImageCaptioner {
    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        let s2s = Seq2Seq::from_spec(rt, spec)?;
        let image = s2s.spec().image.clone().ok_or_else(|| ModelError::Spec {
            path: spec.dir.join("model.toml"),
            message: "captioner has no [seq2seq.image] section".into(),
        })?;
        let s = s2s.spec();
        let optimum = if s.decoder_encoder_inputs.is_empty() && s.use_cache_branch.is_none() {
            None
        } else {
            Some(rt.session(&spec.id, &spec.file(&s.decoder)?)?)
        };
        Ok(Self { s2s, image, optimum })
    }

    pub fn id(&self) -> &str {
        self.s2s.id()
    }
    pub fn input_size(&self) -> u32 {
        self.image.size
    }
    pub fn seq2seq(&self) -> &Seq2Seq {
        &self.s2s
    }

    /// Generate token ids for packed RGB24 images of `input_size()` squared pixels.
    pub fn generate(&self, images: &[&[u8]], opts: &GenerateOptions) -> Result<Vec<Generated>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.image.size as usize;
        let x = Array::F32(vec![images.len(), 3, n, n], preprocess(&self.image, self.id(), images)?);
        let state = self.s2s.encode(&x)?;
        match &self.optimum {
            Some(decoder) => self.greedy_optimum(decoder, &state, opts),
            None => self.s2s.generate(&state, opts, None),
        }
    }

    /// Greedy decoding with an optimum decoder: the encoder's outputs under the names the
    /// decoder takes them, an empty self-attention cache and `use_cache_branch = false` on the
    /// first step, the returned cache and `true` after. (Beam search is not offered here.)
    fn greedy_optimum(
        &self,
        decoder: &Mutex<Session>,
        state: &EncoderState,
        opts: &GenerateOptions,
    ) -> Result<Vec<Generated>, ModelError> {
        let s = self.s2s.spec();
        let id = self.id();
        let err = |e: ort::Error| ModelError::session(id, e);
        let rows = state.batch();
        let mut enc: Vec<(String, Array)> = Vec::new();
        for (i, name) in s.encoder_outputs.iter().enumerate() {
            let value =
                state.get(name).ok_or_else(|| ModelError::output(id, format!("encoder has no output {name}")))?;
            enc.push((s.decoder_encoder_inputs.get(i).unwrap_or(name).clone(), value.clone()));
        }
        let prompt = opts.prompt.clone().unwrap_or_else(|| s.start_ids.clone());
        let mut feed: Vec<Vec<u32>> = vec![prompt.clone(); rows];
        let mut past: Vec<DynValue> = Vec::new();
        let mut out = vec![Generated { tokens: Vec::new(), log_prob: 0.0, ended: false }; rows];
        let mut session = crate::runtime::lock(decoder);
        for _ in 0..opts.max_new_tokens {
            let t = feed[0].len();
            let ids: Vec<i64> = feed.iter().flat_map(|r| r.iter().map(|&x| i64::from(x))).collect();
            let mut inputs: Vec<(String, SessionInputValue<'_>)> =
                vec![(s.decoder_input_ids.clone(), Tensor::from_array(([rows, t], ids)).map_err(err)?.into())];
            for (name, a) in &enc {
                let v = match a {
                    Array::F32(sh, d) => Tensor::from_array((sh.clone(), d.clone())).map(|t| t.into_dyn()),
                    Array::I64(sh, d) => Tensor::from_array((sh.clone(), d.clone())).map(|t| t.into_dyn()),
                    Array::I32(sh, d) => Tensor::from_array((sh.clone(), d.clone())).map(|t| t.into_dyn()),
                };
                inputs.push((name.clone(), v.map_err(err)?.into()));
            }
            let first = past.is_empty();
            if first {
                for name in &s.past_inputs {
                    let empty = Tensor::from_array(([rows, s.num_heads, 0, s.head_dim], Vec::<f32>::new()));
                    inputs.push((name.clone(), empty.map_err(err)?.into()));
                }
            } else {
                for (name, v) in s.past_inputs.iter().zip(std::mem::take(&mut past)) {
                    inputs.push((name.clone(), v.into()));
                }
            }
            if let Some(name) = &s.use_cache_branch {
                inputs.push((name.clone(), Tensor::from_array(([1usize], vec![!first])).map_err(err)?.into()));
            }
            let mut outputs = session.run(inputs).map_err(err)?;
            let logits = outputs.get(&s.logits).ok_or_else(|| ModelError::output(id, "no logits"))?;
            let (shape, data) = logits.try_extract_tensor::<f32>().map_err(err)?;
            let v = *shape.last().unwrap_or(&0) as usize;
            let steps = data.len() / (rows * v).max(1);
            for r in 0..rows {
                if out[r].ended {
                    feed[r] = vec![s.eos_id];
                    continue;
                }
                let mut l = data[(r * steps + steps - 1) * v..(r * steps + steps) * v].to_vec();
                for &x in s.suppress_ids.iter().chain(&opts.suppress) {
                    if let Some(x) = l.get_mut(x as usize) {
                        *x = f32::NEG_INFINITY;
                    }
                }
                let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = max + l.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
                let (best, score) = l
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, &x)| (i as u32, x - lse))
                    .unwrap_or((s.eos_id, 0.0));
                out[r].log_prob += score;
                feed[r] = vec![best];
                if best == s.eos_id {
                    out[r].ended = true;
                } else {
                    out[r].tokens.push(best);
                }
            }
            for name in &s.present_outputs {
                past.push(outputs.remove(name).ok_or_else(|| ModelError::output(id, format!("no output {name}")))?);
            }
            if out.iter().all(|g| g.ended) {
                break;
            }
        }
        Ok(out)
    }

    /// One caption per image.
    pub fn caption(&self, images: &[&[u8]], opts: &GenerateOptions) -> Result<Vec<String>, ModelError> {
        self.generate(images, opts)?.iter().map(|g| self.s2s.decode(&g.tokens)).collect()
    }

    /// Caption one packed RGB24 picture of `size` squared pixels (any size: it is resized
    /// bilinearly to the captioner's input first).
    pub fn caption_square(&self, rgb: &[u8], size: u32, opts: &GenerateOptions) -> Result<String, ModelError> {
        let resized = crate::image::resize_square(rgb, size as usize, self.image.size as usize);
        Ok(self.caption(&[&resized], opts)?.remove(0))
    }
}
