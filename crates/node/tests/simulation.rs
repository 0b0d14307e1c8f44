//! Seeded whole-network simulations: 4 validators on commonware's deterministic runtime with a
//! simulated network. Same seed, same run. Covered: normal operation, a crash and restart,
//! lossy and slow links, partitions (a 2-2 split with no quorum, one validator cut off) and
//! healing, and a Byzantine validator that signs conflicting votes in every view.

use commonware_p2p::simulated::{Config as NetConfig, Link, Network, Oracle};
use commonware_runtime::{
    Clock, Handle, Quota, Runner as _, Spawner as _, Supervisor as _, deterministic,
};
use commonware_utils::{NZU32, NZUsize, ordered::Set};
use plexus_ledger::{Genesis, GenesisAccount, Params, State};
use plexus_node::app::{
    BLOCKS_CHANNEL, CERTIFICATES_CHANNEL, REQUESTS_CHANNEL, RESOLVER_CHANNEL, TXS_CHANNEL,
    VOTES_CHANNEL,
};
use plexus_node::engine::{Channels, Timing, start_validator};
use plexus_node::shared::{NodeState, Shared};
use plexus_types::{
    Action, Address, Amount, Digest, Nonce, PrivateKey, PublicKey, Signer, Transaction,
    key_from_seed,
};
use std::time::Duration;

const N: usize = 4;

fn genesis(users: &[PrivateKey]) -> Genesis {
    Genesis {
        chain_id: "plexus-sim".into(),
        models: Vec::new(),
        params: Params::new(Amount::new(1), 5),
        accounts: users
            .iter()
            .map(|k| GenesisAccount {
                address: Address::from(&k.public_key()),
                balance: Amount::new(1_000_000),
                stake: Amount::ZERO,
            })
            .collect(),
    }
}

struct Cluster {
    keys: Vec<PrivateKey>,
    validators: Set<PublicKey>,
    genesis: Genesis,
    oracle: Oracle<PublicKey, deterministic::Context>,
}

impl Cluster {
    async fn new(context: &deterministic::Context, link: Link) -> Self {
        let keys: Vec<PrivateKey> = (0..N as u64).map(|i| key_from_seed(1000 + i)).collect();
        let validators = Set::from_iter_dedup(keys.iter().map(|k| k.public_key()));
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            NetConfig {
                max_size: 1 << 20,
                max_peers_per_set: NZUsize!(N),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            validators.iter().cloned(),
        )
        .await;
        network.start();
        for a in validators.iter() {
            for b in validators.iter() {
                if a != b {
                    oracle
                        .add_link(a.clone(), b.clone(), link.clone())
                        .await
                        .unwrap();
                }
            }
        }
        let users: Vec<PrivateKey> = (0..3).map(key_from_seed).collect();
        Self {
            keys,
            validators,
            genesis: genesis(&users),
            oracle,
        }
    }

    /// Cut every link between the two groups, both ways.
    async fn split(&self, a: &[usize], b: &[usize]) {
        for &i in a {
            for &j in b {
                let (x, y) = (self.keys[i].public_key(), self.keys[j].public_key());
                self.oracle.remove_link(x.clone(), y.clone()).await.unwrap();
                self.oracle.remove_link(y, x).await.unwrap();
            }
        }
    }

    /// Restore the links `split` cut.
    async fn heal(&self, a: &[usize], b: &[usize], link: Link) {
        for &i in a {
            for &j in b {
                let (x, y) = (self.keys[i].public_key(), self.keys[j].public_key());
                self.oracle
                    .add_link(x.clone(), y.clone(), link.clone())
                    .await
                    .unwrap();
                self.oracle.add_link(y, x, link.clone()).await.unwrap();
            }
        }
    }

