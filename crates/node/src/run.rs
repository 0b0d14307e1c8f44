//! Running a validator process on tokio with authenticated p2p and the RPC server.

use crate::app::{
    BLOCKS_CHANNEL, CERTIFICATES_CHANNEL, REQUESTS_CHANNEL, RESOLVER_CHANNEL, TXS_CHANNEL,
    VOTES_CHANNEL,
};
use crate::engine::{Channels, Timing, chain_namespace, start_validator};
use crate::rpc::{self, RpcState};
use crate::shared::{NodeState, Shared};
use crate::{Error, Result};
use commonware_cryptography::{ChaCha20Poly1305, Signer};
use commonware_p2p::{Address as P2pAddress, AddressableManager as _, authenticated::lookup};
use commonware_runtime::{Quota, Runner as _, Spawner as _, Supervisor as _, tokio as cw_tokio};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map, ordered::Set};
use plexus_ledger::{Genesis, State};
use plexus_types::{PublicKey, limits, parse_private_key};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::info;

/// p2p namespace (domain separation of handshakes). Handshakes commit to
/// [`chain_namespace`]`(P2P_NAMESPACE, genesis)`, so a peer holding a listed validator key
/// but another genesis (another chain id, another document) fails the handshake.
pub const P2P_NAMESPACE: &[u8] = b"_PLEXUS_P2P_V1";

/// One validator's view of its peers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidatorEntry {
    /// ed25519 public key, hex.
    pub public_key: String,
    /// Where its p2p listener is.
    pub p2p: SocketAddr,
}

/// A validator's config file (TOML).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Where the node keeps its chain (created if missing).
    pub data_dir: PathBuf,
    /// File holding this validator's private key (64 hex characters).
    pub key_file: PathBuf,
    /// Genesis file (JSON), identical on every validator.
    pub genesis_file: PathBuf,
    pub p2p_listen: SocketAddr,
    pub rpc_listen: SocketAddr,
    /// Minimum time between blocks, in milliseconds.
    #[serde(default = "default_block_time_ms")]
    pub block_time_ms: u64,
    #[serde(default = "default_max_block_txs")]
    pub max_block_txs: usize,
    #[serde(default = "default_mempool_capacity")]
    pub mempool_capacity: usize,
    /// Every validator, this one included.
    pub validators: Vec<ValidatorEntry>,
}

fn default_block_time_ms() -> u64 {
    200
}
fn default_max_block_txs() -> usize {
    10_000
}
fn default_mempool_capacity() -> usize {
    100_000
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config: NodeConfig =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        // Relative paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.data_dir,
            &mut config.key_file,
            &mut config.genesis_file,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }
}

/// Read and check a genesis file.
pub fn load_genesis(path: &Path) -> Result<Genesis> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read genesis {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("genesis {}: {e}", path.display())))
}

/// The file in a data directory naming the genesis its chain was built from.
pub const GENESIS_MARKER: &str = "genesis.digest";

