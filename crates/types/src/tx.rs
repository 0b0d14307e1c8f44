use crate::job::read_string;
use crate::{
    Address, Amount, Digest, Error, JobId, ModelKind, Nonce, PrivateKey, Signature, TX_NAMESPACE,
    WorkUnit, limits, sha256,
};
use bytes::BufMut;
use commonware_codec::{
    Decode, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write,
};
use commonware_cryptography::{Signer, Verifier};

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Move `amount` from the signer's balance to `to`.
    Transfer { to: Address, amount: Amount },
    /// Lock `amount` of the signer's balance as stake.
    Bond { amount: Amount },
    /// Start unbonding `amount` of stake; it becomes withdrawable after the unbonding delay.
    Unbond { amount: Amount },
    /// Move every matured unbonding entry back to the signer's balance.
    Withdraw,
    /// Register a model by the content hash of its weights and config.
    RegisterModel {
        hash: Digest,
        name: String,
        kind: ModelKind,
        unit: WorkUnit,
        /// The lowest the model's base price (per unit) may fall; also its starting price.
        min_price: Amount,
        /// Blocks the slowest acceptable provider needs per 1000 units of work: a job's commit
        /// deadline grows by `max_units * blocks_per_1000_units / 1000` blocks (rounded down).
        /// 0: the deadline is `commit_timeout` whatever the job's size.
        blocks_per_1000_units: u64,
    },
    /// Register the signer as a provider, or update its declaration.
    RegisterProvider {
        /// Content hashes of the models served.
        models: Vec<Digest>,
        /// Jobs it can hold at once (assigned or committed, not yet revealed).
        capacity: u32,
        /// Free-form region label; jobs may prefer a region.
        region: String,
        /// The lowest price per unit it accepts.
        price_floor: Amount,
        /// Base URL where it serves the outputs it produced.
        endpoint: String,
    },
    /// Stop (or resume) receiving new jobs; jobs already assigned continue.
    PauseProvider { paused: bool },
    /// Leave the provider registry (no job may be in flight or awaiting settlement).
    Deregister,
    /// Post a job and lock `max_units * max_unit_price` in escrow.
    PostJob {
        model: Digest,
        /// Content hash of the input payload (stored off-chain).
        input_hash: Digest,
        input_size: u32,
        /// Most units of work the job may bill (see the model's unit).
        max_units: u32,
        /// Highest price per unit the poster pays.
        max_unit_price: Amount,
        /// Preferred provider region; empty for any.
        region: String,
    },
    /// The assigned provider commits to `commitment(job, output_hash, salt)`.
    CommitResult { job: JobId, commitment: Digest },
    /// The assigned provider reveals its result and signs the receipt.
    RevealResult {
        job: JobId,
        output_hash: Digest,
        output_size: u32,
        salt: Digest,
        units: u32,
        /// The provider's signature over the [`crate::Receipt`] of this job.
        receipt_signature: Signature,
    },
    /// A verifier drawn to check `job` commits to
    /// [`check_commitment`](crate::check_commitment)`(job, verifier, output_hash, salt)` of
    /// its own re-run, before it can see the provider's result.
    CommitCheck { job: JobId, commitment: Digest },
    /// The verifier reveals its own result and its verdict on the provider's: whether the
    /// two agree under the job kind's comparison rule.
    RevealCheck {
        job: JobId,
        output_hash: Digest,
        salt: Digest,
        agrees: bool,
    },
}

impl Action {
    const TRANSFER: u8 = 0;
    const BOND: u8 = 1;
    const UNBOND: u8 = 2;
    const WITHDRAW: u8 = 3;
    const REGISTER_MODEL: u8 = 4;
    const REGISTER_PROVIDER: u8 = 5;
    const PAUSE_PROVIDER: u8 = 6;
    const DEREGISTER: u8 = 7;
    const POST_JOB: u8 = 8;
    const COMMIT_RESULT: u8 = 9;
    const REVEAL_RESULT: u8 = 10;
    const COMMIT_CHECK: u8 = 11;
    const REVEAL_CHECK: u8 = 12;

