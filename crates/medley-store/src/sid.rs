//! Semantic-ID tables: `sid_codebooks` (one row per trained codebook version, with its
//! training report) and `sids` (one row per item and codebook version).

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float32Array, Int32Array, ListArray, RecordBatch, RecordBatchIterator, StringArray,
    TimestampMicrosecondArray, UInt32Array,
    builder::{Int32Builder, ListBuilder, StringBuilder},
};
use arrow_schema::{DataType, Field, SchemaRef};
use lancedb::query::{QueryBase, Select};

use crate::schema::{utc_micros, vector_width, with_version};
use crate::store::{Store, StoreError, open_or_create};

pub const SID_CODEBOOKS_TABLE: &str = "sid_codebooks";
pub const SIDS_TABLE: &str = "sids";

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
    pub created_at_us: i64,
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
}

/// The vectors of one `media` row, in indexing order.
pub struct ItemVectors {
    pub content_hash: String,
    pub vectors: Vec<Option<Vec<f32>>>,
}

fn codebooks_schema() -> SchemaRef {
    with_version(vec![
        Field::new("version", DataType::Utf8, false),
        Field::new("levels", DataType::UInt32, false),
        Field::new("codes", DataType::UInt32, false),
        Field::new("dim", DataType::UInt32, false),
        Field::new("report", DataType::Utf8, false),
        Field::new("codebook", DataType::Utf8, false),
        Field::new("fusion", DataType::Utf8, false),
        utc_micros("created_at"),
    ])
}

fn sids_schema() -> SchemaRef {
    with_version(vec![
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("codebook_version", DataType::Utf8, false),
        Field::new("codes", DataType::List(Arc::new(Field::new("item", DataType::Int32, true))), false),
        Field::new("suffix", DataType::UInt32, false),
        Field::new("sid", DataType::Utf8, false),
        Field::new("ngrams", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false),
    ])
}

impl Store {
    /// Every item's vectors from `columns`, oldest first (the order the uniqueness suffix
    /// counts in).
    pub async fn item_vectors(&self, columns: &[&str]) -> Result<Vec<ItemVectors>, StoreError> {
        let mut select = vec!["content_hash", "indexed_at"];
        select.extend_from_slice(columns);
        let batches = self.collect(self.media().query().select(Select::columns(&select)), Store::lance).await?;
        let mut items: Vec<(i64, ItemVectors)> = Vec::new();
        for b in &batches {
            let hash = b.column(0).as_any().downcast_ref::<StringArray>().expect("content_hash");
            let at = b.column(1).as_any().downcast_ref::<TimestampMicrosecondArray>().expect("indexed_at");
            for i in 0..b.num_rows() {
                let vectors = (0..columns.len())
                    .map(|c| {
                        let col =
                            b.column(2 + c).as_any().downcast_ref::<arrow_array::FixedSizeListArray>().expect("vector");
                        (!col.is_null(i)).then(|| {
                            let v = col.value(i);
                            v.as_any().downcast_ref::<Float32Array>().expect("f32").values().to_vec()
                        })
                    })
                    .collect();
                items.push((at.value(i), ItemVectors { content_hash: hash.value(i).to_string(), vectors }));
            }
        }
        items.sort_by(|a, b| (a.0, &a.1.content_hash).cmp(&(b.0, &b.1.content_hash)));
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }

    /// Widths of `media` vector columns.
    pub async fn vector_widths(&self, columns: &[&str]) -> Result<Vec<usize>, StoreError> {
        let schema = self.media().schema().await.map_err(|e| self.lance(e))?;
        Ok(columns.iter().map(|c| vector_width(&schema, c).unwrap_or(0)).collect())
    }

