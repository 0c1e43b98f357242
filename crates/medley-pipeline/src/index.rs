use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use futures::{StreamExt, future, stream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use medley_media::{DecodeOptions, Frame, MediaKind, Probe};
use medley_models::{LabelBridge, ModelError};
use medley_store::{FailureRow, ItemSegments, Label, MediaRow, RunRow, SegmentRow, Store, StoreError};
use serde::Serialize;

use crate::clock::Busy;
use crate::config::SegmentBy;
use crate::segments::Segmenter;
use crate::sids::{SidAssigner, SidError};
use crate::{Discovery, Encoders, FileError, Stage};

/// Await a write, again (on the store's latest versions) when it lost a race with another
/// process's commit (shards writing one dataset): medley's writes are keyed merges and appends that did not happen when they
/// failed, so a retry neither loses nor duplicates rows. (A macro: an async closure borrowing
/// the batch would make the future not `Send` for the server.)
macro_rules! retry_races {
    ($store:expr, $write:expr) => {{
        let mut attempt = 0;
        loop {
            match $write.await {
                Err(e) if e.is_commit_race() && attempt < COMMIT_RETRIES => {
                    attempt += 1;
                    eprintln!(
                        "medley: a commit raced with another writer ({e}); retrying ({attempt}/{COMMIT_RETRIES})"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
                    $store.refresh().await?;
                }
                other => break other,
            }
        }
    }};
}

#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Frames per encoder call.
    pub frame_batch: usize,
    /// Audio windows per encoder call.
    pub window_batch: usize,
    /// Rows gathered before one table commit (each commit is a LanceDB version).
    pub commit_every: usize,
    /// FFmpeg decoder threads.
    pub decode_threads: usize,
    /// Labels kept per item.
    pub top_labels: usize,
    /// Files decoded and encoded at once.
    pub workers: usize,
    /// The command line, recorded in `runs`.
    pub command: String,
    /// `I/N` when this process indexes one shard of the input (recorded in `runs`).
    pub shard: Option<String>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self {
            frame_batch: 16,
            window_batch: 8,
            commit_every: 32,
            decode_threads: cores,
            top_labels: 5,
            // Several files in flight overlap one's decoding with another's inference; the
            // models' own threads already use every core, so on 2 cores one is as fast as two
            // (`cargo xtask bench pipeline`: 16.9 vs 16.3 media s/s).
            workers: (cores / 2).clamp(1, 4),
            command: String::new(),
            shard: None,
        }
    }
}

