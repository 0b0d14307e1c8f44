//! The job market, driven block by block: lifecycle, exact accounting, deadlines, refunds,
//! pricing, region preference and every error a job action can hit.

use crate::*;
use commonware_cryptography::Signer;
use plexus_types::{
    Action, Address, Amount, Digest, JobId, ModelKind, Nonce, PrivateKey, Receipt,
    SignedTransaction, Transaction, WorkUnit, commitment, key_from_seed, sha256,
};

const CHAIN: &str = "plexus-market";
const FEE: u128 = 10;
const MIN_STAKE: u128 = 1_000;
const PENALTY: u128 = 300;
const MIN_PRICE: u128 = 100;
const FRAUD_SLASH: u128 = 800;

fn amt(v: u128) -> Amount {
    Amount::new(v)
}

fn addr(key: &PrivateKey) -> Address {
    Address::from(&key.public_key())
}

fn model_hash() -> Digest {
    sha256(&[b"model-embed"])
}

/// A chain with one embedding model, a user and three providers (staked, not registered).
struct Net {
    state: State,
    user: PrivateKey,
    providers: Vec<PrivateKey>,
    nonces: std::collections::BTreeMap<Address, u64>,
}

impl Net {
    fn new() -> Self {
        Self::build(3, ModelKind::Embedding, 0)
    }

    /// `n` providers, a model of `kind`, spot checks with probability `verify_bps`.
    fn build(n: u64, kind: ModelKind, verify_bps: u64) -> Self {
        let user = key_from_seed(10);
        let providers: Vec<PrivateKey> = (11..11 + n).map(key_from_seed).collect();
        let mut params = Params::new(amt(FEE), 5);
        params.min_provider_stake = amt(MIN_STAKE);
        params.miss_penalty = amt(PENALTY);
        params.verify_bps = verify_bps;
        params.fraud_slash = amt(FRAUD_SLASH);
        params.commit_timeout = 3;
        params.reveal_timeout = 3;
        params.challenge_window = 2;
        params.queue_timeout = 4;
        params.max_payload_size = 1000;
        let mut accounts = vec![GenesisAccount {
            address: addr(&user),
            balance: amt(1_000_000),
            stake: Amount::ZERO,
        }];
        for p in &providers {
            accounts.push(GenesisAccount {
                address: addr(p),
                balance: amt(10_000),
                stake: amt(MIN_STAKE),
            });
        }
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            params,
            accounts,
            models: vec![GenesisModel {
                hash: model_hash(),
                name: "embed".into(),
                kind,
                unit: WorkUnit::InputTokens,
                min_price: amt(MIN_PRICE),
                // Deadlines are commit_timeout alone, except where a test sets a speed.
                blocks_per_1000_units: 0,
            }],
        };
        Self {
            state: State::from_genesis(&genesis).unwrap(),
            user,
            providers,
            nonces: Default::default(),
        }
    }

    fn tx(&mut self, key: &PrivateKey, action: Action) -> SignedTransaction {
        let n = self.nonces.entry(addr(key)).or_default();
        let tx = Transaction {
            chain_id: CHAIN.into(),
            signer: addr(key),
            nonce: Nonce::new(*n),
            fee: amt(FEE),
            action,
        }
        .sign(key);
        *n += 1;
        tx
    }

    /// Execute one block; every transaction must succeed. Checks the invariant.
    fn block(&mut self, txs: Vec<SignedTransaction>) -> BlockOutcome {
        let out = self.block_allowing_failures(txs);
        for (i, r) in out.results.iter().enumerate() {
            assert!(r.is_ok(), "tx {i} failed: {r:?}");
        }
        out
    }

    fn block_allowing_failures(&mut self, txs: Vec<SignedTransaction>) -> BlockOutcome {
        let h = self.state.height().checked_next().unwrap();
        let seed = sha256(&[b"seed", &h.get().to_be_bytes()]);
        let out = self.state.apply_block(h, &seed, &txs).unwrap();
        self.state.check_invariant().unwrap();
        out
    }

    /// A failing transaction does not advance the signer's nonce: take it back.
    fn expect_err(&mut self, key: &PrivateKey, action: Action) -> TxError {
        let tx = self.tx(key, action);
        let err = self.state.check_tx(&tx, Queued::default()).unwrap_err();
        *self.nonces.get_mut(&addr(key)).unwrap() -= 1;
        err
    }

    fn register(&mut self, i: usize, capacity: u32, region: &str, floor: u128) {
        let key = self.providers[i].clone();
        let tx = self.tx(&key, register_action(capacity, region, floor));
        self.block(vec![tx]);
    }

    fn post(&mut self, max_units: u32, max_unit_price: u128) -> (JobId, SignedTransaction) {
        self.post_in(max_units, max_unit_price, "")
    }

    fn post_in(
        &mut self,
        max_units: u32,
        max_unit_price: u128,
        region: &str,
    ) -> (JobId, SignedTransaction) {
        let user = self.user.clone();
        let nonce = *self.nonces.get(&addr(&user)).unwrap_or(&0);
        let tx = self.tx(&user, post_action(max_units, max_unit_price, region));
        (JobId::new(&addr(&user), Nonce::new(nonce)), tx)
    }

    fn job(&self, id: &JobId) -> Job {
        self.state.job(id).cloned().expect("job in state")
    }

    fn provider_key(&self, a: Address) -> PrivateKey {
        self.providers
            .iter()
            .find(|k| addr(k) == a)
            .cloned()
            .unwrap()
    }

    /// The assigned provider's commit for `output`.
    fn commit(&mut self, id: &JobId, output: &[u8]) -> SignedTransaction {
        let job = self.job(id);
        let key = self.provider_key(job.provider.unwrap());
        let c = commitment(id, &sha256(&[output]), &salt());
        self.tx(
            &key,
            Action::CommitResult {
                job: *id,
                commitment: c,
            },
        )
    }

    /// The assigned provider's reveal of `output` billing `units`.
    fn reveal(&mut self, id: &JobId, output: &[u8], units: u32) -> SignedTransaction {
        let job = self.job(id);
        let key = self.provider_key(job.provider.unwrap());
        let action = reveal_action(&job, &key, output, units);
        self.tx(&key, action)
    }
}

fn salt() -> Digest {
    sha256(&[b"salt"])
}

fn register_action(capacity: u32, region: &str, floor: u128) -> Action {
    Action::RegisterProvider {
        models: vec![model_hash()],
        capacity,
        region: region.into(),
        price_floor: amt(floor),
        endpoint: "http://127.0.0.1:9".into(),
    }
}