    /// A short name for logs and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "transfer",
            Action::Bond { .. } => "bond",
            Action::Unbond { .. } => "unbond",
            Action::Withdraw => "withdraw",
            Action::RegisterModel { .. } => "register_model",
            Action::RegisterProvider { .. } => "register_provider",
            Action::PauseProvider { .. } => "pause_provider",
            Action::Deregister => "deregister",
            Action::PostJob { .. } => "post_job",
            Action::CommitResult { .. } => "commit_result",
            Action::RevealResult { .. } => "reveal_result",
            Action::CommitCheck { .. } => "commit_check",
            Action::RevealCheck { .. } => "reveal_check",
        }
    }
}

impl Write for Action {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Action::Transfer { to, amount } => {
                Self::TRANSFER.write(buf);
                to.write(buf);
                amount.write(buf);
            }
            Action::Bond { amount } => {
                Self::BOND.write(buf);
                amount.write(buf);
            }
            Action::Unbond { amount } => {
                Self::UNBOND.write(buf);
                amount.write(buf);
            }
            Action::Withdraw => Self::WITHDRAW.write(buf),
            Action::RegisterModel {
                hash,
                name,
                kind,
                unit,
                min_price,
                blocks_per_1000_units,
            } => {
                Self::REGISTER_MODEL.write(buf);
                hash.write(buf);
                name.as_bytes().write(buf);
                kind.write(buf);
                unit.write(buf);
                min_price.write(buf);
                blocks_per_1000_units.write(buf);
            }
            Action::RegisterProvider {
                models,
                capacity,
                region,
                price_floor,
                endpoint,
            } => {
                Self::REGISTER_PROVIDER.write(buf);
                models.write(buf);
                capacity.write(buf);
                region.as_bytes().write(buf);
                price_floor.write(buf);
                endpoint.as_bytes().write(buf);
            }
            Action::PauseProvider { paused } => {
                Self::PAUSE_PROVIDER.write(buf);
                paused.write(buf);
            }
            Action::Deregister => Self::DEREGISTER.write(buf),
            Action::PostJob {
                model,
                input_hash,
                input_size,
                max_units,
                max_unit_price,
                region,
            } => {
                Self::POST_JOB.write(buf);
                model.write(buf);
                input_hash.write(buf);
                input_size.write(buf);
                max_units.write(buf);
                max_unit_price.write(buf);
                region.as_bytes().write(buf);
            }
            Action::CommitResult { job, commitment } => {
                Self::COMMIT_RESULT.write(buf);
                job.write(buf);
                commitment.write(buf);
            }
            Action::RevealResult {
                job,
                output_hash,
                output_size,
                salt,
                units,
                receipt_signature,
            } => {
                Self::REVEAL_RESULT.write(buf);
                job.write(buf);
                output_hash.write(buf);
                output_size.write(buf);
                salt.write(buf);
                units.write(buf);
                receipt_signature.write(buf);
            }
            Action::CommitCheck { job, commitment } => {
                Self::COMMIT_CHECK.write(buf);
                job.write(buf);
                commitment.write(buf);
            }
            Action::RevealCheck {
                job,
                output_hash,
                salt,
                agrees,
            } => {
                Self::REVEAL_CHECK.write(buf);
                job.write(buf);
                output_hash.write(buf);
                salt.write(buf);
                agrees.write(buf);
            }
        }
    }
}

