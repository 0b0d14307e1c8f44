//! The agent: [`Provider::start`] (checks, bond, registration) and the [`Provider::run`] loop.

use super::feed;
use super::{INPUT_GRACE_BLOCKS, LIVE_POLL, POLL, PRUNE_AFTER_BLOCKS, ProviderConfig, TX_WAIT};
use crate::error::{Error, Result};
use crate::payload::{ErrorOutput, codes};
use crate::runner::{self, Input, Models, Outcome, Work};
use crate::serve::{self, ServeState};
use crate::store::{CheckRecord, Record, Store};
use crate::stream::Streams;
use crate::verify;
use futures::StreamExt;
use plexus_client::{Client, ClientError, JobView};
use plexus_inference::catalog::{self, ModelKind};
use plexus_types::{
    Action, Address, Amount, Digest, JobId, PrivateKey, Receipt, Signer, Transaction, TxHash,
    digest_hex, parse_digest, sha256,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tracing::{debug, error, info, warn};

/// The chain's payload limit when the node does not report one (the ledger's default).
const DEFAULT_MAX_PAYLOAD: u32 = 1024 * 1024;
/// A boxed, owned future. The run loop's future must be `Send` (callers spawn it); a stream
/// that holds a closure over borrowed items across an `.await` defeats the compiler's proof
/// of that (rust-lang/rust#110338), so requests are built into a `Vec` of these first.
type SendFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// Requests to the node in flight at once when fetching inputs or uploading outputs.
const CONCURRENT_REQUESTS: usize = 16;
/// How long shutdown waits for the output server to finish open requests.
const SERVER_DRAIN: Duration = Duration::from_secs(5);

/// Start a provider and run it until `shutdown` completes.
pub async fn run(config: ProviderConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    Provider::start(config).await?.run(shutdown).await
}

/// A started provider: its store is open, its output server's address is bound, its models
/// are loaded, and it is bonded and registered on chain. [`Provider::run`] serves.
///
/// Callers that need the bound address (the devnet starts providers on port 0) read
/// [`Provider::local_addr`] between `start` and `run`.
pub struct Provider {
    client: Client,
    key: PrivateKey,
    address: Address,
    chain: ChainInfo,
    listener: TcpListener,
    local_addr: SocketAddr,
    endpoint: String,
    models: Arc<Models>,
    store: Arc<Mutex<Store>>,
    cheat_rate: f64,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("address", &self.address)
            .field("local_addr", &self.local_addr)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Where the models come from.
enum Source {
    /// Load the configured catalogue models from disk.
    Catalog,
    /// Already loaded (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Loaded(Models),
}

impl Provider {
    /// Open the store, bind the output server, check and load the models, bond and register.
    /// See the [module docs](crate::agent) for each step.
    pub async fn start(config: ProviderConfig) -> Result<Self> {
        Self::start_from(config, Source::Catalog).await
    }

    #[cfg(test)]
    pub(crate) async fn start_with_models(config: ProviderConfig, models: Models) -> Result<Self> {
        Self::start_from(config, Source::Loaded(models)).await
    }

    async fn start_from(config: ProviderConfig, source: Source) -> Result<Self> {
        let ProviderConfig {
            rpc,
            key,
            models: names,
            models_dir,
            stake,
            region,
            capacity,
            price_floor,
            data_dir,
            listen,
            endpoint,
            cheat_rate,
        } = config;
        if !(0.0..=1.0).contains(&cheat_rate) {
            return Err(Error::CheatRate(cheat_rate));
        }
        let declared = match &source {
            Source::Catalog => catalog_models(&names)?,
            Source::Loaded(models) => models
                .iter()
                .map(|m| (m.name.clone(), m.hash, m.kind))
                .collect(),
        };
        let store = blocking(move || Store::open(&data_dir)).await??;
        if !store.is_empty() {
            info!(jobs = store.len(), "loaded job records");
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
        let endpoint = endpoint.unwrap_or_else(|| format!("http://{local_addr}"));

        let client = Client::new(&rpc);
        let chain = ChainInfo::parse(&client.status_json().await?)?;
        check_models(&declared, &client.models().await?)?;
        let models = match source {
            Source::Loaded(models) => models,
            Source::Catalog => {
                let device = plexus_inference::default_device();
                blocking(move || Models::load(&names, models_dir.as_deref(), &device)).await??
            }
        };
        info!(
            models = ?declared.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(),
            "models loaded"
        );

        let address = Address::from(&key.public_key());
        ensure_stake(&client, &key, address, stake, &chain).await?;
        let declaration = Declaration {
            models: declared.iter().map(|(_, hash, _)| *hash).collect(),
            capacity,
            region,
            price_floor,
            endpoint: endpoint.clone(),
        };
        ensure_registered(&client, &key, address, &declaration).await?;
        Ok(Self {
            client,
            key,
            address,
            chain,
            listener,
            local_addr,
            endpoint,
            models: Arc::new(models),
            store: Arc::new(Mutex::new(store)),
            cheat_rate,
        })
    }

    /// The address the output server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint registered on chain.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The provider's account.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Serve outputs and work the assigned jobs until `shutdown` completes (then returns
    /// `Ok`), or until the output server fails.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Provider {
            client,
            key,
            address,
            chain,
            listener,
            local_addr,
            endpoint,
            models,
            store,
            cheat_rate,
        } = self;
        let outputs = lock(&store).outputs();
        let streams = Streams::new();
        let app = serve::app(ServeState {
            outputs,
            provider: address,
            records: store.clone(),
            client: client.clone(),
            streams: streams.clone(),
            stream_wait: serve::STREAM_WAIT,
        });
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = server_stopped.await;
                })
                .await
        });
        let mut feed = feed::spawn(client.url());
        let mut feed_open = true;
        let (results, mut outcomes) = mpsc::unbounded_channel();
        let mut worker: Option<(Batch, JoinHandle<()>)> = None;
        let mut actor = Actor::new(client, key, address, chain, models, store, streams);
        actor.cheat_rate = cheat_rate;
        let mut shutdown = std::pin::pin!(shutdown);
        info!(%address, %local_addr, %endpoint, "provider running");
        if cheat_rate > 0.0 {
            warn!(
                cheat_rate,
                "--cheat-rate is set: this provider corrupts that fraction of its job outputs \
                 (testing verification only); it will be caught and slashed"
            );
        }

        let result = loop {
            if worker.is_none() {
                worker = actor.dispatch(&results);
            }
            let poll = if feed.is_live() { LIVE_POLL } else { POLL };
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                served = &mut server => break Err(match served {
                    Ok(Ok(())) => Error::Serve(std::io::Error::other("the output server stopped")),
                    Ok(Err(e)) => Error::Serve(e),
                    Err(e) => Error::Task(e.to_string()),
                }),
                Some((kind, batch)) = outcomes.recv() => {
                    actor.on_outcomes(kind, batch).await;
                    continue;
                }
                joined = async {
                    (&mut worker.as_mut().expect("guarded by the precondition").1).await
                }, if worker.is_some() =>
                {
                    let kind = worker.take().expect("guarded by the precondition").0;
                    while let Ok((kind, batch)) = outcomes.try_recv() {
                        actor.on_outcomes(kind, batch).await;
                    }
                    actor.batch_finished(kind, joined.err());
                    continue;
                }
                changed = feed.heights.changed(), if feed_open => feed_open = changed.is_ok(),
                () = tokio::time::sleep(poll) => {}
            }
            actor.round().await;
        };

        // Queued jobs' streams end now (their writers go with the backlog), so readers do not
        // hold the server open.
        drop(actor);
        let _ = stop_server.send(());
        if !server.is_finished()
            && tokio::time::timeout(SERVER_DRAIN, &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
        drop(feed);
        info!(%address, "provider stopped");
        result
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the provider needs to know of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChainInfo {
    chain_id: String,
    min_fee: Amount,
    min_provider_stake: Amount,
    max_payload_size: u32,
    /// How far apart two embedding results may be and still agree, in millionths.
    embedding_tolerance_micros: u32,
}

impl ChainInfo {
    /// From the node's `GET /status`.
    fn parse(status: &Value) -> Result<Self> {
        let chain_id = status["chain_id"]
            .as_str()
            .ok_or_else(|| Error::node("status", "no chain_id"))?
            .to_string();
        let min_fee =
            amount(&status["min_fee"]).ok_or_else(|| Error::node("status", "no min_fee"))?;
        let params = &status["params"];
        let min_provider_stake = amount(&params["min_provider_stake"]).ok_or_else(|| {
            Error::node(
                "status",
                "no params.min_provider_stake; is the node older than the job market?",
            )
        })?;
        let max_payload_size = match params["max_payload_size"].as_u64() {
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => {
                warn!(
                    default = DEFAULT_MAX_PAYLOAD,
                    "the node reports no params.max_payload_size; assuming the default"
                );
                DEFAULT_MAX_PAYLOAD
            }
        };
        // A node older than verification reports none, and draws no checks either.
        let embedding_tolerance_micros = params["embedding_tolerance_micros"]
            .as_u64()
            .map_or(verify::DEFAULT_EMBEDDING_TOLERANCE_MICROS, |n| {
                u32::try_from(n).unwrap_or(u32::MAX)
            });
        Ok(Self {
            chain_id,
            min_fee,
            min_provider_stake,
            max_payload_size,
            embedding_tolerance_micros,
        })
    }
}

/// An amount given as a decimal string (or, leniently, a JSON integer).
fn amount(v: &Value) -> Option<Amount> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().map(|n| Amount::new(u128::from(n))),
        _ => None,
    }
}

