//! Property tests of the job market: random users post random jobs, random providers
//! register, pause, come and go, and do their work only some of the time (so deadlines pass,
//! penalties and reassignments happen, queues time out).
//!
//! Half the commits are spot-checked; verifiers re-run (or, when they lie, report another
//! result), commit and reveal only some of the time, so disputes open, are decided or
//! stay undecided, and both providers and verifiers are slashed.
//!
//! After every block: supply equals the genesis supply minus what disputes burned, holdings
//! (escrow included) equal the supply, the escrow total equals the jobs' escrows, every provider's and model's counters match the jobs in the state, and no
//! job is billed more than its escrow. Replaying the same blocks gives the same state roots.

use commonware_cryptography::Signer;
use plexus_ledger::{Event, Genesis, GenesisAccount, GenesisModel, Job, Params, Phase, State};
use plexus_types::{
    Action, Address, Amount, Digest, Height, ModelKind, Nonce, PrivateKey, Receipt,
    SignedTransaction, Transaction, WorkUnit, check_commitment, commitment, key_from_seed, sha256,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const CHAIN: &str = "plexus-market-prop";
const USERS: usize = 3;
const PROVIDERS: usize = 4;

fn models() -> [Digest; 2] {
    [sha256(&[b"m0"]), sha256(&[b"m1"])]
}

fn key(i: usize) -> PrivateKey {
    key_from_seed(5_000 + i as u64)
}

fn addr(i: usize) -> Address {
    Address::from(&key(i).public_key())
}

/// What happens in one block.
#[derive(Clone, Debug)]
struct BlockPlan {
    /// (user, model, max_units, max_unit_price)
    posts: Vec<(usize, usize, u32, u128)>,
    /// (provider, capacity, floor, models mask, region)
    registrations: Vec<(usize, u32, u128, u8, u8)>,
    pauses: Vec<(usize, bool)>,
    leaves: Vec<usize>,
    /// Per provider: does it do its work (commit, reveal) this block?
    diligent: [bool; PROVIDERS],
    /// Units billed as a fraction (of 4) of max_units.
    billing: u32,
    /// Per provider: does it report a wrong result this block (as provider or verifier)?
    lying: [bool; PROVIDERS],
}

fn plan() -> impl Strategy<Value = BlockPlan> {
    (
        proptest::collection::vec((0..USERS, 0..2usize, 1u32..20, 50u128..400), 0..4),
        proptest::collection::vec((0..PROVIDERS, 1u32..4, 0u128..300, 1u8..4, 0u8..2), 0..2),
        proptest::collection::vec((0..PROVIDERS, any::<bool>()), 0..2),
        proptest::collection::vec(0..PROVIDERS, 0..2),
        proptest::array::uniform4(prop_oneof![3 => Just(true), 1 => Just(false)]),
        1u32..5,
        proptest::array::uniform4(prop_oneof![2 => Just(false), 1 => Just(true)]),
    )
        .prop_map(
            |(posts, registrations, pauses, leaves, diligent, billing, lying)| BlockPlan {
                posts,
                registrations,
                pauses: if pauses.len() > 1 { vec![] } else { pauses },
                leaves,
                diligent,
                billing,
                lying,
            },
        )
}

struct Driver {
    state: State,
    nonces: BTreeMap<Address, u64>,
}

impl Driver {
    fn new() -> Self {
        let mut params = Params::new(Amount::new(1), 3);
        params.min_provider_stake = Amount::new(1_000);
        params.miss_penalty = Amount::new(150);
        params.commit_timeout = 2;
        params.reveal_timeout = 2;
        params.challenge_window = 2;
        params.queue_timeout = 6;
        params.max_payload_size = 100;
        params.max_job_attempts = 2;
        params.verify_bps = 5_000;
        params.dispute_verifiers = 2;
        params.fraud_slash = Amount::new(400);
        let mut accounts = Vec::new();
        for i in 0..USERS {
            accounts.push(GenesisAccount {
                address: addr(i),
                balance: Amount::new(200_000),
                stake: Amount::ZERO,
            });
        }
        for p in 0..PROVIDERS {
            accounts.push(GenesisAccount {
                address: addr(USERS + p),
                balance: Amount::new(5_000),
                stake: Amount::new(1_500),
            });
        }
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            params,
            accounts,
            models: models()
                .iter()
                .enumerate()
                .map(|(i, hash)| GenesisModel {
                    hash: *hash,
                    name: format!("m{i}"),
                    // m1 compares exactly (chat), m0 by the verifier's verdict.
                    kind: if i == 0 {
                        ModelKind::Embedding
                    } else {
                        ModelKind::Chat
                    },
                    unit: WorkUnit::InputTokens,
                    min_price: Amount::new(50),
                    blocks_per_1000_units: i as u64 * 300,
                })
                .collect(),
        };
        Self {
            state: State::from_genesis(&genesis).unwrap(),
            nonces: BTreeMap::new(),
        }
    }

    fn tx(&mut self, who: usize, action: Action) -> SignedTransaction {
        let k = key(who);
        let a = addr(who);
        let nonce = self.state.account(&a).nonce.get() + self.nonces.get(&a).copied().unwrap_or(0);
        *self.nonces.entry(a).or_default() += 1;
        Transaction {
            chain_id: CHAIN.into(),
            signer: a,
            nonce: Nonce::new(nonce),
            fee: Amount::new(1),
            action,
        }
        .sign(&k)
    }

    fn txs_for(&mut self, plan: &BlockPlan) -> Vec<SignedTransaction> {
        let mut txs = Vec::new();
        for &(user, model, max_units, price) in &plan.posts {
            txs.push(self.tx(
                user,
                Action::PostJob {
                    model: models()[model],
                    input_hash: sha256(&[b"in"]),
                    input_size: 10,
                    max_units,
                    max_unit_price: Amount::new(price),
                    region: String::new(),
                },
            ));
        }
        for &(p, capacity, floor, mask, region) in &plan.registrations {
            let served: Vec<Digest> = (0..2)
                .filter(|m| mask & (1 << m) != 0)
                .map(|m| models()[m])
                .collect();
            txs.push(self.tx(
                USERS + p,
                Action::RegisterProvider {
                    models: served,
                    capacity,
                    region: if region == 0 {
                        "eu".into()
                    } else {
                        String::new()
                    },
                    price_floor: Amount::new(floor),
                    endpoint: "http://127.0.0.1:1".into(),
                },
            ));
        }
        for &(p, paused) in &plan.pauses {
            txs.push(self.tx(USERS + p, Action::PauseProvider { paused }));
        }
        for &p in &plan.leaves {
            txs.push(self.tx(USERS + p, Action::Deregister));
        }
        // Diligent providers commit what is assigned and reveal what is committed.
        let jobs: Vec<Job> = self.state.jobs().cloned().collect();
        for job in jobs {
            let Some(provider) = job.provider else {
                continue;
            };
            let p = (0..PROVIDERS)
                .find(|p| addr(USERS + p) == provider)
                .unwrap();
            if !plan.diligent[p] {
                continue;
            }
            let output = if plan.lying[p] {
                sha256(&[job.id.as_bytes(), b"lie"])
            } else {
                sha256(&[job.id.as_bytes(), b"out"])
            };
            let salt = sha256(&[job.id.as_bytes(), b"salt"]);
            match job.phase {
                Phase::Assigned => txs.push(self.tx(
                    USERS + p,
                    Action::CommitResult {
                        job: job.id,
                        commitment: commitment(&job.id, &output, &salt),
                    },
                )),
                Phase::Committed => {
                    let units = (job.max_units * plan.billing)
                        .div_ceil(4)
                        .min(job.max_units);
                    let receipt = Receipt {
                        chain_id: CHAIN.into(),
                        job: job.id,
                        model: job.model,
                        input_hash: job.input_hash,
                        output_hash: output,
                        output_size: 32,
                        units,
                        unit_price: job.unit_price,
                        provider,
                    };
                    txs.push(self.tx(
                        USERS + p,
                        Action::RevealResult {
                            job: job.id,
                            output_hash: output,
                            output_size: 32,
                            salt,
                            units,
                            receipt_signature: receipt.sign(&key(USERS + p)),
                        },
                    ));
                }
                _ => {}
            }
        }
        // Diligent verifiers commit their re-run, and reveal it once the provider has.
        let jobs: Vec<Job> = self.state.jobs().cloned().collect();
        for job in jobs {
            for check in job.checks.iter().filter(|c| c.pending()) {
                let Some(p) = (0..PROVIDERS).find(|p| addr(USERS + p) == check.verifier) else {
                    continue;
                };
                if !plan.diligent[p] {
                    continue;
                }
                // A verifier's result is fixed when it commits: honest or a lie.
                let lie = check.commitment.map_or(plan.lying[p], |c| {
                    c != check_commitment(&job.id, &check.verifier, &honest(&job), &check_salt(p))
                });
                let output = if lie {
                    sha256(&[job.id.as_bytes(), b"verifier-lie"])
                } else {
                    honest(&job)
                };
                match (check.commitment, job.phase) {
                    (None, _) => txs.push(self.tx(
                        USERS + p,
                        Action::CommitCheck {
                            job: job.id,
                            commitment: check_commitment(
                                &job.id,
                                &check.verifier,
                                &output,
                                &check_salt(p),
                            ),
                        },
                    )),
                    (Some(_), Phase::Revealed) => {
                        let agrees = job.output_hash == Some(output);
                        txs.push(self.tx(
                            USERS + p,
                            Action::RevealCheck {
                                job: job.id,
                                output_hash: output,
                                salt: check_salt(p),
                                agrees,
                            },
                        ));
                    }
                    _ => {}
                }
            }
        }
        self.nonces.clear();
        txs
    }
}