fn post_action(max_units: u32, max_unit_price: u128, region: &str) -> Action {
    Action::PostJob {
        model: model_hash(),
        input_hash: sha256(&[b"input"]),
        input_size: 5,
        max_units,
        max_unit_price: amt(max_unit_price),
        region: region.into(),
    }
}

fn reveal_action(job: &Job, key: &PrivateKey, output: &[u8], units: u32) -> Action {
    let output_hash = sha256(&[output]);
    let receipt = Receipt {
        chain_id: CHAIN.into(),
        job: job.id,
        model: job.model,
        input_hash: job.input_hash,
        output_hash,
        output_size: output.len() as u32,
        units,
        unit_price: job.unit_price,
        provider: addr(key),
    };
    Action::RevealResult {
        job: job.id,
        output_hash,
        output_size: output.len() as u32,
        salt: salt(),
        units,
        receipt_signature: receipt.sign(key),
    }
}

#[test]
fn job_lifecycle_pays_exactly_and_settles_without_anyone() {
    let mut net = Net::new();
    net.register(0, 4, "", 0);
    let user = addr(&net.user);
    let provider = addr(&net.providers[0]);
    let user_before = net.state.account(&user).balance;
    let provider_before = net.state.account(&provider).balance;

    // Post: escrow 10 units * 150 locked with the fee; assigned in the same block.
    let (id, post) = net.post(10, 150);
    let out = net.block(vec![post]);
    assert!(out.events.contains(&Event::JobPosted { job: id }));
    assert!(out.events.contains(&Event::JobAssigned {
        job: id,
        provider,
        unit_price: amt(MIN_PRICE),
    }));
    assert_eq!(net.state.escrow(), amt(1_500));
    assert_eq!(
        net.state.account(&user).balance,
        user_before.checked_sub(amt(1_500 + FEE)).unwrap()
    );
    let job = net.job(&id);
    assert_eq!(job.phase, Phase::Assigned);
    assert_eq!(net.state.provider(&provider).unwrap().active_jobs, 1);

    // Commit, then reveal in a later block.
    let c = net.commit(&id, b"vector");
    net.block(vec![c]);
    assert_eq!(net.job(&id).phase, Phase::Committed);
    let r = net.reveal(&id, b"vector", 7);
    let out = net.block(vec![r]);
    assert!(out.events.contains(&Event::JobRevealed { job: id }));
    let job = net.job(&id);
    assert_eq!(job.phase, Phase::Revealed);
    assert_eq!(net.state.provider(&provider).unwrap().active_jobs, 0);
    assert_eq!(net.state.provider(&provider).unwrap().unsettled_jobs, 1);

    // Settlement after the challenge window, with no transaction.
    net.block(vec![]);
    assert_eq!(net.job(&id).phase, Phase::Revealed);
    let out = net.block(vec![]);
    let settled = out
        .events
        .iter()
        .find_map(|e| match e {
            Event::JobSettled {
                job,
                payment,
                fee,
                refund,
            } => Some((job.clone(), *payment, *fee, *refund)),
            _ => None,
        })
        .expect("settled");
    // 7 units at the base price 100; 10% protocol fee.
    assert_eq!(settled.1, amt(700));
    assert_eq!(settled.2, amt(70));
    assert_eq!(settled.3, amt(800));
    assert_eq!(settled.0.id, id);
    assert!(net.state.job(&id).is_none());
    assert_eq!(net.state.escrow(), Amount::ZERO);
    assert_eq!(
        net.state.account(&user).balance,
        user_before.checked_sub(amt(700 + FEE)).unwrap()
    );
    // The provider paid two fees (commit, reveal) and earned 700 - 70.
    assert_eq!(
        net.state.account(&provider).balance,
        provider_before
            .checked_add(amt(630))
            .and_then(|b| b.checked_sub(amt(2 * FEE)))
            .unwrap()
    );
    assert_eq!(net.state.provider(&provider).unwrap().unsettled_jobs, 0);
    // The signed receipt verifies from the final record alone.
    let job = settled.0;
    let receipt = job.receipt(
        CHAIN,
        provider,
        job.output_hash.unwrap(),
        job.output_size,
        job.units,
    );
    assert!(receipt.verify(job.receipt_signature.as_ref().unwrap()));
}

#[test]
fn missed_commit_is_penalised_and_reassigned_then_refunded() {
    let mut net = Net::new();
    net.register(0, 1, "", 0);
    net.register(1, 1, "", 0);
    let user = addr(&net.user);
    let user_before = net.state.account(&user).balance;
    let treasury_before = net.state.treasury();
    let (id, post) = net.post(3, 100);
    net.block(vec![post]);
    let first = net.job(&id).provider.unwrap();
    let first_stake = net.state.account(&first).stake;

    // Nobody commits: three blocks later the first provider is penalised.
    net.block(vec![]);
    net.block(vec![]);
    let out = net.block(vec![]);
    assert!(out.events.contains(&Event::ProviderPenalised {
        provider: first,
        job: id,
        amount: amt(PENALTY),
    }));
    assert_eq!(
        net.state.account(&first).stake,
        first_stake.checked_sub(amt(PENALTY)).unwrap()
    );
    assert_eq!(
        net.state.provider(&first).unwrap().reputation,
        MAX_REPUTATION / 2
    );
    // Reassigned in the same block to the other provider, never the same one.
    let job = net.job(&id);
    assert_eq!(job.phase, Phase::Assigned);
    assert_ne!(job.provider, Some(first));
    assert_eq!(job.tried, vec![first]);
    let second = job.provider.unwrap();

    // The second also misses; no third provider serves the model, so the job waits in the
    // queue and is refunded in full at the queue timeout.
    for _ in 0..3 {
        net.block(vec![]);
    }
    assert!(net.state.account(&second).stake < amt(MIN_STAKE));
    assert_eq!(net.job(&id).phase, Phase::Queued);
    let mut refunded = None;
    for _ in 0..4 {
        let out = net.block(vec![]);
        refunded = refunded.or(out.events.into_iter().find_map(|e| match e {
            Event::JobRefunded { amount, .. } => Some(amount),
            _ => None,
        }));
    }
    assert_eq!(refunded, Some(amt(300)));
    assert!(net.state.job(&id).is_none());
    // The user paid only the posting fee; the penalties went to the treasury.
    assert_eq!(
        net.state.account(&user).balance,
        user_before.checked_sub(amt(FEE)).unwrap()
    );
    assert_eq!(
        net.state.treasury(),
        treasury_before.checked_add(amt(FEE + 2 * PENALTY)).unwrap()
    );
}