/// (name, on-chain hash, kind) of each configured catalogue model.
fn catalog_models(names: &[String]) -> Result<Vec<(String, Digest, ModelKind)>> {
    if names.is_empty() {
        return Err(Error::NoModels);
    }
    let mut seen = BTreeSet::new();
    names
        .iter()
        .map(|name| {
            if !seen.insert(name.as_str()) {
                return Err(Error::DuplicateModel { name: name.clone() });
            }
            let spec = catalog::find(name).map_err(|source| Error::Model {
                name: name.clone(),
                source,
            })?;
            Ok((spec.name.to_string(), runner::spec_hash(spec)?, spec.kind))
        })
        .collect()
}

/// Every model is registered on chain (`GET /models`), with the same kind.
fn check_models(declared: &[(String, Digest, ModelKind)], chain_models: &Value) -> Result<()> {
    let list = chain_models["models"]
        .as_array()
        .ok_or_else(|| Error::node("model list", "no \"models\" array"))?;
    for (name, hash, kind) in declared {
        let hex = digest_hex(hash);
        let Some(entry) = list.iter().find(|m| {
            m["hash"]
                .as_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&hex))
        }) else {
            return Err(Error::ModelNotRegistered {
                name: name.clone(),
                hash: hex,
            });
        };
        if let Some(chain_kind) = entry["kind"].as_str()
            && chain_kind != kind.as_str()
        {
            return Err(Error::ModelKindMismatch {
                name: name.clone(),
                chain: chain_kind.to_string(),
                local: kind.as_str(),
            });
        }
    }
    Ok(())
}

/// Bond up to `target` (default: the chain's minimum provider stake).
async fn ensure_stake(
    client: &Client,
    key: &PrivateKey,
    address: Address,
    target: Option<Amount>,
    chain: &ChainInfo,
) -> Result<()> {
    let target = target.unwrap_or(chain.min_provider_stake);
    if target < chain.min_provider_stake {
        return Err(Error::StakeBelowMinimum {
            target,
            min: chain.min_provider_stake,
        });
    }
    let stake = client.account(&address).await?.stake;
    let Some(amount) = target.checked_sub(stake).filter(|a| !a.is_zero()) else {
        info!(%stake, %target, "stake is sufficient");
        return Ok(());
    };
    info!(%stake, %target, %amount, "bonding");
    let tx = client.send(key, Action::Bond { amount }, None).await?;
    wait_success(client, &tx.hash(), "bond").await?;
    info!(stake = %target, "bonded");
    Ok(())
}

