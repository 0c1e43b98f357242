//! Where the routes' table queries run: a runtime of their own, admitted in arrival order.
//!
//! A LanceDB query is milliseconds of CPU (plan, index probe, reads, decoding) done as async
//! tasks. On the HTTP runtime, fifty at once took every worker thread, so cached answers,
//! health checks and uploads waited behind them, and all fifty advanced together, each
//! finishing as late as the last (p99 over a second at 50 clients, `cargo xtask bench serve`).
//! Here at most one query per core runs at a time, on threads that are not the HTTP
//! runtime's, and the others wait their turn in arrival order (tokio's semaphore is fair).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Why a query did not answer (its own errors are the query's output, not this).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the query task failed: {0}")]
    Task(String),
    #[error("the server is stopping")]
    Closed,
}

pub struct QueryPool {
    runtime: OwnedRuntime,
    admitted: Arc<Semaphore>,
}

/// A runtime of the server's own, which may be dropped on an async thread: it is shut down in
/// the background rather than waited for (dropping a runtime there panics).
pub(crate) struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    pub fn new(runtime: tokio::runtime::Runtime) -> Self {
        Self(Some(runtime))
    }

    /// `None` only while dropping.
    pub fn get(&self) -> Option<&tokio::runtime::Runtime> {
        self.0.as_ref()
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl QueryPool {
    /// `threads` threads, as many queries running at once.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("medley-query")
            .enable_all()
            .build()?;
        Ok(Self { runtime: OwnedRuntime::new(runtime), admitted: Arc::new(Semaphore::new(threads)) })
    }

    /// Run `query` when its turn comes. The turn is held until the query ends, even when the
    /// request that asked for it has gone (its client hung up), so no more than the pool's
    /// width ever runs.
    pub async fn run<T: Send + 'static>(
        &self,
        query: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, PoolError> {
        let runtime = self.runtime.get().ok_or(PoolError::Closed)?;
        let turn = self.admitted.clone().acquire_owned().await.map_err(|_| PoolError::Closed)?;
        runtime
            .spawn(async move {
                let out = query.await;
                drop(turn);
                out
            })
            .await
            .map_err(|e| PoolError::Task(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_queries_run_at_once_than_the_pool_is_wide() -> Result<(), PoolError> {
        let pool = Arc::new(QueryPool::new(2).map_err(|e| PoolError::Task(e.to_string()))?);
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut asks = Vec::new();
        for i in 0..16 {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            asks.push(tokio::spawn(async move {
                pool.run(async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                })
                .await
            }));
        }
        let mut answers = Vec::new();
        for ask in asks {
            answers.push(ask.await.map_err(|e| PoolError::Task(e.to_string()))??);
        }
        assert_eq!(answers, (0..16).collect::<Vec<_>>(), "every query answers its own request");
        assert_eq!(most.load(Ordering::SeqCst), 2, "two at a time, never more");
        Ok(())
    }
}
