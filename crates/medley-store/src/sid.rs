//! Semantic-ID tables: `sid_codebooks` (one row per trained codebook version, with its
//! training report) and `sids` (one row per item and codebook version).

use std::sync::Arc;

use arrow_array::{
    ArrayRef, ListArray, RecordBatch, RecordBatchIterator, StringArray, TimestampMicrosecondArray, UInt32Array,
    builder::{Float32Builder, Int32Builder, ListBuilder, StringBuilder},
};
use arrow_schema::{DataType, Field, SchemaRef};
use lancedb::query::{QueryBase, Select};

use crate::StoreError;
use crate::open::{Store, open_or_create};
use crate::schema::{
    MEDIA_TABLE, SCHEMA_VERSION, SID_CODEBOOKS_TABLE, SIDS_TABLE, check_columns, utc_micros, vector_width, version_of,
    with_version,
};

/// A trained codebook as stored: its content-addressed version and serialised forms.
#[derive(Debug, Clone)]
pub struct CodebookRow {
    pub version: String,
    pub levels: u32,
    pub codes: u32,
    pub dim: u32,
    /// Training configuration and report (JSON).
    pub report_json: String,
    /// The codebook itself (JSON, `medley_fuse::Codebook::to_json`).
    pub codebook_json: String,
    /// How content vectors were built from the media columns (JSON).
    pub fusion_json: String,
    /// The unigram model over the corpus's IDs that cuts them into pieces (JSON), if trained.
    pub pieces_json: Option<String>,
    pub created_at_us: i64,
}

/// The latest codebook as stored, in serialised form.
#[derive(Debug, Clone)]
pub struct StoredCodebook {
    pub version: String,
    pub codebook_json: String,
    pub fusion_json: String,
    pub pieces_json: Option<String>,
}

/// One item's Semantic ID under one codebook.
#[derive(Debug, Clone)]
pub struct SidRow {
    pub content_hash: String,
    pub codebook_version: String,
    pub codes: Vec<i32>,
    /// Counts earlier items with the same codes, so every ID is unique (TIGER).
    pub suffix: u32,
    pub sid: String,
    /// Prefix N-grams of the codes, for ranking-model features.
    pub ngrams: Vec<String>,
    /// Unigram pieces of the ID (empty without a piece model).
    pub pieces: Vec<String>,
    /// The fused content vector the codes quantise (written; [`Store::sids`] leaves it out).
    pub content: Option<Vec<f32>>,
}

/// The vectors of one `media` row, in indexing order.
pub struct ItemVectors {
    pub content_hash: String,
    pub vectors: Vec<Option<Vec<f32>>>,
}

pub(crate) fn codebooks_schema() -> SchemaRef {
    with_version(vec![
        Field::new("version", DataType::Utf8, false),
        Field::new("levels", DataType::UInt32, false),
        Field::new("codes", DataType::UInt32, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new("report", DataType::Utf8, false),
        Field::new("codebook", DataType::Utf8, false),
        Field::new("fusion", DataType::Utf8, false),
        utc_micros("created_at"),
        Field::new("pieces_model", DataType::Utf8, true),
    ])
}

pub(crate) fn sids_schema() -> SchemaRef {
    with_version(vec![
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("codebook_version", DataType::Utf8, false),
        Field::new("codes", DataType::List(Arc::new(Field::new("item", DataType::Int32, true))), false),
        Field::new("suffix", DataType::UInt32, false),
        Field::new("sid", DataType::Utf8, false),
        Field::new("ngrams", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false),
        Field::new("pieces", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
        Field::new("content", DataType::List(Arc::new(Field::new("item", DataType::Float32, true))), true),
    ])
}

/// Columns of the Semantic-ID tables added after they were first written.
const ADDED_SID_COLUMNS: [&str; 3] = ["pieces", "content", "pieces_model"];

/// Open (or create) a Semantic-ID table, adding columns later versions introduced to one
/// written by an older medley (`pieces`, `content`, `pieces_model`): a metadata-only change in
/// Lance, the added columns read as nulls for old rows. A table of another schema version, or
/// lacking a column or holding one of another type, is refused untouched.
async fn open_migrated(store: &Store, name: &str, schema: &SchemaRef) -> Result<lancedb::Table, StoreError> {
    let conn = &store.conn;
    let names = store.table_names().await?;
    // `open_or_create` would refuse an existing table whose schema differs: open it instead.
    let table = if names.iter().any(|n| n == name) {
        conn.open_table(name).execute().await
    } else {
        open_or_create(conn, name, schema.clone()).await
    }
    .map_err(|e| store.lance(e))?;
    let found = table.schema().await.map_err(|e| store.lance(e))?;
    let version = version_of(&found).unwrap_or("none");
    if version != SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            uri: store.uri.clone(),
            table: name.into(),
            found: version.into(),
            expected: SCHEMA_VERSION.into(),
        });
    }
    check_columns(&store.uri, name, &found, schema, &ADDED_SID_COLUMNS)?;
    let missing: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| found.field_with_name(f.name()).is_err())
        .map(|f| f.as_ref().clone())
        .collect();
    if !missing.is_empty() {
        let added = Arc::new(arrow_schema::Schema::new(missing));
        table
            .add_columns()
            .transform(lancedb::table::NewColumnTransform::AllNulls(added))
            .execute()
            .await
            .map_err(|e| store.lance(e))?;
    }
    Ok(table)
}

