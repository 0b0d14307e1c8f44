//! State shared between the application actor (writer) and the RPC (readers).

use crate::mempool::{AdmitError, Mempool};
use plexus_ledger::{BlockOutcome, Event, Job, State};
use plexus_types::{Block, Digest, Height, JobId, SignedTransaction, TxHash, digest_hex};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// Where a transaction stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// Accepted into the mempool, not yet in a finalized block.
    Pending,
    /// In a finalized block; `error` is set if execution skipped it.
    Finalized {
        height: Height,
        index: usize,
        success: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Removed from the mempool without executing.
    Dropped { reason: String },
}

/// One finalized block, as announced to subscribers.
#[derive(Clone, Debug, Serialize)]
pub struct BlockEvent {
    pub height: Height,
    pub digest: String,
    pub parent: String,
    pub timestamp_ms: u64,
    pub txs: usize,
    pub failed_txs: usize,
    pub state_root: String,
    /// Job and provider events of the block (assignments, settlements, penalties...).
    pub events: Vec<Event>,
}

/// A job that has left the ledger state: its final record and how it ended.
#[derive(Clone, Debug)]
pub struct FinishedJob {
    pub job: Job,
    pub height: Height,
    pub outcome: Outcome,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Settled {
        payment: plexus_types::Amount,
        fee: plexus_types::Amount,
        refund: plexus_types::Amount,
    },
    Refunded {
        amount: plexus_types::Amount,
        reason: String,
    },
}

/// A job as JSON: the ledger's record with `phase` replaced by `status` (queued, assigned,
/// committed, revealed, settled or refunded), plus `settlement` or `refund` once finished.
pub fn job_json(job: &Job, finished: Option<(&Height, &Outcome)>) -> serde_json::Value {
    let mut value = serde_json::to_value(job).unwrap_or_default();
    let status = match finished {
        None => job.phase.as_str(),
        Some((_, Outcome::Settled { .. })) => "settled",
        Some((_, Outcome::Refunded { .. })) => "refunded",
    };
    if let Some(map) = value.as_object_mut() {
        map.remove("phase");
        map.insert("status".into(), status.into());
        let (settlement, refund) = match finished {
            Some((
                height,
                Outcome::Settled {
                    payment,
                    fee,
                    refund,
                },
            )) => (
                serde_json::json!({"height": height, "payment": payment, "fee": fee, "refund": refund}),
                serde_json::Value::Null,
            ),
            Some((height, Outcome::Refunded { amount, reason })) => (
                serde_json::Value::Null,
                serde_json::json!({"height": height, "amount": amount, "reason": reason}),
            ),
            None => (serde_json::Value::Null, serde_json::Value::Null),
        };
        map.insert("settlement".into(), settlement);
        map.insert("refund".into(), refund);
    }
    value
}

/// Finality latencies (proposal to local finalization) of the last blocks this node proposed.
#[derive(Debug, Default)]
pub struct LatencyWindow {
    samples: VecDeque<u64>,
}

impl LatencyWindow {
    const CAPACITY: usize = 1024;

    pub fn record(&mut self, ms: u64) {
        if self.samples.len() == Self::CAPACITY {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
    }

    /// (p50, p99, count) in milliseconds.
    pub fn percentiles(&self) -> Option<(u64, u64, usize)> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<u64> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let at = |p: usize| sorted[(sorted.len() - 1) * p / 100];
        Some((at(50), at(99), sorted.len()))
    }
}

/// The node's view of the chain after its last executed (finalized) block.
#[derive(Debug)]
pub struct NodeState {
    pub ledger: State,
    pub genesis_digest: Digest,
    pub head_digest: Digest,
    pub head_timestamp_ms: u64,
    pub mempool: Mempool,
    pub statuses: HashMap<TxHash, TxStatus>,
    /// State root after each height (index = height; 0 is genesis).
    pub state_roots: Vec<Digest>,
    pub latencies: LatencyWindow,
    pub events: broadcast::Sender<BlockEvent>,
    /// Jobs that were settled or refunded (rebuilt by replay on start).
    pub finished_jobs: HashMap<JobId, FinishedJob>,
    /// Where [`submit`](Self::submit) queues admitted transactions for the other validators
    /// (see [`gossip`](crate::gossip)); `None`: no gossip.
    pub gossip: Option<crate::gossip::Outbox>,
    /// Transactions whose signature this node verified (at admission or in a proposal), so
    /// execution does not verify them again.
    pub verified: VerifiedSignatures,
}

/// A bounded set of transaction hashes whose signatures were verified (a hash covers the
/// signature, so the same hash means the same verified bytes). Oldest forgotten first.
#[derive(Debug, Default)]
pub struct VerifiedSignatures {
    set: std::collections::HashSet<TxHash>,
    order: std::collections::VecDeque<TxHash>,
}

