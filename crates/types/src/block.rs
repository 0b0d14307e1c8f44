use crate::{Digest, Error, Height, SignedTransaction, limits, sha256};
use bytes::BufMut;
use commonware_codec::{
    Decode, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write,
};

/// A block's header: what links it into the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// Digest of the parent block (the genesis digest for height 1).
    pub parent: Digest,
    pub height: Height,
    /// Proposer's clock in milliseconds since the Unix epoch; strictly greater than the
    /// parent's. Informational only: the ledger never reads it.
    pub timestamp_ms: u64,
}

/// An ordered list of transactions agreed by consensus.
///
/// Execution is deferred: a block carries no post-state root, because consensus orders
/// blocks before they are executed. Every node executes finalized blocks in height order
/// with the same pure ledger and so reaches the same state root (exposed per height over
/// RPC). A transaction that fails its stateful checks at execution (stale nonce, not
/// enough funds) is skipped deterministically and reported as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTransaction>,
}

impl Block {
    /// The block's digest: SHA-256 of its canonical encoding.
    pub fn digest(&self) -> Digest {
        sha256(&[&self.encode()])
    }

    pub fn height(&self) -> Height {
        self.header.height
    }

    /// Decode from untrusted bytes, enforcing the size limit first.
    pub fn decode_bounded(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > limits::MAX_BLOCK_SIZE {
            return Err(Error::Codec(format!(
                "block is {} bytes, larger than the limit of {}",
                bytes.len(),
                limits::MAX_BLOCK_SIZE
            )));
        }
        Self::decode_cfg(bytes.to_vec(), &()).map_err(|e| Error::Codec(e.to_string()))
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.header.parent.write(buf);
        self.header.height.write(buf);
        self.header.timestamp_ms.write(buf);
        self.txs.write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        32 + 8 + 8 + self.txs.encode_size()
    }
}

impl Read for Block {
    type Cfg = ();
    fn read_cfg(buf: &mut impl commonware_codec::Buf, _: &()) -> Result<Self, CodecError> {
        let header = BlockHeader {
            parent: Digest::read(buf)?,
            height: Height::read(buf)?,
            timestamp_ms: u64::read(buf)?,
        };
        let txs = Vec::<SignedTransaction>::read_cfg(
            buf,
            &(RangeCfg::new(0..=limits::MAX_BLOCK_TXS), ()),
        )?;
        Ok(Self { header, txs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Address, Amount, Nonce, Transaction, key_from_seed};
    use commonware_cryptography::Signer;

    #[test]
    fn block_roundtrip() {
        let key = key_from_seed(4);
        let tx = Transaction {
            chain_id: "c".into(),
            signer: Address::from(&key.public_key()),
            nonce: Nonce::new(0),
            fee: Amount::new(1),
            action: Action::Withdraw,
        }
        .sign(&key);
        let block = Block {
            header: BlockHeader {
                parent: sha256(&[b"genesis"]),
                height: Height::new(1),
                timestamp_ms: 5,
            },
            txs: vec![tx.clone(), tx],
        };
        let bytes = block.encode();
        assert_eq!(bytes.len(), block.encode_size());
        let back = Block::decode_bounded(&bytes).unwrap();
        assert_eq!(back, block);
        assert_eq!(back.digest(), block.digest());
        assert!(Block::decode_bounded(&bytes[..bytes.len() - 1]).is_err());
    }
}
