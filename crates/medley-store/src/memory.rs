//! A serving copy of `media` vector columns in memory, for a process answering many searches
//! (`medley serve`). An unfiltered nearest-neighbour search on a kept column is answered from
//! it (an in-memory IVF index, exact within the lists it probes) instead of a LanceDB query,
//! whose planning, reading and decoding cost about 8 ms of CPU per search on 100k rows
//! (`cargo xtask bench serve`); a filtered search still goes to LanceDB. The copy follows the
//! table version the store reads: [`Store::refresh`] reloads it when the version moved.

use std::collections::HashMap;
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
    ivf: Ivf,
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
            let bytes = rows * dim * std::mem::size_of::<f32>();
            if bytes > left {
                continue;
            }
            left -= bytes;
            let old = self.memory.get(&column);
            let snapshot = match old {
                Some(s) if s.version == version => s,
                old => Arc::new(self.snapshot(&column, dim, version, old.map(|s| s.ivf.centres().clone())).await?),
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

    /// Read every row with a vector in `column` and index them (with `centres` when they still
    /// fit the row count; trained anew otherwise), off the async threads.
    async fn snapshot(
        &self,
        column: &str,
        dim: usize,
        version: u64,
        centres: Option<IvfCentres>,
    ) -> Result<Snapshot, StoreError> {
        let query = self.media.query().only_if(format!("{column} IS NOT NULL")).select(Select::columns(&[
            "content_hash",
            "path",
            "kind",
            "duration_s",
            "labels",
            column,
        ]));
        let batches = self.collect(query, Self::lance).await?;
        let mut vectors = Vec::new();
        let mut hits = Vec::new();
        for batch in &batches {
            let b = self.source(MEDIA_TABLE).batch(batch);
            let column_vectors = b.vectors(column)?;
            // The hit columns read the way search results are, row for row.
            let batch_hits = read_hits(self.source(MEDIA_TABLE), std::slice::from_ref(batch), None, |s| s)?;
            for (i, hit) in b.rows().zip(batch_hits) {
                let Some(mut v) = column_vectors.vector(i)? else { continue };
                if v.len() != dim {
                    continue;
                }
                // Unit length, so the inner product is the cosine similarity.
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                vectors.extend_from_slice(&v);
                hits.push(hit);
            }
        }
        let (tx, rx) = futures::channel::oneshot::channel();
        let n = hits.len();
        std::thread::Builder::new()
            .name("medley-memory-index".into())
            .spawn(move || {
                let centres = centres.filter(|c| c.fits(n)).unwrap_or_else(|| IvfCentres::train(&vectors, dim, SEED));
                let _ = tx.send(Ivf::build(&vectors, centres));
            })
            .map_err(|e| StoreError::Io { uri: self.uri.clone(), path: column.into(), source: e })?;
        let ivf = rx.await.map_err(|_| StoreError::Query {
            uri: self.uri.clone(),
            message: format!("building the in-memory index of {column} stopped"),
        })?;
        Ok(Snapshot { version, hits, ivf })
    }

    /// The unfiltered nearest rows of `media` on `column` from the in-memory copy, when the
    /// column is kept.
    pub(crate) fn nearest_in_memory(&self, column: &str, query: &[f32], k: usize) -> Option<Vec<SearchHit>> {
        let snapshot = self.memory.get(column)?;
        let norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
        let unit: Vec<f32> = query.iter().map(|x| if norm > 0.0 { x / norm } else { *x }).collect();
        let found = snapshot.ivf.search(&unit, k, SEARCH_NPROBES);
        Some(found.into_iter().map(|(row, score)| SearchHit { score, ..snapshot.hits[row as usize].clone() }).collect())
    }
}
