//! The persistent job queue: one JSON file per job under `<state>/jobs/`, each written by
//! write-to-temp + fsync + rename so a crash never leaves a half-written job, and an in-memory
//! index of them for the handlers and the worker.
//!
//! The in-memory index sits behind a std mutex held only for map updates, never across IO; the
//! files are written on the blocking pool, one writer at a time (an async lock), each write
//! copying the job's state once it holds that lock, so a job's last write is its latest state.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use medley_core::now_us;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Done,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Queued, Status::Running, Status::Done, Status::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// One file to index: an upload (under `<state>/uploads/`) or a file under a `--root`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub status: Status,
    /// The file the worker indexes (absolute).
    pub path: String,
    pub content_hash: Option<String>,
    pub error: Option<String>,
    pub submitted_at_us: i64,
    pub finished_at_us: Option<i64>,
    /// Times the worker died (a panic or a fatal error) while this job was in its batch.
    #[serde(default)]
    pub attempts: u32,
}

/// A job in the batches of this many worker deaths is failed rather than tried again, so one
/// file that kills the worker cannot hold the queue forever.
pub const MAX_ATTEMPTS: u32 = 3;

/// Submission times strictly increase within a process, so jobs re-queue in submission order.
fn submission_time() -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = now_us();
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// A fresh, unique job id: 16 hex characters from the time, the process and a counter.
pub(crate) fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{}-{}-{n}", now_us(), std::process::id());
    medley_core::ContentHasher::default().update(seed.as_bytes()).finish_short(16)
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    queue: VecDeque<String>,
}

pub struct JobQueue {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// One job-file writer at a time (see the module comment).
    writes: tokio::sync::Mutex<()>,
    /// Woken when a job is queued.
    pub wake: tokio::sync::Notify,
}

/// What [`JobQueue::requeue_running`] did with the jobs a dead worker left `running`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Requeued {
    pub queued: usize,
    /// Failed for good: their batches killed the worker [`MAX_ATTEMPTS`] times.
    pub failed: usize,
}

impl JobQueue {
    /// Open `<state>/jobs`, loading every job; `queued` and `running` ones (a previous process
    /// stopped before finishing them) are queued again, oldest first. Indexing is idempotent by
    /// content hash, so running a job twice is safe.
    pub async fn open(dir: &Path) -> io::Result<Self> {
        let d = dir.to_path_buf();
        let (inner, requeued) = blocking(move || load(&d)).await?;
        let queue = Self {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            writes: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        };
        queue.persist(&requeued).await?;
        Ok(queue)
    }

