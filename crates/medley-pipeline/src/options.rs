//! How an index run works: batch sizes, commit size, parallelism, and what it records.

use medley_models::Device;

#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Frames per encoder call.
    pub frame_batch: usize,
    /// Audio windows per encoder call.
    pub window_batch: usize,
    /// Rows gathered before one table commit (each commit is a LanceDB version).
    pub commit_every: usize,
    /// FFmpeg decoder threads, shared among the files in flight.
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
        Self::for_device(Device::Cpu)
    }
}

impl IndexOptions {
    /// Defaults that suit where the models run. On CPU, small batches (the cores are busy
    /// either way) and half the cores' worth of files in flight, at least two: several files
    /// overlap one's decoding with another's inference while the models' own threads use
    /// every core. On 2 cores two files beat one by 1.16x (`cargo xtask bench pipeline`, 36.0
    /// vs 31.0 media s/s) at the same peak memory; one intra-op thread per model with two files
    /// was slower. On CUDA, a kernel launch costs the same for 1 frame as for 64, so batches are
    /// GPU-sized, and more files are decoded at once to keep the device fed.
    pub fn for_device(device: Device) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let gpu = device == Device::Cuda;
        Self {
            frame_batch: if gpu { 64 } else { 16 },
            window_batch: if gpu { 64 } else { 8 },
            commit_every: 32,
            decode_threads: cores,
            top_labels: 5,
            workers: if gpu { cores.clamp(2, 8) } else { (cores / 2).clamp(cores.min(2), 4) },
            command: String::new(),
            shard: None,
        }
    }
}