impl EncodeSize for Action {
    fn encode_size(&self) -> usize {
        1 + match self {
            Action::Transfer { .. } => 32 + 16,
            Action::Bond { .. } | Action::Unbond { .. } => 16,
            Action::Withdraw | Action::Deregister => 0,
            Action::RegisterModel { name, .. } => {
                32 + name.as_bytes().encode_size() + 1 + 1 + 16 + 8
            }
            Action::RegisterProvider {
                models,
                region,
                endpoint,
                ..
            } => {
                models.encode_size()
                    + 4
                    + region.as_bytes().encode_size()
                    + 16
                    + endpoint.as_bytes().encode_size()
            }
            Action::PauseProvider { .. } => 1,
            Action::PostJob { region, .. } => {
                32 + 32 + 4 + 4 + 16 + region.as_bytes().encode_size()
            }
            Action::CommitResult { .. } | Action::CommitCheck { .. } => 32 + 32,
            Action::RevealCheck { .. } => 32 + 32 + 32 + 1,
            Action::RevealResult { .. } => 32 + 32 + 4 + 32 + 4 + 64,
        }
    }
}

impl Read for Action {
    type Cfg = ();
    fn read_cfg(buf: &mut impl commonware_codec::Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            Self::TRANSFER => Ok(Action::Transfer {
                to: Address::read(buf)?,
                amount: Amount::read(buf)?,
            }),
            Self::BOND => Ok(Action::Bond {
                amount: Amount::read(buf)?,
            }),
            Self::UNBOND => Ok(Action::Unbond {
                amount: Amount::read(buf)?,
            }),
            Self::WITHDRAW => Ok(Action::Withdraw),
            Self::REGISTER_MODEL => Ok(Action::RegisterModel {
                hash: Digest::read(buf)?,
                name: read_string(buf, limits::MAX_MODEL_NAME_LEN, "model name")?,
                kind: ModelKind::read(buf)?,
                unit: WorkUnit::read(buf)?,
                min_price: Amount::read(buf)?,
                blocks_per_1000_units: u64::read(buf)?,
            }),
            Self::REGISTER_PROVIDER => Ok(Action::RegisterProvider {
                models: Vec::<Digest>::read_cfg(
                    buf,
                    &(RangeCfg::new(0..=limits::MAX_PROVIDER_MODELS), ()),
                )?,
                capacity: u32::read(buf)?,
                region: read_string(buf, limits::MAX_REGION_LEN, "region")?,
                price_floor: Amount::read(buf)?,
                endpoint: read_string(buf, limits::MAX_ENDPOINT_LEN, "endpoint")?,
            }),
            Self::PAUSE_PROVIDER => Ok(Action::PauseProvider {
                paused: bool::read(buf)?,
            }),
            Self::DEREGISTER => Ok(Action::Deregister),
            Self::POST_JOB => Ok(Action::PostJob {
                model: Digest::read(buf)?,
                input_hash: Digest::read(buf)?,
                input_size: u32::read(buf)?,
                max_units: u32::read(buf)?,
                max_unit_price: Amount::read(buf)?,
                region: read_string(buf, limits::MAX_REGION_LEN, "region")?,
            }),
            Self::COMMIT_RESULT => Ok(Action::CommitResult {
                job: JobId::read(buf)?,
                commitment: Digest::read(buf)?,
            }),
            Self::REVEAL_RESULT => Ok(Action::RevealResult {
                job: JobId::read(buf)?,
                output_hash: Digest::read(buf)?,
                output_size: u32::read(buf)?,
                salt: Digest::read(buf)?,
                units: u32::read(buf)?,
                receipt_signature: Signature::read(buf)?,
            }),
            Self::COMMIT_CHECK => Ok(Action::CommitCheck {
                job: JobId::read(buf)?,
                commitment: Digest::read(buf)?,
            }),
            Self::REVEAL_CHECK => Ok(Action::RevealCheck {
                job: JobId::read(buf)?,
                output_hash: Digest::read(buf)?,
                salt: Digest::read(buf)?,
                agrees: bool::read(buf)?,
            }),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

/// An unsigned transaction: the exact bytes that get signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The chain this transaction is valid on.
    pub chain_id: String,
    /// The account that signs and pays.
    pub signer: Address,
    /// Must equal the signer's current nonce (replay protection, no gaps).
    pub nonce: Nonce,
    /// Paid to the treasury when the transaction executes; at least the chain's minimum fee.
    pub fee: Amount,
    pub action: Action,
}

impl Transaction {
    /// Sign with `key`; the key must belong to `self.signer`.
    pub fn sign(self, key: &PrivateKey) -> SignedTransaction {
        let signature = key.sign(TX_NAMESPACE, &self.encode());
        SignedTransaction {
            tx: self,
            signature,
        }
    }
}

impl Write for Transaction {
    fn write(&self, buf: &mut impl BufMut) {
        self.chain_id.as_bytes().write(buf);
        self.signer.write(buf);
        self.nonce.write(buf);
        self.fee.write(buf);
        self.action.write(buf);
    }
}

impl EncodeSize for Transaction {
    fn encode_size(&self) -> usize {
        self.chain_id.as_bytes().encode_size() + 32 + 8 + 16 + self.action.encode_size()
    }
}

impl Read for Transaction {
    type Cfg = ();
    fn read_cfg(buf: &mut impl commonware_codec::Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            chain_id: read_string(buf, limits::MAX_CHAIN_ID_LEN, "chain id")?,
            signer: Address::read(buf)?,
            nonce: Nonce::read(buf)?,
            fee: Amount::read(buf)?,
            action: Action::read(buf)?,
        })
    }
}