    pub async fn save_codebook(&self, row: &CodebookRow) -> Result<(), StoreError> {
        let schema = codebooks_schema();
        let table =
            open_or_create(self.connection(), SID_CODEBOOKS_TABLE, schema.clone()).await.map_err(|e| self.lance(e))?;
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
            ],
        )?;
        let mut merge = table.merge_insert(&["version"]);
        merge.when_not_matched_insert_all();
        merge.execute(Box::new(RecordBatchIterator::new(vec![Ok(batch)], schema))).await.map_err(|e| self.lance(e))?;
        Ok(())
    }

    /// The most recently trained codebook: `(version, codebook JSON, fusion JSON)`.
    pub async fn latest_codebook(&self) -> Result<Option<(String, String, String)>, StoreError> {
        let names = self.connection().table_names().execute().await.map_err(|e| self.lance(e))?;
        if !names.iter().any(|n| n == SID_CODEBOOKS_TABLE) {
            return Ok(None);
        }
        let table = self.connection().open_table(SID_CODEBOOKS_TABLE).execute().await.map_err(|e| self.lance(e))?;
        let batches = self
            .collect(
                table.query().select(Select::columns(&["version", "codebook", "fusion", "created_at"])),
                Store::lance,
            )
            .await?;
        let mut best: Option<(i64, String, String, String)> = None;
        for b in &batches {
            let col = |i: usize| b.column(i).as_any().downcast_ref::<StringArray>().expect("utf8");
            let at = b.column(3).as_any().downcast_ref::<TimestampMicrosecondArray>().expect("created_at");
            for i in 0..b.num_rows() {
                if best.as_ref().is_none_or(|(t, ..)| at.value(i) > *t) {
                    best = Some((at.value(i), col(0).value(i).into(), col(1).value(i).into(), col(2).value(i).into()));
                }
            }
        }
        Ok(best.map(|(_, v, c, f)| (v, c, f)))
    }

    /// Write Semantic IDs, one row per (item, codebook version); rewriting updates in place.
    pub async fn save_sids(&self, rows: &[SidRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let schema = sids_schema();
        let table = open_or_create(self.connection(), SIDS_TABLE, schema.clone()).await.map_err(|e| self.lance(e))?;
        let mut codes = ListBuilder::new(Int32Builder::new());
        let mut ngrams = ListBuilder::new(StringBuilder::new());
        for r in rows {
            codes.values().append_slice(&r.codes);
            codes.append(true);
            for g in &r.ngrams {
                ngrams.values().append_value(g);
            }
            ngrams.append(true);
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
                Arc::new(ngrams.finish()),
            ],
        )?;
        let mut merge = table.merge_insert(&["content_hash", "codebook_version"]);
        merge.when_matched_update_all(None).when_not_matched_insert_all();
        merge.execute(Box::new(RecordBatchIterator::new(vec![Ok(batch)], schema))).await.map_err(|e| self.lance(e))?;
        Ok(())
    }

    /// The Semantic IDs stored for one codebook version.
    pub async fn sids(&self, version: &str) -> Result<Vec<SidRow>, StoreError> {
        let names = self.connection().table_names().execute().await.map_err(|e| self.lance(e))?;
        if !names.iter().any(|n| n == SIDS_TABLE) {
            return Ok(Vec::new());
        }
        let table = self.connection().open_table(SIDS_TABLE).execute().await.map_err(|e| self.lance(e))?;
        let q = table.query().only_if(format!("codebook_version = '{}'", version.replace('\'', "''")));
        let batches = self.collect(q, Store::lance).await?;
        let mut out = Vec::new();
        for b in &batches {
            let s = |i: usize| b.column(i).as_any().downcast_ref::<StringArray>().expect("utf8");
            let codes = b.column(2).as_any().downcast_ref::<ListArray>().expect("codes");
            let suffix = b.column(3).as_any().downcast_ref::<UInt32Array>().expect("suffix");
            let ngrams = b.column(5).as_any().downcast_ref::<ListArray>().expect("ngrams");
            for i in 0..b.num_rows() {
                let c = codes.value(i);
                let g = ngrams.value(i);
                let g = g.as_any().downcast_ref::<StringArray>().expect("utf8");
                out.push(SidRow {
                    content_hash: s(0).value(i).into(),
                    codebook_version: s(1).value(i).into(),
                    codes: c.as_any().downcast_ref::<Int32Array>().expect("i32").values().to_vec(),
                    suffix: suffix.value(i),
                    sid: s(4).value(i).into(),
                    ngrams: (0..g.len()).map(|j| g.value(j).to_string()).collect(),
                });
            }
        }
        Ok(out)
    }
}
