//! The persistent job queue: one JSON file per job under `<state>/jobs/`, each written by
//! write-to-temp + rename so a crash never leaves a half-written job, and an in-memory index
//! of them for the handlers and the worker.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
}

pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

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
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_string()
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    queue: VecDeque<String>,
}

pub struct JobQueue {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Woken when a job is queued.
    pub wake: tokio::sync::Notify,
}

impl JobQueue {
    /// Open `<state>/jobs`, loading every job; `queued` and `running` ones (a previous process
    /// stopped before finishing them) are queued again, oldest first. Indexing is idempotent by
    /// content hash, so running a job twice is safe.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut inner = Inner::default();
        let mut pending = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                // A temp file left by a crash mid-write: the job file it was replacing is intact.
                if path.extension().is_some_and(|e| e == "tmp") {
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
                    eprintln!("warning: skipping unreadable job file {}: {e}", path.display());
                    continue;
                }
            };
            if matches!(job.status, Status::Queued | Status::Running) {
                pending.push((job.submitted_at_us, job.id.clone()));
            }
            inner.jobs.insert(job.id.clone(), job);
        }
        pending.sort();
        let queue = Self { dir: dir.to_path_buf(), inner: Mutex::new(inner), wake: tokio::sync::Notify::new() };
        {
            let mut inner = queue.inner.lock().expect("job lock");
            for (_, id) in pending {
                let job = inner.jobs.get_mut(&id).expect("loaded");
                if job.status == Status::Running {
                    job.status = Status::Queued;
                    queue.persist(job)?;
                }
                inner.queue.push_back(id);
            }
        }
        Ok(queue)
    }

    fn persist(&self, job: &Job) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.dir.join(format!("{}.json", job.id));
        let tmp = self.dir.join(format!("{}.json.tmp", job.id));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(job).expect("job serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    }

    /// Queue a new job for `path` and wake the worker.
    pub fn submit(&self, path: &Path, content_hash: String) -> std::io::Result<Job> {
        let job = Job {
            id: new_id(),
            status: Status::Queued,
            path: path.display().to_string(),
            content_hash: Some(content_hash),
            error: None,
            submitted_at_us: submission_time(),
            finished_at_us: None,
        };
        {
            let mut inner = self.inner.lock().expect("job lock");
            self.persist(&job)?;
            inner.jobs.insert(job.id.clone(), job.clone());
            inner.queue.push_back(job.id.clone());
        }
        self.wake.notify_one();
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.inner.lock().expect("job lock").jobs.get(id).cloned()
    }

    pub fn queued(&self) -> usize {
        self.inner.lock().expect("job lock").queue.len()
    }

    /// Jobs per status, in `Status::ALL` order.
    pub fn counts(&self) -> [(Status, usize); 4] {
        let inner = self.inner.lock().expect("job lock");
        Status::ALL.map(|s| (s, inner.jobs.values().filter(|j| j.status == s).count()))
    }

    /// Take up to `max` queued jobs, marked `running`.
    pub fn take(&self, max: usize) -> std::io::Result<Vec<Job>> {
        let mut inner = self.inner.lock().expect("job lock");
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(id) = inner.queue.pop_front() else { break };
            let job = inner.jobs.get_mut(&id).expect("queued job is known");
            job.status = Status::Running;
            let job = job.clone();
            self.persist(&job)?;
            taken.push(job);
        }
        Ok(taken)
    }

    /// Record the outcome of a job taken with `take`.
    pub fn finish(&self, id: &str, result: Result<(), String>) -> std::io::Result<()> {
        let mut inner = self.inner.lock().expect("job lock");
        let job = inner.jobs.get_mut(id).expect("finished job is known");
        job.finished_at_us = Some(now_us());
        match result {
            Ok(()) => job.status = Status::Done,
            Err(e) => {
                job.status = Status::Failed;
                job.error = Some(e);
            }
        }
        let job = job.clone();
        self.persist(&job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_persist_and_unfinished_ones_are_requeued_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let q = JobQueue::open(dir.path()).unwrap();
        let a = q.submit(Path::new("/x/a.png"), "aa".into()).unwrap();
        let b = q.submit(Path::new("/x/b.png"), "bb".into()).unwrap();
        let c = q.submit(Path::new("/x/c.png"), "cc".into()).unwrap();
        let taken = q.take(2).unwrap();
        assert_eq!(taken.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), [a.id.as_str(), b.id.as_str()]);
        q.finish(&a.id, Ok(())).unwrap();
        // b stays `running` (the process "crashes"), c stays queued; a stray temp file is ignored.
        std::fs::write(dir.path().join("zz.json.tmp"), "{").unwrap();
        drop(q);

        let q = JobQueue::open(dir.path()).unwrap();
        assert_eq!(q.get(&a.id).unwrap().status, Status::Done);
        assert_eq!(q.get(&b.id).unwrap().status, Status::Queued);
        assert_eq!(q.queued(), 2);
        let again: Vec<String> = q.take(10).unwrap().into_iter().map(|j| j.id).collect();
        assert_eq!(again, [b.id.clone(), c.id.clone()]);
        q.finish(&b.id, Err("boom".into())).unwrap();
        assert_eq!(q.get(&b.id).unwrap().error.as_deref(), Some("boom"));
        assert!(!dir.path().join("zz.json.tmp").exists());
        let counts = q.counts();
        assert_eq!(counts.map(|(_, n)| n), [0, 1, 1, 1]);
    }
}
