//! `plexus job submit|show`, `plexus providers`, `plexus prices`: paid AI work through the chain.

use crate::{RpcArgs, keys};
use anyhow::{Context, Result, anyhow, bail};
use plexus_client::{Client, JobView, OutputCheck, ReceiptReport, fetch_output};
use plexus_inference::catalog;
use plexus_provider::payload::{self, ChatInput, EmbedInput, Message};
use plexus_types::{Action, Address, Amount, Digest, JobId, digest_hex, parse_digest};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub enum JobCommand {
    /// Post a job (input stored off-chain, payment locked in escrow) and optionally wait for
    /// its result and receipt.
    ///
    /// Embedding models take texts (`--text` repeated, or `--input-file` with one text per
    /// line); chat models take a prompt (`--text`, or the whole `--input-file`).
    Submit(SubmitArgs),
    /// Show a job: status, provider, price, result hash and settlement.
    Show {
        /// Job id (64 hex characters).
        id: String,
        /// Also fetch the output payload and check it against the chain.
        #[arg(long)]
        output: bool,
        #[command(flatten)]
        rpc: RpcArgs,
    },
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// Model name (see `plexus prices`) or its 64-hex content hash.
    #[arg(long)]
    model: String,
    /// Input text (repeat for several texts to embed).
    #[arg(long, conflicts_with = "input_file")]
    text: Vec<String>,
    /// Input file: one text per line (embeddings) or the prompt (chat).
    #[arg(long)]
    input_file: Option<PathBuf>,
    /// Highest price per unit of work you pay (default: twice the current base price).
    #[arg(long)]
    max_price: Option<String>,
    /// Chat: most tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// Chat: sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f64>,
    /// Chat: sampling seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Preferred provider region.
    #[arg(long, default_value = "")]
    region: String,
    /// Key file or key name that pays (default: $PLEXUS_KEY, else the devnet's first account
    /// from `.plexus-devnet/devnet.json`).
    #[arg(long, env = "PLEXUS_KEY")]
    key: Option<String>,
    /// Wait until the job is settled (or refunded) and print the result and receipt. Exit
    /// status: 0 settled with a receipt that checks out, 2 refunded, 1 on an error or a
    /// receipt that does not check out (bad signature, output not matching its hash).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[command(flatten)]
    rpc: RpcArgs,
}

/// A registered model as `GET /models` reports it.
struct ChainModel {
    hash: Digest,
    name: String,
    kind: String,
    base_price: Amount,
}

