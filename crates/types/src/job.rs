//! Jobs, models and receipts: the identifiers and signed statements of paid AI work.
//!
//! - A [`JobId`] is `sha256("_PLEXUS_JOB_ID_V1" || poster address || poster nonce)`: the
//!   poster knows it before the job is even submitted, and no two jobs can share one (a nonce
//!   is used once per account).
//! - A provider first commits to its result with [`commitment`] (which hides the output until
//!   the reveal), then reveals the output hash and salt.
//! - A [`Receipt`] is the provider's ed25519 signature, under [`RECEIPT_NAMESPACE`], over the
//!   canonical encoding of what it delivered and at what price; it travels in the reveal
//!   transaction, so the chain checks it, and anyone can check it again later from the
//!   receipt alone.

use crate::{Address, Amount, Digest, Error, PrivateKey, Signature, parse_hex32, sha256};
use bytes::BufMut;
use commonware_codec::{
    Buf, Encode, EncodeSize, Error as CodecError, FixedSize, RangeCfg, Read, ReadExt, Write,
};
use commonware_cryptography::{Signer, Verifier};
use std::fmt;

/// Namespace of receipt signatures (domain separation from transactions and votes).
pub const RECEIPT_NAMESPACE: &[u8] = b"_PLEXUS_RECEIPT_V1";
const JOB_ID_NAMESPACE: &[u8] = b"_PLEXUS_JOB_ID_V1";
const COMMIT_NAMESPACE: &[u8] = b"_PLEXUS_COMMIT_V1";
const CHECK_COMMIT_NAMESPACE: &[u8] = b"_PLEXUS_CHECK_COMMIT_V1";
/// Namespace of a job owner's request for its result before the reveal.
pub const RESULT_REQUEST_NAMESPACE: &[u8] = b"_PLEXUS_RESULT_REQUEST_V1";

/// The header a job's owner sends to fetch the result from the provider before the reveal:
/// `<unix_ms>.<hex of the owner's signature over job id || unix_ms (u64 big-endian)>` under
/// [`RESULT_REQUEST_NAMESPACE`]. The provider answers only the owner, within a few minutes of
/// the timestamp; the client checks the bytes against the commitment on chain.
pub const RESULT_AUTH_HEADER: &str = "x-plexus-auth";

fn result_request(job: &JobId, unix_ms: u64) -> Vec<u8> {
    let mut message = job.as_bytes().to_vec();
    message.extend_from_slice(&unix_ms.to_be_bytes());
    message
}

/// The [`RESULT_AUTH_HEADER`] value for `job`, signed by its owner's `key` at `unix_ms`.
pub fn result_request_auth(key: &PrivateKey, job: &JobId, unix_ms: u64) -> String {
    let signature = key.sign(RESULT_REQUEST_NAMESPACE, &result_request(job, unix_ms));
    format!("{unix_ms}.{}", hex::encode(signature.encode()))
}

/// Check a [`RESULT_AUTH_HEADER`] value: `Some(unix_ms)` if it is `owner`'s signature for
/// `job`, `None` if malformed or signed by anyone else.
pub fn verify_result_request_auth(owner: &Address, job: &JobId, value: &str) -> Option<u64> {
    use commonware_codec::DecodeExt;
    let (ms, sig) = value.trim().split_once('.')?;
    let unix_ms: u64 = ms.parse().ok()?;
    let signature = Signature::decode(bytes::Bytes::from(hex::decode(sig).ok()?)).ok()?;
    let key = owner.public_key().ok()?;
    key.verify(
        RESULT_REQUEST_NAMESPACE,
        &result_request(job, unix_ms),
        &signature,
    )
    .then_some(unix_ms)
}

/// The id of a job.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId([u8; 32]);

impl JobId {
    /// The id of the job posted by `poster` in its transaction with nonce `nonce`.
    pub fn new(poster: &Address, nonce: crate::Nonce) -> Self {
        let digest = sha256(&[
            JOB_ID_NAMESPACE,
            poster.as_bytes(),
            &nonce.get().to_be_bytes(),
        ]);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", hex::encode(&self.0[..6]))
    }
}

impl std::str::FromStr for JobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_hex32(s, "job id").map(Self)
    }
}

impl serde::Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Write for JobId {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf)
    }
}
impl Read for JobId {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(<[u8; 32]>::read(buf)?))
    }
}
impl FixedSize for JobId {
    const SIZE: usize = 32;
}

