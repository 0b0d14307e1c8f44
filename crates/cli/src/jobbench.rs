//! `plexus bench jobs`: embedding jobs per second through the chain at saturation, against the
//! same inference run directly in this process, in one run; and the latency a job adds.
//!
//! Reference: the bench sentences (one per job) embedded here in one call, as a provider
//! batches a round's jobs. Chain: every input uploaded first, then every `PostJob` submitted
//! at once (pipelined nonces); a job is done when its reveal is finalized (its result hash is
//! on chain and the output can be fetched), observed on the node's block stream.
//! Throughput: jobs / (last reveal - first submit), which includes filling and draining the
//! pipeline, and the steady rate between the 10th and 90th percentile completions.
//! Latency, measured first with one job at a time (no queueing): submit to commit finalized
//! (the result is fixed on chain), to the result fetched by the owner from the provider and
//! checked against that commitment, and to reveal finalized (its hash is public); added
//! latency is that minus the direct time of one job, in block intervals.

use crate::chainbench::percentile;
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
    /// Jobs posted at once for the throughput phase (one bench sentence each).
    #[arg(long, default_value_t = 1024)]
    jobs: usize,
    /// Key that pays (default: $PLEXUS_KEY, else the devnet's first account).
    #[arg(long, env = "PLEXUS_KEY")]
    key: Option<String>,
    /// Offer this multiple of the base price per unit, so the rising price under the burst
    /// does not price the jobs out.
    #[arg(long, default_value_t = 50)]
    price_factor: u128,
    /// Jobs posted one at a time, each waited for, to measure latency without queueing.
    #[arg(long, default_value_t = 20)]
    latency_jobs: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long)]
    models_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    rpc: crate::RpcArgs,
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
        .take(args.latency_jobs + args.jobs)
        .map(|s| s.to_string())
        .collect();

    // Reference: the same texts embedded here, in one call (as a provider batches a round).
    let files = ModelFiles::locate(MODEL, args.models_dir.as_deref())?;
    let embedder = Embedder::load(&files, &plexus_inference::default_device())?;
    // The reference embeds exactly the texts of the throughput phase.
    let refs: Vec<&str> = texts[args.latency_jobs..]
        .iter()
        .map(String::as_str)
        .collect();
    embedder.embed(&refs[..refs.len().min(8)])?; // warm up
    let started = Instant::now();
    embedder.embed(&refs)?;
    let direct_secs = started.elapsed().as_secs_f64();
    let direct_rate = refs.len() as f64 / direct_secs;
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
            refs.len(),
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
    let mut blocks = BlockStream::connect(client.url()).await?;
    let model_hash = parse_digest(&hash)?;
    let sign =
        |nonce: Nonce, (input_hash, input_size, max_units): (plexus_types::Digest, u32, u32)| {
            Transaction {
                chain_id: status.chain_id.clone(),
                signer,
                nonce,
                fee: status.min_fee,
                action: Action::PostJob {
                    model: model_hash,
                    input_hash,
                    input_size,
                    max_units,
                    max_unit_price,
                    region: String::new(),
                },
            }
            .sign(&key)
        };

    // Latency: one job at a time.
    let mut to_commit = Vec::new();
    let mut to_result = Vec::new();
    let mut to_reveal = Vec::new();
    let mut endpoints: HashMap<Address, Client> = HashMap::new();
    let mut block_gaps = Vec::new();
    let latency_jobs = args.latency_jobs.min(posts.len());
    for (i, post) in posts.iter().take(latency_jobs).enumerate() {
        // Each probe waits for the previous one's block, so submitting at once would always
        // arrive just after a block (the worst phase). Real arrivals are uniform over the
        // block interval: sweep the submit phase evenly across it.
        let interval = block_gaps
            .get(block_gaps.len() / 2)
            .copied()
            .unwrap_or(200.0);
        let phase = interval * i as f64 / latency_jobs as f64;
        tokio::time::sleep(Duration::from_micros((phase * 1e3) as u64)).await;
        let nonce = client.account(&signer).await?.next_nonce;
        let id = JobId::new(&signer, nonce);
        let at = Instant::now();
        client.submit(&sign(nonce, *post)).await?;
        let mut last_ts = None;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), blocks.next())
                .await
                .map_err(|_| anyhow!("job {id} not revealed within 30 s"))??;
            let ts = event["timestamp_ms"].as_u64().unwrap_or(0);
            if let Some(prev) = last_ts.replace(ts) {
                block_gaps.push((ts - prev) as f64);
            }
            let mine = |name: &str| {
                event["events"].as_array().into_iter().flatten().any(|e| {
                    e["event"] == name && e["job"].as_str() == Some(id.to_string().as_str())
                })
            };
            if mine("job_committed") {
                to_commit.push(at.elapsed().as_secs_f64() * 1e3);
                // The owner fetches the result now, checked against the commitment.
                let job = client.job(&id).await?;
                let provider = job
                    .provider
                    .ok_or_else(|| anyhow!("committed job has no provider"))?;
                let endpoint = match endpoints.entry(provider) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let info = client.provider(&provider).await?;
                        e.insert(Client::new(info["endpoint"].as_str().unwrap_or_default()))
                    }
                };
                let commitment = parse_digest(job.commitment.as_deref().unwrap_or_default())?;
                endpoint.early_result(&key, &id, &commitment).await?;
                to_result.push(at.elapsed().as_secs_f64() * 1e3);
            }
            if mine("job_revealed") {
                to_reveal.push(at.elapsed().as_secs_f64() * 1e3);
                break;
            }
        }
    }
    to_commit.sort_by(f64::total_cmp);
    to_result.sort_by(f64::total_cmp);
    to_reveal.sort_by(f64::total_cmp);
    block_gaps.sort_by(f64::total_cmp);
    let block_ms = percentile(&block_gaps, 50);
    let in_blocks = |ms: f64| {
        if block_ms > 0.0 {
            (ms - single_ms) / block_ms
        } else {
            0.0
        }
    };

    // Throughput: every post at once.
    let posts: Vec<_> = posts.into_iter().skip(args.latency_jobs).collect();
    let first_nonce = client.account(&signer).await?.next_nonce.get();
    let mut submitted: HashMap<JobId, Instant> = HashMap::new();
    let start = Instant::now();
    for (i, post) in posts.iter().enumerate() {
        let nonce = Nonce::new(first_nonce + i as u64);
        client.submit(&sign(nonce, *post)).await?;
        submitted.insert(JobId::new(&signer, nonce), Instant::now());
    }
    let submit_secs = start.elapsed().as_secs_f64();
    let jobs = posts.len();

    let deadline = Duration::from_secs(args.timeout);
    let mut latencies = Vec::new();
    let mut completions = Vec::new();
    let mut refunded = 0usize;
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
                completions.push(now.duration_since(start).as_secs_f64());
                last_done = now;
            }
        }
    }
    let chain_secs = last_done.duration_since(start).as_secs_f64();
    let chain_rate = jobs as f64 / chain_secs;
    latencies.sort_by(f64::total_cmp);
    completions.sort_by(f64::total_cmp);
    // Jobs completed between the 10th and 90th percentile completions, over that time.
    let (lo, hi) = (completions.len() / 10, completions.len() * 9 / 10);
    let steady_rate = if hi > lo + 1 && completions[hi - 1] > completions[lo] {
        (hi - 1 - lo) as f64 / (completions[hi - 1] - completions[lo])
    } else {
        chain_rate
    };
    let commit_p50 = percentile(&to_commit, 50);
    let result_p50 = percentile(&to_result, 50);
    let reveal_p50 = percentile(&to_reveal, 50);
    let out = json!({
        "jobs": jobs,
        "providers": providers,
        "direct_jobs_per_s": direct_rate,
        "direct_one_job_ms": single_ms,
        "chain_jobs_per_s": chain_rate,
        "ratio": chain_rate / direct_rate,
        "chain_steady_jobs_per_s": steady_rate,
        "steady_ratio": steady_rate / direct_rate,
        "submit_s": submit_secs,
        "saturated_latency_p50_ms": percentile(&latencies, 50),
        "saturated_latency_p99_ms": percentile(&latencies, 99),
        "block_interval_ms": block_ms,
        "latency_jobs": to_reveal.len(),
        "commit_p50_ms": commit_p50,
        "result_p50_ms": result_p50,
        "added_to_result_p50_blocks": in_blocks(result_p50),
        "reveal_p50_ms": reveal_p50,
        "reveal_p99_ms": percentile(&to_reveal, 99),
        "added_to_commit_p50_blocks": in_blocks(commit_p50),
        "added_to_reveal_p50_blocks": in_blocks(reveal_p50),
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
            "through the chain:       {chain_rate:>8.1} jobs/s   ratio {:.2}x   ({jobs} jobs at once, {providers} providers)",
            chain_rate / direct_rate,
        );
        outln!(
            "  steady (p10-p90):      {steady_rate:>8.1} jobs/s   ratio {:.2}x",
            steady_rate / direct_rate
        );
        if to_reveal.is_empty() {
            outln!("latency: not measured (--latency-jobs 0)");
        } else {
            outln!("latency, one job at a time (block interval {block_ms:.0} ms):");
            outln!(
                "  submit -> commit final: p50 {commit_p50:.0} ms, added {:.2} blocks",
                in_blocks(commit_p50)
            );
            outln!(
                "  submit -> result verified (owner fetch at commit): p50 {result_p50:.0} ms, added {:.2} blocks",
                in_blocks(result_p50)
            );
            outln!(
                "  submit -> reveal final: p50 {reveal_p50:.0} ms, added {:.2} blocks",
                in_blocks(reveal_p50)
            );
        }
        if refunded > 0 {
            outln!("warning: {refunded} jobs were refunded instead of served");
        }
    }
    Ok(())
}