async fn find_model(client: &Client, wanted: &str) -> Result<ChainModel> {
    let hash = match parse_digest(wanted) {
        Ok(hash) => hash,
        Err(_) => {
            let spec = catalog::find(wanted).map_err(|e| anyhow!("{e}"))?;
            parse_digest(&spec.model_hash())?
        }
    };
    let models = client.models().await?;
    let entry = models["models"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["hash"].as_str() == Some(digest_hex(&hash).as_str()))
        .ok_or_else(|| {
            anyhow!(
                "model {wanted} ({}) is not registered on this chain; `plexus prices` lists the ones that are",
                digest_hex(&hash)
            )
        })?;
    Ok(ChainModel {
        hash,
        name: entry["name"].as_str().unwrap_or(wanted).to_string(),
        kind: entry["kind"].as_str().unwrap_or_default().to_string(),
        base_price: entry["base_price"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .map_err(|e| anyhow!("node reported a bad base price: {e}"))?,
    })
}

/// The key that pays: `--key`/`$PLEXUS_KEY`, else the local devnet's first account.
pub fn payer_key(key: Option<String>) -> Result<plexus_types::PrivateKey> {
    if let Some(key) = key {
        return keys::load_key(&key);
    }
    let (devnet, file) = crate::devnet::local_devnet_file()
        .context("no key given: pass --key FILE (or set PLEXUS_KEY)")?;
    let account = file
        .accounts
        .first()
        .ok_or_else(|| anyhow!("{} lists no accounts", devnet.display()))?;
    eprintln!(
        "paying with the devnet account {} ({})",
        account.name, account.address
    );
    keys::load_key(&account.key_file.display().to_string())
}

pub async fn submit(args: SubmitArgs) -> Result<()> {
    let client = Client::new(&args.rpc.rpc);
    let key = payer_key(args.key)?;
    let model = find_model(&client, &args.model).await?;
    let texts: Vec<String> = match &args.input_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --input-file {}", path.display()))?;
            if model.kind == "embedding" {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect()
            } else {
                vec![text]
            }
        }
        None => args.text.clone(),
    };
    if texts.is_empty() || texts.iter().all(|t| t.trim().is_empty()) {
        bail!("no input: give --text TEXT (repeatable) or --input-file FILE");
    }
    let (input, max_units) = match model.kind.as_str() {
        "embedding" => (
            serde_json::to_vec(&EmbedInput {
                texts: texts.clone(),
            })?,
            payload::embed_max_units(&texts),
        ),
        "chat" => {
            if texts.len() > 1 {
                bail!("a chat job takes one prompt; give --text once");
            }
            if args.max_tokens == 0 {
                bail!("--max-tokens must be at least 1");
            }
            let input = ChatInput {
                messages: vec![Message::user(texts[0].clone())],
                max_tokens: args.max_tokens,
                temperature: args.temperature,
                top_p: None,
                seed: args.seed,
                stop: Vec::new(),
            };
            (serde_json::to_vec(&input)?, args.max_tokens)
        }
        other => bail!(
            "model {} has kind {other:?}, which jobs do not support yet",
            model.name
        ),
    };
    let status = client.status_json().await?;
    let max_payload = status["params"]["max_payload_size"]
        .as_u64()
        .unwrap_or(u64::MAX);
    if input.len() as u64 > max_payload {
        bail!(
            "input is {} bytes, larger than the chain's payload limit of {max_payload}; split it into several jobs",
            input.len()
        );
    }
    let max_unit_price = match &args.max_price {
        Some(p) => p.parse::<Amount>().context("--max-price")?,
        None => model
            .base_price
            .checked_mul(2)
            .ok_or_else(|| anyhow!("base price overflows"))?,
    };
    if max_unit_price < model.base_price {
        bail!(
            "--max-price {max_unit_price} is below the current base price {} of {} per unit; offer at least that",
            model.base_price,
            model.name
        );
    }
    let blob = client.put_blob(input.clone()).await?;
    let input_hash = parse_digest(&blob.hash)?;
    let action = Action::PostJob {
        model: model.hash,
        input_hash,
        input_size: input.len() as u32,
        max_units,
        max_unit_price,
        region: args.region.clone(),
    };
    let tx = client.send(&key, action, None).await?;
    let id = JobId::new(&tx.tx.signer, tx.tx.nonce);
    let escrow = max_unit_price.checked_mul(u128::from(max_units));
    let mut out = json!({
        "job": id,
        "status": "pending",
        "model": model.name,
        "model_hash": digest_hex(&model.hash),
        "input_hash": digest_hex(&input_hash),
        "max_units": max_units,
        "max_unit_price": max_unit_price,
        "escrow": escrow,
        "tx": digest_hex(&tx.hash()),
    });
    if !args.wait {
        print_submitted(&out, args.rpc.json);
        return Ok(());
    }
    if !args.rpc.json {
        eprintln!("job {id} posted; waiting for its result...");
    }
    let started = Instant::now();
    let (job, early) = wait_final(
        &client,
        &key,
        &tx.hash(),
        &id,
        Duration::from_secs(args.timeout),
        !args.rpc.json,
    )
    .await?;
    out["status"] = json!(job.status);
    match job.status.as_str() {
        "settled" => {
            let (from, result) = match early {
                Some((early, ms)) => {
                    // The commitment bound the provider: the reveal must name these bytes.
                    if job.output_hash.as_deref() != Some(digest_hex(&early.output_hash).as_str()) {
                        bail!("job {id}: the revealed output differs from the committed one");
                    }
                    out["result_ms"] = json!(ms);
                    ("the provider, before the reveal", early.output)
                }
                None => ("the node or provider", fetch_output(&client, &job).await?),
            };
            out["settled_ms"] = json!(started.elapsed().as_millis());
            out["result"] = serde_json::from_slice(&result).unwrap_or(Value::Null);
            let output = OutputCheck::Fetched {
                from: from.into(),
                bytes: result,
            };
            let chain_id = client.status().await?.chain_id;
            out["receipt"] = serde_json::to_value(ReceiptReport::new(&chain_id, &job, &output))?;
        }
        _ => {
            out["refund"] = serde_json::to_value(&job.refund)?;
        }
    }
    if args.rpc.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_job_result(&out);
    }
    if job.status != "settled" {
        std::process::exit(2);
    }
    if out["receipt"]["status"] == "invalid" {
        eprintln!(
            "error: job {id} settled, but its receipt does not check out: {}",
            out["receipt"]["problems"]
        );
        std::process::exit(1);
    }
    Ok(())
}

