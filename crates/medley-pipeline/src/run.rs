//! An index run: files flow through hashing, decoding and encoding, and commits, joined by
//! bounded buffers; per-file problems become `failures` rows; commits that race another writer
//! are retried; new items get Semantic IDs when the table has a codebook.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{StreamExt, future, stream};
use medley_core::now_us;
use medley_store::{FailureRow, ItemSegments, MediaRow, RunRow, SidRow, Staged, Store, StoreError};

use crate::clock::Busy;
use crate::error::catch_panics;
use crate::item::{Indexed, build_item};
use crate::models::ModelSet;
use crate::options::IndexOptions;
use crate::sids::{SidAssigner, SidError};
use crate::summary::{Event, FailureSummary, Partial, Summary};
use crate::{Discovery, Encoders, FileError, Stage, hash_file};

/// Attempts after a commit lost a race with another writer.
const COMMIT_RETRIES: u32 = 5;

/// Files hashed ahead of the decode-and-encode stage.
const HASH_AHEAD: usize = 4;
/// Finished items wait at most this long for their commit, even while a long file is still
/// being indexed and `commit_every` is not reached: a run that is killed loses at most this much
/// finished work (a GPU run killed during a 10-minute film had 12 finished files uncommitted).
const COMMIT_AFTER: Duration = Duration::from_secs(30);

pub struct Indexer {
    models: Arc<ModelSet>,
    store: Store,
    opts: IndexOptions,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    /// Set for a worker of a many-machine run: rows are written as uncommitted data files,
    /// gathered here for one committer, instead of being committed.
    staged: Option<Mutex<Staged>>,
    /// A staging worker's view of the items already in `media`, read at its first task: every
    /// task reading the whole table again would cost as much as the table, while what other
    /// tasks of the run add meanwhile are other files (copies of one content in two tasks are
    /// found at commit).
    known: Mutex<Option<Arc<HashMap<String, String>>>>,
}

/// Where a file is after hashing.
enum Hashed {
    /// To decode and encode, with its content hash.
    Build(String),
    AlreadyIndexed,
    Failed(FileError),
}

/// Where a file ends up.
enum Done {
    Indexed(Box<Indexed>),
    AlreadyIndexed,
    /// With the content hash when the file could be read.
    Failed(FileError, Option<String>),
    /// Hashed ahead, but the run was stopped before its decoding began: left for the next run.
    NotStarted,
}

/// What is gathered between two commits.
#[derive(Default)]
struct Batch {
    rows: Vec<MediaRow>,
    segments: Vec<ItemSegments>,
    failures: Vec<FailureRow>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.failures.is_empty() && self.segments.is_empty()
    }
}

/// Rows a commit wrote, counted as each write lands (a retried commit writes only what the
/// attempt before did not).
#[derive(Default)]
struct Written {
    segments: AtomicU64,
    rows: AtomicU64,
}

/// Per-stage counts of the run in progress, for progress bars (read while it runs).
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicUsize,
    pub hashed: AtomicUsize,
    /// Files being decoded and encoded now.
    pub building: AtomicUsize,
    /// Files through the decode-and-encode stage (skipped ones pass straight through).
    pub built: AtomicUsize,
    /// `media` rows and failures committed.
    pub committed: AtomicUsize,
    pub commits: AtomicUsize,
}

impl Progress {
    fn reset(&self, files: usize) {
        for c in [&self.hashed, &self.building, &self.built, &self.committed, &self.commits] {
            c.store(0, Ordering::Relaxed);
        }
        self.files.store(files, Ordering::Relaxed);
    }
}

impl Indexer {
    pub fn new(encoders: Arc<Encoders>, store: Store, opts: IndexOptions) -> Self {
        Self::with_models(encoders.model_set(), store, opts)
    }

    /// An indexer over any models behind the [`crate::models`] traits (stubs in tests).
    pub fn with_models(models: ModelSet, store: Store, opts: IndexOptions) -> Self {
        Self {
            models: Arc::new(models),
            store,
            opts,
            stop: Arc::new(AtomicBool::new(false)),
            progress: Arc::default(),
            staged: None,
            known: Mutex::default(),
        }
    }

    /// Stage rows instead of committing them (a worker of a many-machine run): every item
    /// already in `media` is skipped, whatever models indexed it (re-indexing with other
    /// models is `medley index`'s keyed merge); no Semantic IDs, index upkeep or `runs` row,
    /// which are the committer's. [`Self::take_staged`] hands the rows over.
    pub fn staging(mut self) -> Self {
        self.staged = Some(Mutex::default());
        self
    }

