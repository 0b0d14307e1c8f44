use crate::{
    Address, Amount, Digest, Error, Nonce, PrivateKey, Signature, TX_NAMESPACE, limits, sha256,
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
}

impl Action {
    const TRANSFER: u8 = 0;
    const BOND: u8 = 1;
    const UNBOND: u8 = 2;
    const WITHDRAW: u8 = 3;

    /// A short name for logs and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Transfer { .. } => "transfer",
            Action::Bond { .. } => "bond",
            Action::Unbond { .. } => "unbond",
            Action::Withdraw => "withdraw",
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
        }
    }
}

impl EncodeSize for Action {
    fn encode_size(&self) -> usize {
        1 + match self {
            Action::Transfer { .. } => 32 + 16,
            Action::Bond { .. } | Action::Unbond { .. } => 16,
            Action::Withdraw => 0,
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
        let chain_id =
            Vec::<u8>::read_cfg(buf, &(RangeCfg::new(0..=limits::MAX_CHAIN_ID_LEN), ()))?;
        let chain_id = String::from_utf8(chain_id)
            .map_err(|_| CodecError::Invalid("transaction", "chain id is not utf-8"))?;
        Ok(Self {
            chain_id,
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
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = SignedTransaction::decode_bounded(&bytes);
        }
    }
}