fn honest(job: &Job) -> Digest {
    sha256(&[job.id.as_bytes(), b"out"])
}

fn check_salt(p: usize) -> Digest {
    sha256(&[&[p as u8], b"check-salt"])
}

/// Counters in the registry agree with the jobs in the state.
fn check_counters(state: &State) {
    let mut active: BTreeMap<Address, u32> = BTreeMap::new();
    let mut unsettled: BTreeMap<Address, u32> = BTreeMap::new();
    let mut model_active: BTreeMap<Digest, u32> = BTreeMap::new();
    let mut model_queued: BTreeMap<Digest, u32> = BTreeMap::new();
    for job in state.jobs() {
        match job.phase {
            Phase::Queued => *model_queued.entry(job.model).or_default() += 1,
            Phase::Assigned => {
                *active.entry(job.provider.unwrap()).or_default() += 1;
                *model_active.entry(job.model).or_default() += 1;
            }
            Phase::Committed | Phase::Revealed => {
                *unsettled.entry(job.provider.unwrap()).or_default() += 1
            }
        }
        assert!(job.unit_price <= job.max_unit_price);
        assert!(job.units <= job.max_units);
    }
    for (a, p) in state.providers() {
        assert_eq!(
            p.active_jobs,
            active.get(a).copied().unwrap_or(0),
            "active of {a}"
        );
        assert_eq!(p.unsettled_jobs, unsettled.get(a).copied().unwrap_or(0));
    }
    for m in state.models() {
        assert_eq!(
            m.active_jobs,
            model_active.get(&m.hash).copied().unwrap_or(0)
        );
        assert_eq!(
            m.queued_jobs,
            model_queued.get(&m.hash).copied().unwrap_or(0)
        );
        assert!(m.base_price >= m.min_price);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn market_conserves_supply_and_replays(plans in proptest::collection::vec(plan(), 1..40)) {
        let mut driver = Driver::new();
        let genesis_supply = driver.state.supply();
        let mut burned = Amount::ZERO;
        let mut disputes = 0usize;
        let mut blocks = Vec::new();
        let mut roots = Vec::new();
        let mut settled = 0usize;
        for (i, plan) in plans.iter().enumerate() {
            let txs = driver.txs_for(plan);
            let height = Height::new(i as u64 + 1);
            let seed = sha256(&[&height.get().to_be_bytes()]);
            let out = driver.state.apply_block(height, &seed, &txs).unwrap();
            driver.state.check_invariant().unwrap();
            for e in &out.events {
                if let Event::DisputeResolved { burned: b, slashed, rewarded, .. } = e {
                    disputes += 1;
                    burned = burned.checked_add(*b).unwrap();
                    prop_assert_eq!(rewarded.checked_add(*b), Some(*slashed));
                }
            }
            let supply = genesis_supply.checked_sub(burned).unwrap();
            prop_assert_eq!(driver.state.supply(), supply);
            prop_assert_eq!(driver.state.holdings().unwrap(), supply);
            check_counters(&driver.state);
            for e in &out.events {
                if let Event::JobSettled { job, payment, fee, refund } = e {
                    settled += 1;
                    prop_assert_eq!(payment.checked_add(*refund), Some(job.escrow));
                    prop_assert!(fee <= payment);
                }
            }
            roots.push(out.state_root);
            blocks.push((height, seed, txs));
        }
        // Drain: with nobody acting, every job ends (settled, refunded) and escrow empties.
        let mut h = blocks.len() as u64;
        for _ in 0..40 {
            h += 1;
            driver.state.apply_block(Height::new(h), &sha256(&[b"drain"]), &[]).unwrap();
            driver.state.check_invariant().unwrap();
            check_counters(&driver.state);
        }
        prop_assert_eq!(driver.state.jobs().count(), 0);
        prop_assert_eq!(driver.state.escrow(), Amount::ZERO);
        let _ = (settled, disputes);

        let mut replay = Driver::new().state;
        for ((height, seed, txs), root) in blocks.iter().zip(&roots) {
            let out = replay.apply_block(*height, seed, txs).unwrap();
            prop_assert_eq!(&out.state_root, root);
        }
    }
}
