use std::collections::HashSet;

use arrow_array::{
    Array, FixedSizeListArray, Float32Array, Float64Array, ListArray, RecordBatch, RecordBatchIterator, StringArray,
    StructArray,
};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use futures::TryStreamExt;
use lancedb::database::CreateTableMode;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::{Connection, DistanceType, Table};

use crate::rows::{FailureRow, Label, MediaRow, SearchHit, failure_batch, media_batch};
use crate::schema::{FAILURES_TABLE, MEDIA_TABLE, VectorDims, failures_schema, media_schema};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {uri}: {source}")]
    Lance { uri: String, source: lancedb::Error },
    #[error("database {uri}: table `{table}` was written with {found}, this run needs {expected}; use another --db or the same models")]
    SchemaMismatch { uri: String, table: String, found: String, expected: String },
    #[error("building rows: {0}")]
    Arrow(#[from] ArrowError),
}

/// An open medley database (a LanceDB directory or object-store URI).
pub struct Store {
    uri: String,
    media: Table,
    failures: Table,
    dims: VectorDims,
}

impl Store {
    /// Open the database at `uri`, creating the tables on first use. A `media` table whose
    /// vector widths differ from `dims` is refused: mixing models would make vectors meaningless.
    pub async fn open(uri: &str, dims: VectorDims) -> Result<Self, StoreError> {
        let lance = |source| StoreError::Lance { uri: uri.to_string(), source };
        let conn = lancedb::connect(uri).execute().await.map_err(lance)?;
        let media = open_or_create(&conn, MEDIA_TABLE, media_schema(dims)).await.map_err(lance)?;
        let failures = open_or_create(&conn, FAILURES_TABLE, failures_schema()).await.map_err(lance)?;
        let store = Self { uri: uri.to_string(), media, failures, dims };
        store.check_media_schema().await?;
        Ok(store)
    }

    /// Open an existing database for reading, taking the vector widths from its `media` table.
    pub async fn open_existing(uri: &str) -> Result<Self, StoreError> {
        let lance = |source| StoreError::Lance { uri: uri.to_string(), source };
        let conn = lancedb::connect(uri).execute().await.map_err(lance)?;
        let media = conn.open_table(MEDIA_TABLE).execute().await.map_err(lance)?;
        let failures = open_or_create(&conn, FAILURES_TABLE, failures_schema()).await.map_err(lance)?;
        let schema = media.schema().await.map_err(lance)?;
        let width = |name: &str| match schema.field_with_name(name).map(|f| f.data_type().clone()) {
            Ok(DataType::FixedSizeList(_, n)) => n as usize,
            _ => 0,
        };
        let dims = VectorDims { visual: width("visual"), audio: width("audio"), bridge: width("bridge") };
        Ok(Self { uri: uri.to_string(), media, failures, dims })
    }

    fn lance(&self, source: lancedb::Error) -> StoreError {
        StoreError::Lance { uri: self.uri.clone(), source }
    }