/// What happened to one file, for progress display.
#[derive(Debug)]
pub enum Event<'a> {
    Indexed { path: &'a Path, media_s: f64 },
    AlreadyIndexed(&'a Path),
    Failed(&'a FileError),
}

/// The outcome of a run; `failures` lists every file that failed, with stage and reason.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub files: usize,
    pub indexed: usize,
    pub already_indexed: usize,
    pub skipped_not_media: usize,
    pub failed: usize,
    pub rows_written: u64,
    /// `segments` rows inserted or updated.
    pub segments_written: u64,
    pub media_seconds: f64,
    pub wall_seconds: f64,
    /// True when the run was stopped (Ctrl-C) before every file was seen.
    pub interrupted: bool,
    pub failures: Vec<FailureSummary>,
    /// Busy seconds per stage (hash, decode, vision, audio, music, speech, text, write),
    /// summed over files: the largest is the bottleneck.
    pub stage_seconds: std::collections::BTreeMap<&'static str, f64>,
    /// Semantic IDs given with the table's latest codebook (none without one).
    pub sids_assigned: usize,
    /// Index upkeep after the writes: vector indexes built, new rows added to indexes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub index_upkeep: Vec<String>,
    /// Why IDs were not assigned, when the stored codebook could not be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FailureSummary {
    pub path: String,
    pub stage: &'static str,
    pub kind: String,
    pub message: String,
}

pub struct Indexer {
    encoders: Arc<Encoders>,
    store: Store,
    opts: IndexOptions,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
}

impl Indexer {
    pub fn new(encoders: Arc<Encoders>, store: Store, opts: IndexOptions) -> Self {
        Self { encoders, store, opts, stop: Arc::new(AtomicBool::new(false)), progress: Arc::default() }
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
        let mut summary =
            Summary { files: discovery.files.len(), skipped_not_media: discovery.skipped.len(), ..Default::default() };
        let models = self.encoders.models();
        let clock_before = self.encoders.clock.snapshot();
        let known = self.store.indexed().await?;
        let mut sids = match self.sid_assigner(&known, &mut summary).await {
            Ok(a) => a,
            Err(e) => sid_failed(e, &mut summary)?,
        };
        let mut batch = Batch::default();
        let progress = &self.progress;
        progress.reset(discovery.files.len());

        // Three stages joined by bounded buffers, so each waits for the next when it is ahead:
        // hashing runs up to HASH_AHEAD files ahead (one at a time: it reads whole files),
        // `workers` files decode and encode at once (CPU work on the blocking pool; the
        // models' sessions are shared), and this loop gathers results into commits.
        let stop = self.stop.clone();
        let mut claimed: HashSet<String> = HashSet::new();
        // Items are indices into `discovery.files`: closures over borrowed paths are not
        // general enough for a future the server spawns (rust-lang/rust#102211).
        let files = &discovery.files;
        let hashed = stream::iter(0..files.len())
            .take_while(move |_| future::ready(!stop.load(Ordering::Relaxed)))
            .map(|i| self.hash(i, &files[i]))
            .buffered(HASH_AHEAD)
            .map(|(i, hash)| {
                progress.hashed.fetch_add(1, Ordering::Relaxed);
                match hash {
                    // Done by the same models before, or a copy of a file this run indexes.
                    Ok(h) if known.get(&h).is_some_and(|m| *m == models) || !claimed.insert(h.clone()) => {
                        (i, Step::AlreadyIndexed)
                    }
                    Ok(h) => (i, Step::Build(h)),
                    Err(e) => (i, Step::Failed(e, None)),
                }
            });
        let mut built =
            hashed.map(|(i, step)| self.build(i, &files[i], step)).buffer_unordered(self.opts.workers.max(1));
        let mut seen = 0;
        while let Some((i, step)) = built.next().await {
            seen += 1;
            let path = files[i].as_path();
            match step {
                Step::Indexed(item) => {
                    let Indexed { row, segments } = *item;
                    let media_s = row.duration_s.unwrap_or(0.0);
                    summary.indexed += 1;
                    summary.media_seconds += media_s;
                    batch.segments.push(ItemSegments {
                        content_hash: row.content_hash.clone(),
                        path: row.path.clone(),
                        kind: row.kind.clone(),
                        models: row.models.clone(),
                        segments,
                    });
                    batch.rows.push(row);
                    on_event(Event::Indexed { path, media_s });
                }
                Step::AlreadyIndexed => {
                    summary.already_indexed += 1;
                    on_event(Event::AlreadyIndexed(path));
                }
                Step::Failed(err, content_hash) => {
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
                Step::Build(_) => unreachable!("the build stage resolves every file it is given"),
            }
            if batch.rows.len() + batch.failures.len() >= self.opts.commit_every {
                self.commit(&mut batch, &mut sids, &mut summary).await?;
            }
        }
        drop(built);
        summary.interrupted = seen < discovery.files.len();
        self.commit(&mut batch, &mut sids, &mut summary).await?;
        if summary.rows_written + summary.segments_written > 0 {
            // Not fatal: the rows are in, searches scan unindexed rows, and `medley optimize`
            // builds what is missing.
            let started = Instant::now();
            match self.store.maintain_indexes().await {
                Ok(done) => summary.index_upkeep = done,
                Err(e) => eprintln!("medley: index upkeep failed ({e}); `medley optimize` will build the indexes"),
            }
            self.encoders.clock.add(Busy::Write, started);
        }
        summary.wall_seconds = started.elapsed().as_secs_f64();
        summary.stage_seconds = self.encoders.clock.since(&clock_before);
        let run = RunRow {
            run_id: format!("{started_at_us:x}-{:x}", std::process::id()),
            command: self.opts.command.clone(),
            medley_version: env!("CARGO_PKG_VERSION").into(),
            models,
            shard: self.opts.shard.clone(),
            files: summary.files as u64,
            indexed: summary.indexed as u64,
            already_indexed: summary.already_indexed as u64,
            skipped: summary.skipped_not_media as u64,
            failed: summary.failed as u64,
            interrupted: summary.interrupted,
            media_seconds: summary.media_seconds,
            wall_seconds: summary.wall_seconds,
            started_at_us,
            finished_at_us: now_us(),
        };
        retry_races!(self.store, self.store.record_run(&run))?;
        Ok(summary)
    }

    /// Embed one file without writing it (for `similar FILE`).
    pub async fn embed(&self, path: &Path) -> Result<MediaRow, FileError> {
        let (enc, opts, p) = (self.encoders.clone(), self.opts.clone(), path.to_path_buf());
        blocking(path, Stage::Decode, move || {
            let hash = hash_file(&p).map_err(|e| FileError::new(&p, Stage::Read, "io", e))?;
            build_row(&enc, &opts, &p, hash).map(|item| item.row)
        })
        .await
    }

    /// Write a batch: segments, then rows and failures (an item's `media` row is what marks it
    /// done, so it goes last), then the new items' Semantic IDs (when the table has a codebook).
    async fn commit(
        &self,
        batch: &mut Batch,
        sids: &mut Option<SidAssigner>,
        summary: &mut Summary,
    ) -> Result<(), StoreError> {
        retry_races!(self.store, self.try_commit(batch, sids, summary))
    }

    async fn try_commit(
        &self,
        batch: &mut Batch,
        sids: &mut Option<SidAssigner>,
        summary: &mut Summary,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let segments = self.store.upsert_segments(&batch.segments).await?;
        let rows = self.store.upsert_media(&batch.rows).await?;
        self.store.record_failures(&batch.failures).await?;
        // Counted once the batch is in (a retried commit writes the same rows again).
        summary.segments_written += segments;
        summary.rows_written += rows;
        self.encoders.clock.add(Busy::Write, started);
        self.progress.committed.fetch_add(batch.rows.len() + batch.failures.len(), Ordering::Relaxed);
        self.progress.commits.fetch_add(1, Ordering::Relaxed);
        if let Some(assigner) = sids.as_mut() {
            match assigner.assign_rows(&batch.rows) {
                Ok(ids) => {
                    self.store.save_sids(&ids).await?;
                    summary.sids_assigned += ids.len();
                }
                Err(e) => *sids = sid_failed(e, summary)?,
            }
        }
        *batch = Batch::default();
        Ok(())
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
        let (enc, p) = (self.encoders.clone(), path.to_path_buf());
        // Timed inside the task: a finished stage may wait for the next to take its result.
        let hash = blocking(path, Stage::Read, move || {
            enc.clock.time(Busy::Hash, || hash_file(&p).map_err(|e| FileError::new(&p, Stage::Read, "io", e)))
        })
        .await;
        (i, hash)
    }

    /// The decode-and-encode stage: a hashed file's rows, on the blocking pool; other steps
    /// pass through.
    async fn build(&self, i: usize, path: &Path, step: Step) -> (usize, Step) {
        let progress = &self.progress;
        let Step::Build(hash) = step else {
            progress.built.fetch_add(1, Ordering::Relaxed);
            return (i, step);
        };
        progress.building.fetch_add(1, Ordering::Relaxed);
        let (enc, opts, p, h) = (self.encoders.clone(), self.opts.clone(), path.to_path_buf(), hash.clone());
        let item =
            blocking(path, Stage::Decode, move || enc.clock.time(Busy::Build, || build_row(&enc, &opts, &p, h))).await;
        progress.building.fetch_sub(1, Ordering::Relaxed);
        progress.built.fetch_add(1, Ordering::Relaxed);
        match item {
            Ok(item) => (i, Step::Indexed(Box::new(item))),
            Err(e) => (i, Step::Failed(e, Some(hash))),
        }
    }
}

/// What is gathered between two commits.
#[derive(Default)]
struct Batch {
    rows: Vec<MediaRow>,
    segments: Vec<ItemSegments>,
    failures: Vec<FailureRow>,
}

/// Attempts after a commit lost a race with another writer.
const COMMIT_RETRIES: u32 = 5;

/// Files hashed ahead of the decode-and-encode stage.
const HASH_AHEAD: usize = 4;

/// Where a file is in the stages.
enum Step {
    /// Hashed, not indexed yet: to decode and encode.
    Build(String),
    Indexed(Box<Indexed>),
    AlreadyIndexed,
    /// With the content hash when the file could be read.
    Failed(FileError, Option<String>),
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

/// Run CPU work off the async runtime; a panic becomes this file's failure, not the run's.
async fn blocking<T: Send + 'static>(
    path: &Path,
    stage: Stage,
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(FileError::new(path, stage, "panic", e)),
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// A file's content hash (BLAKE3, hex): the item id in every table.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Running mean of equal-length vectors.
pub(crate) struct MeanPool {
    sum: Vec<f64>,
    count: usize,
}

impl MeanPool {
    fn new() -> Self {
        Self { sum: Vec::new(), count: 0 }
    }
    pub(crate) fn add(&mut self, v: &[f32]) {
        if self.sum.is_empty() {
            self.sum = vec![0.0; v.len()];
        }
        self.sum.iter_mut().zip(v).for_each(|(s, x)| *s += f64::from(*x));
        self.count += 1;
    }
    pub(crate) fn mean(&self) -> Option<Vec<f32>> {
        (self.count > 0).then(|| self.sum.iter().map(|s| (s / self.count as f64) as f32).collect())
    }
}

/// Frames in, batched image-encoder calls, pooled embedding and class probabilities out.
struct VisualAccumulator<'a> {
    enc: &'a Encoders,
    batch: usize,
    pending: Vec<Frame>,
    /// With a captioner: the frame nearest `middle_s` so far (the one it captions).
    middle_s: f64,
    middle: Option<Frame>,
    embedding: MeanPool,
    probabilities: MeanPool,
    segmenter: &'a RefCell<Segmenter>,
    error: Option<ModelError>,
}

impl VisualAccumulator<'_> {
    fn push(&mut self, frame: Frame) {
        let nearer = |f: &Frame| (f.pts_s - self.middle_s).abs();
        if self.enc.captioner.is_some() && self.middle.as_ref().is_none_or(|m| nearer(&frame) < nearer(m)) {
            self.middle = Some(frame.clone());
        }
        self.pending.push(frame);
        if self.pending.len() >= self.batch {
            self.flush();
        }
    }
    fn flush(&mut self) {
        if self.error.is_none() && !self.pending.is_empty() {
            let (times, images): (Vec<_>, Vec<_>) = self.pending.drain(..).map(|f| ((f.pts_s, f.shot), f.rgb)).unzip();
            match self.enc.clock.time(Busy::Vision, || self.enc.image_batches.submit_many(images)) {
                Ok(outs) => outs.iter().zip(times).for_each(|(o, (pts_s, shot))| {
                    self.embedding.add(&o.embedding);
                    self.probabilities.add(&o.probabilities);
                    self.segmenter.borrow_mut().frame(pts_s, shot, &o.embedding, &o.probabilities);
                }),
                Err(e) => self.error = Some(e),
            }
        }
        self.pending.clear();
    }
}

/// Mono samples in, fixed windows cut, batched audio-encoder calls, pooled embedding out.
struct AudioAccumulator<'a> {
    enc: &'a Encoders,
    batch: usize,
    buffer: Vec<f32>,
    windows: Vec<Vec<f32>>,
    embedding: MeanPool,
    segmenter: &'a RefCell<Segmenter>,
    error: Option<ModelError>,
}