#[test]
fn slow_work_stretches_the_commit_deadline() {
    let mut net = Net::new();
    net.register(0, 4, "", 0);
    net.register(1, 4, "", 0);
    // 100 blocks per 1000 units: 95 units get 9 blocks more than commit_timeout, 5 none.
    net.state
        .market
        .models
        .get_mut(&model_hash())
        .unwrap()
        .blocks_per_1000_units = 100;
    let (small, post_small) = net.post(5, MIN_PRICE);
    let (big, post_big) = net.post(95, MIN_PRICE);
    net.block(vec![post_small, post_big]);
    let h = net.state.height().get();
    let timeout = net.state.params.commit_timeout;
    assert_eq!(net.job(&small).deadline.get(), h + timeout);
    assert_eq!(net.job(&big).deadline.get(), h + timeout + 9);
    // The big job survives past the plain timeout, then is missed at its own deadline.
    let first = net.job(&big).provider.unwrap();
    let missed = |events: &[Event]| {
        events.iter().any(|e| {
            matches!(e, Event::ProviderPenalised { job, provider, .. } if *job == big && *provider == first)
        })
    };
    for _ in 0..timeout + 8 {
        assert!(
            !missed(&net.block(vec![]).events),
            "missed before its deadline"
        );
    }
    assert!(
        missed(&net.block(vec![]).events),
        "missed at its stretched deadline"
    );
}

#[test]
fn missed_reveal_is_penalised_too() {
    let mut net = Net::new();
    net.register(0, 1, "", 0);
    let (id, post) = net.post(3, 100);
    net.block(vec![post]);
    let c = net.commit(&id, b"out");
    net.block(vec![c]);
    let provider = net.job(&id).provider.unwrap();
    net.block(vec![]);
    net.block(vec![]);
    let out = net.block(vec![]);
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::ProviderPenalised { provider: p, .. } if *p == provider))
    );
    // Only one provider, and it was tried: the job waits.
    assert_eq!(net.job(&id).phase, Phase::Queued);
}

#[test]
fn job_with_no_provider_waits_then_is_refunded_in_full() {
    let mut net = Net::new();
    let user = addr(&net.user);
    let before = net.state.account(&user).balance;
    let (id, post) = net.post(2, 100);
    net.block(vec![post]);
    assert_eq!(net.job(&id).phase, Phase::Queued);
    // A provider that registers while the job waits gets it.
    net.register(0, 1, "", 0);
    assert_eq!(net.job(&id).phase, Phase::Assigned);

    // Capacity 1 in use is over the 50% target: the price has risen; pay more.
    let (id2, post) = net.post(2, 1_000);
    net.block(vec![post]);
    assert_eq!(net.job(&id2).phase, Phase::Queued, "capacity 1 is taken");
    for _ in 0..4 {
        net.block(vec![]);
    }
    assert!(
        net.state.job(&id2).is_none(),
        "refunded at the queue timeout"
    );
    let after = net.state.account(&user).balance;
    // Two posting fees and the first job's escrow (still assigned or requeued).
    let first_escrow = net.state.job(&id).map_or(Amount::ZERO, |j| j.escrow);
    assert_eq!(
        after,
        before
            .checked_sub(amt(2 * FEE))
            .and_then(|b| b.checked_sub(first_escrow))
            .unwrap()
    );
}

#[test]
fn post_errors_change_nothing() {
    let mut net = Net::new();
    let user = net.user.clone();
    let before = net.state.clone();
    let unknown = Action::PostJob {
        model: sha256(&[b"nope"]),
        input_hash: sha256(&[b"i"]),
        input_size: 5,
        max_units: 1,
        max_unit_price: amt(100),
        region: String::new(),
    };
    assert!(matches!(
        net.expect_err(&user, unknown),
        TxError::UnknownModel(_)
    ));
    let mut big = post_action(1, 100, "");
    if let Action::PostJob { input_size, .. } = &mut big {
        *input_size = 1001;
    }
    assert!(matches!(
        net.expect_err(&user, big),
        TxError::PayloadTooLarge {
            size: 1001,
            max: 1000
        }
    ));
    assert!(matches!(
        net.expect_err(&user, post_action(1, 99, "")),
        TxError::MaxPriceBelowBase { .. }
    ));
    assert!(matches!(
        net.expect_err(&user, post_action(0, 100, "")),
        TxError::InvalidJob(_)
    ));
    assert!(matches!(
        net.expect_err(&user, post_action(u32::MAX, 1_000_000, "")),
        TxError::InsufficientFunds { .. }
    ));
    assert!(matches!(
        net.expect_err(&user, post_action(2, u128::MAX, "")),
        TxError::Overflow
    ));
    // The same transactions in a block are skipped and charge nothing.
    let txs = vec![
        net.tx(&user, post_action(1, 99, "")),
        net.tx(&user, post_action(0, 100, "")),
    ];
    let out = net.block_allowing_failures(txs);
    assert!(out.results.iter().all(Result::is_err));
    assert_eq!(
        net.state.account(&addr(&user)),
        before.account(&addr(&user))
    );
    assert_eq!(net.state.escrow(), Amount::ZERO);
}

#[test]
fn commit_and_reveal_errors() {
    let mut net = Net::new();
    net.register(0, 2, "", 0);
    net.register(1, 2, "", 0);
    let (id, post) = net.post(5, 100);
    net.block(vec![post]);
    let assigned = net.job(&id).provider.unwrap();
    let key = net.provider_key(assigned);
    let other = net
        .providers
        .iter()
        .find(|k| addr(k) != assigned)
        .cloned()
        .unwrap();
    let c = commitment(&id, &sha256(&[b"out"]), &salt());
    // Only the assigned provider may commit.
    assert!(matches!(
        net.expect_err(
            &other,
            Action::CommitResult {
                job: id,
                commitment: c
            }
        ),
        TxError::NotAssigned(_)
    ));
    assert!(matches!(
        net.expect_err(
            &key,
            Action::CommitResult {
                job: JobId::from_bytes([9; 32]),
                commitment: c
            }
        ),
        TxError::UnknownJob(_)
    ));
    // Reveal before commit.
    let job = net.job(&id);
    assert!(matches!(
        net.expect_err(&key, reveal_action(&job, &key, b"out", 1)),
        TxError::WrongPhase { .. }
    ));
    // A commit and its reveal in the same block: the reveal fails.
    let commit = net.tx(
        &key,
        Action::CommitResult {
            job: id,
            commitment: c,
        },
    );
    let mut job_after = job.clone();
    job_after.phase = Phase::Committed;
    let reveal = net.tx(&key, reveal_action(&job, &key, b"out", 1));
    let out = net.block_allowing_failures(vec![commit, reveal]);
    assert!(out.results[0].is_ok());
    assert_eq!(out.results[1], Err(TxError::RevealTooEarly));
    *net.nonces.get_mut(&addr(&key)).unwrap() -= 1;
    let job = net.job(&id);
    // A different output than committed.
    assert_eq!(
        net.expect_err(&key, reveal_action(&job, &key, b"other", 1)),
        TxError::CommitmentMismatch
    );
    // Billing more units than the job allows, or none.
    assert!(matches!(
        net.expect_err(&key, reveal_action(&job, &key, b"out", 6)),
        TxError::InvalidUnits { units: 6, max: 5 }
    ));
    assert!(matches!(
        net.expect_err(&key, reveal_action(&job, &key, b"out", 0)),
        TxError::InvalidUnits { .. }
    ));
    // A receipt signed for a different price.
    let mut cheat = job.clone();
    cheat.unit_price = amt(1);
    assert_eq!(
        net.expect_err(&key, reveal_action(&cheat, &key, b"out", 1)),
        TxError::InvalidReceipt
    );
    // The honest reveal goes through.
    let r = net.reveal(&id, b"out", 5);
    net.block(vec![r]);
    assert_eq!(net.job(&id).phase, Phase::Revealed);
}

