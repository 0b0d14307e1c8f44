use crate::encode::Encoder;
use crate::market::{Event, Market, MarketOp};
use crate::{Genesis, LedgerError, Params, TxError};
use plexus_types::{
    Action, Address, Amount, Digest, Height, JobId, Nonce, Receipt, Signature, SignedTransaction,
    Transaction, limits,
};
use std::collections::{BTreeMap, BTreeSet};

/// Domain separation for [`State::state_root`].
const STATE_NAMESPACE: &[u8] = b"_PLEXUS_STATE_V4";

/// Most unbonding entries one account may have pending (entries maturing at the same height
/// are merged, so this bounds the per-account state, not the amount).
pub const MAX_UNBONDING_ENTRIES: usize = 32;

/// One account. Unknown addresses read as the default (all zero).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    /// Spendable tokens.
    pub balance: Amount,
    /// The nonce the account's next transaction must carry.
    pub nonce: Nonce,
    /// Bonded tokens (collateral); not spendable.
    pub stake: Amount,
    /// Stake on its way back to the balance, in ascending `release_height`.
    pub unbonding: Vec<Unbonding>,
}

/// Stake that becomes withdrawable at `release_height`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unbonding {
    pub amount: Amount,
    pub release_height: Height,
}

/// The sender's transactions already queued in a mempool (for admission checks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Queued {
    /// How many: the next nonce expected is the account's nonce plus this.
    pub txs: u64,
    /// Sum of their [`cost`]s: already promised out of the balance.
    pub spend: Amount,
}

/// What executing one block did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutcome {
    pub height: Height,
    /// One entry per transaction, in block order; an `Err` was skipped and changed nothing.
    pub results: Vec<Result<(), TxError>>,
    /// The state root after the block.
    pub state_root: Digest,
    /// Fees paid to the treasury by the block's successful transactions.
    pub fees: Amount,
    /// What the block did to jobs and providers, in order (transactions first, then
    /// deadlines, settlements, assignments).
    pub events: Vec<Event>,
}

/// Amount moved out of the signer's spendable balance by this transaction: amount + fee for
/// transfer and bond, escrow (`max_units * max_unit_price`) + fee for a job post, the fee
/// alone for everything else. `None` on overflow.
pub fn cost(tx: &Transaction) -> Option<Amount> {
    match &tx.action {
        Action::Transfer { amount, .. } | Action::Bond { amount } => amount.checked_add(tx.fee),
        Action::PostJob {
            max_units,
            max_unit_price,
            ..
        } => max_unit_price
            .checked_mul(u128::from(*max_units))?
            .checked_add(tx.fee),
        Action::Unbond { .. }
        | Action::Withdraw
        | Action::RegisterModel { .. }
        | Action::RegisterProvider { .. }
        | Action::PauseProvider { .. }
        | Action::Deregister
        | Action::CommitResult { .. }
        | Action::RevealResult { .. }
        | Action::CommitCheck { .. }
        | Action::RevealCheck { .. } => Some(tx.fee),
    }
}

/// The writes a valid transaction makes, computed without touching the state, so that
/// applying it is a few infallible inserts.
struct Effects {
    signer: Address,
    signer_account: Account,
    credit: Option<(Address, Account)>,
    treasury: Amount,
    market: MarketOp,
}

#[derive(Clone, Copy)]
enum Signatures<'a> {
    Check,
    /// Transaction signatures this says were verified before are not checked again
    /// (receipt signatures still are).
    Known(&'a dyn Fn(&SignedTransaction) -> bool),
    #[cfg_attr(not(feature = "bench-unchecked-signatures"), allow(dead_code))]
    Skip,
}

static EMPTY: Account = Account {
    balance: Amount::ZERO,
    nonce: Nonce::new(0),
    stake: Amount::ZERO,
    unbonding: Vec::new(),
};

/// The whole ledger state. See the crate docs for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub(crate) chain_id: String,
    pub(crate) height: Height,
    pub(crate) params: Params,
    pub(crate) supply: Amount,
    pub(crate) treasury: Amount,
    /// Only accounts that differ from the default are stored.
    pub(crate) accounts: BTreeMap<Address, Account>,
    /// Models, providers, jobs and escrow.
    pub(crate) market: Market,
}

