use std::collections::HashMap;

use arrow_array::{
    Array, FixedSizeListArray, Float32Array, Float64Array, ListArray, RecordBatch, RecordBatchIterator, StringArray,
    StructArray, UInt32Array,
};
use arrow_schema::{ArrowError, SchemaRef};
use futures::TryStreamExt;
use lancedb::database::CreateTableMode;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::{Connection, DistanceType, Table};

use crate::rows::{FailureRow, Label, MediaRow, RunRow, SearchHit, failure_batch, media_batch, run_batch};
use crate::schema::{
    FAILURES_TABLE, MEDIA_TABLE, RUNS_TABLE, SCHEMA_VERSION, VECTOR_COLUMNS, VectorDims, failures_schema, media_schema,
    runs_schema, vector_width, version_of,
};
use crate::segments::{SEGMENTS_TABLE, Span, segments_schema};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {uri}: {source}")]
    Lance { uri: String, source: lancedb::Error },
    #[error(
        "database {uri}: table `{table}` was written with {found}, this run needs {expected}; use another --db or the same models"
    )]
    SchemaMismatch { uri: String, table: String, found: String, expected: String },
    #[error(
        "database {uri}: table `{table}` has schema version {found}, this medley writes version {expected}; open it with a matching medley or index into a new --db"
    )]
    SchemaVersion { uri: String, table: String, found: String, expected: String },
    #[error("database {uri}: {message}")]
    Query { uri: String, message: String },
    #[error("building rows: {0}")]
    Arrow(#[from] ArrowError),
}

impl StoreError {
    /// A commit that lost a race with another writer's incompatible commit (for example a
    /// concurrent creation of the same table, committed as an empty overwrite). Nothing of it
    /// was written; medley's writes are keyed merges and appends, so retrying is safe.
    pub fn is_commit_race(&self) -> bool {
        match self {
            StoreError::Lance { source: lancedb::Error::Lance { .. }, .. } => {
                let message = self.to_string();
                message.contains("Incompatible transaction") || message.contains("ommit conflict")
            }
            _ => false,
        }
    }
}

/// An open medley database (a LanceDB directory or object-store URI).
pub struct Store {
    uri: String,
    conn: Connection,
    media: Table,
    failures: Table,
    runs: Table,
    segments: Table,
    dims: VectorDims,
}

/// Rows above which `optimize` builds approximate vector indexes (below, exact search is fast).
pub const VECTOR_INDEX_MIN_ROWS: usize = 10_000;

impl Store {
    /// Open the database at `uri`, creating the tables on first use. A `media` table whose
    /// vector widths differ from `dims` is refused: mixing models would make vectors meaningless.
    pub async fn open(uri: &str, dims: VectorDims) -> Result<Self, StoreError> {
        let lance = |source| StoreError::Lance { uri: uri.to_string(), source };
        let conn = lancedb::connect(uri).execute().await.map_err(lance)?;
        let media = open_or_create(&conn, MEDIA_TABLE, media_schema(dims)).await.map_err(lance)?;
        let store = Self::assemble(uri, conn, media, dims).await?;
        store.check_media_schema().await?;
        Ok(store)
    }

    /// Open an existing database for reading, taking the vector widths from its `media` table.
    pub async fn open_existing(uri: &str) -> Result<Self, StoreError> {
        let lance = |source| StoreError::Lance { uri: uri.to_string(), source };
        let conn = lancedb::connect(uri).execute().await.map_err(lance)?;
        let media = conn.open_table(MEDIA_TABLE).execute().await.map_err(lance)?;
        let schema = media.schema().await.map_err(lance)?;
        let width = |name: &str| vector_width(&schema, name).unwrap_or(0);
        let dims = VectorDims {
            visual: width("visual"),
            audio: width("audio"),
            bridge: width("bridge"),
            music: width("music"),
            text: width("text"),
        };
        Self::assemble(uri, conn, media, dims).await
    }

