//! The job market: model registry, provider registry, jobs with escrow, assignment,
//! commit-reveal, deadlines, settlement and pricing. The rules are in the crate docs; this
//! file keeps the data and the end-of-block processing.

use crate::encode::Encoder;
use crate::state::State;
use crate::{LedgerError, TxError};
use plexus_types::{
    Address, Amount, Digest, Height, JobId, ModelKind, Receipt, Signature, WorkUnit, sha256,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Reputation is in basis points: 10000 is a clean record.
pub const MAX_REPUTATION: u32 = 10_000;
/// Reputation never falls below this, so a provider that recovers can earn its way back.
pub const MIN_REPUTATION: u32 = 100;
/// Reputation regained per settled job.
pub const REPUTATION_GAIN: u32 = 100;
/// Most jobs one provider may declare it can hold at once.
pub const MAX_PROVIDER_CAPACITY: u32 = 1024;

/// Slowest speed a model may declare: 1000 blocks per unit (so `max_units` times it fits u64).
pub const MAX_BLOCKS_PER_1000_UNITS: u64 = 1_000_000;

const ASSIGN_NAMESPACE: &[u8] = b"_PLEXUS_ASSIGN_V1";
const SELECT_NAMESPACE: &[u8] = b"_PLEXUS_SELECT_V1";
const VERIFIER_NAMESPACE: &[u8] = b"_PLEXUS_VERIFIER_V1";

/// A registered model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Model {
    #[serde(with = "plexus_types::hex_digest")]
    pub hash: Digest,
    pub name: String,
    pub kind: ModelKind,
    pub unit: WorkUnit,
    /// The base price never falls below this.
    pub min_price: Amount,
    /// Blocks the slowest acceptable provider needs per 1000 units: a job's commit deadline
    /// is `commit_timeout + max_units * blocks_per_1000_units / 1000` (rounded down) blocks
    /// after its assignment.
    pub blocks_per_1000_units: u64,
    /// The current price per unit of work; moves every block with utilization.
    pub base_price: Amount,
    /// Jobs assigned, not yet committed (being computed).
    pub active_jobs: u32,
    /// Jobs waiting for a provider.
    pub queued_jobs: u32,
}

/// A registered provider. Its stake is its account's stake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Provider {
    #[serde(serialize_with = "hex_digests")]
    pub models: Vec<Digest>,
    pub capacity: u32,
    pub region: String,
    pub price_floor: Amount,
    pub endpoint: String,
    pub paused: bool,
    /// Basis points, [`MIN_REPUTATION`]..=[`MAX_REPUTATION`].
    pub reputation: u32,
    /// Jobs assigned, not yet committed: the work in progress that counts against capacity.
    pub active_jobs: u32,
    /// Jobs committed (awaiting reveal) or revealed (awaiting settlement).
    pub unsettled_jobs: u32,
}

fn hex_digests<S: serde::Serializer>(v: &[Digest], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(plexus_types::digest_hex))
}

fn hex_digest_opt<S: serde::Serializer>(v: &Option<Digest>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_some(&plexus_types::digest_hex(d)),
        None => s.serialize_none(),
    }
}

fn hex_signature_opt<S: serde::Serializer>(v: &Option<Signature>, s: S) -> Result<S::Ok, S::Error> {
    use commonware_codec::Encode;
    match v {
        Some(sig) => s.serialize_some(&hex::encode(sig.encode())),
        None => s.serialize_none(),
    }
}

/// Where a job is in its life. Settled and refunded jobs leave the state (the node keeps
/// their final record from [`Event`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for a provider with capacity.
    Queued,
    /// Offered to `provider`, which must commit by `deadline`.
    Assigned,
    /// Committed; the provider must reveal by `deadline`.
    Committed,
    /// Revealed; settles automatically at `settle_at`.
    Revealed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Assigned => "assigned",
            Phase::Committed => "committed",
            Phase::Revealed => "revealed",
        }
    }
    fn tag(self) -> u8 {
        match self {
            Phase::Queued => 0,
            Phase::Assigned => 1,
            Phase::Committed => 2,
            Phase::Revealed => 3,
        }
    }
}

/// A verifier's re-run of a job: a spot check, or one vote of a dispute's quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub verifier: Address,
    /// Drawn to decide a dispute (rather than as the spot check).
    pub dispute: bool,
    /// Commit deadline until the verifier commits, then its reveal deadline.
    pub deadline: Height,
    #[serde(serialize_with = "hex_digest_opt")]
    pub commitment: Option<Digest>,
    #[serde(serialize_with = "hex_digest_opt")]
    pub output_hash: Option<Digest>,
    /// The verdict: whether the verifier's result agrees with the provider's.
    pub agrees: Option<bool>,
    /// The verifier missed a deadline (and was penalised); its check no longer counts.
    pub missed: bool,
}

impl Check {
    fn new(verifier: Address, dispute: bool, deadline: Height) -> Self {
        Self {
            verifier,
            dispute,
            deadline,
            commitment: None,
            output_hash: None,
            agrees: None,
            missed: false,
        }
    }

    /// Still owes a commit or a reveal.
    pub fn pending(&self) -> bool {
        !self.missed && self.agrees.is_none()
    }
}

/// A job in the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub owner: Address,
    #[serde(with = "plexus_types::hex_digest")]
    pub model: Digest,
    #[serde(with = "plexus_types::hex_digest")]
    pub input_hash: Digest,
    pub input_size: u32,
    pub max_units: u32,
    pub max_unit_price: Amount,
    pub region: String,
    /// Locked at post: `max_units * max_unit_price`.
    pub escrow: Amount,
    pub posted_at: Height,
    /// Providers this job has been assigned to so far (each missed its deadline, except the
    /// current one).
    pub attempts: u32,
    pub tried: Vec<Address>,
    pub phase: Phase,
    /// Position in the queue while queued.
    pub queue_seq: u64,
    pub provider: Option<Address>,
    /// Fixed at assignment: max(base price, provider floor).
    pub unit_price: Amount,
    pub assigned_at: Height,
    /// Commit deadline (assigned), reveal deadline (committed) or queue expiry (queued).
    pub deadline: Height,
    #[serde(serialize_with = "hex_digest_opt")]
    pub commitment: Option<Digest>,
    pub committed_at: Height,
    #[serde(serialize_with = "hex_digest_opt")]
    pub output_hash: Option<Digest>,
    pub output_size: u32,
    #[serde(serialize_with = "hex_digest_opt")]
    pub salt: Option<Digest>,
    pub units: u32,
    #[serde(serialize_with = "hex_signature_opt")]
    pub receipt_signature: Option<Signature>,
    pub revealed_at: Height,
    pub settle_at: Height,
    /// The spot check, if the job was drawn for one, then a dispute's quorum, if any.
    pub checks: Vec<Check>,
    /// A verifier disagreed: the quorum's checks decide.
    pub disputed: bool,
}

impl Job {
    /// The receipt this job's provider signs (or signed) at reveal, given its result.
    pub fn receipt(
        &self,
        chain_id: &str,
        provider: Address,
        output_hash: Digest,
        output_size: u32,
        units: u32,
    ) -> Receipt {
        Receipt {
            chain_id: chain_id.to_string(),
            job: self.id,
            model: self.model,
            input_hash: self.input_hash,
            output_hash,
            output_size,
            units,
            unit_price: self.unit_price,
            provider,
        }
    }

    /// `units * unit_price`: what the poster pays once revealed.
    pub fn price(&self) -> Option<Amount> {
        self.unit_price.checked_mul(u128::from(self.units))
    }
}