impl VerifiedSignatures {
    /// Hashes remembered (about 10 MB).
    pub const CAPACITY: usize = 1 << 18;

    pub fn insert(&mut self, hash: TxHash) {
        if self.set.insert(hash) {
            self.order.push_back(hash);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.set.contains(hash)
    }
}

impl NodeState {
    pub fn new(ledger: State, genesis_digest: Digest, mempool_capacity: usize) -> Self {
        let (events, _) = broadcast::channel(1024);
        let root = ledger.state_root();
        Self {
            ledger,
            genesis_digest,
            head_digest: genesis_digest,
            head_timestamp_ms: 0,
            mempool: Mempool::new(mempool_capacity),
            statuses: HashMap::new(),
            state_roots: vec![root],
            latencies: LatencyWindow::default(),
            events,
            finished_jobs: HashMap::new(),
            gossip: None,
            verified: VerifiedSignatures::default(),
        }
    }

    /// Admit a transaction from a client to the mempool and queue it for the other
    /// validators.
    pub fn submit(&mut self, tx: SignedTransaction) -> Result<TxHash, AdmitError> {
        let gossiped = self.gossip.as_ref().map(|_| tx.clone());
        let hash = self.admit_gossiped(tx)?;
        if let (Some(outbox), Some(tx)) = (self.gossip.as_mut(), gossiped) {
            // A full queue drops the gossip, not the transaction: it stays in this mempool.
            let _ = outbox.try_send(tx);
        }
        Ok(hash)
    }

    /// Admit a transaction another validator gossiped (not sent on again).
    pub fn admit_gossiped(&mut self, tx: SignedTransaction) -> Result<TxHash, AdmitError> {
        let hash = self.mempool.admit(&self.ledger, tx)?;
        self.statuses.insert(hash, TxStatus::Pending);
        self.verified.insert(hash);
        Ok(hash)
    }

    /// Execute a finalized block. The caller has already made it durable.
    pub fn execute(&mut self, block: &Block) -> Result<BlockOutcome, plexus_ledger::LedgerError> {
        // The block's digest is the assignment randomness: unknown to a job's poster when it
        // submits (it depends on the whole block), though its proposer could grind it.
        let digest = block.digest();
        let verified = &self.verified;
        let outcome =
            self.ledger
                .apply_block_known(block.height(), &digest, &block.txs, &|tx| {
                    verified.contains(&tx.hash())
                })?;
        for event in &outcome.events {
            let (job, outcome) = match event {
                Event::JobSettled {
                    job,
                    payment,
                    fee,
                    refund,
                } => (
                    job,
                    Outcome::Settled {
                        payment: *payment,
                        fee: *fee,
                        refund: *refund,
                    },
                ),
                Event::JobRefunded {
                    job,
                    amount,
                    reason,
                } => (
                    job,
                    Outcome::Refunded {
                        amount: *amount,
                        reason: reason.clone(),
                    },
                ),
                _ => continue,
            };
            self.finished_jobs.insert(
                job.id,
                FinishedJob {
                    job: (**job).clone(),
                    height: block.height(),
                    outcome,
                },
            );
        }
        let hashes: Vec<TxHash> = block.txs.iter().map(|t| t.hash()).collect();
        let mut failed = 0;
        for (index, (hash, result)) in hashes.iter().zip(&outcome.results).enumerate() {
            let (success, error) = match result {
                Ok(()) => (true, None),
                Err(e) => {
                    failed += 1;
                    (false, Some(e.to_string()))
                }
            };
            self.statuses.insert(
                *hash,
                TxStatus::Finalized {
                    height: block.height(),
                    index,
                    success,
                    error,
                },
            );
        }
        for (hash, reason) in self.mempool.after_block(&self.ledger, &hashes) {
            self.statuses.insert(hash, TxStatus::Dropped { reason });
        }
        self.head_digest = digest;
        self.head_timestamp_ms = block.header.timestamp_ms;
        self.state_roots.push(outcome.state_root);
        let _ = self.events.send(BlockEvent {
            height: block.height(),
            digest: digest_hex(&digest),
            parent: digest_hex(&block.header.parent),
            timestamp_ms: block.header.timestamp_ms,
            txs: block.txs.len(),
            failed_txs: failed,
            state_root: digest_hex(&outcome.state_root),
            events: outcome.events.clone(),
        });
        Ok(outcome)
    }
}

/// A cloneable handle to [`NodeState`].
#[derive(Clone, Debug)]
pub struct Shared(Arc<Mutex<NodeState>>);

impl Shared {
    pub fn new(state: NodeState) -> Self {
        Self(Arc::new(Mutex::new(state)))
    }

    /// Lock the state. A poisoned lock means a thread panicked mid-update: the node cannot
    /// trust its state any more, so it stops rather than serve it.
    pub fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.0.lock().expect("node state lock poisoned")
    }
}
