//! Queries over an indexed table, shared by the CLI (`medley search`/`similar`) and the
//! server (`/v1/search`, `/v1/similar/{id}`) so both rank and filter the same way and return
//! the same hits.

use std::sync::Arc;

use medley_models::{ModelError, ModelHome, ModelSpec, Runtime, TextEncoder};
use medley_store::{
    CLAP_COLUMN, CLIP_COLUMN, ClipSpace, LEGACY_SEARCH_COLUMN, SEARCH_COLUMN, SearchHit, Store, StoreError,
};

/// An item's vectors by column, in the order `similar` prefers them: visual, audio, bridge.
pub type ItemVectorSet = [(&'static str, Option<Vec<f32>>); 3];

/// The vector columns `similar` can compare by.
pub const SIMILAR_COLUMNS: [&str; 3] = ["visual", "audio", "bridge"];

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("encoding the query: {0}")]
    Model(#[from] ModelError),
    /// The item has no vector of the wanted kind (for example `visual` for an audio file).
    #[error("{item} has no {wanted} vector to compare")]
    NoVector { item: String, wanted: String },
    /// `music-for` of an item without labels in the text space (no pictures, no tags).
    #[error("{item} has no labels in the text space (no pictures?) to match music with")]
    NoLabels { item: String },
    #[error("encoding the query: the text model returned no vector")]
    NoQueryVector,
}

/// What embeds a text query: the pipeline's text model (the `semantic` space) and, for a table
/// with a `clip` or `clap` column, the text tower of the dual encoder that filled it.
pub struct QueryEncoders {
    pub text: Arc<TextEncoder>,
    pub clip: Option<Arc<TextEncoder>>,
    pub clap: Option<Arc<TextEncoder>>,
}

/// A query in the dual encoders' spaces: the image-text one (`clip`, pictures) and the
/// audio-text one (`clap`, sounds), where the table has them.
#[derive(Debug, Clone, Default)]
pub struct DualQuery {
    pub clip: Option<Vec<f32>>,
    pub clap: Option<Vec<f32>>,
}

impl QueryEncoders {
    /// MiniLM, and the text towers of the models that filled `store`'s `clip` and `clap`
    /// columns. Sessions run on the CPU: one query is one short call.
    pub fn load(home: &ModelHome, store: &Store) -> Result<Self, ModelError> {
        Self::for_store(Self::text_model(home)?, home, store)
    }

    /// `text` with the text towers of the models that filled `store`'s `clip` and `clap`.
    pub fn for_store(text: impl Into<Arc<TextEncoder>>, home: &ModelHome, store: &Store) -> Result<Self, ModelError> {
        Ok(Self {
            text: text.into(),
            clip: Self::tower(home, store.clip_space())?,
            clap: Self::tower(home, store.clap_space())?,
        })
    }

    /// The text tower of the model that filled `store`'s `clap` column, if it has one.
    pub fn clap_tower(home: &ModelHome, store: &Store) -> Result<Option<Arc<TextEncoder>>, ModelError> {
        Self::tower(home, store.clap_space())
    }

    fn tower(home: &ModelHome, space: Option<&ClipSpace>) -> Result<Option<Arc<TextEncoder>>, ModelError> {
        match space {
            Some(space) => Ok(Some(Arc::new(TextEncoder::from_spec(
                &Runtime::load(home)?,
                &ModelSpec::load(home, &space.model)?,
            )?))),
            None => Ok(None),
        }
    }

    /// The pipeline's text model alone, for queries (loadable while the table opens).
    pub fn text_model(home: &ModelHome) -> Result<TextEncoder, ModelError> {
        TextEncoder::for_queries(&Runtime::load(home)?, &ModelSpec::load(home, "minilm-l6")?)
    }

    /// The query's vectors: in the text model's space, and in the dual encoders' spaces loaded.
    pub fn encode(&self, text: &str) -> Result<(Vec<f32>, DualQuery), QueryError> {
        let clip = self.clip.as_ref().map(|c| encode_query(c, text)).transpose()?;
        let clap = self.clap.as_ref().map(|c| encode_query(c, text)).transpose()?;
        Ok((encode_query(&self.text, text)?, DualQuery { clip, clap }))
    }
}

/// The text-space vector of one query.
pub(crate) fn encode_query(encoder: &TextEncoder, text: &str) -> Result<Vec<f32>, QueryError> {
    encoder.encode(&[text])?.into_iter().next().ok_or(QueryError::NoQueryVector)
}

/// The short form of an item id shown to people: its first 12 characters (the whole id when
/// shorter, so a hit read from a foreign table never panics on slicing).
pub fn short_id(content_hash: &str) -> &str {
    match content_hash.char_indices().nth(SHORT_ID_CHARS) {
        Some((end, _)) => &content_hash[..end],
        None => content_hash,
    }
}

const SHORT_ID_CHARS: usize = 12;

/// An id quoted for an SQL filter (`'` doubled), so an id from a request cannot change the filter.
pub(crate) fn sql_quote(id: &str) -> String {
    format!("'{}'", id.replace('\'', "''"))
}

/// The content hash and stored vectors of the item `id` (a content hash or a unique prefix of
/// at least 6 hex characters); `None` when no item has that id.
pub async fn resolve_vectors(store: &Store, id: &str) -> Result<Option<(String, ItemVectorSet)>, QueryError> {
    let Some(hash) = store.resolve_item(id).await? else { return Ok(None) };
    let vectors = stored_vectors(store, &hash).await?;
    Ok(Some((hash, vectors)))
}

/// The stored vectors of one indexed item, by content hash.
pub async fn stored_vectors(store: &Store, content_hash: &str) -> Result<ItemVectorSet, StoreError> {
    let mut found = store.vectors(&SIMILAR_COLUMNS, content_hash).await?.into_iter();
    Ok(SIMILAR_COLUMNS.map(|c| (c, found.next().flatten())))
}

/// Items whose content best matches `text`, by the `semantic` vector (the text space fused
/// from every bridge and text), fused with the ranking in the image-text space when the table
/// has a `clip` column (see [`search_spaces`]).
pub async fn search_text(
    store: &Store,
    encoders: &QueryEncoders,
    text: &str,
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<SearchHit>, QueryError> {
    let (semantic, dual) = encoders.encode(text)?;
    search_spaces(store, &semantic, &dual, k, filter).await
}

/// Rank by the `semantic` vector and, given query vectors in the dual encoders' spaces and a
/// table with their columns, also by `clip` and `clap`; the rankings fused by reciprocal rank.
/// CLIP only sees pictures and CLAP only sounds (an item without either has no such vector),
/// and the text space is weak where they are strong (what a picture shows beyond 1,000 ImageNet
/// names, what a sound is beyond 521 AudioSet classes), so all count.
pub async fn search_spaces(
    store: &Store,
    semantic: &[f32],
    dual: &DualQuery,
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<SearchHit>, QueryError> {
    Ranked::Items.fused(store, semantic, dual, k, filter).await
}

/// Reciprocal rank fusion: each hit scores the sum over the lists of 1 / (60 + rank).
pub(crate) fn fuse_ranks(lists: impl IntoIterator<Item = Vec<SearchHit>>, k: usize) -> Vec<SearchHit> {
    let mut fused: Vec<SearchHit> = Vec::new();
    for list in lists {
        for (rank, hit) in list.into_iter().enumerate() {
            let rrf = 1.0 / (RRF_K + rank as f32 + 1.0);
            // A segment is its item's hash and its position (an item has several).
            let same = |h: &SearchHit| {
                h.content_hash == hit.content_hash && h.span.map(|s| s.segment) == hit.span.map(|s| s.segment)
            };
            match fused.iter_mut().find(|h| same(h)) {
                Some(h) => h.score += rrf,
                None => fused.push(SearchHit { score: rrf, ..hit }),
            }
        }
    }
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused.truncate(k);
    fused
}

/// Items nearest a text-space vector, by `semantic`; a table indexed before `semantic` existed
/// (no such column, or no item with one) is searched by its `bridge` vectors. What
/// [`search_text`] does once the text is embedded (the server embeds texts its own way).
pub async fn search_vector(
    store: &Store,
    query: &[f32],
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<SearchHit>, QueryError> {
    Ranked::Items.text_space(store, query, k, filter).await
}

/// Segments (shots or windows) whose content best matches `text`, by their `semantic`
/// vectors (`bridge` for segments indexed before it existed), fused with their `clip` ranking
/// as [`search_text`] does; each hit carries its time range.
pub async fn search_segments(
    store: &Store,
    encoders: &QueryEncoders,
    text: &str,
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<SearchHit>, QueryError> {
    let (semantic, dual) = encoders.encode(text)?;
    search_segments_spaces(store, &semantic, &dual, k, filter).await
}

/// [`search_spaces`] for segments (which have `clip`, not `clap`).
pub async fn search_segments_spaces(
    store: &Store,
    semantic: &[f32],
    dual: &DualQuery,
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<SearchHit>, QueryError> {
    Ranked::Segments.fused(store, semantic, dual, k, filter).await
}

/// [`search_vector`] for segments.
pub async fn search_segments_vector(
    store: &Store,
    query: &[f32],
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<SearchHit>, QueryError> {
    Ranked::Segments.text_space(store, query, k, filter).await
}

/// What a text search ranks: items (`media`) or their segments.
#[derive(Clone, Copy)]
enum Ranked {
    Items,
    Segments,
}

impl Ranked {
    async fn nearest(
        self,
        store: &Store,
        column: &str,
        query: &[f32],
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        match self {
            Ranked::Items => store.search(column, query, k, filter).await,
            Ranked::Segments => store.search_segments(column, query, k, filter).await,
        }
    }

    /// By `semantic`, or `bridge` in tables from before it.
    async fn text_space(
        self,
        store: &Store,
        query: &[f32],
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<SearchHit>, QueryError> {
        if store.media_has_column(SEARCH_COLUMN).await? {
            let hits = self.nearest(store, SEARCH_COLUMN, query, k, filter).await?;
            if !hits.is_empty() {
                return Ok(hits);
            }
        }
        Ok(self.nearest(store, LEGACY_SEARCH_COLUMN, query, k, filter).await?)
    }

    /// The text-space ranking fused with the `clip` and `clap` ones when there is a query
    /// vector for them and the table has the column.
    async fn fused(
        self,
        store: &Store,
        semantic: &[f32],
        dual: &DualQuery,
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<SearchHit>, QueryError> {
        let clip = dual.clip.as_deref().filter(|_| store.clip_space().is_some());
        let mut clap = dual.clap.as_deref().filter(|_| store.clap_space().is_some());
        if clap.is_some() && matches!(self, Ranked::Segments) && !store.segments_have_column(CLAP_COLUMN).await? {
            clap = None;
        }
        if clip.is_none() && clap.is_none() {
            return self.text_space(store, semantic, k, filter).await;
        }
        // Each list deeper than k, so items ranked well by one and fair by the other surface.
        let depth = (k * 4).max(40);
        let mut lists = Vec::new();
        for (column, query) in [(CLIP_COLUMN, clip), (CLAP_COLUMN, clap)] {
            if let Some(query) = query {
                lists.push(self.nearest(store, column, query, depth, filter).await?);
            }
        }
        lists.push(self.text_space(store, semantic, depth, filter).await?);
        Ok(fuse_ranks(lists, k))
    }
}

/// Hybrid search: the vector ranking of [`search_text`] fused with full-text (BM25) ranking
/// over labels, transcripts and descriptions by reciprocal rank fusion (score = the sum over
/// both lists of 1 / (60 + rank)), so exact words and meaning both count.
pub async fn search_hybrid(
    store: &Store,
    encoders: &QueryEncoders,
    text: &str,
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<SearchHit>, QueryError> {
    // Each list is deeper than k so items ranked well by one list and fair by the other surface.
    let depth = (k * 4).max(40);
    let by_vector = search_text(store, encoders, text, depth, filter).await?;
    let by_words = store.full_text(text, depth, filter).await?;
    Ok(fuse_ranks([by_vector, by_words], k))
}

/// The rank offset of reciprocal rank fusion (Cormack et al. 2009).
const RRF_K: f32 = 60.0;

/// Items most like the item `content_hash` (named `item` in errors), excluding itself, by the
/// column `by` or else the first it has of visual, audio, bridge.
pub async fn similar_items(
    store: &Store,
    item: &str,
    content_hash: &str,
    vectors: ItemVectorSet,
    by: Option<&str>,
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<SearchHit>, QueryError> {
    let Some((column, vector)) =
        vectors.into_iter().filter(|(c, _)| by.is_none_or(|w| w == *c)).find_map(|(c, v)| v.map(|v| (c, v)))
    else {
        return Err(QueryError::NoVector { item: item.into(), wanted: by.unwrap_or("visual or audio").into() });
    };
    let not_self = format!("content_hash != {}", sql_quote(content_hash));
    let filter = match filter {
        Some(f) => format!("({f}) AND {not_self}"),
        None => not_self,
    };
    Ok(store.search(column, &vector, k, Some(&filter)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_never_panic() {
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id(""), "");
        // Multi-byte characters (a foreign table's id) are cut on a character boundary.
        assert_eq!(short_id("ééééééééééééé"), "éééééééééééé");
    }

    #[test]
    fn quoted_ids_stay_one_literal() {
        assert_eq!(sql_quote("ab'cd"), "'ab''cd'");
    }
}
