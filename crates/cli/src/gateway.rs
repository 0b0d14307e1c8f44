//! `plexus gateway`: the OpenAI-compatible API, and its keys.

use anyhow::{Context, Result};
use plexus_gateway::{Gateway, GatewayConfig, keys};
use plexus_types::Amount;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    #[command(subcommand)]
    command: Option<GatewayCommand>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Subcommand)]
enum GatewayCommand {
    /// API keys: each is bound to an on-chain account that pays for its requests.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Create an API key bound to the account of KEYFILE (the gateway signs that account's
    /// job transactions). The secret is printed once; only its hash is stored.
    Create {
        /// The paying account's key file.
        #[arg(long)]
        account: PathBuf,
        /// A label for the key.
        #[arg(long, default_value = "default")]
        name: String,
        /// Most the key may spend in total, in base units (default: no limit).
        #[arg(long)]
        limit: Option<String>,
        #[command(flatten)]
        dir: DirArg,
        #[arg(long)]
        json: bool,
    },
    /// List the keys: id, account, limit, spent (never the secrets).
    List {
        #[command(flatten)]
        dir: DirArg,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id: its requests get 401 from then on.
    Revoke {
        id: String,
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(clap::Args)]
struct DirArg {
    /// The gateway's directory (holds keys.json).
    #[arg(long, env = "PLEXUS_GATEWAY_DIR", default_value_os_t = default_dir())]
    dir: PathBuf,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Node RPC URL.
    #[arg(long, env = "PLEXUS_RPC", default_value = crate::DEFAULT_RPC)]
    rpc: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    dir: DirArg,
    /// Seconds a request waits for its jobs' results.
    #[arg(long, default_value_t = 120)]
    job_timeout: u64,
    /// Offered price per unit of work, as a multiple of the model's current base price (the
    /// chain charges the going price and refunds the rest).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    price_multiplier: u32,
}

fn default_dir() -> PathBuf {
    crate::keys::keys_dir()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
        .join("gateway")
}

pub fn run(args: GatewayArgs) -> Result<()> {
    match args.command {
        None => serve(args.serve),
        Some(GatewayCommand::Keys { command }) => run_keys(command),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let gateway = Gateway::bind(GatewayConfig {
            rpc: args.rpc.clone(),
            listen: args.listen,
            dir: args.dir.dir.clone(),
            job_timeout: Duration::from_secs(args.job_timeout),
            price_multiplier: args.price_multiplier,
        })
        .await?;
        let count = keys::list(&args.dir.dir)?.len();
        eprintln!(
            "gateway serving the OpenAI API at {} for node {} ({count} API key(s) in {})",
            gateway.base_url(),
            args.rpc,
            args.dir.dir.join(keys::KEYS_FILE).display()
        );
        if count == 0 {
            eprintln!(
                "no API keys yet: create one with `plexus gateway keys create --account KEYFILE`"
            );
        }
        gateway
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("gateway stopped")
    })
}

fn run_keys(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Create {
            account,
            name,
            limit,
            dir,
            json,
        } => {
            let limit = limit
                .as_deref()
                .map(|l| l.parse::<Amount>().context("--limit"))
                .transpose()?;
            let (entry, secret) = keys::create(&dir.dir, &account, &name, limit)?;
            if json {
                outln!(
                    "{}",
                    json!({ "id": entry.id, "api_key": secret, "account": entry.account, "limit": entry.limit })
                );
            } else {
                outln!("api key  {secret}");
                outln!("id       {}", entry.id);
                outln!("account  {}", entry.account);
                outln!(
                    "limit    {}",
                    entry.limit.map_or("none".to_string(), |l| l.to_string())
                );
                outln!("store the key now: it is not shown again (keys.json keeps only its hash)");
            }
        }
        KeysCommand::List { dir, json } => {
            let list = keys::list(&dir.dir)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                outln!("no API keys in {}", dir.dir.display());
            } else {
                outln!(
                    "{:<17} {:<12} {:<18} {:>16} {:>16}  status",
                    "id",
                    "name",
                    "account",
                    "limit",
                    "spent"
                );
                for k in list {
                    outln!(
                        "{:<17} {:<12} {:<18} {:>16} {:>16}  {}",
                        k.id,
                        k.name,
                        &k.account.to_string()[..16],
                        k.limit.map_or("none".to_string(), |l| l.to_string()),
                        k.spent,
                        if k.revoked { "revoked" } else { "active" }
                    );
                }
            }
        }
        KeysCommand::Revoke { id, dir } => {
            let entry = keys::revoke(&dir.dir, &id)?;
            outln!("revoked {} ({})", entry.id, entry.name);
        }
    }
    Ok(())
}
