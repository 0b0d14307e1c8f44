use crate::encode::Encoder;
use plexus_types::{Address, Amount, Digest, ModelKind, WorkUnit};

/// Domain separation for [`Genesis::digest`].
const GENESIS_NAMESPACE: &[u8] = b"_PLEXUS_GENESIS_V4";

/// Protocol parameters, fixed at genesis. Fields added after the first version have serde
/// defaults, so an older genesis file still reads (with those defaults).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// The smallest fee a transaction may carry.
    pub min_fee: Amount,
    /// Blocks between an unbond and the height at which its stake can be withdrawn.
    pub unbonding_delay: u64,
    /// Stake a provider must keep bonded to register and to receive jobs.
    #[serde(default = "defaults::min_provider_stake")]
    pub min_provider_stake: Amount,
    /// Blocks an assigned provider has to commit.
    #[serde(default = "defaults::timeout")]
    pub commit_timeout: u64,
    /// Blocks a provider has, after its commit, to reveal.
    #[serde(default = "defaults::timeout")]
    pub reveal_timeout: u64,
    /// Blocks between a reveal and automatic settlement.
    #[serde(default = "defaults::challenge_window")]
    pub challenge_window: u64,
    /// Taken from a provider's stake (at most all of it) when it misses a deadline.
    #[serde(default = "defaults::miss_penalty")]
    pub miss_penalty: Amount,
    /// Share of each job's price paid to the treasury, in basis points.
    #[serde(default = "defaults::protocol_fee_bps")]
    pub protocol_fee_bps: u64,
    /// Utilization of registered capacity the price controller aims for, in basis points.
    #[serde(default = "defaults::target_utilization_bps")]
    pub target_utilization_bps: u64,
    /// A base price moves by at most `1 / price_step_divisor` of itself per block.
    #[serde(default = "defaults::price_step_divisor")]
    pub price_step_divisor: u64,
    /// Providers a job is offered to before it is refunded.
    #[serde(default = "defaults::max_job_attempts")]
    pub max_job_attempts: u32,
    /// Blocks a job may wait in the queue for a provider before it is refunded.
    #[serde(default = "defaults::queue_timeout")]
    pub queue_timeout: u64,
    /// Largest input or output payload, in bytes.
    #[serde(default = "defaults::max_payload_size")]
    pub max_payload_size: u32,
    /// Most jobs waiting for a provider at once.
    #[serde(default = "defaults::max_queued_jobs")]
    pub max_queued_jobs: u32,
    /// Probability, in basis points, that a committed job is spot-checked by a verifier.
    #[serde(default = "defaults::verify_bps")]
    pub verify_bps: u64,
    /// Verifiers drawn to decide a dispute (fewer when fewer providers can serve).
    #[serde(default = "defaults::dispute_verifiers")]
    pub dispute_verifiers: u32,
    /// Taken from the stake (at most all of it) of the side that loses a dispute.
    #[serde(default = "defaults::fraud_slash")]
    pub fraud_slash: Amount,
    /// Share of a slash, in basis points, paid to the winning side; the rest is burned.
    #[serde(default = "defaults::slash_reward_bps")]
    pub slash_reward_bps: u64,
    /// Two embedding results agree when no component differs by more than this many
    /// millionths (the rule verifiers apply off-chain; the chain records it).
    #[serde(default = "defaults::embedding_tolerance_micros")]
    pub embedding_tolerance_micros: u32,
}

/// Defaults of the job-market parameters (also what `Params::new` uses).
pub mod defaults {
    use plexus_types::Amount;
    pub fn min_provider_stake() -> Amount {
        Amount::new(1_000_000)
    }
    pub fn timeout() -> u64 {
        10
    }
    pub fn challenge_window() -> u64 {
        5
    }
    pub fn miss_penalty() -> Amount {
        Amount::new(100_000)
    }
    /// 10%: the treasury it feeds pays verifiers, and with one job in ten re-run at the
    /// provider's earnings the fee must be at least `verify_bps * (1 - fee)`.
    pub fn protocol_fee_bps() -> u64 {
        1_000
    }
    pub fn target_utilization_bps() -> u64 {
        5_000
    }
    pub fn price_step_divisor() -> u64 {
        8
    }
    pub fn max_job_attempts() -> u32 {
        3
    }
    pub fn queue_timeout() -> u64 {
        50
    }
    pub fn max_payload_size() -> u32 {
        1024 * 1024
    }
    pub fn max_queued_jobs() -> u32 {
        10_000
    }
    /// One committed job in ten is re-run by a verifier.
    pub fn verify_bps() -> u64 {
        1_000
    }
    pub fn dispute_verifiers() -> u32 {
        3
    }
    /// The whole minimum provider stake: one proven fraud ends a provider's bond.
    pub fn fraud_slash() -> Amount {
        Amount::new(1_000_000)
    }
    pub fn slash_reward_bps() -> u64 {
        5_000
    }
    /// 1e-4 per component. Measured between honest runs: the same binary gives identical
    /// vectors at any thread count, and candle against PyTorch (another engine, other
    /// kernels) differs by at most 2.5e-7 on all-MiniLM-L6-v2 (BENCHMARKS.md), so this
    /// leaves a 400x margin for other CPUs while a tampered vector differs by far more.
    pub fn embedding_tolerance_micros() -> u32 {
        100
    }
    /// A model registered without a speed: deadlines are `commit_timeout` alone.
    pub fn blocks_per_1000_units() -> u64 {
        0
    }
}

