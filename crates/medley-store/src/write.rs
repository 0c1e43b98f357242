//! Writes: keyed merges of items and their segments, failures, and runs. Every write is one
//! commit, and repeating it never duplicates a row.

use arrow_array::RecordBatchIterator;
use lancedb::Table;

use crate::StoreError;
use crate::open::Store;
use crate::query::sql_string;
use crate::rows::{FailureRow, MediaRow, RunRow, conform, failure_batch, media_batch, run_batch};
use crate::schema::{failures_schema, media_schema, runs_schema};
use crate::segments::{ItemSegments, segments_batch, segments_schema};

impl Store {
    /// Write rows in one commit, keyed by content hash: new items are inserted, items indexed
    /// by other models are updated, and items already written by the same models are left as
    /// they are, so a repeated or resumed write never duplicates an item.
    /// Returns the number of rows inserted or updated.
    pub async fn upsert_media(&self, rows: &[MediaRow]) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let schema = media_schema(&self.dims);
        let batch = media_batch(schema.clone(), rows, &self.dims)?;
        let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
        let mut merge = self.media.merge_insert(&["content_hash"]);
        merge.when_matched_update_all(Some("target.models != source.models".into())).when_not_matched_insert_all();
        let result = merge.execute(Box::new(reader)).await.map_err(|e| self.lance(e))?;
        // A file that failed before and now indexed is no longer a failure.
        let hashes: Vec<String> = rows.iter().map(|r| sql_string(&r.content_hash)).collect();
        self.delete_matching(&self.failures, &format!("content_hash IN ({})", hashes.join(","))).await?;
        Ok(result.num_inserted_rows + result.num_updated_rows)
    }

    /// Write the segments of a batch of items in one commit: rows are merged by segment id
    /// (an item re-indexed updates its rows in place, never duplicates them), then segments an
    /// item no longer has (a re-index that cut it into fewer) are deleted. Written before the
    /// items' `media` rows, so a run stopped in between re-indexes the item and converges.
    pub async fn upsert_segments(&self, items: &[ItemSegments]) -> Result<u64, StoreError> {
        let mut written = 0;
        if items.iter().any(|i| !i.segments.is_empty()) {
            let batch = segments_batch(segments_schema(&self.dims), items, &self.dims)?;
            let batch = conform(&batch, self.segments.schema().await.map_err(|e| self.lance(e))?)?;
            let reader = RecordBatchIterator::new(vec![Ok(batch.clone())], batch.schema());
            let mut merge = self.segments.merge_insert(&["segment_id"]);
            merge.when_matched_update_all(None).when_not_matched_insert_all();
            let result = merge.execute(Box::new(reader)).await.map_err(|e| self.lance(e))?;
            written = result.num_inserted_rows + result.num_updated_rows;
        }
        let stale: Vec<String> = items
            .iter()
            .map(|i| format!("(content_hash = {} AND segment >= {})", sql_string(&i.content_hash), i.segments.len()))
            .collect();
        if !stale.is_empty() {
            self.delete_matching(&self.segments, &stale.join(" OR ")).await?;
        }
        Ok(written)
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
}