fn string_lists<'a>(rows: impl Iterator<Item = &'a [String]>) -> ListArray {
    let mut b = ListBuilder::new(StringBuilder::new());
    for items in rows {
        for g in items {
            b.values().append_value(g);
        }
        b.append(true);
    }
    b.finish()
}

impl Store {
    /// Every item's vectors from `columns`, oldest first (the order the uniqueness suffix
    /// counts in).
    pub async fn item_vectors(&self, columns: &[&str]) -> Result<Vec<ItemVectors>, StoreError> {
        let mut select = vec!["content_hash", "indexed_at"];
        select.extend_from_slice(columns);
        let batches = self.collect(self.media.query().select(Select::columns(&select)), Store::lance).await?;
        let mut items: Vec<(i64, ItemVectors)> = Vec::new();
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            let (hash, at) = (b.strings("content_hash")?, b.timestamps("indexed_at")?);
            let vectors = columns.iter().map(|c| b.vectors(c)).collect::<Result<Vec<_>, _>>()?;
            for i in b.rows() {
                let item = ItemVectors {
                    content_hash: hash.str(i)?.to_string(),
                    vectors: vectors.iter().map(|v| v.vector(i)).collect::<Result<_, _>>()?,
                };
                items.push((at.value(i)?, item));
            }
        }
        items.sort_by(|a, b| (a.0, &a.1.content_hash).cmp(&(b.0, &b.1.content_hash)));
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }

    /// Widths of `media` vector columns.
    pub async fn vector_widths(&self, columns: &[&str]) -> Result<Vec<usize>, StoreError> {
        let schema = self.media.schema().await.map_err(|e| self.lance(e))?;
        Ok(columns.iter().map(|c| vector_width(&schema, c).unwrap_or(0)).collect())
    }

    pub async fn save_codebook(&self, row: &CodebookRow) -> Result<(), StoreError> {
        let schema = codebooks_schema();
        let table = open_migrated(self, SID_CODEBOOKS_TABLE, &schema).await?;
        let s = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let u = |v: u32| Arc::new(UInt32Array::from(vec![v])) as ArrayRef;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                s(&row.version),
                u(row.levels),
                u(row.codes),
                u(row.dim),
                s(&row.report_json),
                s(&row.codebook_json),
                s(&row.fusion_json),
                Arc::new(TimestampMicrosecondArray::from(vec![row.created_at_us]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![row.pieces_json.as_deref()])),
            ],
        )?;
        let mut merge = table.merge_insert(&["version"]);
        merge.when_not_matched_insert_all();
        merge.execute(Box::new(RecordBatchIterator::new(vec![Ok(batch)], schema))).await.map_err(|e| self.lance(e))?;
        Ok(())
    }

    /// The most recently trained codebook, if any.
    pub async fn latest_codebook(&self) -> Result<Option<StoredCodebook>, StoreError> {
        if !self.table_names().await?.iter().any(|n| n == SID_CODEBOOKS_TABLE) {
            return Ok(None);
        }
        let table = open_migrated(self, SID_CODEBOOKS_TABLE, &codebooks_schema()).await?;
        let columns = ["version", "codebook", "fusion", "created_at", "pieces_model"];
        let batches = self.collect(table.query().select(Select::columns(&columns)), Store::lance).await?;
        let mut best: Option<(i64, StoredCodebook)> = None;
        for batch in &batches {
            let b = self.source(SID_CODEBOOKS_TABLE).batch(batch);
            let (version, codebook, fusion) = (b.strings("version")?, b.strings("codebook")?, b.strings("fusion")?);
            let (at, pieces) = (b.timestamps("created_at")?, b.strings("pieces_model")?);
            for i in b.rows() {
                let created = at.value(i)?;
                if best.as_ref().is_none_or(|(t, _)| created > *t) {
                    let stored = StoredCodebook {
                        version: version.str(i)?.into(),
                        codebook_json: codebook.str(i)?.into(),
                        fusion_json: fusion.str(i)?.into(),
                        pieces_json: pieces.opt(i).map(str::to_string),
                    };
                    best = Some((created, stored));
                }
            }
        }
        Ok(best.map(|(_, c)| c))
    }

    /// Write Semantic IDs, one row per (item, codebook version); rewriting updates in place.
    pub async fn save_sids(&self, rows: &[SidRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let schema = sids_schema();
        let table = open_migrated(self, SIDS_TABLE, &schema).await?;
        let mut codes = ListBuilder::new(Int32Builder::new());
        let mut content = ListBuilder::new(Float32Builder::new());
        for r in rows {
            codes.values().append_slice(&r.codes);
            codes.append(true);
            match &r.content {
                Some(v) => {
                    content.values().append_slice(v);
                    content.append(true);
                }
                None => content.append(false),
            }
        }
        let strings =
            |f: &dyn Fn(&SidRow) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                strings(&|r| &r.content_hash),
                strings(&|r| &r.codebook_version),
                Arc::new(codes.finish()),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.suffix))),
                strings(&|r| &r.sid),
                Arc::new(string_lists(rows.iter().map(|r| r.ngrams.as_slice()))),
                Arc::new(string_lists(rows.iter().map(|r| r.pieces.as_slice()))),
                Arc::new(content.finish()),
            ],
        )?;
        let mut merge = table.merge_insert(&["content_hash", "codebook_version"]);
        merge.when_matched_update_all(None).when_not_matched_insert_all();
        merge.execute(Box::new(RecordBatchIterator::new(vec![Ok(batch)], schema))).await.map_err(|e| self.lance(e))?;
        Ok(())
    }

    /// The Semantic IDs stored for one codebook version.
    pub async fn sids(&self, version: &str) -> Result<Vec<SidRow>, StoreError> {
        if !self.table_names().await?.iter().any(|n| n == SIDS_TABLE) {
            return Ok(Vec::new());
        }
        let table = open_migrated(self, SIDS_TABLE, &sids_schema()).await?;
        let q = table.query().only_if(format!("codebook_version = {}", crate::query::sql_string(version))).select(
            Select::columns(&["content_hash", "codebook_version", "codes", "suffix", "sid", "ngrams", "pieces"]),
        );
        let batches = self.collect(q, Store::lance).await?;
        let mut out = Vec::new();
        for batch in &batches {
            let b = self.source(SIDS_TABLE).batch(batch);
            let (hash, version, sid) = (b.strings("content_hash")?, b.strings("codebook_version")?, b.strings("sid")?);
            let (codes, suffix) = (b.lists("codes", "list<int32>")?, b.u32s("suffix")?);
            let (ngrams, pieces) = (b.lists("ngrams", "list<utf8>")?, b.lists("pieces", "list<utf8>")?);
            for i in b.rows() {
                out.push(SidRow {
                    content_hash: hash.str(i)?.into(),
                    codebook_version: version.str(i)?.into(),
                    codes: codes.i32s(i)?,
                    suffix: suffix.value(i)?,
                    sid: sid.str(i)?.into(),
                    ngrams: ngrams.strings(i)?,
                    pieces: pieces.strings(i)?,
                    content: None,
                });
            }
        }
        Ok(out)
    }
}
