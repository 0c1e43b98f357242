//! Counters for `/metrics`, written in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::jobs::Status;

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
        let mut s = self.seconds.lock().expect("metrics lock");
        s.0 += wall_s;
        s.1 += media_s;
    }

    pub fn render(&self, jobs: &[(Status, usize)]) -> String {
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
        let (wall, media) = *self.seconds.lock().expect("metrics lock");
        metric("medley_index_seconds_total", "counter", "Wall seconds spent indexing.", &one(format!("{wall}")));
        metric("medley_media_seconds_total", "counter", "Seconds of media indexed.", &one(format!("{media}")));
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
        let text = m.render(&[(Status::Queued, 3), (Status::Done, 1)]);
        assert!(text.contains("# TYPE medley_jobs gauge\nmedley_jobs{status=\"queued\"} 3\n"), "{text}");
        assert!(text.contains("medley_uploads_total 2\n"), "{text}");
        assert!(text.contains("medley_index_seconds_total 1.5\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {line}"));
        }
    }
}
