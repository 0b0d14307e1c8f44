//! sim: Run a whole network from a seed, with faults and adversaries, and check invariants.
//!
//! [`run`] builds a chain from a genesis derived from the seed and drives the **real ledger**
//! ([`plexus_ledger::State`]) block by block with real ed25519-signed transactions from
//! simulated users, providers and verifiers, on commonware's deterministic runtime (virtual
//! time, one block every 200 ms of it). The ledger's end-of-block work (assignment, spot
//! checks, disputes, settlement, slashing, pricing) runs exactly as in a node. What is *not*
//! re-run here is the BFT consensus and p2p: every block is the one the sim proposes, seeded by
//! `sha256(seed || height)`. Consensus under crashes, partitions and Byzantine validators is
//! covered by the node's own simulations (`crates/node/tests/simulation.rs`); this crate is
//! about the economics of verification.
//!
//! # The network
//!
//! - **Users** post chat jobs (the exact comparison rule: results agree when identical) of 1
//!   to 64 output tokens, `jobs_per_block` per block until `jobs` have been posted, at twice the
//!   base price.
//! - **Providers** all serve the model with the same stake (3x the minimum). A job of `u`
//!   units takes `1 + u / 16` blocks to compute. The honest result of a job is a function of
//!   the job alone, so every honest run gives the same output hash.
//! - **Cheaters** skip the work on a `cheat_rate` fraction of their jobs (chosen per job from
//!   the seed) and commit a wrong result at once; as verifiers they are honest.
//! - **Lazy verifiers** do their own jobs honestly but never re-run a check: half of them
//!   *copy* (commit the provider's commitment, which they then cannot open), half *guess*
//!   (commit a made-up result and reveal it with the only verdict the chain accepts).
//! - **Offline** providers stop acting at a block drawn from the seed (deadline penalties,
//!   which are not fraud slashes).
//!
//! # The report
//!
//! Jobs posted, settled and refunded; checks assigned; disputes; slashes; per provider its
//! role and earnings (balance + stake change); detection latency (blocks from a cheater's
//! first cheated commit to its first slash); `verification_overhead`, which is job compute
//! plus the verification re-runs actually done, over job compute (in units; job compute is
//! the units of every committed job).
//!
//! **Profitability** counts compute as `cost_bps` of a job's price (default 10000, the worst
//! case: cheating saves the whole price). A cheater is *profitable* when the compute it saved
//! by cheating exceeds what cheating cost it: the earnings (`price - fee`) of its cheated jobs
//! that did not settle to it, plus the stake it lost to slashes and penalties. Reputation loss
//! (fewer jobs later) is not counted, so the measure favours the cheater.
//!
//! # Invariants, checked after every block
//!
//! The ledger's own (`holdings == supply`, escrow consistent), `supply + burned == genesis
//! supply`, and no honest party slashed: a slash of a provider for a job it did not cheat on,
//! or of a verifier for a check it re-ran honestly, is an `honest_slashed` and an
//! `invariant_violations`.

use commonware_cryptography::Signer;
use commonware_runtime::{Clock, Runner, deterministic};
use plexus_ledger::{Event, Genesis, GenesisAccount, GenesisModel, Job, Params, Phase, State};
use plexus_types::{
    Action, Address, Amount, Digest, Height, JobId, ModelKind, Nonce, PrivateKey, Receipt,
    Transaction, WorkUnit, check_commitment, commitment, key_from_seed, sha256,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const CHAIN: &str = "plexus-sim";
const USERS: usize = 4;
const MIN_PRICE: u128 = 100;
const MAX_UNITS: u64 = 64;
/// Blocks after the last post during which the network drains (every job ends well before).
const DRAIN_BLOCKS: u64 = 400;

/// What to simulate.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub seed: u64,
    /// Providers in all, adversaries included.
    pub providers: usize,
    /// The first `cheaters` providers cheat.
    pub cheaters: usize,
    /// Fraction of a cheater's jobs it cheats on, in basis points.
    pub cheat_rate_bps: u32,
    /// The next `lazy` providers are lazy verifiers.
    pub lazy: usize,
    /// The next `offline` providers go offline at some block.
    pub offline: usize,
    pub jobs: u64,
    pub jobs_per_block: u32,
    /// Compute cost of a job as a share of its price, in basis points.
    pub cost_bps: u64,
    /// Probability of a spot check, in basis points (the chain's `verify_bps`).
    pub verify_bps: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 1,
            providers: 5,
            cheaters: 1,
            cheat_rate_bps: 500,
            lazy: 0,
            offline: 0,
            jobs: 10_000,
            jobs_per_block: 4,
            cost_bps: 10_000,
            verify_bps: plexus_ledger::defaults::verify_bps(),
        }
    }
}

