//! `plexus devnet`: a whole local network in one command.

use crate::keys::{address_of, write_key};
use anyhow::{Context, Result};
use plexus_inference::catalog;
use plexus_ledger::{Genesis, GenesisAccount, GenesisModel, Params};
use plexus_node::{NodeConfig, ValidatorEntry};
use plexus_types::{
    Amount, ModelKind, Signer, WorkUnit, generate_key, parse_digest, parse_private_key,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEV_ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// Base units each dev account starts with.
pub const DEV_BALANCE: u128 = 1_000_000_000_000;
pub const DEV_MIN_FEE: u128 = 10;
pub const DEV_UNBONDING_DELAY: u64 = 20;
/// Devnet providers: each starts with this much stake bonded (and `DEV_BALANCE` to spend).
pub const DEV_PROVIDERS: [&str; 2] = ["provider-1", "provider-2"];
pub const DEV_PROVIDER_STAKE: u128 = 10_000_000_000;
pub const DEV_MIN_PROVIDER_STAKE: u128 = 1_000_000_000;
/// Taken from a devnet provider's stake per missed deadline (1% of its stake).
pub const DEV_MISS_PENALTY: u128 = 100_000_000;
/// Starting (and lowest) price per unit: per input token (embeddings), per output token (chat).
pub const DEV_EMBED_MIN_PRICE: u128 = 1_000;
pub const DEV_CHAT_MIN_PRICE: u128 = 10_000;
/// Commit deadlines grow with the work: 3 blocks per generated token (at 200 ms blocks,
/// providers must sustain 1.7 tokens/s; the CPU does 15-20), and 1 block per 50 input tokens
/// to embed (250 tokens/s; the CPU does thousands).
pub const DEV_CHAT_BLOCKS_PER_1000_TOKENS: u64 = 3_000;
pub const DEV_EMBED_BLOCKS_PER_1000_TOKENS: u64 = 20;

/// The development genesis: the dev accounts and providers (keys written to `keys_dir`), the
/// given validators (each funded and staked), both catalogue models, devnet parameters
/// (spot checks at `verify_bps` if given, else the chain's default).
pub fn dev_genesis(
    keys_dir: &Path,
    validators: &[plexus_types::Address],
    verify_bps: Option<u64>,
) -> Result<Genesis> {
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
    for name in DEV_PROVIDERS {
        let key = generate_key();
        write_key(&keys_dir.join(format!("{name}.key")), &key)?;
        accounts.push(GenesisAccount {
            address: address_of(&key),
            balance: Amount::new(DEV_BALANCE),
            stake: Amount::new(DEV_PROVIDER_STAKE),
        });
    }
    for validator in validators {
        accounts.push(GenesisAccount {
            address: *validator,
            balance: Amount::new(DEV_BALANCE),
            stake: Amount::new(DEV_BALANCE),
        });
    }
    let mut params = Params::new(Amount::new(DEV_MIN_FEE), DEV_UNBONDING_DELAY);
    params.min_provider_stake = Amount::new(DEV_MIN_PROVIDER_STAKE);
    params.miss_penalty = Amount::new(DEV_MISS_PENALTY);
    // A proven fraud costs the whole minimum bond.
    params.fraud_slash = Amount::new(DEV_MIN_PROVIDER_STAKE);
    if let Some(bps) = verify_bps {
        params.verify_bps = bps;
    }
    Ok(Genesis {
        chain_id: "plexus-devnet".into(),
        models: genesis_models()?,
        params,
        accounts,
    })
}

/// Write JSON to `path` through a temporary file and a rename (never half-written).
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The catalogue's models, registered at genesis by content hash.
pub fn genesis_models() -> Result<Vec<GenesisModel>> {
    catalog::CATALOG
        .iter()
        .map(|spec| {
            let (kind, unit, min_price, blocks_per_1000_units) = match spec.kind {
                catalog::ModelKind::Embedding => (
                    ModelKind::Embedding,
                    WorkUnit::InputTokens,
                    DEV_EMBED_MIN_PRICE,
                    DEV_EMBED_BLOCKS_PER_1000_TOKENS,
                ),
                catalog::ModelKind::Chat => (
                    ModelKind::Chat,
                    WorkUnit::OutputTokens,
                    DEV_CHAT_MIN_PRICE,
                    DEV_CHAT_BLOCKS_PER_1000_TOKENS,
                ),
            };
            Ok(GenesisModel {
                hash: parse_digest(&spec.model_hash())?,
                name: spec.name.to_string(),
                kind,
                unit,
                min_price: Amount::new(min_price),
                blocks_per_1000_units,
            })
        })
        .collect()
}

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
    /// Providers started by the devnet, with the URL where each serves its outputs.
    #[serde(default)]
    pub providers: Vec<DevProvider>,
    /// The OpenAI-compatible gateway's base URL (ending in `/v1`), once it is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// An API key of the gateway bound to the first dev account (`alice`), unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// The `devnet.json` of a devnet started here with the default `--dir` (commands default to
/// its accounts and gateway), with its path.
pub fn local_devnet_file() -> Result<(PathBuf, DevnetFile)> {
    let path = PathBuf::from(".plexus-devnet").join("devnet.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no devnet found here to default to ({})", path.display()))?;
    let file =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    Ok((path, file))
}