    /// The tables besides `media` (created on first use), and the schema-version check.
    async fn assemble(uri: &str, conn: Connection, media: Table, dims: VectorDims) -> Result<Self, StoreError> {
        let lance = |source| StoreError::Lance { uri: uri.to_string(), source };
        let failures = open_or_create(&conn, FAILURES_TABLE, failures_schema()).await.map_err(lance)?;
        let runs = open_or_create(&conn, RUNS_TABLE, runs_schema()).await.map_err(lance)?;
        let segments = open_or_create(&conn, SEGMENTS_TABLE, segments_schema(dims)).await.map_err(lance)?;
        let store = Self { uri: uri.to_string(), conn, media, failures, runs, segments, dims };
        store.check_versions().await?;
        Ok(store)
    }

    /// Refuse tables written with another schema version (there is one version so far; a
    /// later one adds its migration here).
    async fn check_versions(&self) -> Result<(), StoreError> {
        for (name, table) in self.tables() {
            let schema = table.schema().await.map_err(|e| self.lance(e))?;
            let found = version_of(&schema).unwrap_or("none");
            if found != SCHEMA_VERSION {
                return Err(StoreError::SchemaVersion {
                    uri: self.uri.clone(),
                    table: name.into(),
                    found: found.into(),
                    expected: SCHEMA_VERSION.into(),
                });
            }
        }
        Ok(())
    }

    /// Run a query and gather its batches, mapping errors with `err`.
    pub(crate) async fn collect(
        &self,
        query: impl ExecutableQuery,
        err: fn(&Self, lancedb::Error) -> StoreError,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let stream = query.execute().await.map_err(|e| err(self, e))?;
        stream.try_collect().await.map_err(|e| err(self, e))
    }

    pub(crate) fn lance(&self, source: lancedb::Error) -> StoreError {
        StoreError::Lance { uri: self.uri.clone(), source }
    }

    /// Errors of user-supplied queries (a bad `--where`) are reported as query errors.
    fn query_err(&self, source: lancedb::Error) -> StoreError {
        StoreError::Query { uri: self.uri.clone(), message: source.to_string() }
    }

