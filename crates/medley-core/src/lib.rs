//! What every medley crate shares: the content hash that identifies an item, the clock the
//! tables' timestamps use, and atomic file writes. No dependencies beyond BLAKE3.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A file's content hash (BLAKE3, 64 hex digits): the item id in every table.
pub fn hash_file(path: &Path) -> io::Result<String> {
    hash_reader(std::fs::File::open(path)?)
}

/// The content hash of everything `reader` yields (an upload being received, a file).
pub fn hash_reader(reader: impl Read) -> io::Result<String> {
    let mut hasher = ContentHasher::default();
    hasher.0.update_reader(reader)?;
    Ok(hasher.finish())
}

/// A content hash fed piece by piece (for data that arrives in chunks).
#[derive(Default, Clone)]
pub struct ContentHasher(blake3::Hasher);

impl ContentHasher {
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// The hash as 64 hex digits, as `hash_file` gives it.
    pub fn finish(&self) -> String {
        self.0.finalize().to_hex().to_string()
    }

    /// The first `n` hex digits (ids of fitted models, job ids): short, still unique enough.
    pub fn finish_short(&self, n: usize) -> String {
        let mut hex = self.finish();
        hex.truncate(n);
        hex
    }
}

/// Now, in microseconds since the Unix epoch (the unit of every timestamp column); 0 when
/// the system clock is before 1970.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Write `bytes` to `path` so that readers see the old file or the whole new one, never a
/// part: written to a temporary file beside it, flushed to disk, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// `write_atomic` for content produced by `write` (for example a Parquet writer).
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut std::fs::File) -> io::Result<()>) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.partial", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// L2-normalise in place; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hashes_agree_however_the_bytes_arrive() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        write_atomic(&path, &data)?;
        let whole = hash_file(&path)?;
        let mut chunked = ContentHasher::default();
        data.chunks(4096).for_each(|c| {
            chunked.update(c);
        });
        assert_eq!(whole, chunked.finish());
        assert_eq!(whole.len(), 64);
        assert_eq!(chunked.finish_short(16), whole[..16]);
        assert_ne!(whole, hash_reader(&data[1..])?);
        Ok(())
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.json");
        write_atomic(&path, b"old")?;
        write_atomic(&path, b"new")?;
        assert_eq!(std::fs::read(&path)?, b"new");
        // A failed write leaves the old content and no temporary file behind.
        let failed = write_atomic_with(&path, |_| Err(io::Error::other("disk full")));
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path)?, b"new");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn the_clock_is_in_microseconds() {
        // 2020-01-01 in microseconds, and well below the year 2200.
        assert!(now_us() > 1_577_836_800_000_000 && now_us() < 7_258_118_400_000_000);
    }
}