    /// The index, even after a panic elsewhere while it was held: every update under it is a
    /// few map operations that leave it consistent, so a poisoned lock holds good data.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write the current state of the jobs `ids` (those no longer known, pruned meanwhile, are
    /// skipped) to their files, on the blocking pool.
    async fn persist(&self, ids: &[String]) -> io::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _writer = self.writes.lock().await;
        let jobs: Vec<Job> = {
            let inner = self.lock();
            ids.iter().filter_map(|id| inner.jobs.get(id).cloned()).collect()
        };
        let dir = self.dir.clone();
        blocking(move || write_jobs(&dir, &jobs)).await
    }

    /// Queue a new job for `path` and wake the worker. The job is on disk before anyone can
    /// see it.
    pub async fn submit(&self, path: &Path, content_hash: String) -> io::Result<Job> {
        let job = Job {
            id: new_id(),
            status: Status::Queued,
            path: path.display().to_string(),
            content_hash: Some(content_hash),
            error: None,
            submitted_at_us: submission_time(),
            finished_at_us: None,
            attempts: 0,
        };
        {
            let _writer = self.writes.lock().await;
            let (dir, copy) = (self.dir.clone(), job.clone());
            blocking(move || write_jobs(&dir, &[copy])).await?;
        }
        {
            let mut inner = self.lock();
            inner.jobs.insert(job.id.clone(), job.clone());
            inner.queue.push_back(job.id.clone());
        }
        self.wake.notify_one();
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().jobs.get(id).cloned()
    }

    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Jobs per status, in `Status::ALL` order.
    pub fn counts(&self) -> [(Status, usize); 4] {
        let inner = self.lock();
        Status::ALL.map(|s| (s, inner.jobs.values().filter(|j| j.status == s).count()))
    }

    /// Take up to `max` queued jobs, marked `running`. A job that was in the batch of a worker
    /// that died is taken alone, so a file that kills the worker takes no other job down with it.
    pub async fn take(&self, max: usize) -> io::Result<Vec<Job>> {
        let taken: Vec<Job> = {
            let mut guard = self.lock();
            // Borrowed apart: a job is updated while its id leaves the queue.
            let inner = &mut *guard;
            let mut taken = Vec::new();
            while taken.len() < max {
                let Some(id) = inner.queue.front().cloned() else { break };
                let Some(job) = inner.jobs.get_mut(&id) else {
                    // Not known (cannot happen: queued jobs are never pruned); drop the id.
                    inner.queue.pop_front();
                    continue;
                };
                if job.attempts > 0 && !taken.is_empty() {
                    break;
                }
                inner.queue.pop_front();
                job.status = Status::Running;
                let alone = job.attempts > 0;
                taken.push(job.clone());
                if alone {
                    break;
                }
            }
            taken
        };
        let ids: Vec<String> = taken.iter().map(|j| j.id.clone()).collect();
        self.persist(&ids).await?;
        Ok(taken)
    }

    /// Record the outcome of a job taken with `take`.
    pub async fn finish(&self, id: &str, result: Result<(), String>) -> io::Result<()> {
        {
            let mut inner = self.lock();
            let Some(job) = inner.jobs.get_mut(id) else { return Ok(()) };
            job.finished_at_us = Some(now_us());
            match result {
                Ok(()) => job.status = Status::Done,
                Err(e) => {
                    job.status = Status::Failed;
                    job.error = Some(e);
                }
            }
        }
        self.persist(&[id.to_string()]).await
    }

    /// After the worker died: its `running` jobs go back to the front of the queue, in
    /// submission order. With `count`, the death counts against them (it happened while they
    /// were being indexed), and those at [`MAX_ATTEMPTS`] fail with `error`.
    pub async fn requeue_running(&self, error: &str, count: bool) -> io::Result<Requeued> {
        let mut outcome = Requeued::default();
        let ids: Vec<String> = {
            let mut inner = self.lock();
            let mut running: Vec<(i64, String)> = inner
                .jobs
                .values()
                .filter(|j| j.status == Status::Running)
                .map(|j| (j.submitted_at_us, j.id.clone()))
                .collect();
            running.sort();
            let mut front = Vec::new();
            for (_, id) in &running {
                let Some(job) = inner.jobs.get_mut(id) else { continue };
                if count {
                    job.attempts += 1;
                }
                if job.attempts >= MAX_ATTEMPTS {
                    job.status = Status::Failed;
                    job.finished_at_us = Some(now_us());
                    job.error = Some(format!(
                        "the worker stopped {} times while indexing this job; last: {error}",
                        job.attempts
                    ));
                    outcome.failed += 1;
                } else {
                    job.status = Status::Queued;
                    front.push(id.clone());
                    outcome.queued += 1;
                }
            }
            for id in front.into_iter().rev() {
                inner.queue.push_front(id);
            }
            running.into_iter().map(|(_, id)| id).collect()
        };
        self.persist(&ids).await?;
        if outcome.queued > 0 {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    /// Forget finished (done or failed) jobs that finished more than `keep` ago, and remove
    /// their files; how many. Uploaded files stay: the index refers to them.
    pub async fn prune(&self, keep: Duration) -> io::Result<usize> {
        let cutoff = now_us().saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
        let _writer = self.writes.lock().await;
        let old: Vec<String> = {
            let mut inner = self.lock();
            let old: Vec<String> = inner
                .jobs
                .values()
                .filter(|j| j.status.finished() && j.finished_at_us.unwrap_or(0) < cutoff)
                .map(|j| j.id.clone())
                .collect();
            for id in &old {
                inner.jobs.remove(id);
            }
            old
        };
        let (dir, n) = (self.dir.clone(), old.len());
        blocking(move || {
            for id in &old {
                match std::fs::remove_file(job_file(&dir, id)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })
        .await?;
        Ok(n)
    }
}

fn job_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Run file IO on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(format!("job file task: {e}")))?
}

/// Every job file in `dir`, and the ids of the jobs to write back (`running` ones, now queued).
fn load(dir: &Path) -> io::Result<(Inner, Vec<String>)> {
    std::fs::create_dir_all(dir)?;
    let mut inner = Inner::default();
    let mut pending = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            // A temp file left by a crash mid-write (`.<id>.json.<pid>.partial`; `.tmp` before):
            // the job file it was replacing is intact.
            if path.extension().is_some_and(|e| e == "partial" || e == "tmp") {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let job: Job = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!("skipping unreadable job file {}: {e}", path.display());
                continue;
            }
        };
        if matches!(job.status, Status::Queued | Status::Running) {
            pending.push((job.submitted_at_us, job.id.clone()));
        }
        inner.jobs.insert(job.id.clone(), job);
    }
    pending.sort();
    let mut rewrite = Vec::new();
    for (_, id) in pending {
        if let Some(job) = inner.jobs.get_mut(&id) {
            if job.status == Status::Running {
                job.status = Status::Queued;
                rewrite.push(id.clone());
            }
            inner.queue.push_back(id);
        }
    }
    Ok((inner, rewrite))
}

