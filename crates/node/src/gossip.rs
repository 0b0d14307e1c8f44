//! Transaction gossip: a transaction admitted through this node's RPC is sent to every other
//! validator (channel [`TXS_CHANNEL`](crate::app::TXS_CHANNEL)), so whichever validator
//! leads the next view can include it. Without it, a transaction waits until the validator it
//! was submitted to becomes leader: with four validators in round robin, four block times.
//!
//! Best effort and one hop: received transactions go through the same mempool admission as
//! RPC ones (signature, chain id, nonce, fee, funds; duplicates ignored) and are not sent on
//! again. Outgoing transactions are batched: each message carries everything queued since the
//! last one, up to [`MAX_BATCH_TXS`] or [`MAX_BATCH_BYTES`]. A message that does not decode
//! is dropped whole.
//!
//! Batch encoding: `count u32 || count times (len u32 || signed transaction)`, big-endian.

use crate::shared::Shared;
use commonware_codec::Encode;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Handle, Spawner};
use futures::StreamExt;
use futures::channel::mpsc;
use plexus_types::{PublicKey, SignedTransaction, limits};
use tracing::debug;

/// Most transactions in one gossip message.
pub const MAX_BATCH_TXS: usize = 1024;
/// Most bytes of transactions in one gossip message.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Transactions queued for gossip before new ones are dropped (they stay in the mempool).
pub const QUEUE: usize = 16 * 1024;

/// The sending half, held by the node state: [`NodeState::submit`](crate::shared::NodeState::submit)
/// queues every transaction it admits.
pub type Outbox = mpsc::Sender<SignedTransaction>;

/// A queue for [`start`].
pub fn outbox() -> (Outbox, mpsc::Receiver<SignedTransaction>) {
    mpsc::channel(QUEUE)
}

/// Encode a batch.
pub fn encode_batch(txs: &[SignedTransaction]) -> Vec<u8> {
    let encoded: Vec<_> = txs.iter().map(|tx| tx.encode()).collect();
    frame(&encoded)
}

/// A batch of transactions already encoded.
fn frame<B: AsRef<[u8]>>(encoded: &[B]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    for bytes in encoded {
        let bytes = bytes.as_ref();
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Decode a batch; `None` if it is malformed in any way (length, count, a transaction).
pub fn decode_batch(mut bytes: &[u8]) -> Option<Vec<SignedTransaction>> {
    let mut take = |n: usize| -> Option<&[u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, rest) = bytes.split_at(n);
        bytes = rest;
        Some(head)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
    if count > MAX_BATCH_TXS {
        return None;
    }
    let mut txs = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
        if len > limits::MAX_TX_SIZE {
            return None;
        }
        txs.push(SignedTransaction::decode_bounded(take(len)?).ok()?);
    }
    bytes.is_empty().then_some(txs)
}

/// Run the gossip: send what `outbox` receives to every validator, admit what they send.
pub fn start<E, S, R>(
    context: E,
    shared: Shared,
    mut outbox: mpsc::Receiver<SignedTransaction>,
    (mut sender, mut receiver): (S, R),
) -> Handle<()>
where
    E: Spawner,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    context.spawn(move |_| async move {
        loop {
            commonware_macros::select! {
                next = outbox.next() => {
                    let Some(first) = next else { break };
                    let mut batch = vec![first.encode()];
                    let mut size = batch[0].len();
                    while batch.len() < MAX_BATCH_TXS && size < MAX_BATCH_BYTES {
                        let Ok(tx) = outbox.try_recv() else { break };
                        let bytes = tx.encode();
                        size += bytes.len() + 4;
                        batch.push(bytes);
                    }
                    sender.send(Recipients::All, frame(&batch), false);
                },
                received = receiver.recv() => {
                    let Ok((from, bytes)) = received else { break };
                    let Some(txs) = decode_batch(bytes.as_ref()) else {
                        debug!(%from, "dropped a malformed transaction batch");
                        continue;
                    };
                    let mut state = shared.lock();
                    for tx in txs {
                        // Duplicates and transactions this node's view rejects are dropped.
                        let _ = state.admit_gossiped(tx);
                    }
                },
            }
        }
        debug!("transaction gossip stopped");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_types::{Action, Address, Amount, Nonce, Signer as _, Transaction, key_from_seed};

    fn tx(nonce: u64) -> SignedTransaction {
        let key = key_from_seed(1);
        Transaction {
            chain_id: "c".into(),
            signer: Address::from(&key.public_key()),
            nonce: Nonce::new(nonce),
            fee: Amount::new(1),
            action: Action::Transfer {
                to: Address::from_bytes([2; 32]),
                amount: Amount::new(3),
            },
        }
        .sign(&key)
    }

    #[test]
    fn batches_roundtrip_and_garbage_is_refused() {
        let txs: Vec<_> = (0..5).map(tx).collect();
        let bytes = encode_batch(&txs);
        assert_eq!(decode_batch(&bytes).unwrap(), txs);
        assert_eq!(decode_batch(&encode_batch(&[])).unwrap(), vec![]);
        // Truncated, trailing bytes, a corrupted transaction, absurd counts and lengths.
        assert!(decode_batch(&bytes[..bytes.len() - 1]).is_none());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_batch(&trailing).is_none());
        let mut corrupt = bytes.clone();
        corrupt[10] ^= 0xff;
        assert!(decode_batch(&corrupt).is_none() || decode_batch(&corrupt).unwrap() != txs);
        assert!(decode_batch(&u32::MAX.to_be_bytes()).is_none());
        let mut huge = 1u32.to_be_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_batch(&huge).is_none());
        assert!(decode_batch(&[]).is_none());
    }
}