    /// Run validator `i` as a Byzantine voter (commonware's conflicter): for every vote it
    /// sees, it signs notarize and finalize votes for other, random payloads in the same
    /// view and sends them to everyone. It runs no application and proposes nothing.
    fn start_equivocator(&self, context: &deterministic::Context, i: usize) -> Handle<()> {
        use commonware_consensus::simplex::mocks::conflicter::{Config, Conflicter};
        use commonware_consensus::simplex::scheme::ed25519::Scheme;
        let key = self.keys[i].clone();
        let control = self.oracle.control(key.public_key());
        let validators = self.validators.clone();
        // It signs for this chain: its votes verify, they just conflict.
        let namespace = plexus_node::engine::chain_namespace(
            plexus_node::engine::CONSENSUS_NAMESPACE,
            &self.genesis.digest(),
        );
        context
            .child("byzantine")
            .with_attribute("index", i)
            .spawn(move |context| async move {
                let quota = Quota::per_second(NZU32!(10_000));
                let votes = control.register(VOTES_CHANNEL, quota).await.unwrap();
                let scheme = Scheme::signer(&namespace, validators, key).unwrap();
                let conflicter = Conflicter::<_, _, commonware_cryptography::Sha256>::new(
                    context.child("conflicter"),
                    Config { scheme },
                );
                let _ = conflicter.start(votes).await;
            })
    }

    /// Start validator `i` (again): a fresh in-memory state rebuilt from its storage.
    fn start(
        &self,
        context: &deterministic::Context,
        i: usize,
        incarnation: u32,
    ) -> (Shared, Handle<()>) {
        self.start_on(context, i, incarnation, &self.genesis, format!("v{i}"))
    }

    /// Start validator `i` on `genesis`, keeping its storage under `partition`.
    fn start_on(
        &self,
        context: &deterministic::Context,
        i: usize,
        incarnation: u32,
        genesis: &Genesis,
        partition: String,
    ) -> (Shared, Handle<()>) {
        let key = self.keys[i].clone();
        let ledger = State::from_genesis(genesis).unwrap();
        let shared = Shared::new(NodeState::new(ledger, genesis.digest(), 10_000));
        let control = self.oracle.control(key.public_key());
        let validators = self.validators.clone();
        let node_shared = shared.clone();
        let handle = context
            .child("node")
            .with_attribute("index", i)
            .with_attribute("incarnation", incarnation)
            .spawn(move |context| async move {
                let quota = Quota::per_second(NZU32!(10_000));
                let channels = Channels {
                    votes: control.register(VOTES_CHANNEL, quota).await.unwrap(),
                    certificates: control.register(CERTIFICATES_CHANNEL, quota).await.unwrap(),
                    resolver: control.register(RESOLVER_CHANNEL, quota).await.unwrap(),
                    blocks: control.register(BLOCKS_CHANNEL, quota).await.unwrap(),
                    requests: control.register(REQUESTS_CHANNEL, quota).await.unwrap(),
                    txs: control.register(TXS_CHANNEL, quota).await.unwrap(),
                };
                let (_mailbox, _app, engine) = start_validator(
                    context.child("validator"),
                    key,
                    validators,
                    node_shared,
                    Timing::for_block_time(Duration::from_millis(100)),
                    1_000,
                    partition,
                    control.clone(),
                    channels,
                )
                .await;
                let _ = engine.await;
            });
        (shared, handle)
    }
}

fn height(shared: &Shared) -> u64 {
    shared.lock().ledger.height().get()
}

async fn wait_for(context: &deterministic::Context, nodes: &[&Shared], target: u64) {
    loop {
        if nodes.iter().all(|s| height(s) >= target) {
            return;
        }
        context.sleep(Duration::from_millis(50)).await;
    }
}

fn root_at(shared: &Shared, h: u64) -> Digest {
    shared.lock().state_roots[h as usize]
}

fn transfer(
    key: &PrivateKey,
    nonce: u64,
    to: Address,
    amount: u128,
) -> plexus_types::SignedTransaction {
    Transaction {
        chain_id: "plexus-sim".into(),
        signer: Address::from(&key.public_key()),
        nonce: Nonce::new(nonce),
        fee: Amount::new(1),
        action: Action::Transfer {
            to,
            amount: Amount::new(amount),
        },
    }
    .sign(key)
}

fn check_agreement(nodes: &[&Shared], upto: u64) {
    for h in 0..=upto {
        let root = root_at(nodes[0], h);
        for node in &nodes[1..] {
            assert_eq!(root_at(node, h), root, "state roots differ at height {h}");
        }
    }
    for node in nodes {
        node.lock().ledger.check_invariant().unwrap();
    }
}

fn good_link() -> Link {
    Link {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        success_rate: commonware_utils::probability!(1.0),
    }
}