/// Write each job to `<id>.json` atomically (temp file, fsync, rename), then fsync the folder so
/// the renames survive a crash too.
fn write_jobs(dir: &Path, jobs: &[Job]) -> io::Result<()> {
    for job in jobs {
        let bytes = serde_json::to_vec_pretty(job).map_err(io::Error::other)?;
        medley_core::write_atomic(&job_file(dir, &job.id), &bytes)?;
    }
    #[cfg(unix)]
    if !jobs.is_empty() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn ids(jobs: &[Job]) -> Vec<&str> {
        jobs.iter().map(|j| j.id.as_str()).collect()
    }

    fn on_disk(dir: &Path, id: &str) -> Result<Job, Box<dyn std::error::Error>> {
        Ok(serde_json::from_slice(&std::fs::read(job_file(dir, id))?)?)
    }

    fn job(q: &JobQueue, id: &str) -> Result<Job, String> {
        q.get(id).ok_or_else(|| format!("no job {id}"))
    }

    #[tokio::test]
    async fn jobs_persist_and_unfinished_ones_are_requeued_on_open() -> TestResult {
        let dir = tempfile::tempdir()?;
        let q = JobQueue::open(dir.path()).await?;
        let a = q.submit(Path::new("/x/a.png"), "aa".into()).await?;
        let b = q.submit(Path::new("/x/b.png"), "bb".into()).await?;
        let c = q.submit(Path::new("/x/c.png"), "cc".into()).await?;
        let taken = q.take(2).await?;
        assert_eq!(ids(&taken), [a.id.as_str(), b.id.as_str()]);
        assert_eq!(on_disk(dir.path(), &b.id)?.status, Status::Running);
        q.finish(&a.id, Ok(())).await?;
        // b stays `running` (the process "crashes"), c stays queued; a stray temp file is ignored.
        std::fs::write(dir.path().join("zz.json.tmp"), "{")?;
        std::fs::write(dir.path().join(".zz.json.77.partial"), "{")?;
        drop(q);

        let q = JobQueue::open(dir.path()).await?;
        assert_eq!(job(&q, &a.id)?.status, Status::Done);
        assert_eq!(job(&q, &b.id)?.status, Status::Queued);
        assert_eq!(on_disk(dir.path(), &b.id)?.status, Status::Queued);
        assert_eq!(q.queued(), 2);
        let again = q.take(10).await?;
        assert_eq!(ids(&again), [b.id.as_str(), c.id.as_str()]);
        q.finish(&b.id, Err("boom".into())).await?;
        assert_eq!(job(&q, &b.id)?.error.as_deref(), Some("boom"));
        assert_eq!(on_disk(dir.path(), &b.id)?.error.as_deref(), Some("boom"));
        assert!(!dir.path().join("zz.json.tmp").exists() && !dir.path().join(".zz.json.77.partial").exists());
        let counts = q.counts();
        assert_eq!(counts.map(|(_, n)| n), [0, 1, 1, 1]);
        Ok(())
    }

    #[tokio::test]
    async fn a_dead_workers_jobs_are_retried_alone_then_failed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let q = JobQueue::open(dir.path()).await?;
        let a = q.submit(Path::new("/x/a.png"), "aa".into()).await?;
        let b = q.submit(Path::new("/x/b.png"), "bb".into()).await?;
        let c = q.submit(Path::new("/x/c.png"), "cc".into()).await?;
        assert_eq!(q.take(2).await?.len(), 2);
        // A death that is not the jobs' fault (the database was down): back in front, no attempt.
        let r = q.requeue_running("database down", false).await?;
        assert_eq!(r, Requeued { queued: 2, failed: 0 });
        assert_eq!(ids(&q.take(10).await?), [a.id.as_str(), b.id.as_str(), c.id.as_str()]);
        // Deaths during their batch count: each such job is then taken alone.
        q.requeue_running("panicked", true).await?;
        assert_eq!(job(&q, &a.id)?.attempts, 1);
        assert_eq!(on_disk(dir.path(), &a.id)?.attempts, 1);
        assert_eq!(ids(&q.take(10).await?), [a.id.as_str()]);
        q.finish(&a.id, Ok(())).await?;
        for attempt in 2..=MAX_ATTEMPTS {
            assert_eq!(ids(&q.take(10).await?), [b.id.as_str()]);
            q.requeue_running("panicked", true).await?;
            assert_eq!(job(&q, &b.id)?.attempts, attempt);
        }
        let b = job(&q, &b.id)?;
        assert_eq!(b.status, Status::Failed);
        let error = b.error.unwrap_or_default();
        assert!(error.contains("3 times while indexing this job; last: panicked"), "{error}");
        assert_eq!(ids(&q.take(10).await?), [c.id.as_str()]);
        Ok(())
    }

    #[tokio::test]
    async fn finished_jobs_are_pruned_after_their_age() -> TestResult {
        let dir = tempfile::tempdir()?;
        let q = JobQueue::open(dir.path()).await?;
        let a = q.submit(Path::new("/x/a.png"), "aa".into()).await?;
        let b = q.submit(Path::new("/x/b.png"), "bb".into()).await?;
        let c = q.submit(Path::new("/x/c.png"), "cc".into()).await?;
        q.take(2).await?;
        q.finish(&a.id, Ok(())).await?;
        q.finish(&b.id, Err("bad".into())).await?;
        // Finished moments ago: kept for a day.
        assert_eq!(q.prune(Duration::from_secs(86_400)).await?, 0);
        // Done and failed jobs older than the age go, from memory and disk; queued ones stay.
        if let Some(j) = q.lock().jobs.get_mut(&a.id) {
            j.finished_at_us = Some(now_us() - 2 * 86_400_000_000);
        }
        assert_eq!(q.prune(Duration::from_secs(86_400)).await?, 1);
        assert!(q.get(&a.id).is_none() && !job_file(dir.path(), &a.id).exists());
        assert!(q.get(&b.id).is_some() && q.get(&c.id).is_some());
        // A late write of a pruned job (the worker finishing it) does not bring its file back.
        q.persist(std::slice::from_ref(&a.id)).await?;
        assert!(!job_file(dir.path(), &a.id).exists());
        assert_eq!(q.prune(Duration::ZERO).await?, 1, "b, not the queued c");
        assert!(!job_file(dir.path(), &b.id).exists() && job_file(dir.path(), &c.id).exists());
        Ok(())
    }
}