macro_rules! byte_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $tag:literal => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub fn tag(self) -> u8 {
                match self { $($name::$variant => $tag),+ }
            }
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of: {}"),
                        s,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Write for $name {
            fn write(&self, buf: &mut impl BufMut) {
                self.tag().write(buf)
            }
        }
        impl Read for $name {
            type Cfg = ();
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                match u8::read(buf)? {
                    $($tag => Ok($name::$variant),)+
                    tag => Err(CodecError::InvalidEnum(tag)),
                }
            }
        }
        impl FixedSize for $name {
            const SIZE: usize = 1;
        }
    };
}

byte_enum!(
    /// What a model does.
    ModelKind {
        /// Text in, one vector per text out.
        Embedding = 0 => "embedding",
        /// Messages in, generated text out.
        Chat = 1 => "chat",
    }
);

byte_enum!(
    /// What a job's price is counted in.
    WorkUnit {
        /// Tokens of input (embeddings).
        InputTokens = 0 => "input_tokens",
        /// Tokens generated (chat).
        OutputTokens = 1 => "output_tokens",
    }
);

/// `sha256("_PLEXUS_COMMIT_V1" || job || output_hash || salt)`: what a provider commits to
/// before revealing. The salt keeps a guessable output (a short answer) hidden until the
/// reveal; the job id stops one commitment being replayed for another job.
pub fn commitment(job: &JobId, output_hash: &Digest, salt: &Digest) -> Digest {
    sha256(&[
        COMMIT_NAMESPACE,
        job.as_bytes(),
        output_hash.as_ref(),
        salt.as_ref(),
    ])
}

/// `sha256("_PLEXUS_CHECK_COMMIT_V1" || job || verifier || output_hash || salt)`: what a
/// verifier commits to before revealing its re-run. The verifier's address is bound in, so a
/// verifier cannot commit to a copy of the provider's commitment and reveal the provider's
/// output and salt once they are public.
pub fn check_commitment(
    job: &JobId,
    verifier: &crate::Address,
    output_hash: &Digest,
    salt: &Digest,
) -> Digest {
    sha256(&[
        CHECK_COMMIT_NAMESPACE,
        job.as_bytes(),
        verifier.as_bytes(),
        output_hash.as_ref(),
        salt.as_ref(),
    ])
}

/// What a provider signs when it reveals a result: the work, the result and the price.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub chain_id: String,
    pub job: JobId,
    /// Content hash of the model that did the work.
    #[serde(with = "crate::hex_digest")]
    pub model: Digest,
    #[serde(with = "crate::hex_digest")]
    pub input_hash: Digest,
    #[serde(with = "crate::hex_digest")]
    pub output_hash: Digest,
    pub output_size: u32,
    /// Units of work done (see the model's [`WorkUnit`]).
    pub units: u32,
    /// Price per unit fixed when the job was assigned.
    pub unit_price: Amount,
    pub provider: Address,
}

impl Receipt {
    /// `units * unit_price`: what the job costs its poster (`None` on overflow).
    pub fn price(&self) -> Option<Amount> {
        self.unit_price.checked_mul(u128::from(self.units))
    }

    pub fn sign(&self, key: &PrivateKey) -> Signature {
        key.sign(RECEIPT_NAMESPACE, &self.encode())
    }

    /// Whether `signature` is the provider's signature over this receipt.
    pub fn verify(&self, signature: &Signature) -> bool {
        let Ok(key) = self.provider.public_key() else {
            return false;
        };
        key.verify(RECEIPT_NAMESPACE, &self.encode(), signature)
    }
}

impl Write for Receipt {
    fn write(&self, buf: &mut impl BufMut) {
        self.chain_id.as_bytes().write(buf);
        self.job.write(buf);
        self.model.write(buf);
        self.input_hash.write(buf);
        self.output_hash.write(buf);
        self.output_size.write(buf);
        self.units.write(buf);
        self.unit_price.write(buf);
        self.provider.write(buf);
    }
}

impl EncodeSize for Receipt {
    fn encode_size(&self) -> usize {
        self.chain_id.as_bytes().encode_size() + 32 * 4 + 4 + 4 + 16 + 32
    }
}

impl Read for Receipt {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            chain_id: read_string(buf, crate::limits::MAX_CHAIN_ID_LEN, "chain id")?,
            job: JobId::read(buf)?,
            model: Digest::read(buf)?,
            input_hash: Digest::read(buf)?,
            output_hash: Digest::read(buf)?,
            output_size: u32::read(buf)?,
            units: u32::read(buf)?,
            unit_price: Amount::read(buf)?,
            provider: Address::read(buf)?,
        })
    }
}

