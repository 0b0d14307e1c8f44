//! Property tests: random blocks of random (often invalid) transactions among a few keys.
//!
//! After every block: the invariant holds and the supply is unchanged; executing the block
//! transaction by transaction gives the same results and state, and every failed
//! transaction leaves the state (and its root) untouched; admission agrees with execution.
//! At the end, replaying the blocks on a fresh state reproduces every state root.

use commonware_cryptography::Signer;
use plexus_ledger::{Genesis, GenesisAccount, Params, Queued, State, TxError, cost};
use plexus_types::{
    Action, Address, Amount, Height, Nonce, PrivateKey, SignedTransaction, Transaction,
    key_from_seed,
};
use proptest::prelude::*;
use std::sync::LazyLock;

const CHAIN: &str = "plexus-prop";
/// Funded keys; one more key (index `FUNDED`) is never funded at genesis.
const FUNDED: usize = 5;
const KEYS: usize = FUNDED + 1;

static ACCOUNTS: LazyLock<Vec<(PrivateKey, Address)>> = LazyLock::new(|| {
    (0..KEYS as u64)
        .map(|i| {
            let key = key_from_seed(1_000 + i);
            let addr = Address::from(&key.public_key());
            (key, addr)
        })
        .collect()
});

#[derive(Clone, Debug)]
enum Kind {
    Transfer { to: usize },
    Bond,
    Unbond,
    Withdraw,
}

#[derive(Clone, Debug)]
enum Nonces {
    Next,
    Stale,
    Gap(u64),
}

#[derive(Clone, Debug)]
enum Fee {
    Min,
    Above(u128),
    Below,
    Huge,
}

#[derive(Clone, Debug)]
enum Forgery {
    None,
    WrongChain,
    OtherKey,
    Tampered,
}

#[derive(Clone, Debug)]
struct Op {
    signer: usize,
    kind: Kind,
    amount: u128,
    nonce: Nonces,
    fee: Fee,
    forgery: Forgery,
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![
        6 => 1u128..2_000,
        2 => 2_000u128..200_000,
        1 => Just(0u128),
        1 => prop_oneof![(0u128..1_000).prop_map(|d| u128::MAX - d), Just(u128::MAX / 2)],
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        5 => (0..KEYS).prop_map(|to| Kind::Transfer { to }),
        2 => Just(Kind::Bond),
        2 => Just(Kind::Unbond),
        2 => Just(Kind::Withdraw),
    ];
    let nonce = prop_oneof![
        10 => Just(Nonces::Next),
        1 => Just(Nonces::Stale),
        1 => (1u64..3).prop_map(Nonces::Gap),
    ];
    let fee = prop_oneof![
        6 => Just(Fee::Min),
        3 => (0u128..50).prop_map(Fee::Above),
        1 => Just(Fee::Below),
        1 => Just(Fee::Huge),
    ];
    let forgery = prop_oneof![
        20 => Just(Forgery::None),
        1 => Just(Forgery::WrongChain),
        1 => Just(Forgery::OtherKey),
        1 => Just(Forgery::Tampered),
    ];
    (0..KEYS, kind, amount(), nonce, fee, forgery).prop_map(
        |(signer, kind, amount, nonce, fee, forgery)| Op {
            signer,
            kind,
            amount,
            nonce,
            fee,
            forgery,
        },
    )
}

fn genesis() -> impl Strategy<Value = Genesis> {
    (
        0u128..5,
        0u64..4,
        proptest::collection::vec((0u128..100_000, 0u128..5_000), FUNDED),
        any::<bool>(),
    )
        .prop_map(|(min_fee, unbonding_delay, funds, whale)| Genesis {
            chain_id: CHAIN.into(),
            models: Vec::new(),
            params: Params::new(Amount::new(min_fee), unbonding_delay),
            accounts: funds
                .into_iter()
                .enumerate()
                .map(|(i, (balance, stake))| GenesisAccount {
                    address: ACCOUNTS[i].1,
                    // A whale holding nearly half of u128 makes overflow attempts realistic.
                    balance: Amount::new(if whale && i == 0 {
                        u128::MAX / 2
                    } else {
                        balance
                    }),
                    stake: Amount::new(stake),
                })
                .collect(),
        })
}

