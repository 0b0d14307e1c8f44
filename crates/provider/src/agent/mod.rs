//! The provider agent: one long-running actor that takes the jobs the chain assigns to this
//! provider through commit and reveal, and re-runs the jobs of others it is drawn to check.
//!
//! # Start ([`Provider::start`])
//!
//! 1. Open the [store](crate::store) under `data_dir` and bind the output server on `listen`
//!    (so [`Provider::local_addr`] is known before anything is registered).
//! 2. Check that every configured model is in the catalogue and registered on chain with the
//!    same kind (`GET /models`), then load and verify its files (`plexus models install NAME`
//!    if they are missing).
//! 3. Bond: if the account's stake is below the target (`stake`, default the chain's
//!    `min_provider_stake`), bond the difference and wait until it is final and succeeded.
//! 4. Register with `RegisterProvider` (models, capacity, region, price floor, endpoint) if
//!    not registered or if the declaration on chain differs, and wait likewise.
//!
//! # Run ([`Provider::run`])
//!
//! The actor wakes on every finalized block (the node's block events; polling every
//! [`POLL`] when they are unavailable) and reads the jobs the chain holds for this provider
//! (`GET /providers/{address}/jobs`: assigned to it, or with a check by it). For each of its
//! own jobs:
//!
//! - **assigned, no record**: fetch its input blob from the node, run it, store the output
//!   and the record durably, upload the output to the node (`POST /blobs`), then submit
//!   `CommitResult { commitment(job, output_hash, salt) }` with a fresh random salt. An input
//!   the node does not have is waited for until [`INPUT_GRACE_BLOCKS`] before the commit
//!   deadline, then answered with `input_unavailable`.
//! - **assigned, with a record** (a restart, or a commit that failed): submit the same
//!   commitment again, unless one is pending.
//! - **committed**: submit `RevealResult` with the recorded output hash, size, salt and
//!   units, and the signed [`Receipt`](plexus_types::Receipt). The ledger requires the reveal
//!   in a block after the commit's; the job is only seen as committed once that block is
//!   final, so any transaction sent then lands in a later block.
//! - **committed, spot check drawn, its verifier not committed**: wait (the ledger refuses
//!   the reveal with `awaiting_verifier`); reveal once the check has a commitment or was
//!   missed. The chain moved the reveal deadline past the verifier's commit deadline.
//! - **revealed**: nothing; the job settles on its own.
//!
//! For each job with a check by this provider still due (a spot check or a dispute vote):
//!
//! - **not committed, no check record**: fetch the input (as for an own job, waiting up to
//!   the check's commit deadline), run it through the same runner in a batch of checks
//!   (batches of own jobs and of checks alternate when both wait), store the output and a
//!   [`CheckRecord`](crate::store::CheckRecord) durably, upload the output to the node (so
//!   a dispute can inspect it), then submit `CommitCheck { check_commitment(job, this
//!   address, output_hash, salt) }` with a fresh random salt.
//! - **not committed, with a check record** (a restart, or a commit that failed): submit the
//!   same check commitment again, never a new result.
//! - **committed, the job revealed**: fetch the provider's output by its revealed hash (node,
//!   else the provider's endpoint; hash and size checked), compare by
//!   [`verify::agrees`](crate::verify::agrees) (chat: identical; embeddings: within the
//!   chain's `embedding_tolerance_micros`), and submit `RevealCheck` with the verdict. An
//!   output that cannot be had by [`INPUT_GRACE_BLOCKS`] before the check's reveal deadline
//!   is a disagreement. Identical hashes agree without a fetch.
//! - **committed, the job not yet revealed**: wait.
//!
//! Inference runs on a blocking thread, one batch at a time; jobs that arrive meanwhile wait
//! and form the next batch, so the batch grows with the load. All embedding jobs of a batch
//! go through one `embed` call per model. The actor keeps committing and revealing while a
//! batch runs.
//!
//! A chat job's [stream](crate::stream) opens when its input is fetched (so its owner can
//! attach while it waits for a batch); the model's text goes into it piece by piece as it is
//! generated, and it ends when the job's outcome is known, before the record is written and
//! the commit sent. The owner reads it live from `GET /jobs/{id}/stream` on the provider's
//! endpoint; it is never on chain, and only the committed output counts.
//!
//! Transactions are signed here and sent one after another from the actor, with consecutive
//! nonces starting at the account's `next_nonce`. A job's commit or reveal (or a check's) is not sent
//! again while one is pending; a nonce error (`stale_nonce`, `nonce_gap`, another client using the
//! same key) ends the round's sending, and the next block retries. A transaction that fails
//! on chain is logged with its job and retried on the next block if the job still needs it.
//!
//! A job this provider cannot run at all (its model is not loaded here, the model failed) is
//! logged and left to time out; the chain then penalises the provider and offers the job to
//! another (a check it cannot run is missed, and penalised the same way). Records of jobs
//! that have left the state are deleted after [`PRUNE_AFTER_BLOCKS`] blocks, once the node
//! confirms the job settled, was refunded or went to another provider (for a check: no
//! longer has a check by this provider).
//!
//! With [`ProviderConfig::cheat_rate`] above 0 (testing only) the provider corrupts that
//! fraction of its own outputs before recording them ([`crate::verify::corrupt`]); its
//! checks stay honest.

