//! `plexus bench gateway`: chat through the OpenAI-compatible gateway (streaming), against the
//! same generation run directly in this process, in one run.
//!
//! Both sides generate the same greedy completion (exact precision, the provider's mode) of
//! the same prompt, so they produce the same tokens. For each run:
//! - time to first token (TTFT): request sent (or generation started) to the first text;
//! - tokens/s: completion tokens over the time from the first text to the last, the rate the
//!   reader sees tokens arrive;
//! - for the gateway, also the time to the end of the stream, which waits for the provider's
//!   commitment on chain and checks the streamed text against it.
//!
//! The direct runs go first, while the devnet is idle; medians are reported with the ratios.

use crate::infer::median;
use anyhow::{Context, Result, anyhow, bail};
use plexus_inference::chat::GenerateParams;
use plexus_inference::{ChatModel, Message, ModelFiles, Precision};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MODEL: &str = "smollm2-135m-instruct";

#[derive(clap::Args, Debug)]
pub struct GatewayBenchArgs {
    /// The gateway's base URL (default: `gateway` in .plexus-devnet/devnet.json).
    #[arg(long)]
    gateway: Option<String>,
    /// API key (default: `api_key` in .plexus-devnet/devnet.json).
    #[arg(long, env = "PLEXUS_API_KEY")]
    api_key: Option<String>,
    /// Measured runs on each side (after one warm-up each).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    #[arg(
        long,
        default_value = "Write a short story about a robot who learns to paint."
    )]
    prompt: String,
    #[arg(long)]
    models_dir: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

/// One generation's timings, in milliseconds from its start.
#[derive(Clone, Copy, Debug)]
struct Timing {
    first_ms: f64,
    last_ms: f64,
    end_ms: f64,
    tokens: u32,
}

impl Timing {
    fn tokens_per_s(&self) -> f64 {
        let span = (self.last_ms - self.first_ms) / 1e3;
        if span <= 0.0 {
            return 0.0;
        }
        f64::from(self.tokens.saturating_sub(1)) / span
    }
}

fn devnet_defaults(args: &GatewayBenchArgs) -> Result<(String, String)> {
    if let (Some(g), Some(k)) = (&args.gateway, &args.api_key) {
        return Ok((g.clone(), k.clone()));
    }
    let (path, file) =
        crate::devnet::local_devnet_file().context("no --gateway/--api-key given")?;
    let missing = |name: &str| {
        anyhow!(
            "{} has no {name}; is the devnet's gateway up?",
            path.display()
        )
    };
    Ok((
        match &args.gateway {
            Some(g) => g.clone(),
            None => file.gateway.ok_or_else(|| missing("gateway"))?,
        },
        match &args.api_key {
            Some(k) => k.clone(),
            None => file.api_key.ok_or_else(|| missing("api_key"))?,
        },
    ))
}

fn direct(model: &mut ChatModel, prompt: &str, max_tokens: u32) -> Result<Timing> {
    let params = GenerateParams {
        max_tokens: max_tokens as usize,
        ..GenerateParams::default()
    };
    let started = Instant::now();
    let mut first = None;
    let mut last = 0.0;
    let completion = model.chat_messages(&[Message::user(prompt)], &params, |text| {
        if !text.is_empty() {
            let t = started.elapsed().as_secs_f64() * 1e3;
            first.get_or_insert(t);
            last = t;
        }
    })?;
    Ok(Timing {
        first_ms: first.unwrap_or(last),
        last_ms: last,
        end_ms: started.elapsed().as_secs_f64() * 1e3,
        tokens: completion.usage.completion_tokens as u32,
    })
}

/// One streaming request; the timings and the streamed text.
async fn through_gateway(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    prompt: &str,
    max_tokens: u32,
) -> Result<(Timing, String)> {
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let started = Instant::now();
    let mut response = http
        .post(format!("{}/chat/completions", base.trim_end_matches('/')))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {base}"))?;
    if !response.status().is_success() {
        let status = response.status();
        bail!(
            "gateway answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    let (mut first, mut last, mut tokens, mut text) = (None, 0.0, 0u32, String::new());
    let mut pending = String::new();
    'read: while let Some(chunk) = response.chunk().await? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                break 'read;
            }
            let v: Value = serde_json::from_str(data).context("a stream chunk is not JSON")?;
            if let Some(e) = v.get("error") {
                bail!("the stream ended with an error: {e}");
            }
            if let Some(piece) = v["choices"][0]["delta"]["content"].as_str()
                && !piece.is_empty()
            {
                let t = started.elapsed().as_secs_f64() * 1e3;
                first.get_or_insert(t);
                last = t;
                text.push_str(piece);
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                tokens = n as u32;
            }
        }
    }
    Ok((
        Timing {
            first_ms: first.unwrap_or(last),
            last_ms: last,
            end_ms: started.elapsed().as_secs_f64() * 1e3,
            tokens,
        },
        text,
    ))
}

