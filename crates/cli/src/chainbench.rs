//! `plexus bench chain`: client-observed finality latency and finalized transfers per second
//! against a running node.

use crate::keys;
use anyhow::{Result, bail};
use plexus_client::Client;
use plexus_types::{
    Action, Address, Amount, Nonce, PrivateKey, SignedTransaction, Transaction, digest_hex,
};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct ChainBenchArgs {
    /// Key that pays for the benchmark's transfers.
    #[arg(long)]
    key: String,
    /// Transfers sent one at a time, each waited for (latency).
    #[arg(long, default_value_t = 50)]
    latency_txs: usize,
    /// Transfers sent as fast as possible (throughput).
    #[arg(long, default_value_t = 5000)]
    burst_txs: usize,
    /// Accounts sending the burst at once, each from its own connection (funded by --key
    /// first): one client's sequential submissions would bound the rate, not the chain.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// More RPC URLs to spread the senders over (e.g. every validator's); the chain gossips
    /// transactions to whichever validator leads.
    #[arg(long, value_delimiter = ',')]
    submit_rpc: Vec<String>,
    #[command(flatten)]
    rpc: crate::RpcArgs,
}

/// The `p`th percentile of sorted samples (0 if none).
pub(crate) fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

async fn wait_finalized(client: &Client, hash: &str, poll: Duration) -> Result<()> {
    loop {
        let status = client.tx(hash).await?;
        match status["status"].as_str() {
            Some("pending") => tokio::time::sleep(poll).await,
            Some("finalized") if status["success"] == true => return Ok(()),
            _ => bail!("benchmark transfer did not execute: {status}"),
        }
    }
}

pub async fn run(args: ChainBenchArgs) -> Result<()> {
    let client = Client::new(&args.rpc.rpc);
    let key: PrivateKey = keys::load_key(&args.key)?;
    let signer = keys::address_of(&key);
    let status = client.status().await?;
    let sink = Address::from_bytes([0xbe; 32]);
    let mut nonce = client.account(&signer).await?.next_nonce.get();
    let make = |nonce: u64| {
        Transaction {
            chain_id: status.chain_id.clone(),
            signer,
            nonce: Nonce::new(nonce),
            fee: status.min_fee,
            action: Action::Transfer {
                to: sink,
                amount: Amount::new(1),
            },
        }
        .sign(&key)
    };

    // Latency: one transfer at a time, submit to finalized as the client sees it.
    let mut latencies = Vec::with_capacity(args.latency_txs);
    for _ in 0..args.latency_txs {
        let tx = make(nonce);
        nonce += 1;
        let started = Instant::now();
        client.submit(&tx).await?;
        wait_finalized(&client, &digest_hex(&tx.hash()), Duration::from_millis(2)).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    // Throughput: fund the senders, sign everything, then every sender submits its share
    // in order on its own connection; done when every sender's last transfer is final.
    let senders: Vec<PrivateKey> = (0..args.senders.max(1))
        .map(|_| plexus_types::generate_key())
        .collect();
    let per = args.burst_txs.div_ceil(senders.len()) as u64;
    let fee = status.min_fee.get();
    let funding = Amount::new(u128::from(per) * (1 + fee));
    let mut last_funding = None;
    for s in &senders {
        let tx = Transaction {
            chain_id: status.chain_id.clone(),
            signer,
            nonce: Nonce::new(nonce),
            fee: status.min_fee,
            action: Action::Transfer {
                to: keys::address_of(s),
                amount: funding,
            },
        }
        .sign(&key);
        nonce += 1;
        client.submit(&tx).await?;
        last_funding = Some(tx.hash());
    }
    if let Some(hash) = last_funding {
        wait_finalized(&client, &digest_hex(&hash), Duration::from_millis(5)).await?;
    }
    let batches: Vec<Vec<SignedTransaction>> = senders
        .iter()
        .map(|s| {
            (0..per)
                .map(|n| {
                    Transaction {
                        chain_id: status.chain_id.clone(),
                        signer: keys::address_of(s),
                        nonce: Nonce::new(n),
                        fee: status.min_fee,
                        action: Action::Transfer {
                            to: sink,
                            amount: Amount::new(1),
                        },
                    }
                    .sign(s)
                })
                .collect()
        })
        .collect();
    let total: usize = batches.iter().map(Vec::len).sum();
    let mut rpcs = vec![args.rpc.rpc.clone()];
    rpcs.extend(args.submit_rpc.iter().cloned());
    let started = Instant::now();
    let sends = batches.iter().enumerate().map(|(i, txs)| {
        let client = Client::new(&rpcs[i % rpcs.len()]);
        async move {
            for tx in txs {
                client.submit(tx).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    futures::future::try_join_all(sends).await?;
    let submitted = started.elapsed().as_secs_f64();
    for txs in &batches {
        if let Some(last) = txs.last() {
            wait_finalized(&client, &digest_hex(&last.hash()), Duration::from_millis(5)).await?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let tps = total as f64 / elapsed;
    let node = client.status_json().await?;

    let report = json!({
        "latency_txs": args.latency_txs,
        "finality_p50_ms": percentile(&latencies, 50),
        "finality_p99_ms": percentile(&latencies, 99),
        "burst_txs": total,
        "senders": senders.len(),
        "submit_seconds": submitted,
        "finalized_tps": tps,
        "node_finality": node["finality"],
    });
    if args.rpc.json {
        outln!("{report}");
    } else {
        outln!(
            "finality (submit -> finalized, {} sequential transfers): p50 {:.1} ms, p99 {:.1} ms",
            args.latency_txs,
            percentile(&latencies, 50),
            percentile(&latencies, 99)
        );
        outln!(
            "throughput: {} transfers from {} senders finalized in {:.2} s = {:.0} tx/s (submission alone {:.2} s)",
            total,
            senders.len(),
            elapsed,
            tps,
            submitted
        );
        outln!(
            "node-side finality (proposal -> finalization): {}",
            node["finality"]
        );
    }
    Ok(())
}