impl Config {
    /// Why this configuration cannot run, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let adversaries = self.cheaters + self.lazy + self.offline;
        if self.providers < 2 {
            return Some("at least 2 providers (a verifier must differ from the provider)".into());
        }
        if self.providers > 200 {
            return Some("at most 200 providers".into());
        }
        if adversaries >= self.providers {
            return Some(format!(
                "cheaters + lazy + offline ({adversaries}) must leave at least one honest \
                 provider among {}",
                self.providers
            ));
        }
        if self.cheat_rate_bps > 10_000 || self.cost_bps > 10_000 || self.verify_bps > 10_000 {
            return Some("rates are between 0 and 1 (0 and 10000 basis points)".into());
        }
        if self.jobs == 0 || self.jobs_per_block == 0 {
            return Some("jobs and jobs per block must be at least 1".into());
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Honest,
    Cheater,
    LazyCopier,
    LazyGuesser,
    Offline,
}

/// One provider's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderReport {
    pub address: Address,
    pub role: Role,
    pub jobs_committed: u64,
    pub jobs_cheated: u64,
    pub checks_done: u64,
    /// Balance + stake + unbonding at the end minus at genesis (negative: it lost).
    pub earnings: i128,
    pub slashed: Amount,
    pub penalties: Amount,
    /// Compute cost saved by cheating (`cost_bps` of each cheated job's price).
    pub saved_cost: Amount,
    /// Earnings of its cheated jobs that never settled to it.
    pub forfeited: Amount,
    pub caught: bool,
    /// Cheaters only: saved compute exceeds what cheating cost it.
    pub profitable: bool,
    /// Cheaters only: blocks from the first cheated commit to the first slash.
    pub detection_latency: Option<u64>,
    pub reputation: u32,
}

/// What a run found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub blocks: u64,
    pub jobs_posted: u64,
    pub jobs_settled: u64,
    pub jobs_refunded: u64,
    pub verifications: u64,
    pub dispute_checks: u64,
    pub disputes: u64,
    pub disputes_provider_wrong: u64,
    pub disputes_provider_right: u64,
    pub disputes_undecided: u64,
    pub slashes: u64,
    pub burned: Amount,
    pub honest_slashed: u64,
    pub invariant_violations: u64,
    /// The first violation, for a person.
    pub first_violation: Option<String>,
    pub cheaters: u64,
    pub cheaters_caught: u64,
    pub cheaters_profitable: u64,
    pub mean_detection_latency: Option<f64>,
    pub job_units: u64,
    pub verification_units: u64,
    pub verification_overhead: f64,
    pub providers: Vec<ProviderReport>,
}

/// Totals over many seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub seeds: u64,
    pub seeds_with_profitable_cheater: u64,
    pub seeds_with_honest_slashed: u64,
    pub seeds_with_violations: u64,
    pub cheaters: u64,
    pub cheaters_caught: u64,
    pub cheaters_profitable: u64,
    pub mean_verification_overhead: f64,
    pub max_verification_overhead: f64,
    pub mean_detection_latency: Option<f64>,
}

impl Summary {
    pub fn of(reports: &[Report]) -> Self {
        let n = reports.len().max(1) as f64;
        let latencies: Vec<u64> = reports
            .iter()
            .flat_map(|r| r.providers.iter().filter_map(|p| p.detection_latency))
            .collect();
        Self {
            seeds: reports.len() as u64,
            seeds_with_profitable_cheater: count(reports, |r| r.cheaters_profitable > 0),
            seeds_with_honest_slashed: count(reports, |r| r.honest_slashed > 0),
            seeds_with_violations: count(reports, |r| r.invariant_violations > 0),
            cheaters: reports.iter().map(|r| r.cheaters).sum(),
            cheaters_caught: reports.iter().map(|r| r.cheaters_caught).sum(),
            cheaters_profitable: reports.iter().map(|r| r.cheaters_profitable).sum(),
            mean_verification_overhead: reports
                .iter()
                .map(|r| r.verification_overhead)
                .sum::<f64>()
                / n,
            max_verification_overhead: reports
                .iter()
                .map(|r| r.verification_overhead)
                .fold(0.0, f64::max),
            mean_detection_latency: mean(&latencies),
        }
    }
}

