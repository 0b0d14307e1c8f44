//! The byte layout hashed by the state root and the genesis digest: fixed-width big-endian
//! integers, lengths as `u64` big-endian, raw 32-byte addresses.

use commonware_cryptography::{Hasher, Sha256};
use plexus_types::{Address, Amount, Digest};

/// Bytes are gathered in a small buffer and fed to the hasher in chunks, so hashing a large
/// state allocates nothing proportional to its size.
const CHUNK: usize = 8 * 1024;

pub(crate) struct Encoder {
    hasher: Sha256,
    buf: Vec<u8>,
}

impl Encoder {
    /// Start a digest whose first bytes are `namespace` (domain separation).
    pub(crate) fn new(namespace: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(CHUNK + 64);
        buf.extend_from_slice(namespace);
        Self {
            hasher: Sha256::default(),
            buf,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    pub(crate) fn digest(&mut self, d: &Digest) {
        self.put(d.as_ref());
    }

    /// `0` for none, `1 || bytes` for some.
    pub(crate) fn optional(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.u8(0),
            Some(bytes) => {
                self.u8(1);
                self.put(bytes);
            }
        }
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }

    /// A length or count. `usize` always fits in `u64` on supported targets.
    pub(crate) fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }

    pub(crate) fn amount(&mut self, a: Amount) {
        self.put(&a.get().to_be_bytes());
    }

    pub(crate) fn address(&mut self, a: &Address) {
        self.put(a.as_bytes());
    }

    /// Length-prefixed bytes.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.put(b);
    }

    pub(crate) fn finish(mut self) -> Digest {
        self.hasher.update(&self.buf);
        self.hasher.finalize().1
    }
}
