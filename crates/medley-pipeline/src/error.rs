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