/// Something the block did besides the transactions' direct effects, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    JobPosted {
        job: JobId,
    },
    JobAssigned {
        job: JobId,
        provider: Address,
        unit_price: Amount,
    },
    JobCommitted {
        job: JobId,
    },
    JobRevealed {
        job: JobId,
    },
    /// A provider missed a deadline: `amount` left its stake for the treasury.
    ProviderPenalised {
        provider: Address,
        job: JobId,
        amount: Amount,
    },
    /// Escrow paid out: `payment - fee` to the provider, `fee` to the treasury, `refund` back
    /// to the owner. The job has left the state; this is its final record.
    JobSettled {
        job: Box<Job>,
        payment: Amount,
        fee: Amount,
        refund: Amount,
    },
    /// The whole escrow went back to the owner.
    JobRefunded {
        job: Box<Job>,
        amount: Amount,
        reason: String,
    },
    /// `verifier` must re-run the job: a spot check, or a vote in a dispute.
    CheckAssigned {
        job: JobId,
        verifier: Address,
        dispute: bool,
    },
    CheckCommitted {
        job: JobId,
        verifier: Address,
    },
    CheckRevealed {
        job: JobId,
        verifier: Address,
        agrees: bool,
    },
    /// A verifier missed its deadline: `amount` left its stake for the treasury.
    CheckMissed {
        job: JobId,
        verifier: Address,
        amount: Amount,
    },
    /// The spot check disagreed with the provider; `verifiers` will decide.
    DisputeOpened {
        job: JobId,
        verifiers: Vec<Address>,
    },
    /// `outcome` is `provider_wrong`, `provider_right` or `undecided` (nobody could vote).
    DisputeResolved {
        job: JobId,
        outcome: String,
        slashed: Amount,
        rewarded: Amount,
        burned: Amount,
    },
    /// `amount` left `who`'s stake: it lost a dispute.
    Slashed {
        who: Address,
        job: JobId,
        amount: Amount,
    },
    /// A verifier on the right side was paid for its re-run (from the treasury) or rewarded
    /// from a slash; a provider proven right is rewarded from the slash too.
    Rewarded {
        who: Address,
        job: JobId,
        amount: Amount,
        reason: String,
    },
}

/// Everything the job market keeps, apart from account balances and stakes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Market {
    pub(crate) models: BTreeMap<Digest, Model>,
    pub(crate) providers: BTreeMap<Address, Provider>,
    pub(crate) jobs: BTreeMap<JobId, Job>,
    /// Queued jobs in arrival order.
    pub(crate) queue: BTreeMap<u64, JobId>,
    pub(crate) next_seq: u64,
    /// (deadline, job) for every job that is queued, assigned or committed.
    pub(crate) deadlines: BTreeSet<(Height, JobId)>,
    /// (settle_at, job) for every revealed job.
    pub(crate) settlements: BTreeSet<(Height, JobId)>,
    /// Sum of the escrow of every job in the state.
    pub(crate) escrow: Amount,
    /// (deadline, job) for checks; an entry may be stale (its check done or moved on), so
    /// expiry re-reads the checks.
    pub(crate) check_deadlines: BTreeSet<(Height, JobId)>,
    /// Jobs committed in the current block (drawn for spot checks at its end).
    pub(crate) committed_now: Vec<JobId>,
    /// Jobs whose checks moved in the current block (resolved at its end).
    pub(crate) touched: BTreeSet<JobId>,
}

impl Market {
    pub(crate) fn is_empty(&self) -> bool {
        self.models.is_empty() && self.providers.is_empty() && self.jobs.is_empty()
    }

    pub(crate) fn encode(&self, enc: &mut Encoder) {
        enc.amount(self.escrow);
        enc.u64(self.next_seq);
        enc.count(self.models.len());
        for model in self.models.values() {
            enc.digest(&model.hash);
            enc.bytes(model.name.as_bytes());
            enc.u8(model.kind.tag());
            enc.u8(model.unit.tag());
            enc.amount(model.min_price);
            enc.u64(model.blocks_per_1000_units);
            enc.amount(model.base_price);
            enc.u32(model.active_jobs);
            enc.u32(model.queued_jobs);
        }
        enc.count(self.providers.len());
        for (address, p) in &self.providers {
            enc.address(address);
            enc.count(p.models.len());
            for m in &p.models {
                enc.digest(m);
            }
            enc.u32(p.capacity);
            enc.bytes(p.region.as_bytes());
            enc.amount(p.price_floor);
            enc.bytes(p.endpoint.as_bytes());
            enc.u8(u8::from(p.paused));
            enc.u32(p.reputation);
            enc.u32(p.active_jobs);
            enc.u32(p.unsettled_jobs);
        }
        enc.count(self.jobs.len());
        for job in self.jobs.values() {
            use commonware_codec::Encode;
            enc.bytes(job.id.as_bytes());
            enc.address(&job.owner);
            enc.digest(&job.model);
            enc.digest(&job.input_hash);
            enc.u32(job.input_size);
            enc.u32(job.max_units);
            enc.amount(job.max_unit_price);
            enc.bytes(job.region.as_bytes());
            enc.amount(job.escrow);
            enc.u64(job.posted_at.get());
            enc.u32(job.attempts);
            enc.count(job.tried.len());
            for a in &job.tried {
                enc.address(a);
            }
            enc.u8(job.phase.tag());
            enc.u64(job.queue_seq);
            enc.optional(job.provider.as_ref().map(|a| &a.as_bytes()[..]));
            enc.amount(job.unit_price);
            enc.u64(job.assigned_at.get());
            enc.u64(job.deadline.get());
            enc.optional(job.commitment.as_ref().map(|d| d.as_ref()));
            enc.u64(job.committed_at.get());
            enc.optional(job.output_hash.as_ref().map(|d| d.as_ref()));
            enc.u32(job.output_size);
            enc.optional(job.salt.as_ref().map(|d| d.as_ref()));
            enc.u32(job.units);
            let sig = job.receipt_signature.as_ref().map(|s| s.encode());
            enc.optional(sig.as_deref());
            enc.u64(job.revealed_at.get());
            enc.u64(job.settle_at.get());
            enc.count(job.checks.len());
            for c in &job.checks {
                enc.address(&c.verifier);
                enc.u8(u8::from(c.dispute));
                enc.u64(c.deadline.get());
                enc.optional(c.commitment.as_ref().map(|d| d.as_ref()));
                enc.optional(c.output_hash.as_ref().map(|d| d.as_ref()));
                enc.u8(match c.agrees {
                    None => 0,
                    Some(false) => 1,
                    Some(true) => 2,
                });
                enc.u8(u8::from(c.missed));
            }
            enc.u8(u8::from(job.disputed));
        }
    }
}

/// A market write computed by validation, applied (infallibly) on commit.
pub(crate) enum MarketOp {
    None,
    RegisterModel(Model),
    RegisterProvider(Address, Provider),
    Pause(Address, bool),
    Deregister(Address),
    Post(Box<Job>),
    Commit(JobId, Digest, Height),
    Reveal(Box<Job>),
    /// Job, index of the check, commitment, reveal deadline.
    CommitCheck(JobId, usize, Digest, Height),
    /// Job, index of the check, output hash, verdict.
    RevealCheck(JobId, usize, Digest, bool),
}

/// How many times the expected gain a cheated job's slash is set to: `p * slash >= margin *
/// job_value`. At 1 cheating breaks even on expectation, and a cheater that escapes its
/// first few checks by luck ends ahead (`plexus sim --jobs-per-block 8`: 6 of 20 seeds);
/// at 2 it must escape twice as many checks in a row for the same gain (BENCHMARKS.md).
pub const FRAUD_SLASH_MARGIN: u128 = 2;

/// The fraud slash of a job whose escrow is `job_value` (`max_units * max_unit_price`, the
/// most its provider can be paid):
/// `max(fraud_slash, ceil(job_value * FRAUD_SLASH_MARGIN * 10000 / verify_bps))`, or
/// `fraud_slash` when `verify_bps` is 0 (no job is checked). A provider is assigned the job,
/// or drawn to verify it, only if its stake covers this, so a cheater caught with probability
/// `p = verify_bps / 10000` loses at least `p * slash >= 2 * job_value` on expectation.
/// `None` if it overflows.
pub fn job_fraud_slash(params: &crate::Params, job_value: Amount) -> Option<Amount> {
    if params.verify_bps == 0 {
        return Some(params.fraud_slash);
    }
    let bps = u128::from(params.verify_bps);
    let scale = 10_000 * FRAUD_SLASH_MARGIN;
    let floor = job_value.mul_div(scale, bps)?;
    // With job_value = q * bps + r, job_value * scale / bps = q * scale + r * scale / bps:
    // the division is exact when bps divides r * scale (r < bps <= 10000: no overflow).
    let exact = ((job_value.get() % bps) * scale).is_multiple_of(bps);
    let proportional = if exact {
        floor
    } else {
        floor.checked_add(Amount::new(1))?
    };
    Some(proportional.max(params.fraud_slash))
}