#[test]
fn price_rises_under_load_and_falls_back_when_idle() {
    let mut net = Net::new();
    net.register(0, 2, "", 0);
    let base = |net: &Net| net.state.model(&model_hash()).unwrap().base_price;
    assert_eq!(base(&net), amt(MIN_PRICE));
    // A burst of 6 jobs against capacity 2 (target 1): the price climbs block after block.
    let mut posts = Vec::new();
    for _ in 0..6 {
        posts.push(net.post(1, 10_000).1);
    }
    net.block(posts);
    let mut last = base(&net);
    assert!(last > amt(MIN_PRICE));
    for _ in 0..2 {
        net.block(vec![]);
        assert!(base(&net) > last, "still over target");
        last = base(&net);
    }
    // Bounded step: at most 1/8 per block.
    assert!(last <= amt(MIN_PRICE * 9 * 9 * 9 / (8 * 8 * 8) + 1));
    // Jobs time out and drain (penalties, refunds); once idle it falls back to the minimum.
    for _ in 0..60 {
        net.block(vec![]);
    }
    assert_eq!(net.state.jobs().count(), 0);
    assert_eq!(base(&net), amt(MIN_PRICE));
}

#[test]
fn next_base_price_table() {
    let p = |price, demand, capacity| {
        next_base_price(amt(price), amt(100), demand, capacity, 5_000, 8).get()
    };
    // At target: unchanged.
    assert_eq!(p(1_000, 5, 10), 1_000);
    // Full: +12.5% (the maximum step).
    assert_eq!(p(1_000, 10, 10), 1_125);
    // Twice full is still bounded by the step.
    assert_eq!(p(1_000, 20, 10), 1_125);
    // Idle: -12.5%, never below the minimum.
    assert_eq!(p(1_000, 0, 10), 875);
    assert_eq!(p(101, 0, 10), 100);
    // Slightly over target moves a little, and at least 1.
    assert_eq!(p(1_000, 6, 10), 1_025);
    assert_eq!(p(100, 500_001, 1_000_000), 101);
    // No capacity at all: holds while jobs wait, falls when idle.
    assert_eq!(p(1_000, 1, 0), 1_000);
    assert_eq!(p(1_000, 0, 0), 875);
}

#[test]
fn region_is_preferred_when_someone_serves_it() {
    let mut net = Net::new();
    net.state.params.commit_timeout = 1_000;
    net.register(0, 100, "eu", 0);
    net.register(1, 100, "us", 0);
    net.register(2, 100, "us", 0);
    let eu = addr(&net.providers[0]);
    for _ in 0..10 {
        let (id, post) = net.post_in(1, 100, "eu");
        net.block(vec![post]);
        assert_eq!(net.job(&id).provider, Some(eu));
    }
    // A region nobody serves falls back to everyone.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (id, post) = net.post_in(1, 100, "ap");
        net.block(vec![post]);
        seen.insert(net.job(&id).provider.unwrap());
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn floors_and_stake_decide_eligibility() {
    let mut net = Net::new();
    // Nobody commits in this test: keep deadlines out of the way.
    net.state.params.commit_timeout = 1_000;
    net.register(0, 100, "", 500);
    net.register(1, 100, "", 0);
    // A job paying at most 200 per unit never goes to the provider asking 500.
    for _ in 0..10 {
        let (id, post) = net.post(1, 200);
        net.block(vec![post]);
        assert_eq!(net.job(&id).provider, Some(addr(&net.providers[1])));
    }
    // A job paying 600 may: and pays that provider's floor, not the base price.
    let mut prices = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (id, post) = net.post(1, 600);
        net.block(vec![post]);
        let job = net.job(&id);
        if job.provider == Some(addr(&net.providers[0])) {
            prices.insert(job.unit_price);
        }
    }
    assert_eq!(prices.into_iter().collect::<Vec<_>>(), vec![amt(500)]);
}

#[test]
fn provider_registration_rules() {
    let mut net = Net::new();
    let user = net.user.clone();
    let p0 = net.providers[0].clone();
    // Not enough stake.
    assert!(matches!(
        net.expect_err(&user, register_action(1, "", 0)),
        TxError::ProviderStakeTooLow { .. }
    ));
    assert!(matches!(
        net.expect_err(&p0, register_action(0, "", 0)),
        TxError::InvalidProvider(_)
    ));
    let mut bad = register_action(1, "", 0);
    if let Action::RegisterProvider { models, .. } = &mut bad {
        models.push(sha256(&[b"unknown"]));
    }
    assert!(matches!(net.expect_err(&p0, bad), TxError::UnknownModel(_)));
    let mut bad = register_action(1, "", 0);
    if let Action::RegisterProvider { endpoint, .. } = &mut bad {
        *endpoint = "ftp://x".into();
    }
    assert!(matches!(
        net.expect_err(&p0, bad),
        TxError::InvalidProvider(_)
    ));
    assert_eq!(
        net.expect_err(&p0, Action::PauseProvider { paused: true }),
        TxError::NotProvider
    );
    net.register(0, 1, "", 0);
    // Stake is locked at the minimum while registered.
    assert!(matches!(
        net.expect_err(&p0, Action::Unbond { amount: amt(1) }),
        TxError::ProviderStakeLocked { .. }
    ));
    // Busy providers cannot leave; paused ones get no new jobs.
    let (id, post) = net.post(1, 1_000);
    net.block(vec![post]);
    assert_eq!(net.job(&id).provider, Some(addr(&p0)));
    assert!(matches!(
        net.expect_err(&p0, Action::Deregister),
        TxError::ProviderBusy { active: 1, .. }
    ));
    let pause = net.tx(&p0, Action::PauseProvider { paused: true });
    net.block(vec![pause]);
    let c = net.commit(&id, b"x");
    net.block(vec![c]);
    let r = net.reveal(&id, b"x", 1);
    net.block(vec![r]);
    let (id2, post) = net.post(1, 1_000);
    net.block(vec![post]);
    assert_eq!(net.job(&id2).phase, Phase::Queued, "paused");
    net.block(vec![]);
    // Settled: now it may leave, and then unbond.
    let leave = net.tx(&p0, Action::Deregister);
    net.block(vec![leave]);
    assert!(net.state.provider(&addr(&p0)).is_none());
    let unbond = net.tx(&p0, Action::Unbond { amount: amt(1) });
    net.block(vec![unbond]);
}

