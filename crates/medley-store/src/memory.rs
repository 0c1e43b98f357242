//! A serving copy of `media` vector columns in memory, for a process answering many searches
//! (`medley serve`). An unfiltered nearest-neighbour search on a kept column is answered from
//! it (an in-memory IVF index, exact within the lists it probes) instead of a LanceDB query,
//! whose planning, reading and decoding cost about 8 ms of CPU per search on 100k rows
//! (`cargo xtask bench serve`); a filtered search still goes to LanceDB. The copy follows the
//! table version the store reads: [`Store::refresh`] brings it up to date, reading only the
//! rows added, changed or removed since.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use lancedb::query::{QueryBase, Select};
use medley_fuse::{Ivf, IvfCentres};

use crate::indexes::SEARCH_NPROBES;
use crate::readers::read_hits;
use crate::schema::MEDIA_TABLE;
use crate::{SearchHit, Store, StoreError};

/// Seed for the lists' k-means (the same table gives the same lists).
const SEED: u64 = 0x6d65_646c_6579;

#[derive(Default)]
pub(crate) struct Memory {
    /// Columns asked for and the byte budget for all of them together.
    wanted: RwLock<(Vec<String>, usize)>,
    kept: RwLock<HashMap<String, Arc<Snapshot>>>,
    /// One load at a time (a refresh racing the first load would read twice).
    loading: futures::lock::Mutex<()>,
}

struct Snapshot {
    version: u64,
    /// Each row's hit, score left at 0.
    hits: Vec<SearchHit>,
    /// Each row's models and indexed_at: a row whose stamp moved was written again.
    stamps: Vec<Stamp>,
    ivf: Arc<Ivf>,
}

type Stamp = (String, i64);

#[derive(Default)]
struct Rows {
    hits: Vec<SearchHit>,
    stamps: Vec<Stamp>,
    vectors: Vec<f32>,
}

/// Run the CPU-bound `work` (k-means, packing lists) on a thread of its own and wait for it
/// without holding an async worker thread.
async fn off_the_async_threads<T: Send + 'static>(
    store: &Store,
    column: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("medley-memory-index".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| StoreError::Io { uri: store.uri.clone(), path: column.into(), source: e })?;
    rx.await.map_err(|_| StoreError::Query {
        uri: store.uri.clone(),
        message: format!("building the in-memory index of {column} stopped"),
    })
}

impl Memory {
    fn get(&self, column: &str) -> Option<Arc<Snapshot>> {
        self.kept.read().unwrap_or_else(|e| e.into_inner()).get(column).cloned()
    }

    /// Drop every kept copy (the next load reads them again).
    pub(crate) fn forget(&self) {
        self.kept.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// What [`Store::keep_in_memory`] keeps: a column, its rows and the lists they are split into.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptColumn {
    pub column: String,
    pub rows: usize,
    pub lists: usize,
}

impl Store {
    /// Keep the vector `columns` of `media` (those the table has) in memory for unfiltered
    /// searches, while their vectors fit in `budget_bytes` together (a column that does not fit
    /// is left to LanceDB). Kept up to date by [`Store::refresh`]. Returns what is kept.
    pub async fn keep_in_memory(&self, columns: &[&str], budget_bytes: usize) -> Result<Vec<KeptColumn>, StoreError> {
        *self.memory.wanted.write().unwrap_or_else(|e| e.into_inner()) =
            (columns.iter().map(|c| c.to_string()).collect(), budget_bytes);
        self.load_memory().await
    }

    /// Load the wanted columns whose copy is older than the table's version.
    pub(crate) async fn load_memory(&self) -> Result<Vec<KeptColumn>, StoreError> {
        let (wanted, budget) = self.memory.wanted.read().unwrap_or_else(|e| e.into_inner()).clone();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let _one = self.memory.loading.lock().await;
        let version = self.media.version().await.map_err(|e| self.lance(e))?;
        let schema = self.media.schema().await.map_err(|e| self.lance(e))?;
        let rows = self.media.count_rows(None).await.map_err(|e| self.lance(e))?;
        let mut left = budget;
        let mut kept = HashMap::new();
        let mut report = Vec::new();
        for column in wanted {
            let Some(dim) = crate::schema::vector_width(&schema, &column) else {
                continue;
            };
            let bytes = Ivf::bytes_for(rows, dim);
            if bytes > left {
                continue;
            }
            left -= bytes;
            let old = self.memory.get(&column);
            let snapshot = match old {
                Some(s) if s.version == version => s,
                old => Arc::new(self.snapshot(&column, dim, version, old).await?),
            };
            report.push(KeptColumn {
                column: column.clone(),
                rows: snapshot.hits.len(),
                lists: snapshot.ivf.centres().lists(),
            });
            kept.insert(column, snapshot);
        }
        *self.memory.kept.write().unwrap_or_else(|e| e.into_inner()) = kept;
        Ok(report)
    }

    /// The kept copy of `column` at `version`: from `old` when there is one whose lists still
    /// fit (only the rows added, changed or removed since are read), else every row read and
    /// indexed anew.
    async fn snapshot(
        &self,
        column: &str,
        dim: usize,
        version: u64,
        old: Option<Arc<Snapshot>>,
    ) -> Result<Snapshot, StoreError> {
        if let Some(old) = old
            && let Some(updated) = self.updated(column, dim, version, &old).await?
        {
            return Ok(updated);
        }
        let rows = self.read_rows(column, dim, None).await?;
        let vectors = rows.vectors;
        let ivf =
            off_the_async_threads(self, column, move || Ivf::build(&vectors, IvfCentres::train(&vectors, dim, SEED)))
                .await?;
        Ok(Snapshot { version, hits: rows.hits, stamps: rows.stamps, ivf: Arc::new(ivf) })
    }

