//! A content-addressed store for job payloads (inputs and outputs), kept off-chain: the chain
//! holds only their sha256. Each blob is a file named by its hash; writes go to a temporary
//! file that is synced and renamed, so a crash never leaves a blob whose bytes do not match its
//! name. Size limits: each blob at most the chain's `max_payload_size`, the whole store at
//! most `max_total_bytes`.

use plexus_types::{Digest, digest_hex, sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("payload is empty")]
    Empty,
    #[error("payload is {size} bytes, larger than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("the payload store is full ({max} bytes); try again after old payloads are pruned")]
    Full { max: u64 },
    #[error("payload store i/o at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A cloneable handle to the store.
#[derive(Clone, Debug)]
pub struct BlobStore(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_size: usize,
    max_total_bytes: u64,
    used: AtomicU64,
    /// Makes temporary file names unique, so concurrent uploads never share one.
    writes: AtomicU64,
}

/// Default bound on the whole store.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 4 * 1024 * 1024 * 1024;

impl BlobStore {
    /// Open (creating if needed) the store in `dir`. Leftover temporary files from a crash are
    /// removed.
    pub fn open(dir: &Path, max_size: usize, max_total_bytes: u64) -> Result<Self, BlobError> {
        let io = |source| BlobError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut used = 0u64;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            used += entry.metadata().map_err(io)?.len();
        }
        Ok(Self(Arc::new(Inner {
            dir: dir.to_path_buf(),
            max_size,
            max_total_bytes,
            used: AtomicU64::new(used),
            writes: AtomicU64::new(0),
        })))
    }

    pub fn max_size(&self) -> usize {
        self.0.max_size
    }

    fn path(&self, hash: &Digest) -> PathBuf {
        self.0.dir.join(digest_hex(hash))
    }

    /// Store `bytes`; returns their sha256. Storing the same bytes twice is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        if bytes.is_empty() {
            return Err(BlobError::Empty);
        }
        if bytes.len() > self.0.max_size {
            return Err(BlobError::TooLarge {
                size: bytes.len(),
                max: self.0.max_size,
            });
        }
        let hash = sha256(&[bytes]);
        let path = self.path(&hash);
        if path.exists() {
            return Ok(hash);
        }
        let size = bytes.len() as u64;
        let used = self.0.used.fetch_add(size, Ordering::SeqCst);
        if used + size > self.0.max_total_bytes {
            self.0.used.fetch_sub(size, Ordering::SeqCst);
            return Err(BlobError::Full {
                max: self.0.max_total_bytes,
            });
        }
        let tmp = self.0.dir.join(format!(
            "{}.{}.{}.tmp",
            digest_hex(&hash),
            std::process::id(),
            self.0.writes.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |source| BlobError::Io {
            path: tmp.clone(),
            source,
        };
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            self.0.used.fetch_sub(size, Ordering::SeqCst);
            let _ = std::fs::remove_file(&tmp);
            // A concurrent upload of the same bytes may have won the race: that is success.
            if path.exists() {
                return Ok(hash);
            }
            return Err(io(e));
        }
        Ok(hash)
    }

    /// The bytes stored under `hash`, if any (checked against the hash, so a corrupted file
    /// reads as missing rather than as wrong data).
    pub fn get(&self, hash: &Digest) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path(hash)).ok()?;
        (sha256(&[&bytes]) == *hash).then_some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("plexus-blobs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn put_get_and_limits() {
        let dir = temp_dir("limits");
        let store = BlobStore::open(&dir, 10, 25).unwrap();
        let h = store.put(b"hello").unwrap();
        assert_eq!(h, sha256(&[b"hello"]));
        assert_eq!(store.get(&h).unwrap(), b"hello");
        assert_eq!(store.put(b"hello").unwrap(), h, "idempotent");
        assert!(matches!(store.put(b""), Err(BlobError::Empty)));
        assert!(matches!(
            store.put(&[0u8; 11]),
            Err(BlobError::TooLarge { size: 11, max: 10 })
        ));
        store.put(b"0123456789").unwrap();
        store.put(b"abcdefghij").unwrap();
        assert!(matches!(store.put(b"klmno"), Err(BlobError::Full { .. })));
        assert!(store.get(&sha256(&[b"nope"])).is_none());
        // A corrupted file reads as missing; reopening counts what is there.
        std::fs::write(dir.join(digest_hex(&h)), b"jello").unwrap();
        assert!(store.get(&h).is_none());
        let reopened = BlobStore::open(&dir, 10, 25).unwrap();
        assert!(matches!(
            reopened.put(b"klmno"),
            Err(BlobError::Full { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_uploads_of_the_same_bytes_both_succeed() {
        let dir = temp_dir("concurrent");
        let store = BlobStore::open(&dir, 1 << 20, 1 << 30).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || store.put(&[7u8; 100_000]).unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), sha256(&[&[7u8; 100_000][..]]));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
