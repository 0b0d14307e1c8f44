//! ledger: Apply transactions to state deterministically: balances, staking, escrow, pricing, verification, slashing.
//!
//! This version implements **accounts** (balances, nonces, transfers, fees) and **staking**
//! (bond, unbond with a delay, withdraw). Escrow, pricing, verification and slashing arrive
//! with later issues, each as a new section of these docs.
//!
//! # Bird's eye view
//!
//! [`State`] is a pure state machine: no I/O, no clock, no floats, no randomness, no hash-map
//! iteration order. Every quantity of value is an [`Amount`](plexus_types::Amount) (`u128`)
//! and all arithmetic is checked: an overflow makes the transaction fail, it never wraps and
//! never panics. Two nodes that start from the same [`Genesis`] and execute the same blocks
//! reach the same [`State::state_root`]. The host (the node) does persistence and networking.
//!
//! # Genesis
//!
//! [`State::from_genesis`] builds the state at height 0:
//!
//! - the chain id must be non-empty and at most
//!   [`MAX_CHAIN_ID_LEN`](plexus_types::limits::MAX_CHAIN_ID_LEN) bytes;
//! - an address may be listed once;
//! - each account starts with its `balance` (spendable) and `stake` (bonded), nonce 0, no
//!   unbonding entries; an account listed with zero balance and zero stake is not stored
//!   (it reads as the default account anyway);
//! - `supply` = sum of all balances and stakes (an overflow is an error); treasury = 0.
//!
//! # Transactions
//!
//! A transaction is checked in this order; the first failing check is the error reported
//! ([`TxError`], each with a stable [`TxError::code`]):
//!
//! 1. **chain id** equals the state's ([`TxError::WrongChain`]);
//! 2. **nonce** equals the signer's account nonce ([`TxError::StaleNonce`] if lower,
//!    [`TxError::NonceGap`] if higher). Each account's transactions therefore execute once,
//!    in nonce order, without gaps;
//! 3. **fee** is at least [`Params::min_fee`] ([`TxError::FeeTooLow`]);
//! 4. **amount** (transfer, bond, unbond) is non-zero ([`TxError::ZeroAmount`]); a transfer's
//!    recipient is not the signer ([`TxError::SelfTransfer`]: a self-transfer would only burn
//!    a fee, so it is refused rather than silently charged);
//! 5. [`cost`] (amount + fee for transfer and bond; fee alone for unbond and withdraw) does
//!    not overflow ([`TxError::Overflow`]);
//! 6. the **action's own preconditions**, below;
//! 7. **funds**: the signer's balance (plus, for a withdraw, the matured amount it releases)
//!    covers the cost ([`TxError::InsufficientFunds`]);
//! 8. **signature**: valid ed25519 over the transaction's canonical encoding under the
//!    transaction namespace, by the key that is the signer's address
//!    ([`TxError::InvalidSignature`]). Last because it is the only expensive check.
//!
//! Any checked arithmetic that overflows along the way is [`TxError::Overflow`] (amounts),
//! [`TxError::NonceOverflow`] or [`TxError::HeightOverflow`].
//!
//! On success, and only then: the signer's nonce increases by one, the fee moves from the
//! signer's balance to the treasury, and the action takes effect. On failure nothing changes
//! at all: no nonce, no fee ([`State::apply_tx`] computes every write before making any).
//!
//! ## Actions
//!
//! Let `h` be the height the transaction executes at (see [Blocks](#blocks)).
//!
//! - **`Transfer { to, amount }`**: `amount + fee` leaves the signer's balance; `amount` is
//!   added to `to`'s balance (the account is created if new). Fails if `to`'s balance would
//!   overflow.
//! - **`Bond { amount }`**: `amount + fee` leaves the balance; `amount` is added to the
//!   signer's stake.
//! - **`Unbond { amount }`**: `amount <= stake` ([`TxError::UnbondExceedsStake`]). The fee
//!   leaves the balance; `amount` leaves the stake and becomes an unbonding entry released at
//!   `h + unbonding_delay` (checked, [`TxError::HeightOverflow`]). Entries stay in ascending
//!   release height; an unbond releasing at the same height as the account's last entry is
//!   added to it, otherwise a new entry is appended, at most [`MAX_UNBONDING_ENTRIES`]
//!   ([`TxError::TooManyUnbondings`]). Unbonding tokens are neither spendable nor stake.
//! - **`Withdraw`**: at least one entry has `release_height <= h`
//!   ([`TxError::NothingToWithdraw`]). All such entries are removed and their sum added to
//!   the balance; the fee is then paid from the balance, so an account whose tokens are all
//!   unbonding can still withdraw them.
//!
//! Nothing matures automatically: stake returns to the balance only through `Withdraw`.
//!
//! ## Admission (mempool)
//!
//! [`State::check_tx`] runs the same checks without changing anything, as if the transaction
//! executed in the next block (`h = height() + 1`) after the sender's [`Queued`]
//! transactions: the expected nonce is `account.nonce + queued.txs` and the funds available
//! are `balance - queued.spend` (zero if negative). Action preconditions (stake, matured
//! entries) are checked against the current state, not the queued transactions' effects, so
//! an admitted transaction can still fail at execution; it is then skipped like any other.
//!
//! # Blocks
//!
//! [`State::apply_block`]`(height, txs)`:
//!
//! 1. `height` must be `self.height() + 1` ([`LedgerError::WrongHeight`]);
//! 2. the state's height becomes `height`: every transaction in the block executes at `h =
//!    height` (this is the `h` of unbond release and withdraw maturity);
//! 3. transactions execute in block order; one that fails is skipped, changes nothing and
//!    pays no fee, and its error is recorded in [`BlockOutcome::results`];
//! 4. the invariant is checked. A violation is a ledger bug ([`LedgerError`]), and the state is
//!    restored to exactly what it was before the call (the block keeps an undo log of the
//!    accounts it wrote).
//!
//! [`BlockOutcome`] reports the results, the fees collected and the new state root.
//! [`State::apply_tx`] executes at the current `height()`, i.e. as if it were part of the
//! last block; the node should only ever use `apply_block`.
//!
//! # Invariant
//!
//! After genesis and after every block:
//!
//! ```text
//! sum(balances) + sum(stakes) + sum(unbonding amounts) + treasury == supply
//! ```
//!
//! and `supply` never changes (this version has no mint or burn). Fees move tokens to the
//! treasury, stake and unbonding move them within an account; nothing creates or destroys
//! tokens.
//!
//! # State root
//!
//! [`State::state_root`] is SHA-256 of the following bytes. Integers are fixed-width
//! big-endian; `len` and counts are `u64` big-endian; addresses are their 32 raw bytes.
//!
//! ```text
//! "_PLEXUS_STATE_V1"                        16 bytes, domain separation
//! len(chain_id) u64 || chain_id             UTF-8
//! height u64
//! params.min_fee u128 || params.unbonding_delay u64
//! supply u128
//! treasury u128
//! n_accounts u64
//! n_accounts times, in ascending address order (byte-wise):
//!     address [32] || balance u128 || nonce u64 || stake u128
//!     n_entries u64
//!     n_entries times, in ascending release height:
//!         amount u128 || release_height u64
//! ```
//!
//! Only accounts that differ from the default are stored, and an account never returns to
//! the default (its nonce or balance stays non-zero), so the account set is canonical.
//! The root is recomputed in full (linear in the number of accounts); an incremental
//! (Merkle) commitment can replace it without changing the rules.
//!
//! # Features
//!
//! `bench-unchecked-signatures` (off by default) adds
//! `State::apply_block_skipping_signatures_for_benchmarks`, so the throughput benchmark can
//! time execution apart from signature verification. A node must never enable it.
//!
//! # Genesis digest
//!
//! [`Genesis::digest`] is SHA-256 of, in the same conventions:
//!
//! ```text
//! "_PLEXUS_GENESIS_V1"                      18 bytes, domain separation
//! len(chain_id) u64 || chain_id
//! params.min_fee u128 || params.unbonding_delay u64
//! n_accounts u64
//! n_accounts times, in the order listed: address [32] || balance u128 || stake u128
//! ```

mod encode;
mod error;
mod genesis;
mod state;

pub use error::{LedgerError, TxError};
pub use genesis::{Genesis, GenesisAccount, Params};
pub use state::{Account, BlockOutcome, MAX_UNBONDING_ENTRIES, Queued, State, Unbonding, cost};

#[cfg(test)]
mod tests;
