//! node: Order blocks with BFT consensus over authenticated p2p, execute them on the ledger,
//! persist, serve RPC.
//!
//! # Bird's eye view
//!
//! ```text
//!   RPC (axum) ──submit──▶ mempool ◀──select── app actor ◀──propose/verify── simplex engine
//!        │                                        │   ▲                          │
//!        └──────read─────▶ NodeState ◀──execute───┘   └──── finalization ────────┘
//!                          (ledger)         │
//!                                  finalized journal (commonware-storage, fsync per block)
//! ```
//!
//! - [`engine::start_validator`] wires one validator: the [`app`] actor (automaton, relay and
//!   reporter for simplex) and the simplex engine over five p2p channels. It is generic over
//!   the runtime, so the same code runs on tokio ([`run::run`]) and on commonware's
//!   deterministic runtime with a simulated network (the tests in `tests/`).
//! - [`shared::NodeState`] is the executed ledger plus mempool and indexes, read by the
//!   RPC and written only by the actor when a finalized block executes.
//! - Durability: the finalized journal is the source of truth; on start the node replays it
//!   into a fresh ledger from genesis. Bodies a validator voted for are journaled before the
//!   vote, and simplex keeps its own journal, so `kill -9` at any point loses nothing that
//!   was finalized and never makes a validator vote twice.

pub mod app;
pub mod blobs;
pub mod engine;
pub mod gossip;
pub mod mempool;
pub mod rpc;
pub mod run;
pub mod shared;

pub use run::{NodeConfig, ValidatorEntry, load_genesis, run};

/// Errors that stop a node from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;