/// Read a length-prefixed UTF-8 string of at most `max` bytes.
pub(crate) fn read_string(
    buf: &mut impl Buf,
    max: usize,
    what: &'static str,
) -> Result<String, CodecError> {
    let bytes = Vec::<u8>::read_cfg(buf, &(RangeCfg::new(0..=max), ()))?;
    String::from_utf8(bytes).map_err(|_| CodecError::Invalid(what, "not utf-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Nonce, key_from_seed};
    use commonware_codec::DecodeExt;

    fn receipt(key: &PrivateKey) -> Receipt {
        Receipt {
            chain_id: "plexus-test".into(),
            job: JobId::new(&Address::from_bytes([1; 32]), Nonce::new(3)),
            model: sha256(&[b"model"]),
            input_hash: sha256(&[b"input"]),
            output_hash: sha256(&[b"output"]),
            output_size: 10,
            units: 7,
            unit_price: Amount::new(1000),
            provider: Address::from(&key.public_key()),
        }
    }

    #[test]
    fn job_ids_differ_by_poster_and_nonce() {
        let a = Address::from_bytes([1; 32]);
        let b = Address::from_bytes([2; 32]);
        assert_ne!(JobId::new(&a, Nonce::new(0)), JobId::new(&a, Nonce::new(1)));
        assert_ne!(JobId::new(&a, Nonce::new(0)), JobId::new(&b, Nonce::new(0)));
        let id = JobId::new(&a, Nonce::new(0));
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
    }

    #[test]
    fn receipt_roundtrip_and_signature() {
        let key = key_from_seed(4);
        let r = receipt(&key);
        let bytes = r.encode();
        assert_eq!(bytes.len(), r.encode_size());
        assert_eq!(Receipt::decode(bytes).unwrap(), r);
        let sig = r.sign(&key);
        assert!(r.verify(&sig));
        let mut tampered = r.clone();
        tampered.units = 8;
        assert!(!tampered.verify(&sig));
        assert_eq!(r.price(), Some(Amount::new(7000)));
    }

    #[test]
    fn commitment_binds_every_part() {
        let job = JobId::from_bytes([1; 32]);
        let out = sha256(&[b"o"]);
        let salt = sha256(&[b"s"]);
        let c = commitment(&job, &out, &salt);
        assert_ne!(c, commitment(&JobId::from_bytes([2; 32]), &out, &salt));
        assert_ne!(c, commitment(&job, &sha256(&[b"p"]), &salt));
        assert_ne!(c, commitment(&job, &out, &sha256(&[b"t"])));
        let v = crate::Address::from(&key_from_seed(1).public_key());
        let w = crate::Address::from(&key_from_seed(2).public_key());
        let cc = check_commitment(&job, &v, &out, &salt);
        assert_ne!(
            cc, c,
            "a check commitment never equals a provider commitment"
        );
        assert_ne!(cc, check_commitment(&job, &w, &out, &salt));
    }

    #[test]
    fn result_requests_verify_only_for_the_owner_and_job() {
        let owner = key_from_seed(7);
        let other = key_from_seed(8);
        let job = JobId::from_bytes([3; 32]);
        let auth = result_request_auth(&owner, &job, 1_700_000_000_000);
        let owner_address = Address::from(&owner.public_key());
        assert_eq!(
            verify_result_request_auth(&owner_address, &job, &auth),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            verify_result_request_auth(&Address::from(&other.public_key()), &job, &auth),
            None
        );
        assert_eq!(
            verify_result_request_auth(&owner_address, &JobId::from_bytes([4; 32]), &auth),
            None
        );
        let tampered = auth.replacen("1700", "1800", 1);
        assert_eq!(
            verify_result_request_auth(&owner_address, &job, &tampered),
            None
        );
        assert_eq!(
            verify_result_request_auth(&owner_address, &job, "garbage"),
            None
        );
    }

    #[test]
    fn enums_parse_and_reject() {
        assert_eq!("chat".parse::<ModelKind>().unwrap(), ModelKind::Chat);
        assert!("image".parse::<ModelKind>().is_err());
        assert!(ModelKind::decode(vec![7u8]).is_err());
        assert_eq!(
            "input_tokens".parse::<WorkUnit>().unwrap(),
            WorkUnit::InputTokens
        );
    }
}
