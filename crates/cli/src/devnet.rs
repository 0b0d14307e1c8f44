//! `plexus devnet`: a whole local network in one command.

use crate::keys::{address_of, write_key};
use anyhow::{Context, Result};
use plexus_ledger::{Genesis, GenesisAccount, Params};
use plexus_node::{NodeConfig, ValidatorEntry};
use plexus_types::{Amount, Signer, generate_key, parse_private_key};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEV_ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// Base units each dev account starts with.
pub const DEV_BALANCE: u128 = 1_000_000_000_000;
pub const DEV_MIN_FEE: u128 = 10;
pub const DEV_UNBONDING_DELAY: u64 = 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevAccount {
    pub name: String,
    pub address: String,
    pub key_file: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevnetFile {
    pub rpc: String,
    pub chain_id: String,
    pub genesis: String,
    pub accounts: Vec<DevAccount>,
    pub validators: Vec<DevValidator>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevValidator {
    pub public_key: String,
    pub rpc: String,
    pub p2p: SocketAddr,
    pub config: PathBuf,
}

pub struct DevnetOptions {
    pub dir: PathBuf,
    pub rpc_port: u16,
    pub p2p_port: u16,
    pub block_time_ms: u64,
}

/// Create the devnet's files on first run; reuse them after.
pub fn prepare(options: &DevnetOptions) -> Result<(NodeConfig, PathBuf)> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let keys_dir = dir.join("keys");
    let genesis_path = dir.join("genesis.json");
    let validator_key = dir.join("validator-0").join("validator.key");
    let config_path = dir.join("validator-0").join("config.toml");

    if !genesis_path.exists() {
        let mut accounts = Vec::new();
        for name in DEV_ACCOUNTS {
            let key = generate_key();
            write_key(&keys_dir.join(format!("{name}.key")), &key)?;
            accounts.push(GenesisAccount {
                address: address_of(&key),
                balance: Amount::new(DEV_BALANCE),
                stake: Amount::ZERO,
            });
        }
        let validator = generate_key();
        write_key(&validator_key, &validator)?;
        accounts.push(GenesisAccount {
            address: address_of(&validator),
            balance: Amount::new(DEV_BALANCE),
            stake: Amount::new(DEV_BALANCE),
        });
        let genesis = Genesis {
            chain_id: "plexus-devnet".into(),
            params: Params {
                min_fee: Amount::new(DEV_MIN_FEE),
                unbonding_delay: DEV_UNBONDING_DELAY,
            },
            accounts,
        };
        let tmp = genesis_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&genesis)?)?;
        std::fs::rename(&tmp, &genesis_path)?;
    }
    let key_text = std::fs::read_to_string(&validator_key)
        .with_context(|| format!("cannot read {}", validator_key.display()))?;
    let key = parse_private_key(&key_text)?;
    let config = NodeConfig {
        data_dir: dir.join("validator-0").join("data"),
        key_file: validator_key,
        genesis_file: genesis_path,
        p2p_listen: SocketAddr::from(([127, 0, 0, 1], options.p2p_port)),
        rpc_listen: SocketAddr::from(([127, 0, 0, 1], options.rpc_port)),
        block_time_ms: options.block_time_ms,
        max_block_txs: 10_000,
        mempool_capacity: 100_000,
        validators: vec![ValidatorEntry {
            public_key: key.public_key().to_string(),
            p2p: SocketAddr::from(([127, 0, 0, 1], options.p2p_port)),
        }],
    };
    std::fs::write(&config_path, toml::to_string_pretty(&config)?)?;
    Ok((config, config_path))
}

/// Write `devnet.json` once the RPC address is known.
pub fn write_devnet_file(
    dir: &Path,
    config: &NodeConfig,
    config_path: &Path,
    rpc: SocketAddr,
) -> Result<DevnetFile> {
    let genesis = plexus_node::load_genesis(&config.genesis_file)?;
    let keys_dir = dir.join("keys");
    let mut accounts = Vec::new();
    for name in DEV_ACCOUNTS {
        let key_file = keys_dir.join(format!("{name}.key"));
        let key = crate::keys::load_key(&key_file.display().to_string())?;
        accounts.push(DevAccount {
            name: name.to_string(),
            address: address_of(&key).to_string(),
            key_file,
        });
    }
    let rpc_url = format!("http://{rpc}");
    let file = DevnetFile {
        rpc: rpc_url.clone(),
        chain_id: genesis.chain_id.clone(),
        genesis: plexus_types::digest_hex(&genesis.digest()),
        accounts,
        validators: config
            .validators
            .iter()
            .map(|v| DevValidator {
                public_key: v.public_key.clone(),
                rpc: rpc_url.clone(),
                p2p: v.p2p,
                config: config_path.to_path_buf(),
            })
            .collect(),
    };
    let path = dir.join("devnet.json");
    let tmp = dir.join("devnet.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&file)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(file)
}