/// The candidate a point drawn from `draw` (its first 16 bytes, modulo the total weight)
/// falls on, walking `candidates` in order: each is chosen with probability proportional to
/// its weight. `None` when there is no weight at all or the total overflows.
fn weighted_pick<T>(candidates: Vec<(T, Amount)>, draw: &Digest) -> Option<T> {
    let total = Amount::checked_sum(candidates.iter().map(|(_, w)| *w))?;
    if total.is_zero() {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&draw.as_ref()[..16]);
    let mut point = u128::from_be_bytes(bytes) % total.get();
    for (candidate, weight) in candidates {
        if point < weight.get() {
            return Some(candidate);
        }
        point -= weight.get();
    }
    None
}

/// The largest escrow whose fraud slash `stake` covers (the biggest job such a provider can
/// be assigned or check): `stake * verify_bps / (10000 * FRAUD_SLASH_MARGIN)`, zero when
/// the stake is below the flat `fraud_slash`, `None` (no bound) when `verify_bps` is 0 and
/// it is not.
pub fn max_secured_escrow(params: &crate::Params, stake: Amount) -> Option<Amount> {
    if stake < params.fraud_slash {
        return Some(Amount::ZERO);
    }
    if params.verify_bps == 0 {
        return None;
    }
    stake.mul_div(u128::from(params.verify_bps), 10_000 * FRAUD_SLASH_MARGIN)
}

/// `h + delta` blocks, `None` on overflow.
fn height_after(h: Height, delta: u64) -> Option<Height> {
    h.get().checked_add(delta).map(Height::new)
}

fn checked_height(h: Height, delta: u64) -> Result<Height, TxError> {
    height_after(h, delta).ok_or(TxError::HeightOverflow)
}

impl State {
    /// A registered model.
    pub fn model(&self, hash: &Digest) -> Option<&Model> {
        self.market.models.get(hash)
    }