fn print_submitted(out: &Value, json: bool) {
    if json {
        outln!("{out}");
    } else {
        outln!("job    {}", out["job"].as_str().unwrap_or_default());
        outln!(
            "status pending (posted in tx {}); follow it with `plexus job show {}`",
            out["tx"].as_str().unwrap_or_default(),
            out["job"].as_str().unwrap_or_default()
        );
    }
}

fn print_job_result(out: &Value) {
    outln!("job      {}", out["job"].as_str().unwrap_or_default());
    outln!("status   {}", out["status"].as_str().unwrap_or_default());
    if let Some(receipt) = out.get("receipt") {
        for key in [
            "provider",
            "units",
            "unit_price",
            "price",
            "output_hash",
            "settlement_height",
            "signature_valid",
        ] {
            let v = &receipt[key];
            outln!(
                "{key:<8} {}",
                v.as_str().map(str::to_string).unwrap_or(v.to_string())
            );
        }
        if let Some(status) = receipt["status"].as_str() {
            outln!(
                "receipt  {status}: {}",
                receipt["explanation"].as_str().unwrap_or_default()
            );
        }
    }
    if let Some(refund) = out.get("refund") {
        outln!("refund   {refund}");
    }
    if let Some(summary) = out.get("result").and_then(result_summary) {
        outln!("result   {summary}");
    }
}