/// Serialises the read-modify-write updates of `devnet.json` from the devnet's threads.
static DEVNET_FILE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Apply `change` to the `devnet.json` in `dir` (written already by the devnet's start).
pub fn update_devnet_file(dir: &Path, change: impl FnOnce(&mut DevnetFile)) -> Result<DevnetFile> {
    let _guard = DEVNET_FILE.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir.join("devnet.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut file: DevnetFile =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    change(&mut file);
    write_json_atomic(&path, &file)?;
    Ok(file)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevProvider {
    pub name: String,
    pub address: String,
    pub key_file: PathBuf,
    pub endpoint: String,
    pub models: Vec<String>,
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
    pub providers: usize,
    pub gateway_port: u16,
    /// Spot-check rate for a new genesis (`None`: the default).
    pub verify_bps: Option<u64>,
}

/// A devnet that already exists keeps its genesis: refuse a `--verify-bps` it was not created
/// with rather than ignore it.
pub fn check_verify_bps(genesis: &Genesis, wanted: Option<u64>, dir: &Path) -> Result<()> {
    match wanted {
        Some(bps) if bps != genesis.params.verify_bps => anyhow::bail!(
            "{} holds a devnet created with --verify-bps {}; its genesis cannot change: drop \
             --verify-bps {bps}, or remove the directory (`rm -rf {}`) or pass another --dir",
            dir.display(),
            genesis.params.verify_bps,
            dir.display()
        ),
        _ => Ok(()),
    }
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
        let validator = generate_key();
        write_key(&validator_key, &validator)?;
        let genesis = dev_genesis(&keys_dir, &[address_of(&validator)], options.verify_bps)?;
        write_json_atomic(&genesis_path, &genesis)?;
    }
    let genesis = plexus_node::load_genesis(&genesis_path)?;
    check_verify_bps(&genesis, options.verify_bps, &options.dir)?;
    if genesis.models.is_empty() || !keys_dir.join(format!("{}.key", DEV_PROVIDERS[0])).exists() {
        anyhow::bail!(
            "{} was created by an older plexus (no models or providers in its genesis); \
             remove it (`rm -rf {}`) or pass another --dir",
            dir.display(),
            options.dir.display()
        );
    }
    // devnet.json names the genesis digest the chain was started with; an older plexus
    // hashed genesis differently (the digest's layout is versioned), so its chain cannot be
    // continued.
    if let Ok(text) = std::fs::read_to_string(dir.join("devnet.json"))
        && let Ok(previous) = serde_json::from_str::<DevnetFile>(&text)
        && previous.genesis != plexus_types::digest_hex(&genesis.digest())
    {
        anyhow::bail!(
            "{} holds a chain started by another version of plexus (genesis {} here, {} now); \
             remove it (`rm -rf {}`) or pass another --dir",
            dir.display(),
            &previous.genesis[..16.min(previous.genesis.len())],
            &plexus_types::digest_hex(&genesis.digest())[..16],
            options.dir.display()
        );
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
    providers: Vec<DevProvider>,
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
        providers,
        gateway: None,
        api_key: None,
    };
    let _guard = DEVNET_FILE.lock().unwrap_or_else(|e| e.into_inner());
    write_json_atomic(&dir.join("devnet.json"), &file)?;
    Ok(file)
}

/// Start the devnet's providers on their own thread and runtime once the node's RPC is up:
/// install the models if missing, start each provider (it registers on chain), then rewrite
/// `devnet.json` with them. Failures are reported and leave the chain running without them.
pub fn start_providers(dir: PathBuf, rpc: SocketAddr, count: usize) {
    spawn_service("providers", move || async move {
        run_providers(&dir, rpc, count).await
    });
}

/// Run `task` on a thread of its own with its own runtime: the devnet's services live beside
/// its validators. A failure is reported and leaves the rest running.
fn spawn_service<F>(what: &'static str, task: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = Result<()>>,
{
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start a runtime for the devnet {what}: {e}");
                return;
            }
        };
        if let Err(e) = runtime.block_on(task()) {
            eprintln!("error: devnet {what} stopped: {e:#}");
        }
    });
}