impl AudioAccumulator<'_> {
    fn push(&mut self, samples: &[f32]) {
        let w = self.enc.audio.window();
        self.buffer.extend_from_slice(samples);
        while self.buffer.len() >= w {
            let rest = self.buffer.split_off(w);
            let window = std::mem::replace(&mut self.buffer, rest);
            self.add_window(window);
        }
    }
    fn add_window(&mut self, mut window: Vec<f32>) {
        // aiSFX was trained on peak-normalised audio. Normalising per window (not per file)
        // keeps decoding streaming; the floor keeps near-silence from being blown up to noise.
        let peak = window.iter().fold(0f32, |m, x| m.max(x.abs()));
        if peak > 1e-3 {
            window.iter_mut().for_each(|x| *x /= peak);
        }
        self.windows.push(window);
        if self.windows.len() >= self.batch {
            self.flush();
        }
    }
    /// The tail becomes a zero-padded window if it holds at least a second of sound, or if
    /// the whole file is shorter than one window (so short clips still get a vector).
    fn finish(&mut self) {
        let (w, rate) = (self.enc.audio.window(), self.enc.audio.sample_rate() as usize);
        let tail = std::mem::take(&mut self.buffer);
        if tail.len() >= rate || (self.embedding.count == 0 && self.windows.is_empty() && tail.len() >= rate / 10) {
            let mut padded = tail;
            padded.resize(w, 0.0);
            self.add_window(padded);
        }
        self.flush();
    }
    fn flush(&mut self) {
        if self.error.is_none() && !self.windows.is_empty() {
            let refs: Vec<&[f32]> = self.windows.iter().map(Vec::as_slice).collect();
            let window_s = self.enc.audio.window() as f64 / f64::from(self.enc.audio.sample_rate());
            match self.enc.clock.time(Busy::Audio, || self.enc.audio.encode(&refs)) {
                Ok(outs) => outs.iter().for_each(|o| {
                    let middle_s = (self.embedding.count as f64 + 0.5) * window_s;
                    self.segmenter.borrow_mut().audio(middle_s, o);
                    self.embedding.add(o);
                }),
                Err(e) => self.error = Some(e),
            }
        }
        self.windows.clear();
    }
}

