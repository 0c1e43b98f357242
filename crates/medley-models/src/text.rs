use std::sync::Mutex;

use ort::{session::Session, value::TensorRef};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::spec::{ModelSpec, TextSpec};
use crate::{ModelError, ModelHome, Runtime, l2_normalize, runtime::rows};

/// A text encoder built from a model's `[text]` section, tokenising with the `tokenizers`
/// crate: all-MiniLM-L6-v2 (pooling and L2 norm inside the graph), a CLIP/CLAP text tower,
/// Universal Sentence Encoder multilingual (ragged ids).
pub struct TextEncoder {
    id: String,
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    spec: TextSpec,
}

impl TextEncoder {
    pub fn minilm(rt: &Runtime, home: &ModelHome) -> Result<Self, ModelError> {
        Self::load(rt, home, "minilm-l6")
    }

    pub fn load(rt: &Runtime, home: &ModelHome, id: &str) -> Result<Self, ModelError> {
        Self::from_spec(rt, &ModelSpec::load(home, id)?)
    }

    pub fn from_spec(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        Self::open(rt, spec, false)
    }

    /// The encoder for query texts (search): the graph's int8 query variant on the CPU where
    /// the model has one ([`crate::GraphSpec::queries`]), else the same graph as
    /// [`TextEncoder::from_spec`]. Its vectors are in the same space as the float graph's.
    pub fn for_queries(rt: &Runtime, spec: &ModelSpec) -> Result<Self, ModelError> {
        Self::open(rt, spec, true)
    }

    fn open(rt: &Runtime, spec: &ModelSpec, queries: bool) -> Result<Self, ModelError> {
        let section = spec.section(&spec.text, "text")?.clone();
        let id = spec.id.clone();
        let tok_err = |e: &dyn std::fmt::Display| ModelError::Tokenizer { model: id.clone(), message: e.to_string() };
        let mut tokenizer = Tokenizer::from_file(spec.file(&section.tokenizer)?).map_err(|e| tok_err(&e))?;
        if section.layout.as_deref() == Some("ragged") {
            tokenizer.with_padding(None);
        } else {
            // Pad each batch to its longest text, keeping the tokenizer's pad token. A fixed
            // length from tokenizer.json (MiniLM's says 128) would be shorter than the
            // truncation length below, and a batch holding a longer text would be ragged.
            // SigLIP pads every text to the full length (`padding = "max_length"`).
            let mut params = tokenizer.get_padding().cloned().unwrap_or_default();
            if let (Some(token), Some(id)) = (&section.pad_token, section.pad_id) {
                params.pad_token = token.clone();
                params.pad_id = id;
            }
            let strategy = match section.padding.as_deref() {
                Some("max_length") => PaddingStrategy::Fixed(section.max_length),
                _ => PaddingStrategy::BatchLongest,
            };
            tokenizer.with_padding(Some(PaddingParams { strategy, ..params }));
        }
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: section.max_length, ..Default::default() }))
            .map_err(|e| tok_err(&e))?;
        let path = spec.file(&section.file)?;
        let session = if queries { rt.query_session(&spec.id, &path)? } else { rt.session(&spec.id, &path)? };
        Ok(Self { id: spec.id.clone(), session, tokenizer, spec: section })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn dim(&self) -> usize {
        self.spec.dim
    }
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Embed texts (unit length when the model or its spec normalises).
    ///
    /// A batch padded to its longest text spends the padding's compute too: texts of 5 to 12
    /// tokens cost as if all had 12. So texts are run in groups of near lengths, each padded
    /// to its own longest ([`length_groups`]); a text's vector is the same whatever its group.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.len() < 2 || self.spec.layout.as_deref() == Some("ragged") || self.fixed_length() {
            return self.encode_together(texts);
        }
        // Tokenised here and again per group: far cheaper than a padded token through the
        // model (tokenising was 0.3% of a `bench serve` profile), and it keeps padding where the
        // tokenizer puts it (left or right).
        let lengths: Vec<usize> = texts
            .iter()
            .map(|t| {
                self.tokenizer.encode(*t, true).map(|e| e.get_attention_mask().iter().filter(|&&m| m == 1).count())
            })
            .collect::<Result<_, _>>()
            .map_err(|e| ModelError::Tokenizer { model: self.id.clone(), message: e.to_string() })?;
        let groups = length_groups(&lengths);
        if groups.len() == 1 {
            return self.encode_together(texts);
        }
        let mut out = vec![Vec::new(); texts.len()];
        for group in groups {
            let members: Vec<&str> = group.iter().map(|&i| texts[i]).collect();
            for (i, v) in group.into_iter().zip(self.encode_together(&members)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Whether every text is padded to the full length (SigLIP), so grouping saves nothing.
    fn fixed_length(&self) -> bool {
        matches!(self.tokenizer.get_padding(), Some(p) if matches!(p.strategy, PaddingStrategy::Fixed(_)))
    }

    /// Embed texts in one model call, padded to the longest.
    fn encode_together(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Tokenizer { model: self.id.clone(), message: e.to_string() })?;
        if self.spec.layout.as_deref() == Some("ragged") {
            let mut ids = Vec::new();
            let mut splits = vec![0i64];
            for e in &enc {
                ids.extend(e.get_ids().iter().map(|&x| x as i32));
                splits.push(ids.len() as i64);
            }
            return self.run_ragged(&ids, &splits);
        }
        let seq = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        if let Some(short) = enc.iter().position(|e| e.get_ids().len() != seq) {
            return Err(ModelError::Tokenizer {
                model: self.id.clone(),
                message: format!("text {short} was not padded to the batch's {seq} tokens"),
            });
        }
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<i64> {
            enc.iter().flat_map(|e| f(e).iter().map(|&x| i64::from(x))).collect()
        };
        let ids = flat(&|e| e.get_ids());
        let mask = flat(&|e| e.get_attention_mask());
        let types = flat(&|e| e.get_type_ids());
        self.run(&ids, &mask, &types, texts.len(), seq)
    }

    /// Run on padded token ids directly (also used by the golden checks). Inputs the graph
    /// does not take (per the spec) are ignored.
    pub fn run(
        &self,
        ids: &[i64],
        mask: &[i64],
        types: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let shape = [batch, seq];
        fn t<'a>(d: &'a [i64], shape: [usize; 2], id: &str) -> Result<TensorRef<'a, i64>, ModelError> {
            TensorRef::from_array_view((shape, d)).map_err(|e| ModelError::input(id, e))
        }
        let mut inputs = ort::inputs![self.spec.input_ids.as_str() => t(ids, shape, &self.id)?];
        if let Some(name) = &self.spec.attention_mask {
            inputs.push((name.as_str().into(), t(mask, shape, &self.id)?.into()));
        }
        if let Some(name) = &self.spec.token_type_ids {
            inputs.push((name.as_str().into(), t(types, shape, &self.id)?.into()));
        }
        inputs.extend(crate::spec::fixed_values(&self.spec.fixed_inputs, &self.id)?);
        self.embed(inputs)
    }

    /// Run on ragged ids: all texts' ids in one flat i32 list, `row_splits[b]..row_splits[b+1]`
    /// delimiting text `b` (Universal Sentence Encoder's interface).
    pub fn run_ragged(&self, ids: &[i32], row_splits: &[i64]) -> Result<Vec<Vec<f32>>, ModelError> {
        let splits_name = self.spec.row_splits.as_deref().unwrap_or("row_splits");
        let ids_t = TensorRef::from_array_view(([ids.len()], ids)).map_err(|e| ModelError::input(&self.id, e))?;
        let splits_t =
            TensorRef::from_array_view(([row_splits.len()], row_splits)).map_err(|e| ModelError::input(&self.id, e))?;
        let inputs = ort::inputs![self.spec.input_ids.as_str() => ids_t, splits_name => splits_t];
        self.embed(inputs)
    }

    /// Run the session on prepared inputs and read (and, if the spec says so, normalise) the
    /// embedding rows: shared by the padded and the ragged input layouts.
    fn embed(
        &self,
        inputs: Vec<(std::borrow::Cow<'_, str>, ort::session::SessionInputValue<'_>)>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        // A panic elsewhere while holding the lock leaves the session itself intact.
        let mut session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session.run(inputs).map_err(|e| ModelError::session(&self.id, e))?;
        let mut out = rows(&outputs, &self.spec.embedding, &self.id, self.spec.dim)?;
        if self.spec.normalize {
            out.iter_mut().for_each(|e| l2_normalize(e));
        }
        Ok(out)
    }
}

