//! The index worker runs below the routes in CPU priority.
//!
//! On a machine with few cores, indexing an upload (decoding, every encoder) takes all of them
//! for seconds; searches that arrive meanwhile waited their turn for a core, and their p99 at
//! 50 clients went from about 200 ms to over 300 ms (`cargo xtask bench serve`, mixed run).
//! Here the worker's threads, the blocking threads its CPU work runs on, and the threads ONNX
//! Runtime starts for the models it loads (they inherit the priority of the thread that
//! creates them) run at a higher nice value. The scheduler then gives a search's threads the
//! core when both want it, and indexing gets every cycle searches leave. Searches never wait
//! for the worker's locks either: their text towers are sessions of their own
//! ([`medley_pipeline::Encoders::load_text_towers`]).

use std::future::Future;

/// The nice value `medley serve` gives the index worker by default: its threads get about a
/// tenth of a core's time where a search thread wants the same core (the kernel's weights for
/// nice 0 and 10 are 1024 and 110), and all of it otherwise.
pub const DEFAULT_INDEX_NICE: i32 = 10;

/// Raise the calling thread's nice value to `nice` (0..=19; 0 leaves it as it is). On Linux
/// the nice value belongs to the thread, and threads it starts inherit it; raising it needs no
/// privilege. Elsewhere this does nothing.
pub fn lower_this_thread(nice: i32) -> std::io::Result<()> {
    if nice <= 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's id; no memory is shared.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice.min(19))
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Run `f` on a thread of its own at nice value `nice`, and return what it returns: loading
/// the index worker's models this way puts ONNX Runtime's threads for them at that priority.
pub fn at_nice<T: Send>(nice: i32, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("medley-load".into())
            .spawn_scoped(scope, || {
                lower_this_thread(nice)?;
                Ok(f())
            })?
            .join()
            .map_err(|_| std::io::Error::other("loading the models panicked"))?
    })
}

/// A runtime whose threads (async and blocking) run at nice value `nice`: the index worker
/// runs on it, so the CPU work its runs hand to `spawn_blocking` does too.
pub struct Background {
    runtime: crate::pool::OwnedRuntime,
}

impl Background {
    pub fn new(nice: i32) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("medley-index")
            .on_thread_start(move || {
                if let Err(e) = lower_this_thread(nice) {
                    tracing::warn!("medley serve: lowering an index thread's priority: {e}");
                }
            })
            .enable_all()
            .build()?;
        Ok(Self { runtime: crate::pool::OwnedRuntime::new(runtime) })
    }

    pub fn spawn<F>(&self, task: F) -> Option<tokio::task::JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.get().map(|r| r.spawn(task))
    }
}

// Nice values are per thread on Linux only.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as above. getpriority can return -1 legitimately; errno is not needed here
        // because the values tested are positive.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t) }
    }

    #[test]
    fn threads_started_at_a_nice_value_keep_it_and_pass_it_on() -> std::io::Result<()> {
        let before = nice_of_this_thread();
        let (own, child) = at_nice(before + 5, || {
            let child = std::thread::spawn(nice_of_this_thread).join().unwrap_or(-100);
            (nice_of_this_thread(), child)
        })?;
        assert_eq!((own, child), (before + 5, before + 5), "the loading thread and a thread it starts");
        assert_eq!(nice_of_this_thread(), before, "the caller's thread is left as it was");

        let bg = Background::new(before + 3)?;
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        let (worker, blocking) = rt
            .block_on(async {
                let h = bg.spawn(async {
                    let blocking = tokio::task::spawn_blocking(nice_of_this_thread).await.unwrap_or(-100);
                    (nice_of_this_thread(), blocking)
                });
                h.expect("running").await
            })
            .map_err(std::io::Error::other)?;
        assert_eq!((worker, blocking), (before + 3, before + 3), "async and blocking threads of the runtime");
        Ok(())
    }
}
