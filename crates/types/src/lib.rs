//! types: Define accounts, amounts, jobs, receipts, transactions and blocks; encode, hash and
//! sign them canonically.
//!
//! # Encoding
//!
//! Everything that is hashed or signed has exactly one binary encoding, written with
//! [`commonware_codec`]: integers are fixed-width big-endian, variable-length fields carry a
//! varint length prefix, and every decoder is bounded (strings, transaction lists and blocks
//! have hard limits, see [`limits`]) and rejects trailing bytes. JSON (serde) is only used at
//! the edges (RPC, config files) and is never hashed.
//!
//! # Signatures
//!
//! Transactions are signed with ed25519 over their canonical encoding, under the namespace
//! [`TX_NAMESPACE`], so a transaction signature can never be replayed as a signature of
//! anything else (a consensus vote, a p2p handshake, a future job receipt). The chain id is part
//! of the signed bytes, so a transaction for one chain is invalid on every other.

mod address;
mod amount;
mod block;
mod error;
mod job;
mod tx;

pub use address::Address;
pub use amount::{Amount, Height, Nonce};
pub use block::{Block, BlockHeader};
pub use error::Error;
pub use job::{
    JobId, ModelKind, RECEIPT_NAMESPACE, RESULT_AUTH_HEADER, RESULT_REQUEST_NAMESPACE, Receipt,
    WorkUnit, check_commitment, commitment, result_request_auth, verify_result_request_auth,
};
pub use tx::{Action, SignedTransaction, Transaction, TxHash};

pub use commonware_cryptography::ed25519::{PrivateKey, PublicKey, Signature};
pub use commonware_cryptography::sha256::Digest;
pub use commonware_cryptography::{Signer, Verifier};

/// Namespace under which transactions are signed (domain separation).
pub const TX_NAMESPACE: &[u8] = b"_PLEXUS_TX_V1";

/// Hard limits that bound every decoder.
pub mod limits {
    /// Longest chain id, in bytes.
    pub const MAX_CHAIN_ID_LEN: usize = 64;
    /// Largest encoded signed transaction, in bytes.
    pub const MAX_TX_SIZE: usize = 4 * 1024;
    /// Most transactions in one block.
    pub const MAX_BLOCK_TXS: usize = 20_000;
    /// Largest encoded block, in bytes.
    pub const MAX_BLOCK_SIZE: usize = 8 * 1024 * 1024;
    /// Longest model name, in bytes.
    pub const MAX_MODEL_NAME_LEN: usize = 64;
    /// Longest provider region, in bytes.
    pub const MAX_REGION_LEN: usize = 32;
    /// Longest provider endpoint URL, in bytes.
    pub const MAX_ENDPOINT_LEN: usize = 256;
    /// Most models one provider may declare.
    pub const MAX_PROVIDER_MODELS: usize = 16;
}

/// Hash arbitrary bytes with SHA-256.
pub fn sha256(parts: &[&[u8]]) -> Digest {
    use commonware_cryptography::{Hasher, Sha256};
    Sha256::hash(parts)
}

/// Serde for a [`Digest`] as 64 lowercase hex characters: `#[serde(with = "plexus_types::hex_digest")]`.
pub mod hex_digest {
    use super::Digest;
    pub fn serialize<S: serde::Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::digest_hex(d))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        super::parse_digest(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde for a [`Signature`] as 128 lowercase hex characters.
pub mod hex_signature {
    use super::Signature;
    use commonware_codec::{DecodeExt, Encode};
    pub fn serialize<S: serde::Serializer>(sig: &Signature, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(sig.encode()))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        let bytes = hex::decode(s.trim()).map_err(serde::de::Error::custom)?;
        Signature::decode(bytes::Bytes::from(bytes)).map_err(serde::de::Error::custom)
    }
}

/// Hex of a digest, lowercase, without prefix.
pub fn digest_hex(digest: &Digest) -> String {
    hex::encode(digest.as_ref())
}

/// Parse a 32-byte hex digest (an optional `0x` prefix is accepted).
pub fn parse_digest(s: &str) -> Result<Digest, Error> {
    use commonware_codec::DecodeExt;
    let bytes = parse_hex32(s, "digest")?;
    Digest::decode(bytes.to_vec()).map_err(|e| Error::Hex {
        what: "digest",
        reason: e.to_string(),
    })
}

pub(crate) fn parse_hex32(s: &str, what: &'static str) -> Result<[u8; 32], Error> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(s).map_err(|e| Error::Hex {
        what,
        reason: e.to_string(),
    })?;
    bytes.try_into().map_err(|b: Vec<u8>| Error::Hex {
        what,
        reason: format!("expected 32 bytes (64 hex characters), got {}", b.len()),
    })
}

/// Make an ed25519 key from the operating system's randomness.
pub fn generate_key() -> PrivateKey {
    use commonware_math::algebra::Random;
    PrivateKey::random(rand::rng())
}

/// A deterministic key for tests and development accounts. Never use for real funds.
pub fn key_from_seed(seed: u64) -> PrivateKey {
    use commonware_cryptography::Signer;
    PrivateKey::from_seed(seed)
}

/// Encode a private key as 64 hex characters (the key file format).
pub fn private_key_hex(key: &PrivateKey) -> String {
    use commonware_codec::Encode;
    hex::encode(key.encode())
}

/// Decode a private key from 64 hex characters.
pub fn parse_private_key(s: &str) -> Result<PrivateKey, Error> {
    use commonware_codec::DecodeExt;
    let bytes = parse_hex32(s, "private key")?;
    PrivateKey::decode(bytes.to_vec()).map_err(|e| Error::Hex {
        what: "private key",
        reason: e.to_string(),
    })
}
