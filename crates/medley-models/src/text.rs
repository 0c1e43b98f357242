use std::sync::Mutex;

use ort::{session::Session, value::TensorRef};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::{ModelError, ModelHome, Runtime, runtime::rows};

/// A sentence encoder (all-MiniLM-L6-v2: pooling and L2 norm inside the graph), 384-d.
pub struct TextEncoder {
    id: String,
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    dim: usize,
}

impl TextEncoder {
    pub fn minilm(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        let id = "minilm-l6";
        let dir = home.model_dir(id)?;
        let tok_err = |e: &dyn std::fmt::Display| ModelError::Tokenizer { model: id.to_string(), message: e.to_string() };
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| tok_err(&e))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: 256, ..Default::default() }))
            .map_err(|e| tok_err(&e))?;
        let session = rt.session(id, &dir.join("model.onnx"))?;
        Ok(Self { id: id.to_string(), session, tokenizer, dim: 384 })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embed texts; each output is unit length.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Tokenizer { model: self.id.clone(), message: e.to_string() })?;
        let seq = enc[0].get_ids().len();
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<i64> {
            enc.iter().flat_map(|e| f(e).iter().map(|&x| i64::from(x))).collect()
        };
        let ids = flat(&|e| e.get_ids());
        let mask = flat(&|e| e.get_attention_mask());
        let types = flat(&|e| e.get_type_ids());
        self.run(&ids, &mask, &types, texts.len(), seq)
    }

    /// Run on token ids directly (also used by the golden checks).
    pub fn run(&self, ids: &[i64], mask: &[i64], types: &[i64], batch: usize, seq: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        fn t<'a>(d: &'a [i64], shape: [usize; 2], id: &str) -> Result<TensorRef<'a, i64>, ModelError> {
            TensorRef::from_array_view((shape, d)).map_err(|e| ModelError::session(id, e))
        }
        let shape = [batch, seq];
        let inputs = ort::inputs![
            "input_ids" => t(ids, shape, &self.id)?,
            "attention_mask" => t(mask, shape, &self.id)?,
            "token_type_ids" => t(types, shape, &self.id)?,
        ];
        let mut session = self.session.lock().expect("session lock");
        let outputs = session
            .run(inputs)
            .map_err(|e| ModelError::session(&self.id, e))?;
        rows(&outputs, "sentence_embedding", &self.id, self.dim)
    }
}
