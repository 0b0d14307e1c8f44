//! `plexus bench jobs`: embedding jobs per second through the chain at saturation, against the
//! same inference run directly in this process, in one run; and the latency a job adds.
//!
//! Reference: the bench sentences (one per job) embedded here in one call, as a provider
//! batches a round's jobs. Chain: every input uploaded first, then every `PostJob` submitted
//! at once (pipelined nonces); a job is done when its reveal is finalized (its result hash is
//! on chain and the output can be fetched), observed on the node's block stream.
//! Throughput = jobs / (last reveal - first submit). Added latency = a job's submit-to-reveal
//! time minus the direct time of one job, in block intervals.

use anyhow::{Context, Result, anyhow, bail};
use plexus_client::Client;
use plexus_inference::{Embedder, ModelFiles, catalog};
use plexus_provider::payload::{EmbedInput, embed_max_units};
use plexus_types::{Action, Address, Amount, JobId, Nonce, Signer, Transaction, parse_digest};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MODEL: &str = "all-minilm-l6-v2";

#[derive(clap::Args, Debug)]
pub struct JobBenchArgs {
    /// Jobs to post (one bench sentence each, cycling through the 256).
    #[arg(long, default_value_t = 256)]
    jobs: usize,
    /// Key that pays (default: $PLEXUS_KEY, else the devnet's first account).
    #[arg(long, env = "PLEXUS_KEY")]
    key: Option<String>,
    /// Offer this multiple of the base price per unit, so the rising price under the burst
    /// does not price the jobs out.
    #[arg(long, default_value_t = 50)]
    price_factor: u128,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long)]
    models_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    rpc: crate::RpcArgs,
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

/// Reads the node's `/events/blocks` stream; yields each block event's JSON.
struct BlockStream {
    lines: tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
}

impl BlockStream {
    async fn connect(rpc: &str) -> Result<Self> {
        let host = rpc
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let mut stream = tokio::net::TcpStream::connect(&host)
            .await
            .with_context(|| format!("cannot connect to {host} for the block stream"))?;
        let request = format!(
            "GET /events/blocks HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        Ok(Self {
            lines: BufReader::new(stream).lines(),
        })
    }

    async fn next(&mut self) -> Result<Value> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(data) = line.strip_prefix("data:")
                && let Ok(v) = serde_json::from_str::<Value>(data.trim())
            {
                return Ok(v);
            }
        }
        bail!("the node closed its block stream")
    }
}