/// The hash of a signed transaction's canonical encoding; its id everywhere.
pub type TxHash = Digest;

/// A transaction with the signer's ed25519 signature over its canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

impl SignedTransaction {
    /// The transaction id: SHA-256 of the canonical encoding (signature included).
    pub fn hash(&self) -> TxHash {
        sha256(&[&self.encode()])
    }

    /// Check the signature against the signer's key. Stateless: says nothing about nonce or
    /// funds.
    pub fn verify_signature(&self) -> bool {
        let Ok(key) = self.tx.signer.public_key() else {
            return false;
        };
        key.verify(TX_NAMESPACE, &self.tx.encode(), &self.signature)
    }

    /// Decode from untrusted bytes, enforcing the size limit first.
    pub fn decode_bounded(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > limits::MAX_TX_SIZE {
            return Err(Error::TxTooLarge {
                size: bytes.len(),
                limit: limits::MAX_TX_SIZE,
            });
        }
        Self::decode_cfg(bytes.to_vec(), &()).map_err(|e| Error::Codec(e.to_string()))
    }
}

impl Write for SignedTransaction {
    fn write(&self, buf: &mut impl BufMut) {
        self.tx.write(buf);
        self.signature.write(buf);
    }
}

impl EncodeSize for SignedTransaction {
    fn encode_size(&self) -> usize {
        self.tx.encode_size() + 64
    }
}

impl Read for SignedTransaction {
    type Cfg = ();
    fn read_cfg(buf: &mut impl commonware_codec::Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            tx: Transaction::read(buf)?,
            signature: Signature::read(buf)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PublicKey, key_from_seed};
    use commonware_codec::DecodeExt;

    fn sample(key: &PrivateKey) -> SignedTransaction {
        let signer = Address::from(&key.public_key());
        Transaction {
            chain_id: "plexus-test".into(),
            signer,
            nonce: Nonce::new(7),
            fee: Amount::new(10),
            action: Action::Transfer {
                to: Address::from_bytes([9; 32]),
                amount: Amount::new(1_000),
            },
        }
        .sign(key)
    }

    #[test]
    fn roundtrip_and_signature() {
        let key = key_from_seed(1);
        let stx = sample(&key);
        assert!(stx.verify_signature());
        let bytes = stx.encode();
        let back = SignedTransaction::decode_bounded(&bytes).unwrap();
        assert_eq!(back, stx);
        assert_eq!(back.hash(), stx.hash());
    }