    /// `old` brought up to `version`: a scan of the rows' keys and stamps (content hash, path,
    /// models, indexed_at) tells which rows are new, changed or gone; only those are read.
    /// `None` when the row count has outgrown the lists (they are trained again).
    async fn updated(
        &self,
        column: &str,
        dim: usize,
        version: u64,
        old: &Snapshot,
    ) -> Result<Option<Snapshot>, StoreError> {
        let query = self.media.query().only_if(format!("{column} IS NOT NULL")).select(Select::columns(&[
            "content_hash",
            "path",
            "models",
            "indexed_at",
        ]));
        let batches = self.collect(query, Self::lance).await?;
        let mut current: Vec<(String, String, Stamp)> = Vec::new();
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            let (hash, path, models, at) =
                (b.strings("content_hash")?, b.strings("path")?, b.strings("models")?, b.timestamps("indexed_at")?);
            for i in b.rows() {
                current.push((hash.str(i)?.into(), path.str(i)?.into(), (models.str(i)?.into(), at.value(i)?)));
            }
        }
        if !old.ivf.centres().fits(current.len()) {
            return Ok(None);
        }
        let before: HashMap<(&str, &str), usize> =
            old.hits.iter().enumerate().map(|(r, h)| ((h.content_hash.as_str(), h.path.as_str()), r)).collect();
        let mut still = vec![false; old.hits.len()];
        let mut changed: HashSet<(String, String)> = HashSet::new();
        for (hash, path, stamp) in current {
            match before.get(&(hash.as_str(), path.as_str())) {
                Some(&r) if old.stamps[r] == stamp && !still[r] => still[r] = true,
                _ => {
                    changed.insert((hash, path));
                }
            }
        }
        let mut renumber = vec![None; old.hits.len()];
        let (mut hits, mut stamps) = (Vec::new(), Vec::new());
        for (r, _) in still.iter().enumerate().filter(|(_, s)| **s) {
            renumber[r] = Some(hits.len() as u32);
            hits.push(old.hits[r].clone());
            stamps.push(old.stamps[r].clone());
        }
        let first_added = hits.len() as u32;
        let mut added = Vec::new();
        let mut hashes: Vec<String> = changed.iter().map(|(h, _)| h.clone()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        for chunk in hashes.chunks(512) {
            let list = chunk.iter().map(|h| crate::query::sql_string(h)).collect::<Vec<_>>().join(",");
            let rows = self.read_rows(column, dim, Some(format!("content_hash IN ({list})"))).await?;
            for ((hit, stamp), v) in rows.hits.into_iter().zip(rows.stamps).zip(rows.vectors.chunks_exact(dim)) {
                // Another path of the same content may be unchanged (and kept already).
                if changed.remove(&(hit.content_hash.clone(), hit.path.clone())) {
                    hits.push(hit);
                    stamps.push(stamp);
                    added.extend_from_slice(v);
                }
            }
        }
        let old_ivf = Arc::clone(&old.ivf);
        let ivf = off_the_async_threads(self, column, move || old_ivf.update(&renumber, &added, first_added)).await?;
        Ok(Some(Snapshot { version, hits, stamps, ivf: Arc::new(ivf) }))
    }

    /// The hit columns, stamps and unit vectors of the rows with a vector in `column` (and
    /// matching `filter`).
    async fn read_rows(&self, column: &str, dim: usize, filter: Option<String>) -> Result<Rows, StoreError> {
        let only = match filter {
            Some(f) => format!("{column} IS NOT NULL AND ({f})"),
            None => format!("{column} IS NOT NULL"),
        };
        let select = ["content_hash", "path", "kind", "duration_s", "labels", "models", "indexed_at", column];
        let batches =
            self.collect(self.media.query().only_if(only).select(Select::columns(&select)), Self::lance).await?;
        let mut rows = Rows::default();
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            let (column_vectors, models, at) = (b.vectors(column)?, b.strings("models")?, b.timestamps("indexed_at")?);
            // The hit columns read the way search results are, row for row.
            let batch_hits = read_hits(self.source(MEDIA_TABLE), std::slice::from_ref(batch), None, |s| s)?;
            for (i, hit) in b.rows().zip(batch_hits) {
                let Some(mut v) = column_vectors.vector(i)? else { continue };
                if v.len() != dim {
                    continue;
                }
                // Unit length, so the inner product is the cosine similarity.
                medley_core::l2_normalize(&mut v);
                rows.vectors.extend_from_slice(&v);
                rows.hits.push(hit);
                rows.stamps.push((models.str(i)?.into(), at.value(i)?));
            }
        }
        Ok(rows)
    }

    /// The unfiltered nearest rows of `media` on `column` from the in-memory copy, when the
    /// column is kept.
    pub(crate) fn nearest_in_memory(&self, column: &str, query: &[f32], k: usize) -> Option<Vec<SearchHit>> {
        let snapshot = self.memory.get(column)?;
        let mut unit = query.to_vec();
        medley_core::l2_normalize(&mut unit);
        let found = snapshot.ivf.search(&unit, k, SEARCH_NPROBES);
        Some(found.into_iter().map(|(row, score)| SearchHit { score, ..snapshot.hits[row as usize].clone() }).collect())
    }
}
