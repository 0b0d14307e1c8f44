//! Transactions waiting for a block.
//!
//! Admission runs the ledger's full check against the last finalized state *plus* the
//! sender's transactions already queued here, so an accepted transaction would execute if
//! blocks were built right now: correct signature and chain id, exactly the next nonce (no
//! replays, no gaps), fee at least the minimum, and enough funds for everything the sender
//! has queued. Transactions leave when a finalized block includes them, or are dropped (with
//! a recorded reason) when an earlier transaction of the same sender failed and left a gap.

use plexus_ledger::{Queued, State, TxError, cost};
use plexus_types::{Address, Amount, Nonce, SignedTransaction, TxHash};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("transaction {0} is already pending")]
    Duplicate(String),
    #[error("mempool is full ({0} transactions); retry later")]
    Full(usize),
    #[error(transparent)]
    Invalid(#[from] TxError),
}

impl AdmitError {
    pub fn code(&self) -> &'static str {
        match self {
            AdmitError::Duplicate(_) => "duplicate",
            AdmitError::Full(_) => "mempool_full",
            AdmitError::Invalid(e) => e.code(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    tx: SignedTransaction,
    seq: u64,
}

#[derive(Debug)]
pub struct Mempool {
    capacity: usize,
    next_seq: u64,
    entries: HashMap<TxHash, Entry>,
    /// Arrival order; a sender's transactions arrive in nonce order by construction.
    order: BTreeMap<u64, TxHash>,
    /// Per sender: nonce -> hash, and the total spend queued.
    senders: BTreeMap<Address, (BTreeMap<Nonce, TxHash>, Amount)>,
}

impl Mempool {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next_seq: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            senders: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many transactions of `sender` are queued.
    pub fn queued(&self, sender: &Address) -> u64 {
        self.senders.get(sender).map_or(0, |(q, _)| q.len() as u64)
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// Check `tx` against `state` and the sender's queue, and queue it.
    pub fn admit(&mut self, state: &State, tx: SignedTransaction) -> Result<TxHash, AdmitError> {
        let hash = tx.hash();
        if self.entries.contains_key(&hash) {
            return Err(AdmitError::Duplicate(plexus_types::digest_hex(&hash)));
        }
        if self.entries.len() >= self.capacity {
            return Err(AdmitError::Full(self.capacity));
        }
        let (txs, spend) = self
            .senders
            .get(&tx.tx.signer)
            .map(|(q, s)| (q.len() as u64, *s))
            .unwrap_or((0, Amount::ZERO));
        state.check_tx(&tx, Queued { txs, spend })?;
        // check_tx verified the queued spend plus this cost fits in the balance.
        let tx_cost = cost(&tx.tx).ok_or(TxError::Overflow)?;
        let queue = self
            .senders
            .entry(tx.tx.signer)
            .or_insert_with(|| (BTreeMap::new(), Amount::ZERO));
        queue.1 = queue.1.checked_add(tx_cost).ok_or(TxError::Overflow)?;
        queue.0.insert(tx.tx.nonce, hash);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, hash);
        self.entries.insert(hash, Entry { tx, seq });
        Ok(hash)
    }

    /// Up to `max` transactions in arrival order, skipping `exclude` (already in a pending
    /// ancestor block).
    pub fn select(&self, max: usize, exclude: &HashSet<TxHash>) -> Vec<SignedTransaction> {
        self.order
            .values()
            .filter(|h| !exclude.contains(*h))
            .take(max)
            .map(|h| self.entries[h].tx.clone())
            .collect()
    }

    fn remove(&mut self, hash: &TxHash) -> Option<SignedTransaction> {
        let entry = self.entries.remove(hash)?;
        self.order.remove(&entry.seq);
        let signer = entry.tx.tx.signer;
        if let Some(queue) = self.senders.get_mut(&signer) {
            queue.0.remove(&entry.tx.tx.nonce);
            let c = cost(&entry.tx.tx).unwrap_or(Amount::ZERO);
            queue.1 = queue.1.checked_sub(c).unwrap_or(Amount::ZERO);
            if queue.0.is_empty() {
                self.senders.remove(&signer);
            }
        }
        Some(entry.tx)
    }

    /// After a block executed: forget what it included, and drop queued transactions that can
    /// no longer execute (their nonce is used, or a gap opened because an earlier one failed).
    /// Returns the dropped hashes with the reason.
    pub fn after_block(&mut self, state: &State, included: &[TxHash]) -> Vec<(TxHash, String)> {
        for hash in included {
            self.remove(hash);
        }
        let mut dropped = Vec::new();
        let senders: Vec<Address> = self.senders.keys().copied().collect();
        for signer in senders {
            let next = state.account(&signer).nonce;
            let queued: Vec<(Nonce, TxHash)> = self.senders[&signer]
                .0
                .iter()
                .map(|(n, h)| (*n, *h))
                .collect();
            let mut expected = next;
            let mut broken = false;
            for (nonce, hash) in queued {
                if nonce < next {
                    self.remove(&hash);
                    dropped.push((
                        hash,
                        format!("nonce {nonce} was used by another transaction"),
                    ));
                    continue;
                }
                if broken || nonce != expected {
                    broken = true;
                    self.remove(&hash);
                    dropped.push((
                        hash,
                        format!(
                            "an earlier transaction of this sender failed; nonce {expected} is next"
                        ),
                    ));
                    continue;
                }
                expected = expected.checked_next().unwrap_or(expected);
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_ledger::{Genesis, GenesisAccount, Params};
    use plexus_types::{Action, Signer, Transaction, key_from_seed};

    fn setup() -> (State, plexus_types::PrivateKey, Address) {
        let key = key_from_seed(1);
        let address = Address::from(&key.public_key());
        let genesis = Genesis {
            chain_id: "t".into(),
            models: Vec::new(),
            params: Params::new(Amount::new(1), 2),
            accounts: vec![GenesisAccount {
                address,
                balance: Amount::new(100),
                stake: Amount::ZERO,
            }],
        };
        (
            State::from_genesis(&genesis).unwrap(),
            key,
            Address::from_bytes([7; 32]),
        )
    }

    fn transfer(key: &plexus_types::PrivateKey, nonce: u64, amount: u128) -> SignedTransaction {
        Transaction {
            chain_id: "t".into(),
            signer: Address::from(&key.public_key()),
            nonce: Nonce::new(nonce),
            fee: Amount::new(1),
            action: Action::Transfer {
                to: Address::from_bytes([7; 32]),
                amount: Amount::new(amount),
            },
        }
        .sign(key)
    }

    #[test]
    fn queues_consecutive_nonces_and_counts_queued_spend() {
        let (state, key, _) = setup();
        let mut pool = Mempool::new(10);
        pool.admit(&state, transfer(&key, 0, 40)).unwrap();
        pool.admit(&state, transfer(&key, 1, 40)).unwrap();
        // 82 queued of 100: a third transfer of 40 + 1 would overdraw.
        assert!(matches!(
            pool.admit(&state, transfer(&key, 2, 40)),
            Err(AdmitError::Invalid(TxError::InsufficientFunds { .. }))
        ));
        assert!(matches!(
            pool.admit(&state, transfer(&key, 5, 1)),
            Err(AdmitError::Invalid(TxError::NonceGap { .. }))
        ));
        assert!(matches!(
            pool.admit(&state, transfer(&key, 1, 40)),
            Err(AdmitError::Duplicate(_))
        ));
        assert_eq!(pool.queued(&Address::from(&key.public_key())), 2);
        let selected = pool.select(10, &HashSet::new());
        assert_eq!(selected.len(), 2);
        assert_eq!(selected[0].tx.nonce, Nonce::new(0));
    }

    #[test]
    fn capacity_is_enforced() {
        let (state, key, _) = setup();
        let mut pool = Mempool::new(1);
        pool.admit(&state, transfer(&key, 0, 1)).unwrap();
        assert!(matches!(
            pool.admit(&state, transfer(&key, 1, 1)),
            Err(AdmitError::Full(1))
        ));
    }

    #[test]
    fn after_block_removes_included_and_drops_gapped() {
        let (mut state, key, _) = setup();
        let mut pool = Mempool::new(10);
        let a = transfer(&key, 0, 10);
        let b = transfer(&key, 1, 10);
        let c = transfer(&key, 2, 10);
        for tx in [&a, &b, &c] {
            pool.admit(&state, tx.clone()).unwrap();
        }
        // A block executes `a` and a conflicting transaction with nonce 1 (from elsewhere),
        // so `b` is stale and `c` can still run.
        let other = transfer(&key, 1, 5);
        let outcome = state
            .apply_block(
                plexus_types::Height::new(1),
                &plexus_types::Digest([7; 32]),
                &[a.clone(), other],
            )
            .unwrap();
        assert!(outcome.results.iter().all(Result::is_ok));
        let dropped = pool.after_block(&state, &[a.hash()]);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, b.hash());
        assert!(pool.contains(&c.hash()));
        assert_eq!(pool.len(), 1);
    }
}
