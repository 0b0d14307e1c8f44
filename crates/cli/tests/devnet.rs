//! End to end: the real `plexus` binary runs a devnet (real consensus, p2p, storage, RPC);
//! the test drives it over HTTP and with the CLI, kills it with SIGKILL and restarts it.

use commonware_codec::Encode;
use plexus_types::{
    Action, Address, Amount, Nonce, PrivateKey, Signer, Transaction, parse_private_key,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn post(rpc: &str, body: &str) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{rpc}/tx"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, value)
    })
}

fn submit(rpc: &str, tx: &plexus_types::SignedTransaction) -> (u16, Value) {
    post(rpc, &json!({ "tx": hex::encode(tx.encode()) }).to_string())
}

/// Read `/events/blocks` over a raw socket until the first block event.
fn first_block_event(rpc: &str) -> Value {
    use std::io::{BufRead, BufReader, Write};
    let address = rpc.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /events/blocks HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data: ")
            && let Ok(value) = serde_json::from_str::<Value>(data)
        {
            return value;
        }
    }
    panic!("no block event");
}

fn key(path: &Value) -> PrivateKey {
    parse_private_key(&std::fs::read_to_string(path.as_str().unwrap()).unwrap()).unwrap()
}

#[test]
fn devnet_transfers_rejects_bad_input_and_survives_kill_9() {
    let dir = std::env::temp_dir().join(format!("plexus-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (rpc_port, p2p_port) = (free_port(), free_port());
    let mut devnet = Devnet::start(&dir, rpc_port, p2p_port);
    let rpc = devnet.rpc.clone();
    let file = devnet.file();
    assert_eq!(file["accounts"].as_array().unwrap().len(), 4);

    // Finality advances.
    wait_height(&rpc, 3);
    let s = status(&rpc);
    assert_eq!(s["chain_id"], "plexus-devnet");
    assert_eq!(s["supply"], s["holdings"]);

    // A transfer moves exactly the amount, plus the stated fee.
    let alice_key = file["accounts"][0]["key_file"]
        .as_str()
        .unwrap()
        .to_string();
    let bob = file["accounts"][1]["address"].as_str().unwrap().to_string();
    let alice = file["accounts"][0]["address"].as_str().unwrap().to_string();
    let before_a = amount(&cli_json(&["balance", &alice, "--rpc", &rpc, "--json"])["balance"]);
    let before_b = amount(&cli_json(&["balance", &bob, "--rpc", &rpc, "--json"])["balance"]);
    let out = cli_json(&[
        "transfer", "--key", &alice_key, "--to", &bob, "--amount", "12345", "--wait", "--json",
        "--rpc", &rpc,
    ]);
    assert_eq!(out["status"], "finalized", "{out}");
    assert_eq!(out["success"], true, "{out}");
    let fee = amount(&out["fee"]);
    assert_eq!(fee, amount(&s["min_fee"]));
    let after_a = amount(&cli_json(&["balance", &alice, "--rpc", &rpc, "--json"])["balance"]);
    let after_b = amount(&cli_json(&["balance", &bob, "--rpc", &rpc, "--json"])["balance"]);
    assert_eq!(before_a - after_a, 12345 + fee);
    assert_eq!(after_b - before_b, 12345);
    let s = status(&rpc);
    assert_eq!(s["supply"], s["holdings"]);

    // Staking through the CLI: bond moves balance to stake (plus the fee).
    let dave_key = file["accounts"][3]["key_file"]
        .as_str()
        .unwrap()
        .to_string();
    let dave = file["accounts"][3]["address"].as_str().unwrap().to_string();
    let out = cli_json(&[
        "stake", "bond", "--key", &dave_key, "--amount", "5000", "--wait", "--json", "--rpc", &rpc,
    ]);
    assert_eq!(out["success"], true, "{out}");
    let account = cli_json(&["balance", &dave, "--rpc", &rpc, "--json"]);
    assert_eq!(amount(&account["stake"]), 5000);
    let out = cli_json(&[
        "stake", "unbond", "--key", &dave_key, "--amount", "2000", "--wait", "--json", "--rpc",
        &rpc,
    ]);
    assert_eq!(out["success"], true, "{out}");
    let account = cli_json(&["balance", &dave, "--rpc", &rpc, "--json"]);
    assert_eq!(amount(&account["stake"]), 3000);
    assert_eq!(account["unbonding"].as_array().unwrap().len(), 1);
    let s = status(&rpc);
    assert_eq!(s["supply"], s["holdings"]);

    // The stream of finalized blocks (server-sent events).
    let event = first_block_event(&rpc);
    assert!(event["height"].as_u64().unwrap() > 0, "{event}");
    assert_eq!(event["state_root"].as_str().unwrap().len(), 64);

    // Bad inputs: each a 4xx JSON error naming the problem; nothing changes.
    let signer_key = key(&file["accounts"][2]["key_file"]);
    let signer = Address::from(&signer_key.public_key());
    let base = |nonce: u64, amount: u128| Transaction {
        chain_id: "plexus-devnet".into(),
        signer,
        nonce: Nonce::new(nonce),
        fee: Amount::new(10),
        action: Action::Transfer {
            to: bob.parse().unwrap(),
            amount: Amount::new(amount),
        },
    };
    let cases: Vec<(&str, (u16, Value))> = vec![
        ("malformed_json", post(&rpc, "{not json")),
        ("missing_tx", post(&rpc, "{\"transaction\": \"00\"}")),
        ("malformed_tx", post(&rpc, "{\"tx\": \"zz\"}")),
        ("malformed_tx", post(&rpc, "{\"tx\": \"0011\"}")),
        (
            "tx_too_large",
            post(&rpc, &json!({"tx": "00".repeat(5000)}).to_string()),
        ),
        ("invalid_signature", {
            let mut tx = base(0, 1).sign(&signer_key);
            tx.tx.fee = Amount::new(11);
            submit(&rpc, &tx)
        }),
        ("wrong_chain_id", {
            let mut tx = base(0, 1);
            tx.chain_id = "other-chain".into();
            submit(&rpc, &tx.sign(&signer_key))
        }),
        ("nonce_gap", submit(&rpc, &base(5, 1).sign(&signer_key))),
        (
            "insufficient_funds",
            submit(&rpc, &base(0, 10u128.pow(30)).sign(&signer_key)),
        ),
        (
            "overflow",
            submit(&rpc, &base(0, u128::MAX).sign(&signer_key)),
        ),
        ("fee_too_low", {
            let mut tx = base(0, 1);
            tx.fee = Amount::new(1);
            submit(&rpc, &tx.sign(&signer_key))
        }),
    ];
    for (expected, (code, body)) in &cases {
        assert!(
            (400..500).contains(code),
            "{expected}: status {code}, {body}"
        );
        assert_eq!(body["error"]["code"], *expected, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // Oversized body beyond the HTTP limit.
    let (code, body) = post(&rpc, &"x".repeat(100_000));
    assert_eq!(code, 413);
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    // Replay: a transaction that already executed.
    let first = base(0, 5).sign(&signer_key);
    assert_eq!(submit(&rpc, &first).0, 202);
    let hash = plexus_types::digest_hex(&first.hash());
    let started = Instant::now();
    while cli_json(&["tx", &hash, "--rpc", &rpc])["status"] == "pending" {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, body) = submit(&rpc, &first);
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["code"], "stale_nonce", "{body}");

    // kill -9, restart with the same --dir: the chain continues with balances intact.
    let height_before = status(&rpc)["finalized_height"].as_u64().unwrap();
    let bob_before = amount(&cli_json(&["balance", &bob, "--rpc", &rpc, "--json"])["balance"]);
    devnet.kill9();
    let devnet = Devnet::start(&dir, rpc_port, p2p_port);
    let s = status(&devnet.rpc);
    assert!(
        s["finalized_height"].as_u64().unwrap() >= height_before,
        "{s}"
    );
    assert_eq!(
        amount(&cli_json(&["balance", &bob, "--rpc", &devnet.rpc, "--json"])["balance"]),
        bob_before
    );
    wait_height(&devnet.rpc, height_before + 3);
    let s = status(&devnet.rpc);
    assert_eq!(s["supply"], s["holdings"]);
    drop(devnet);
    let _ = std::fs::remove_dir_all(&dir);
}
