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
    #[error("ledger bug: holdings {holdings} differ from supply {supply}")]
    InvariantViolated { holdings: Amount, supply: Amount },
}