    /// The rows staged so far (emptied).
    pub fn take_staged(&self) -> Staged {
        self.staged
            .as_ref()
            .map(|s| std::mem::take(&mut *s.lock().unwrap_or_else(PoisonError::into_inner)))
            .unwrap_or_default()
    }

    /// Per-stage counts of the run in progress.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Set it to stop after the files in progress; what is done is committed and the run recorded.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Index every discovered file. Per-file problems become `failures` rows and the run
    /// goes on; only a database error ends it (rows committed before it stay committed).
    pub async fn run(
        &self,
        discovery: &Discovery,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Summary, StoreError> {
        let started = Instant::now();
        let started_at_us = now_us();
        let mut summary = Summary {
            files: discovery.files.len(),
            skipped_not_media: discovery.skipped.len(),
            unfinished: discovery.unfinished.iter().map(|p| p.display().to_string()).collect(),
            ..Default::default()
        };
        let used = self.models.config.runtime.used;
        summary.device = used.map_or(medley_models::Device::Cpu, |u| u.device).to_string();
        summary.hwaccel = used.map_or(medley_media::HwAccel::None, |u| u.hwaccel).to_string();
        let models = self.models.id.as_str();
        let clock_before = self.models.clock.snapshot();
        let staging = self.staged.is_some();
        let known = self.known_items(staging).await?;
        // A staging worker assigns no IDs: `sid_assigner` also writes IDs for items without.
        let mut sids = if staging {
            None
        } else {
            match self.sid_assigner(&known, &mut summary).await {
                Ok(a) => a,
                Err(e) => sid_failed(e, &mut summary)?,
            }
        };
        let mut batch = Batch::default();
        let progress = &self.progress;
        progress.reset(discovery.files.len());

        // Three stages joined by bounded buffers, so each waits for the next when it is ahead:
        // hashing runs up to HASH_AHEAD files ahead (one at a time: it reads whole files),
        // `workers` files decode and encode at once (CPU work on the blocking pool; the
        // models are shared), and this loop gathers results into commits.
        let stop = self.stop.clone();
        let mut claimed: HashSet<String> = HashSet::new();
        // Items are indices into `discovery.files`: closures over borrowed paths are not
        // general enough for a future the server spawns (rust-lang/rust#102211).
        let files = &discovery.files;
        let hashed = stream::iter(largest_first(files))
            .take_while(move |_| future::ready(!stop.load(Ordering::Relaxed)))
            .map(|i| self.hash(i, &files[i]))
            .buffered(HASH_AHEAD)
            .map(|(i, hash)| {
                progress.hashed.fetch_add(1, Ordering::Relaxed);
                match hash {
                    // Done by the same models before, or a copy of a file this run indexes.
                    Ok(h) if known.get(&h).is_some_and(|m| staging || m == models) || !claimed.insert(h.clone()) => {
                        (i, Hashed::AlreadyIndexed)
                    }
                    Ok(h) => (i, Hashed::Build(h)),
                    Err(e) => (i, Hashed::Failed(e)),
                }
            });
        let mut built =
            hashed.map(|(i, step)| self.build(i, &files[i], step)).buffer_unordered(self.opts.workers.max(1));
        let mut seen = 0;
        let mut last_commit = Instant::now();
        loop {
            let pending = !batch.rows.is_empty() || !batch.failures.is_empty();
            let next = if pending {
                // `next` on a stream is cancel-safe: a timeout loses no item.
                match tokio::time::timeout(COMMIT_AFTER.saturating_sub(last_commit.elapsed()), built.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.commit(&mut batch, &mut sids, &mut summary).await?;
                        last_commit = Instant::now();
                        continue;
                    }
                }
            } else {
                built.next().await
            };
            let Some((i, done)) = next else { break };
            if matches!(done, Done::NotStarted) {
                continue;
            }
            seen += 1;
            let path = files[i].as_path();
            match done {
                Done::Indexed(item) => {
                    let Indexed { row, segments } = *item;
                    let media_s = row.duration_s.unwrap_or(0.0);
                    summary.indexed += 1;
                    summary.media_seconds += media_s;
                    let partial = row.partial.then(|| Partial {
                        path: path.display().to_string(),
                        decoded_s: media_s,
                        declared_s: row.declared_duration_s.unwrap_or(f64::NAN),
                    });
                    batch.segments.push(ItemSegments {
                        content_hash: row.content_hash.clone(),
                        path: row.path.clone(),
                        kind: row.kind.clone(),
                        models: row.models.clone(),
                        segments,
                    });
                    batch.rows.push(row);
                    match partial {
                        Some(p) => {
                            summary.partial.push(p);
                            on_event(Event::Indexed { path, media_s, partial: summary.partial.last() });
                        }
                        None => on_event(Event::Indexed { path, media_s, partial: None }),
                    }
                }
                Done::NotStarted => {}
                Done::AlreadyIndexed => {
                    summary.already_indexed += 1;
                    on_event(Event::AlreadyIndexed(path));
                }
                Done::Failed(err, content_hash) => {
                    summary.failed += 1;
                    on_event(Event::Failed(&err));
                    batch.failures.push(FailureRow {
                        path: err.path.display().to_string(),
                        content_hash,
                        stage: err.stage.as_str().into(),
                        error_kind: err.kind.clone(),
                        message: err.message.clone(),
                        failed_at_us: now_us(),
                    });
                    summary.failures.push(FailureSummary {
                        path: err.path.display().to_string(),
                        stage: err.stage.as_str(),
                        kind: err.kind,
                        message: err.message,
                    });
                }
            }
            if batch.rows.len() + batch.failures.len() >= self.opts.commit_every.max(1)
                || last_commit.elapsed() >= COMMIT_AFTER
            {
                self.commit(&mut batch, &mut sids, &mut summary).await?;
                last_commit = Instant::now();
            }
        }
        drop(built);
        summary.interrupted = seen < discovery.files.len();
        self.commit(&mut batch, &mut sids, &mut summary).await?;
        if staging {
            summary.wall_seconds = started.elapsed().as_secs_f64();
            summary.stage_seconds = self.models.clock.since(&clock_before);
            return Ok(summary);
        }
        if summary.rows_written + summary.segments_written > 0 {
            // Not fatal: the rows are in, searches scan unindexed rows, and `medley optimize`
            // builds what is missing.
            let started = Instant::now();
            match self.store.maintain_indexes().await {
                Ok(done) => summary.index_upkeep = done,
                Err(e) => summary.warn(format!("index upkeep failed ({e}); `medley optimize` will build the indexes")),
            }
            self.models.clock.add(Busy::Write, started);
        }
        summary.wall_seconds = started.elapsed().as_secs_f64();
        summary.stage_seconds = self.models.clock.since(&clock_before);
        let run = RunRow {
            run_id: format!("{started_at_us:x}-{:x}", std::process::id()),
            command: self.opts.command.clone(),
            medley_version: env!("CARGO_PKG_VERSION").into(),
            models: models.to_string(),
            shard: self.opts.shard.clone(),
            files: summary.files as u64,
            indexed: summary.indexed as u64,
            already_indexed: summary.already_indexed as u64,
            skipped: (summary.skipped_not_media + summary.unfinished.len()) as u64,
            failed: summary.failed as u64,
            interrupted: summary.interrupted,
            media_seconds: summary.media_seconds,
            wall_seconds: summary.wall_seconds,
            started_at_us,
            finished_at_us: now_us(),
            device: Some(summary.device.clone()),
            hwaccel: Some(summary.hwaccel.clone()),
        };
        let mut warnings = Vec::new();
        let recorded = retry_races(&self.store, &mut warnings, "the run record", || self.store.record_run(&run)).await;
        warnings.into_iter().for_each(|w| summary.warn(w));
        recorded?;
        Ok(summary)
    }