/// One line describing a job's output: the generated text, or how many vectors.
fn result_summary(result: &Value) -> Option<String> {
    match result {
        Value::Object(r) if r.contains_key("embeddings") => {
            let vectors = r["embeddings"].as_array().map_or(0, Vec::len);
            Some(format!(
                "{vectors} embedding(s); use --json for the vectors"
            ))
        }
        Value::Object(r) if r.contains_key("text") => {
            Some(r["text"].as_str().unwrap_or_default().to_string())
        }
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Poll until the job is settled or refunded (first waiting for the post to finalize). As
/// soon as the provider's commitment is on chain, fetch the result from the provider as the
/// job's owner (checked against the commitment) and, if `show`, print it: it can no longer
/// change, only its receipt is still to come.
async fn wait_final(
    client: &Client,
    owner: &plexus_types::PrivateKey,
    tx: &plexus_types::TxHash,
    id: &JobId,
    timeout: Duration,
    show: bool,
) -> Result<(JobView, Option<(plexus_client::EarlyResult, u128)>)> {
    let started = Instant::now();
    let mut early = None;
    let mut early_tried = false;
    let status = client.wait(tx, timeout).await?;
    if status["status"] != "finalized" || status["success"] != true {
        bail!(
            "the job was not posted: {}",
            status
                .get("error")
                .or(status.get("reason"))
                .unwrap_or(&status)
        );
    }
    loop {
        let job = client.job(id).await?;
        if !early_tried && let (Some(commitment), Some(provider)) = (&job.commitment, job.provider)
        {
            early_tried = true;
            match fetch_early(client, owner, id, commitment, &provider).await {
                Ok(result) => {
                    let ms = started.elapsed().as_millis();
                    if show {
                        outln!(
                            "result after {ms} ms (fixed on chain by the provider's commitment; the receipt follows at settlement):"
                        );
                        print_result_summary(&result.output);
                    }
                    early = Some((result, ms));
                }
                Err(e) => eprintln!(
                    "note: could not fetch the result early ({e:#}); it will come with the reveal"
                ),
            }
        }
        if job.status == "settled" || job.status == "refunded" {
            return Ok((job, early));
        }
        if started.elapsed() > timeout {
            bail!(
                "job {id} is still {} after {timeout:?}; check later with `plexus job show {id}`",
                job.status
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fetch_early(
    client: &Client,
    owner: &plexus_types::PrivateKey,
    id: &JobId,
    commitment: &str,
    provider: &Address,
) -> Result<plexus_client::EarlyResult> {
    let info = client.provider(provider).await?;
    let endpoint = info["endpoint"]
        .as_str()
        .ok_or_else(|| anyhow!("provider {provider} has no endpoint"))?;
    Ok(Client::new(endpoint)
        .early_result(owner, id, &parse_digest(commitment)?)
        .await?)
}

fn print_result_summary(output: &[u8]) {
    match serde_json::from_slice::<Value>(output) {
        Ok(v) => outln!("  {}", result_summary(&v).unwrap_or_else(|| v.to_string())),
        Err(_) => outln!("  ({} bytes, not JSON)", output.len()),
    }
}

pub async fn show(id: String, output: bool, rpc: RpcArgs) -> Result<()> {
    let id: JobId = id.parse().map_err(|e| anyhow!("job id: {e}"))?;
    let client = Client::new(&rpc.rpc);
    let job = client.job(&id).await?;
    let mut out = serde_json::to_value(&job)?;
    let output = if output && job.output_hash.is_some() {
        let bytes = fetch_output(&client, &job).await?;
        out["result"] = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        OutputCheck::Fetched {
            from: "the node or provider".into(),
            bytes,
        }
    } else {
        OutputCheck::NotAsked
    };
    if job.status == "settled" {
        let chain_id = client.status().await?.chain_id;
        out["receipt"] = serde_json::to_value(ReceiptReport::new(&chain_id, &job, &output))?;
    }
    if rpc.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for key in [
        "id",
        "status",
        "owner",
        "model",
        "provider",
        "max_units",
        "max_unit_price",
        "escrow",
        "unit_price",
        "units",
        "output_hash",
        "attempts",
        "deadline",
        "settle_at",
    ] {
        let v = &out[key];
        outln!(
            "{key:<15} {}",
            v.as_str().map(str::to_string).unwrap_or(v.to_string())
        );
    }
    if let Some(s) = &job.settlement {
        outln!(
            "settlement      height {}, paid {} (fee {}), refunded {}",
            s.height,
            s.payment,
            s.fee,
            s.refund
        );
    }
    if let Some(r) = &job.refund {
        outln!(
            "refund          height {}: {} ({})",
            r.height,
            r.amount,
            r.reason
        );
    }
    if let Some(result) = out.get("result") {
        outln!("result          {result}");
    }
    Ok(())
}

fn model_names() -> std::collections::BTreeMap<String, &'static str> {
    catalog::CATALOG
        .iter()
        .map(|spec| (spec.model_hash(), spec.name))
        .collect()
}

pub async fn providers(rpc: RpcArgs) -> Result<()> {
    let list = Client::new(&rpc.rpc).providers().await?;
    if rpc.json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let names = model_names();
    let providers = list["providers"].as_array().cloned().unwrap_or_default();
    if providers.is_empty() {
        outln!("no providers registered (start one with `plexus provider run`)");
        return Ok(());
    }
    outln!(
        "{:<16} {:<10} {:>8} {:>6} {:>10} {:>14} {:>14} {:>6}  models",
        "address",
        "region",
        "capacity",
        "active",
        "floor",
        "stake",
        "max escrow",
        "rep"
    );
    for p in providers {
        let models: Vec<String> = p["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|h| {
                names
                    .get(h)
                    .map_or_else(|| h[..12].to_string(), |n| n.to_string())
            })
            .collect();
        let s = |k: &str| {
            p[k].as_str()
                .map(str::to_string)
                .unwrap_or(p[k].to_string())
        };
        // The biggest job its stake can secure (null: no spot checks, no bound).
        let max_escrow = if p["max_job_escrow"].is_null() {
            "any".to_string()
        } else {
            s("max_job_escrow")
        };
        outln!(
            "{:<16} {:<10} {:>8} {:>6} {:>10} {:>14} {:>14} {:>6}  {}{}",
            &s("address")[..16],
            s("region"),
            s("capacity"),
            s("active_jobs"),
            s("price_floor"),
            s("stake"),
            max_escrow,
            s("reputation"),
            models.join(","),
            if p["paused"] == true { " (paused)" } else { "" }
        );
    }
    Ok(())
}

pub async fn prices(rpc: RpcArgs) -> Result<()> {
    let list = Client::new(&rpc.rpc).models().await?;
    if rpc.json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let models = list["models"].as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        outln!("no models registered on this chain");
        return Ok(());
    }
    outln!(
        "{:<24} {:<10} {:<14} {:>12} {:>10} {:>7} {:>7} {:>9}",
        "model",
        "kind",
        "unit",
        "base_price",
        "min_price",
        "active",
        "queued",
        "capacity"
    );
    for m in models {
        let s = |k: &str| {
            m[k].as_str()
                .map(str::to_string)
                .unwrap_or(m[k].to_string())
        };
        outln!(
            "{:<24} {:<10} {:<14} {:>12} {:>10} {:>7} {:>7} {:>9}",
            s("name"),
            s("kind"),
            s("unit"),
            s("base_price"),
            s("min_price"),
            s("active_jobs"),
            s("queued_jobs"),
            s("capacity")
        );
    }
    Ok(())
}
