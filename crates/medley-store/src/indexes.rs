//! Index upkeep: compaction, approximate vector indexes once a column is large enough for them
//! to pay off, full-text indexes, and adding new rows to the indexes that exist.

use lancedb::index::Index;
use lancedb::table::OptimizeAction;
use lancedb::{DistanceType, Table};

use crate::StoreError;
use crate::open::Store;
use crate::schema::{MEDIA_TABLE, SEGMENTS_TABLE, TEXT_SPACE_COLUMNS, VECTOR_COLUMNS, vector_width};

/// Rows above which `optimize` builds approximate vector indexes (below, exact search is fast).
pub const VECTOR_INDEX_MIN_ROWS: usize = 10_000;

/// IVF partitions a search probes.
pub const SEARCH_NPROBES: usize = 20;
/// A search re-ranks `refine factor x k` PQ candidates by their exact vectors.
pub const SEARCH_REFINE_FACTOR: u32 = 5;

/// The text columns with full-text indexes (built by `optimize`); `segments` has all but
/// `description`.
pub(crate) const FTS_COLUMNS: [&str; 4] = ["label_text", "transcript", "description", "ocr_text"];

/// Rows per IVF partition the vector indexes are built for and kept at.
///
/// Lance records the target in the index and keeps partitions near it when rows are added
/// (`optimize` splits partitions past 4x and joins those under a quarter). An index built with
/// a partition *count* instead records no target, and the next optimisation joined its
/// partitions towards Lance's default of 8,192 rows: 316 partitions over 100k rows became 4, so
/// every search compared all 100k codes. About 1,000 rows each is sqrt(rows) at a million rows,
/// where `SEARCH_NPROBES` = 20 found recall@10 1.0 (`cargo xtask bench store`), and a search
/// compares about 20,000 codes at any table size.
pub const TARGET_PARTITION_ROWS: u32 = 1024;

/// The approximate index `optimize` builds on a vector column: IVF_PQ by cosine distance with
/// partitions of about `TARGET_PARTITION_ROWS` and 8-dimension sub-vectors, searched with
/// `SEARCH_NPROBES`/`SEARCH_REFINE_FACTOR`.
pub fn vector_index(width: usize) -> Index {
    use lancedb::index::vector::IvfPqIndexBuilder;
    let mut builder =
        IvfPqIndexBuilder::default().distance_type(DistanceType::Cosine).target_partition_size(TARGET_PARTITION_ROWS);
    if width >= 8 && width.is_multiple_of(8) {
        builder = builder.num_sub_vectors((width / 8) as u32);
    }
    Index::IvfPq(builder)
}

impl Store {
    /// Compact fragments, build indexes, drop old versions: approximate vector indexes on the
    /// vector columns of `media` and `segments` with `VECTOR_INDEX_MIN_ROWS` filled rows,
    /// full-text indexes on their text columns always. Returns a line per action for the user.
    pub async fn optimize(&self) -> Result<Vec<String>, StoreError> {
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
        report.extend(self.rebuild_oversized_partitions().await?);
        for (name, table) in self.tables() {
            let stats = table.optimize(OptimizeAction::All).await.map_err(|e| self.lance(e))?;
            let pruned = stats.prune.map_or(0, |p| p.old_versions);
            report.push(format!("{name}: {pruned} old versions removed"));
        }
        Ok(report)
    }

    /// Index upkeep after rows were written (every `medley index` run does it): the full-text
    /// indexes when missing (so `search --full-text` / `--hybrid`, and a name said in a
    /// transcript, work after the first `index`), vector indexes for tables that passed
    /// `VECTOR_INDEX_MIN_ROWS`, and the new rows added to the indexes that exist (searches also
    /// scan unindexed rows, but exhaustively), and collapsed vector indexes rebuilt (see
    /// `rebuild_oversized_partitions`). Compaction stays with `optimize`.
    pub async fn maintain_indexes(&self) -> Result<Vec<String>, StoreError> {
        let mut report = self.create_indexes(true).await?;
        report.extend(self.rebuild_oversized_partitions().await?);
        for (name, table) in self.indexed_tables() {
            if !self.indexed_columns_of(table).await?.is_empty() {
                table.optimize(OptimizeAction::Index(Default::default())).await.map_err(|e| self.lance(e))?;
                report.push(format!("{name}: new rows added to its indexes"));
            }
        }
        Ok(report)
    }