/// Build and sign the transaction `op` describes against `state`, as if the signer already
/// had `queued` transactions ahead of it.
fn build(op: &Op, state: &State, queued: u64) -> SignedTransaction {
    let (key, signer) = &ACCOUNTS[op.signer];
    let next = state.account(signer).nonce.get() + queued;
    let nonce = match op.nonce {
        Nonces::Next => next,
        Nonces::Stale => next.saturating_sub(1),
        Nonces::Gap(g) => next + g,
    };
    let min = state.params().min_fee.get();
    let fee = match op.fee {
        Fee::Min => min,
        Fee::Above(x) => min + x,
        Fee::Below => min.saturating_sub(1),
        Fee::Huge => u128::MAX - 3,
    };
    let amount = Amount::new(op.amount);
    let action = match op.kind {
        Kind::Transfer { to } => Action::Transfer {
            to: ACCOUNTS[to].1,
            amount,
        },
        Kind::Bond => Action::Bond { amount },
        Kind::Unbond => Action::Unbond { amount },
        Kind::Withdraw => Action::Withdraw,
    };
    let mut tx = Transaction {
        chain_id: CHAIN.into(),
        signer: *signer,
        nonce: Nonce::new(nonce),
        fee: Amount::new(fee),
        action,
    };
    match op.forgery {
        Forgery::None => tx.sign(key),
        Forgery::WrongChain => {
            tx.chain_id = "plexus-other".into();
            tx.sign(key)
        }
        Forgery::OtherKey => tx.sign(&ACCOUNTS[(op.signer + 1) % KEYS].0),
        Forgery::Tampered => {
            let mut stx = tx.sign(key);
            stx.tx.nonce = Nonce::new(nonce ^ 1);
            stx
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn blocks_conserve_supply_and_replay_identically(
        g in genesis(),
        blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..24), 1..16),
    ) {
        let mut state = State::from_genesis(&g).unwrap();
        let supply = state.supply();
        let mut stepwise = state.clone();
        let mut history = Vec::new();

        for (i, ops) in blocks.iter().enumerate() {
            let height = Height::new(i as u64 + 1);
            // Build against a scratch copy that executes each transaction as it is made, so
            // `Nonces::Next` is the nonce that will really be next.
            let mut scratch = state.clone();
            scratch.apply_block(height, &plexus_types::Digest([7; 32]), &[]).unwrap();
            let txs: Vec<_> = ops
                .iter()
                .map(|op| {
                    let tx = build(op, &scratch, 0);
                    let _ = scratch.apply_tx(&tx);
                    tx
                })
                .collect();
            let treasury = state.treasury();
            let out = state.apply_block(height, &plexus_types::Digest([7; 32]), &txs).unwrap();

            state.check_invariant().unwrap();
            prop_assert_eq!(state.supply(), supply);
            prop_assert_eq!(state.height(), height);
            prop_assert_eq!(out.state_root, state.state_root());
            prop_assert_eq!(out.results.len(), txs.len());
            prop_assert_eq!(treasury.checked_add(out.fees), Some(state.treasury()));

            // The same block, one transaction at a time.
            stepwise.apply_block(height, &plexus_types::Digest([7; 32]), &[]).unwrap();
            for (tx, result) in txs.iter().zip(&out.results) {
                let before = stepwise.clone();
                let root = stepwise.state_root();
                // Admission judges at the next height; only withdraw depends on it here.
                let admitted = stepwise.check_tx(tx, Queued::default());
                let applied = stepwise.apply_tx(tx);
                prop_assert_eq!(&applied, result);
                if !matches!(tx.tx.action, Action::Withdraw) {
                    prop_assert_eq!(&admitted, &applied);
                }
                if applied.is_err() {
                    prop_assert_eq!(&stepwise, &before);
                    prop_assert_eq!(stepwise.state_root(), root);
                } else {
                    prop_assert_eq!(stepwise.account(&tx.tx.signer).nonce, tx.tx.nonce.checked_next().unwrap());
                }
            }
            prop_assert_eq!(&stepwise, &state);
            history.push((txs, out.state_root));
        }

        let mut replay = State::from_genesis(&g).unwrap();
        for (i, (txs, root)) in history.iter().enumerate() {
            let out = replay.apply_block(Height::new(i as u64 + 1), &plexus_types::Digest([7; 32]), txs).unwrap();
            prop_assert_eq!(&out.state_root, root);
        }
        prop_assert_eq!(replay, state);
    }

    /// What admission accepts (with the sender's queue accounted for) executes, in order,
    /// in the next block: the mempool never promises funds or nonces twice.
    #[test]
    fn admitted_transfers_and_bonds_execute(
        g in genesis(),
        ops in proptest::collection::vec(op(), 1..30),
    ) {
        let mut state = State::from_genesis(&g).unwrap();
        let mut queues = [Queued::default(); KEYS];
        let mut admitted = Vec::new();
        for op in ops.iter().filter(|op| matches!(op.kind, Kind::Transfer { .. } | Kind::Bond)) {
            let tx = build(op, &state, queues[op.signer].txs);
            let queue = &mut queues[op.signer];
            if state.check_tx(&tx, *queue).is_ok() {
                queue.txs += 1;
                queue.spend = queue.spend.checked_add(cost(&tx.tx).unwrap()).unwrap();
                admitted.push(tx);
            }
        }
        let out = state.apply_block(Height::new(1), &plexus_types::Digest([7; 32]), &admitted).unwrap();
        let failures: Vec<&TxError> = out.results.iter().filter_map(|r| r.as_ref().err()).collect();
        prop_assert!(failures.is_empty(), "{:?}", failures);
    }
}