pub async fn run(args: JobBenchArgs) -> Result<()> {
    let client = Client::new(&args.rpc.rpc);
    let key = crate::jobs::payer_key(args.key.clone())?;
    let texts: Vec<String> = plexus_inference::bench_sentences()
        .iter()
        .cycle()
        .take(args.jobs)
        .map(|s| s.to_string())
        .collect();

    // Reference: the same texts embedded here, in one call (as a provider batches a round).
    let files = ModelFiles::locate(MODEL, args.models_dir.as_deref())?;
    let embedder = Embedder::load(&files, &plexus_inference::default_device())?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    embedder.embed(&refs[..refs.len().min(8)])?; // warm up
    let started = Instant::now();
    embedder.embed(&refs)?;
    let direct_secs = started.elapsed().as_secs_f64();
    let direct_rate = texts.len() as f64 / direct_secs;
    let mut singles = Vec::new();
    for text in refs.iter().take(32) {
        let t = Instant::now();
        embedder.embed(&[text])?;
        singles.push(t.elapsed().as_secs_f64() * 1e3);
    }
    singles.sort_by(f64::total_cmp);
    let single_ms = percentile(&singles, 50);
    drop(embedder);
    if !args.rpc.json {
        eprintln!(
            "direct: {} jobs in {:.2}s = {direct_rate:.0} jobs/s; one job alone {single_ms:.1} ms",
            texts.len(),
            direct_secs
        );
    }

    // Chain: inputs uploaded first, then every post at once.
    let status = client.status().await?;
    let models = client.models().await?;
    let hash = catalog::find(MODEL)?.model_hash();
    let model = models["models"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["hash"] == hash.as_str())
        .ok_or_else(|| anyhow!("{MODEL} is not registered on this chain"))?;
    let providers = model["providers"].as_u64().unwrap_or(0);
    if providers == 0 {
        bail!(
            "no provider serves {MODEL}; start the devnet (it runs two) or `plexus provider run`"
        );
    }
    let base: Amount = model["base_price"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .map_err(|e| anyhow!("bad base price: {e}"))?;
    let max_unit_price = base
        .checked_mul(args.price_factor)
        .ok_or_else(|| anyhow!("price overflows"))?;
    let signer = Address::from(&key.public_key());
    let mut posts = Vec::with_capacity(texts.len());
    for text in &texts {
        let input = serde_json::to_vec(&EmbedInput {
            texts: vec![text.clone()],
        })?;
        let blob = client.put_blob(input.clone()).await?;
        posts.push((
            parse_digest(&blob.hash)?,
            input.len() as u32,
            embed_max_units(std::slice::from_ref(text)),
        ));
    }
    let first_nonce = client.account(&signer).await?.next_nonce.get();
    let mut blocks = BlockStream::connect(client.url()).await?;
    let mut submitted: HashMap<JobId, Instant> = HashMap::new();
    let start = Instant::now();
    for (i, (input_hash, input_size, max_units)) in posts.into_iter().enumerate() {
        let nonce = Nonce::new(first_nonce + i as u64);
        let tx = Transaction {
            chain_id: status.chain_id.clone(),
            signer,
            nonce,
            fee: status.min_fee,
            action: Action::PostJob {
                model: parse_digest(&hash)?,
                input_hash,
                input_size,
                max_units,
                max_unit_price,
                region: String::new(),
            },
        }
        .sign(&key);
        client.submit(&tx).await?;
        submitted.insert(JobId::new(&signer, nonce), Instant::now());
    }
    let submit_secs = start.elapsed().as_secs_f64();

    let deadline = Duration::from_secs(args.timeout);
    let mut latencies = Vec::new();
    let mut refunded = 0usize;
    let mut first_block: Option<(u64, u64)> = None;
    let mut last_block = (0u64, 0u64);
    let mut last_done = start;
    while !submitted.is_empty() {
        let event = tokio::time::timeout(deadline.saturating_sub(start.elapsed()), blocks.next())
            .await
            .map_err(|_| {
                anyhow!(
                    "{} jobs still unfinished after {deadline:?}",
                    submitted.len()
                )
            })??;
        let now = Instant::now();
        let h = (
            event["height"].as_u64().unwrap_or(0),
            event["timestamp_ms"].as_u64().unwrap_or(0),
        );
        first_block.get_or_insert(h);
        last_block = h;
        for e in event["events"].as_array().into_iter().flatten() {
            let done = match e["event"].as_str() {
                Some("job_revealed") => e["job"].as_str(),
                Some("job_refunded") => {
                    refunded += 1;
                    e["job"]["id"].as_str()
                }
                _ => None,
            };
            if let Some(id) = done.and_then(|s| s.parse::<JobId>().ok())
                && let Some(at) = submitted.remove(&id)
            {
                latencies.push(now.duration_since(at).as_secs_f64() * 1e3);
                last_done = now;
            }
        }
    }
    let chain_secs = last_done.duration_since(start).as_secs_f64();
    let chain_rate = texts.len() as f64 / chain_secs;
    latencies.sort_by(f64::total_cmp);
    let (first_h, first_ts) = first_block.unwrap_or_default();
    let block_ms = if last_block.0 > first_h {
        (last_block.1 - first_ts) as f64 / (last_block.0 - first_h) as f64
    } else {
        0.0
    };
    let p50 = percentile(&latencies, 50);
    let added_blocks = if block_ms > 0.0 {
        (p50 - single_ms) / block_ms
    } else {
        0.0
    };
    let out = json!({
        "jobs": texts.len(),
        "providers": providers,
        "direct_jobs_per_s": direct_rate,
        "direct_one_job_ms": single_ms,
        "chain_jobs_per_s": chain_rate,
        "ratio": chain_rate / direct_rate,
        "submit_s": submit_secs,
        "latency_p50_ms": p50,
        "latency_p99_ms": percentile(&latencies, 99),
        "block_interval_ms": block_ms,
        "added_latency_p50_blocks": added_blocks,
        "refunded": refunded,
        "threads": plexus_inference::num_threads(),
    });
    if args.rpc.json {
        outln!("{out}");
    } else {
        outln!(
            "direct (this process):   {direct_rate:>8.1} jobs/s   (one job alone {single_ms:.1} ms)"
        );
        outln!(
            "through the chain:       {chain_rate:>8.1} jobs/s   ratio {:.2}x   ({} providers)",
            chain_rate / direct_rate,
            providers
        );
        outln!(
            "latency submit->reveal:  p50 {p50:.0} ms, p99 {:.0} ms; block interval {block_ms:.0} ms; added p50 {added_blocks:.2} blocks",
            percentile(&latencies, 99)
        );
        if refunded > 0 {
            outln!("warning: {refunded} jobs were refunded instead of served");
        }
    }
    Ok(())
}
