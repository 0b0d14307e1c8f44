//! Ledger throughput: transfers among many funded accounts, executed block by block.
//!
//! Run with `cargo bench -p plexus-ledger --bench throughput`, adding
//! `--features bench-unchecked-signatures` to also time execution with signature
//! verification skipped.
//!
//! Reports, separately: whole-block execution (`apply_block`: checks, signature verification,
//! writes, invariant check and state root), signature verification alone, and the two
//! per-block linear passes (invariant check, state root).

use commonware_cryptography::Signer;
use plexus_ledger::{Genesis, GenesisAccount, Params, State};
use plexus_types::{
    Action, Address, Amount, Height, Nonce, SignedTransaction, Transaction, key_from_seed,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ACCOUNTS: u64 = 10_000;
const TXS: usize = 50_000;
const BLOCK: usize = 1_000;
const CHAIN: &str = "plexus-bench";

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let t = Instant::now();
    let keys: Vec<_> = (0..ACCOUNTS).map(key_from_seed).collect();
    let addrs: Vec<Address> = keys
        .iter()
        .map(|k| Address::from(&k.public_key()))
        .collect();
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        models: Vec::new(),
        params: Params::new(Amount::new(1), 10),
        accounts: addrs
            .iter()
            .map(|a| GenesisAccount {
                address: *a,
                balance: Amount::new(1_000_000_000),
                stake: Amount::ZERO,
            })
            .collect(),
    };
    let mut state = State::from_genesis(&genesis).unwrap();

    // Sender i % N sends to a pseudo-random other account; nonces follow per sender.
    let mut nonces = vec![0u64; ACCOUNTS as usize];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let txs: Vec<SignedTransaction> = (0..TXS)
        .map(|i| {
            let from = i % ACCOUNTS as usize;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut to = (x % ACCOUNTS) as usize;
            if to == from {
                to = (to + 1) % ACCOUNTS as usize;
            }
            let nonce = nonces[from];
            nonces[from] += 1;
            Transaction {
                chain_id: CHAIN.into(),
                signer: addrs[from],
                nonce: Nonce::new(nonce),
                fee: Amount::new(1),
                action: Action::Transfer {
                    to: addrs[to],
                    amount: Amount::new(1 + (x % 1_000) as u128),
                },
            }
            .sign(&keys[from])
        })
        .collect();
    println!(
        "setup: {ACCOUNTS} accounts, {TXS} signed transfers in {:.2?}",
        t.elapsed()
    );

    // Per block: signature verification of its transactions alone (same conditions), then
    // the block itself, then the two linear passes on their own.
    let mut verify = Vec::new();
    let mut apply = Vec::new();
    let mut root = Vec::new();
    let mut invariant = Vec::new();
    for (i, chunk) in txs.chunks(BLOCK).enumerate() {
        let t = Instant::now();
        for tx in chunk {
            assert!(black_box(tx).verify_signature());
        }
        verify.push(t.elapsed());

        let t = Instant::now();
        let out = state
            .apply_block(
                Height::new(i as u64 + 1),
                &plexus_types::Digest([7; 32]),
                black_box(chunk),
            )
            .unwrap();
        apply.push(t.elapsed());
        assert!(out.results.iter().all(Result::is_ok));

        let t = Instant::now();
        black_box(state.state_root());
        root.push(t.elapsed());
        let t = Instant::now();
        state.check_invariant().unwrap();
        invariant.push(t.elapsed());
    }
    // Medians resist the noise of a shared machine better than totals do.
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let total: Duration = apply.iter().sum();
    let (verify, apply, root, invariant) = (
        median(&mut verify),
        median(&mut apply),
        median(&mut root),
        median(&mut invariant),
    );

    println!("{} blocks of {BLOCK}; per-block medians:", TXS / BLOCK);
    println!(
        "apply_block (everything):        {:>10.0} tx/s  ({:.2?} per block; {:.0} tx/s over the run)",
        per_sec(BLOCK, apply),
        apply,
        per_sec(TXS, total)
    );
    println!(
        "signature verification alone:    {:>10.0} tx/s  ({verify:.2?} per block)",
        per_sec(BLOCK, verify)
    );
    skipping_signatures(&genesis, &txs);
    println!("state_root ({ACCOUNTS} accounts):      {root:.2?} per block");
    println!("check_invariant ({ACCOUNTS} accounts): {invariant:.2?} per block");
}

/// The same blocks without signature verification (needs the feature that exposes it).
#[cfg(feature = "bench-unchecked-signatures")]
fn skipping_signatures(genesis: &Genesis, txs: &[SignedTransaction]) {
    let mut state = State::from_genesis(genesis).unwrap();
    let mut total = Duration::ZERO;
    for (i, chunk) in txs.chunks(BLOCK).enumerate() {
        let t = Instant::now();
        let out = state
            .apply_block_skipping_signatures_for_benchmarks(
                Height::new(i as u64 + 1),
                &plexus_types::Digest([7; 32]),
                black_box(chunk),
            )
            .unwrap();
        total += t.elapsed();
        assert!(out.results.iter().all(Result::is_ok));
    }
    let blocks = txs.len().div_ceil(BLOCK) as u32;
    println!(
        "apply_block, signatures skipped: {:>10.0} tx/s  ({:.2?} per block, measured)",
        per_sec(txs.len(), total),
        total / blocks
    );
}

#[cfg(not(feature = "bench-unchecked-signatures"))]
fn skipping_signatures(_: &Genesis, _: &[SignedTransaction]) {
    println!("(add --features bench-unchecked-signatures to measure execution without signatures)");
}
