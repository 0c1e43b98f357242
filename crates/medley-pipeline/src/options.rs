//! How an index run works: batch sizes, commit size, parallelism, and what it records.

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