fn count(reports: &[Report], f: impl Fn(&Report) -> bool) -> u64 {
    reports.iter().filter(|r| f(r)).count() as u64
}

fn mean(v: &[u64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<u64>() as f64 / v.len() as f64)
}

/// Run `seeds` seeds from `base.seed` on `threads` threads; reports in seed order.
pub fn run_seeds(base: &Config, seeds: u64, threads: usize) -> Vec<Report> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = AtomicU64::new(0);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= seeds {
                        break;
                    }
                    let config = Config {
                        seed: base.seed + i,
                        ..base.clone()
                    };
                    let report = run(&config);
                    out.lock().expect("no panics hold the lock").push(report);
                }
            });
        }
    });
    let mut reports = out.into_inner().expect("threads joined");
    reports.sort_by_key(|r| r.seed);
    reports
}

/// Run one network to the end (every job posted and finished) and report.
pub fn run(config: &Config) -> Report {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(config.seed)
            .with_timeout(None),
    );
    let config = config.clone();
    runner.start(|context| async move {
        let mut sim = Sim::new(config);
        loop {
            context.sleep(Duration::from_millis(200)).await;
            if !sim.step() {
                break;
            }
        }
        sim.report()
    })
}

/// A provider as the sim plays it.
struct Actor {
    key: PrivateKey,
    address: Address,
    role: Role,
    /// Offline from this height on.
    offline_at: u64,
    /// Own jobs in progress: job -> (ready at height, output, cheated).
    work: BTreeMap<(JobId, u32), (u64, Digest, bool)>,
    /// Checks in progress: job -> ready at height.
    checks: BTreeMap<JobId, u64>,
    initial: u128,
    jobs_committed: u64,
    jobs_cheated: u64,
    checks_done: u64,
    slashed: Amount,
    penalties: Amount,
    saved_cost: Amount,
    /// Cheated jobs: job -> earnings it would have had (`price - fee`).
    cheated_jobs: BTreeMap<JobId, Amount>,
    settled: BTreeSet<JobId>,
    first_cheat: Option<u64>,
    first_slash: Option<u64>,
}

struct Sim {
    config: Config,
    state: State,
    genesis_supply: Amount,
    users: Vec<PrivateKey>,
    actors: Vec<Actor>,
    by_address: BTreeMap<Address, usize>,
    /// (party, job) pairs where the party misbehaved: a slash there is deserved.
    dishonest: BTreeSet<(Address, JobId)>,
    posted: u64,
    last_post_height: u64,
    r: Report,
}

/// A deterministic draw in `0..modulus` from the seed and `parts`.
fn draw(seed: u64, parts: &[&[u8]], modulus: u64) -> u64 {
    let seed_bytes = seed.to_be_bytes();
    let mut all: Vec<&[u8]> = vec![b"plexus-sim", &seed_bytes];
    all.extend_from_slice(parts);
    let d = sha256(&all);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b) % modulus.max(1)
}

/// Blocks a job of `units` takes to compute.
fn work_blocks(units: u32) -> u64 {
    1 + u64::from(units) / 16
}

fn honest_output(job: &JobId) -> Digest {
    sha256(&[b"honest", job.as_bytes()])
}