impl State {
    /// The state at height 0.
    pub fn from_genesis(g: &Genesis) -> Result<State, LedgerError> {
        if g.chain_id.is_empty() {
            return Err(LedgerError::EmptyChainId);
        }
        if g.chain_id.len() > limits::MAX_CHAIN_ID_LEN {
            return Err(LedgerError::ChainIdTooLong {
                len: g.chain_id.len(),
                max: limits::MAX_CHAIN_ID_LEN,
            });
        }
        if let Some(problem) = g.params.problem() {
            return Err(LedgerError::BadParams(problem));
        }
        let mut seen = BTreeSet::new();
        let mut accounts = BTreeMap::new();
        let mut supply = Amount::ZERO;
        for ga in &g.accounts {
            if !seen.insert(ga.address) {
                return Err(LedgerError::DuplicateAccount(ga.address));
            }
            supply = supply
                .checked_add(ga.balance)
                .and_then(|s| s.checked_add(ga.stake))
                .ok_or(LedgerError::SupplyOverflow)?;
            let account = Account {
                balance: ga.balance,
                stake: ga.stake,
                ..Account::default()
            };
            if account != Account::default() {
                accounts.insert(ga.address, account);
            }
        }
        let mut state = State {
            chain_id: g.chain_id.clone(),
            height: Height::new(0),
            params: g.params.clone(),
            supply,
            treasury: Amount::ZERO,
            accounts,
            market: Market::default(),
        };
        for model in &g.models {
            state.register_genesis_model(model)?;
        }
        state.check_invariant()?;
        Ok(state)
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Height of the last executed block; 0 at genesis.
    pub fn height(&self) -> Height {
        self.height
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The account at `a`; the default (all zero) if it has never been touched.
    pub fn account(&self, a: &Address) -> Account {
        self.account_ref(a).clone()
    }

    pub(crate) fn account_ref(&self, a: &Address) -> &Account {
        self.accounts.get(a).unwrap_or(&EMPTY)
    }

    /// Every stored account, in address order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// Tokens in existence; fixed at genesis in this version.
    pub fn supply(&self) -> Amount {
        self.supply
    }

    /// Fees collected so far.
    pub fn treasury(&self) -> Amount {
        self.treasury
    }

    /// sum(balances) + sum(stake) + sum(unbonding) + escrow + treasury, checked.
    pub fn holdings(&self) -> Result<Amount, LedgerError> {
        let mut total = self
            .treasury
            .checked_add(self.market.escrow)
            .ok_or(LedgerError::HoldingsOverflow)?;
        for account in self.accounts.values() {
            total = total
                .checked_add(account.balance)
                .and_then(|t| t.checked_add(account.stake))
                .ok_or(LedgerError::HoldingsOverflow)?;
            for entry in &account.unbonding {
                total = total
                    .checked_add(entry.amount)
                    .ok_or(LedgerError::HoldingsOverflow)?;
            }
        }
        Ok(total)
    }

    /// Conservation of tokens: holdings == supply, and the escrow total is the sum of the
    /// jobs' escrows.
    pub fn check_invariant(&self) -> Result<(), LedgerError> {
        self.check_market()?;
        let holdings = self.holdings()?;
        if holdings != self.supply {
            return Err(LedgerError::InvariantViolated {
                holdings,
                supply: self.supply,
            });
        }
        Ok(())
    }

    /// SHA-256 over the canonical encoding of the whole state (layout in the crate docs).
    pub fn state_root(&self) -> Digest {
        let mut enc = Encoder::new(STATE_NAMESPACE);
        enc.bytes(self.chain_id.as_bytes());
        enc.u64(self.height.get());
        self.params.encode(&mut enc);
        enc.amount(self.supply);
        enc.amount(self.treasury);
        enc.count(self.accounts.len());
        for (address, account) in &self.accounts {
            enc.address(address);
            enc.amount(account.balance);
            enc.u64(account.nonce.get());
            enc.amount(account.stake);
            enc.count(account.unbonding.len());
            for entry in &account.unbonding {
                enc.amount(entry.amount);
                enc.u64(entry.release_height.get());
            }
        }
        self.market.encode(&mut enc);
        enc.finish()
    }

    /// Would `tx` be admitted, given the sender's `queued` transactions? It is checked as if
    /// it executed in the next block (height `self.height() + 1`) after everything queued.
    /// Changes nothing.
    pub fn check_tx(&self, tx: &SignedTransaction, queued: Queued) -> Result<(), TxError> {
        let height = self.height.checked_next().ok_or(TxError::HeightOverflow)?;
        self.validate(tx, queued, height, Signatures::Check)
            .map(|_| ())
    }

    /// Execute `tx` at the current height (inside [`State::apply_block`], the block's
    /// height). Atomic: on error nothing changes.
    pub fn apply_tx(&mut self, tx: &SignedTransaction) -> Result<(), TxError> {
        let effects = self.validate(tx, Queued::default(), self.height, Signatures::Check)?;
        self.commit(effects, &mut Vec::new());
        Ok(())
    }

    /// Execute the block at `height` (which must be `self.height() + 1`): set the height,
    /// apply each transaction in order (a failing one is skipped and its error recorded),
    /// then check the invariant. On `Err` the state is exactly as before the call.
    ///
    /// `seed` is the chain's randomness for job assignment: the node passes the finalized
    /// block's digest.
    pub fn apply_block(
        &mut self,
        height: Height,
        seed: &Digest,
        txs: &[SignedTransaction],
    ) -> Result<BlockOutcome, LedgerError> {
        self.execute_block(height, seed, txs, Signatures::Check)
    }

    /// [`State::apply_block`] that does not verify again the transaction signatures `known`
    /// says were verified before, by the caller, of these exact bytes (a transaction's hash
    /// covers its signature, so a cache keyed by hash is sound). The outcome equals
    /// `apply_block`'s as long as `known` only names transactions whose signature verified.
    /// Receipt signatures are always checked. A node verifies each signature once: at
    /// admission or when it checks a proposal, not again at execution.
    pub fn apply_block_known(
        &mut self,
        height: Height,
        seed: &Digest,
        txs: &[SignedTransaction],
        known: &dyn Fn(&SignedTransaction) -> bool,
    ) -> Result<BlockOutcome, LedgerError> {
        self.execute_block(height, seed, txs, Signatures::Known(known))
    }

    /// [`State::apply_block`] **without verifying signatures**, to measure execution apart
    /// from signature cost. Only exists with the `bench-unchecked-signatures` feature; never
    /// enable it in a node: it accepts forged transactions.
    #[cfg(feature = "bench-unchecked-signatures")]
    pub fn apply_block_skipping_signatures_for_benchmarks(
        &mut self,
        height: Height,
        seed: &Digest,
        txs: &[SignedTransaction],
    ) -> Result<BlockOutcome, LedgerError> {
        self.execute_block(height, seed, txs, Signatures::Skip)
    }

    fn execute_block(
        &mut self,
        height: Height,
        seed: &Digest,
        txs: &[SignedTransaction],
        signatures: Signatures,
    ) -> Result<BlockOutcome, LedgerError> {
        let expected = self
            .height
            .checked_next()
            .ok_or(LedgerError::HeightOverflow)?;
        if height != expected {
            return Err(LedgerError::WrongHeight {
                got: height,
                expected,
            });
        }
        let prev_height = self.height;
        let prev_treasury = self.treasury;
        let prev_supply = self.supply;
        // The market is small next to the accounts; a copy is its undo log.
        let prev_market = (!self.market.is_empty()).then(|| self.market.clone());
        let mut events = Vec::new();
        // Pre-images of every account the block writes, so a failed invariant check can put
        // the state back without cloning all of it.
        let mut undo: BTreeMap<Address, Option<Account>> = BTreeMap::new();
        self.height = height;
        let mut results = Vec::with_capacity(txs.len());
        for tx in txs {
            match self.validate(tx, Queued::default(), height, signatures) {
                Ok(effects) => {
                    let touched = std::iter::once(effects.signer)
                        .chain(effects.credit.as_ref().map(|(to, _)| *to));
                    for address in touched {
                        undo.entry(address)
                            .or_insert_with(|| self.accounts.get(&address).cloned());
                    }
                    self.commit(effects, &mut events);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let fees = self
            .treasury
            .checked_sub(prev_treasury)
            .ok_or(LedgerError::HoldingsOverflow);
        let checked = fees.and_then(|fees| {
            self.end_block(seed, &mut undo, &mut events)?;
            self.check_invariant()?;
            Ok(fees)
        });
        match checked {
            Ok(fees) => Ok(BlockOutcome {
                height,
                results,
                state_root: self.state_root(),
                fees,
                events,
            }),
            Err(e) => {
                for (address, account) in undo {
                    match account {
                        Some(account) => self.accounts.insert(address, account),
                        None => self.accounts.remove(&address),
                    };
                }
                self.treasury = prev_treasury;
                self.supply = prev_supply;
                self.height = prev_height;
                self.market = prev_market.unwrap_or_default();
                Err(e)
            }
        }
    }

    fn commit(&mut self, effects: Effects, events: &mut Vec<Event>) {
        self.accounts.insert(effects.signer, effects.signer_account);
        if let Some((to, account)) = effects.credit {
            self.accounts.insert(to, account);
        }
        self.treasury = effects.treasury;
        self.apply_market_op(effects.market, events);
    }

    /// Every check, in the documented order, and the resulting writes. `height` is the
    /// height the transaction executes at.
    fn validate(
        &self,
        stx: &SignedTransaction,
        queued: Queued,
        height: Height,
        signatures: Signatures,
    ) -> Result<Effects, TxError> {
        let tx = &stx.tx;
        if tx.chain_id != self.chain_id {
            return Err(TxError::WrongChain {
                got: tx.chain_id.clone(),
                expected: self.chain_id.clone(),
            });
        }

        let account = self.account_ref(&tx.signer);
        let expected = account
            .nonce
            .get()
            .checked_add(queued.txs)
            .map(Nonce::new)
            .ok_or(TxError::NonceOverflow)?;
        if tx.nonce < expected {
            return Err(TxError::StaleNonce {
                got: tx.nonce,
                next: expected,
            });
        }
        if tx.nonce > expected {
            return Err(TxError::NonceGap {
                got: tx.nonce,
                expected,
            });
        }

        if tx.fee < self.params.min_fee {
            return Err(TxError::FeeTooLow {
                fee: tx.fee,
                min: self.params.min_fee,
            });
        }
        match &tx.action {
            Action::Transfer { amount, .. }
            | Action::Bond { amount }
            | Action::Unbond { amount }
                if amount.is_zero() =>
            {
                return Err(TxError::ZeroAmount);
            }
            Action::Transfer { to, .. } if *to == tx.signer => return Err(TxError::SelfTransfer),
            _ => {}
        }
        let need = cost(tx).ok_or(TxError::Overflow)?;

        let mut next = account.clone();
        next.nonce = account.nonce.checked_next().ok_or(TxError::NonceOverflow)?;
        // Tokens the action returns to the balance before the cost is taken (withdraw only).
        let mut income = Amount::ZERO;
        let mut credit = None;
        let mut market = MarketOp::None;
        // A receipt to verify with the transaction's signature (reveals only).
        let mut receipt: Option<(Receipt, &Signature)> = None;
        match &tx.action {
            Action::Transfer { to, amount } => {
                let mut recipient = self.account_ref(to).clone();
                recipient.balance = recipient
                    .balance
                    .checked_add(*amount)
                    .ok_or(TxError::Overflow)?;
                credit = Some((*to, recipient));
            }
            Action::Bond { amount } => {
                next.stake = next.stake.checked_add(*amount).ok_or(TxError::Overflow)?;
            }
            Action::Unbond { amount } => {
                next.stake =
                    next.stake
                        .checked_sub(*amount)
                        .ok_or(TxError::UnbondExceedsStake {
                            amount: *amount,
                            stake: account.stake,
                        })?;
                self.check_unbond_allowed(&tx.signer, next.stake)?;
                let release_height = height
                    .get()
                    .checked_add(self.params.unbonding_delay)
                    .map(Height::new)
                    .ok_or(TxError::HeightOverflow)?;
                match next.unbonding.last_mut() {
                    Some(last) if last.release_height == release_height => {
                        last.amount = last.amount.checked_add(*amount).ok_or(TxError::Overflow)?;
                    }
                    _ => {
                        if next.unbonding.len() >= MAX_UNBONDING_ENTRIES {
                            return Err(TxError::TooManyUnbondings {
                                limit: MAX_UNBONDING_ENTRIES,
                            });
                        }
                        next.unbonding.push(Unbonding {
                            amount: *amount,
                            release_height,
                        });
                    }
                }
            }
            Action::Withdraw => {
                let mut matured = 0usize;
                for entry in account.unbonding.iter() {
                    if entry.release_height <= height {
                        matured += 1;
                        income = income.checked_add(entry.amount).ok_or(TxError::Overflow)?;
                    }
                }
                if matured == 0 {
                    return Err(TxError::NothingToWithdraw {
                        height,
                        next: account.unbonding.iter().map(|e| e.release_height).min(),
                    });
                }
                next.unbonding.retain(|e| e.release_height > height);
            }
            Action::RegisterModel {
                hash,
                name,
                kind,
                unit,
                min_price,
                blocks_per_1000_units,
            } => {
                market = self.check_register_model(
                    *hash,
                    name,
                    *kind,
                    *unit,
                    *min_price,
                    *blocks_per_1000_units,
                )?
            }
            Action::RegisterProvider {
                models,
                capacity,
                region,
                price_floor,
                endpoint,
            } => {
                market = self.check_register_provider(
                    &tx.signer,
                    account.stake,
                    models,
                    *capacity,
                    region,
                    *price_floor,
                    endpoint,
                )?
            }
            Action::PauseProvider { paused } => market = self.check_pause(&tx.signer, *paused)?,
            Action::Deregister => market = self.check_deregister(&tx.signer)?,
            Action::PostJob {
                model,
                input_hash,
                input_size,
                max_units,
                max_unit_price,
                region,
            } => {
                market = self.check_post(
                    JobId::new(&tx.signer, tx.nonce),
                    tx.signer,
                    height,
                    *model,
                    *input_hash,
                    *input_size,
                    *max_units,
                    *max_unit_price,
                    region,
                )?
            }
            Action::CommitResult { job, commitment } => {
                market = self.check_commit(&tx.signer, job, *commitment, height)?
            }
            Action::RevealResult {
                job,
                output_hash,
                output_size,
                salt,
                units,
                receipt_signature,
            } => {
                let (op, r) = self.check_reveal(
                    &tx.signer,
                    job,
                    *output_hash,
                    *output_size,
                    *salt,
                    *units,
                    receipt_signature,
                    height,
                )?;
                market = op;
                receipt = Some((r, receipt_signature));
            }
            Action::CommitCheck { job, commitment } => {
                market = self.check_commit_check(&tx.signer, job, *commitment, height)?
            }
            Action::RevealCheck {
                job,
                output_hash,
                salt,
                agrees,
            } => market = self.check_reveal_check(&tx.signer, job, *output_hash, *salt, *agrees)?,
        }

        let spendable = account
            .balance
            .checked_add(income)
            .ok_or(TxError::Overflow)?;
        let have = spendable.checked_sub(queued.spend).unwrap_or(Amount::ZERO);
        if have < need {
            return Err(TxError::InsufficientFunds { need, have });
        }
        next.balance = spendable
            .checked_sub(need)
            .ok_or(TxError::InsufficientFunds {
                need,
                have: spendable,
            })?;
        // The amount itself leaves the balance; for a transfer it is credited above, for a
        // bond it was added to the stake above.
        let treasury = self.treasury.checked_add(tx.fee).ok_or(TxError::Overflow)?;

        // Last: the only expensive checks.
        let (check_signature, check_receipt) = match signatures {
            Signatures::Check => (true, true),
            Signatures::Known(known) => (!known(stx), true),
            Signatures::Skip => (false, false),
        };
        if check_signature && !stx.verify_signature() {
            return Err(TxError::InvalidSignature);
        }
        if check_receipt
            && let Some((receipt, signature)) = receipt
            && !receipt.verify(signature)
        {
            return Err(TxError::InvalidReceipt);
        }
        Ok(Effects {
            signer: tx.signer,
            signer_account: next,
            credit,
            treasury,
            market,
        })
    }
}
