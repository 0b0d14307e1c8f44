use crate::{Error, PublicKey, parse_hex32};
use bytes::BufMut;
use commonware_codec::Buf;
use commonware_codec::{DecodeExt, Error as CodecError, FixedSize, Read, ReadExt, Write};
use std::fmt;

/// An account: the 32-byte ed25519 public key that controls it, written as 64 hex characters.
///
/// Using the key itself (not a hash of it) lets anyone verify a transaction from its bytes
/// alone, and costs nothing in size since ed25519 keys are already 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address([u8; 32]);

impl Address {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// The ed25519 key of this address, or an error if the bytes are not a valid point.
    pub fn public_key(&self) -> Result<PublicKey, Error> {
        PublicKey::decode(self.0.to_vec()).map_err(|e| Error::Codec(e.to_string()))
    }
}

impl From<&PublicKey> for Address {
    fn from(key: &PublicKey) -> Self {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(key.as_ref());
        Self(bytes)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", hex::encode(&self.0[..6]))
    }
}

impl std::str::FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_hex32(s, "address").map(Self)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Write for Address {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf)
    }
}
impl Read for Address {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(<[u8; 32]>::read(buf)?))
    }
}
impl FixedSize for Address {
    const SIZE: usize = 32;
}
