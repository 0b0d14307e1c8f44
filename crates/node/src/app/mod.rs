//! The application: builds, verifies, disseminates and executes blocks for simplex.
//!
//! - **Propose**: waits until `parent.timestamp + block_time` (pacing: an unpaced single
//!   validator would finalize hundreds of empty blocks a second), then fills a block from the
//!   mempool on top of `context.parent`, skipping transactions already in pending ancestors,
//!   and persists its body *before* answering, so a finalization recorded by consensus always
//!   has a body after a crash.
//! - **Verify**: waits for the body (and its parent) to arrive; checks parent link, height,
//!   timestamp (strictly after the parent, at most [`MAX_CLOCK_SKEW_MS`] ahead of local time),
//!   size and every transaction's signature and chain id. Persists the body, then votes.
//! - **Relay**: sends a proposed body to every validator (channel [`BLOCKS_CHANNEL`]).
//! - **Finalize**: a finalization certifies a block *and its ancestors*: the actor walks back to
//!   its last executed block and executes the chain oldest first. Each block is appended to the
//!   finalized journal and synced before the ledger applies it, so after `kill -9` replaying the
//!   journal rebuilds exactly the state that was served.
//! - **Backfill**: a body it lacks (it was down, or a message was lost) is requested by digest
//!   on [`REQUESTS_CHANNEL`] every [`RETRY`]; any validator that has it answers on the blocks
//!   channel.

mod actor;
mod ingress;

pub use actor::Actor;
pub use ingress::{ConsensusContext, Mailbox, Message};

use std::time::Duration;

/// p2p channel ids. 0-2 belong to simplex (votes, certificates, resolver).
pub const VOTES_CHANNEL: u64 = 0;
pub const CERTIFICATES_CHANNEL: u64 = 1;
pub const RESOLVER_CHANNEL: u64 = 2;
pub const BLOCKS_CHANNEL: u64 = 3;
pub const REQUESTS_CHANNEL: u64 = 4;
/// Transactions gossiped between validators ([`crate::gossip`]).
pub const TXS_CHANNEL: u64 = 5;

/// How far ahead of the local clock a block's timestamp may be.
pub const MAX_CLOCK_SKEW_MS: u64 = 5_000;

/// How often missing bodies are requested again.
pub const RETRY: Duration = Duration::from_millis(500);

/// Application settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Minimum time between a block and its child.
    pub block_time: Duration,
    /// Most transactions put in one block.
    pub max_block_txs: usize,
    /// Storage partition prefix (unique per node when several share a store).
    pub partition_prefix: String,
}