    /// Embed one file without writing it (for `similar FILE`).
    pub async fn embed(&self, path: &Path) -> Result<MediaRow, FileError> {
        let (models, opts, p) = (self.models.clone(), self.opts.clone(), path.to_path_buf());
        blocking(path, Stage::Read, move || {
            let hash = hash_file(&p).map_err(|e| FileError::new(&p, Stage::Read, "io", e))?;
            build_item(&models, &opts, &p, hash).map(|item| item.row)
        })
        .await
    }

    /// Write a batch: segments, then rows and failures (an item's `media` row is what marks it
    /// done, so it goes last), then the new items' Semantic IDs (when the table has a codebook).
    /// The IDs are chosen once, before the writes, so a retried commit writes the same ones.
    async fn commit(
        &self,
        batch: &mut Batch,
        sids: &mut Option<SidAssigner>,
        summary: &mut Summary,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids = match sids.as_mut().map(|a| a.assign_rows(&batch.rows)) {
            Some(Ok(ids)) => ids,
            Some(Err(e)) => {
                *sids = sid_failed(e, summary)?;
                Vec::new()
            }
            None => Vec::new(),
        };
        let started = Instant::now();
        if let Some(staged) = &self.staged {
            let mut files = Staged::default();
            self.store.stage(&batch.rows, &batch.segments, &batch.failures, &mut files).await?;
            staged.lock().unwrap_or_else(PoisonError::into_inner).merge(files);
            summary.rows_written += batch.rows.len() as u64;
            summary.segments_written += batch.segments.iter().map(|s| s.segments.len() as u64).sum::<u64>();
            self.committed(batch, started);
            return Ok(());
        }
        let written = Written::default();
        let batch_ref = &*batch;
        let mut warnings = Vec::new();
        let result =
            retry_races(&self.store, &mut warnings, "a batch", || self.write_batch(batch_ref, &ids, &written)).await;
        warnings.into_iter().for_each(|w| summary.warn(w));
        result?;
        summary.segments_written += written.segments.load(Ordering::Relaxed);
        summary.rows_written += written.rows.load(Ordering::Relaxed);
        summary.sids_assigned += ids.len();
        self.committed(batch, started);
        Ok(())
    }

