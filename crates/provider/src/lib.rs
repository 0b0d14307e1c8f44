//! provider: Claim jobs assigned to this provider, run them, and commit signed results; re-run sampled jobs as a verifier.
//!
//! # Bird's eye view
//!
//! - [`payload`]: the off-chain formats of job inputs and outputs (embedding, chat, error),
//!   how units are counted, and [`payload::embed_max_units`] for posters. Shared with the
//!   CLI and the gateway.
//! - [`agent`]: the actor. [`Provider::start`] checks the models against the chain, bonds
//!   and registers; [`Provider::run`] wakes on each finalized block, runs newly assigned
//!   jobs in batches on a blocking thread, commits, and reveals with a signed receipt; as a
//!   verifier it re-runs the jobs of others it is drawn to check, commits, and reveals its
//!   verdict.
//! - [`verify`]: the verdict rule (chat exact, embeddings within the chain's tolerance) and
//!   the testing-only switch that makes a provider cheat.
//! - `stream`: the text of each chat job as the model produces it, kept for the job's owner
//!   to read while the commitment goes on chain.
//! - [`store`]: one durable record per job (output hash, salt, size, units) and per check,
//!   and the outputs, written before the commit is sent, so a restart never commits a
//!   different result and can always reveal.
//! - `serve`: the provider's HTTP endpoint, the URL it registers on chain: outputs by hash
//!   (`GET /blobs/{hash}`), and for a job's owner its result before the reveal
//!   (`GET /jobs/{id}/result`) and its chat text live as NDJSON (`GET /jobs/{id}/stream`).
//!
//! # Example
//!
//! ```no_run
//! # async fn example(key: plexus_types::PrivateKey) -> Result<(), plexus_provider::Error> {
//! use plexus_provider::{Provider, ProviderConfig};
//! let config = ProviderConfig {
//!     rpc: "http://127.0.0.1:8545".into(),
//!     key,
//!     models: vec!["all-minilm-l6-v2".into()],
//!     models_dir: None,
//!     stake: None,
//!     region: "eu".into(),
//!     capacity: 64,
//!     price_floor: plexus_types::Amount::new(1),
//!     data_dir: "provider-data".into(),
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     endpoint: None,
//!     cheat_rate: 0.0,
//! };
//! let provider = Provider::start(config).await?;
//! println!("serving outputs on {}", provider.local_addr());
//! provider.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

pub mod agent;
mod error;
pub mod payload;
mod runner;
mod serve;
pub mod store;
mod stream;
pub mod verify;

pub use agent::{Provider, ProviderConfig, run};
pub use error::{Error, Result};