    async fn check_media_schema(&self) -> Result<(), StoreError> {
        let found = self.media.schema().await.map_err(|e| self.lance(e))?;
        let expected = media_schema(self.dims);
        let describe = |s: &SchemaRef| {
            VECTOR_COLUMNS
                .iter()
                .map(|c| vector_width(s, c).map_or_else(|| format!("{c}[missing]"), |n| format!("{c}[{n}]")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (f, e) = (describe(&found), describe(&expected));
        if f != e {
            return Err(StoreError::SchemaMismatch {
                uri: self.uri.clone(),
                table: MEDIA_TABLE.into(),
                found: f,
                expected: e,
            });
        }
        Ok(())
    }

    pub(crate) fn media(&self) -> &Table {
        &self.media
    }

    pub(crate) fn segments(&self) -> &Table {
        &self.segments
    }

    /// Move every table to its latest version, after another process committed (a write
    /// built on an older version can conflict with it).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        for (_, table) in self.tables() {
            table.checkout_latest().await.map_err(|e| self.lance(e))?;
        }
        Ok(())
    }

    /// The tables every database has, by name.
    fn tables(&self) -> [(&'static str, &Table); 4] {
        [
            (MEDIA_TABLE, &self.media),
            (SEGMENTS_TABLE, &self.segments),
            (FAILURES_TABLE, &self.failures),
            (RUNS_TABLE, &self.runs),
        ]
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn dims(&self) -> VectorDims {
        self.dims
    }

    pub async fn count_media(&self) -> Result<usize, StoreError> {
        self.media.count_rows(None).await.map_err(|e| self.lance(e))
    }

    pub async fn count_failures(&self) -> Result<usize, StoreError> {
        self.failures.count_rows(None).await.map_err(|e| self.lance(e))
    }

    /// Content hashes already in `media`, with the models that indexed each, so a re-run
    /// skips items already done by the same models before decoding them.
    pub async fn indexed(&self) -> Result<HashMap<String, String>, StoreError> {
        let batches =
            self.collect(self.media.query().select(Select::columns(&["content_hash", "models"])), Self::lance).await?;
        let mut out = HashMap::new();
        for b in &batches {
            let (hash, models) = (string_col(b, "content_hash"), string_col(b, "models"));
            out.extend((0..b.num_rows()).map(|i| (hash.value(i).to_string(), models.value(i).to_string())));
        }
        Ok(out)
    }

    /// Write rows in one commit, keyed by content hash: new items are inserted, items indexed
    /// by other models are updated, and items already written by the same models are left as
    /// they are, so a repeated or resumed write never duplicates an item.
    /// Returns the number of rows inserted or updated.
    pub async fn upsert_media(&self, rows: &[MediaRow]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let schema = media_schema(self.dims);
        let batch = media_batch(schema.clone(), rows, self.dims)?;
        let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
        let mut merge = self.media.merge_insert(&["content_hash"]);
        merge.when_matched_update_all(Some("target.models != source.models".into())).when_not_matched_insert_all();
        let result = merge.execute(Box::new(reader)).await.map_err(|e| self.lance(e))?;
        // A file that failed before and now indexed is no longer a failure.
        let hashes: Vec<String> = rows.iter().map(|r| format!("'{}'", r.content_hash)).collect();
        self.delete_matching(&self.failures, &format!("content_hash IN ({})", hashes.join(","))).await?;
        Ok(result.num_inserted_rows + result.num_updated_rows)
    }

    /// Delete the rows of `table` matching `predicate`. Counted first: a delete that matches
    /// nothing still commits a new table version, which every batch would otherwise add.
    pub(crate) async fn delete_matching(&self, table: &Table, predicate: &str) -> Result<(), StoreError> {
        if table.count_rows(Some(predicate.to_string())).await.map_err(|e| self.lance(e))? > 0 {
            table.delete(predicate).await.map_err(|e| self.lance(e))?;
        }
        Ok(())
    }

    /// Append what a run did to `runs`.
    pub async fn record_run(&self, run: &RunRow) -> Result<(), StoreError> {
        let batch = run_batch(runs_schema(), run)?;
        self.runs.add(batch).execute().await.map_err(|e| self.lance(e))?;
        Ok(())
    }

    /// Compact fragments, build indexes, drop old versions: approximate vector indexes on the
    /// vector columns of `media` and `segments` with `VECTOR_INDEX_MIN_ROWS` filled rows,
    /// full-text indexes on their text columns always. Returns a line per action for the user.
    pub async fn optimize(&self) -> Result<Vec<String>, StoreError> {
        use lancedb::table::OptimizeAction;
        let mut report = Vec::new();
        // Compaction first: indexes are then built over whole fragments rather than remapped,
        // and a search refining its candidates opens one file per fragment.
        for (name, table) in self.tables() {
            let compact = OptimizeAction::Compact { options: Default::default(), remap_options: None };
            let stats = table.optimize(compact).await.map_err(|e| self.lance(e))?;
            let compacted = stats.compaction.map_or(0, |c| c.fragments_removed);
            report.push(format!("{name}: {compacted} fragments compacted"));
        }
        report.extend(self.create_indexes(true).await?);
        for (name, table) in self.tables() {
            let stats = table.optimize(OptimizeAction::All).await.map_err(|e| self.lance(e))?;
            let pruned = stats.prune.map_or(0, |p| p.old_versions);
            report.push(format!("{name}: {pruned} old versions removed"));
        }
        Ok(report)
    }

    /// Indexes missing on `media` and `segments`: a vector index on each vector column with
    /// `VECTOR_INDEX_MIN_ROWS` filled rows, and with `full_text` the full-text indexes.
    async fn create_indexes(&self, full_text: bool) -> Result<Vec<String>, StoreError> {
        use lancedb::index::Index;
        let mut report = Vec::new();
        for (name, table) in [(MEDIA_TABLE, &self.media), (SEGMENTS_TABLE, &self.segments)] {
            let schema = table.schema().await.map_err(|e| self.lance(e))?;
            let existing = self.indexed_columns_of(table).await?;
            let missing = |c: &str| !existing.iter().any(|e| e == c) && schema.field_with_name(c).is_ok();
            for column in FTS_COLUMNS.iter().filter(|c| full_text && missing(c)) {
                table
                    .create_index(&[column], Index::FTS(Default::default()))
                    .execute()
                    .await
                    .map_err(|e| self.lance(e))?;
                report.push(format!("{name}: full-text index on {column}"));
            }
            for column in VECTOR_COLUMNS.iter().filter(|c| missing(c)) {
                // Counted per column: most items have no `text` (nothing said) or no `music`.
                let filled = format!("{column} IS NOT NULL");
                let rows = table.count_rows(Some(filled)).await.map_err(|e| self.lance(e))?;
                if rows >= VECTOR_INDEX_MIN_ROWS {
                    let width = vector_width(&schema, column).unwrap_or(0);
                    table
                        .create_index(&[column], vector_index(rows, width))
                        .execute()
                        .await
                        .map_err(|e| self.lance(e))?;
                    report.push(format!("{name}: vector index on {column} ({rows} rows)"));
                }
            }
        }
        Ok(report)
    }

    /// Index upkeep after rows were written (every `medley index` run does it): vector indexes
    /// for tables that passed `VECTOR_INDEX_MIN_ROWS`, and the new rows added to the indexes
    /// that exist (searches also scan unindexed rows, but exhaustively). Full-text indexes
    /// and compaction stay with `optimize`.
    pub async fn maintain_indexes(&self) -> Result<Vec<String>, StoreError> {
        use lancedb::table::OptimizeAction;
        let mut report = self.create_indexes(false).await?;
        for (name, table) in [(MEDIA_TABLE, &self.media), (SEGMENTS_TABLE, &self.segments)] {
            if !self.indexed_columns_of(table).await?.is_empty() {
                table.optimize(OptimizeAction::Index(Default::default())).await.map_err(|e| self.lance(e))?;
                report.push(format!("{name}: new rows added to its indexes"));
            }
        }
        Ok(report)
    }

    pub async fn resolve_item(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        if prefix.len() < 6 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let batches = self
            .collect(
                self.media
                    .query()
                    .only_if(format!("starts_with(content_hash, '{prefix}')"))
                    .select(Select::columns(&["content_hash"]))
                    .limit(2),
                Self::lance,
            )
            .await?;
        let hashes: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let c = string_col(b, "content_hash");
                (0..b.num_rows()).map(|i| c.value(i).to_string()).collect::<Vec<_>>()
            })
            .collect();
        match hashes.len() {
            1 => Ok(hashes.into_iter().next()),
            0 => Ok(None),
            _ => Err(StoreError::Query {
                uri: self.uri.clone(),
                message: format!("item id {prefix} is ambiguous; give more characters"),
            }),
        }
    }

    /// All rows of a table as Arrow record batches (for export).
    pub async fn scan(&self, table: &str) -> Result<(SchemaRef, Vec<RecordBatch>), StoreError> {
        let t = match table {
            MEDIA_TABLE => &self.media,
            FAILURES_TABLE => &self.failures,
            RUNS_TABLE => &self.runs,
            other => {
                let names = self.conn.table_names().execute().await.map_err(|e| self.lance(e))?;
                return Err(StoreError::Query {
                    uri: self.uri.clone(),
                    message: format!("no table {other}; tables: {}", names.join(", ")),
                });
            }
        };
        let schema = t.schema().await.map_err(|e| self.lance(e))?;
        let batches = self.collect(t.query(), Self::lance).await?;
        Ok((schema, batches))
    }

    /// Record failures, one row per (path, content hash): a file failing again on a later run
    /// updates its row instead of adding another.
    pub async fn record_failures(&self, rows: &[FailureRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let schema = failures_schema();
        let reader = RecordBatchIterator::new(vec![Ok(failure_batch(schema.clone(), rows)?)], schema);
        let mut merge = self.failures.merge_insert(&["path"]);
        merge.when_matched_update_all(None).when_not_matched_insert_all();
        merge.execute(Box::new(reader)).await.map_err(|e| self.lance(e))?;
        Ok(())
    }

    /// All failure rows as `(path, stage, error_kind, message)`.
    pub async fn failures(&self) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let batches = self.collect(self.failures.query(), Self::lance).await?;
        let mut out = Vec::new();
        for b in &batches {
            let (p, s, k, m) =
                (string_col(b, "path"), string_col(b, "stage"), string_col(b, "error_kind"), string_col(b, "message"));
            for i in 0..b.num_rows() {
                out.push((p.value(i).into(), s.value(i).into(), k.value(i).into(), m.value(i).into()));
            }
        }
        Ok(out)
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
        self.nearest(&self.media, &[], column, query, k, filter).await
    }

    /// Nearest segments (shots or windows) to `query`, each hit with its time range; the
    /// filter is on `segments` columns (`start_s`, `duration_s`, `kind`, ...).
    pub async fn search_segments(
        &self,
        column: &str,
        query: &[f32],
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        self.nearest(&self.segments, &["segment", "start_s", "end_s"], column, query, k, filter).await
    }

    /// Nearest rows of `table` on `column`, with the hit columns and `span_columns` (the
    /// segment's place, when the table has one).
    async fn nearest(
        &self,
        table: &Table,
        span_columns: &[&str],
        column: &str,
        query: &[f32],
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let mut predicate = format!("{column} IS NOT NULL");
        if let Some(f) = filter {
            predicate = format!("({predicate}) AND ({f})");
        }
        let mut select = vec!["content_hash", "path", "kind", "duration_s", "labels", "_distance"];
        select.extend(span_columns);
        let batches = self
            .collect(
                table
                    .query()
                    .nearest_to(query)
                    .map_err(|e| self.lance(e))?
                    .column(column)
                    .distance_type(DistanceType::Cosine)
                    // Used once `optimize` has built an index (flat search ignores them).
                    .nprobes(SEARCH_NPROBES)
                    .map_err(|e| self.lance(e))?
                    .refine_factor(SEARCH_REFINE_FACTOR)
                    .only_if(predicate)
                    .select(Select::columns(&select))
                    .limit(k),
                Self::query_err,
            )
            .await?;
        let mut hits = read_hits(&batches, "_distance", |d| 1.0 - d);
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }

    /// The `media` columns that have an index (vector or full-text).
    pub(crate) async fn indexed_columns(&self) -> Result<Vec<String>, StoreError> {
        self.indexed_columns_of(&self.media).await
    }

    async fn indexed_columns_of(&self, table: &Table) -> Result<Vec<String>, StoreError> {
        let indices = table.list_indices().await.map_err(|e| self.lance(e))?;
        Ok(indices.into_iter().flat_map(|i| i.columns).collect())
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
                message: "full-text search needs the indexes `medley optimize` builds; run it first".into(),
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
        let mut hits = read_hits(&batches, "_score", |s| s);
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }

    /// The stored vector of one item, by content hash.
    pub async fn vector(&self, column: &str, content_hash: &str) -> Result<Option<Vec<f32>>, StoreError> {
        let batches = self
            .collect(
                self.media
                    .query()
                    .only_if(format!("content_hash = '{}'", content_hash.replace('\'', "''")))
                    .select(Select::columns(&[column])),
                Self::lance,
            )
            .await?;
        for b in &batches {
            let col = b.column(0).as_any().downcast_ref::<FixedSizeListArray>().expect("vector column");
            if b.num_rows() > 0 && !col.is_null(0) {
                let v = col.value(0);
                let v = v.as_any().downcast_ref::<Float32Array>().expect("float vector");
                return Ok(Some(v.values().to_vec()));
            }
        }
        Ok(None)
    }
}

/// Open a table, creating it empty when it does not exist. Opening first keeps the usual case
/// free of writes: two processes creating the same table at once can both commit the
/// creation, the second as an (empty) overwrite, which `StoreError::is_commit_race` covers.
pub(crate) async fn open_or_create(conn: &Connection, name: &str, schema: SchemaRef) -> lancedb::Result<Table> {
    match conn.open_table(name).execute().await {
        Err(lancedb::Error::TableNotFound { .. }) => {
            conn.create_empty_table(name, schema).mode(CreateTableMode::exist_ok(|r| r)).execute().await
        }
        other => other,
    }
}

/// Search results from batches holding the hit columns and a float score column.
fn read_hits(batches: &[RecordBatch], score_column: &str, score: impl Fn(f32) -> f32) -> Vec<SearchHit> {
    let mut hits = Vec::new();
    for b in batches {
        let (hash, path, kind) = (string_col(b, "content_hash"), string_col(b, "path"), string_col(b, "kind"));
        let duration =
            b.column_by_name("duration_s").and_then(|c| c.as_any().downcast_ref::<Float64Array>()).expect("duration_s");
        let scores =
            b.column_by_name(score_column).and_then(|c| c.as_any().downcast_ref::<Float32Array>()).expect("score");
        let labels = b.column_by_name("labels").and_then(|c| c.as_any().downcast_ref::<ListArray>()).expect("labels");
        let float = |name| b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<Float64Array>());
        let segment = b.column_by_name("segment").and_then(|c| c.as_any().downcast_ref::<UInt32Array>());
        let span = |i: usize| match (segment, float("start_s"), float("end_s")) {
            (Some(s), Some(a), Some(b)) => Some(Span { segment: s.value(i), start_s: a.value(i), end_s: b.value(i) }),
            _ => None,
        };
        for i in 0..b.num_rows() {
            hits.push(SearchHit {
                content_hash: hash.value(i).into(),
                path: path.value(i).into(),
                kind: kind.value(i).into(),
                duration_s: (!duration.is_null(i)).then(|| duration.value(i)),
                score: score(scores.value(i)),
                labels: read_labels(&labels.value(i)),
                span: span(i),
            });
        }
    }
    hits
}