pub async fn run(args: GatewayBenchArgs) -> Result<()> {
    if args.runs == 0 || args.max_tokens == 0 {
        bail!("--runs and --max-tokens must be at least 1");
    }
    let (base, key) = devnet_defaults(&args)?;
    let files = ModelFiles::locate(MODEL, args.models_dir.as_deref())?;
    // Where the providers run it: the GPU in a CUDA build, so the ratio is the gateway's cost.
    let mut model = ChatModel::load(
        &files,
        Precision::Exact,
        &plexus_inference::default_device(),
    )?;
    let prompt = args.prompt.clone();
    let max_tokens = args.max_tokens;
    let runs = args.runs;
    let (_model, direct_runs, direct_text) = tokio::task::spawn_blocking(move || {
        let params = GenerateParams {
            max_tokens: max_tokens as usize,
            ..GenerateParams::default()
        };
        let text = model
            .chat_messages(&[Message::user(&prompt)], &params, |_| {})?
            .text;
        let mut timings = Vec::new();
        for _ in 0..runs {
            timings.push(direct(&mut model, &prompt, max_tokens)?);
        }
        Ok::<_, anyhow::Error>((model, timings, text))
    })
    .await??;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let (_, warm_text) = through_gateway(&http, &base, &key, &args.prompt, max_tokens).await?;
    if warm_text != direct_text {
        bail!(
            "the gateway's completion differs from the direct one:\n  gateway: {warm_text:?}\n  direct:  {direct_text:?}"
        );
    }
    let mut gateway_runs = Vec::new();
    for _ in 0..runs {
        gateway_runs.push(
            through_gateway(&http, &base, &key, &args.prompt, max_tokens)
                .await?
                .0,
        );
    }
    let summary = |ts: &[Timing]| {
        json!({
            "ttft_ms": median(ts.iter().map(|t| t.first_ms).collect()),
            "tokens_per_s": median(ts.iter().map(Timing::tokens_per_s).collect()),
            "total_ms": median(ts.iter().map(|t| t.end_ms).collect()),
            "completion_tokens": ts[0].tokens,
        })
    };
    let d = summary(&direct_runs);
    let g = summary(&gateway_runs);
    let ratio = |k: &str| g[k].as_f64().unwrap_or(0.0) / d[k].as_f64().unwrap_or(1.0).max(1e-9);
    let report = json!({
        "model": MODEL,
        "runs": runs,
        "max_tokens": max_tokens,
        "direct": d,
        "gateway": g,
        "tokens_per_s_ratio": ratio("tokens_per_s"),
        "ttft_added_ms": g["ttft_ms"].as_f64().unwrap_or(0.0) - d["ttft_ms"].as_f64().unwrap_or(0.0),
    });
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    outln!(
        "chat through the gateway vs direct ({MODEL}, {max_tokens} tokens, greedy exact, median of {runs})"
    );
    outln!(
        "{:<10} {:>10} {:>10} {:>12}",
        "",
        "TTFT ms",
        "tokens/s",
        "total ms"
    );
    for (name, s) in [("direct", &d), ("gateway", &g)] {
        outln!(
            "{:<10} {:>10.1} {:>10.1} {:>12.1}",
            name,
            s["ttft_ms"].as_f64().unwrap_or(0.0),
            s["tokens_per_s"].as_f64().unwrap_or(0.0),
            s["total_ms"].as_f64().unwrap_or(0.0)
        );
    }
    outln!(
        "tokens/s ratio {:.2}x; the gateway adds {:.0} ms to the first token (posting the job and its block); its total includes waiting for the commitment",
        report["tokens_per_s_ratio"].as_f64().unwrap_or(0.0),
        report["ttft_added_ms"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}