#[test]
fn register_model_by_transaction() {
    let mut net = Net::new();
    let user = net.user.clone();
    let action = |hash, min| Action::RegisterModel {
        hash,
        name: "chat".into(),
        kind: ModelKind::Chat,
        unit: WorkUnit::OutputTokens,
        min_price: amt(min),
        blocks_per_1000_units: 4,
    };
    assert!(matches!(
        net.expect_err(&user, action(model_hash(), 5)),
        TxError::ModelExists(_)
    ));
    assert!(matches!(
        net.expect_err(&user, action(sha256(&[b"chat"]), 0)),
        TxError::InvalidModel(_)
    ));
    let too_slow = Action::RegisterModel {
        hash: sha256(&[b"slow"]),
        name: "slow".into(),
        kind: ModelKind::Chat,
        unit: WorkUnit::OutputTokens,
        min_price: amt(5),
        blocks_per_1000_units: crate::market::MAX_BLOCKS_PER_1000_UNITS + 1,
    };
    assert!(matches!(
        net.expect_err(&user, too_slow),
        TxError::InvalidModel(_)
    ));
    let tx = net.tx(&user, action(sha256(&[b"chat"]), 5));
    net.block(vec![tx]);
    let m = net.state.model(&sha256(&[b"chat"])).unwrap();
    assert_eq!((m.kind, m.base_price), (ModelKind::Chat, amt(5)));
}

#[test]
fn market_is_in_the_state_root_and_replays_identically() {
    let run = || {
        let mut net = Net::new();
        net.register(0, 2, "eu", 0);
        net.register(1, 2, "", 50);
        let mut roots = Vec::new();
        for i in 0..12u32 {
            let (_, post) = net.post(1 + i % 3, 10_000);
            let out = net.block(vec![post]);
            roots.push(out.state_root);
        }
        (roots, net.state)
    };
    let (a, sa) = run();
    let (b, sb) = run();
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    // Posting a job changes the root even though no account but the poster's changed.
    let mut net = Net::new();
    let before = net.state.state_root();
    let (_, post) = net.post(1, 100);
    net.block(vec![post]);
    assert_ne!(before, net.state.state_root());
}

#[test]
fn failed_block_restores_the_market() {
    let mut net = Net::new();
    net.register(0, 2, "", 0);
    let (_, post) = net.post(1, 100);
    net.block(vec![post]);
    let before = net.state.clone();
    // Simulate a ledger bug: the supply drifts. The block that follows must leave no trace.
    net.state.supply = net.state.supply.checked_add(amt(1)).unwrap();
    let mut expected = before.clone();
    expected.supply = net.state.supply;
    let (_, post) = net.post(1, 100);
    let h = net.state.height().checked_next().unwrap();
    assert!(net.state.apply_block(h, &sha256(&[b"s"]), &[post]).is_err());
    assert_eq!(net.state, expected);
}

// ---- verification: spot checks, disputes, slashing ----

/// Post one job in a network where every commit is spot-checked, have its provider commit
/// `output`, and return the job and its spot verifier.
fn checked_job(net: &mut Net, providers: usize, output: &[u8]) -> (JobId, Address) {
    // Escrow 4 * 100 = 400: checked on every job (p = 1), its fraud slash is
    // max(FRAUD_SLASH, 2 * 400 / p) = 800, which every provider's stake covers.
    checked_job_at(net, providers, output, 4)
}

/// `checked_job` with an escrow of `units * 100`.
fn checked_job_at(net: &mut Net, providers: usize, output: &[u8], units: u32) -> (JobId, Address) {
    for i in 0..providers {
        net.register(i, 4, "", 0);
    }
    let (id, post) = net.post(units, 100);
    net.block(vec![post]);
    let c = net.commit(&id, output);
    let out = net.block(vec![c]);
    let job = net.job(&id);
    assert_eq!(job.checks.len(), 1, "verify_bps = 10000 checks every job");
    let verifier = job.checks[0].verifier;
    assert_ne!(
        Some(verifier),
        job.provider,
        "a provider never checks itself"
    );
    assert!(out.events.contains(&Event::CheckAssigned {
        job: id,
        verifier,
        dispute: false,
    }));
    (id, verifier)
}

fn check_salt(verifier: &Address) -> Digest {
    sha256(&[b"check-salt", verifier.as_bytes()])
}

impl Net {
    fn commit_check(&mut self, id: &JobId, verifier: Address, output: &[u8]) -> SignedTransaction {
        let key = self.provider_key(verifier);
        let c = plexus_types::check_commitment(
            id,
            &verifier,
            &sha256(&[output]),
            &check_salt(&verifier),
        );
        self.tx(
            &key,
            Action::CommitCheck {
                job: *id,
                commitment: c,
            },
        )
    }

    fn reveal_check(
        &mut self,
        id: &JobId,
        verifier: Address,
        output: &[u8],
        agrees: bool,
    ) -> SignedTransaction {
        let key = self.provider_key(verifier);
        self.tx(
            &key,
            Action::RevealCheck {
                job: *id,
                output_hash: sha256(&[output]),
                salt: check_salt(&verifier),
                agrees,
            },
        )
    }

    /// The provider reveals "wrong" (`units` of work), the spot verifier `spot` "right" and
    /// disagrees: returns the quorum the dispute draws.
    fn dispute_wrong_result(&mut self, id: &JobId, spot: Address, units: u32) -> Vec<Address> {
        let c = self.commit_check(id, spot, b"right");
        self.block(vec![c]);
        let r = self.reveal(id, b"wrong", units);
        self.block(vec![r]);
        let rc = self.reveal_check(id, spot, b"right", false);
        let out = self.block(vec![rc]);
        out.events
            .iter()
            .find_map(|e| match e {
                Event::DisputeOpened { verifiers, .. } => Some(verifiers.clone()),
                _ => None,
            })
            .expect("dispute opened")
    }

    fn stake(&self, a: &Address) -> Amount {
        self.state.account(a).stake
    }
}