/// The approximate index `optimize` builds on a vector column: IVF_PQ by cosine distance with
/// about sqrt(rows) partitions and 8-dimension sub-vectors, searched with
/// `SEARCH_NPROBES`/`SEARCH_REFINE_FACTOR` (recall@10 1.0 at p50 ~18 ms over a million
/// 384-d rows in `cargo xtask bench store`).
pub fn vector_index(rows: usize, width: usize) -> lancedb::index::Index {
    use lancedb::index::vector::IvfPqIndexBuilder;
    let mut builder = IvfPqIndexBuilder::default()
        .distance_type(DistanceType::Cosine)
        .num_partitions(((rows as f64).sqrt().round() as u32).max(1));
    if width >= 8 && width.is_multiple_of(8) {
        builder = builder.num_sub_vectors((width / 8) as u32);
    }
    lancedb::index::Index::IvfPq(builder)
}

/// IVF partitions a search probes.
pub const SEARCH_NPROBES: usize = 20;
/// A search re-ranks `refine factor x k` PQ candidates by their exact vectors.
pub const SEARCH_REFINE_FACTOR: u32 = 5;

/// The text columns with full-text indexes (built by `optimize`); `segments` has the first two.
pub const FTS_COLUMNS: [&str; 3] = ["label_text", "transcript", "description"];

fn string_col<'a>(b: &'a RecordBatch, name: &str) -> &'a StringArray {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .unwrap_or_else(|| panic!("{name} is a string column"))
}

fn read_labels(arr: &dyn Array) -> Vec<Label> {
    let s = arr.as_any().downcast_ref::<StructArray>().expect("label structs");
    let names = s.column(0).as_any().downcast_ref::<StringArray>().expect("label");
    let scores = s.column(1).as_any().downcast_ref::<Float32Array>().expect("score");
    (0..s.len()).map(|i| Label { label: names.value(i).into(), score: scores.value(i) }).collect()
}
