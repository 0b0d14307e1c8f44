use plexus_types::{Amount, Height, Nonce};

/// Why a transaction is not admitted or does not execute. A failed transaction changes
/// nothing: no nonce, no fee.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("wrong chain id: got {got:?}, expected {expected:?}")]
    WrongChain { got: String, expected: String },
    #[error("invalid signature")]
    InvalidSignature,
    #[error("nonce {got} already used (next nonce is {next})")]
    StaleNonce { got: Nonce, next: Nonce },
    #[error("nonce gap: got {got}, expected {expected}")]
    NonceGap { got: Nonce, expected: Nonce },
    #[error("nonce overflows")]
    NonceOverflow,
    #[error("fee {fee} below minimum {min}")]
    FeeTooLow { fee: Amount, min: Amount },
    #[error("zero amount")]
    ZeroAmount,
    #[error("transfer to self: the recipient must be another account")]
    SelfTransfer,
    #[error("amount overflows")]
    Overflow,
    #[error("insufficient funds: need {need}, have {have}")]
    InsufficientFunds { need: Amount, have: Amount },
    #[error("unbond {amount} exceeds stake {stake}")]
    UnbondExceedsStake { amount: Amount, stake: Amount },
    #[error(
        "too many unbonding entries: {limit} pending; withdraw matured entries or wait for them to mature"
    )]
    TooManyUnbondings { limit: usize },
    #[error("nothing to withdraw at height {height}{}", next_release(.next))]
    NothingToWithdraw {
        height: Height,
        next: Option<Height>,
    },
    #[error("height overflows")]
    HeightOverflow,
    #[error("unknown model {0}; see `plexus models` / GET /models for registered models")]
    UnknownModel(String),
    #[error("model {0} is already registered")]
    ModelExists(String),
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("the signer is not a registered provider")]
    NotProvider,
    #[error("stake {stake} is below the provider minimum {min}; bond more first")]
    ProviderStakeTooLow { stake: Amount, min: Amount },
    #[error("invalid provider declaration: {0}")]
    InvalidProvider(String),
    #[error(
        "provider still has {active} job(s) in flight and {unsettled} awaiting settlement; pause, wait for them, then deregister"
    )]
    ProviderBusy { active: u32, unsettled: u32 },
    #[error(
        "a registered provider must keep at least {min} staked; deregister before unbonding below it"
    )]
    ProviderStakeLocked { min: Amount },
    #[error(
        "the stake backs {jobs} open job(s) as provider or verifier: at least {min} (their largest fraud slash) must stay bonded until they settle"
    )]
    StakeBacksJobs { min: Amount, jobs: u32 },
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error("payload of {size} bytes is larger than the limit of {max}")]
    PayloadTooLarge { size: u32, max: u32 },
    #[error("max price per unit {max} is below the model's current base price {base}")]
    MaxPriceBelowBase { max: Amount, base: Amount },
    #[error("the job queue is full ({max} jobs waiting); try again later")]
    QueueFull { max: u32 },
    #[error("unknown job {0} (never posted, or already settled or refunded)")]
    UnknownJob(String),
    #[error("job {0} is not assigned to the signer")]
    NotAssigned(String),
    #[error("job is {phase}, expected {expected}")]
    WrongPhase {
        phase: &'static str,
        expected: &'static str,
    },
    #[error("a reveal must come in a later block than its commit")]
    RevealTooEarly,
    #[error("revealed output hash and salt do not match the commitment")]
    CommitmentMismatch,
    #[error("units {units} must be between 1 and the job's max_units {max}")]
    InvalidUnits { units: u32, max: u32 },
    #[error("the receipt signature is not the provider's signature over the job's receipt")]
    InvalidReceipt,
    #[error(
        "job {0} is being spot-checked: reveal after its verifier has committed (or missed its deadline)"
    )]
    AwaitingVerifier(String),
    #[error("the signer is not a verifier of job {0} with a step due")]
    NotVerifier(String),
    #[error("a verifier reveals after the provider has revealed (job {0} is {1})")]
    CheckTooEarly(String, &'static str),
    #[error("invalid verdict: {0}")]
    InvalidVerdict(&'static str),
}

fn next_release(next: &Option<Height>) -> String {
    match next {
        Some(h) => format!(" (next release at height {h})"),
        None => " (no unbonding entries)".to_string(),
    }
}

impl TxError {
    /// A stable snake_case code for each kind of error (RPC JSON errors, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            TxError::WrongChain { .. } => "wrong_chain_id",
            TxError::InvalidSignature => "invalid_signature",
            TxError::StaleNonce { .. } => "stale_nonce",
            TxError::NonceGap { .. } => "nonce_gap",
            TxError::NonceOverflow => "nonce_overflow",
            TxError::FeeTooLow { .. } => "fee_too_low",
            TxError::ZeroAmount => "zero_amount",
            TxError::SelfTransfer => "self_transfer",
            TxError::Overflow => "overflow",
            TxError::InsufficientFunds { .. } => "insufficient_funds",
            TxError::UnbondExceedsStake { .. } => "unbond_exceeds_stake",
            TxError::TooManyUnbondings { .. } => "too_many_unbondings",
            TxError::NothingToWithdraw { .. } => "nothing_to_withdraw",
            TxError::HeightOverflow => "height_overflow",
            TxError::UnknownModel(_) => "unknown_model",
            TxError::ModelExists(_) => "model_exists",
            TxError::InvalidModel(_) => "invalid_model",
            TxError::NotProvider => "not_provider",
            TxError::ProviderStakeTooLow { .. } => "provider_stake_too_low",
            TxError::InvalidProvider(_) => "invalid_provider",
            TxError::ProviderBusy { .. } => "provider_busy",
            TxError::ProviderStakeLocked { .. } => "provider_stake_locked",
            TxError::StakeBacksJobs { .. } => "stake_backs_jobs",
            TxError::InvalidJob(_) => "invalid_job",
            TxError::PayloadTooLarge { .. } => "payload_too_large",
            TxError::MaxPriceBelowBase { .. } => "max_price_below_base",
            TxError::QueueFull { .. } => "queue_full",
            TxError::UnknownJob(_) => "unknown_job",
            TxError::NotAssigned(_) => "not_assigned",
            TxError::WrongPhase { .. } => "wrong_phase",
            TxError::RevealTooEarly => "reveal_too_early",
            TxError::CommitmentMismatch => "commitment_mismatch",
            TxError::InvalidUnits { .. } => "invalid_units",
            TxError::InvalidReceipt => "invalid_receipt",
            TxError::AwaitingVerifier(_) => "awaiting_verifier",
            TxError::NotVerifier(_) => "not_verifier",
            TxError::CheckTooEarly(..) => "check_too_early",
            TxError::InvalidVerdict(_) => "invalid_verdict",
        }
    }
}