#[test]
fn a_spot_check_that_agrees_settles_and_pays_the_verifier() {
    let mut net = Net::build(2, ModelKind::Embedding, 10_000);
    let (id, verifier) = checked_job(&mut net, 2, b"vector");
    let provider = net.job(&id).provider.unwrap();
    let supply = net.state.supply();

    // The provider may not reveal before the verifier has committed: the verifier would
    // see the result it is meant to reproduce.
    let key = net.provider_key(provider);
    let action = reveal_action(&net.job(&id), &key, b"vector", 4);
    assert_eq!(
        net.expect_err(&key, action),
        TxError::AwaitingVerifier(id.to_string())
    );
    // A verifier cannot reveal before the provider.
    let c = net.commit_check(&id, verifier, b"vector");
    net.block(vec![c]);
    let vkey = net.provider_key(verifier);
    let early = Action::RevealCheck {
        job: id,
        output_hash: sha256(&[b"vector"]),
        salt: check_salt(&verifier),
        agrees: true,
    };
    assert_eq!(
        net.expect_err(&vkey, early),
        TxError::CheckTooEarly(id.to_string(), "committed")
    );
    // Someone who is not the verifier cannot commit a check.
    let user = net.user.clone();
    let stranger = Action::CommitCheck {
        job: id,
        commitment: sha256(&[b"x"]),
    };
    assert_eq!(
        net.expect_err(&user, stranger),
        TxError::NotVerifier(id.to_string())
    );

    let r = net.reveal(&id, b"vector", 4);
    net.block(vec![r]);
    let v_before = net.state.account(&verifier).balance;
    let rc = net.reveal_check(&id, verifier, b"vector", true);
    let out = net.block(vec![rc]);
    // The treasury pays what it holds, up to the provider's earnings.
    let pay = net
        .state
        .treasury()
        .checked_add(amt(40))
        .unwrap()
        .min(amt(360));
    assert!(out.events.contains(&Event::CheckRevealed {
        job: id,
        verifier,
        agrees: true,
    }));
    // Settles after the challenge window; the verifier earns what the provider earns
    // (400 - 40), from the treasury.
    let out = net.block(vec![]);
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::JobSettled { job, .. } if job.id == id))
    );
    assert!(out.events.contains(&Event::Rewarded {
        who: verifier,
        job: id,
        amount: pay,
        reason: "verification".into(),
    }));
    assert_eq!(
        net.state.account(&verifier).balance,
        v_before
            .checked_add(pay)
            .and_then(|b| b.checked_sub(amt(FEE)))
            .unwrap()
    );
    assert_eq!(
        net.state.supply(),
        supply,
        "nothing burned without a dispute"
    );
}

