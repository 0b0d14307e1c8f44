//! ledger: Apply transactions to state deterministically: balances, staking, escrow, pricing, verification, slashing.
//!
//! This version implements **accounts** (balances, nonces, transfers, fees), **staking**
//! (bond, unbond with a delay, withdraw) and the **job market**: the model and provider
//! registries, jobs with escrow, fair assignment, commit-reveal, deadlines with penalties,
//! automatic settlement and dynamic pricing (see [Job market](#job-market)), and
//! **verification**: spot checks, disputes and slashing (see
//! [Verification and slashing](#verification-and-slashing)).
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
//! - the parameters must make sense ([`Params::problem`]: non-zero timeouts, divisor and
//!   attempts; basis points within 10000), else [`LedgerError::BadParams`];
//! - each listed model is registered as by `RegisterModel` ([`LedgerError::BadGenesisModel`]
//!   if it could not be).
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
//! # Job market
//!
//! ## Models
//!
//! A model is registered by the content hash of its weights, config and tokenizer (so "which
//! model" is never ambiguous), with a name, a kind (`embedding`, `chat`), a unit of work
//! (`input_tokens`, `output_tokens`), a `min_price` per unit and a speed floor,
//! `blocks_per_1000_units` (the blocks the slowest acceptable provider needs per 1000 units of
//! work), at genesis or by anyone with **`RegisterModel`** (fails with `model_exists`, or
//! `invalid_model` for a blank name, a zero `min_price` or a speed floor above
//! `MAX_BLOCKS_PER_1000_UNITS`). Its `base_price` starts at `min_price`.
//!
//! ## Providers
//!
//! **`RegisterProvider { models, capacity, region, price_floor, endpoint }`** registers the
//! signer or replaces its declaration (keeping its reputation, counters and pause flag).
//! Preconditions: stake `>= min_provider_stake` (`provider_stake_too_low`); 1 to
//! [`MAX_PROVIDER_CAPACITY`] jobs of capacity, at least one model, no duplicates
//! (`invalid_provider`); every model registered (`unknown_model`); an `http(s)://` endpoint
//! (where it serves outputs). **`PauseProvider { paused }`** stops or resumes new assignments.
//! **`Deregister`** removes the record; it needs no job in flight or awaiting settlement
//! (`provider_busy`). While registered, **`Unbond`** may not take the stake below
//! `min_provider_stake` (`provider_stake_locked`): the stake is what penalties come from. Nor
//! may it, registered or not, go below the largest fraud slash ([`job_fraud_slash`]) of an
//! open job the signer provides or verifies (`stake_backs_jobs`), so a stake that secured a
//! job cannot leave before the job does.
//! Reputation is in basis points, starts at [`MAX_REPUTATION`], halves (not below
//! [`MIN_REPUTATION`]) on each missed deadline and regains [`REPUTATION_GAIN`] per settled job.
//!
//! ## Jobs
//!
//! **`PostJob { model, input_hash, input_size, max_units, max_unit_price, region }`**: the
//! input lives off-chain; the chain keeps its hash. Preconditions, in order: the model is
//! registered (`unknown_model`); `1 <= input_size <= max_payload_size` (`invalid_job`,
//! `payload_too_large`); `max_units >= 1` (`invalid_job`); `max_unit_price >= base_price`
//! (`max_price_below_base`); fewer than `max_queued_jobs` waiting (`queue_full`). The **escrow**
//! `max_units * max_unit_price` (checked, `overflow`) leaves the balance with the fee, so
//! [`cost`] includes it and the funds check covers it (`insufficient_funds`): payment can
//! never bounce later. The job id is [`JobId::new`](plexus_types::JobId::new)`(signer,
//! nonce)`. The job enters the queue with a queue deadline `h + queue_timeout`.
//!
//! **Assignment** happens at the end of every block (so a job is assigned in the block that
//! includes its post whenever a provider can take it), oldest queued job first. Eligible
//! providers serve the model, are not paused, hold `>= min_provider_stake`, have
//! `active_jobs < capacity`, a `price_floor <= max_unit_price`, and have not had this job
//! before; the job also waits while the base price exceeds its `max_unit_price`. If any
//! eligible provider declares the job's region, only those are considered. One is drawn with
//! probability proportional to `stake * reputation / 10000`, from
//! `sha256("_PLEXUS_ASSIGN_V1" || seed || job id || attempts)` (first 16 bytes, big-endian,
//! modulo the total weight, walking providers in address order); `seed` is the finalized
//! block's digest, which the poster cannot know when it submits (a proposer could grind it;
//! a threshold VRF would remove that). The job's `unit_price` becomes
//! `max(base_price, price_floor)`, and the provider must commit by
//! `h + commit_timeout + max_units * blocks_per_1000_units / 1000` (rounded down): a long
//! generation gets time in proportion to its size, a short one stays quick to reassign.
//!
//! **`CommitResult { job, commitment }`** by the assigned provider (`unknown_job`,
//! `not_assigned`, `wrong_phase`) records `commitment(job, output_hash, salt)`; the reveal is
//! due by `h + reveal_timeout`. The computation is done, so the job stops counting against
//! the provider's capacity (capacity is work in progress, not reveals in flight).
//! **`RevealResult { job, output_hash, output_size, salt, units, receipt_signature }`** must come in a later block than the commit (`reveal_too_early`),
//! match the commitment (`commitment_mismatch`), bill `1 <= units <= max_units`
//! (`invalid_units`), have `1 <= output_size <= max_payload_size`, and carry the provider's
//! signature over the job's [`Receipt`](plexus_types::Receipt) (`invalid_receipt`, checked
//! last with the transaction signature). Settlement is due at `h + challenge_window`.
//!
//! **Settlement** (end of block, nobody acts): `price = units * unit_price` (at most the
//! escrow, since `units <= max_units` and `unit_price <= max_unit_price`);
//! `fee = price * protocol_fee_bps / 10000` goes to the treasury, `price - fee` to the
//! provider's balance, `escrow - price` back to the owner. The job leaves the state
//! ([`Event::JobSettled`] carries its final record).
//!
//! **Deadlines** (end of block, before settlement and assignment): an assigned or committed
//! job past its deadline costs its provider `min(miss_penalty, stake)` of stake (to the
//! treasury) and half its reputation; the job goes back to the queue (never to a provider
//! that had it), or after `max_job_attempts` providers is refunded in full. A queued job past
//! its queue deadline is refunded in full ([`Event::JobRefunded`]). The owner therefore pays
//! at most once, and only for a revealed result.
//!
//! ## Verification and slashing
//!
//! Results are not re-run by default; a random fraction is, by another provider, before it
//! can see the result it checks.
//!
//! - **Selection.** At the end of the block that includes a `CommitResult` (whose seed the
//!   provider could not know when it committed), the job is drawn for a **spot check** when
//!   `sha256("_PLEXUS_SELECT_V1" || seed || job id || attempts)` (first 8 bytes, big-endian)
//!   `mod 10000 < verify_bps`. A **verifier** is drawn among the other providers that serve the
//!   model, are unpaused and hold `min_provider_stake`, with probability proportional to
//!   `stake * reputation` (`"_PLEXUS_VERIFIER_V1"`, as for assignment; spare capacity is not
//!   required). With nobody to draw, the job goes unchecked. The check (in `job.checks`) must
//!   be committed by the job's work deadline (`h + commit_timeout + max_units *
//!   blocks_per_1000_units / 1000`); the provider's reveal deadline moves to at least
//!   `reveal_timeout` after that.
//! - **Verifier commit-reveal.** **`CommitCheck { job, commitment }`** by the verifier
//!   (`not_verifier` otherwise) records
//!   [`check_commitment`](plexus_types::check_commitment)`(job, verifier, output_hash, salt)` of
//!   its own re-run. The verifier's address is bound in, so a copy of the provider's commitment
//!   cannot be opened later. Until the spot check is committed (or missed) the provider's
//!   `RevealResult` fails with `awaiting_verifier`: the verifier never sees the result it
//!   checks before it has committed to its own. **`RevealCheck { job, output_hash, salt,
//!   agrees }`** comes after the provider's reveal (`check_too_early`), opens the commitment
//!   (`commitment_mismatch`) and gives the verdict. The verdict must fit the job kind's rule
//!   (`invalid_verdict`): identical output hashes always agree; **chat** (exact mode) agrees
//!   exactly when the hashes are equal; **embeddings** agree when both outputs have the same
//!   number and size of vectors and no component differs by more than
//!   `embedding_tolerance_micros / 10^6`, a rule the verifier applies off-chain to both
//!   payloads (the chain sees only hashes). The reveal is due `reveal_timeout` after the
//!   provider's reveal.
//! - **Agreement.** The job settles as usual; each verifier that agreed is paid what the
//!   provider earned (`price - fee`) from the treasury, or what the treasury holds if less.
//! - **Dispute.** When a verifier disagrees, up to `dispute_verifiers` more verifiers are drawn
//!   (never the provider or a verifier already on the job) and commit and reveal the same way.
//!   The provider is wrong when more than half of the quorum as drawn disagrees, right when
//!   more than half agrees; otherwise (missing votes, a tie) the dispute is undecided.
//!   Every party on the losing side (the provider, or each verifier whose verdict lost, spot
//!   check included) loses `min(S_job, stake)` of stake, where the job's fraud slash
//!   [`job_fraud_slash`] is `S_job = max(fraud_slash, ceil(m * escrow * 10000 / verify_bps))`
//!   (`escrow` = the most the job can pay, `m` = [`FRAUD_SLASH_MARGIN`] = 2), and its
//!   reputation falls to
//!   [`MIN_REPUTATION`]; `slash_reward_bps` of the total slashed is shared equally by the
//!   winning side and the rest (with the division's remainder) is **burned**: the supply falls
//!   by it. A wrong result's escrow goes back to its owner in full and the verifiers who were
//!   right are paid as on agreement; a right result settles and its provider shares the
//!   reward. If nobody can be drawn, or every drawn verifier misses its deadlines, the dispute
//!   is undecided: the owner is refunded and nobody is slashed or paid.
//! - **Missed checks.** A verifier past a deadline loses `min(miss_penalty, stake)` to the
//!   treasury and half its reputation; its check stops counting. If the provider misses its own
//!   deadline, the job's checks are void.
//!
//! ### Why cheating does not pay
//!
//! Let `P` be a job's price, `c <= P` the compute a provider saves by returning a wrong result
//! instead of doing the work, `p = verify_bps / 10000` and `S = min(S_job, stake)`. With
//! an honest majority among the drawn verifiers (by stake), a checked wrong chat result is
//! caught with certainty, so one cheated job changes the cheater's wealth by `+c` unchecked
//! and by `c - (P - fee) - S` checked. Its expected value is negative when
//!
//! ```text
//! p * (P - fee + S) > c,    for which  p * S >= P  suffices.
//! ```
//!
//! The chain makes `p * S >= 2P` hold for every job: `S_job >= m * escrow / p >= 2P / p`, and
//! a provider is **assigned a job, or drawn to verify it, only if its stake covers `S_job`**
//! (and the minimum provider stake), and cannot unbond below it while the job is open, so
//! `S = S_job` unless penalties on other jobs have taken the stake meanwhile. For escrows up to `p * fraud_slash / m` (50,000 with the defaults, `p = 10%`
//! and `fraud_slash = 1,000,000` = the default minimum provider stake) the slash is the flat
//! `fraud_slash`; above it grows with the job, so a rising price never makes cheating pay (a
//! flat slash did: `plexus sim --jobs-per-block 8` drives prices past it, BENCHMARKS.md). The
//! margin `m = 2` is for variance: at `m = 1` cheating is close to break-even on expectation
//! and a cheater whose first checks miss it by luck ends ahead (6 of 20 seeds in that sim). A job no serving provider has the
//! stake for waits and is refunded at `queue_timeout`, with that reason, and is not counted
//! as demand by the price: the value the network takes on is bounded by the stake securing
//! it ([`max_secured_escrow`]; the node reports it per provider as `max_job_escrow`). One proven fraud also drops the provider's reputation to 1%, so its later
//! assignments all but stop. What is left is
//! variance: a provider that cheats on `k` jobs escapes every check with probability
//! `(1 - p)^k` (0.5% for `k = 50`); `plexus sim` measures both. Verification costs about `p`
//! extra compute (plus `dispute_verifiers` re-runs per dispute), which the protocol fee funds
//! when `protocol_fee_bps >= verify_bps * (1 - fee)` (10% and 10% by default).
//!
//! Limits: the embedding verdict is the verifier's own claim, so a lazy verifier that always
//! agrees without re-running is not caught, and while it is drawn a wrong embedding passes as
//! if unchecked (a chat agreement must match the provider's hash, so it cannot guess); the
//! dispute quorum sees the
//! provider's revealed output, so its safety rests on an honest majority of the drawn stake;
//! the block seed could be ground by a proposer (a threshold VRF would remove that).
//!
//! ## Pricing
//!
//! After assignment, each model's base price moves toward a target utilization of its
//! registered capacity (EIP-1559-like, [`next_base_price`]): with `demand` = assigned jobs +
//! queued jobs that can afford the current base price, and `capacity` = the capacity of
//! eligible, unpaused providers serving it, the price moves by
//! `price * |demand - target| / (target * price_step_divisor)` where
//! `target = capacity * target_utilization_bps / 10000`, at most `price / price_step_divisor`
//! per block, at least 1 upward, never below `min_price`. With no capacity the price holds
//! while jobs wait and falls when idle. So the price rises under a burst and decays after.
//!
//! ## Market invariants
//!
//! - `escrow == sum(job.escrow)` over jobs in the state, checked after every block.
//! - A provider's `active_jobs` counts its assigned jobs (work in progress, bounded by its
//!   capacity when assigned), `unsettled_jobs` its committed and revealed ones; a model's
//!   `active_jobs` its assigned jobs and `queued_jobs` its queued ones.
//! - Every queued, assigned or committed job has exactly one deadline entry; every revealed
//!   job one settlement entry.
//! - A job's provider reveal is held back while its spot check is uncommitted; a revealed
//!   job settles only when none of its checks is pending and no dispute is open.
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
//! 4. the market's end-of-block work runs: deadlines, verifiers' deadlines, spot checks,
//!    disputes, settlements, assignment, prices
//!    ([Job market](#job-market)), seeded by the block's `seed`;
//! 5. the invariant is checked. A violation is a ledger bug ([`LedgerError`]), and the state is
//!    restored to exactly what it was before the call (the block keeps an undo log of the
//!    accounts it wrote and a copy of the market).
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
//! sum(balances) + sum(stakes) + sum(unbonding amounts) + escrow + treasury == supply
//! ```
//!
//! and `supply` changes only by burns: the part of a dispute's slash not paid as reward
//! ([`Event::DisputeResolved`]`.burned`). Fees and penalties move tokens to the treasury,
//! verification pay moves them out of it, stake and unbonding move them within an account,
//! escrow holds a job's payment between post and settlement; nothing creates tokens.
//!
//! # State root
//!
//! [`State::state_root`] is SHA-256 of the following bytes. Integers are fixed-width
//! big-endian; `len` and counts are `u64` big-endian; addresses are their 32 raw bytes.
//!
//! ```text
//! "_PLEXUS_STATE_V4"                        16 bytes, domain separation
//! len(chain_id) u64 || chain_id             UTF-8
//! height u64
//! params                                    see below
//! supply u128
//! treasury u128
//! n_accounts u64
//! n_accounts times, in ascending address order (byte-wise):
//!     address [32] || balance u128 || nonce u64 || stake u128
//!     n_entries u64
//!     n_entries times, in ascending release height:
//!         amount u128 || release_height u64
//! escrow u128 || next_queue_seq u64
//! n_models u64, in ascending hash order:
//!     hash [32] || len(name) u64 || name || kind u8 || unit u8 || min_price u128
//!     || blocks_per_1000_units u64 || base_price u128 || active_jobs u32 || queued_jobs u32
//! n_providers u64, in ascending address order:
//!     address [32] || n u64 || model hashes [32]*n || capacity u32 || len(region) u64
//!     || region || price_floor u128 || len(endpoint) u64 || endpoint || paused u8
//!     || reputation u32 || active_jobs u32 || unsettled_jobs u32
//! n_jobs u64, in ascending id order:
//!     len u64 (32) || id || owner [32] || model [32] || input_hash [32] || input_size u32
//!     || max_units u32 || max_unit_price u128 || len(region) u64 || region || escrow u128
//!     || posted_at u64 || attempts u32 || n u64 || tried addresses [32]*n || phase u8
//!     || queue_seq u64 || provider opt || unit_price u128 || assigned_at u64 || deadline u64
//!     || commitment opt || committed_at u64 || output_hash opt || output_size u32
//!     || salt opt || units u32 || receipt_signature opt (64) || revealed_at u64
//!     || settle_at u64 || n_checks u64 || checks || disputed u8
//!     check: verifier [32] || dispute u8 || deadline u64 || commitment opt
//!     || output_hash opt || agrees u8 (0 none, 1 false, 2 true) || missed u8
//! ```
//!
//! `opt` is `0` for none or `1 ||` the bytes; `phase` is 0 queued, 1 assigned, 2 committed,
//! 3 revealed. `params` is, in order: `min_fee u128, unbonding_delay u64,
//! min_provider_stake u128, commit_timeout u64, reveal_timeout u64, challenge_window u64,
//! miss_penalty u128, protocol_fee_bps u64, target_utilization_bps u64, price_step_divisor
//! u64, max_job_attempts u32, queue_timeout u64, max_payload_size u32, max_queued_jobs u32,
//! verify_bps u64, dispute_verifiers u32, fraud_slash u128, slash_reward_bps u64,
//! embedding_tolerance_micros u32`.
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
//! "_PLEXUS_GENESIS_V4"                      18 bytes, domain separation
//! len(chain_id) u64 || chain_id
//! params                                    as in the state root
//! n_accounts u64
//! n_accounts times, in the order listed: address [32] || balance u128 || stake u128
//! n_models u64
//! n_models times, in the order listed:
//!     hash [32] || len(name) u64 || name || kind u8 || unit u8 || min_price u128
//!     || blocks_per_1000_units u64
//! ```

mod encode;
mod error;
mod genesis;
mod market;
mod state;

pub use error::{LedgerError, TxError};
pub use genesis::{Genesis, GenesisAccount, GenesisModel, Params, defaults};
pub use market::{
    Check, Event, FRAUD_SLASH_MARGIN, Job, MAX_PROVIDER_CAPACITY, MAX_REPUTATION, MIN_REPUTATION,
    Model, Phase, Provider, REPUTATION_GAIN, job_fraud_slash, max_secured_escrow, next_base_price,
};
pub use state::{Account, BlockOutcome, MAX_UNBONDING_ENTRIES, Queued, State, Unbonding, cost};

#[cfg(test)]
mod market_tests;
#[cfg(test)]
mod tests;