impl Sim {
    fn new(config: Config) -> Self {
        let key = |i: u64| key_from_seed(config.seed.wrapping_mul(1_000_003).wrapping_add(i));
        let users: Vec<PrivateKey> = (0..USERS as u64).map(key).collect();
        let params = Params::new(Amount::new(1), 10);
        let params = Params {
            verify_bps: config.verify_bps,
            ..params
        };
        let stake = params.min_provider_stake.get() * 3;
        let mut accounts: Vec<GenesisAccount> = users
            .iter()
            .map(|k| GenesisAccount {
                address: Address::from(&k.public_key()),
                balance: Amount::new(1_000_000_000_000_000),
                stake: Amount::ZERO,
            })
            .collect();
        let mut actors = Vec::new();
        for i in 0..config.providers {
            let k = key(1_000 + i as u64);
            let address = Address::from(&k.public_key());
            let lazy_index = i.wrapping_sub(config.cheaters);
            let role = if i < config.cheaters {
                Role::Cheater
            } else if lazy_index < config.lazy {
                if lazy_index % 2 == 0 {
                    Role::LazyCopier
                } else {
                    Role::LazyGuesser
                }
            } else if i < config.cheaters + config.lazy + config.offline {
                Role::Offline
            } else {
                Role::Honest
            };
            let horizon = config.jobs / u64::from(config.jobs_per_block) + 1;
            let offline_at = if role == Role::Offline {
                1 + draw(
                    config.seed,
                    &[b"offline", &(i as u64).to_be_bytes()],
                    horizon,
                )
            } else {
                u64::MAX
            };
            let balance = 1_000_000_000u128;
            accounts.push(GenesisAccount {
                address,
                balance: Amount::new(balance),
                stake: Amount::new(stake),
            });
            actors.push(Actor {
                key: k,
                address,
                role,
                offline_at,
                work: BTreeMap::new(),
                checks: BTreeMap::new(),
                initial: balance + stake,
                jobs_committed: 0,
                jobs_cheated: 0,
                checks_done: 0,
                slashed: Amount::ZERO,
                penalties: Amount::ZERO,
                saved_cost: Amount::ZERO,
                cheated_jobs: BTreeMap::new(),
                settled: BTreeSet::new(),
                first_cheat: None,
                first_slash: None,
            });
        }
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            params,
            accounts,
            models: vec![GenesisModel {
                hash: model_hash(),
                name: "sim-chat".into(),
                kind: ModelKind::Chat,
                unit: WorkUnit::OutputTokens,
                min_price: Amount::new(MIN_PRICE),
                // 64 tokens take at most 5 blocks; the deadline stretches by 12.
                blocks_per_1000_units: 200,
            }],
        };
        let mut state = State::from_genesis(&genesis).expect("the sim's genesis is valid");
        // Block 1: every provider registers (capacity 8 jobs in progress).
        let registrations: Vec<_> = actors
            .iter()
            .map(|a| {
                Transaction {
                    chain_id: CHAIN.into(),
                    signer: a.address,
                    nonce: Nonce::new(0),
                    fee: Amount::new(1),
                    action: Action::RegisterProvider {
                        models: vec![model_hash()],
                        capacity: 8,
                        region: String::new(),
                        price_floor: Amount::ZERO,
                        endpoint: "http://sim.invalid".into(),
                    },
                }
                .sign(&a.key)
            })
            .collect();
        let out = state
            .apply_block(Height::new(1), &sha256(&[b"genesis-block"]), &registrations)
            .expect("registration block applies");
        assert!(out.results.iter().all(Result::is_ok), "providers register");
        for a in actors.iter_mut() {
            let acc = state.account(&a.address);
            a.initial = acc.balance.get() + acc.stake.get();
        }
        let by_address = actors
            .iter()
            .enumerate()
            .map(|(i, a)| (a.address, i))
            .collect();
        let r = Report {
            seed: config.seed,
            blocks: 0,
            jobs_posted: 0,
            jobs_settled: 0,
            jobs_refunded: 0,
            verifications: 0,
            dispute_checks: 0,
            disputes: 0,
            disputes_provider_wrong: 0,
            disputes_provider_right: 0,
            disputes_undecided: 0,
            slashes: 0,
            burned: Amount::ZERO,
            honest_slashed: 0,
            invariant_violations: 0,
            first_violation: None,
            cheaters: config.cheaters as u64,
            cheaters_caught: 0,
            cheaters_profitable: 0,
            mean_detection_latency: None,
            job_units: 0,
            verification_units: 0,
            verification_overhead: 1.0,
            providers: Vec::new(),
        };
        Self {
            genesis_supply: state.supply(),
            config,
            state,
            users,
            actors,
            by_address,
            dishonest: BTreeSet::new(),
            posted: 0,
            last_post_height: 0,
            r,
        }
    }

    fn violation(&mut self, what: String) {
        self.r.invariant_violations += 1;
        if self.r.first_violation.is_none() {
            self.r.first_violation = Some(what);
        }
    }

    /// One block: every actor's transactions, then the ledger. False when the run is over.
    fn step(&mut self) -> bool {
        let h = self.state.height().get() + 1;
        let mut txs = Vec::new();
        let mut nonces: BTreeMap<Address, u64> = BTreeMap::new();
        let mut sign = |state: &State, key: &PrivateKey, action: Action| {
            let a = Address::from(&key.public_key());
            let n = nonces
                .entry(a)
                .or_insert_with(|| state.account(&a).nonce.get());
            let tx = Transaction {
                chain_id: CHAIN.into(),
                signer: a,
                nonce: Nonce::new(*n),
                fee: Amount::new(1),
                action,
            }
            .sign(key);
            *n += 1;
            tx
        };
        // Users.
        let model = self.state.model(&model_hash()).expect("genesis model");
        let price = model.base_price.checked_mul(2).expect("prices stay small");
        for _ in 0..self.config.jobs_per_block {
            if self.posted >= self.config.jobs {
                break;
            }
            let i = self.posted;
            let units = 1 + draw(self.config.seed, &[b"units", &i.to_be_bytes()], MAX_UNITS);
            let user = &self.users[(i % USERS as u64) as usize];
            txs.push(sign(
                &self.state,
                user,
                Action::PostJob {
                    model: model_hash(),
                    input_hash: sha256(&[
                        b"input",
                        &self.config.seed.to_be_bytes(),
                        &i.to_be_bytes(),
                    ]),
                    input_size: 100,
                    max_units: units as u32,
                    max_unit_price: price,
                    region: String::new(),
                },
            ));
            self.posted += 1;
            self.last_post_height = h;
        }
        // Providers and verifiers.
        let jobs: Vec<Job> = self.state.jobs().cloned().collect();
        for actor in self.actors.iter_mut() {
            if h >= actor.offline_at {
                continue;
            }
            for job in &jobs {
                if job.provider == Some(actor.address)
                    && let Some(action) = own_job(
                        &self.config,
                        &self.state,
                        actor,
                        job,
                        h,
                        &mut self.dishonest,
                    )
                {
                    txs.push(sign(&self.state, &actor.key, action));
                }
                if let Some(check) = job
                    .checks
                    .iter()
                    .find(|c| c.verifier == actor.address && c.pending())
                    && let Some(action) =
                        check_step(actor, job, check, h, self.config.seed, &mut self.dishonest)
                {
                    txs.push(sign(&self.state, &actor.key, action));
                }
            }
        }

        let height = Height::new(h);
        let seed = sha256(&[
            b"block-seed",
            &self.config.seed.to_be_bytes(),
            &h.to_be_bytes(),
        ]);
        // The sim signed every transaction itself just now: like a node after admission, it
        // does not verify the signatures again (receipt signatures are still checked).
        let outcome = match self.state.apply_block_known(height, &seed, &txs, &|_| true) {
            Ok(o) => o,
            Err(e) => {
                self.violation(format!("block {h}: the ledger refused the block: {e}"));
                return false;
            }
        };
        self.r.blocks = h;
        for event in &outcome.events {
            self.observe(event, h);
        }
        if let Err(e) = self.state.check_invariant() {
            self.violation(format!("block {h}: {e}"));
        }
        if self.state.supply().checked_add(self.r.burned) != Some(self.genesis_supply) {
            self.violation(format!(
                "block {h}: supply {} + burned {} != genesis supply {}",
                self.state.supply(),
                self.r.burned,
                self.genesis_supply
            ));
        }
        let posting = self.posted < self.config.jobs;
        let busy = self.state.jobs().next().is_some();
        posting || (busy && h < self.last_post_height + DRAIN_BLOCKS)
    }

    fn observe(&mut self, event: &Event, h: u64) {
        match event {
            Event::JobPosted { .. } => self.r.jobs_posted += 1,
            Event::JobCommitted { job } => {
                let Some(j) = self.state.job(job) else { return };
                self.r.job_units += u64::from(j.max_units);
                if let Some(i) = j.provider.and_then(|p| self.by_address.get(&p)) {
                    self.actors[*i].jobs_committed += 1;
                }
            }
            Event::CheckCommitted { job, verifier } => {
                let (Some(j), Some(&i)) = (self.state.job(job), self.by_address.get(verifier))
                else {
                    return;
                };
                if matches!(self.actors[i].role, Role::LazyCopier | Role::LazyGuesser) {
                    return; // no re-run behind it
                }
                self.r.verification_units += u64::from(j.max_units);
                self.actors[i].checks_done += 1;
            }
            Event::CheckAssigned { dispute, .. } => {
                if *dispute {
                    self.r.dispute_checks += 1;
                } else {
                    self.r.verifications += 1;
                }
            }
            Event::DisputeOpened { .. } => self.r.disputes += 1,
            Event::DisputeResolved {
                outcome, burned, ..
            } => {
                self.r.burned = self
                    .r
                    .burned
                    .checked_add(*burned)
                    .expect("bounded by supply");
                match outcome.as_str() {
                    "provider_wrong" => self.r.disputes_provider_wrong += 1,
                    "provider_right" => self.r.disputes_provider_right += 1,
                    _ => self.r.disputes_undecided += 1,
                }
            }
            Event::Slashed { who, job, amount } => {
                self.r.slashes += 1;
                if !self.dishonest.contains(&(*who, *job)) {
                    self.r.honest_slashed += 1;
                    self.violation(format!(
                        "block {h}: honest {who} slashed {amount} over job {job}"
                    ));
                }
                if let Some(&i) = self.by_address.get(who) {
                    let a = &mut self.actors[i];
                    a.slashed = a.slashed.checked_add(*amount).expect("bounded");
                    a.first_slash.get_or_insert(h);
                }
            }
            Event::ProviderPenalised {
                provider: who,
                amount,
                ..
            }
            | Event::CheckMissed {
                verifier: who,
                amount,
                ..
            } => {
                if let Some(&i) = self.by_address.get(who) {
                    let a = &mut self.actors[i];
                    a.penalties = a.penalties.checked_add(*amount).expect("bounded");
                }
            }
            Event::JobSettled { job, .. } => {
                self.r.jobs_settled += 1;
                if let Some(i) = job.provider.and_then(|p| self.by_address.get(&p)) {
                    self.actors[*i].settled.insert(job.id);
                }
            }
            Event::JobRefunded { .. } => self.r.jobs_refunded += 1,
            _ => {}
        }
    }

    fn report(mut self) -> Report {
        let mut latencies = Vec::new();
        for a in &self.actors {
            let account = self.state.account(&a.address);
            let unbonding: u128 = account.unbonding.iter().map(|u| u.amount.get()).sum();
            let now = account.balance.get() + account.stake.get() + unbonding;
            let forfeited = Amount::new(
                a.cheated_jobs
                    .iter()
                    .filter(|(j, _)| !a.settled.contains(j))
                    .map(|(_, e)| e.get())
                    .sum(),
            );
            let cost = forfeited.get() + a.slashed.get() + a.penalties.get();
            let cheater = a.role == Role::Cheater;
            let caught = cheater && a.slashed > Amount::ZERO;
            let profitable = cheater && a.saved_cost.get() > cost;
            let detection_latency = match (cheater, a.first_cheat, a.first_slash) {
                (true, Some(c), Some(s)) if s >= c => Some(s - c),
                _ => None,
            };
            latencies.extend(detection_latency);
            self.r.cheaters_caught += u64::from(caught);
            self.r.cheaters_profitable += u64::from(profitable);
            self.r.providers.push(ProviderReport {
                address: a.address,
                role: a.role,
                jobs_committed: a.jobs_committed,
                jobs_cheated: a.jobs_cheated,
                checks_done: a.checks_done,
                earnings: now as i128 - a.initial as i128,
                slashed: a.slashed,
                penalties: a.penalties,
                saved_cost: a.saved_cost,
                forfeited,
                caught,
                profitable,
                detection_latency,
                reputation: self.state.provider(&a.address).map_or(0, |p| p.reputation),
            });
        }
        self.r.mean_detection_latency = mean(&latencies);
        self.r.verification_overhead = if self.r.job_units == 0 {
            1.0
        } else {
            (self.r.job_units + self.r.verification_units) as f64 / self.r.job_units as f64
        };
        self.r
    }
}