impl Params {
    /// The given fee and unbonding delay, every job-market parameter at its default.
    pub fn new(min_fee: Amount, unbonding_delay: u64) -> Self {
        Self {
            min_fee,
            unbonding_delay,
            min_provider_stake: defaults::min_provider_stake(),
            commit_timeout: defaults::timeout(),
            reveal_timeout: defaults::timeout(),
            challenge_window: defaults::challenge_window(),
            miss_penalty: defaults::miss_penalty(),
            protocol_fee_bps: defaults::protocol_fee_bps(),
            target_utilization_bps: defaults::target_utilization_bps(),
            price_step_divisor: defaults::price_step_divisor(),
            max_job_attempts: defaults::max_job_attempts(),
            queue_timeout: defaults::queue_timeout(),
            max_payload_size: defaults::max_payload_size(),
            max_queued_jobs: defaults::max_queued_jobs(),
            verify_bps: defaults::verify_bps(),
            dispute_verifiers: defaults::dispute_verifiers(),
            fraud_slash: defaults::fraud_slash(),
            slash_reward_bps: defaults::slash_reward_bps(),
            embedding_tolerance_micros: defaults::embedding_tolerance_micros(),
        }
    }

    /// Why these parameters cannot run a chain, if they cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if self.commit_timeout == 0 || self.reveal_timeout == 0 || self.queue_timeout == 0 {
            return Some("commit_timeout, reveal_timeout and queue_timeout must be at least 1");
        }
        if self.protocol_fee_bps > 10_000 {
            return Some("protocol_fee_bps must be at most 10000");
        }
        if self.verify_bps > 10_000 || self.slash_reward_bps > 10_000 {
            return Some("verify_bps and slash_reward_bps must be at most 10000");
        }
        if self.dispute_verifiers == 0 || self.dispute_verifiers > 32 {
            return Some("dispute_verifiers must be between 1 and 32");
        }
        if self.target_utilization_bps == 0 || self.target_utilization_bps > 10_000 {
            return Some("target_utilization_bps must be between 1 and 10000");
        }
        if self.price_step_divisor == 0 {
            return Some("price_step_divisor must be at least 1");
        }
        if self.max_job_attempts == 0 {
            return Some("max_job_attempts must be at least 1");
        }
        None
    }

    pub(crate) fn encode(&self, enc: &mut Encoder) {
        enc.amount(self.min_fee);
        enc.u64(self.unbonding_delay);
        enc.amount(self.min_provider_stake);
        enc.u64(self.commit_timeout);
        enc.u64(self.reveal_timeout);
        enc.u64(self.challenge_window);
        enc.amount(self.miss_penalty);
        enc.u64(self.protocol_fee_bps);
        enc.u64(self.target_utilization_bps);
        enc.u64(self.price_step_divisor);
        enc.u32(self.max_job_attempts);
        enc.u64(self.queue_timeout);
        enc.u32(self.max_payload_size);
        enc.u32(self.max_queued_jobs);
        enc.u64(self.verify_bps);
        enc.u32(self.dispute_verifiers);
        enc.amount(self.fraud_slash);
        enc.u64(self.slash_reward_bps);
        enc.u32(self.embedding_tolerance_micros);
    }
}

/// One account at genesis: its spendable balance and its bonded stake.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: Amount,
    #[serde(default)]
    pub stake: Amount,
}

/// A model registered at genesis (the same fields as a `RegisterModel` transaction).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenesisModel {
    #[serde(with = "plexus_types::hex_digest")]
    pub hash: Digest,
    pub name: String,
    pub kind: ModelKind,
    pub unit: WorkUnit,
    pub min_price: Amount,
    /// Blocks the slowest acceptable provider needs per 1000 units; stretches commit
    /// deadlines (0: no stretch).
    #[serde(default = "defaults::blocks_per_1000_units")]
    pub blocks_per_1000_units: u64,
}

/// Everything the chain starts from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    pub params: Params,
    pub accounts: Vec<GenesisAccount>,
    #[serde(default)]
    pub models: Vec<GenesisModel>,
}

impl Genesis {
    /// SHA-256 of the genesis' canonical binary encoding (see the crate docs, "Genesis
    /// digest"). Accounts and models are hashed in the order listed, so the digest names this
    /// exact document.
    pub fn digest(&self) -> Digest {
        let mut enc = Encoder::new(GENESIS_NAMESPACE);
        enc.bytes(self.chain_id.as_bytes());
        self.params.encode(&mut enc);
        enc.count(self.accounts.len());
        for account in &self.accounts {
            enc.address(&account.address);
            enc.amount(account.balance);
            enc.amount(account.stake);
        }
        enc.count(self.models.len());
        for model in &self.models {
            enc.digest(&model.hash);
            enc.bytes(model.name.as_bytes());
            enc.u8(model.kind.tag());
            enc.u8(model.unit.tag());
            enc.amount(model.min_price);
            enc.u64(model.blocks_per_1000_units);
        }
        enc.finish()
    }
}