    /// Count a written batch and empty it.
    fn committed(&self, batch: &mut Batch, started: Instant) {
        self.models.clock.add(Busy::Write, started);
        self.progress.committed.fetch_add(batch.rows.len() + batch.failures.len(), Ordering::Relaxed);
        self.progress.commits.fetch_add(1, Ordering::Relaxed);
        *batch = Batch::default();
    }

    async fn write_batch(&self, batch: &Batch, ids: &[SidRow], written: &Written) -> Result<(), StoreError> {
        let segments = self.store.upsert_segments(&batch.segments).await?;
        written.segments.fetch_add(segments, Ordering::Relaxed);
        let rows = self.store.upsert_media(&batch.rows).await?;
        written.rows.fetch_add(rows, Ordering::Relaxed);
        self.store.record_failures(&batch.failures).await?;
        if !ids.is_empty() {
            self.store.save_sids(ids).await?;
        }
        Ok(())
    }

    /// The items already in `media`, with the models that indexed each: read for every run,
    /// but only once for a staging worker (see `known`).
    async fn known_items(&self, staging: bool) -> Result<Arc<HashMap<String, String>>, StoreError> {
        let cached = self.known.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match cached {
            Some(known) if staging => Ok(known),
            _ => {
                let known = Arc::new(self.store.indexed().await?);
                if staging {
                    *self.known.lock().unwrap_or_else(PoisonError::into_inner) = Some(known.clone());
                }
                Ok(known)
            }
        }
    }

    /// The latest codebook's assigner, after giving IDs to indexed items that have none (an
    /// earlier run stopped between writing rows and their IDs, or rows indexed before the
    /// codebook was trained).
    async fn sid_assigner(
        &self,
        known: &HashMap<String, String>,
        summary: &mut Summary,
    ) -> Result<Option<SidAssigner>, SidError> {
        let Some(mut assigner) = SidAssigner::load(&self.store).await? else { return Ok(None) };
        if known.keys().any(|h| !assigner.has(h)) {
            let items = self.store.item_vectors(&assigner.columns()).await?;
            let ids = assigner.assign(&items)?;
            self.store.save_sids(&ids).await?;
            summary.sids_assigned += ids.len();
        }
        Ok(Some(assigner))
    }

    /// The hash stage: a file's content hash, on the blocking pool.
    async fn hash(&self, i: usize, path: &Path) -> (usize, Result<String, FileError>) {
        let (models, p) = (self.models.clone(), path.to_path_buf());
        // Timed inside the task: a finished stage may wait for the next to take its result.
        let hash = blocking(path, Stage::Read, move || {
            models.clock.time(Busy::Hash, || hash_file(&p).map_err(|e| FileError::new(&p, Stage::Read, "io", e)))
        })
        .await;
        (i, hash)
    }

    /// FFmpeg threads for the file starting now: the decoding threads shared among the files
    /// that will be in flight with it. Threads beyond a file's share fight the models for the
    /// cores: on 2 cores with 2 files in flight, one thread each took 0.93x the wall time and
    /// 0.96x the CPU time of two each (bench media, five runs each, interleaved). A file with
    /// none left to join it (the last, or the only one) gets them all.
    fn decoder_threads(&self) -> usize {
        let p = &self.progress;
        let started = p.built.load(Ordering::Relaxed) + p.building.load(Ordering::Relaxed);
        let left = p.files.load(Ordering::Relaxed).saturating_sub(started);
        threads_per_decoder(self.opts.decode_threads, self.opts.workers, left)
    }

