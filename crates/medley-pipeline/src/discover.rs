//! Which files a run takes: files named on the command line, and inside folders every file
//! with a media extension, or with another (or no) extension when FFmpeg can open it as media.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use medley_media::MediaErrorKind;

/// The files a run will take and the ones it passes over.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Files to index: named on the command line, or found in folders and taken for media.
    pub files: Vec<PathBuf>,
    /// Files found while walking folders that are not media.
    pub skipped: Vec<PathBuf>,
    /// Media files still being downloaded or copied, by their name (`clip.mp4.part`): not
    /// indexed, since their rows would describe a cut-off file, but named to the user.
    pub unfinished: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("no such file or directory: {}", list(.0))]
    Missing(Vec<PathBuf>),
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Extensions of files that are never media: found in folders, they are skipped without asking
/// FFmpeg (documents, archives, code, data, subtitles, playlists, which FFmpeg could follow).
const NOT_MEDIA_EXTENSIONS: &[&str] = &[
    "txt", "md", "rst", "json", "jsonl", "ndjson", "yaml", "yml", "toml", "ini", "cfg", "conf", "xml", "html", "htm",
    "css", "csv", "tsv", "log", "pdf", "doc", "docx", "odt", "rtf", "xls", "xlsx", "ods", "ppt", "pptx", "odp", "epub",
    "tex", "nfo", "zip", "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "tar", "iso", "dmg", "rs", "py", "js", "mjs",
    "c", "h", "cc", "cpp", "hpp", "go", "java", "kt", "rb", "php", "sh", "bash", "ps1", "bat", "lock", "o", "a", "so",
    "dll", "dylib", "exe", "class", "jar", "wasm", "pyc", "db", "sqlite", "parquet", "arrow", "lance", "npy", "npz",
    "onnx", "pt", "pkl", "h5", "bin", "idx", "manifest", "txn", "srt", "vtt", "ass", "ssa", "sub", "m3u", "m3u8",
    "pls", "cue", "ffconcat", "xspf", "url", "torrent",
];

/// Suffixes browsers and copy tools give a file until it is complete (`clip.mp4.part`).
const UNFINISHED_EXTENSIONS: &[&str] = &["part", "partial", "crdownload", "download", "opdownload"];

/// Walk `paths` recursively (following symlinks, in a stable sorted order). Files named
/// directly are always taken; a path that does not exist is an error before any work.
pub fn discover(paths: &[PathBuf]) -> Result<Discovery, DiscoverError> {
    Discoverer::default().discover(paths)
}

/// [`discover`] that remembers what FFmpeg said of each file without a media extension (by
/// size and modification time), so a watcher scanning every few seconds probes each once.
#[derive(Debug, Default)]
pub struct Discoverer {
    probed: HashMap<PathBuf, (u64, Option<SystemTime>, bool)>,
}

impl Discoverer {
    pub fn discover(&mut self, paths: &[PathBuf]) -> Result<Discovery, DiscoverError> {
        let missing: Vec<PathBuf> = paths.iter().filter(|p| !p.exists()).cloned().collect();
        if !missing.is_empty() {
            return Err(DiscoverError::Missing(missing));
        }
        let mut out = Discovery::default();
        for path in paths {
            if path.is_file() {
                out.files.push(path.clone());
                continue;
            }
            for entry in walkdir::WalkDir::new(path).follow_links(true).sort_by_file_name() {
                let Ok(entry) = entry else { continue };
                if !entry.file_type().is_file() || is_hidden(entry.path()) {
                    continue;
                }
                if medley_media::has_extension_in(entry.path(), UNFINISHED_EXTENSIONS) {
                    // `clip.mp4.part`, or media content under any unfinished name.
                    let stem_is_media =
                        entry.path().file_stem().is_some_and(|s| medley_media::has_media_extension(Path::new(s)));
                    if stem_is_media || self.is_media(entry.path()) {
                        out.unfinished.push(entry.into_path());
                    } else {
                        out.skipped.push(entry.into_path());
                    }
                } else if self.is_media(entry.path()) {
                    out.files.push(entry.into_path());
                } else {
                    out.skipped.push(entry.into_path());
                }
            }
        }
        out.files.dedup();
        // Forget files that are gone, so a long-running watcher does not grow without end.
        self.probed.retain(|p, _| p.exists());
        Ok(out)
    }

    /// A media extension, or no known non-media one and FFmpeg opens it with a video or audio
    /// stream (FFmpeg looks at the content, so `.m4b`, `.dat` or no extension all work). A file
    /// FFmpeg recognises as a media container but cannot open (cut off, damaged) or that cannot
    /// be read at all is taken too, so its failure is recorded by name instead of vanishing
    /// into the "not media" count.
    fn is_media(&mut self, path: &Path) -> bool {
        if medley_media::has_media_extension(path) {
            return true;
        }
        if medley_media::has_extension_in(path, NOT_MEDIA_EXTENSIONS) {
            return false;
        }
        let meta = std::fs::metadata(path).ok();
        let (size, modified) = (meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()));
        if size == 0 {
            return false;
        }
        match self.probed.get(path) {
            Some(&(s, m, media)) if (s, m) == (size, modified) => media,
            _ => {
                let media = match medley_media::probe(path) {
                    Ok(_) => true,
                    Err(e) => !matches!(
                        e.kind,
                        MediaErrorKind::NotMedia(_) | MediaErrorKind::ZeroBytes | MediaErrorKind::NoStreams
                    ),
                };
                self.probed.insert(path.to_path_buf(), (size, modified, media));
                media
            }
        }
    }
}

/// Keep the files of shard `index` of `count` (0-based), chosen by a hash of each path as
/// given, so every process started with the same PATH arguments takes a disjoint share and
/// together they take all.
pub fn shard(files: Vec<PathBuf>, index: u32, count: u32) -> Vec<PathBuf> {
    let count = u64::from(count.max(1));
    files
        .into_iter()
        .filter(|p| {
            let h = blake3::hash(p.as_os_str().as_encoded_bytes());
            let mut first = [0u8; 8];
            first.copy_from_slice(&h.as_bytes()[..8]);
            u64::from_le_bytes(first) % count == u64::from(index)
        })
        .collect()
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}