/// What the provider declares on chain.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Declaration {
    models: Vec<Digest>,
    capacity: u32,
    region: String,
    price_floor: Amount,
    endpoint: String,
}

impl Declaration {
    fn action(&self) -> Action {
        Action::RegisterProvider {
            models: self.models.clone(),
            capacity: self.capacity,
            region: self.region.clone(),
            price_floor: self.price_floor,
            endpoint: self.endpoint.clone(),
        }
    }

    /// Whether the registry entry `entry` (`GET /providers/{address}`, fields at the top or
    /// under `provider`) declares exactly this. Anything unreadable counts as different, so
    /// the worst case is one needless re-registration.
    fn matches(&self, entry: &Value) -> bool {
        let p = if entry.get("models").is_some() {
            entry
        } else {
            &entry["provider"]
        };
        let models: Option<BTreeSet<String>> = p["models"].as_array().map(|list| {
            list.iter()
                .filter_map(|m| m.as_str().map(str::to_ascii_lowercase))
                .collect()
        });
        let want: BTreeSet<String> = self.models.iter().map(digest_hex).collect();
        models == Some(want)
            && p["capacity"].as_u64() == Some(u64::from(self.capacity))
            && p["region"].as_str() == Some(self.region.as_str())
            && amount(&p["price_floor"]) == Some(self.price_floor)
            && p["endpoint"].as_str() == Some(self.endpoint.as_str())
    }
}

