//! Busy time per pipeline stage, summed over files (and threads), for the run summary: where
//! the time goes, so the bottleneck is visible.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub enum Busy {
    /// Reading and hashing files.
    Hash,
    /// Probing, decoding and the model calls made while decoding (split below).
    Build,
    Vision,
    Audio,
    Music,
    Speech,
    /// Voice activity (where Whisper listens).
    Vad,
    Text,
    /// Sound events (AudioSet classes).
    Sounds,
    /// Reading on-screen text.
    Ocr,
    /// Shot boundaries (a pass over every frame).
    Shots,
    Caption,
    /// Table commits.
    Write,
}

const STAGES: usize = 13;

#[derive(Debug, Default)]
pub struct StageClock {
    nanos: [AtomicU64; STAGES],
}

impl StageClock {
    /// Run `f`, adding its wall time to `stage`.
    pub fn time<T>(&self, stage: Busy, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.add(stage, start);
        out
    }

    pub fn add(&self, stage: Busy, since: Instant) {
        self.nanos[stage as usize].fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn seconds(&self) -> [f64; STAGES] {
        std::array::from_fn(|i| self.nanos[i].load(Ordering::Relaxed) as f64 / 1e9)
    }

    /// Seconds per stage since `before` (an earlier [`StageClock::snapshot`]); `decode` is
    /// the build time not spent in a model.
    pub fn since(&self, before: &[f64; STAGES]) -> BTreeMap<&'static str, f64> {
        let now = self.seconds();
        let d: Vec<f64> = now.iter().zip(before).map(|(a, b)| a - b).collect();
        let models: f64 = d[Busy::Vision as usize..=Busy::Caption as usize].iter().sum();
        let mut out = BTreeMap::new();
        out.insert("hash", d[Busy::Hash as usize]);
        out.insert("decode", (d[Busy::Build as usize] - models).max(0.0));
        for (name, s) in [
            ("vision", Busy::Vision),
            ("audio", Busy::Audio),
            ("music", Busy::Music),
            ("speech", Busy::Speech),
            ("vad", Busy::Vad),
            ("text", Busy::Text),
            ("sounds", Busy::Sounds),
            ("ocr", Busy::Ocr),
            ("shots", Busy::Shots),
            ("caption", Busy::Caption),
            ("write", Busy::Write),
        ] {
            out.insert(name, d[s as usize]);
        }
        out
    }

    pub fn snapshot(&self) -> [f64; STAGES] {
        self.seconds()
    }
}