/// Bind a data directory to one genesis: the first start writes the genesis digest into it,
/// later starts refuse a different genesis instead of replaying one chain's blocks on
/// another's state.
pub fn claim_data_dir(data_dir: &Path, genesis: &Genesis) -> Result<()> {
    let digest = plexus_types::digest_hex(&genesis.digest());
    let marker = data_dir.join(GENESIS_MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(found) if found.trim() == digest => Ok(()),
        Ok(found) => Err(Error::Config(format!(
            "data directory {} holds the chain of genesis {}, but this config's genesis (chain \
             id {:?}) is {digest}; point data_dir at a fresh directory or use the genesis it \
             was created with",
            data_dir.display(),
            found.trim(),
            genesis.chain_id,
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = data_dir.join(format!("{GENESIS_MARKER}.tmp"));
            std::fs::write(&tmp, format!("{digest}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &marker))
                .map_err(|e| Error::Config(format!("cannot write {}: {e}", marker.display())))
        }
        Err(e) => Err(Error::Config(format!(
            "cannot read {}: {e}",
            marker.display()
        ))),
    }
}

fn parse_public_key(hex_key: &str) -> Result<PublicKey> {
    hex_key
        .parse::<plexus_types::Address>()
        .and_then(|address| address.public_key())
        .map_err(|e| Error::Config(format!("validator key {hex_key:?}: {e}")))
}

/// Called once the RPC is listening, with its address.
pub type OnReady = Box<dyn FnOnce(SocketAddr) + Send>;

/// Run a validator until the process is stopped. Blocks the calling thread.
pub fn run(config: NodeConfig, on_ready: Option<OnReady>) -> Result<()> {
    let genesis = load_genesis(&config.genesis_file)?;
    let ledger =
        State::from_genesis(&genesis).map_err(|e| Error::Config(format!("genesis: {e}")))?;
    let key_text = std::fs::read_to_string(&config.key_file).map_err(|e| {
        Error::Config(format!(
            "cannot read key file {}: {e}",
            config.key_file.display()
        ))
    })?;
    let key = parse_private_key(&key_text)
        .map_err(|e| Error::Config(format!("key file {}: {e}", config.key_file.display())))?;
    let mut peers = Vec::new();
    for entry in &config.validators {
        peers.push((parse_public_key(&entry.public_key)?, entry.p2p));
    }
    let validators = Set::from_iter_dedup(peers.iter().map(|(k, _)| k.clone()));
    if !validators.iter().any(|k| *k == key.public_key()) {
        return Err(Error::Config(format!(
            "this node's key {} is not in the validator list",
            key.public_key()
        )));
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", config.data_dir.display())))?;
    claim_data_dir(&config.data_dir, &genesis)?;
    let rpc_listener = std::net::TcpListener::bind(config.rpc_listen).map_err(|e| {
        Error::Config(format!(
            "cannot listen for RPC on {}: {e}",
            config.rpc_listen
        ))
    })?;
    rpc_listener
        .set_nonblocking(true)
        .map_err(|e| Error::Config(e.to_string()))?;
    let blobs = crate::blobs::BlobStore::open(
        &config.data_dir.join("blobs"),
        genesis.params.max_payload_size as usize,
        crate::blobs::DEFAULT_MAX_TOTAL_BYTES,
    )
    .map_err(|e| Error::Config(e.to_string()))?;

    let runtime = cw_tokio::Config::new()
        .with_storage_directory(config.data_dir.join("storage"))
        .with_worker_threads(2)
        .with_catch_panics(false);
    let runner = cw_tokio::Runner::new(runtime);
    runner.start(|context| async move {
        let genesis_digest = genesis.digest();
        let shared = Shared::new(NodeState::new(
            ledger,
            genesis_digest,
            config.mempool_capacity,
        ));
        let n = validators.len();
        let handshake = Cups::<_, ChaCha20Poly1305>::new(
            Sake {
                signer: key.clone(),
                synchrony_bound: Duration::from_secs(5),
                max_handshake_age: Duration::from_secs(10),
                version: sake::Version::V1,
            },
            cups::Version::V1,
        );
        let max_message = commonware_p2p::max_message_size(&[
            commonware_consensus::simplex::max_payload_size::<
                commonware_consensus::simplex::scheme::ed25519::Scheme,
                plexus_types::Digest,
            >(n as u32),
            limits::MAX_BLOCK_SIZE,
        ]);
        let p2p = lookup::Config::local(
            handshake,
            &chain_namespace(P2P_NAMESPACE, &genesis_digest),
            config.p2p_listen,
            NZUsize!(n.max(1)),
            max_message,
            NZUsize!(1024),
        );
        let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p);
        let addresses: Map<PublicKey, P2pAddress> = Map::from_iter_dedup(
            peers
                .iter()
                .map(|(k, a)| (k.clone(), P2pAddress::Symmetric(*a))),
        );
        let _ = oracle.track(0, addresses);
        let quota = Quota::per_second(NZU32!(10_000));
        let channels = Channels {
            votes: network.register(VOTES_CHANNEL, quota),
            certificates: network.register(CERTIFICATES_CHANNEL, quota),
            resolver: network.register(RESOLVER_CHANNEL, quota),
            blocks: network.register(BLOCKS_CHANNEL, quota),
            requests: network.register(REQUESTS_CHANNEL, quota),
            txs: network.register(TXS_CHANNEL, quota),
        };
        let _network = network.start();
        let (mailbox, _app, engine) = start_validator(
            context.child("validator"),
            key,
            validators,
            shared.clone(),
            Timing::for_block_time(Duration::from_millis(config.block_time_ms)),
            config.max_block_txs,
            "plexus".to_string(),
            oracle,
            channels,
        )
        .await;
        let app = rpc::app(RpcState {
            shared,
            mailbox,
            blobs,
        });
        let listener = tokio::net::TcpListener::from_std(rpc_listener).expect("rpc listener");
        let address = listener.local_addr().expect("rpc address");
        info!(%address, "rpc listening");
        context.child("rpc").spawn(move |_| async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "rpc server stopped");
            }
        });
        if let Some(on_ready) = on_ready {
            on_ready(address);
        }
        let _ = engine.await;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_ledger::Params;
    use plexus_types::Amount;

    fn genesis(chain_id: &str) -> Genesis {
        Genesis {
            chain_id: chain_id.into(),
            params: Params::new(Amount::new(1), 5),
            accounts: Vec::new(),
            models: Vec::new(),
        }
    }

    #[test]
    fn a_data_dir_belongs_to_the_genesis_that_created_it() {
        let dir = std::env::temp_dir().join(format!("plexus-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        claim_data_dir(&dir, &genesis("plexus-a")).unwrap();
        claim_data_dir(&dir, &genesis("plexus-a")).unwrap();
        let err = claim_data_dir(&dir, &genesis("plexus-b"))
            .unwrap_err()
            .to_string();
        let a = plexus_types::digest_hex(&genesis("plexus-a").digest());
        let b = plexus_types::digest_hex(&genesis("plexus-b").digest());
        assert!(err.contains(&a) && err.contains(&b), "{err}");
        assert!(err.contains("\"plexus-b\""), "{err}");
        // The refusal changed nothing.
        claim_data_dir(&dir, &genesis("plexus-a")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