#[test]
fn four_validators_finalize_transfers_and_agree() {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(7)
            .with_timeout(Some(Duration::from_secs(120))),
    );
    runner.start(|context| async move {
        let cluster = Cluster::new(&context, good_link()).await;
        let nodes: Vec<(Shared, Handle<()>)> =
            (0..N).map(|i| cluster.start(&context, i, 0)).collect();
        let shared: Vec<&Shared> = nodes.iter().map(|(s, _)| s).collect();
        wait_for(&context, &shared, 3).await;

        // Every validator's mempool gets the same transfers; whichever leads includes them.
        let alice = key_from_seed(0);
        let bob = Address::from(&key_from_seed(1).public_key());
        for nonce in 0..20 {
            let tx = transfer(&alice, nonce, bob, 100);
            for node in &shared {
                node.lock().submit(tx.clone()).unwrap();
            }
        }
        let start = height(shared[0]);
        wait_for(&context, &shared, start + 15).await;
        let upto = shared.iter().map(|s| height(s)).min().unwrap();
        check_agreement(&shared, upto);
        for node in &shared {
            let state = node.lock();
            assert_eq!(
                state.ledger.account(&bob).balance,
                Amount::new(1_000_000 + 20 * 100)
            );
            assert_eq!(state.ledger.treasury(), Amount::new(20));
            assert!(state.mempool.is_empty());
        }
    });
}

#[test]
fn crashed_validator_restarts_and_catches_up() {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(11)
            .with_timeout(Some(Duration::from_secs(300))),
    );
    runner.start(|context| async move {
        let cluster = Cluster::new(&context, good_link()).await;
        let mut nodes: Vec<(Shared, Handle<()>)> =
            (0..N).map(|i| cluster.start(&context, i, 0)).collect();
        {
            let shared: Vec<&Shared> = nodes.iter().map(|(s, _)| s).collect();
            wait_for(&context, &shared, 5).await;
        }
        // Crash validator 0; the other three (a quorum) keep finalizing.
        nodes[0].1.abort();
        let crashed_at = height(&nodes[0].0);
        let alice = key_from_seed(0);
        let carol = Address::from(&key_from_seed(2).public_key());
        for nonce in 0..5 {
            let tx = transfer(&alice, nonce, carol, 7);
            for (shared, _) in &nodes[1..] {
                shared.lock().submit(tx.clone()).unwrap();
            }
        }
        {
            let live: Vec<&Shared> = nodes[1..].iter().map(|(s, _)| s).collect();
            wait_for(&context, &live, crashed_at + 20).await;
        }
        // Restart it: it replays its journal, then backfills the blocks it missed from peers.
        nodes[0] = cluster.start(&context, 0, 1);
        let target = nodes[1..].iter().map(|(s, _)| height(s)).max().unwrap() + 5;
        let shared: Vec<&Shared> = nodes.iter().map(|(s, _)| s).collect();
        wait_for(&context, &shared, target).await;
        let upto = shared.iter().map(|s| height(s)).min().unwrap();
        check_agreement(&shared, upto);
        assert_eq!(
            shared[0].lock().ledger.account(&carol).balance,
            Amount::new(1_000_000 + 35)
        );
    });
}

#[test]
fn lossy_slow_links_still_finalize_and_agree() {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(23)
            .with_timeout(Some(Duration::from_secs(600))),
    );
    runner.start(|context| async move {
        // 10% of messages lost, 80 ms mean latency with 40 ms jitter.
        let link = Link {
            latency: Duration::from_millis(80),
            jitter: Duration::from_millis(40),
            success_rate: commonware_utils::probability!(0.9),
        };
        let cluster = Cluster::new(&context, link).await;
        let nodes: Vec<(Shared, Handle<()>)> =
            (0..N).map(|i| cluster.start(&context, i, 0)).collect();
        let shared: Vec<&Shared> = nodes.iter().map(|(s, _)| s).collect();
        let alice = key_from_seed(0);
        let bob = Address::from(&key_from_seed(1).public_key());
        for nonce in 0..10 {
            let tx = transfer(&alice, nonce, bob, 3);
            for node in &shared {
                node.lock().submit(tx.clone()).unwrap();
            }
        }
        wait_for(&context, &shared, 25).await;
        let upto = shared.iter().map(|s| height(s)).min().unwrap();
        check_agreement(&shared, upto);
        for node in &shared {
            assert_eq!(
                node.lock().ledger.account(&bob).balance,
                Amount::new(1_000_000 + 30)
            );
        }
    });
}