mod actor;
mod feed;
#[cfg(test)]
mod tests;

pub use actor::{Provider, run};

use plexus_types::{Amount, PrivateKey};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How often the agent polls the node when block events are unavailable.
pub const POLL: Duration = Duration::from_millis(50);
/// How often it polls anyway while block events flow (a missed event costs at most this).
pub const LIVE_POLL: Duration = Duration::from_secs(1);
/// A missing input is answered with `input_unavailable` once the commit deadline is this
/// close; before that, the node may still receive it.
pub const INPUT_GRACE_BLOCKS: u64 = 3;
/// Blocks a job must be gone from the state before its record is deleted.
pub const PRUNE_AFTER_BLOCKS: u64 = 20;
/// How long start-up waits for its bond and registration transactions.
pub const TX_WAIT: Duration = Duration::from_secs(60);

/// How to run a provider.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The node's RPC base URL, e.g. `http://127.0.0.1:8545`.
    pub rpc: String,
    /// The provider's account key: it bonds, registers, commits, reveals and signs receipts.
    pub key: PrivateKey,
    /// Catalogue names of the models to serve (`plexus models list`).
    pub models: Vec<String>,
    /// Where models are installed; `None`: the default models dir.
    pub models_dir: Option<PathBuf>,
    /// Bond up to this much total stake; `None`: the chain's `min_provider_stake`.
    pub stake: Option<Amount>,
    /// Free-form region label (jobs may prefer a region).
    pub region: String,
    /// Jobs held at once (assigned or committed, not yet revealed).
    pub capacity: u32,
    /// The lowest price per unit accepted.
    pub price_floor: Amount,
    /// Where job records and outputs are kept; must survive restarts.
    pub data_dir: PathBuf,
    /// Where the output server listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The URL registered on chain for the outputs; `None`: `http://<bound listen address>`
    /// (set it when listening on a wildcard address or behind a proxy).
    pub endpoint: Option<String>,
    /// For testing verification only: the fraction (0 to 1) of its own job outputs this
    /// provider corrupts, chosen from the job id ([`crate::verify`]); such a provider is
    /// caught and slashed. Its re-runs as a verifier stay honest. 0 everywhere else.
    pub cheat_rate: f64,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Everything but the key.
        f.debug_struct("ProviderConfig")
            .field("rpc", &self.rpc)
            .field("models", &self.models)
            .field("models_dir", &self.models_dir)
            .field("stake", &self.stake)
            .field("region", &self.region)
            .field("capacity", &self.capacity)
            .field("price_floor", &self.price_floor)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("endpoint", &self.endpoint)
            .field("cheat_rate", &self.cheat_rate)
            .finish_non_exhaustive()
    }
}