fn model_hash() -> Digest {
    sha256(&[b"plexus-sim-chat-model"])
}

fn salt(job: &JobId, who: &Address, attempts: u32) -> Digest {
    sha256(&[
        b"salt",
        job.as_bytes(),
        who.as_bytes(),
        &attempts.to_be_bytes(),
    ])
}

/// The provider's next step on its own job, if any.
fn own_job(
    config: &Config,
    state: &State,
    actor: &mut Actor,
    job: &Job,
    h: u64,
    dishonest: &mut BTreeSet<(Address, JobId)>,
) -> Option<Action> {
    let key = (job.id, job.attempts);
    match job.phase {
        Phase::Assigned => {
            let (ready, output, _) = *actor.work.entry(key).or_insert_with(|| {
                let cheat = actor.role == Role::Cheater
                    && draw(config.seed, &[b"cheat", job.id.as_bytes()], 10_000)
                        < u64::from(config.cheat_rate_bps);
                if cheat {
                    (h, sha256(&[b"wrong", job.id.as_bytes()]), true)
                } else {
                    (
                        h + work_blocks(job.max_units),
                        honest_output(&job.id),
                        false,
                    )
                }
            });
            (ready <= h).then(|| Action::CommitResult {
                job: job.id,
                commitment: commitment(
                    &job.id,
                    &output,
                    &salt(&job.id, &actor.address, job.attempts),
                ),
            })
        }
        Phase::Committed => {
            if job
                .checks
                .iter()
                .any(|c| c.commitment.is_none() && c.pending())
            {
                return None; // awaiting the verifier's commitment
            }
            let (_, output, cheated) = *actor.work.get(&key)?;
            let units = job.max_units;
            if cheated && !actor.cheated_jobs.contains_key(&job.id) {
                let price = job.unit_price.get() * u128::from(units);
                let fee = price * u128::from(state.params().protocol_fee_bps) / 10_000;
                actor.cheated_jobs.insert(job.id, Amount::new(price - fee));
                actor.saved_cost = Amount::new(
                    actor.saved_cost.get() + price * u128::from(config.cost_bps) / 10_000,
                );
                actor.jobs_cheated += 1;
                actor.first_cheat.get_or_insert(job.committed_at.get());
                dishonest.insert((actor.address, job.id));
            }
            let receipt = Receipt {
                chain_id: CHAIN.into(),
                job: job.id,
                model: job.model,
                input_hash: job.input_hash,
                output_hash: output,
                output_size: 32,
                units,
                unit_price: job.unit_price,
                provider: actor.address,
            };
            Some(Action::RevealResult {
                job: job.id,
                output_hash: output,
                output_size: 32,
                salt: salt(&job.id, &actor.address, job.attempts),
                units,
                receipt_signature: receipt.sign(&actor.key),
            })
        }
        Phase::Queued | Phase::Revealed => {
            actor.work.remove(&key);
            None
        }
    }
}