#[test]
fn partitions_stop_finality_without_quorum_and_heal() {
    // Several seeds: each a different schedule of messages, leaders and timeouts.
    for seed in 37..42 {
        partitions_stop_finality_without_quorum_and_heal_with(seed);
    }
}

fn partitions_stop_finality_without_quorum_and_heal_with(seed: u64) {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(600))),
    );
    runner.start(|context| async move {
        let cluster = Cluster::new(&context, good_link()).await;
        let nodes: Vec<(Shared, Handle<()>)> =
            (0..N).map(|i| cluster.start(&context, i, 0)).collect();
        let shared: Vec<&Shared> = nodes.iter().map(|(s, _)| s).collect();
        wait_for(&context, &shared, 5).await;

        // A 2-2 split: neither side holds a quorum (3 of 4), so nothing more is finalized
        // anywhere (a block already certified as the split happens may still land).
        cluster.split(&[0, 1], &[2, 3]).await;
        context.sleep(Duration::from_secs(2)).await;
        let frozen: Vec<u64> = shared.iter().map(|s| height(s)).collect();
        context.sleep(Duration::from_secs(10)).await;
        let after: Vec<u64> = shared.iter().map(|s| height(s)).collect();
        assert_eq!(frozen, after, "finalized without a quorum");

        // Healed: finality resumes and everyone agrees.
        cluster.heal(&[0, 1], &[2, 3], good_link()).await;
        let top = *after.iter().max().unwrap();
        wait_for(&context, &shared, top + 10).await;
        let upto = shared.iter().map(|s| height(s)).min().unwrap();
        check_agreement(&shared, upto);

        // One validator cut off: the other three keep finalizing, it stalls; healed, it
        // fetches the blocks it missed and agrees.
        cluster.split(&[3], &[0, 1, 2]).await;
        context.sleep(Duration::from_secs(1)).await;
        let cut_at = height(shared[3]);
        let alice = key_from_seed(0);
        let bob = Address::from(&key_from_seed(1).public_key());
        for nonce in 0..5 {
            let tx = transfer(&alice, nonce, bob, 11);
            for node in &shared[..3] {
                node.lock().submit(tx.clone()).unwrap();
            }
        }
        wait_for(&context, &shared[..3], cut_at + 20).await;
        assert!(
            height(shared[3]) <= cut_at + 1,
            "an isolated validator finalized alone"
        );
        cluster.heal(&[3], &[0, 1, 2], good_link()).await;
        let target = shared[..3].iter().map(|s| height(s)).max().unwrap() + 3;
        wait_for(&context, &shared, target).await;
        let upto = shared.iter().map(|s| height(s)).min().unwrap();
        check_agreement(&shared, upto);
        for node in &shared {
            assert_eq!(
                node.lock().ledger.account(&bob).balance,
                Amount::new(1_000_000 + 55)
            );
        }
    });
}

#[test]
fn an_equivocating_validator_cannot_break_agreement() {
    // Several seeds: each a different schedule of messages, leaders and timeouts.
    for seed in 41..46 {
        an_equivocating_validator_cannot_break_agreement_with(seed);
    }
}