#[test]
fn a_dispute_proves_a_wrong_result_slashes_the_provider_and_refunds_the_owner() {
    // Chat: results agree exactly when identical.
    let mut net = Net::build(4, ModelKind::Chat, 10_000);
    let user = addr(&net.user);
    let user_before = net.state.account(&user).balance;
    let (id, spot) = checked_job(&mut net, 4, b"wrong");
    let provider = net.job(&id).provider.unwrap();
    let provider_stake = net.stake(&provider);
    let supply = net.state.supply();

    // The two remaining providers are drawn to decide.
    let quorum = net.dispute_wrong_result(&id, spot, 4);
    assert_eq!(quorum.len(), 2);
    assert!(!quorum.contains(&provider) && !quorum.contains(&spot));
    assert!(net.job(&id).disputed);
    // The settlement height passes while the quorum works: nothing settles.
    let commits: Vec<_> = quorum
        .iter()
        .map(|v| net.commit_check(&id, *v, b"right"))
        .collect();
    net.block(commits);
    net.block(vec![]);
    assert!(net.state.job(&id).is_some());
    let reveals: Vec<_> = quorum
        .iter()
        .map(|v| net.reveal_check(&id, *v, b"right", false))
        .collect();
    let out = net.block(reveals);

    assert!(out.events.contains(&Event::Slashed {
        who: provider,
        job: id,
        amount: amt(FRAUD_SLASH),
    }));
    assert_eq!(
        net.stake(&provider),
        provider_stake.checked_sub(amt(FRAUD_SLASH)).unwrap()
    );
    assert_eq!(
        net.state.provider(&provider).unwrap().reputation,
        MIN_REPUTATION
    );
    assert_eq!(net.state.provider(&provider).unwrap().unsettled_jobs, 0);
    // Half the slash goes to the three verifiers who were right (133 each), the rest
    // (and the rounding) is burned.
    let resolved = out
        .events
        .iter()
        .find_map(|e| match e {
            Event::DisputeResolved {
                outcome,
                slashed,
                rewarded,
                burned,
                ..
            } => Some((outcome.clone(), *slashed, *rewarded, *burned)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        resolved,
        ("provider_wrong".into(), amt(800), amt(399), amt(401))
    );
    assert_eq!(net.state.supply(), supply.checked_sub(amt(401)).unwrap());
    // The owner gets its whole escrow back: it paid only the post's fee.
    assert!(out.events.iter().any(
        |e| matches!(e, Event::JobRefunded { job, amount, .. } if job.id == id && *amount == amt(400))
    ));
    assert_eq!(
        net.state.account(&user).balance,
        user_before.checked_sub(amt(FEE)).unwrap()
    );
    // No verifier lost stake.
    for v in quorum.iter().chain([&spot]) {
        assert_eq!(net.stake(v), amt(MIN_STAKE));
    }
}

#[test]
fn a_false_accusation_slashes_the_verifier_and_the_job_settles() {
    let mut net = Net::build(3, ModelKind::Chat, 10_000);
    let (id, spot) = checked_job(&mut net, 3, b"right");
    let provider = net.job(&id).provider.unwrap();
    let c = net.commit_check(&id, spot, b"lie");
    net.block(vec![c]);
    let r = net.reveal(&id, b"right", 4);
    net.block(vec![r]);
    let rc = net.reveal_check(&id, spot, b"lie", false);
    let out = net.block(vec![rc]);
    let quorum = out
        .events
        .iter()
        .find_map(|e| match e {
            Event::DisputeOpened { verifiers, .. } => Some(verifiers.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(quorum.len(), 1, "one provider left to decide");
    let c = net.commit_check(&id, quorum[0], b"right");
    net.block(vec![c]);
    let rc = net.reveal_check(&id, quorum[0], b"right", true);
    let provider_before = net.state.account(&provider).balance;
    let out = net.block(vec![rc]);
    assert!(out.events.contains(&Event::Slashed {
        who: spot,
        job: id,
        amount: amt(FRAUD_SLASH),
    }));
    assert_eq!(net.stake(&spot), amt(MIN_STAKE - FRAUD_SLASH));
    assert_eq!(
        net.stake(&provider),
        amt(MIN_STAKE),
        "the honest provider keeps its stake"
    );
    // The provider is paid for the job (630) and shares the slash's reward with the
    // quorum verifier (200 each).
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::JobSettled { job, .. } if job.id == id))
    );
    assert_eq!(
        net.state.account(&provider).balance,
        provider_before.checked_add(amt(360 + 200)).unwrap()
    );
}

#[test]
fn verdicts_that_contradict_the_results_are_refused() {
    let mut net = Net::build(2, ModelKind::Chat, 10_000);
    let (id, spot) = checked_job(&mut net, 2, b"answer");
    // Copying the provider's commitment does not help: it cannot be opened as the
    // verifier's own (the verifier's address is bound into a check commitment).
    let provider_commitment = net.job(&id).commitment.unwrap();
    let key = net.provider_key(spot);
    let copy = net.tx(
        &key,
        Action::CommitCheck {
            job: id,
            commitment: provider_commitment,
        },
    );
    net.block(vec![copy]);
    let r = net.reveal(&id, b"answer", 3);
    net.block(vec![r]);
    let job = net.job(&id);
    let opened = Action::RevealCheck {
        job: id,
        output_hash: job.output_hash.unwrap(),
        salt: job.salt.unwrap(),
        agrees: true,
    };
    assert_eq!(net.expect_err(&key, opened), TxError::CommitmentMismatch);

    // Honest commitments, contradictory verdicts.
    let mut net = Net::build(2, ModelKind::Chat, 10_000);
    let (id, spot) = checked_job(&mut net, 2, b"answer");
    let c = net.commit_check(&id, spot, b"other");
    net.block(vec![c]);
    let r = net.reveal(&id, b"answer", 3);
    net.block(vec![r]);
    let key = net.provider_key(spot);
    let claim_agree = Action::RevealCheck {
        job: id,
        output_hash: sha256(&[b"other"]),
        salt: check_salt(&spot),
        agrees: true,
    };
    assert!(matches!(
        net.expect_err(&key, claim_agree),
        TxError::InvalidVerdict(_)
    ));

    let mut net = Net::build(2, ModelKind::Embedding, 10_000);
    let (id, spot) = checked_job(&mut net, 2, b"vector");
    let c = net.commit_check(&id, spot, b"vector");
    net.block(vec![c]);
    let r = net.reveal(&id, b"vector", 3);
    net.block(vec![r]);
    let key = net.provider_key(spot);
    let claim_differ = Action::RevealCheck {
        job: id,
        output_hash: sha256(&[b"vector"]),
        salt: check_salt(&spot),
        agrees: false,
    };
    assert!(matches!(
        net.expect_err(&key, claim_differ),
        TxError::InvalidVerdict(_)
    ));
    // A verifier cannot open its commitment to "vector" as another output.
    let nearly = net.reveal_check(&id, spot, b"vector-ish", true);
    let out = net.block_allowing_failures(vec![nearly]);
    assert_eq!(out.results[0], Err(TxError::CommitmentMismatch));
}

#[test]
fn a_verifier_that_never_commits_is_penalised_and_the_job_settles_unchecked() {
    let mut net = Net::build(2, ModelKind::Embedding, 10_000);
    let (id, spot) = checked_job(&mut net, 2, b"vector");
    let treasury = net.state.treasury();
    let mut missed = false;
    for _ in 0..5 {
        let out = net.block(vec![]);
        missed |= out.events.contains(&Event::CheckMissed {
            job: id,
            verifier: spot,
            amount: amt(PENALTY),
        });
    }
    assert!(missed, "the check's commit deadline passed");
    assert_eq!(net.stake(&spot), amt(MIN_STAKE - PENALTY));
    assert_eq!(
        net.state.treasury(),
        treasury.checked_add(amt(PENALTY)).unwrap()
    );
    // The provider's reveal is no longer held back, and settles.
    let r = net.reveal(&id, b"vector", 4);
    net.block(vec![r]);
    net.block(vec![]);
    let out = net.block(vec![]);
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::JobSettled { job, .. } if job.id == id))
    );
}

#[test]
fn a_dispute_nobody_can_decide_refunds_and_slashes_nobody() {
    let mut net = Net::build(2, ModelKind::Chat, 10_000);
    let (id, spot) = checked_job(&mut net, 2, b"a");
    let provider = net.job(&id).provider.unwrap();
    let supply = net.state.supply();
    let c = net.commit_check(&id, spot, b"b");
    net.block(vec![c]);
    let r = net.reveal(&id, b"a", 3);
    net.block(vec![r]);
    let rc = net.reveal_check(&id, spot, b"b", false);
    let out = net.block(vec![rc]);
    assert!(out.events.iter().any(|e| matches!(
        e,
        Event::DisputeResolved { outcome, .. } if outcome == "undecided"
    )));
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::JobRefunded { job, .. } if job.id == id))
    );
    assert_eq!(net.stake(&provider), amt(MIN_STAKE));
    assert_eq!(net.stake(&spot), amt(MIN_STAKE));
    assert_eq!(net.state.supply(), supply);
    assert_eq!(net.state.provider(&provider).unwrap().unsettled_jobs, 0);
}

#[test]
fn about_verify_bps_of_commits_are_checked() {
    // 10%: of 1000 jobs committed together, the draw (per job, from the block's seed)
    // picks a stable number near 100 (binomial: within three standard deviations).
    let mut net = Net::build(3, ModelKind::Embedding, 1_000);
    // Escrow 100 at a 10% check rate: a fraud slash of 2 * 100 / p = 2000; bond that much.
    let bonds: Vec<_> = net
        .providers
        .clone()
        .iter()
        .map(|k| net.tx(k, Action::Bond { amount: amt(1_000) }))
        .collect();
    net.block(bonds);
    for i in 0..3 {
        net.register(i, 1024, "", 0);
    }
    let posts: Vec<_> = (0..1000).map(|_| net.post(1, 100).1).collect();
    net.block(posts);
    let ids: Vec<JobId> = net.state.jobs().map(|j| j.id).collect();
    assert_eq!(ids.len(), 1000);
    let commits: Vec<_> = ids.iter().map(|id| net.commit(id, b"v")).collect();
    let out = net.block(commits);
    let checked = out
        .events
        .iter()
        .filter(|e| matches!(e, Event::CheckAssigned { .. }))
        .count();
    assert!((70..=130).contains(&checked), "{checked} of 1000 checked");
}

