use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;

/// Where in the pipeline a file failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Read,
    Probe,
    Decode,
    Encode,
    Write,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Probe => "probe",
            Self::Decode => "decode",
            Self::Encode => "encode",
            Self::Write => "write",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file that could not be indexed: which file, at which stage, what kind of error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {stage} failed ({kind}): {message}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub stage: Stage,
    /// Stable short name (`not_media`, `corrupt`, `io`, ...).
    pub kind: String,
    pub message: String,
}

impl FileError {
    pub(crate) fn new(path: &std::path::Path, stage: Stage, kind: &str, message: impl ToString) -> Self {
        Self { path: path.to_path_buf(), stage, kind: kind.to_string(), message: message.to_string() }
    }

    pub(crate) fn media(stage: Stage, e: medley_media::MediaError) -> Self {
        Self { stage, kind: e.kind.code().to_string(), message: e.kind.to_string(), path: e.path }
    }
}

thread_local! {
    /// The stage the file work on this thread is in, so a panic is reported at its stage.
    static CURRENT: Cell<Stage> = const { Cell::new(Stage::Read) };
}

/// Mark this thread's file work as being in `stage` from now on.
pub(crate) fn enter_stage(stage: Stage) {
    CURRENT.set(stage);
}

/// Run `f` in `stage`, then return to the stage before. A panic in `f` leaves the mark at
/// `stage` (on purpose: the catcher reads it to name where the file failed).
pub(crate) fn in_stage<T>(stage: Stage, f: impl FnOnce() -> T) -> T {
    let before = CURRENT.replace(stage);
    let out = f();
    CURRENT.set(before);
    out
}

/// Run one file's work, turning a panic into that file's failure at the stage it was in.
pub(crate) fn catch_panics<T>(
    path: &std::path::Path,
    stage: Stage,
    f: impl FnOnce() -> Result<T, FileError>,
) -> Result<T, FileError> {
    enter_stage(stage);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(FileError::new(path, CURRENT.get(), "panic", panic_message(&*payload))),
    }
}

/// The message a panic was raised with.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("panicked: {text}")
}
