//! `plexus testnet init`: the files of an N-validator network on this machine: a genesis (the
//! validators, staked, plus the dev accounts and providers), one key and config per validator
//! at `D/validator-<i>/config.toml`, and `D/testnet.json` listing each validator's RPC URL and
//! config. Each validator then runs as its own process with `plexus node run --config`.

use crate::devnet::{DEV_ACCOUNTS, DEV_PROVIDERS, DevAccount, dev_genesis, write_json_atomic};
use crate::keys::{address_of, write_key};
use anyhow::{Context, Result, bail};
use plexus_node::{NodeConfig, ValidatorEntry};
use plexus_types::{Signer, generate_key};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Number of validators (1 to 16).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub validators: u16,
    /// Directory to create the network in.
    #[arg(long, default_value = ".plexus-testnet")]
    pub dir: PathBuf,
    /// RPC port of validator 0 on 127.0.0.1; validator i uses this + i.
    #[arg(long, default_value_t = 8545)]
    pub rpc_port: u16,
    /// p2p port of validator 0 on 127.0.0.1; validator i uses this + i.
    #[arg(long, default_value_t = 7400)]
    pub p2p_port: u16,
    /// Minimum milliseconds between blocks.
    #[arg(long, default_value_t = 200)]
    pub block_time_ms: u64,
    /// Spot-check rate in basis points for the genesis (default 1000: one committed job in
    /// ten is re-run by another provider; 10000 every job, 0 none).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub verify_bps: Option<u64>,
    /// Replace an existing network in `--dir` (its chain data is deleted).
    #[arg(long)]
    pub force: bool,
    /// Print testnet.json instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestnetValidator {
    pub index: usize,
    pub public_key: String,
    pub rpc: String,
    pub p2p: SocketAddr,
    pub config: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestnetFile {
    pub chain_id: String,
    pub genesis: String,
    pub validators: Vec<TestnetValidator>,
    pub accounts: Vec<DevAccount>,
}

/// Create the network's files; returns what `testnet.json` holds.
pub fn init(args: &InitArgs) -> Result<TestnetFile> {
    let n = usize::from(args.validators);
    if usize::from(args.rpc_port) + n > 65_536 || usize::from(args.p2p_port) + n > 65_536 {
        bail!(
            "ports {} and {} + {n} validators run past 65535",
            args.rpc_port,
            args.p2p_port
        );
    }
    let dir = &args.dir;
    if dir.join("testnet.json").exists() || dir.join("genesis.json").exists() {
        if !args.force {
            bail!(
                "{} already holds a network; run its validators with `plexus node run --config {}/validator-0/config.toml`, or pass --force to replace it",
                dir.display(),
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let keys_dir = dir.join("keys");

    let mut entries = Vec::new();
    let mut keys = Vec::new();
    for i in 0..n {
        let key = generate_key();
        write_key(
            &dir.join(format!("validator-{i}")).join("validator.key"),
            &key,
        )?;
        entries.push(ValidatorEntry {
            public_key: key.public_key().to_string(),
            p2p: SocketAddr::from(([127, 0, 0, 1], args.p2p_port + i as u16)),
        });
        keys.push(key);
    }
    let genesis = dev_genesis(
        &keys_dir,
        &keys.iter().map(address_of).collect::<Vec<_>>(),
        args.verify_bps,
    )?;
    let genesis_path = dir.join("genesis.json");
    write_json_atomic(&genesis_path, &genesis)?;

    let mut validators = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let vdir = dir.join(format!("validator-{i}"));
        let rpc = SocketAddr::from(([127, 0, 0, 1], args.rpc_port + i as u16));
        // Paths relative to the config file, so the directory can be moved as a whole.
        let config = NodeConfig {
            data_dir: "data".into(),
            key_file: "validator.key".into(),
            genesis_file: "../genesis.json".into(),
            p2p_listen: entry.p2p,
            rpc_listen: rpc,
            block_time_ms: args.block_time_ms,
            max_block_txs: 10_000,
            mempool_capacity: 100_000,
            validators: entries.clone(),
        };
        let config_path = vdir.join("config.toml");
        std::fs::write(&config_path, toml::to_string_pretty(&config)?)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        validators.push(TestnetValidator {
            index: i,
            public_key: entry.public_key.clone(),
            rpc: format!("http://{rpc}"),
            p2p: entry.p2p,
            config: config_path,
        });
    }
    let accounts = DEV_ACCOUNTS
        .iter()
        .chain(DEV_PROVIDERS.iter())
        .map(|name| -> Result<DevAccount> {
            let key_file = keys_dir.join(format!("{name}.key"));
            let key = crate::keys::load_key(&key_file.display().to_string())?;
            Ok(DevAccount {
                name: name.to_string(),
                address: address_of(&key).to_string(),
                key_file,
            })
        })
        .collect::<Result<_>>()?;
    let file = TestnetFile {
        chain_id: genesis.chain_id.clone(),
        genesis: plexus_types::digest_hex(&genesis.digest()),
        validators,
        accounts,
    };
    write_json_atomic(&dir.join("testnet.json"), &file)?;
    Ok(file)
}

/// Load an initialised network: its `testnet.json` and each validator's config.
pub fn load(dir: &Path) -> Result<(TestnetFile, Vec<(TestnetValidator, NodeConfig)>)> {
    let text = std::fs::read_to_string(dir.join("testnet.json")).with_context(|| {
        format!(
            "no network in {} (run `plexus testnet init`)",
            dir.display()
        )
    })?;
    let file: TestnetFile = serde_json::from_str(&text)?;
    let configs = file
        .validators
        .iter()
        .map(|v| Ok((v.clone(), NodeConfig::load(&v.config)?)))
        .collect::<Result<_>>()?;
    Ok((file, configs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_consistent_configs_and_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("plexus-testnet-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut args = InitArgs {
            validators: 4,
            dir: dir.clone(),
            rpc_port: 20_000,
            p2p_port: 21_000,
            block_time_ms: 150,
            verify_bps: None,
            force: false,
            json: false,
        };
        let file = init(&args).unwrap();
        assert_eq!(file.validators.len(), 4);
        let (_, configs) = load(&dir).unwrap();
        let genesis = plexus_node::load_genesis(&configs[0].1.genesis_file).unwrap();
        assert_eq!(plexus_types::digest_hex(&genesis.digest()), file.genesis);
        for (i, (v, config)) in configs.iter().enumerate() {
            assert_eq!(v.index, i);
            assert_eq!(config.validators.len(), 4);
            assert_eq!(config.rpc_listen.port(), 20_000 + i as u16);
            assert_eq!(config.block_time_ms, 150);
            // Each validator's key is in the validator list and staked at genesis.
            let key = crate::keys::load_key(&config.key_file.display().to_string()).unwrap();
            assert_eq!(key.public_key().to_string(), v.public_key);
            let address = address_of(&key);
            assert!(
                genesis
                    .accounts
                    .iter()
                    .any(|a| a.address == address && !a.stake.is_zero())
            );
        }
        assert!(
            init(&args).is_err(),
            "an existing network is not overwritten"
        );
        args.force = true;
        args.validators = 2;
        assert_eq!(init(&args).unwrap().validators.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
