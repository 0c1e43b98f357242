//! What a run tells its caller: an event per file while it runs, and a summary at the end.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::FileError;

/// What happened to one file, for progress display.
#[derive(Debug)]
pub enum Event<'a> {
    /// `partial` when the file was cut short of what its header declares: the row describes
    /// what was decoded (worth a warning).
    Indexed {
        path: &'a Path,
        media_s: f64,
        partial: Option<&'a Partial>,
    },
    AlreadyIndexed(&'a Path),
    Failed(&'a FileError),
}

/// A file indexed as far as it decoded: its data ends well before the duration its header
/// declares (a truncated download or copy).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Partial {
    pub path: String,
    pub decoded_s: f64,
    pub declared_s: f64,
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
    /// Files indexed as far as they decoded (cut short of their declared duration).
    pub partial: Vec<Partial>,
    /// Media files found under an unfinished-download name (`clip.mp4.part`): not indexed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unfinished: Vec<String>,
    /// Busy seconds per stage (hash, decode, vision, audio, music, speech, text, write),
    /// summed over files: the largest is the bottleneck.
    pub stage_seconds: BTreeMap<&'static str, f64>,
    /// Semantic IDs given with the table's latest codebook (none without one).
    pub sids_assigned: usize,
    /// Where the models ran (`cpu` or `cuda`) and how video was decoded (`none` or `cuda`).
    pub device: String,
    pub hwaccel: String,
    /// Index upkeep after the writes: vector indexes built, new rows added to indexes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub index_upkeep: Vec<String>,
    /// Why IDs were not assigned, when the stored codebook could not be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid_error: Option<String>,
    /// Things the user should know that did not fail a file: commits retried after racing
    /// another writer, index upkeep that failed, IDs not assigned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct FailureSummary {
    pub path: String,
    pub stage: &'static str,
    pub kind: String,
    pub message: String,
}

impl Summary {
    /// Record a warning, also for a `tracing` subscriber.
    pub(crate) fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }
}