/// Register, or update the declaration if it differs.
async fn ensure_registered(
    client: &Client,
    key: &PrivateKey,
    address: Address,
    declaration: &Declaration,
) -> Result<()> {
    let current = match client.provider(&address).await {
        Ok(entry) => Some(entry),
        Err(ClientError::Api { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(entry) = &current
        && declaration.matches(entry)
    {
        let p = if entry.get("paused").is_some() {
            entry
        } else {
            &entry["provider"]
        };
        if p["paused"] == true {
            warn!("this provider is paused on chain: it gets no new jobs until it resumes");
        }
        info!(endpoint = %declaration.endpoint, "already registered with this declaration");
        return Ok(());
    }
    let what = if current.is_some() {
        "updating the provider declaration"
    } else {
        "registering as a provider"
    };
    info!(
        endpoint = %declaration.endpoint,
        capacity = declaration.capacity,
        region = %declaration.region,
        price_floor = %declaration.price_floor,
        "{what}"
    );
    let tx = client.send(key, declaration.action(), None).await?;
    wait_success(client, &tx.hash(), "register_provider").await?;
    info!("registered");
    Ok(())
}

/// Wait for a transaction to be final and check it succeeded.
async fn wait_success(client: &Client, hash: &TxHash, what: &'static str) -> Result<()> {
    let status = client.wait(hash, TX_WAIT).await?;
    let failed = |reason: String| Error::TxFailed {
        what,
        hash: digest_hex(hash),
        reason,
    };
    match status["status"].as_str() {
        Some("finalized") if status["success"] == true => Ok(()),
        Some("finalized") => Err(failed(
            status["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string(),
        )),
        Some("dropped") => Err(failed(format!(
            "dropped from the mempool: {}",
            status["reason"].as_str().unwrap_or("no reason given")
        ))),
        _ => Err(Error::node("transaction status", status.to_string())),
    }
}

/// The transactions a provider sends: per own job a commit and a reveal, per check it was
/// drawn for the same two steps as a verifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Commit,
    Reveal,
    CommitCheck,
    RevealCheck,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Commit => "commit",
            Step::Reveal => "reveal",
            Step::CommitCheck => "commit_check",
            Step::RevealCheck => "reveal_check",
        }
    }

    fn is_check(self) -> bool {
        matches!(self, Step::CommitCheck | Step::RevealCheck)
    }

    /// Whether `job` (as listed at the last height) still needs this step from `me`.
    fn needed(self, job: &JobView, me: &Address) -> bool {
        match self {
            Step::Commit => job.provider == Some(*me) && job.status == "assigned",
            Step::Reveal => job.provider == Some(*me) && job.status == "committed",
            Step::CommitCheck => job
                .pending_check(me)
                .is_some_and(|c| c.commitment.is_none()),
            Step::RevealCheck => job
                .pending_check(me)
                .is_some_and(|c| c.commitment.is_some()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    step: Step,
    hash: TxHash,
}

/// What a batch on the blocking thread runs: this provider's own jobs, or re-runs of other
/// providers' jobs it was drawn to check. One kind per batch, alternating when both wait,
/// so neither starves the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch {
    Jobs,
    Checks,
}

/// The in-memory side of one kind of work (own jobs or checks). Everything here is rebuilt
/// from the chain and the store after a restart.
#[derive(Default)]
struct Queue {
    /// Jobs that need this kind of work from this provider at the last height.
    listed: BTreeSet<JobId>,
    /// Transactions sent and not yet seen to take effect.
    pending: BTreeMap<JobId, Pending>,
    /// Jobs with their inputs, waiting for the next batch.
    backlog: BTreeMap<JobId, Work>,
    /// Jobs in the running batch.
    running: BTreeSet<JobId>,
    /// Jobs this provider cannot run; left to time out.
    failed: BTreeSet<JobId>,
    /// Jobs already reported as impossible to reveal.
    unrevealable: BTreeSet<JobId>,
    /// Recorded jobs gone from the listing, and the height they were first missed at.
    gone_since: BTreeMap<JobId, u64>,
}

impl Queue {
    /// Whether a job is already being worked on (or given up on) here.
    fn busy(&self, id: &JobId) -> bool {
        self.running.contains(id) || self.backlog.contains_key(id) || self.failed.contains(id)
    }
}

/// The run loop's state. Everything here but the store is rebuilt from the chain after a
/// restart.
struct Actor {
    client: Client,
    key: PrivateKey,
    address: Address,
    chain: ChainInfo,
    models: Arc<Models>,
    store: Arc<Mutex<Store>>,
    /// Live chat streams, read by the output server.
    streams: Streams,
    /// Testing only: the fraction of own job outputs corrupted ([`verify::cheats`]).
    cheat_rate: f64,
    /// The last finalized height a round ran at.
    height: Option<u64>,
    /// This provider's own jobs.
    jobs: Queue,
    /// Other providers' jobs this provider checks.
    checks: Queue,
    /// The kind of the last batch dispatched.
    last_batch: Batch,
}

impl Actor {
    fn new(
        client: Client,
        key: PrivateKey,
        address: Address,
        chain: ChainInfo,
        models: Arc<Models>,
        store: Arc<Mutex<Store>>,
        streams: Streams,
    ) -> Self {
        Self {
            client,
            key,
            address,
            chain,
            models,
            store,
            streams,
            cheat_rate: 0.0,
            height: None,
            jobs: Queue::default(),
            checks: Queue::default(),
            last_batch: Batch::Checks,
        }
    }

    fn queue(&mut self, kind: Batch) -> &mut Queue {
        match kind {
            Batch::Jobs => &mut self.jobs,
            Batch::Checks => &mut self.checks,
        }
    }

    fn record(&self, job: &JobId) -> Option<Record> {
        lock(&self.store).get(job).cloned()
    }

    fn check_record(&self, job: &JobId) -> Option<CheckRecord> {
        lock(&self.store).get_check(job).cloned()
    }

    /// One pass over the jobs the chain holds for this provider (assigned to it, or with a
    /// check by it), once per finalized height.
    async fn round(&mut self) {
        let listing = match self.client.provider_jobs(&self.address).await {
            Ok(listing) => listing,
            Err(e) => {
                debug!(error = %e, "reading this provider's jobs");
                return;
            }
        };
        let height = listing.height.get();
        if self.height.is_some_and(|h| h >= height) {
            return;
        }
        self.height = Some(height);
        let me = self.address;
        let (mut jobs, mut checks) = (BTreeMap::new(), BTreeMap::new());
        for job in listing.jobs {
            if job.provider == Some(me) {
                jobs.insert(job.id, job);
            } else if job.checks.iter().any(|c| c.verifier == me) {
                checks.insert(job.id, job);
            }
        }
        self.jobs.listed = jobs.keys().copied().collect();
        self.checks.listed = checks
            .values()
            .filter(|j| j.pending_check(&me).is_some())
            .map(|j| j.id)
            .collect();
        self.forget_gone(Batch::Jobs, &jobs, height).await;
        self.forget_gone(Batch::Checks, &checks, height).await;
        self.resolve_pending(Batch::Jobs, &jobs).await;
        self.resolve_pending(Batch::Checks, &checks).await;

        let mut txs = Vec::new();
        let mut new = Vec::new();
        for job in jobs.values() {
            if self.jobs.pending.contains_key(&job.id) {
                continue;
            }
            match job.status.as_str() {
                "assigned" => match self.record(&job.id) {
                    Some(record) => txs.push((
                        job.id,
                        Step::Commit,
                        Action::CommitResult {
                            job: job.id,
                            commitment: record.commitment(),
                        },
                    )),
                    None if !self.jobs.busy(&job.id) => new.push(job.clone()),
                    None => {}
                },
                // A spot check was drawn: the reveal waits for the verifier's commitment
                // (the ledger refuses it with `awaiting_verifier` until then).
                "committed" if job.awaiting_verifier() => {}
                "committed" => {
                    if let Some(action) = self.reveal(job) {
                        txs.push((job.id, Step::Reveal, action));
                    }
                }
                _ => {}
            }
        }
        let mut new_checks = Vec::new();
        for job in checks.values() {
            if self.checks.pending.contains_key(&job.id) {
                continue;
            }
            let Some(check) = job.pending_check(&me) else {
                continue;
            };
            match &check.commitment {
                None => match self.check_record(&job.id) {
                    Some(record) => txs.push((
                        job.id,
                        Step::CommitCheck,
                        Action::CommitCheck {
                            job: job.id,
                            commitment: record.commitment(&me),
                        },
                    )),
                    None if !self.checks.busy(&job.id) => {
                        // The input is due by the check's commit deadline, not the job's.
                        let mut job = job.clone();
                        job.deadline = check.deadline;
                        new_checks.push(job);
                    }
                    None => {}
                },
                // Committed: the verdict waits for the provider's reveal.
                Some(_) if job.status != "revealed" => {}
                Some(commitment) => {
                    let (commitment, deadline) = (commitment.clone(), check.deadline.get());
                    if let Some(action) =
                        self.reveal_check(job, &commitment, deadline, height).await
                    {
                        txs.push((job.id, Step::RevealCheck, action));
                    }
                }
            }
        }
        // Reveals and commits first: they are waiting on nothing but the network.
        self.send(txs).await;
        self.fetch_inputs(Batch::Jobs, new, height).await;
        self.fetch_inputs(Batch::Checks, new_checks, height).await;
    }

    /// Forget in-memory state of jobs no longer listed, and delete the records of jobs that
    /// have been gone for [`PRUNE_AFTER_BLOCKS`] once the node confirms they are finished
    /// for this provider.
    async fn forget_gone(&mut self, kind: Batch, jobs: &BTreeMap<JobId, JobView>, height: u64) {
        let me = self.address;
        let client = self.client.clone();
        let store = self.store.clone();
        let queue = self.queue(kind);
        let listed = queue.listed.clone();
        queue.backlog.retain(|id, _| listed.contains(id));
        queue.failed.retain(|id| jobs.contains_key(id));
        queue.unrevealable.retain(|id| jobs.contains_key(id));
        queue.pending.retain(|id, _| jobs.contains_key(id));
        let recorded: BTreeSet<JobId> = match kind {
            Batch::Jobs => lock(&store).records().map(|r| r.job).collect(),
            Batch::Checks => lock(&store).check_records().map(|r| r.job).collect(),
        };
        queue
            .gone_since
            .retain(|id, _| !jobs.contains_key(id) && recorded.contains(id));
        for id in recorded {
            if jobs.contains_key(&id) || queue.running.contains(&id) {
                continue;
            }
            let since = *queue.gone_since.entry(id).or_insert(height);
            if height.saturating_sub(since) < PRUNE_AFTER_BLOCKS {
                continue;
            }
            let finished = match client.job(&id).await {
                Ok(view) => {
                    matches!(view.status.as_str(), "settled" | "refunded" | "queued")
                        || match kind {
                            Batch::Jobs => view.provider != Some(me),
                            Batch::Checks => !view.checks.iter().any(|c| c.verifier == me),
                        }
                }
                Err(ClientError::Api { status: 404, .. }) => true,
                Err(e) => {
                    debug!(job = %id, error = %e, "checking a finished job");
                    false
                }
            };
            if !finished {
                queue.gone_since.insert(id, height);
                continue;
            }
            let removed = match kind {
                Batch::Jobs => lock(&store).remove(&id),
                Batch::Checks => lock(&store).remove_check(&id),
            };
            match removed {
                Ok(_) => debug!(job = %id, "deleted the record of a finished job"),
                Err(e) => warn!(job = %id, error = %e, "deleting a job record"),
            }
            queue.gone_since.remove(&id);
        }
    }

    /// Drop pending transactions that took effect, failed or vanished; keep those that are
    /// still in the mempool.
    async fn resolve_pending(&mut self, kind: Batch, jobs: &BTreeMap<JobId, JobView>) {
        let me = self.address;
        let pending: Vec<(JobId, Pending)> = self
            .queue(kind)
            .pending
            .iter()
            .map(|(j, p)| (*j, *p))
            .collect();
        for (id, p) in pending {
            if !jobs.get(&id).is_some_and(|j| p.step.needed(j, &me)) {
                self.queue(kind).pending.remove(&id);
                continue;
            }
            let status = match self.client.tx(&digest_hex(&p.hash)).await {
                Ok(status) => status,
                Err(ClientError::Api { status: 404, .. }) => {
                    self.queue(kind).pending.remove(&id);
                    continue;
                }
                Err(e) => {
                    debug!(job = %id, error = %e, "checking a transaction");
                    continue;
                }
            };
            match status["status"].as_str() {
                Some("pending") => {}
                // Final and succeeded, but the listing predates it: wait for the job to move.
                Some("finalized") if status["success"] == true => {}
                Some("finalized") => {
                    warn!(
                        job = %id,
                        step = p.step.as_str(),
                        error = status["error"].as_str().unwrap_or("no reason given"),
                        "transaction failed on chain; retrying"
                    );
                    self.queue(kind).pending.remove(&id);
                }
                _ => {
                    warn!(
                        job = %id,
                        step = p.step.as_str(),
                        reason = status["reason"].as_str().unwrap_or("unknown"),
                        "transaction dropped; retrying"
                    );
                    self.queue(kind).pending.remove(&id);
                }
            }
        }
    }

    /// Report once per job that it cannot be revealed.
    fn unrevealable(&mut self, kind: Batch, job: JobId, why: &str) {
        if self.queue(kind).unrevealable.insert(job) {
            error!(job = %job, "{why}; it cannot be revealed");
        }
    }

    /// The reveal of a committed job, if this provider can make it.
    fn reveal(&mut self, job: &JobView) -> Option<Action> {
        let Some(record) = self.record(&job.id) else {
            self.unrevealable(
                Batch::Jobs,
                job.id,
                "committed, but there is no record of it here (was the data dir lost?)",
            );
            return None;
        };
        let committed = job.commitment.as_deref().and_then(|c| parse_digest(c).ok());
        if committed != Some(record.commitment()) {
            self.unrevealable(
                Batch::Jobs,
                job.id,
                "the commitment on chain is not this provider's record (was the data dir replaced?)",
            );
            return None;
        }
        let (Ok(model), Ok(input_hash)) = (parse_digest(&job.model), parse_digest(&job.input_hash))
        else {
            warn!(job = %job.id, "the node reported a job with a malformed model or input hash");
            return None;
        };
        let receipt = Receipt {
            chain_id: self.chain.chain_id.clone(),
            job: job.id,
            model,
            input_hash,
            output_hash: record.output_hash,
            output_size: record.output_size,
            units: record.units,
            unit_price: job.unit_price,
            provider: self.address,
        };
        Some(Action::RevealResult {
            job: job.id,
            output_hash: record.output_hash,
            output_size: record.output_size,
            salt: record.salt,
            units: record.units,
            receipt_signature: receipt.sign(&self.key),
        })
    }

    /// The reveal of this provider's committed check of a revealed job, with its verdict
    /// ([`verify::agrees`]); `None` to try again next round. The provider's output comes from
    /// the node (else its endpoint), checked against the revealed hash and size; if it
    /// cannot be had by [`INPUT_GRACE_BLOCKS`] before the check's `deadline`, the result is
    /// unusable and the verdict is a disagreement.
    async fn reveal_check(
        &mut self,
        job: &JobView,
        commitment: &str,
        deadline: u64,
        height: u64,
    ) -> Option<Action> {
        let Some(record) = self.check_record(&job.id) else {
            self.unrevealable(
                Batch::Checks,
                job.id,
                "this provider committed a check of the job but has no record of it (was the data dir lost?)",
            );
            return None;
        };
        if parse_digest(commitment).ok() != Some(record.commitment(&self.address)) {
            self.unrevealable(
                Batch::Checks,
                job.id,
                "the check commitment on chain is not this provider's record (was the data dir replaced?)",
            );
            return None;
        }
        let Some(kind) = self.models.get(&record.model).map(|m| m.kind) else {
            self.unrevealable(
                Batch::Checks,
                job.id,
                "the model of this check is no longer served here",
            );
            return None;
        };
        let theirs = job
            .output_hash
            .as_deref()
            .and_then(|h| parse_digest(h).ok());
        let agrees = if theirs == Some(record.output_hash) {
            true
        } else if kind == ModelKind::Chat {
            // Exact mode: only identical outputs agree, and these differ.
            false
        } else {
            let stored = lock(&self.store).outputs().get(&record.output_hash);
            let ours = match stored {
                Ok(Some(ours)) => ours,
                Ok(None) => {
                    self.unrevealable(
                        Batch::Checks,
                        job.id,
                        "the output of this provider's check is missing from its data dir",
                    );
                    return None;
                }
                Err(e) => {
                    warn!(job = %job.id, error = %e, "reading this provider's check output");
                    return None;
                }
            };
            match plexus_client::fetch_output(&self.client, job).await {
                Ok(theirs) => {
                    verify::agrees(kind, &ours, &theirs, self.chain.embedding_tolerance_micros)
                }
                Err(e) if height.saturating_add(INPUT_GRACE_BLOCKS) >= deadline => {
                    warn!(job = %job.id, error = %e, "the provider's output is unavailable: disagreeing");
                    false
                }
                Err(e) => {
                    debug!(job = %job.id, error = %e, "the provider's output is not available yet");
                    return None;
                }
            }
        };
        if agrees {
            debug!(job = %job.id, "this re-run agrees with the provider");
        } else {
            warn!(
                job = %job.id,
                provider = ?job.provider,
                "this re-run disagrees with the provider's result: disputing"
            );
        }
        Some(Action::RevealCheck {
            job: job.id,
            output_hash: record.output_hash,
            salt: record.salt,
            agrees,
        })
    }

    /// Fetch the inputs of newly assigned jobs (or jobs to check) and queue them for a batch
    /// of that kind.
    async fn fetch_inputs(&mut self, kind: Batch, jobs: Vec<JobView>, height: u64) {
        if jobs.is_empty() {
            return;
        }
        let fetches: Vec<SendFuture<Option<Input>>> = jobs
            .iter()
            .map(|job| -> SendFuture<Option<Input>> {
                let (client, job) = (self.client.clone(), job.clone());
                Box::pin(async move { fetch_input(&client, &job, height).await })
            })
            .collect();
        let inputs: Vec<Option<Input>> = futures::stream::iter(fetches)
            .buffered(CONCURRENT_REQUESTS)
            .collect()
            .await;
        for (job, input) in jobs.into_iter().zip(inputs) {
            let Some(input) = input else { continue };
            let Ok(model) = parse_digest(&job.model) else {
                error!(job = %job.id, model = %job.model, "the job's model hash is malformed");
                self.queue(kind).failed.insert(job.id);
                continue;
            };
            // Chat text streams to the owner from the moment the job is queued here (a
            // re-run as a verifier streams to nobody).
            let chat = self
                .models
                .get(&model)
                .is_some_and(|m| m.kind == ModelKind::Chat);
            let stream = (chat && kind == Batch::Jobs).then(|| self.streams.open(job.id));
            self.queue(kind).backlog.insert(
                job.id,
                Work {
                    job: job.id,
                    model,
                    max_units: job.max_units,
                    input,
                    stream,
                },
            );
        }
    }

    /// Start a batch with everything in one backlog (own jobs or checks, the other kind
    /// than last time when both wait), unless both are empty.
    fn dispatch(
        &mut self,
        results: &mpsc::UnboundedSender<(Batch, Vec<Outcome>)>,
    ) -> Option<(Batch, JoinHandle<()>)> {
        let kind = match (self.jobs.backlog.is_empty(), self.checks.backlog.is_empty()) {
            (true, true) => return None,
            (false, true) => Batch::Jobs,
            (true, false) => Batch::Checks,
            (false, false) if self.last_batch == Batch::Jobs => Batch::Checks,
            (false, false) => Batch::Jobs,
        };
        self.last_batch = kind;
        let queue = self.queue(kind);
        let work: Vec<Work> = std::mem::take(&mut queue.backlog).into_values().collect();
        queue.running.extend(work.iter().map(|w| w.job));
        debug!(jobs = work.len(), ?kind, "running a batch");
        let models = self.models.clone();
        let results = results.clone();
        let max_output = self.chain.max_payload_size;
        Some((
            kind,
            tokio::task::spawn_blocking(move || {
                runner::run(&models, work, max_output, |outcomes| {
                    // The receiver lives as long as the run loop; after it, results are moot.
                    let _ = results.send((kind, outcomes));
                })
            }),
        ))
    }

    /// The batch ended (all its outcomes handled): a job without an outcome means the
    /// batch panicked.
    fn batch_finished(&mut self, kind: Batch, panic: Option<JoinError>) {
        if let Some(e) = panic {
            error!(error = %e, "a batch of jobs panicked");
        }
        let queue = self.queue(kind);
        for job in std::mem::take(&mut queue.running) {
            error!(job = %job, "no result for this job; it will time out");
            queue.failed.insert(job);
        }
    }

    /// Results of a batch: make them durable, upload the outputs, commit (the result, or as
    /// a verifier the check).
    async fn on_outcomes(&mut self, kind: Batch, outcomes: Vec<Outcome>) {
        let cheat_rate = self.cheat_rate;
        let mut done = Vec::new();
        for outcome in outcomes {
            let queue = self.queue(kind);
            queue.running.remove(&outcome.job());
            match outcome {
                Outcome::Failed { job, reason } => {
                    match kind {
                        Batch::Jobs => error!(
                            job = %job,
                            "cannot run this job: {reason}; it will time out and go to another provider"
                        ),
                        Batch::Checks => error!(
                            job = %job,
                            "cannot re-run this job as its verifier: {reason}; the check will be missed"
                        ),
                    }
                    queue.failed.insert(job);
                }
                Outcome::Done { job, .. } if !queue.listed.contains(&job) => {
                    debug!(job = %job, "the job no longer needs this result");
                }
                Outcome::Done {
                    job,
                    model,
                    output,
                    units,
                } => {
                    if u32::try_from(output.len()).is_err() {
                        queue.failed.insert(job);
                        continue;
                    }
                    let output = if kind == Batch::Jobs && verify::cheats(cheat_rate, &job) {
                        debug!(job = %job, "corrupting this job's output (--cheat-rate)");
                        verify::corrupt(&output)
                    } else {
                        output
                    };
                    done.push((job, model, output, units));
                }
            }
        }
        if done.is_empty() {
            return;
        }
        let txs = match kind {
            Batch::Jobs => self.commit_results(done).await,
            Batch::Checks => self.commit_checks(done).await,
        };
        self.send(txs).await;
    }

    /// Record own results durably, upload them, and return their commits.
    async fn commit_results(
        &mut self,
        done: Vec<(JobId, Digest, Vec<u8>, u32)>,
    ) -> Vec<(JobId, Step, Action)> {
        let items: Vec<(Record, Vec<u8>)> = done
            .into_iter()
            .map(|(job, model, output, units)| {
                let record = Record {
                    job,
                    output_hash: sha256(&[&output]),
                    salt: Digest(rand::random()),
                    output_size: output.len() as u32,
                    units,
                    model,
                };
                (record, output)
            })
            .collect();
        let Some(items) = self
            .store_durably(Batch::Jobs, items, |store, items| store.insert(items))
            .await
        else {
            return Vec::new();
        };
        self.upload(&items).await;
        items
            .iter()
            .map(|(r, _)| {
                (
                    r.job,
                    Step::Commit,
                    Action::CommitResult {
                        job: r.job,
                        commitment: r.commitment(),
                    },
                )
            })
            .collect()
    }

    /// Record the results of checks durably, upload them (so a dispute can inspect them),
    /// and return their check commits.
    async fn commit_checks(
        &mut self,
        done: Vec<(JobId, Digest, Vec<u8>, u32)>,
    ) -> Vec<(JobId, Step, Action)> {
        let items: Vec<(CheckRecord, Vec<u8>)> = done
            .into_iter()
            .map(|(job, model, output, _)| {
                let record = CheckRecord {
                    job,
                    output_hash: sha256(&[&output]),
                    salt: Digest(rand::random()),
                    output_size: output.len() as u32,
                    model,
                };
                (record, output)
            })
            .collect();
        let Some(items) = self
            .store_durably(Batch::Checks, items, |store, items| {
                store.insert_checks(items)
            })
            .await
        else {
            return Vec::new();
        };
        self.upload(&items).await;
        let me = self.address;
        items
            .iter()
            .map(|(r, _)| {
                (
                    r.job,
                    Step::CommitCheck,
                    Action::CommitCheck {
                        job: r.job,
                        commitment: r.commitment(&me),
                    },
                )
            })
            .collect()
    }

    /// Write records and outputs with `insert` on a blocking thread: durable before any
    /// commit is sent, the invariant of the store. `None` (the jobs marked failed) if they
    /// could not be stored.
    async fn store_durably<R: HasJob + Send + 'static>(
        &mut self,
        kind: Batch,
        items: Vec<(R, Vec<u8>)>,
        insert: Insert<R>,
    ) -> Option<Vec<(R, Vec<u8>)>> {
        let store = self.store.clone();
        let stored = blocking(move || {
            let result = insert(&mut lock(&store), &items);
            (items, result)
        })
        .await;
        match stored {
            Ok((items, Ok(()))) => Some(items),
            Ok((items, Err(e))) => {
                error!(error = %e, "cannot store results; they are not committed");
                let queue = self.queue(kind);
                queue.failed.extend(items.iter().map(|(r, _)| r.job()));
                None
            }
            Err(e) => {
                error!(error = %e, "storing results");
                None
            }
        }
    }

    /// Upload outputs to the node's payload store, concurrently. A failure is logged: the
    /// provider's endpoint serves them too.
    async fn upload<R: HasJob>(&self, items: &[(R, Vec<u8>)]) {
        let uploads: Vec<SendFuture<()>> = items
            .iter()
            .map(|(record, output)| -> SendFuture<()> {
                let (client, job, output) = (self.client.clone(), record.job(), output.clone());
                Box::pin(async move {
                    if let Err(e) = client.put_blob(output).await {
                        warn!(
                            job = %job,
                            error = %e,
                            "uploading the output to the node; it is still served from this provider's endpoint"
                        );
                    }
                })
            })
            .collect();
        futures::stream::iter(uploads)
            .buffer_unordered(CONCURRENT_REQUESTS)
            .collect::<Vec<()>>()
            .await;
    }

    /// Sign and submit, one after another with consecutive nonces. Stops at a nonce error
    /// or an unreachable node; the next round retries whatever is still needed.
    async fn send(&mut self, txs: Vec<(JobId, Step, Action)>) {
        if txs.is_empty() {
            return;
        }
        let mut nonce = match self.client.account(&self.address).await {
            Ok(account) => account.next_nonce,
            Err(e) => {
                warn!(error = %e, "reading the account nonce; retrying next block");
                return;
            }
        };
        let (mut commits, mut reveals, mut checks) = (0usize, 0usize, 0usize);
        for (job, step, action) in txs {
            let tx = Transaction {
                chain_id: self.chain.chain_id.clone(),
                signer: self.address,
                nonce,
                fee: self.chain.min_fee,
                action,
            }
            .sign(&self.key);
            match self.client.submit(&tx).await {
                Ok(hash) => {
                    let kind = if step.is_check() {
                        Batch::Checks
                    } else {
                        Batch::Jobs
                    };
                    self.queue(kind).pending.insert(job, Pending { step, hash });
                    match step {
                        Step::Commit => commits += 1,
                        Step::Reveal => reveals += 1,
                        Step::CommitCheck | Step::RevealCheck => checks += 1,
                    }
                    debug!(job = %job, step = step.as_str(), tx = %digest_hex(&hash), "submitted");
                }
                Err(ClientError::Api { code, message, .. })
                    if code == "stale_nonce" || code == "nonce_gap" =>
                {
                    debug!(%message, "nonce moved (another client with this key?); retrying next block");
                    break;
                }
                Err(ClientError::Api { code, message, .. }) => {
                    // Not admitted, so the nonce is still free for the next one.
                    if matches!(
                        code.as_str(),
                        "not_assigned"
                            | "wrong_phase"
                            | "unknown_job"
                            | "not_verifier"
                            // Waiting on the other side of a check: retried next round.
                            | "awaiting_verifier"
                            | "check_too_early"
                    ) {
                        debug!(job = %job, step = step.as_str(), %message, "not now: the job moved on or waits");
                    } else {
                        warn!(job = %job, step = step.as_str(), %code, "{message}");
                    }
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "submitting; retrying next block");
                    break;
                }
            }
            match nonce.checked_next() {
                Some(next) => nonce = next,
                None => break,
            }
        }
        if commits + reveals > 0 {
            info!(commits, reveals, "submitted");
        }
        if checks > 0 {
            info!(checks, "submitted check steps");
        }
    }
}

/// A store method that writes records with their outputs durably.
type Insert<R> = fn(&mut Store, &[(R, Vec<u8>)]) -> Result<()>;

/// A record kept per job in the store (own result or check).
trait HasJob {
    fn job(&self) -> JobId;
}

impl HasJob for Record {
    fn job(&self) -> JobId {
        self.job
    }
}

impl HasJob for CheckRecord {
    fn job(&self) -> JobId {
        self.job
    }
}

/// The input of a job: its bytes, an error to answer with, or `None` to try again later.
async fn fetch_input(client: &Client, job: &JobView, height: u64) -> Option<Input> {
    let hash = match parse_digest(&job.input_hash) {
        Ok(hash) => hash,
        Err(e) => {
            return Some(Input::Unusable(ErrorOutput::new(
                codes::INVALID_INPUT,
                format!("the input hash is malformed: {e}"),
            )));
        }
    };
    match client.get_blob(&hash).await {
        Ok(bytes) => Some(Input::Bytes(bytes)),
        Err(ClientError::Api { status: 404, .. }) => {
            if height.saturating_add(INPUT_GRACE_BLOCKS) >= job.deadline.get() {
                Some(Input::Unusable(ErrorOutput::new(
                    codes::INPUT_UNAVAILABLE,
                    format!(
                        "the node has no payload {}; upload the input (POST /blobs) before posting the job",
                        job.input_hash
                    ),
                )))
            } else {
                debug!(job = %job.id, "input not on the node yet");
                None
            }
        }
        Err(e) => {
            warn!(job = %job.id, error = %e, "fetching the input; retrying");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chain_info_from_status() {
        let status = json!({
            "chain_id": "plexus-devnet",
            "min_fee": "10",
            "params": {"min_provider_stake": "1000000", "commit_timeout": 10, "max_payload_size": 4096},
        });
        assert_eq!(
            ChainInfo::parse(&status).unwrap(),
            ChainInfo {
                chain_id: "plexus-devnet".into(),
                min_fee: Amount::new(10),
                min_provider_stake: Amount::new(1_000_000),
                max_payload_size: 4096,
                embedding_tolerance_micros: verify::DEFAULT_EMBEDDING_TOLERANCE_MICROS,
            }
        );
        let mut with_tolerance = status.clone();
        with_tolerance["params"]["embedding_tolerance_micros"] = json!(7);
        assert_eq!(
            ChainInfo::parse(&with_tolerance)
                .unwrap()
                .embedding_tolerance_micros,
            7
        );
        let old = json!({"chain_id": "c", "min_fee": "1"});
        assert!(matches!(ChainInfo::parse(&old), Err(Error::Node { .. })));
        let defaulted =
            json!({"chain_id": "c", "min_fee": 1, "params": {"min_provider_stake": "5"}});
        assert_eq!(
            ChainInfo::parse(&defaulted).unwrap().max_payload_size,
            DEFAULT_MAX_PAYLOAD
        );
    }

    #[test]
    fn models_must_be_registered_with_their_kind() {
        let declared = catalog_models(&["all-minilm-l6-v2".into()]).unwrap();
        let hash = digest_hex(&declared[0].1);
        assert_eq!(
            hash,
            catalog::find("all-minilm-l6-v2").unwrap().model_hash()
        );
        let listed =
            json!({"models": [{"hash": hash, "name": "all-minilm-l6-v2", "kind": "embedding"}]});
        check_models(&declared, &listed).unwrap();
        let wrong_kind = json!({"models": [{"hash": hash, "kind": "chat"}]});
        assert!(matches!(
            check_models(&declared, &wrong_kind),
            Err(Error::ModelKindMismatch { .. })
        ));
        let missing = json!({"models": []});
        let err = check_models(&declared, &missing).unwrap_err();
        assert!(matches!(err, Error::ModelNotRegistered { .. }));
        assert!(err.to_string().contains("all-minilm-l6-v2"));

        assert!(matches!(catalog_models(&[]), Err(Error::NoModels)));
        assert!(matches!(
            catalog_models(&["all-minilm-l6-v2".into(), "all-minilm-l6-v2".into()]),
            Err(Error::DuplicateModel { .. })
        ));
        let unknown = catalog_models(&["gpt-9".into()]).unwrap_err();
        assert!(unknown.to_string().contains("unknown model"), "{unknown}");
    }

    #[test]
    fn declarations_compare_with_the_registry() {
        let a = sha256(&[b"a"]);
        let b = sha256(&[b"b"]);
        let declaration = Declaration {
            models: vec![a, b],
            capacity: 8,
            region: "eu".into(),
            price_floor: Amount::new(3),
            endpoint: "http://127.0.0.1:9000".into(),
        };
        let entry = json!({
            "address": "00",
            "models": [digest_hex(&b), digest_hex(&a)],
            "capacity": 8,
            "region": "eu",
            "price_floor": "3",
            "endpoint": "http://127.0.0.1:9000",
            "paused": false,
        });
        assert!(declaration.matches(&entry));
        assert!(declaration.matches(&json!({ "provider": entry.clone() })));
        for (field, value) in [
            ("models", json!([digest_hex(&a)])),
            ("capacity", json!(9)),
            ("region", json!("us")),
            ("price_floor", json!("4")),
            ("endpoint", json!("http://127.0.0.1:9001")),
        ] {
            let mut changed = entry.clone();
            changed[field] = value;
            assert!(!declaration.matches(&changed), "{field}");
        }
        assert!(!declaration.matches(&json!({})));
    }
}
