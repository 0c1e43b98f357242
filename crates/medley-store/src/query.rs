//! Reads: counts, the items already indexed, failures, and searches (nearest neighbours on a
//! vector column of `media` or `segments`, full-text BM25 over `media`).

use std::collections::HashMap;

use lancedb::query::{QueryBase, Select};
use lancedb::{DistanceType, Table};

use crate::StoreError;
use crate::indexes::{FTS_COLUMNS, SEARCH_NPROBES, SEARCH_REFINE_FACTOR};
use crate::open::Store;
use crate::readers::{LABELS_TYPE, Source, read_hits};
use crate::rows::{Label, SearchHit};
use crate::schema::{FAILURES_TABLE, MEDIA_TABLE, SEGMENTS_TABLE};

/// A SQL string literal for a filter: quoted, with `'` doubled, so a value cannot change it.
pub(crate) fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Store {
    pub async fn count_media(&self) -> Result<usize, StoreError> {
        self.media.count_rows(None).await.map_err(|e| self.lance(e))
    }

    pub async fn count_failures(&self) -> Result<usize, StoreError> {
        self.failures.count_rows(None).await.map_err(|e| self.lance(e))
    }

    pub async fn count_segments(&self) -> Result<usize, StoreError> {
        self.segments.count_rows(None).await.map_err(|e| self.lance(e))
    }

    /// Where `table`'s columns are read from, for typed errors.
    pub(crate) fn source<'a>(&'a self, table: &'a str) -> Source<'a> {
        Source::new(&self.uri, table)
    }

    /// Content hashes already in `media`, with the models that indexed each, so a re-run
    /// skips items already done by the same models before decoding them.
    pub async fn indexed(&self) -> Result<HashMap<String, String>, StoreError> {
        let query = self.media.query().select(Select::columns(&["content_hash", "models"]));
        let batches = self.collect(query, Self::lance).await?;
        let mut out = HashMap::new();
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            let (hash, models) = (b.strings("content_hash")?, b.strings("models")?);
            for i in b.rows() {
                out.insert(hash.str(i)?.to_string(), models.str(i)?.to_string());
            }
        }
        Ok(out)
    }

    /// Content hash and path of the `media` rows matching `predicate`.
    pub(crate) async fn paths_of(&self, predicate: &str) -> Result<Vec<(String, String)>, StoreError> {
        let query = self.media.query().only_if(predicate).select(Select::columns(&["content_hash", "path"]));
        let batches = self.collect(query, Self::lance).await?;
        let mut out = Vec::new();
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            let (hash, path) = (b.strings("content_hash")?, b.strings("path")?);
            for i in b.rows() {
                out.push((hash.str(i)?.to_string(), path.str(i)?.to_string()));
            }
        }
        Ok(out)
    }

    /// The content hash of the one item whose hash starts with `prefix` (at least 6 hex
    /// digits); an error when several do.
    pub async fn resolve_item(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        if prefix.len() < 6 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let query = self
            .media
            .query()
            .only_if(format!("starts_with(content_hash, '{prefix}')"))
            .select(Select::columns(&["content_hash"]))
            .limit(2);
        let batches = self.collect(query, Self::lance).await?;
        let mut hashes = Vec::new();
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            let hash = b.strings("content_hash")?;
            for i in b.rows() {
                hashes.push(hash.str(i)?.to_string());
            }
        }
        match hashes.len() {
            0 | 1 => Ok(hashes.pop()),
            _ => Err(StoreError::Query {
                uri: self.uri.clone(),
                message: format!("item id {prefix} is ambiguous; give more characters"),
            }),
        }
    }

    /// All failure rows as `(path, stage, error_kind, message)`.
    pub async fn failures(&self) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let batches = self.collect(self.failures.query(), Self::lance).await?;
        let mut out = Vec::new();
        for batch in &batches {
            let b = self.source(FAILURES_TABLE).batch(batch);
            let (p, s, k, m) =
                (b.strings("path")?, b.strings("stage")?, b.strings("error_kind")?, b.strings("message")?);
            for i in b.rows() {
                out.push((p.str(i)?.into(), s.str(i)?.into(), k.str(i)?.into(), m.str(i)?.into()));
            }
        }
        Ok(out)
    }

    /// Whether the `media` table has the column `name` (tables written by older versions and
    /// opened read-only may lack the newer ones).
    pub async fn media_has_column(&self, name: &str) -> Result<bool, StoreError> {
        self.has_column(&self.media, name).await
    }

    /// Whether the `segments` table has column `name` (tables written before a column existed,
    /// opened without migrating, lack it).
    pub async fn segments_have_column(&self, name: &str) -> Result<bool, StoreError> {
        self.has_column(&self.segments, name).await
    }

    async fn has_column(&self, table: &Table, name: &str) -> Result<bool, StoreError> {
        let schema = table.schema().await.map_err(|e| self.lance(e))?;
        Ok(schema.field_with_name(name).is_ok())
    }

    /// Nearest items to `query` by cosine similarity on a vector column (`bridge`, `visual`,
    /// ...), optionally restricted by an SQL filter (`duration_s < 60`), applied before the
    /// nearest-neighbour search so `k` results come back when `k` rows match.
    pub async fn search(
        &self,
        column: &str,
        query: &[f32],
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        // Answered from the in-memory copy when the column is kept and nothing filters.
        if filter.is_none()
            && let Some(hits) = self.nearest_in_memory(column, query, k)
        {
            return Ok(hits);
        }
        self.nearest(MEDIA_TABLE, &self.media, &[], column, query, k, filter).await
    }

    /// Nearest segments (shots or windows) to `query`, each hit with its time range (and
    /// caption, when there is one); the filter is on `segments` columns (`start_s`, `duration_s`, `kind`, ...).
    pub async fn search_segments(
        &self,
        column: &str,
        query: &[f32],
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        // Tables from before segment captions, opened without migrating, lack the column.
        let with_caption = ["segment", "start_s", "end_s", "caption"];
        let span = if self.segments_have_column("caption").await? { &with_caption[..] } else { &with_caption[..3] };
        self.nearest(SEGMENTS_TABLE, &self.segments, span, column, query, k, filter).await
    }

    /// Nearest rows of `table` (named `name`) on `column`, with the hit columns and
    /// `span_columns` (the segment's place, when the table has one).
    #[allow(clippy::too_many_arguments)] // One private call shape shared by the two searches.
    async fn nearest(
        &self,
        name: &str,
        table: &Table,
        span_columns: &[&str],
        column: &str,
        query: &[f32],
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let mut select = vec!["content_hash", "path", "kind", "duration_s", "labels", "_distance"];
        select.extend(span_columns);
        let mut search = table
            .query()
            .nearest_to(query)
            .map_err(|e| self.lance(e))?
            .column(column)
            .distance_type(DistanceType::Cosine)
            // Used once `optimize` has built an index (flat search ignores them).
            .nprobes(SEARCH_NPROBES)
            .map_err(|e| self.lance(e))?
            .refine_factor(SEARCH_REFINE_FACTOR)
            .select(Select::columns(&select))
            .limit(k);
        // Rows without a vector in `column` never come back: vector indexes leave them out and
        // the flat search drops their null distances. So no `column IS NOT NULL` filter: as a
        // prefilter it read the whole vector column of every row on each search (most of a
        // search's time on an indexed 100k-row table).
        if let Some(f) = filter {
            search = search.only_if(f);
        }
        let batches = self.collect(search, Self::query_err).await?;
        let mut hits = read_hits(self.source(name), &batches, Some("_distance"), |d| 1.0 - d)?;
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }

    /// Full-text (BM25) search of `text` over the label text, transcript and description,
    /// best first; the score is BM25's. Needs the indexes `optimize` builds.
    pub async fn full_text(&self, text: &str, k: usize, filter: Option<&str>) -> Result<Vec<SearchHit>, StoreError> {
        use lancedb::index::scalar::FullTextSearchQuery;
        let existing = self.indexed_columns().await?;
        let columns: Vec<String> =
            FTS_COLUMNS.iter().filter(|c| existing.iter().any(|e| e == *c)).map(|c| c.to_string()).collect();
        if columns.is_empty() {
            return Err(StoreError::Query {
                uri: self.uri.clone(),
                message: "full-text search needs the full-text indexes, which `medley index` and `medley optimize` build; run one of them first".into(),
            });
        }
        let fts =
            FullTextSearchQuery::new(text.to_string()).with_columns(&columns).map_err(|e| self.query_err(e.into()))?;
        let mut query = self
            .media
            .query()
            .full_text_search(fts)
            .select(Select::columns(&["content_hash", "path", "kind", "duration_s", "labels", "_score"]))
            .limit(k);
        if let Some(f) = filter {
            query = query.only_if(f);
        }
        let batches = self.collect(query, Self::query_err).await?;
        let mut hits = read_hits(self.source(MEDIA_TABLE), &batches, Some("_score"), |s| s)?;
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }

    /// The stored labels of one item (its pictures' top classes, best first), by content hash;
    /// none for an item that is not there.
    pub async fn labels(&self, content_hash: &str) -> Result<Vec<Label>, StoreError> {
        let query = self
            .media
            .query()
            .only_if(format!("content_hash = {}", sql_string(content_hash)))
            .select(Select::columns(&["labels"]))
            .limit(1);
        let batches = self.collect(query, Self::lance).await?;
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            if let Some(i) = b.rows().next() {
                return b.lists("labels", LABELS_TYPE)?.labels(i);
            }
        }
        Ok(Vec::new())
    }

    /// The stored vector of one item, by content hash.
    pub async fn vector(&self, column: &str, content_hash: &str) -> Result<Option<Vec<f32>>, StoreError> {
        Ok(self.vectors(&[column], content_hash).await?.pop().flatten())
    }

    /// The stored vectors of one item in `columns` (in that order), by content hash, read in
    /// one query: each query filters the whole `content_hash` column.
    pub async fn vectors(&self, columns: &[&str], content_hash: &str) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        let query = self
            .media
            .query()
            .only_if(format!("content_hash = {}", sql_string(content_hash)))
            .select(Select::columns(columns))
            .limit(1);
        let batches = self.collect(query, Self::lance).await?;
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            if let Some(i) = b.rows().next() {
                return columns.iter().map(|c| b.vectors(c)?.vector(i)).collect();
            }
        }
        Ok(vec![None; columns.len()])
    }
}