#[test]
fn the_fraud_slash_grows_with_the_escrow_above_the_flat_slash() {
    let mut params = Params::new(amt(FEE), 5);
    params.fraud_slash = amt(800);
    params.verify_bps = 1_000;
    let slash_at =
        |params: &Params, escrow: u128| job_fraud_slash(params, amt(escrow)).map(|a| a.get());
    let slash = |escrow: u128| slash_at(&params, escrow);
    // p = 10%, margin 2: 2 * escrow / p = 20 * escrow, rounded up, once past the flat slash.
    assert_eq!(slash(0), Some(800));
    assert_eq!(slash(40), Some(800));
    assert_eq!(slash(41), Some(820));
    assert_eq!(slash(12_345), Some(246_900));
    assert_eq!(slash(u128::MAX), None, "an overflow is no number");
    params.verify_bps = 3;
    // 2 * 10000 / 3 = 6666.66..: rounded up, so p * slash >= 2 * escrow still holds.
    assert_eq!(slash_at(&params, 1), Some(6_667));
    assert_eq!(slash_at(&params, 3), Some(20_000));
    params.verify_bps = 10_000;
    assert_eq!(slash_at(&params, 400), Some(800));
    assert_eq!(slash_at(&params, 401), Some(802));
    // Nothing is checked: a fraud can be proven only by a dispute nobody opens.
    params.verify_bps = 0;
    assert_eq!(slash_at(&params, 1_000_000), Some(800));
}

#[test]
fn the_largest_secured_escrow_is_the_last_one_the_stake_covers() {
    let mut params = Params::new(amt(FEE), 5);
    params.fraud_slash = amt(800);
    for bps in [1, 3, 1_000, 7_777, 10_000] {
        params.verify_bps = bps;
        for stake in [800u128, 801, 1_000, 12_345, 10u128.pow(20)] {
            let max = max_secured_escrow(&params, amt(stake)).unwrap();
            let slash = |e: Amount| job_fraud_slash(&params, e).unwrap();
            assert!(slash(max) <= amt(stake), "bps {bps}, stake {stake}");
            let next = max.checked_add(amt(1)).unwrap();
            assert!(slash(next) > amt(stake), "bps {bps}, stake {stake}");
        }
    }
    assert_eq!(max_secured_escrow(&params, amt(799)), Some(Amount::ZERO));
    params.verify_bps = 0;
    assert_eq!(max_secured_escrow(&params, amt(800)), None);
}

#[test]
fn a_job_goes_only_to_stake_that_covers_its_fraud_slash() {
    let mut net = Net::build(2, ModelKind::Embedding, 1_000);
    let big = net.providers[0].clone();
    let bond = net.tx(&big, Action::Bond { amount: amt(6_000) });
    net.block(vec![bond]);
    net.register(0, 8, "", 0);
    net.register(1, 8, "", 0);
    let user = addr(&net.user);
    let before = net.state.account(&user).balance;

    // Escrow 300 at p = 10%: a slash of 2 * 300 / p = 6000, which only the provider with
    // 7000 covers, however the draw falls.
    let mut ids = Vec::new();
    let mut posts = Vec::new();
    for _ in 0..6 {
        let (id, post) = net.post(3, 100);
        ids.push(id);
        posts.push(post);
    }
    net.block(posts);
    for id in &ids {
        assert_eq!(net.job(id).provider, Some(addr(&big)), "job {id}");
    }

    // The stake that secured those jobs cannot leave before them.
    assert_eq!(
        net.expect_err(&big, Action::Unbond { amount: amt(1_001) }),
        TxError::StakeBacksJobs {
            min: amt(6_000),
            jobs: 6
        }
    );
    let unbond = net.tx(&big, Action::Unbond { amount: amt(1_000) });
    net.state.check_tx(&unbond, Queued::default()).unwrap();

    // Escrow 1000: a slash of 20000, beyond every stake. Nobody takes it, it is not demand
    // (the price does not move for it), and the queue timeout refunds it saying why.
    let base = net.state.model(&model_hash()).unwrap().base_price;
    let (id, post) = net.post(10, 100);
    let out = net.block(vec![post]);
    assert_eq!(net.job(&id).phase, Phase::Queued);
    assert!(
        out.events
            .iter()
            .all(|e| !matches!(e, Event::JobRefunded { .. }))
    );
    let mut refund = None;
    for _ in 0..5 {
        let out = net.block(vec![]);
        refund = refund.or_else(|| {
            out.events.iter().find_map(|e| match e {
                Event::JobRefunded {
                    job,
                    amount,
                    reason,
                } if job.id == id => Some((*amount, reason.clone())),
                _ => None,
            })
        });
    }
    let (amount, reason) = refund.expect("refunded at the queue timeout");
    assert_eq!(amount, amt(1_000));
    assert!(
        reason.contains("stake to cover the job's fraud slash of 20000"),
        "{reason}"
    );
    assert!(net.state.model(&model_hash()).unwrap().base_price <= base);
    // The user paid the posts' fees and the six assigned jobs' escrow, nothing for the
    // refunded one.
    let held: u128 = ids
        .iter()
        .filter_map(|id| net.state.job(id))
        .map(|j| j.escrow.get())
        .sum();
    assert_eq!(
        net.state.account(&user).balance,
        before.checked_sub(amt(7 * FEE + held)).unwrap()
    );
}

#[test]
fn a_proven_fraud_costs_the_job_s_slash_not_the_flat_one() {
    let mut net = Net::build(4, ModelKind::Chat, 10_000);
    let bonds: Vec<_> = net
        .providers
        .clone()
        .iter()
        .map(|k| net.tx(k, Action::Bond { amount: amt(2_000) }))
        .collect();
    net.block(bonds);
    // Escrow 1200, every job checked (p = 1): a slash of 2 * 1200 = 2400, above FRAUD_SLASH.
    let (id, spot) = checked_job_at(&mut net, 4, b"wrong", 12);
    let provider = net.job(&id).provider.unwrap();
    let quorum = net.dispute_wrong_result(&id, spot, 10);
    let commits: Vec<_> = quorum
        .iter()
        .map(|v| net.commit_check(&id, *v, b"right"))
        .collect();
    net.block(commits);
    let reveals: Vec<_> = quorum
        .iter()
        .map(|v| net.reveal_check(&id, *v, b"right", false))
        .collect();
    let supply = net.state.supply();
    let out = net.block(reveals);
    assert!(
        out.events.contains(&Event::Slashed {
            who: provider,
            job: id,
            amount: amt(2_400),
        }),
        "{:?}",
        out.events
    );
    assert_eq!(net.stake(&provider), amt(MIN_STAKE + 2_000 - 2_400));
    // Half to the three who were right (400 each), the rest burned.
    assert_eq!(
        net.state.supply(),
        supply.checked_sub(amt(2_400 - 3 * 400)).unwrap()
    );
}