    #[test]
    fn tampering_breaks_signature() {
        let key = key_from_seed(1);
        let mut stx = sample(&key);
        stx.tx.fee = Amount::new(11);
        assert!(!stx.verify_signature());
        let mut stx = sample(&key);
        stx.tx.chain_id = "other-chain".into();
        assert!(!stx.verify_signature());
        // A different key cannot sign for the signer.
        let other = key_from_seed(2);
        let mut forged = sample(&other);
        forged.tx.signer = Address::from(&key.public_key());
        assert!(!forged.verify_signature());
    }

    #[test]
    fn signature_is_domain_separated() {
        let key = key_from_seed(1);
        let stx = sample(&key);
        let pk: PublicKey = key.public_key();
        // The same bytes under another namespace do not verify.
        assert!(!pk.verify(b"_OTHER", &stx.tx.encode(), &stx.signature));
    }

    #[test]
    fn rejects_trailing_bytes_bad_tags_and_oversize() {
        let key = key_from_seed(1);
        let mut bytes = sample(&key).encode().to_vec();
        bytes.push(0);
        assert!(SignedTransaction::decode_bounded(&bytes).is_err());
        assert!(matches!(
            SignedTransaction::decode_bounded(&vec![0u8; limits::MAX_TX_SIZE + 1]),
            Err(Error::TxTooLarge { .. })
        ));
        assert!(Action::decode(vec![9u8]).is_err());
        assert!(SignedTransaction::decode_bounded(&[]).is_err());
    }

    #[test]
    fn encode_size_matches() {
        let key = key_from_seed(3);
        for action in [
            Action::Withdraw,
            Action::Bond {
                amount: Amount::new(5),
            },
            Action::Unbond {
                amount: Amount::new(5),
            },
            Action::RegisterModel {
                hash: sha256(&[b"m"]),
                name: "all-minilm-l6-v2".into(),
                kind: ModelKind::Embedding,
                unit: WorkUnit::InputTokens,
                min_price: Amount::new(3),
                blocks_per_1000_units: 100,
            },
            Action::RegisterProvider {
                models: vec![sha256(&[b"m"]), sha256(&[b"n"])],
                capacity: 8,
                region: "eu".into(),
                price_floor: Amount::new(2),
                endpoint: "http://127.0.0.1:9000".into(),
            },
            Action::PauseProvider { paused: true },
            Action::Deregister,
            Action::PostJob {
                model: sha256(&[b"m"]),
                input_hash: sha256(&[b"i"]),
                input_size: 100,
                max_units: 40,
                max_unit_price: Amount::new(9),
                region: String::new(),
            },
            Action::CommitResult {
                job: JobId::from_bytes([4; 32]),
                commitment: sha256(&[b"c"]),
            },
            Action::RevealResult {
                job: JobId::from_bytes([4; 32]),
                output_hash: sha256(&[b"o"]),
                output_size: 12,
                salt: sha256(&[b"s"]),
                units: 3,
                receipt_signature: key.sign(b"x", b"y"),
            },
            Action::CommitCheck {
                job: JobId::from_bytes([5; 32]),
                commitment: sha256(&[b"c"]),
            },
            Action::RevealCheck {
                job: JobId::from_bytes([5; 32]),
                output_hash: sha256(&[b"o"]),
                salt: sha256(&[b"s"]),
                agrees: false,
            },
        ] {
            let stx = Transaction {
                chain_id: "c".into(),
                signer: Address::from(&key.public_key()),
                nonce: Nonce::new(0),
                fee: Amount::ZERO,
                action,
            }
            .sign(&key);
            assert_eq!(stx.encode().len(), stx.encode_size());
            let back = SignedTransaction::decode_bounded(&stx.encode()).unwrap();
            assert_eq!(back, stx);
        }
        // Bounded lists: a provider may not declare more than the limit of models.
        let too_many = Action::RegisterProvider {
            models: vec![sha256(&[b"m"]); limits::MAX_PROVIDER_MODELS + 1],
            capacity: 1,
            region: String::new(),
            price_floor: Amount::ZERO,
            endpoint: String::new(),
        };
        assert!(Action::decode(too_many.encode()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = SignedTransaction::decode_bounded(&bytes);
        }
    }
}