/// Errors that stop genesis or a whole block. [`LedgerError::InvariantViolated`] and
/// [`LedgerError::HoldingsOverflow`] are bugs in the ledger, never the fault of a transaction.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("chain id is empty; give the chain a name")]
    EmptyChainId,
    #[error("chain id is {len} bytes, longer than the limit of {max}")]
    ChainIdTooLong { len: usize, max: usize },
    #[error("genesis lists account {0} more than once")]
    DuplicateAccount(plexus_types::Address),
    #[error(
        "genesis supply overflows: balances and stakes add up to more than {}",
        Amount::MAX
    )]
    SupplyOverflow,
    #[error("wrong block height: got {got}, expected {expected}")]
    WrongHeight { got: Height, expected: Height },
    #[error("height overflows")]
    HeightOverflow,
    #[error("ledger bug: holdings overflow")]
    HoldingsOverflow,
    #[error("ledger bug: {0} burned is more than the supply")]
    BurnExceedsSupply(Amount),
    #[error("ledger bug: holdings {holdings} differ from supply {supply}")]
    InvariantViolated { holdings: Amount, supply: Amount },
    #[error("ledger bug: jobs hold {jobs} in escrow but the escrow total is {total}")]
    EscrowMismatch { jobs: Amount, total: Amount },
    #[error("genesis parameters are invalid: {0}")]
    BadParams(&'static str),
    #[error("genesis model {name:?} is invalid: {reason}")]
    BadGenesisModel { name: String, reason: String },
}