async fn run_providers(dir: &Path, rpc: SocketAddr, count: usize) -> Result<()> {
    let models_dir = catalog::models_dir(None);
    let names: Vec<String> = catalog::CATALOG
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    for spec in catalog::CATALOG {
        let files = catalog::ModelFiles {
            spec,
            dir: models_dir.join(spec.name),
        };
        if !files.is_present() {
            eprintln!(
                "devnet: installing {} into {} (first run only)...",
                spec.name,
                models_dir.display()
            );
            let dir = models_dir.clone();
            tokio::task::spawn_blocking(move || catalog::install(spec, &dir))
                .await?
                .with_context(|| format!("cannot install {}; providers not started", spec.name))?;
        }
    }
    let mut started = Vec::new();
    let mut entries = Vec::new();
    for name in DEV_PROVIDERS.iter().take(count) {
        let key_file = dir.join("keys").join(format!("{name}.key"));
        let key = crate::keys::load_key(&key_file.display().to_string())?;
        let provider = plexus_provider::Provider::start(plexus_provider::ProviderConfig {
            rpc: format!("http://{rpc}"),
            key,
            models: names.clone(),
            models_dir: None,
            stake: None,
            region: "local".into(),
            capacity: 128,
            price_floor: Amount::ZERO,
            data_dir: dir.join(name),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            endpoint: None,
            cheat_rate: 0.0,
        })
        .await
        .with_context(|| format!("cannot start {name}"))?;
        entries.push(DevProvider {
            name: name.to_string(),
            address: provider.address().to_string(),
            key_file,
            endpoint: provider.endpoint().to_string(),
            models: names.clone(),
        });
        started.push(provider);
    }
    // Add the providers to the devnet.json already written (it lists the validators).
    let file = update_devnet_file(dir, |file| file.providers = entries)?;
    for p in &file.providers {
        eprintln!(
            "devnet: provider {} ({}) serving {} at {}",
            p.name,
            &p.address[..16],
            p.models.join(", "),
            p.endpoint
        );
    }
    eprintln!(
        "devnet: providers' inference on {} thread(s) (--inference-threads)",
        plexus_inference::num_threads()
    );
    // Joined in place, not spawned: one task drives both providers.
    let runs = started
        .into_iter()
        .map(|p| p.run(std::future::pending::<()>()));
    for result in futures::future::join_all(runs).await {
        result?;
    }
    Ok(())
}

/// The gateway's directory in a devnet, and the file keeping the devnet's API key.
fn gateway_dir(dir: &Path) -> PathBuf {
    dir.join("gateway")
}

/// The devnet's API key: created on first run for the first dev account, reused after.
fn devnet_api_key(dir: &Path) -> Result<String> {
    let gateway_dir = gateway_dir(dir);
    let secret_file = gateway_dir.join("devnet-api-key");
    if let Ok(secret) = std::fs::read_to_string(&secret_file) {
        return Ok(secret.trim().to_string());
    }
    let account = dir.join("keys").join(format!("{}.key", DEV_ACCOUNTS[0]));
    let (_, secret) = plexus_gateway::keys::create(&gateway_dir, &account, "devnet", None)?;
    std::fs::write(&secret_file, format!("{secret}\n"))
        .with_context(|| format!("cannot write {}", secret_file.display()))?;
    Ok(secret)
}