/// One file's `media` row and its `segments` rows.
pub(crate) struct Indexed {
    pub row: MediaRow,
    pub segments: Vec<SegmentRow>,
}

/// Probe, decode and encode one file into its `media` and `segments` rows.
fn build_row(enc: &Encoders, opts: &IndexOptions, path: &Path, content_hash: String) -> Result<Indexed, FileError> {
    let probe = medley_media::probe(path).map_err(|e| FileError::media(Stage::Probe, e))?;
    // Pictures have no time to cut.
    let segment_by = if probe.kind == MediaKind::Image { SegmentBy::None } else { enc.config.segment_by() };
    let segmenter = RefCell::new(Segmenter::new(segment_by, enc.config.segments.window_s));
    let stages = enc.config.stages;
    let has_sound = probe.audio.is_some() && probe.kind != MediaKind::Image;
    let decode_opts = DecodeOptions {
        sampler: Some(enc.config.sampler()),
        frame_size: stages.vision.then(|| enc.image.input_size()),
        audio_rate: (stages.audio && has_sound).then(|| enc.audio.sample_rate()),
        threads: opts.decode_threads,
        ..Default::default()
    };
    let mut visual = VisualAccumulator {
        enc,
        batch: opts.frame_batch,
        pending: Vec::new(),
        middle_s: probe.duration_s.unwrap_or(0.0) / 2.0,
        middle: None,
        embedding: MeanPool::new(),
        probabilities: MeanPool::new(),
        segmenter: &segmenter,
        error: None,
    };
    let mut audio = AudioAccumulator {
        enc,
        batch: opts.window_batch,
        buffer: Vec::new(),
        windows: Vec::new(),
        embedding: MeanPool::new(),
        segmenter: &segmenter,
        error: None,
    };
    let stats = medley_media::decode(&probe, &decode_opts, &mut |f| visual.push(f), &mut |s| audio.push(s))
        .map_err(|e| FileError::media(Stage::Decode, e))?;
    visual.flush();
    audio.finish();
    if let Some(e) = visual.error.or(audio.error) {
        return Err(FileError::new(path, Stage::Encode, "model", e));
    }
    let heard = if has_sound && (enc.music.is_some() || enc.speech.is_some()) {
        listen(enc, &probe, opts, &segmenter)?
    } else {
        Heard::default()
    };

    let probabilities = visual.probabilities.mean();
    let labels =
        probabilities.as_deref().map(|p| top_labels(p, enc.image.labels(), opts.top_labels)).unwrap_or_default();
    let music_probabilities = heard.tags.mean();
    let music_tags = match (&enc.music, &music_probabilities) {
        (Some(m), Some(p)) => top_labels(p, m.tagger.labels(), opts.top_labels),
        _ => Vec::new(),
    };
    // The bridge puts an item in the text space: from its pictures' labels, or for sound
    // alone from its music tags.
    let bridge = match (&probabilities, &enc.music, &music_probabilities) {
        (Some(p), _, _) => Some(enc.bridge.project(p)),
        (None, Some(m), Some(p)) => Some(m.bridge.project(p)),
        _ => None,
    };
    let text = match &heard.transcript {
        Some(t) => {
            let embedded = enc.clock.time(Busy::Text, || enc.text.encode(&[t.as_str()]));
            Some(embedded.map_err(|e| FileError::new(path, Stage::Encode, "model", e))?.remove(0))
        }
        None => None,
    };
    let duration_s = probe.duration_s.or_else(|| match probe.kind {
        MediaKind::Image => None,
        _ => stats.last_video_pts_s.or_else(|| {
            (stats.audio_samples > 0).then(|| stats.audio_samples as f64 / f64::from(enc.audio.sample_rate()))
        }),
    });
    let description = match (&enc.captioner, &visual.middle) {
        (Some(c), Some(frame)) => {
            let opts = medley_models::GenerateOptions { max_new_tokens: 30, ..Default::default() };
            let caption = enc.clock.time(Busy::Caption, || c.caption_square(&frame.rgb, frame.size, &opts));
            caption.map_err(|e| FileError::new(path, Stage::Encode, "model", e))?
        }
        _ => describe(&probe, duration_s, &labels, &music_tags, heard.transcript.as_deref()),
    };
    let mut row = media_row(
        &probe,
        content_hash,
        duration_s,
        &stats,
        visual.embedding.mean(),
        audio.embedding,
        bridge,
        labels,
        enc.models(),
    );
    row.music = heard.embedding.mean();
    row.music_tags = music_tags;
    row.text = text;
    row.transcript = heard.transcript;
    row.language = heard.language;
    row.description = description;
    let segments = segmenter
        .into_inner()
        .finish(enc, duration_s, &stats.shots, &heard.speech, opts.top_labels)
        .map_err(|e| FileError::new(path, Stage::Encode, "model", e))?;
    Ok(Indexed { row, segments })
}

