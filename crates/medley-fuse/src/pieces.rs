//! Sub-pieces of Semantic IDs for ranking models (Singh et al. 2023): prefix N-grams, and
//! pieces from a unigram model (SentencePiece-style) trained over the corpus's SID sequences.

use serde::{Deserialize, Serialize};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::{Model, Trainer};

use crate::{Error, Result};

/// Format tag of a serialised [`SidPieceModel`].
pub const PIECES_FORMAT: &str = "medley-sid-unigram/1";

/// The prefixes of an ID's codes: `["l1:12", "l1l2:12-7", "l1l2l3:12-7-201"]`.
pub fn prefix_ngrams(codes: &[u16]) -> Vec<String> {
    let mut out = Vec::with_capacity(codes.len());
    let (mut head, mut body) = (String::new(), String::new());
    for (l, c) in codes.iter().enumerate() {
        head.push_str(&format!("l{}", l + 1));
        if l > 0 {
            body.push('-');
        }
        body.push_str(&c.to_string());
        out.push(format!("{head}:{body}"));
    }
    out
}

/// Code `c` at level `l` (0-based) as one character of Unicode's plane-15 private use area, so a
/// SID is a word of L characters and the unigram trainer sees level-aware symbols.
fn symbol(l: usize, c: u16, codes: usize) -> Result<char> {
    let v = 0xF0000 + l * codes + c as usize;
    if v > 0xFFFFD || c as usize >= codes {
        return Err(Error::Config(format!("{} codes at level {} do not fit the symbol range", codes, l + 1)));
    }
    char::from_u32(v as u32).ok_or_else(|| Error::Config("bad symbol".into()))
}

fn unsymbol(ch: char, codes: usize) -> (usize, u16) {
    let v = ch as usize - 0xF0000;
    (v / codes, (v % codes) as u16)
}

/// A unigram model over SID sequences.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SidPieceModel {
    pub format: String,
    pub levels: usize,
    pub codes: usize,
    /// The `tokenizers` unigram model, its JSON as a string.
    model: String,
    #[serde(skip)]
    unigram: Option<Unigram>,
}

impl SidPieceModel {
    /// Train over the corpus's IDs (`levels` codes each, all below `codes`). `vocab_size`
    /// includes the single-code pieces, which are always kept, so every ID can be tokenised.
    pub fn train<'a>(
        ids: impl IntoIterator<Item = &'a [u16]>,
        levels: usize,
        codes: usize,
        vocab_size: u32,
    ) -> Result<Self> {
        let words: Vec<String> = ids
            .into_iter()
            .map(|cs| cs.iter().enumerate().map(|(l, &c)| symbol(l, c, codes)).collect::<Result<String>>())
            .collect::<Result<_>>()?;
        if words.is_empty() {
            return Err(Error::Config("no IDs to train pieces on".into()));
        }
        let mut alphabet = std::collections::HashSet::new();
        for l in 0..levels {
            for c in 0..codes {
                alphabet.insert(symbol(l, c as u16, codes)?);
            }
        }
        let mut trainer = UnigramTrainer::builder()
            .show_progress(false)
            .vocab_size(vocab_size.max((levels * codes) as u32 + 2))
            .initial_alphabet(alphabet.into_iter().collect())
            .unk_token(Some("<unk>".into()))
            .max_piece_length(levels)
            .build()
            .map_err(|e| Error::Pieces(e.to_string()))?;
        trainer.feed(words.iter(), |s| Ok(vec![s.to_owned()])).map_err(|e| Error::Pieces(e.to_string()))?;
        let mut unigram = Unigram::default();
        trainer.train(&mut unigram).map_err(|e| Error::Pieces(e.to_string()))?;
        let model = serde_json::to_string(&unigram)?;
        Ok(SidPieceModel { format: PIECES_FORMAT.into(), levels, codes, model, unigram: Some(unigram) })
    }

    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(s: &str) -> Result<Self> {
        let mut m: SidPieceModel = serde_json::from_str(s)?;
        if m.format != PIECES_FORMAT {
            return Err(Error::Format(format!(
                "piece model format {:?}, this build reads {PIECES_FORMAT:?}",
                m.format
            )));
        }
        m.unigram = Some(serde_json::from_str(&m.model)?);
        Ok(m)
    }

    /// Number of pieces in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.unigram.as_ref().map_or(0, |u| u.get_vocab_size())
    }

    /// The pieces of one ID, readable: `"l1:12-7"` is a piece covering levels 1 and 2 with
    /// codes 12 and 7; `"l3:201"` a single code at level 3.
    pub fn pieces(&self, codes: &[u16]) -> Result<Vec<String>> {
        let u = self.unigram.as_ref().ok_or_else(|| Error::Pieces("model not loaded".into()))?;
        let word: String = codes.iter().enumerate().map(|(l, &c)| symbol(l, c, self.codes)).collect::<Result<_>>()?;
        let toks = u.encode(&word).map_err(|e| Error::Pieces(e.to_string()))?;
        Ok(toks
            .iter()
            .map(|t| {
                if t.chars().any(|ch| (ch as u32) < 0xF0000) {
                    return t.clone();
                }
                let parts: Vec<(usize, u16)> = t.chars().map(|ch| unsymbol(ch, self.codes)).collect();
                let body: Vec<String> = parts.iter().map(|p| p.1.to_string()).collect();
                format!("l{}:{}", parts.first().map_or(0, |p| p.0 + 1), body.join("-"))
            })
            .collect())
    }
}