    /// Every registered model, in hash order.
    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.market.models.values()
    }

    pub fn provider(&self, address: &Address) -> Option<&Provider> {
        self.market.providers.get(address)
    }

    /// Every registered provider, in address order.
    pub fn providers(&self) -> impl Iterator<Item = (&Address, &Provider)> {
        self.market.providers.iter()
    }

    /// A job still in the state (not yet settled or refunded).
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.market.jobs.get(id)
    }

    /// Every job in the state, in id order.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.market.jobs.values()
    }

    /// Tokens locked in escrow by jobs in the state.
    pub fn escrow(&self) -> Amount {
        self.market.escrow
    }

    /// Capacity (jobs at once) of providers that can take jobs for `model` now.
    pub fn model_capacity(&self, model: &Digest) -> u64 {
        self.market
            .providers
            .iter()
            .filter(|(a, p)| {
                !p.paused
                    && p.models.contains(model)
                    && self.account_ref(a).stake >= self.params.min_provider_stake
            })
            .map(|(_, p)| u64::from(p.capacity))
            .sum()
    }

    // ----- validation of market actions (no writes) -----

    pub(crate) fn check_register_model(
        &self,
        hash: Digest,
        name: &str,
        kind: ModelKind,
        unit: WorkUnit,
        min_price: Amount,
        blocks_per_1000_units: u64,
    ) -> Result<MarketOp, TxError> {
        if self.market.models.contains_key(&hash) {
            return Err(TxError::ModelExists(plexus_types::digest_hex(&hash)));
        }
        if name.trim().is_empty() {
            return Err(TxError::InvalidModel("model name is empty".into()));
        }
        if min_price.is_zero() {
            return Err(TxError::InvalidModel(
                "min_price must be at least 1 (a zero price could never rise)".into(),
            ));
        }
        if blocks_per_1000_units > MAX_BLOCKS_PER_1000_UNITS {
            return Err(TxError::InvalidModel(format!(
                "blocks_per_1000_units is at most {MAX_BLOCKS_PER_1000_UNITS} (1000 blocks per unit)"
            )));
        }
        Ok(MarketOp::RegisterModel(Model {
            hash,
            name: name.to_string(),
            kind,
            unit,
            min_price,
            blocks_per_1000_units,
            base_price: min_price,
            active_jobs: 0,
            queued_jobs: 0,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_register_provider(
        &self,
        signer: &Address,
        stake: Amount,
        models: &[Digest],
        capacity: u32,
        region: &str,
        price_floor: Amount,
        endpoint: &str,
    ) -> Result<MarketOp, TxError> {
        if stake < self.params.min_provider_stake {
            return Err(TxError::ProviderStakeTooLow {
                stake,
                min: self.params.min_provider_stake,
            });
        }
        if models.is_empty() {
            return Err(TxError::InvalidProvider(
                "declare at least one model".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for m in models {
            if !seen.insert(*m) {
                return Err(TxError::InvalidProvider(format!(
                    "model {} listed twice",
                    plexus_types::digest_hex(m)
                )));
            }
            if !self.market.models.contains_key(m) {
                return Err(TxError::UnknownModel(plexus_types::digest_hex(m)));
            }
        }
        if capacity == 0 || capacity > MAX_PROVIDER_CAPACITY {
            return Err(TxError::InvalidProvider(format!(
                "capacity must be between 1 and {MAX_PROVIDER_CAPACITY}, got {capacity}"
            )));
        }
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(TxError::InvalidProvider(format!(
                "endpoint must be an http:// or https:// URL, got {endpoint:?}"
            )));
        }
        let previous = self.market.providers.get(signer);
        Ok(MarketOp::RegisterProvider(
            *signer,
            Provider {
                models: models.to_vec(),
                capacity,
                region: region.to_string(),
                price_floor,
                endpoint: endpoint.to_string(),
                paused: previous.is_some_and(|p| p.paused),
                reputation: previous.map_or(MAX_REPUTATION, |p| p.reputation),
                active_jobs: previous.map_or(0, |p| p.active_jobs),
                unsettled_jobs: previous.map_or(0, |p| p.unsettled_jobs),
            },
        ))
    }

    pub(crate) fn check_pause(&self, signer: &Address, paused: bool) -> Result<MarketOp, TxError> {
        if !self.market.providers.contains_key(signer) {
            return Err(TxError::NotProvider);
        }
        Ok(MarketOp::Pause(*signer, paused))
    }

    pub(crate) fn check_deregister(&self, signer: &Address) -> Result<MarketOp, TxError> {
        let p = self
            .market
            .providers
            .get(signer)
            .ok_or(TxError::NotProvider)?;
        if p.active_jobs > 0 || p.unsettled_jobs > 0 {
            return Err(TxError::ProviderBusy {
                active: p.active_jobs,
                unsettled: p.unsettled_jobs,
            });
        }
        Ok(MarketOp::Deregister(*signer))
    }

    /// A registered provider keeps at least the minimum stake bonded until it deregisters:
    /// its stake is what a missed deadline is taken from.
    pub(crate) fn check_unbond_allowed(
        &self,
        signer: &Address,
        stake_after: Amount,
    ) -> Result<(), TxError> {
        if self.market.providers.contains_key(signer)
            && stake_after < self.params.min_provider_stake
        {
            return Err(TxError::ProviderStakeLocked {
                min: self.params.min_provider_stake,
            });
        }
        // The stake that secured an open job (as its provider or a verifier) stays until the
        // job leaves: unbonding it would shrink the slash a fraud on that job risks.
        let mut backing = Amount::ZERO;
        let mut jobs = 0u32;
        for job in self.market.jobs.values() {
            let involved =
                job.provider == Some(*signer) || job.checks.iter().any(|c| c.verifier == *signer);
            if involved && let Some(slash) = job_fraud_slash(&self.params, job.escrow) {
                backing = backing.max(slash);
                jobs += 1;
            }
        }
        if stake_after < backing {
            return Err(TxError::StakeBacksJobs { min: backing, jobs });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_post(
        &self,
        id: JobId,
        owner: Address,
        height: Height,
        model: Digest,
        input_hash: Digest,
        input_size: u32,
        max_units: u32,
        max_unit_price: Amount,
        region: &str,
    ) -> Result<MarketOp, TxError> {
        let m = self
            .market
            .models
            .get(&model)
            .ok_or_else(|| TxError::UnknownModel(plexus_types::digest_hex(&model)))?;
        if input_size == 0 {
            return Err(TxError::InvalidJob("input is empty".into()));
        }
        if input_size > self.params.max_payload_size {
            return Err(TxError::PayloadTooLarge {
                size: input_size,
                max: self.params.max_payload_size,
            });
        }
        if max_units == 0 {
            return Err(TxError::InvalidJob("max_units must be at least 1".into()));
        }
        if max_unit_price < m.base_price {
            return Err(TxError::MaxPriceBelowBase {
                max: max_unit_price,
                base: m.base_price,
            });
        }
        if self.market.queue.len() >= self.params.max_queued_jobs as usize {
            return Err(TxError::QueueFull {
                max: self.params.max_queued_jobs,
            });
        }
        let escrow = max_unit_price
            .checked_mul(u128::from(max_units))
            .ok_or(TxError::Overflow)?;
        // Its fraud slash must be a number too, so that assignment and disputes can use it.
        job_fraud_slash(&self.params, escrow).ok_or(TxError::Overflow)?;
        Ok(MarketOp::Post(Box::new(Job {
            id,
            owner,
            model,
            input_hash,
            input_size,
            max_units,
            max_unit_price,
            region: region.to_string(),
            escrow,
            posted_at: height,
            attempts: 0,
            tried: Vec::new(),
            phase: Phase::Queued,
            queue_seq: 0,
            provider: None,
            unit_price: Amount::ZERO,
            assigned_at: Height::new(0),
            deadline: checked_height(height, self.params.queue_timeout)?,
            commitment: None,
            committed_at: Height::new(0),
            output_hash: None,
            output_size: 0,
            salt: None,
            units: 0,
            receipt_signature: None,
            revealed_at: Height::new(0),
            settle_at: Height::new(0),
            checks: Vec::new(),
            disputed: false,
        })))
    }

    fn assigned_job(&self, signer: &Address, id: &JobId, want: Phase) -> Result<&Job, TxError> {
        let job = self
            .market
            .jobs
            .get(id)
            .ok_or_else(|| TxError::UnknownJob(id.to_string()))?;
        if job.provider != Some(*signer) {
            return Err(TxError::NotAssigned(id.to_string()));
        }
        if job.phase != want {
            return Err(TxError::WrongPhase {
                phase: job.phase.as_str(),
                expected: want.as_str(),
            });
        }
        Ok(job)
    }

    pub(crate) fn check_commit(
        &self,
        signer: &Address,
        id: &JobId,
        commitment: Digest,
        height: Height,
    ) -> Result<MarketOp, TxError> {
        self.assigned_job(signer, id, Phase::Assigned)?;
        Ok(MarketOp::Commit(
            *id,
            commitment,
            checked_height(height, self.params.reveal_timeout)?,
        ))
    }

    /// Everything about a reveal except the receipt signature (checked last, with the
    /// transaction's, because it is expensive).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_reveal(
        &self,
        signer: &Address,
        id: &JobId,
        output_hash: Digest,
        output_size: u32,
        salt: Digest,
        units: u32,
        receipt_signature: &Signature,
        height: Height,
    ) -> Result<(MarketOp, Receipt), TxError> {
        let job = self.assigned_job(signer, id, Phase::Committed)?;
        if job.committed_at >= height {
            return Err(TxError::RevealTooEarly);
        }
        if job
            .checks
            .iter()
            .any(|c| c.commitment.is_none() && c.pending())
        {
            return Err(TxError::AwaitingVerifier(id.to_string()));
        }
        if job.commitment != Some(plexus_types::commitment(id, &output_hash, &salt)) {
            return Err(TxError::CommitmentMismatch);
        }
        if units == 0 || units > job.max_units {
            return Err(TxError::InvalidUnits {
                units,
                max: job.max_units,
            });
        }
        if output_size == 0 || output_size > self.params.max_payload_size {
            return Err(TxError::PayloadTooLarge {
                size: output_size,
                max: self.params.max_payload_size,
            });
        }
        let receipt = job.receipt(&self.chain_id, *signer, output_hash, output_size, units);
        let mut next = job.clone();
        next.phase = Phase::Revealed;
        next.output_hash = Some(output_hash);
        next.output_size = output_size;
        next.salt = Some(salt);
        next.units = units;
        next.receipt_signature = Some(receipt_signature.clone());
        next.revealed_at = height;
        next.settle_at = checked_height(height, self.params.challenge_window)?;
        // A committed spot check has `reveal_timeout` from now to compare and reveal.
        let check_deadline = checked_height(height, self.params.reveal_timeout)?;
        for c in next.checks.iter_mut().filter(|c| c.pending()) {
            c.deadline = c.deadline.min(check_deadline);
        }
        Ok((MarketOp::Reveal(Box::new(next)), receipt))
    }

    /// The signer's check of `id` that still owes a step, with its index.
    fn own_check(&self, signer: &Address, id: &JobId) -> Result<(&Job, usize), TxError> {
        let job = self
            .market
            .jobs
            .get(id)
            .ok_or_else(|| TxError::UnknownJob(id.to_string()))?;
        let index = job
            .checks
            .iter()
            .position(|c| c.verifier == *signer && c.pending())
            .ok_or_else(|| TxError::NotVerifier(id.to_string()))?;
        Ok((job, index))
    }

    pub(crate) fn check_commit_check(
        &self,
        signer: &Address,
        id: &JobId,
        commitment: Digest,
        height: Height,
    ) -> Result<MarketOp, TxError> {
        let (job, index) = self.own_check(signer, id)?;
        if job.checks[index].commitment.is_some() {
            return Err(TxError::WrongPhase {
                phase: "committed",
                expected: "awaiting the verifier's commitment",
            });
        }
        // The reveal is due `reveal_timeout` after the provider's (a later reveal by the
        // provider tightens it to `reveal_timeout` after that reveal).
        let from = if job.phase == Phase::Revealed {
            height
        } else {
            job.deadline.max(height)
        };
        Ok(MarketOp::CommitCheck(
            *id,
            index,
            commitment,
            checked_height(from, self.params.reveal_timeout)?,
        ))
    }

    pub(crate) fn check_reveal_check(
        &self,
        signer: &Address,
        id: &JobId,
        output_hash: Digest,
        salt: Digest,
        agrees: bool,
    ) -> Result<MarketOp, TxError> {
        let (job, index) = self.own_check(signer, id)?;
        let check = &job.checks[index];
        let Some(commitment) = check.commitment else {
            return Err(TxError::WrongPhase {
                phase: "awaiting the verifier's commitment",
                expected: "committed",
            });
        };
        if job.phase != Phase::Revealed {
            return Err(TxError::CheckTooEarly(id.to_string(), job.phase.as_str()));
        }
        if commitment != plexus_types::check_commitment(id, signer, &output_hash, &salt) {
            return Err(TxError::CommitmentMismatch);
        }
        let same = job.output_hash == Some(output_hash);
        if same && !agrees {
            return Err(TxError::InvalidVerdict(
                "the verifier's output is identical to the provider's, so they agree",
            ));
        }
        let exact = self
            .market
            .models
            .get(&job.model)
            .is_some_and(|m| m.kind == ModelKind::Chat);
        if exact && agrees && !same {
            return Err(TxError::InvalidVerdict(
                "chat results agree only when identical (exact mode): the output hashes differ",
            ));
        }
        Ok(MarketOp::RevealCheck(*id, index, output_hash, agrees))
    }

    // ----- writes -----

    pub(crate) fn apply_market_op(&mut self, op: MarketOp, events: &mut Vec<Event>) {
        let market = &mut self.market;
        match op {
            MarketOp::None => {}
            MarketOp::RegisterModel(model) => {
                market.models.insert(model.hash, model);
            }
            MarketOp::RegisterProvider(address, provider) => {
                market.providers.insert(address, provider);
            }
            MarketOp::Pause(address, paused) => {
                if let Some(p) = market.providers.get_mut(&address) {
                    p.paused = paused;
                }
            }
            MarketOp::Deregister(address) => {
                market.providers.remove(&address);
            }
            MarketOp::Post(mut job) => {
                // The escrow was taken from the owner's balance with the fee (its `cost`).
                market.escrow = market
                    .escrow
                    .checked_add(job.escrow)
                    .expect("escrow is bounded by the supply");
                job.queue_seq = market.next_seq;
                market.next_seq += 1;
                market.queue.insert(job.queue_seq, job.id);
                market.deadlines.insert((job.deadline, job.id));
                if let Some(m) = market.models.get_mut(&job.model) {
                    m.queued_jobs += 1;
                }
                events.push(Event::JobPosted { job: job.id });
                market.jobs.insert(job.id, *job);
            }
            MarketOp::Commit(id, commitment, deadline) => {
                if let Some(job) = market.jobs.get_mut(&id) {
                    market.deadlines.remove(&(job.deadline, id));
                    // The computation is done: its capacity slot frees up now.
                    if let Some(p) = job.provider.and_then(|a| market.providers.get_mut(&a)) {
                        p.active_jobs -= 1;
                        p.unsettled_jobs += 1;
                    }
                    if let Some(m) = market.models.get_mut(&job.model) {
                        m.active_jobs -= 1;
                    }
                    job.phase = Phase::Committed;
                    job.commitment = Some(commitment);
                    job.committed_at = self.height;
                    job.deadline = deadline;
                    market.deadlines.insert((deadline, id));
                    market.committed_now.push(id);
                    events.push(Event::JobCommitted { job: id });
                }
            }
            MarketOp::Reveal(next) => {
                let id = next.id;
                if let Some(job) = market.jobs.get_mut(&id) {
                    market.deadlines.remove(&(job.deadline, id));
                    market.settlements.insert((next.settle_at, id));
                    for c in next.checks.iter().filter(|c| c.pending()) {
                        market.check_deadlines.insert((c.deadline, id));
                    }
                    *job = *next;
                    events.push(Event::JobRevealed { job: id });
                }
            }
            MarketOp::CommitCheck(id, index, commitment, deadline) => {
                if let Some(c) = market
                    .jobs
                    .get_mut(&id)
                    .and_then(|j| j.checks.get_mut(index))
                {
                    c.commitment = Some(commitment);
                    c.deadline = deadline;
                    market.check_deadlines.insert((deadline, id));
                    events.push(Event::CheckCommitted {
                        job: id,
                        verifier: c.verifier,
                    });
                }
            }
            MarketOp::RevealCheck(id, index, output_hash, agrees) => {
                if let Some(c) = market
                    .jobs
                    .get_mut(&id)
                    .and_then(|j| j.checks.get_mut(index))
                {
                    c.output_hash = Some(output_hash);
                    c.agrees = Some(agrees);
                    market.touched.insert(id);
                    events.push(Event::CheckRevealed {
                        job: id,
                        verifier: c.verifier,
                        agrees,
                    });
                }
            }
        }
    }

    /// Credit `amount` to `address`'s balance, recording the account's pre-image in `undo`.
    fn credit(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        address: Address,
        amount: Amount,
    ) -> Result<(), LedgerError> {
        if amount.is_zero() {
            return Ok(());
        }
        undo.entry(address)
            .or_insert_with(|| self.accounts.get(&address).cloned());
        let account = self.accounts.entry(address).or_default();
        account.balance = account
            .balance
            .checked_add(amount)
            .ok_or(LedgerError::HoldingsOverflow)?;
        Ok(())
    }

    fn release_escrow(&mut self, amount: Amount) -> Result<(), LedgerError> {
        self.market.escrow = self
            .market
            .escrow
            .checked_sub(amount)
            .ok_or(LedgerError::HoldingsOverflow)?;
        Ok(())
    }

    /// `h + commit_timeout + max_units * blocks_per_1000_units / 1000`: when the work on
    /// `job` started now must be committed.
    fn work_deadline(&self, job: &Job) -> Result<Height, LedgerError> {
        let work_blocks = self.market.models.get(&job.model).map_or(0, |m| {
            u64::from(job.max_units) * m.blocks_per_1000_units / 1000
        });
        self.params
            .commit_timeout
            .checked_add(work_blocks)
            .and_then(|blocks| height_after(self.height, blocks))
            .ok_or(LedgerError::HeightOverflow)
    }

    /// Take up to `amount` from `who`'s stake (what there is, if less); returns what was taken.
    fn take_stake(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        who: Address,
        amount: Amount,
    ) -> Amount {
        undo.entry(who)
            .or_insert_with(|| self.accounts.get(&who).cloned());
        let account = self.accounts.entry(who).or_default();
        let taken = account.stake.min(amount);
        account.stake = Amount::new(account.stake.get() - taken.get());
        taken
    }

    /// Pay `amount` (or what the treasury holds, if less) from the treasury to `who`.
    fn pay_from_treasury(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        who: Address,
        amount: Amount,
    ) -> Result<Amount, LedgerError> {
        let paid = self.treasury.min(amount);
        self.treasury = Amount::new(self.treasury.get() - paid.get());
        self.credit(undo, who, paid)?;
        Ok(paid)
    }

    fn burn(&mut self, amount: Amount) -> Result<(), LedgerError> {
        self.supply = self
            .supply
            .checked_sub(amount)
            .ok_or(LedgerError::BurnExceedsSupply(amount))?;
        Ok(())
    }

    fn lower_reputation(&mut self, who: &Address, to: impl Fn(u32) -> u32) {
        if let Some(p) = self.market.providers.get_mut(who) {
            p.reputation = to(p.reputation).max(MIN_REPUTATION);
        }
    }

    /// `job`'s fraud slash ([`job_fraud_slash`] of its escrow). Checked when it was posted,
    /// and the parameters never change, so an overflow here is a ledger bug.
    fn job_slash(&self, job: &Job) -> Result<Amount, LedgerError> {
        job_fraud_slash(&self.params, job.escrow).ok_or(LedgerError::HoldingsOverflow)
    }

    /// The stake a provider needs to be assigned `job` or drawn to verify it: the minimum
    /// provider stake, and at least the job's fraud slash.
    fn stake_to_serve(&self, job: &Job) -> Result<Amount, LedgerError> {
        Ok(self.job_slash(job)?.max(self.params.min_provider_stake))
    }

    /// Per model, the largest stake among the providers that serve it, are unpaused and hold
    /// the minimum stake (those [`State::model_capacity`] counts); a model nobody serves is
    /// absent. A queued job whose fraud slash is above it can be taken by nobody.
    fn largest_stakes(&self) -> BTreeMap<Digest, Amount> {
        let mut largest: BTreeMap<Digest, Amount> = BTreeMap::new();
        for (a, p) in &self.market.providers {
            let stake = self.account_ref(a).stake;
            if p.paused || stake < self.params.min_provider_stake {
                continue;
            }
            for m in &p.models {
                let entry = largest.entry(*m).or_insert(stake);
                *entry = (*entry).max(stake);
            }
        }
        largest
    }

    /// Draw a verifier for `job` among providers serving its model, unpaused, holding
    /// `min_stake` (the minimum provider stake and the job's fraud slash), not in `exclude`,
    /// with probability proportional to `stake * reputation`.
    fn draw_verifier(
        &self,
        job: &Job,
        min_stake: Amount,
        exclude: &[Address],
        seed: &Digest,
        index: u32,
    ) -> Option<Address> {
        let candidates: Vec<(Address, Amount)> = self
            .market
            .providers
            .iter()
            .filter(|(a, p)| !p.paused && p.models.contains(&job.model) && !exclude.contains(a))
            .filter_map(|(a, p)| Some((*a, self.draw_weight(a, p, min_stake)?)))
            .collect();
        let draw = sha256(&[
            VERIFIER_NAMESPACE,
            seed.as_ref(),
            job.id.as_bytes(),
            &job.attempts.to_be_bytes(),
            &index.to_be_bytes(),
        ]);
        weighted_pick(candidates, &draw)
    }

    /// A provider's weight in the assignment and verifier draws: `stake * reputation /
    /// MAX_REPUTATION` (never above its stake, so a sum of weights stays within the supply),
    /// or `None` when its stake is below `min_stake` or the weight is zero.
    fn draw_weight(&self, address: &Address, p: &Provider, min_stake: Amount) -> Option<Amount> {
        let stake = self.account_ref(address).stake;
        if stake < min_stake {
            return None;
        }
        let weight = stake.mul_div(u128::from(p.reputation), u128::from(MAX_REPUTATION))?;
        (!weight.is_zero()).then_some(weight)
    }

    /// With probability `verify_bps / 10000`, from the block's seed, give the just-committed
    /// job a spot check by another provider; its provider's reveal waits for the verifier's
    /// commitment, so the reveal deadline moves past the verifier's commit deadline.
    fn maybe_spot_check(
        &mut self,
        events: &mut Vec<Event>,
        seed: &Digest,
        id: JobId,
    ) -> Result<(), LedgerError> {
        let Some(job) = self.market.jobs.get(&id) else {
            return Ok(());
        };
        if job.phase != Phase::Committed || !job.checks.is_empty() {
            return Ok(());
        }
        let draw = sha256(&[
            SELECT_NAMESPACE,
            seed.as_ref(),
            id.as_bytes(),
            &job.attempts.to_be_bytes(),
        ]);
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&draw.as_ref()[..8]);
        if u64::from_be_bytes(bytes) % 10_000 >= self.params.verify_bps {
            return Ok(());
        }
        let exclude: Vec<Address> = job.provider.into_iter().collect();
        let min_stake = self.stake_to_serve(job)?;
        let Some(verifier) = self.draw_verifier(job, min_stake, &exclude, seed, 0) else {
            return Ok(());
        };
        let commit_by = self.work_deadline(job)?;
        let reveal_by = height_after(commit_by, self.params.reveal_timeout)
            .ok_or(LedgerError::HeightOverflow)?;
        let job = self.market.jobs.get_mut(&id).expect("checked above");
        job.checks.push(Check::new(verifier, false, commit_by));
        if reveal_by > job.deadline {
            self.market.deadlines.remove(&(job.deadline, id));
            job.deadline = reveal_by;
            self.market.deadlines.insert((reveal_by, id));
        }
        self.market.check_deadlines.insert((commit_by, id));
        events.push(Event::CheckAssigned {
            job: id,
            verifier,
            dispute: false,
        });
        Ok(())
    }

    /// Checks of `id` past their deadline: the verifier is penalised like a provider that
    /// misses one, and its check stops counting.
    fn expire_checks(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        events: &mut Vec<Event>,
        id: JobId,
    ) -> Result<(), LedgerError> {
        let h = self.height;
        let Some(job) = self.market.jobs.get_mut(&id) else {
            return Ok(());
        };
        let mut late = Vec::new();
        for c in job.checks.iter_mut() {
            if c.pending() && c.deadline <= h {
                c.missed = true;
                late.push(c.verifier);
            }
        }
        if late.is_empty() {
            return Ok(());
        }
        for verifier in late {
            let amount = self.take_stake(undo, verifier, self.params.miss_penalty);
            self.treasury = self
                .treasury
                .checked_add(amount)
                .ok_or(LedgerError::HoldingsOverflow)?;
            self.lower_reputation(&verifier, |r| r / 2);
            events.push(Event::CheckMissed {
                job: id,
                verifier,
                amount,
            });
        }
        self.market.touched.insert(id);
        Ok(())
    }

    /// Move a revealed job on once no check is outstanding: open a dispute if a verifier
    /// disagreed, decide a finished dispute, or settle at `settle_at`.
    fn finish(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        events: &mut Vec<Event>,
        seed: &Digest,
        id: JobId,
    ) -> Result<(), LedgerError> {
        let Some(job) = self.market.jobs.get(&id) else {
            return Ok(());
        };
        if job.phase != Phase::Revealed || job.checks.iter().any(Check::pending) {
            return Ok(());
        }
        if job.disputed {
            let job = self.market.jobs.remove(&id).expect("checked above");
            return self.decide(undo, events, job);
        }
        if job.checks.iter().any(|c| c.agrees == Some(false)) {
            return self.open_dispute(undo, events, seed, id);
        }
        if job.settle_at > self.height {
            return Ok(()); // its settlement entry comes later
        }
        let job = self.market.jobs.remove(&id).expect("checked above");
        self.settle(undo, events, job)
    }

    /// Draw up to `dispute_verifiers` more verifiers (never the provider or a verifier
    /// already on the job). If nobody can vote, the dispute is undecided.
    fn open_dispute(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        events: &mut Vec<Event>,
        seed: &Digest,
        id: JobId,
    ) -> Result<(), LedgerError> {
        let job = self.market.jobs.get(&id).expect("caller checked");
        let mut exclude: Vec<Address> = job.provider.into_iter().collect();
        exclude.extend(job.checks.iter().map(|c| c.verifier));
        let min_stake = self.stake_to_serve(job)?;
        let mut drawn = Vec::new();
        for index in 1..=self.params.dispute_verifiers {
            match self.draw_verifier(job, min_stake, &exclude, seed, index) {
                Some(v) => {
                    exclude.push(v);
                    drawn.push(v);
                }
                None => break,
            }
        }
        let commit_by = self.work_deadline(job)?;
        let job = self.market.jobs.get_mut(&id).expect("caller checked");
        job.disputed = true;
        if drawn.is_empty() {
            let job = self.market.jobs.remove(&id).expect("caller checked");
            return self.decide(undo, events, job);
        }
        for v in &drawn {
            job.checks.push(Check::new(*v, true, commit_by));
            events.push(Event::CheckAssigned {
                job: id,
                verifier: *v,
                dispute: true,
            });
        }
        self.market.check_deadlines.insert((commit_by, id));
        events.push(Event::DisputeOpened {
            job: id,
            verifiers: drawn,
        });
        Ok(())
    }

    /// Decide a dispute whose votes are all in (the job has left `jobs`). The provider is
    /// wrong when more than half the quorum as drawn disagrees with it, right when more than
    /// half agrees, and otherwise the dispute is undecided; each party on the losing side
    /// (the provider, or every verifier whose verdict lost) is slashed the job's fraud slash,
    /// [`job_fraud_slash`] `= max(fraud_slash, ceil(escrow * 10000 / verify_bps))`, or its
    /// whole stake if less; `slash_reward_bps` of the total is shared by the winning side and
    /// the rest is burned. With no vote at all the dispute is undecided: nobody is slashed or
    /// paid and the owner gets its escrow back.
    fn decide(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        events: &mut Vec<Event>,
        job: Job,
    ) -> Result<(), LedgerError> {
        let provider = job.provider.ok_or(LedgerError::HoldingsOverflow)?;
        let votes: Vec<(Address, bool)> = job
            .checks
            .iter()
            .filter(|c| c.dispute)
            .filter_map(|c| c.agrees.map(|a| (c.verifier, a)))
            .collect();
        if votes.is_empty() {
            if let Some(p) = self.market.providers.get_mut(&provider) {
                p.unsettled_jobs -= 1;
            }
            events.push(Event::DisputeResolved {
                job: job.id,
                outcome: "undecided".into(),
                slashed: Amount::ZERO,
                rewarded: Amount::ZERO,
                burned: Amount::ZERO,
            });
            return self.refund(
                undo,
                events,
                job,
                "a verifier disputed the result and no quorum could decide",
            );
        }
        // A verdict needs a majority of the quorum as drawn, not only of those who voted:
        // otherwise one vote, with the rest missing, could decide alone.
        let drawn = job.checks.iter().filter(|c| c.dispute).count();
        let against = votes.iter().filter(|(_, agrees)| !agrees).count();
        let agree = votes.len() - against;
        if 2 * against <= drawn && 2 * agree <= drawn {
            if let Some(p) = self.market.providers.get_mut(&provider) {
                p.unsettled_jobs -= 1;
            }
            events.push(Event::DisputeResolved {
                job: job.id,
                outcome: "undecided".into(),
                slashed: Amount::ZERO,
                rewarded: Amount::ZERO,
                burned: Amount::ZERO,
            });
            return self.refund(
                undo,
                events,
                job,
                "a verifier disputed the result and no majority of the quorum decided",
            );
        }
        let provider_wrong = 2 * against > drawn;
        // Every verdict (spot check and quorum) on the losing side is slashed.
        let verdicts = job
            .checks
            .iter()
            .filter_map(|c| c.agrees.map(|a| (c.verifier, a)));
        let (mut losers, mut winners): (Vec<Address>, Vec<Address>) = (Vec::new(), Vec::new());
        for (verifier, agrees) in verdicts {
            if agrees == provider_wrong {
                losers.push(verifier);
            } else {
                winners.push(verifier);
            }
        }
        if provider_wrong {
            losers.push(provider);
        } else {
            winners.push(provider);
        }
        let slash = self.job_slash(&job)?;
        let mut slashed = Amount::ZERO;
        for who in &losers {
            let amount = self.take_stake(undo, *who, slash);
            slashed = slashed
                .checked_add(amount)
                .ok_or(LedgerError::HoldingsOverflow)?;
            self.lower_reputation(who, |_| MIN_REPUTATION);
            events.push(Event::Slashed {
                who: *who,
                job: job.id,
                amount,
            });
        }
        let pool = slashed
            .mul_div(u128::from(self.params.slash_reward_bps), 10_000)
            .ok_or(LedgerError::HoldingsOverflow)?;
        let share = Amount::new(pool.get() / winners.len() as u128);
        let mut rewarded = Amount::ZERO;
        for who in &winners {
            self.credit(undo, *who, share)?;
            rewarded = rewarded
                .checked_add(share)
                .ok_or(LedgerError::HoldingsOverflow)?;
            events.push(Event::Rewarded {
                who: *who,
                job: job.id,
                amount: share,
                reason: "share of a dispute's slash".into(),
            });
        }
        let burned = Amount::new(slashed.get() - rewarded.get());
        self.burn(burned)?;
        events.push(Event::DisputeResolved {
            job: job.id,
            outcome: if provider_wrong {
                "provider_wrong"
            } else {
                "provider_right"
            }
            .into(),
            slashed,
            rewarded,
            burned,
        });
        if provider_wrong {
            // Verifiers that were right are paid for their work as on agreement.
            let pay = self.check_pay(&job)?;
            for c in job.checks.iter().filter(|c| c.agrees == Some(false)) {
                let paid = self.pay_from_treasury(undo, c.verifier, pay)?;
                events.push(Event::Rewarded {
                    who: c.verifier,
                    job: job.id,
                    amount: paid,
                    reason: "verification".into(),
                });
            }
            if let Some(p) = self.market.providers.get_mut(&provider) {
                p.unsettled_jobs -= 1;
            }
            return self.refund(
                undo,
                events,
                job,
                "a dispute found the provider's result wrong",
            );
        }
        self.settle(undo, events, job)
    }

    /// What a verifier whose verdict stands is paid for its re-run: what the provider earns
    /// for the job (`price - fee`), from the treasury.
    fn check_pay(&self, job: &Job) -> Result<Amount, LedgerError> {
        let payment = job.price().ok_or(LedgerError::HoldingsOverflow)?;
        let fee = payment
            .mul_div(u128::from(self.params.protocol_fee_bps), 10_000)
            .ok_or(LedgerError::HoldingsOverflow)?;
        payment
            .checked_sub(fee)
            .ok_or(LedgerError::HoldingsOverflow)
    }

    /// Deadlines, settlements, assignment and pricing, after the block's transactions.
    pub(crate) fn end_block(
        &mut self,
        seed: &Digest,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        events: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let h = self.height;
        // 1. Deadlines that have passed.
        while let Some(&(deadline, id)) = self.market.deadlines.first() {
            if deadline > h {
                break;
            }
            self.market.deadlines.pop_first();
            let Some(job) = self.market.jobs.get(&id).cloned() else {
                continue;
            };
            match job.phase {
                Phase::Queued => {
                    self.market.queue.remove(&job.queue_seq);
                    if let Some(m) = self.market.models.get_mut(&job.model) {
                        m.queued_jobs -= 1;
                    }
                    let slash = self.job_slash(&job)?;
                    let covered = self
                        .largest_stakes()
                        .get(&job.model)
                        .is_some_and(|stake| *stake >= slash);
                    let reason = if covered {
                        "no provider could take the job before the queue timeout".to_string()
                    } else {
                        format!(
                            "no provider serving the model has the stake to cover the job's \
                             fraud slash of {slash} (max(fraud_slash, escrow * 10000 / \
                             verify_bps)), so none could take it before the queue timeout"
                        )
                    };
                    self.refund(undo, events, job, &reason)?;
                }
                Phase::Assigned | Phase::Committed => self.miss(undo, events, job)?,
                Phase::Revealed => {}
            }
        }
        // 2. Verifiers' deadlines that have passed.
        while let Some(&(deadline, id)) = self.market.check_deadlines.first() {
            if deadline > h {
                break;
            }
            self.market.check_deadlines.pop_first();
            self.expire_checks(undo, events, id)?;
        }
        // 3. Spot checks for the jobs committed in this block: the block's seed was unknown
        //    to their providers when they committed.
        for id in std::mem::take(&mut self.market.committed_now) {
            self.maybe_spot_check(events, seed, id)?;
        }
        // 4. Jobs whose checks moved: a disagreement opens a dispute, a finished dispute
        //    is decided.
        for id in std::mem::take(&mut self.market.touched) {
            self.finish(undo, events, seed, id)?;
        }
        // 5. Settlements that are due (a job with a check outstanding settles when it ends).
        while let Some(&(at, id)) = self.market.settlements.first() {
            if at > h {
                break;
            }
            self.market.settlements.pop_first();
            self.finish(undo, events, seed, id)?;
        }
        // 6. Assignment, oldest queued job first.
        let queued: Vec<(u64, JobId)> = self.market.queue.iter().map(|(s, j)| (*s, *j)).collect();
        for (seq, id) in queued {
            let Some(job) = self.market.jobs.get(&id) else {
                continue;
            };
            let min_stake = self.stake_to_serve(job)?;
            let Some((provider, unit_price)) = self.pick_provider(job, min_stake, seed) else {
                continue;
            };
            // Slow work gets time: the model's speed floor stretches the deadline.
            let deadline = self.work_deadline(job)?;
            self.market.queue.remove(&seq);
            let job = self.market.jobs.get_mut(&id).expect("queued job exists");
            self.market.deadlines.remove(&(job.deadline, id));
            job.phase = Phase::Assigned;
            job.provider = Some(provider);
            job.unit_price = unit_price;
            job.assigned_at = h;
            job.deadline = deadline;
            job.attempts += 1;
            self.market.deadlines.insert((deadline, id));
            if let Some(m) = self.market.models.get_mut(&job.model) {
                m.queued_jobs -= 1;
                m.active_jobs += 1;
            }
            if let Some(p) = self.market.providers.get_mut(&provider) {
                p.active_jobs += 1;
            }
            events.push(Event::JobAssigned {
                job: id,
                provider,
                unit_price,
            });
        }
        // 7. Prices follow utilization. Demand is the assigned jobs plus the queued jobs
        //    that can still afford the base price (a priced-out job is not demand at this
        //    price, as an under-priced transaction is not in EIP-1559) and whose fraud slash
        //    some provider serving the model could cover (a higher price cannot clear a job
        //    no stake can secure; counted, it would push the price up for nothing).
        let largest = self.largest_stakes();
        let mut affordable: BTreeMap<Digest, u64> = BTreeMap::new();
        for id in self.market.queue.values() {
            let Some(job) = self.market.jobs.get(id) else {
                continue;
            };
            let Some(m) = self.market.models.get(&job.model) else {
                continue;
            };
            if job.max_unit_price < m.base_price {
                continue;
            }
            // With nobody serving the model at all, waiting jobs hold the price (below).
            if let Some(stake) = largest.get(&job.model)
                && *stake < self.job_slash(job)?
            {
                continue;
            }
            *affordable.entry(job.model).or_default() += 1;
        }
        let hashes: Vec<Digest> = self.market.models.keys().copied().collect();
        for hash in hashes {
            let capacity = self.model_capacity(&hash);
            let m = &self.market.models[&hash];
            let demand =
                u64::from(m.active_jobs) + affordable.get(&hash).copied().unwrap_or_default();
            let next = next_base_price(
                m.base_price,
                m.min_price,
                demand,
                capacity,
                self.params.target_utilization_bps,
                self.params.price_step_divisor,
            );
            self.market
                .models
                .get_mut(&hash)
                .expect("model listed above")
                .base_price = next;
        }
        Ok(())
    }

    /// The provider for `job`: among eligible providers (serving the model, not paused,
    /// stake of at least `min_stake` (the minimum provider stake and the job's fraud slash),
    /// spare capacity, floor within the job's maximum, not tried before), restricted to the
    /// job's region when any eligible provider is there, drawn with probability proportional
    /// to stake × reputation using `seed`.
    fn pick_provider(
        &self,
        job: &Job,
        min_stake: Amount,
        seed: &Digest,
    ) -> Option<(Address, Amount)> {
        let model = self.market.models.get(&job.model)?;
        if model.base_price > job.max_unit_price {
            return None;
        }
        let eligible: Vec<(&Address, &Provider, Amount)> = self
            .market
            .providers
            .iter()
            .filter(|(address, p)| {
                !p.paused
                    && p.active_jobs < p.capacity
                    && p.price_floor <= job.max_unit_price
                    && p.models.contains(&job.model)
                    && !job.tried.contains(address)
            })
            .filter_map(|(address, p)| Some((address, p, self.draw_weight(address, p, min_stake)?)))
            .collect();
        let in_region =
            !job.region.is_empty() && eligible.iter().any(|(_, p, _)| p.region == job.region);
        let candidates: Vec<_> = eligible
            .into_iter()
            .filter(|(_, p, _)| !in_region || p.region == job.region)
            .map(|(address, p, weight)| ((address, p), weight))
            .collect();
        let draw = sha256(&[
            ASSIGN_NAMESPACE,
            seed.as_ref(),
            job.id.as_bytes(),
            &job.attempts.to_be_bytes(),
        ]);
        let (address, p) = weighted_pick(candidates, &draw)?;
        Some((*address, model.base_price.max(p.price_floor)))
    }

    fn refund(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        events: &mut Vec<Event>,
        job: Job,
        reason: &str,
    ) -> Result<(), LedgerError> {
        self.market.jobs.remove(&job.id);
        self.release_escrow(job.escrow)?;
        self.credit(undo, job.owner, job.escrow)?;
        events.push(Event::JobRefunded {
            amount: job.escrow,
            reason: reason.to_string(),
            job: Box::new(job),
        });
        Ok(())
    }

    /// The assigned provider missed its commit or reveal deadline: penalise it, then offer
    /// the job to another provider, or refund it after `max_job_attempts`.
    fn miss(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        events: &mut Vec<Event>,
        mut job: Job,
    ) -> Result<(), LedgerError> {
        let Some(provider) = job.provider else {
            return Ok(());
        };
        undo.entry(provider)
            .or_insert_with(|| self.accounts.get(&provider).cloned());
        let account = self.accounts.entry(provider).or_default();
        let penalty = account.stake.min(self.params.miss_penalty);
        account.stake = account
            .stake
            .checked_sub(penalty)
            .ok_or(LedgerError::HoldingsOverflow)?;
        self.treasury = self
            .treasury
            .checked_add(penalty)
            .ok_or(LedgerError::HoldingsOverflow)?;
        let computing = job.phase == Phase::Assigned;
        if let Some(p) = self.market.providers.get_mut(&provider) {
            if computing {
                p.active_jobs -= 1;
            } else {
                p.unsettled_jobs -= 1;
            }
            p.reputation = (p.reputation / 2).max(MIN_REPUTATION);
        }
        if computing && let Some(m) = self.market.models.get_mut(&job.model) {
            m.active_jobs -= 1;
        }
        events.push(Event::ProviderPenalised {
            provider,
            job: job.id,
            amount: penalty,
        });
        job.tried.push(provider);
        job.provider = None;
        job.unit_price = Amount::ZERO;
        job.commitment = None;
        // A verifier's work on a result that never came is void (unpaid, unpunished).
        job.checks.clear();
        job.disputed = false;
        if job.attempts >= self.params.max_job_attempts {
            return self.refund(
                undo,
                events,
                job,
                "every provider it was assigned to missed its deadline",
            );
        }
        job.phase = Phase::Queued;
        job.deadline = height_after(self.height, self.params.queue_timeout)
            .ok_or(LedgerError::HeightOverflow)?;
        job.queue_seq = self.market.next_seq;
        self.market.next_seq += 1;
        self.market.queue.insert(job.queue_seq, job.id);
        self.market.deadlines.insert((job.deadline, job.id));
        if let Some(m) = self.market.models.get_mut(&job.model) {
            m.queued_jobs += 1;
        }
        self.market.jobs.insert(job.id, job);
        Ok(())
    }

    /// Pay the provider `price - fee`, the treasury `fee`, refund the rest of the escrow.
    fn settle(
        &mut self,
        undo: &mut BTreeMap<Address, Option<crate::Account>>,
        events: &mut Vec<Event>,
        job: Job,
    ) -> Result<(), LedgerError> {
        let provider = job.provider.ok_or(LedgerError::HoldingsOverflow)?;
        let payment = job.price().ok_or(LedgerError::HoldingsOverflow)?;
        let refund = job
            .escrow
            .checked_sub(payment)
            .ok_or(LedgerError::HoldingsOverflow)?;
        let fee = payment
            .mul_div(u128::from(self.params.protocol_fee_bps), 10_000)
            .ok_or(LedgerError::HoldingsOverflow)?;
        let earned = payment
            .checked_sub(fee)
            .ok_or(LedgerError::HoldingsOverflow)?;
        self.release_escrow(job.escrow)?;
        self.credit(undo, provider, earned)?;
        self.credit(undo, job.owner, refund)?;
        self.treasury = self
            .treasury
            .checked_add(fee)
            .ok_or(LedgerError::HoldingsOverflow)?;
        if let Some(p) = self.market.providers.get_mut(&provider) {
            p.unsettled_jobs -= 1;
            p.reputation = (p.reputation + REPUTATION_GAIN).min(MAX_REPUTATION);
        }
        // Verifiers that confirmed the result are paid for the re-run out of the treasury,
        // which every job's fee feeds.
        for c in job.checks.iter().filter(|c| c.agrees == Some(true)) {
            let paid = self.pay_from_treasury(undo, c.verifier, earned)?;
            events.push(Event::Rewarded {
                who: c.verifier,
                job: job.id,
                amount: paid,
                reason: "verification".into(),
            });
        }
        events.push(Event::JobSettled {
            job: Box::new(job),
            payment,
            fee,
            refund,
        });
        Ok(())
    }

    pub(crate) fn register_genesis_model(
        &mut self,
        m: &crate::GenesisModel,
    ) -> Result<(), LedgerError> {
        match self.check_register_model(
            m.hash,
            &m.name,
            m.kind,
            m.unit,
            m.min_price,
            m.blocks_per_1000_units,
        ) {
            Ok(op) => {
                self.apply_market_op(op, &mut Vec::new());
                Ok(())
            }
            Err(e) => Err(LedgerError::BadGenesisModel {
                name: m.name.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Escrow recorded per job equals the escrow total; counters match the jobs.
    pub(crate) fn check_market(&self) -> Result<(), LedgerError> {
        let sum = Amount::checked_sum(self.market.jobs.values().map(|j| j.escrow))
            .ok_or(LedgerError::HoldingsOverflow)?;
        if sum != self.market.escrow {
            return Err(LedgerError::EscrowMismatch {
                jobs: sum,
                total: self.market.escrow,
            });
        }
        Ok(())
    }
}

/// The next base price: EIP-1559-like. With `demand` jobs (active + queued) against
/// `capacity` slots and a target utilization `target_bps`, the price moves by
/// `price * |demand - target| / (target * divisor)`, at most `price / divisor` per block;
/// it rises by at least 1 when over target and never falls below `min_price`. With no
/// capacity at all the price holds while jobs wait (a higher price cannot clear demand that
/// no provider can serve; it would only price out the waiting jobs) and falls when idle.
pub fn next_base_price(
    price: Amount,
    min_price: Amount,
    demand: u64,
    capacity: u64,
    target_bps: u64,
    divisor: u64,
) -> Amount {
    let target = u128::from(capacity) * u128::from(target_bps);
    let load = u128::from(demand) * 10_000;
    let max_step = price.get() / u128::from(divisor.max(1));
    if target == 0 {
        let next = if demand == 0 {
            price.get().saturating_sub(max_step)
        } else {
            price.get()
        };
        return Amount::new(next).max(min_price);
    }
    let step = |gap: u128| -> u128 {
        price
            .mul_div(gap, target.saturating_mul(u128::from(divisor.max(1))))
            .map_or(max_step, |a| a.get().min(max_step))
    };
    let next = if load > target {
        price.get().saturating_add(step(load - target).max(1))
    } else if load < target {
        price.get().saturating_sub(step(target - load))
    } else {
        price.get()
    };
    Amount::new(next).max(min_price)
}
