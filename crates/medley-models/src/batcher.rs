//! Dynamic batching: requests from many callers are gathered into one batch up to a size or a
//! wait limit, and run by one worker that owns (or shares) the model's session.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ModelError;

type Reply<O> = mpsc::SyncSender<Result<O, String>>;

/// Gathers single requests into batches for `run`, which must return one output per input,
/// in order. Cloneable handles are cheap: clone the `Batcher` into each worker thread.
pub struct Batcher<I: Send + 'static, O: Send + 'static> {
    tx: Option<mpsc::Sender<(I, Reply<O>)>>,
    worker: Option<std::sync::Arc<JoinHandle<()>>>,
}

impl<I: Send + 'static, O: Send + 'static> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), worker: None }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Start the worker: a batch is run when `max_batch` requests are waiting, or `max_wait`
    /// after the first request of the batch arrived, whichever is first. Fails only when the
    /// OS cannot start one more thread.
    pub fn new<F>(max_batch: usize, max_wait: Duration, run: F) -> Result<Self, ModelError>
    where
        F: Fn(Vec<I>) -> Result<Vec<O>, ModelError> + Send + 'static,
    {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel::<(I, Reply<O>)>();
        let worker = std::thread::Builder::new()
            .name("medley-batcher".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let deadline = Instant::now() + max_wait;
                    let mut batch = vec![first];
                    while batch.len() < max_batch {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let (inputs, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
                    let n = inputs.len();
                    match run(inputs) {
                        Ok(outs) if outs.len() == n => {
                            for (o, r) in outs.into_iter().zip(replies) {
                                let _ = r.send(Ok(o));
                            }
                        }
                        Ok(outs) => {
                            let msg = format!("batch of {n} gave {} outputs", outs.len());
                            replies.into_iter().for_each(|r| drop(r.send(Err(msg.clone()))));
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            replies.into_iter().for_each(|r| drop(r.send(Err(msg.clone()))));
                        }
                    }
                }
            })
            .map_err(|e| ModelError::Batcher(format!("cannot start its worker thread: {e}")))?;
        Ok(Self { tx: Some(tx), worker: Some(std::sync::Arc::new(worker)) })
    }

    /// Submit one request and wait for its output.
    pub fn submit(&self, input: I) -> Result<O, ModelError> {
        self.submit_many(vec![input]).map(|mut outs| outs.remove(0))
    }

    /// Submit several requests at once and wait for their outputs, in order. They join the
    /// queue together, so a batch gathers them with whatever other callers have queued.
    pub fn submit_many(&self, inputs: Vec<I>) -> Result<Vec<O>, ModelError> {
        let stopped = || ModelError::Batcher("worker stopped".into());
        let tx = self.tx.as_ref().ok_or_else(|| ModelError::Batcher("closed".into()))?;
        let mut replies = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (rtx, rrx) = mpsc::sync_channel(1);
            tx.send((input, rtx)).map_err(|_| stopped())?;
            replies.push(rrx);
        }
        replies.into_iter().map(|r| r.recv().map_err(|_| stopped())?.map_err(ModelError::Batcher)).collect()
    }
}

impl<I: Send + 'static, O: Send + 'static> Drop for Batcher<I, O> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.worker.take()
            && let Ok(handle) = std::sync::Arc::try_unwrap(w)
        {
            let _ = handle.join();
        }
    }
}
