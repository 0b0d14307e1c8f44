//! Ledger throughput: transfers among many funded accounts, executed block by block.
//!
//! Run with `cargo bench -p plexus-ledger --bench throughput`.
//!
//! Reports, separately: whole-block execution (`apply_block`: checks, signature verification,
//! writes, invariant check and state root), signature verification alone, and the two
//! per-block linear passes (invariant check, state root). Execution without signatures is
//! derived by subtraction, so the ledger needs no unchecked path.

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
        params: Params {
            min_fee: Amount::new(1),
            unbonding_delay: 10,
        },
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

    // Signature verification alone.
    let t = Instant::now();
    for tx in &txs {
        assert!(black_box(tx).verify_signature());
    }
    let verify = t.elapsed();

    let mut apply = Duration::ZERO;
    let mut root = Duration::ZERO;
    let mut invariant = Duration::ZERO;
    let blocks = txs.len().div_ceil(BLOCK);
    for (i, chunk) in txs.chunks(BLOCK).enumerate() {
        let t = Instant::now();
        let out = state
            .apply_block(Height::new(i as u64 + 1), black_box(chunk))
            .unwrap();
        apply += t.elapsed();
        assert!(out.results.iter().all(Result::is_ok));

        let t = Instant::now();
        black_box(state.state_root());
        root += t.elapsed();
        let t = Instant::now();
        state.check_invariant().unwrap();
        invariant += t.elapsed();
    }
    let per_block = |d: Duration| d / blocks as u32;
    let without_sigs = apply.saturating_sub(verify);
    let without_linear = without_sigs.saturating_sub(root + invariant);

    println!("blocks of {BLOCK}: {blocks}");
    println!(
        "apply_block (everything):        {:>10.0} tx/s  ({:.2?} per block)",
        per_sec(TXS, apply),
        per_block(apply)
    );
    println!(
        "signature verification alone:    {:>10.0} tx/s  ({:.2?} per block)",
        per_sec(TXS, verify),
        per_block(verify)
    );
    println!(
        "apply_block minus signatures:    {:>10.0} tx/s  ({:.2?} per block)",
        per_sec(TXS, without_sigs),
        per_block(without_sigs)
    );
    println!(
        "  of which per-tx execution:     {:>10.0} tx/s  ({:.2?} per block)",
        per_sec(TXS, without_linear),
        per_block(without_linear)
    );
    println!(
        "state_root ({ACCOUNTS} accounts):     {:.2?} per block",
        per_block(root)
    );
    println!(
        "check_invariant ({ACCOUNTS} accounts): {:.2?} per block",
        per_block(invariant)
    );
}