fn an_equivocating_validator_cannot_break_agreement_with(seed: u64) {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(600))),
    );
    runner.start(|context| async move {
        let cluster = Cluster::new(&context, good_link()).await;
        // Validators 0-2 are honest (exactly a quorum); 3 signs conflicting votes.
        let honest: Vec<(Shared, Handle<()>)> =
            (0..3).map(|i| cluster.start(&context, i, 0)).collect();
        let _byzantine = cluster.start_equivocator(&context, 3);
        let shared: Vec<&Shared> = honest.iter().map(|(s, _)| s).collect();
        let alice = key_from_seed(0);
        let carol = Address::from(&key_from_seed(2).public_key());
        for nonce in 0..8 {
            let tx = transfer(&alice, nonce, carol, 5);
            for node in &shared {
                node.lock().submit(tx.clone()).unwrap();
            }
        }
        wait_for(&context, &shared, 20).await;
        let upto = shared.iter().map(|s| height(s)).min().unwrap();
        check_agreement(&shared, upto);
        // Blocks are hash-linked: equal heads at an equal height mean identical chains.
        loop {
            let heads: Vec<(u64, Digest)> = shared
                .iter()
                .map(|s| {
                    let state = s.lock();
                    (state.ledger.height().get(), state.head_digest)
                })
                .collect();
            if heads.windows(2).all(|w| w[0].0 == w[1].0) {
                assert!(
                    heads.windows(2).all(|w| w[0].1 == w[1].1),
                    "conflicting finalizations: {heads:?}"
                );
                break;
            }
            context.sleep(Duration::from_millis(5)).await;
        }
        for node in &shared {
            assert_eq!(
                node.lock().ledger.account(&carol).balance,
                Amount::new(1_000_000 + 40)
            );
        }
        // Each honest validator caught it signing conflicting votes and blocked it.
        let byzantine = cluster.keys[3].public_key();
        let blocked = cluster.oracle.blocked().await.unwrap();
        assert_eq!(
            blocked
                .iter()
                .filter(|(_, peer)| *peer == byzantine)
                .count(),
            3,
            "every honest validator blocks the equivocator: {blocked:?}"
        );
    });
}

#[test]
fn a_validator_on_another_genesis_counts_for_nothing() {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(51)
            .with_timeout(Some(Duration::from_secs(600))),
    );
    runner.start(|context| async move {
        let cluster = Cluster::new(&context, good_link()).await;
        let honest: Vec<(Shared, Handle<()>)> =
            (0..3).map(|i| cluster.start(&context, i, 0)).collect();
        let shared: Vec<&Shared> = honest.iter().map(|(s, _)| s).collect();
        // Validator 3's key, but a genesis with another chain id: everything it signs is
        // under another namespace, so its votes and proposals never count here, and ours
        // never count there.
        let mut other = cluster.genesis.clone();
        other.chain_id = "plexus-other".into();
        let (impostor, _impostor) = cluster.start_on(&context, 3, 0, &other, "v3-other".into());
        let alice = key_from_seed(0);
        let carol = Address::from(&key_from_seed(2).public_key());
        for nonce in 0..4 {
            let tx = transfer(&alice, nonce, carol, 5);
            for node in &shared {
                node.lock().submit(tx.clone()).unwrap();
            }
        }
        wait_for(&context, &shared, 15).await;
        assert_eq!(
            height(&impostor),
            0,
            "a validator on another chain finalized a block with this one"
        );
        let upto = shared.iter().map(|s| height(s)).min().unwrap();
        check_agreement(&shared, upto);

        assert_eq!(
            impostor.lock().ledger.account(&carol).balance,
            Amount::new(1_000_000)
        );
        for node in &shared {
            assert_eq!(
                node.lock().ledger.account(&carol).balance,
                Amount::new(1_000_000 + 20)
            );
        }
    });
}

#[test]
fn transactions_submitted_to_one_validator_reach_every_mempool() {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(43)
            .with_timeout(Some(Duration::from_secs(120))),
    );
    runner.start(|context| async move {
        let cluster = Cluster::new(&context, good_link()).await;
        let nodes: Vec<(Shared, Handle<()>)> =
            (0..N).map(|i| cluster.start(&context, i, 0)).collect();
        let shared: Vec<&Shared> = nodes.iter().map(|(s, _)| s).collect();
        wait_for(&context, &shared, 3).await;
        let alice = key_from_seed(0);
        let bob = Address::from(&key_from_seed(1).public_key());
        let txs: Vec<_> = (0..5).map(|n| transfer(&alice, n, bob, 9)).collect();
        for tx in &txs {
            shared[0].lock().submit(tx.clone()).unwrap();
        }
        // Links take 20±5 ms: well within a block time, every validator knows them.
        context.sleep(Duration::from_millis(60)).await;
        for (i, node) in shared.iter().enumerate().skip(1) {
            let state = node.lock();
            for tx in &txs {
                assert!(
                    state.statuses.contains_key(&tx.hash()),
                    "validator {i} never heard of a gossiped transaction"
                );
            }
        }
        let start = height(shared[0]);
        wait_for(&context, &shared, start + 5).await;
        for node in &shared {
            assert_eq!(
                node.lock().ledger.account(&bob).balance,
                Amount::new(1_000_000 + 45)
            );
        }
    });
}