    async fn check_media_schema(&self) -> Result<(), StoreError> {
        let found = self.media.schema().await.map_err(|e| self.lance(e))?;
        let expected = media_schema(self.dims);
        let describe = |s: &SchemaRef| {
            ["visual", "audio", "bridge"]
                .iter()
                .map(|c| match s.field_with_name(c).map(|f| f.data_type().clone()) {
                    Ok(DataType::FixedSizeList(_, n)) => format!("{c}[{n}]"),
                    _ => format!("{c}[missing]"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (f, e) = (describe(&found), describe(&expected));
        if f != e {
            return Err(StoreError::SchemaMismatch { uri: self.uri.clone(), table: MEDIA_TABLE.into(), found: f, expected: e });
        }
        Ok(())
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

    /// Content hashes already in `media`, so a re-run skips them before decoding.
    pub async fn indexed_hashes(&self) -> Result<HashSet<String>, StoreError> {
        let batches: Vec<RecordBatch> = self
            .media
            .query()
            .select(Select::columns(&["content_hash"]))
            .execute()
            .await
            .map_err(|e| self.lance(e))?
            .try_collect()
            .await
            .map_err(|e| self.lance(e))?;
        let mut out = HashSet::new();
        for b in &batches {
            let col = string_col(b, "content_hash");
            out.extend((0..col.len()).map(|i| col.value(i).to_string()));
        }
        Ok(out)
    }

    /// Insert rows whose content hash is not in the table yet, in one commit. Rows already
    /// present are left as they are, so a repeated or resumed write never duplicates an item.
    /// Returns the number of rows inserted.
    pub async fn insert_media(&self, rows: &[MediaRow]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let schema = media_schema(self.dims);
        let batch = media_batch(schema.clone(), rows, self.dims)?;
        let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
        let mut merge = self.media.merge_insert(&["content_hash"]);
        merge.when_not_matched_insert_all();
        let result = merge.execute(Box::new(reader)).await.map_err(|e| self.lance(e))?;
        // A file that failed before and now indexed is no longer a failure.
        let hashes: Vec<String> = rows.iter().map(|r| format!("'{}'", r.content_hash)).collect();
        self.failures
            .delete(format!("content_hash IN ({})", hashes.join(",")).as_str())
            .await
            .map_err(|e| self.lance(e))?;
        Ok(result.num_inserted_rows)
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
        let batches: Vec<RecordBatch> = self
            .failures
            .query()
            .execute()
            .await
            .map_err(|e| self.lance(e))?
            .try_collect()
            .await
            .map_err(|e| self.lance(e))?;
        let mut out = Vec::new();
        for b in &batches {
            let (p, s, k, m) = (string_col(b, "path"), string_col(b, "stage"), string_col(b, "error_kind"), string_col(b, "message"));
            for i in 0..b.num_rows() {
                out.push((p.value(i).into(), s.value(i).into(), k.value(i).into(), m.value(i).into()));
            }
        }
        Ok(out)
    }

    /// Nearest items to `query` by cosine similarity on a vector column (`bridge`, `visual`, ...).
    pub async fn search(&self, column: &str, query: &[f32], k: usize) -> Result<Vec<SearchHit>, StoreError> {
        let batches: Vec<RecordBatch> = self
            .media
            .query()
            .nearest_to(query)
            .map_err(|e| self.lance(e))?
            .column(column)
            .distance_type(DistanceType::Cosine)
            .only_if(format!("{column} IS NOT NULL"))
            .select(Select::columns(&["content_hash", "path", "kind", "duration_s", "labels", "_distance"]))
            .limit(k)
            .execute()
            .await
            .map_err(|e| self.lance(e))?
            .try_collect()
            .await
            .map_err(|e| self.lance(e))?;
        let mut hits = Vec::new();
        for b in &batches {
            let (hash, path, kind) = (string_col(b, "content_hash"), string_col(b, "path"), string_col(b, "kind"));
            let duration = b.column_by_name("duration_s").and_then(|c| c.as_any().downcast_ref::<Float64Array>()).expect("duration_s");
            let distance = b.column_by_name("_distance").and_then(|c| c.as_any().downcast_ref::<Float32Array>()).expect("_distance");
            let labels = b.column_by_name("labels").and_then(|c| c.as_any().downcast_ref::<ListArray>()).expect("labels");
            for i in 0..b.num_rows() {
                hits.push(SearchHit {
                    content_hash: hash.value(i).into(),
                    path: path.value(i).into(),
                    kind: kind.value(i).into(),
                    duration_s: (!duration.is_null(i)).then(|| duration.value(i)),
                    score: 1.0 - distance.value(i),
                    labels: read_labels(&labels.value(i)),
                });
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }

    /// The stored vector of one item, by content hash.
    pub async fn vector(&self, column: &str, content_hash: &str) -> Result<Option<Vec<f32>>, StoreError> {
        let batches: Vec<RecordBatch> = self
            .media
            .query()
            .only_if(format!("content_hash = '{}'", content_hash.replace('\'', "''")))
            .select(Select::columns(&[column]))
            .execute()
            .await
            .map_err(|e| self.lance(e))?
            .try_collect()
            .await
            .map_err(|e| self.lance(e))?;
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

async fn open_or_create(conn: &Connection, name: &str, schema: SchemaRef) -> lancedb::Result<Table> {
    conn.create_empty_table(name, schema).mode(CreateTableMode::exist_ok(|r| r)).execute().await
}

fn string_col<'a>(b: &'a RecordBatch, name: &str) -> &'a StringArray {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>()).unwrap_or_else(|| panic!("{name} is a string column"))
}

fn read_labels(arr: &dyn Array) -> Vec<Label> {
    let s = arr.as_any().downcast_ref::<StructArray>().expect("label structs");
    let names = s.column(0).as_any().downcast_ref::<StringArray>().expect("label");
    let scores = s.column(1).as_any().downcast_ref::<Float32Array>().expect("score");
    (0..s.len()).map(|i| Label { label: names.value(i).into(), score: scores.value(i) }).collect()
}