/// What one more model call costs beside its tokens, in tokens: the per-call work (some
/// hundred kernels launched) and the small matrices of a small group. Measured on MiniLM with
/// search-like texts of 4 to 12 tokens: 8 to 48 made no difference beyond the VM's noise.
const CALL_COST_TOKENS: usize = 24;

/// Texts (by token count) in groups to run one call each: indices grouped by near length,
/// chosen to minimise the tokens run, padding included, plus [`CALL_COST_TOKENS`] per call.
/// Groups are in increasing length; every index is in exactly one.
pub(crate) fn length_groups(lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let n = order.len();
    // Groups are runs of the sorted order, cut only where the length changes (cutting between
    // equal lengths adds a call and saves no padding): a few hundred places at most, whatever n.
    let cuts: Vec<usize> =
        (0..=n).filter(|&j| j == 0 || j == n || lengths[order[j]] != lengths[order[j - 1]]).collect();
    // best[b]: least cost of the texts before cuts[b]; from[b]: where its last group starts.
    let (mut best, mut from) = (vec![0usize; cuts.len()], vec![0usize; cuts.len()]);
    for b in 1..cuts.len() {
        let longest = lengths[order[cuts[b] - 1]];
        (best[b], from[b]) =
            (0..b).map(|a| (best[a] + (cuts[b] - cuts[a]) * longest + CALL_COST_TOKENS, a)).min().unwrap_or((0, 0));
    }
    let mut groups = Vec::new();
    let mut b = cuts.len() - 1;
    while b > 0 {
        groups.push(order[cuts[from[b]]..cuts[b]].to_vec());
        b = from[b];
    }
    groups.reverse();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_groups_cover_every_text_once_and_cut_only_where_padding_costs_more_than_a_call() {
        // Same lengths: one call.
        assert_eq!(length_groups(&[7, 7, 7]), vec![vec![0, 1, 2]]);
        // One long text among short ones: alone, rather than padding 40 short texts to 200.
        let mut lengths = vec![8; 40];
        lengths.push(200);
        let groups = length_groups(&lengths);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1], vec![40]);
        // Near lengths stay together: 1 token of padding each is cheaper than another call.
        assert_eq!(length_groups(&[9, 8, 9, 8]).len(), 1);
        let mut seen: Vec<usize> = length_groups(&[5, 30, 12, 5, 60, 31, 12]).concat();
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert!(length_groups(&[]).is_empty());
        // Many texts: equal lengths are never split, and the search is over distinct lengths.
        let many: Vec<usize> = (0..20_000).map(|i| 4 + i % 300).collect();
        let groups = length_groups(&many);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 20_000);
        let mut group_of_length = std::collections::HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            for &i in group {
                assert_eq!(*group_of_length.entry(many[i]).or_insert(g), g, "length {} split", many[i]);
            }
        }
    }
}
