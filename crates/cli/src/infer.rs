//! `plexus models`, `plexus infer` and `plexus bench`: local model management, inference and
//! benchmarks, no network or node needed (except `models install`, which uses the package
//! client).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use plexus_inference::catalog::{self, InstallOutcome, ModelFiles};
use plexus_inference::chat::{ChatModel, GenerateParams, Precision};
use plexus_inference::embed::Embedder;
use serde_json::json;

/// Where models live: `--dir`, else `PLEXUS_MODELS_DIR`, else the user's cache dir.
#[derive(clap::Args, Debug, Clone)]
pub struct DirArg {
    /// Models directory [default: $PLEXUS_MODELS_DIR, else $XDG_CACHE_HOME/plexus/models,
    /// else ~/.cache/plexus/models].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl DirArg {
    fn models_dir(&self) -> PathBuf {
        catalog::models_dir(self.dir.as_deref())
    }

    fn locate(&self, name: &str) -> anyhow::Result<ModelFiles> {
        Ok(ModelFiles::locate(name, self.dir.as_deref())?)
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum ModelsCmd {
    /// Fetch, verify and cache models (all of them when no name is given).
    Install {
        /// Model names, as `plexus models list` shows them.
        names: Vec<String>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Show the catalogue: name, kind, hash, path and whether installed.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also check every installed file's sha256 (reads all weights).
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum InferCmd {
    /// Embed texts; prints one vector per text.
    Embed {
        #[arg(long, default_value = "all-minilm-l6-v2")]
        model: String,
        /// A text to embed (repeat for several).
        #[arg(long = "text", value_name = "T", conflicts_with = "input_file")]
        texts: Vec<String>,
        /// A file with one text per line (empty lines skipped); `-` reads stdin.
        #[arg(long, value_name = "F")]
        input_file: Option<PathBuf>,
        /// Print `{"model","model_hash","embeddings"}` JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Answer one prompt with a chat model; streams the answer.
    Chat {
        #[arg(long, default_value = "smollm2-135m-instruct")]
        model: String,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = plexus_inference::chat::DEFAULT_MAX_TOKENS)]
        max_tokens: usize,
        /// Seed of the sampler (unused when greedy).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        /// Nucleus sampling mass in (0, 1].
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        /// Stop before this string (repeat for several).
        #[arg(long = "stop", value_name = "S")]
        stop: Vec<String>,
        /// Full-precision (f32) matrix products, the default: greedy tokens equal
        /// transformers' for the same GGUF.
        #[arg(long, conflicts_with = "quantized")]
        exact: bool,
        /// Quantized (Q4_1) matrix products: less memory and faster with several threads, but
        /// greedy answers can differ from the full-precision model's.
        #[arg(long)]
        quantized: bool,
        /// Print one JSON object at the end instead of streaming text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Embedding throughput (sentences/s) on the built-in 256 sentences.
    Embed {
        #[arg(long, default_value = "all-minilm-l6-v2")]
        model: String,
        #[arg(long, default_value_t = plexus_inference::embed::DEFAULT_BATCH_SIZE)]
        batch_size: usize,
        /// Timed runs; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Threads (re-runs this command with RAYON_NUM_THREADS set) [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Sentences file (one per line) instead of the built-in set.
        #[arg(long, value_name = "F")]
        input_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Chat generation speed (prompt and generated tokens/s), greedy.
    Chat {
        #[arg(long, default_value = "smollm2-135m-instruct")]
        model: String,
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        threads: Option<usize>,
        /// Full-precision matrix products (the default).
        #[arg(long, conflicts_with = "quantized")]
        exact: bool,
        /// Quantized (Q4_1) matrix products.
        #[arg(long)]
        quantized: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DirArg,
    },
}

pub fn run_models(cmd: ModelsCmd) -> anyhow::Result<()> {
    match cmd {
        ModelsCmd::Install { names, dir } => {
            let root = dir.models_dir();
            let specs: Vec<_> = if names.is_empty() {
                catalog::CATALOG.iter().collect()
            } else {
                names
                    .iter()
                    .map(|n| catalog::find(n))
                    .collect::<Result<_, _>>()?
            };
            for spec in specs {
                eprintln!(
                    "{}: installing {} into {}",
                    spec.name,
                    spec.requirement(),
                    root.display()
                );
                match catalog::install(spec, &root)? {
                    InstallOutcome::AlreadyInstalled => {
                        println!("{} already installed ({})", spec.name, spec.model_hash())
                    }
                    InstallOutcome::Installed => {
                        println!("{} installed ({})", spec.name, spec.model_hash())
                    }
                }
            }
            Ok(())
        }
        ModelsCmd::List { json, verify, dir } => {
            let rows: Vec<serde_json::Value> = catalog::CATALOG
                .iter()
                .map(|spec| {
                    let files = ModelFiles {
                        spec,
                        dir: dir.models_dir().join(spec.name),
                    };
                    let (installed, problem) = if verify {
                        match files.verify() {
                            Ok(_) => (true, None),
                            Err(e) => (false, Some(e.to_string())),
                        }
                    } else {
                        (files.is_present(), None)
                    };
                    json!({
                        "name": spec.name,
                        "kind": spec.kind,
                        "model_hash": spec.model_hash(),
                        "path": files.dir,
                        "installed": installed,
                        "package": spec.requirement(),
                        "license": spec.license,
                        "problem": problem,
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24} {:<10} {:<10} {:<64} PATH",
                    "NAME", "KIND", "INSTALLED", "MODEL HASH"
                );
                for r in &rows {
                    println!(
                        "{:<24} {:<10} {:<10} {:<64} {}",
                        r["name"].as_str().unwrap_or_default(),
                        r["kind"].as_str().unwrap_or_default(),
                        if r["installed"] == true { "yes" } else { "no" },
                        r["model_hash"].as_str().unwrap_or_default(),
                        r["path"].as_str().unwrap_or_default(),
                    );
                    if let Some(p) = r["problem"].as_str() {
                        println!("  {p}");
                    }
                }
            }
            Ok(())
        }
    }
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

pub fn run_infer(cmd: InferCmd) -> anyhow::Result<()> {
    match cmd {
        InferCmd::Embed {
            model,
            texts,
            input_file,
            json,
            dir,
        } => {
            let files = dir.locate(&model)?;
            let texts = match input_file {
                Some(f) => read_lines(&f)?,
                None => texts,
            };
            if texts.is_empty() {
                bail!("no input: give --text T (repeatable) or --input-file F");
            }
            let embedder = Embedder::load(&files, &plexus_inference::default_device())?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = embedder.embed(&refs)?;
            let mut out = std::io::stdout().lock();
            if json {
                // The same struct (and so the same bytes) a provider returns for an embedding
                // job: f32 in shortest round-trip form.
                let v = plexus_provider::payload::EmbedOutput {
                    model: files.spec.name.to_string(),
                    model_hash: files.spec.model_hash(),
                    embeddings: vectors,
                };
                serde_json::to_writer(&mut out, &v)?;
                writeln!(out)?;
            } else {
                for v in vectors {
                    let line: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                    writeln!(out, "{}", line.join(" "))?;
                }
            }
            Ok(())
        }
        InferCmd::Chat {
            model,
            prompt,
            max_tokens,
            seed,
            temperature,
            top_p,
            stop,
            exact: _,
            quantized,
            json,
            dir,
        } => {
            let files = dir.locate(&model)?;
            let precision = precision_of(quantized);
            let device = plexus_inference::default_device();
            let mut chat = ChatModel::load(&files, precision, &device)?;
            let params = GenerateParams {
                max_tokens,
                temperature,
                top_p,
                seed,
                stop,
            };
            let mut out = std::io::stdout().lock();
            let completion = chat.chat(&prompt, &params, |piece| {
                if !json {
                    // A closed stdout (`| head`) only ends the stream early.
                    let _ = out.write_all(piece.as_bytes());
                    let _ = out.flush();
                }
            })?;
            if json {
                let v = json!({
                    "model": files.spec.name,
                    "model_hash": files.spec.model_hash(),
                    "text": completion.text,
                    "finish_reason": completion.finish_reason,
                    "usage": completion.usage,
                    "seed": seed,
                    "temperature": temperature,
                    "top_p": top_p,
                    "precision": precision_name(precision),
                    "device": plexus_inference::device_name(&device),
                });
                serde_json::to_writer(&mut out, &v)?;
            }
            writeln!(out)?;
            Ok(())
        }
    }
}

/// Re-runs this process with `RAYON_NUM_THREADS=n` when that is not already its setting:
/// candle fixes its thread count at start-up from that variable. Returns the child's exit
/// code when it re-ran.
fn rerun_with_threads(threads: Option<usize>) -> anyhow::Result<Option<i32>> {
    let Some(n) = threads else { return Ok(None) };
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    let want = n.to_string();
    if std::env::var("RAYON_NUM_THREADS").ok().as_deref() == Some(want.as_str()) {
        return Ok(None);
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("RAYON_NUM_THREADS", &want)
        .env("CANDLE_NUM_THREADS", &want)
        .status()
        .context("re-running with RAYON_NUM_THREADS set")?;
    Ok(Some(status.code().unwrap_or(1)))
}

fn precision_of(quantized: bool) -> Precision {
    if quantized {
        Precision::Quantized
    } else {
        Precision::Exact
    }
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Exact => "exact",
        Precision::Quantized => "quantized",
    }
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

pub fn run_bench(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Embed {
            model,
            batch_size,
            runs,
            threads,
            input_file,
            json,
            dir,
        } => {
            if let Some(code) = rerun_with_threads(threads)? {
                std::process::exit(code);
            }
            let files = dir.locate(&model)?;
            let owned;
            let texts: Vec<&str> = match &input_file {
                Some(f) => {
                    owned = read_lines(f)?;
                    owned.iter().map(String::as_str).collect()
                }
                None => plexus_inference::bench_sentences(),
            };
            let embedder = Embedder::load(&files, &plexus_inference::default_device())?
                .with_batch_size(batch_size);
            let tokens: usize = embedder.tokenize(&texts)?.iter().map(Vec::len).sum();
            embedder.embed(&texts)?; // warm-up
            let mut rates = Vec::new();
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                embedder.embed(&texts)?;
                rates.push(texts.len() as f64 / t.elapsed().as_secs_f64());
            }
            let rate = median(rates.clone());
            let v = json!({
                "engine": "plexus-candle",
                "model": files.spec.name,
                "model_hash": files.spec.model_hash(),
                "sentences": texts.len(),
                "tokens": tokens,
                "batch_size": batch_size,
                "threads": plexus_inference::num_threads(),
                "runs": rates,
                "sentences_per_s": rate,
            });
            if json {
                println!("{v}");
            } else {
                println!(
                    "{}: {:.1} sentences/s ({} sentences, {} tokens, batch {}, {} threads, median of {})",
                    files.spec.name,
                    rate,
                    texts.len(),
                    tokens,
                    batch_size,
                    plexus_inference::num_threads(),
                    runs.max(1)
                );
            }
            Ok(())
        }
        BenchCmd::Chat {
            model,
            max_tokens,
            runs,
            threads,
            exact: _,
            quantized,
            json,
            dir,
        } => {
            if let Some(code) = rerun_with_threads(threads)? {
                std::process::exit(code);
            }
            let files = dir.locate(&model)?;
            let precision = precision_of(quantized);
            let device = plexus_inference::default_device();
            let mut chat = ChatModel::load(&files, precision, &device)?;
            let prompt =
                "Write a short story about a lighthouse keeper who finds a message in a bottle.";
            let params = GenerateParams {
                max_tokens,
                ..Default::default()
            };
            let mut gen_rates = Vec::new();
            let mut prompt_rates = Vec::new();
            let mut last = None;
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                let mut first: Option<f64> = None;
                let c = chat.chat(prompt, &params, |_| {
                    first.get_or_insert_with(|| t.elapsed().as_secs_f64());
                })?;
                let total = t.elapsed().as_secs_f64();
                let first = first.unwrap_or(total);
                prompt_rates.push(c.usage.prompt_tokens as f64 / first);
                gen_rates.push(
                    (c.usage.completion_tokens.saturating_sub(1)) as f64
                        / (total - first).max(1e-9),
                );
                last = Some(c);
            }
            let c = last.context("no run")?;
            let v = json!({
                "engine": "plexus-candle",
                "model": files.spec.name,
                "model_hash": files.spec.model_hash(),
                "precision": precision_name(precision),
                "device": plexus_inference::device_name(&device),
                "threads": plexus_inference::num_threads(),
                "prompt_tokens": c.usage.prompt_tokens,
                "completion_tokens": c.usage.completion_tokens,
                "prompt_tokens_per_s": median(prompt_rates),
                "tokens_per_s": median(gen_rates),
            });
            if json {
                println!("{v}");
            } else {
                println!(
                    "{}: {:.1} tokens/s generation, {:.1} tokens/s prompt ({} prompt + {} generated tokens, {}, {}, {} threads)",
                    files.spec.name,
                    v["tokens_per_s"].as_f64().unwrap_or_default(),
                    v["prompt_tokens_per_s"].as_f64().unwrap_or_default(),
                    c.usage.prompt_tokens,
                    c.usage.completion_tokens,
                    v["precision"].as_str().unwrap_or_default(),
                    plexus_inference::device_name(&device),
                    plexus_inference::num_threads(),
                );
            }
            Ok(())
        }
    }
}