/// A verifier's next step on its pending check of `job`, if any.
fn check_step(
    actor: &mut Actor,
    job: &Job,
    check: &plexus_ledger::Check,
    h: u64,
    seed: u64,
    dishonest: &mut BTreeSet<(Address, JobId)>,
) -> Option<Action> {
    let me = actor.address;
    let vsalt = sha256(&[b"check-salt", job.id.as_bytes(), me.as_bytes()]);
    let guess = sha256(&[b"guess", &seed.to_be_bytes(), job.id.as_bytes()]);
    match (check.commitment, actor.role) {
        (None, Role::LazyCopier) => {
            dishonest.insert((me, job.id));
            Some(Action::CommitCheck {
                job: job.id,
                commitment: job.commitment?,
            })
        }
        (None, Role::LazyGuesser) => {
            dishonest.insert((me, job.id));
            Some(Action::CommitCheck {
                job: job.id,
                commitment: check_commitment(&job.id, &me, &guess, &vsalt),
            })
        }
        (None, _) => {
            let ready = *actor
                .checks
                .entry(job.id)
                .or_insert(h + work_blocks(job.max_units));
            (ready <= h).then(|| {
                actor.checks.remove(&job.id);
                Action::CommitCheck {
                    job: job.id,
                    commitment: check_commitment(&job.id, &me, &honest_output(&job.id), &vsalt),
                }
            })
        }
        // A copier cannot open the provider's commitment as its own: it lets the deadline pass.
        (Some(_), Role::LazyCopier) => None,
        (Some(_), role) if job.phase == Phase::Revealed => {
            let output = if role == Role::LazyGuesser {
                guess
            } else {
                honest_output(&job.id)
            };
            Some(Action::RevealCheck {
                job: job.id,
                output_hash: output,
                salt: vsalt,
                agrees: job.output_hash == Some(output),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