pub(crate) fn top_labels(probabilities: &[f32], names: &[String], k: usize) -> Vec<Label> {
    LabelBridge::top(probabilities, k).into_iter().map(|(i, score)| Label { label: names[i].clone(), score }).collect()
}

/// What the 16 kHz stages found: music tags and embedding, and a transcript.
#[derive(Default)]
struct Heard {
    tags: MeanPool,
    embedding: MeanPool,
    transcript: Option<String>,
    language: Option<String>,
    /// The transcript's timed pieces, for the segments.
    speech: Vec<medley_models::Segment>,
}

impl Default for MeanPool {
    fn default() -> Self {
        Self::new()
    }
}

/// A second, audio-only pass at 16 kHz for the music tagger and speech recognition.
/// Audio-only decoding runs at well over 1000x realtime, so this costs little next to the
/// models, and keeps the first pass at the audio encoder's own rate.
fn listen(
    enc: &Encoders,
    probe: &Probe,
    opts: &IndexOptions,
    segmenter: &RefCell<Segmenter>,
) -> Result<Heard, FileError> {
    const RATE: u32 = 16_000;
    let path = probe.path.as_path();
    let model_err = |e: ModelError| FileError::new(path, Stage::Encode, "model", e);
    let window = enc.music.as_ref().map_or(0, |m| m.tagger.window());
    let mut heard = Heard::default();
    let mut buffer: Vec<f32> = Vec::new();
    let mut windows: Vec<Vec<f32>> = Vec::new();
    let mut speech: Vec<f32> = Vec::new();
    let mut error = None;
    let tag = |windows: &mut Vec<Vec<f32>>, heard: &mut Heard, error: &mut Option<ModelError>| {
        if let (Some(m), None, false) = (&enc.music, &error, windows.is_empty()) {
            let refs: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
            let window_s = m.tagger.window() as f64 / f64::from(RATE);
            match enc.clock.time(Busy::Music, || m.tagger.tag(&refs)) {
                Ok(outs) => outs.iter().for_each(|o| {
                    let middle_s = (heard.tags.count as f64 + 0.5) * window_s;
                    segmenter.borrow_mut().music(middle_s, o.embeddings.get(m.tagger.embedding().0), &o.probabilities);
                    heard.tags.add(&o.probabilities);
                    if let Some(e) = o.embeddings.get(m.tagger.embedding().0) {
                        heard.embedding.add(e);
                    }
                }),
                Err(e) => *error = Some(e),
            }
        }
        windows.clear();
    };
    let decode_opts =
        DecodeOptions { frame_size: None, audio_rate: Some(RATE), threads: opts.decode_threads, ..Default::default() };
    medley_media::decode(probe, &decode_opts, &mut |_| {}, &mut |s| {
        if enc.speech.is_some() {
            speech.extend_from_slice(s);
        }
        if window > 0 {
            buffer.extend_from_slice(s);
            while buffer.len() >= window {
                let rest = buffer.split_off(window);
                windows.push(std::mem::replace(&mut buffer, rest));
                if windows.len() >= opts.window_batch {
                    tag(&mut windows, &mut heard, &mut error);
                }
            }
        }
    })
    .map_err(|e| FileError::media(Stage::Decode, e))?;
    // A clip shorter than one window is tagged zero-padded, so short sounds get tags too.
    if window > 0 && heard.tags.count == 0 && windows.is_empty() && buffer.len() >= RATE as usize / 2 {
        buffer.resize(window, 0.0);
        windows.push(std::mem::take(&mut buffer));
    }
    tag(&mut windows, &mut heard, &mut error);
    if let Some(e) = error {
        return Err(model_err(e));
    }
    if let Some(stt) = &enc.speech
        && !speech.is_empty()
    {
        let options = medley_models::TranscribeOptions { max_new_tokens: 160, ..Default::default() };
        let transcript = enc.clock.time(Busy::Speech, || stt.transcribe(&speech, &options)).map_err(model_err)?;
        let text = transcript.text();
        if !text.trim().is_empty() {
            heard.transcript = Some(text);
            heard.language = Some(transcript.language.clone());
            heard.speech = transcript.segments;
        }
    }
    Ok(heard)
}

