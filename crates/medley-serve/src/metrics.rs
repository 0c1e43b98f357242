//! Counters for `/metrics`, written in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::jobs::Status;
use crate::worker::{WorkerState, WorkerStatus};

#[derive(Default)]
pub struct Metrics {
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub uploads_rejected: AtomicU64,
    pub batches: AtomicU64,
    /// Wall seconds and media seconds spent in index runs.
    pub seconds: Mutex<(f64, f64)>,
}

impl Metrics {
    pub fn add_run(&self, wall_s: f64, media_s: f64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock still holds two whole numbers: the adds below are plain stores.
        let mut s = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 += wall_s;
        s.1 += media_s;
    }

    pub fn render(&self, jobs: &[(Status, usize)], worker: &WorkerStatus) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: String| [(String::new(), v)];
        let jobs: Vec<(String, String)> =
            jobs.iter().map(|(s, n)| (format!("{{status=\"{}\"}}", s.as_str()), n.to_string())).collect();
        metric("medley_jobs", "gauge", "Jobs by status.", &jobs);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        metric("medley_uploads_total", "counter", "Uploads accepted.", &one(load(&self.uploads)));
        metric("medley_upload_bytes_total", "counter", "Bytes of accepted uploads.", &one(load(&self.upload_bytes)));
        metric(
            "medley_uploads_rejected_total",
            "counter",
            "Uploads refused (empty, too large, not media, malformed).",
            &one(load(&self.uploads_rejected)),
        );
        metric("medley_index_batches_total", "counter", "Index runs (one commit each).", &one(load(&self.batches)));
        let (wall, media) = *self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        metric("medley_index_seconds_total", "counter", "Wall seconds spent indexing.", &one(format!("{wall}")));
        metric("medley_media_seconds_total", "counter", "Seconds of media indexed.", &one(format!("{media}")));
        let up = u8::from(worker.state == WorkerState::Running);
        metric(
            "medley_worker_up",
            "gauge",
            "1 while the index worker is running, 0 while it is down.",
            &one(up.to_string()),
        );
        let states: Vec<(String, String)> = WorkerState::ALL
            .iter()
            .map(|s| (format!("{{state=\"{}\"}}", s.as_str()), u8::from(*s == worker.state).to_string()))
            .collect();
        metric("medley_worker_state", "gauge", "The index worker's state (1 for the current one).", &states);
        metric(
            "medley_worker_restarts_total",
            "counter",
            "Starts of the index worker after it stopped on an error or a panic.",
            &one(worker.restarts.to_string()),
        );
        let last = worker.last_error_at_us.map_or(0.0, |us| us as f64 / 1e6);
        metric(
            "medley_worker_last_error_timestamp_seconds",
            "gauge",
            "When the index worker last stopped on an error (Unix seconds; 0 never).",
            &one(format!("{last}")),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.uploads.fetch_add(2, Ordering::Relaxed);
        m.add_run(1.5, 10.0);
        let worker = crate::worker::Health::default().status();
        let text = m.render(&[(Status::Queued, 3), (Status::Done, 1)], &worker);
        assert!(text.contains("# TYPE medley_jobs gauge\nmedley_jobs{status=\"queued\"} 3\n"), "{text}");
        assert!(text.contains("medley_uploads_total 2\n"), "{text}");
        assert!(text.contains("medley_index_seconds_total 1.5\n"), "{text}");
        assert!(text.contains("medley_worker_up 1\n"), "{text}");
        assert!(text.contains("medley_worker_state{state=\"restarting\"} 0\n"), "{text}");
        assert!(text.contains("medley_worker_restarts_total 0\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit_once(' ').map(|(_, v)| v);
            assert!(value.and_then(|v| v.parse::<f64>().ok()).is_some(), "not a number: {line}");
        }
    }
}