    /// The decode-and-encode stage: a hashed file's rows, on the blocking pool; other files
    /// pass through.
    async fn build(&self, i: usize, path: &Path, hashed: Hashed) -> (usize, Done) {
        let progress = &self.progress;
        let passed = match hashed {
            Hashed::Build(hash) => Ok(hash),
            Hashed::AlreadyIndexed => Err(Done::AlreadyIndexed),
            Hashed::Failed(e) => Err(Done::Failed(e, None)),
        };
        let hash = match passed {
            // Stopped (Ctrl-C) while this file waited, hashed, for a worker: the run ends with
            // the files in progress, not with those hashed ahead.
            Ok(_) if self.stop.load(Ordering::Relaxed) => return (i, Done::NotStarted),
            Ok(hash) => hash,
            Err(done) => {
                progress.built.fetch_add(1, Ordering::Relaxed);
                return (i, done);
            }
        };
        let mut opts = self.opts.clone();
        opts.decode_threads = self.decoder_threads();
        progress.building.fetch_add(1, Ordering::Relaxed);
        let (models, p, h) = (self.models.clone(), path.to_path_buf(), hash.clone());
        let item =
            blocking(path, Stage::Probe, move || models.clock.time(Busy::Build, || build_item(&models, &opts, &p, h)))
                .await;
        progress.building.fetch_sub(1, Ordering::Relaxed);
        progress.built.fetch_add(1, Ordering::Relaxed);
        match item {
            Ok(item) => (i, Done::Indexed(Box::new(item))),
            Err(e) => (i, Done::Failed(e, Some(hash))),
        }
    }
}

/// Await a write, again (on the store's latest versions) when it lost a race with another
/// process's commit (shards writing one dataset): medley's writes are keyed merges and appends
/// that did not happen when they failed, so a retry neither loses nor duplicates rows. Each
/// retry is reported in `warnings`.
async fn retry_races<T, F, Fut>(
    store: &Store,
    warnings: &mut Vec<String>,
    what: &str,
    mut write: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Err(e) if e.is_commit_race() && attempt < COMMIT_RETRIES => {
                attempt += 1;
                warnings.push(format!(
                    "writing {what} raced with another writer ({e}); retrying ({attempt}/{COMMIT_RETRIES})"
                ));
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                store.refresh().await?;
            }
            other => return other,
        }
    }
}

/// Run one file's CPU work off the async runtime; a panic becomes this file's failure, at the
/// stage it happened in, not the run's.
async fn blocking<T: Send + 'static>(
    path: &Path,
    stage: Stage,
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    let p: PathBuf = path.to_path_buf();
    match tokio::task::spawn_blocking(move || catch_panics(&p, stage, f)).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            Err(FileError::new(path, stage, "panic", crate::error::panic_message(&*e.into_panic())))
        }
        Err(e) => Err(FileError::new(path, stage, "cancelled", e)),
    }
}

/// Indices of `files`, largest first (ties in their given order). Files of a batch are claimed by
/// whichever worker is free, so a long file started last runs alone at the end while the other
/// workers idle; starting the big ones first (longest-processing-time order, with size standing
/// in for work) leaves the small ones to fill the gaps. On the bench media, the run ends 10%
/// sooner. A file that cannot be read sorts last and fails in its turn.
fn largest_first(files: &[PathBuf]) -> Vec<usize> {
    let sizes: Vec<u64> = files.iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).collect();
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    order
}

/// `threads` shared among the decoders of the files in flight together: at most `workers`,
/// and no more than the `left` files yet to start (this one included); at least one each.
fn threads_per_decoder(threads: usize, workers: usize, left: usize) -> usize {
    (threads / workers.min(left).max(1)).max(1)
}

/// A codebook that cannot be used stops ID assignment for the run, not the run; a database
/// error stops the run.
fn sid_failed(e: SidError, summary: &mut Summary) -> Result<Option<SidAssigner>, StoreError> {
    match e {
        SidError::Store(e) => Err(e),
        other => {
            summary.warn(format!("semantic IDs not assigned: {other}"));
            summary.sid_error = Some(other.to_string());
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders_share_the_threads_until_one_file_is_left() {
        assert_eq!(threads_per_decoder(2, 2, 12), 1);
        assert_eq!(threads_per_decoder(16, 8, 100), 2);
        assert_eq!(threads_per_decoder(2, 2, 1), 2, "the last file (or the only one) gets them all");
        assert_eq!(threads_per_decoder(2, 2, 0), 2);
        assert_eq!(threads_per_decoder(1, 4, 10), 1, "never none");
    }

    #[test]
    fn largest_files_go_first_and_ties_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = [("a", 10), ("b", 300), ("c", 10), ("d", 20)]
            .iter()
            .map(|(name, len)| {
                let p = dir.path().join(name);
                std::fs::write(&p, vec![0u8; *len]).unwrap();
                p
            })
            .chain([dir.path().join("missing")])
            .collect();
        assert_eq!(largest_first(&files), vec![1, 3, 0, 2, 4]);
    }
}