/// A short description composed from what the models found, for full-text search and for
/// people; it says that it was composed (no captioning model is configured).
fn describe(
    probe: &Probe,
    duration_s: Option<f64>,
    labels: &[Label],
    tags: &[Label],
    transcript: Option<&str>,
) -> String {
    let names = |l: &[Label]| l.iter().take(3).map(|l| l.label.as_str()).collect::<Vec<_>>().join(", ");
    let mut parts = vec![match duration_s {
        Some(d) => format!("{} of {:.0} s", probe.kind.as_str(), d),
        None => probe.kind.as_str().to_string(),
    }];
    if !labels.is_empty() {
        parts.push(format!("looks like: {}", names(labels)));
    }
    if !tags.is_empty() {
        parts.push(format!("sounds like: {}", names(tags)));
    }
    if let Some(t) = transcript {
        let short: String = t.chars().take(160).collect();
        parts.push(format!("speech: \"{short}{}\"", if t.chars().count() > 160 { "..." } else { "" }));
    }
    format!("{} (composed from labels and tags; no captioner configured)", parts.join("; "))
}

#[allow(clippy::too_many_arguments)]
fn media_row(
    probe: &Probe,
    content_hash: String,
    duration_s: Option<f64>,
    stats: &medley_media::DecodeStats,
    visual: Option<Vec<f32>>,
    audio: MeanPool,
    bridge: Option<Vec<f32>>,
    labels: Vec<Label>,
    models: String,
) -> MediaRow {
    let v = probe.video.as_ref();
    let a = probe.audio.as_ref().filter(|_| probe.kind != MediaKind::Image);
    MediaRow {
        content_hash,
        path: absolute(&probe.path).display().to_string(),
        file_name: probe.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        kind: probe.kind.as_str().into(),
        container: probe.container.clone(),
        size_bytes: probe.size_bytes,
        duration_s,
        video_codec: v.map(|v| v.codec.clone()),
        width: v.map(|v| v.width),
        height: v.map(|v| v.height),
        fps: v.and_then(|v| v.fps).filter(|_| probe.kind == MediaKind::Video),
        rotation: v.map(|v| v.rotation),
        audio_codec: a.map(|a| a.codec.clone()),
        sample_rate: a.map(|a| a.sample_rate),
        channels: a.map(|a| u32::from(a.channels)),
        frames_sampled: stats.frames_sampled as u32,
        audio_windows: audio.count as u32,
        visual,
        audio: audio.mean(),
        bridge,
        labels,
        models,
        indexed_at_us: now_us(),
        ..Default::default()
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A codebook that cannot be used stops ID assignment for the run, not the run; a database
/// error stops the run.
fn sid_failed(e: SidError, summary: &mut Summary) -> Result<Option<SidAssigner>, StoreError> {
    match e {
        SidError::Store(e) => Err(e),
        other => {
            eprintln!("medley: semantic IDs not assigned: {other}");
            summary.sid_error = Some(other.to_string());
            Ok(None)
        }
    }
}
