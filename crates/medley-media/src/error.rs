use std::path::PathBuf;

/// A media file that could not be probed or decoded. Always names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct MediaError {
    pub path: PathBuf,
    pub kind: MediaErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaErrorKind {
    #[error("not a media file FFmpeg can open ({0})")]
    NotMedia(String),
    #[error("no decodable video or audio stream")]
    NoStreams,
    #[error("no decoder for codec {0}")]
    UnsupportedCodec(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("the file is empty (0 bytes)")]
    ZeroBytes,
    /// The file exists but cannot be read (permissions, a directory, an I/O error).
    #[error("cannot read the file ({0})")]
    Unreadable(String),
    #[error("decoding produced no frames or samples ({0})")]
    Empty(String),
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
    #[error("gave up after the time budget of {0:.0} s")]
    Timeout(f64),
}

impl MediaErrorKind {
    /// A short stable name for tables and JSON (`not_media`, `corrupt`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotMedia(_) => "not_media",
            Self::NoStreams => "no_streams",
            Self::UnsupportedCodec(_) => "unsupported_codec",
            Self::Corrupt(_) => "corrupt",
            Self::ZeroBytes | Self::Empty(_) => "empty",
            Self::Unreadable(_) => "unreadable",
            Self::Ffmpeg(_) => "ffmpeg",
            Self::Timeout(_) => "timeout",
        }
    }
}

impl MediaError {
    pub(crate) fn new(path: &std::path::Path, kind: MediaErrorKind) -> Self {
        Self { path: path.to_path_buf(), kind }
    }
}