    /// The tables that have vector and full-text indexes.
    fn indexed_tables(&self) -> [(&'static str, &Table); 2] {
        [(MEDIA_TABLE, &self.media), (SEGMENTS_TABLE, &self.segments)]
    }

    /// Indexes missing on `media` and `segments`: a vector index on each vector column with
    /// `VECTOR_INDEX_MIN_ROWS` filled rows, and with `full_text` the full-text indexes.
    async fn create_indexes(&self, full_text: bool) -> Result<Vec<String>, StoreError> {
        let mut report = Vec::new();
        for (name, table) in self.indexed_tables() {
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
            for column in VECTOR_COLUMNS.iter().chain(&TEXT_SPACE_COLUMNS).filter(|c| missing(c)) {
                // Counted per column: most items have no `text` (nothing said) or no `music`.
                let filled = format!("{column} IS NOT NULL");
                let rows = table.count_rows(Some(filled)).await.map_err(|e| self.lance(e))?;
                if rows >= VECTOR_INDEX_MIN_ROWS {
                    let width = vector_width(&schema, column).unwrap_or(0);
                    table.create_index(&[column], vector_index(width)).execute().await.map_err(|e| self.lance(e))?;
                    report.push(format!("{name}: vector index on {column} ({rows} rows)"));
                }
            }
        }
        Ok(report)
    }

    /// Vector indexes whose partitions average more rows than Lance would let a partition
    /// grow to (4x `TARGET_PARTITION_ROWS`), rebuilt for the target: those built by medley
    /// before the target was recorded, which an optimisation joined into a few partitions
    /// (every search then compares every row).
    async fn rebuild_oversized_partitions(&self) -> Result<Vec<String>, StoreError> {
        use lance::index::DatasetIndexExt;
        let mut report = Vec::new();
        for (name, table) in self.indexed_tables() {
            let Some(dataset) = table.dataset() else { continue };
            let dataset = dataset.get().await.map_err(|e| self.lance(e))?;
            let schema = table.schema().await.map_err(|e| self.lance(e))?;
            let existing = self.indexed_columns_of(table).await?;
            for column in VECTOR_COLUMNS.iter().chain(&TEXT_SPACE_COLUMNS).filter(|c| existing.iter().any(|e| e == *c))
            {
                // Indexes under other names (made by hand) are left as they are.
                let Ok(stats) = dataset.index_statistics(&format!("{column}_idx")).await else { continue };
                let stats: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
                let (rows, partitions) =
                    (stats["num_indexed_rows"].as_u64(), stats["indices"][0]["num_partitions"].as_u64());
                let (Some(rows), Some(partitions)) = (rows, partitions.filter(|&p| p > 0)) else { continue };
                if rows / partitions <= 4 * u64::from(TARGET_PARTITION_ROWS) {
                    continue;
                }
                let width = vector_width(&schema, column).unwrap_or(0);
                table
                    .create_index(&[column], vector_index(width))
                    .replace(true)
                    .execute()
                    .await
                    .map_err(|e| self.lance(e))?;
                report.push(format!(
                    "{name}: vector index on {column} rebuilt ({partitions} partitions held {rows} rows)"
                ));
            }
        }
        Ok(report)
    }

    /// The `media` columns that have an index (vector or full-text).
    pub(crate) async fn indexed_columns(&self) -> Result<Vec<String>, StoreError> {
        self.indexed_columns_of(&self.media).await
    }

    async fn indexed_columns_of(&self, table: &Table) -> Result<Vec<String>, StoreError> {
        let indices = table.list_indices().await.map_err(|e| self.lance(e))?;
        Ok(indices.into_iter().flat_map(|i| i.columns).collect())
    }
}