/// Start the OpenAI-compatible gateway on its own thread and runtime, in front of the node at
/// `rpc`, and add its URL and API key to `devnet.json`. Failures are reported and leave the
/// devnet running without it.
pub fn start_gateway(dir: PathBuf, rpc: SocketAddr, port: u16) {
    spawn_service("gateway", move || async move {
        run_gateway(&dir, rpc, port).await
    });
}

async fn run_gateway(dir: &Path, rpc: SocketAddr, port: u16) -> Result<()> {
    let api_key = devnet_api_key(dir)?;
    let gateway = plexus_gateway::Gateway::bind(plexus_gateway::GatewayConfig {
        rpc: format!("http://{rpc}"),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        dir: gateway_dir(dir),
        job_timeout: std::time::Duration::from_secs(120),
        price_multiplier: 2,
    })
    .await?;
    let url = gateway.base_url();
    update_devnet_file(dir, |file| {
        file.gateway = Some(url.clone());
        file.api_key = Some(api_key.clone());
    })?;
    eprintln!(
        "devnet: OpenAI-compatible gateway at {url} (api key in devnet.json, paid by {})",
        DEV_ACCOUNTS[0]
    );
    gateway.run(std::future::pending()).await?;
    Ok(())
}

/// Give the in-process providers' inference `threads` threads, or all cores but one (the
/// validator's), unless `$RAYON_NUM_THREADS` already says. candle reads its thread count once,
/// from that variable, so when it differs this process replaces itself (`exec`, same pid, so
/// a supervisor's signals still reach it) with the variable set. Returns only when the count
/// is already in effect.
pub fn pin_inference_threads(threads: Option<u16>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let current = std::env::var("RAYON_NUM_THREADS").ok();
    let want = match (threads, &current) {
        (Some(n), _) => n.to_string(),
        (None, Some(_)) => return Ok(()),
        (None, None) => std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1).max(1))
            .to_string(),
    };
    if current.as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("RAYON_NUM_THREADS", &want)
        .env("CANDLE_NUM_THREADS", &want)
        .exec();
    Err(anyhow::Error::new(err).context(format!(
        "re-running the devnet with RAYON_NUM_THREADS={want}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_from_another_genesis_layout_is_refused_clearly() {
        let dir =
            std::env::temp_dir().join(format!("plexus-devnet-prepare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = DevnetOptions {
            dir: dir.clone(),
            rpc_port: 1,
            p2p_port: 2,
            block_time_ms: 100,
            providers: 0,
            gateway_port: 0,
            verify_bps: Some(10_000),
        };
        let (config, config_path) = prepare(&options).unwrap();
        let genesis = plexus_node::load_genesis(&config.genesis_file).unwrap();
        assert_eq!(
            genesis.params.verify_bps, 10_000,
            "--verify-bps reaches genesis"
        );
        let rpc = SocketAddr::from(([127, 0, 0, 1], 1));
        let file = write_devnet_file(&dir, &config, &config_path, rpc, Vec::new()).unwrap();
        // The same files start again, with or without the same --verify-bps, not another.
        prepare(&options).unwrap();
        let other = DevnetOptions {
            verify_bps: Some(5),
            ..options
        };
        let e = prepare(&other).unwrap_err().to_string();
        assert!(e.contains("--verify-bps 10000"), "{e}");
        let options = DevnetOptions {
            verify_bps: None,
            ..other
        };
        prepare(&options).unwrap();
        // A devnet.json naming another genesis digest (an older plexus hashed it another way).
        let mut old = file.clone();
        old.genesis = "00".repeat(32);
        write_json_atomic(&dir.join("devnet.json"), &old).unwrap();
        let e = prepare(&options).unwrap_err().to_string();
        assert!(
            e.contains("another version of plexus") && e.contains("rm -rf"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
