//! Seeded whole-network simulations: 4 validators on commonware's deterministic runtime with a
//! simulated network. Same seed, same run.

use commonware_p2p::simulated::{Config as NetConfig, Link, Network, Oracle};
use commonware_runtime::{
    Clock, Handle, Quota, Runner as _, Spawner as _, Supervisor as _, deterministic,
};
use commonware_utils::{NZU32, NZUsize, ordered::Set};
use plexus_ledger::{Genesis, GenesisAccount, Params, State};
use plexus_node::app::{
    BLOCKS_CHANNEL, CERTIFICATES_CHANNEL, REQUESTS_CHANNEL, RESOLVER_CHANNEL, VOTES_CHANNEL,
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

    /// Start validator `i` (again): a fresh in-memory state rebuilt from its storage.
    fn start(
        &self,
        context: &deterministic::Context,
        i: usize,
        incarnation: u32,
    ) -> (Shared, Handle<()>) {
        let key = self.keys[i].clone();
        let ledger = State::from_genesis(&self.genesis).unwrap();
        let shared = Shared::new(NodeState::new(ledger, self.genesis.digest(), 10_000));
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
                };
                let (_mailbox, _app, engine) = start_validator(
                    context.child("validator"),
                    key,
                    validators,
                    node_shared,
                    Timing::for_block_time(Duration::from_millis(100)),
                    1_000,
                    format!("v{i}"),
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
