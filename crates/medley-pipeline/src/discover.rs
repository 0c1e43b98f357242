use std::path::{Path, PathBuf};

/// The files a run will take and the ones it passes over.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Files to index: named on the command line, or found with a media extension.
    pub files: Vec<PathBuf>,
    /// Files found while walking folders without a media extension.
    pub skipped: Vec<PathBuf>,
}

/// Walk `paths` recursively (following symlinks, in a stable sorted order). Files named
/// directly are always taken; a path that does not exist is an error before any work.
pub fn discover(paths: &[PathBuf]) -> Result<Discovery, String> {
    let missing: Vec<String> = paths.iter().filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
    if !missing.is_empty() {
        return Err(format!("no such file or directory: {}", missing.join(", ")));
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
            if medley_media::has_media_extension(entry.path()) {
                out.files.push(entry.into_path());
            } else {
                out.skipped.push(entry.into_path());
            }
        }
    }
    out.files.dedup();
    Ok(out)
}

/// Keep the files of shard `index` of `count` (0-based), chosen by a hash of each path as
/// given, so every process started with the same PATH arguments takes a disjoint share and
/// together they take all.
pub fn shard(files: Vec<PathBuf>, index: u32, count: u32) -> Vec<PathBuf> {
    files
        .into_iter()
        .filter(|p| {
            let h = blake3::hash(p.as_os_str().as_encoded_bytes());
            let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
            n % u64::from(count) == u64::from(index)
        })
        .collect()
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}
