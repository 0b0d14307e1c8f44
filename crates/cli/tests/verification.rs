//! Verification end to end, with the real embedding model: a devnet that spot-checks every
//! committed job (`--verify-bps 10000`), two honest providers (`provider-1`, `provider-2`)
//! and a third, the dev account `dave`, that corrupts every output it commits
//! (`plexus provider run --cheat-rate 1.0`). Needs `plexus models install` first, so it is
//! `#[ignore]`d in plain `cargo test`; `scripts/test.sh` runs it after installing the models.
//!
//! Checks: each honest provider's job settles with its spot check agreeing (re-run by another
//! provider, which committed before the reveal); dave's job is disputed, decided against
//! him by the quorum, refunded in full to its owner, and dave is slashed `fraud_slash` with
//! his reputation at the minimum; the honest providers are never slashed and their stakes
//! move only by the penalties the chain reports; the supply falls by exactly what the
//! dispute burned, and supply equals holdings throughout.

mod common;
use common::*;

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EMBED: &str = "all-minilm-l6-v2";
/// The devnet's stake per genesis provider (`DEV_PROVIDER_STAKE` in `devnet.rs`).
const DEV_PROVIDER_STAKE: u128 = 10_000_000_000;
/// The devnet's minimum provider stake (`DEV_MIN_PROVIDER_STAKE`): dave bonds exactly it.
const DEV_MIN_PROVIDER_STAKE: u128 = 1_000_000_000;
/// Reputation after a lost dispute (the ledger's `MIN_REPUTATION`).
const MIN_REPUTATION: u64 = 100;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn provider(rpc: &str, dir: &Path, name: &str, region: &str, extra: &[&str]) -> Process {
    let child = Command::new(BIN)
        .args(["provider", "run", "--rpc", rpc, "--models", EMBED])
        .args(["--capacity", "4", "--region", region])
        .arg("--key")
        .arg(dir.join("keys").join(format!("{name}.key")))
        .arg("--data-dir")
        .arg(dir.join(format!("{name}-data")))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start provider");
    Process(child)
}

fn address_of(dir: &Path, name: &str) -> String {
    let key = dir.join("keys").join(format!("{name}.key"));
    let shown = cli_json(&["keys", "show", key.to_str().unwrap(), "--json"]);
    shown["address"].as_str().unwrap().to_string()
}

fn balance(rpc: &str, address: &str) -> (u128, u128) {
    let b = cli_json(&["balance", address, "--rpc", rpc, "--json"]);
    (amount(&b["balance"]), amount(&b["stake"]))
}

fn registered(rpc: &str) -> Vec<Value> {
    cli_json(&["providers", "--rpc", rpc, "--json"])["providers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn job(rpc: &str, id: &str) -> Value {
    cli_json(&["job", "show", id, "--rpc", rpc, "--json"])
}

fn check_supply(rpc: &str) -> Value {
    let s = status(rpc);
    assert_eq!(s["supply"], s["holdings"], "supply != holdings: {s}");
    s
}

/// Every job event of every finalized block, from the node's `/events/blocks`, collected on
/// a thread of its own until the node goes away.
fn collect_events(rpc: &str) -> Arc<Mutex<Vec<Value>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let (sink, url) = (events.clone(), format!("{rpc}/events/blocks"));
    let (ready, subscribed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let Ok(mut response) = reqwest::Client::new().get(&url).send().await else {
                return;
            };
            let _ = ready.send(());
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let message: String = buffer.drain(..end + 2).collect();
                    for line in message.lines() {
                        let Some(data) = line.strip_prefix("data:") else {
                            continue;
                        };
                        if let Ok(block) = serde_json::from_str::<Value>(data.trim()) {
                            let mut sink = sink.lock().unwrap();
                            sink.extend(block["events"].as_array().cloned().unwrap_or_default());
                        }
                    }
                }
            }
        });
    });
    subscribed
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed to block events");
    events
}

fn events_of(events: &Mutex<Vec<Value>>, kind: &str) -> Vec<Value> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == kind)
        .cloned()
        .collect()
}

/// Submit an embedding job as alice; the `plexus job submit --json` output.
fn submit(rpc: &str, dir: &Path, text: &str, region: &str, wait: bool) -> Value {
    let key = dir.join("keys").join("alice.key");
    let mut args = vec![
        "job",
        "submit",
        "--rpc",
        rpc,
        "--model",
        EMBED,
        "--text",
        text,
        "--region",
        region,
        "--key",
        key.to_str().unwrap(),
        "--json",
    ];
    if wait {
        args.extend(["--wait", "--timeout", "60"]);
    }
    cli_json(&args)
}

#[test]
#[ignore = "needs the real models: run `plexus models install` (scripts/test.sh does)"]
fn a_cheating_provider_is_caught_slashed_and_its_job_refunded() {
    let dir = std::env::temp_dir().join(format!("plexus-verify-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let devnet = Devnet::start_with(&dir, free_port(), free_port(), &["--verify-bps", "10000"]);
    let rpc = devnet.rpc.clone();
    let ddir = devnet.dir.clone();
    let params = status(&rpc)["params"].clone();
    assert_eq!(params["verify_bps"], 10_000, "{params}");
    let fraud_slash = amount(&params["fraud_slash"]);
    let slash_reward_bps = params["slash_reward_bps"].as_u64().unwrap() as u128;
    let events = collect_events(&rpc);

    let (p1, p2, dave) = (
        address_of(&ddir, "provider-1"),
        address_of(&ddir, "provider-2"),
        address_of(&ddir, "dave"),
    );
    let _p1 = provider(&rpc, &ddir, "provider-1", "r1", &[]);
    let _p2 = provider(&rpc, &ddir, "provider-2", "r2", &[]);
    let stake = DEV_MIN_PROVIDER_STAKE.to_string();
    let _dave = provider(
        &rpc,
        &ddir,
        "dave",
        "cheat",
        &["--stake", &stake, "--cheat-rate", "1.0"],
    );
    wait_for(
        "three providers to register",
        Duration::from_secs(60),
        || registered(&rpc).len() == 3,
    );
    assert_eq!(balance(&rpc, &dave).1, DEV_MIN_PROVIDER_STAKE);
    let supply0 = amount(&check_supply(&rpc)["supply"]);

    // --- honest providers: every job is re-run by another provider, which agrees ---
    for (region, honest) in [("r1", &p1), ("r2", &p2)] {
        let done = submit(
            &rpc,
            &ddir,
            &format!("honest work in {region}"),
            region,
            true,
        );
        assert_eq!(done["status"], "settled", "{done}");
        let id = done["job"].as_str().unwrap();
        let j = job(&rpc, id);
        assert_eq!(j["provider"].as_str().unwrap(), honest.as_str(), "{j}");
        let checks = j["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 1, "one spot check, no dispute: {j}");
        let check = &checks[0];
        assert_eq!(check["dispute"], false);
        assert_ne!(
            check["verifier"], j["provider"],
            "checked by another provider"
        );
        assert_eq!(check["agrees"], true, "{j}");
        assert_eq!(check["missed"], false);
        assert_eq!(
            check["output_hash"], j["output_hash"],
            "the same input gives the same bytes on this machine"
        );
        assert_eq!(j["disputed"], false);
        let verified = cli_json(&["receipt", "verify", id, "--rpc", &rpc, "--json"]);
        assert_eq!(verified["status"], "verified", "{verified}");
        check_supply(&rpc);
    }

    // --- dave's job: the spot check disagrees, the quorum decides against him ---
    let alice = address_of(&ddir, "alice");
    let (alice0, _) = balance(&rpc, &alice);
    let min_fee = amount(&status(&rpc)["min_fee"]);
    let posted = submit(&rpc, &ddir, "dave will get this wrong", "cheat", false);
    let id = posted["job"].as_str().unwrap().to_string();
    wait_for("dave's job to be decided", Duration::from_secs(60), || {
        let (code, out, _) = cli(&["job", "show", &id, "--rpc", &rpc, "--json"]);
        code == 0 && serde_json::from_str::<Value>(&out).unwrap()["status"] == "refunded"
    });
    let j = job(&rpc, &id);
    assert_eq!(j["provider"].as_str().unwrap(), dave, "{j}");
    assert_eq!(j["disputed"], true, "{j}");
    let reason = j["refund"]["reason"].as_str().unwrap();
    assert!(reason.contains("dispute"), "{reason}");
    assert_eq!(j["refund"]["amount"], j["escrow"], "refunded in full");
    assert_eq!(
        balance(&rpc, &alice).0,
        alice0 - min_fee,
        "the owner paid only the post's transaction fee"
    );
    let checks = j["checks"].as_array().unwrap();
    let honest = [p1.as_str(), p2.as_str()];
    let spot: Vec<&Value> = checks.iter().filter(|c| c["dispute"] == false).collect();
    let quorum: Vec<&Value> = checks.iter().filter(|c| c["dispute"] == true).collect();
    assert_eq!(spot.len(), 1, "{j}");
    assert!(!quorum.is_empty(), "a quorum was drawn: {j}");
    for c in spot.iter().chain(&quorum) {
        assert!(honest.contains(&c["verifier"].as_str().unwrap()), "{j}");
        assert_eq!(c["agrees"], false, "every honest re-run disagrees: {j}");
    }

    // Dave lost the fraud slash (his whole bond) and his reputation.
    assert_eq!(fraud_slash, DEV_MIN_PROVIDER_STAKE);
    assert_eq!(balance(&rpc, &dave).1, DEV_MIN_PROVIDER_STAKE - fraud_slash);
    let dave_entry = registered(&rpc)
        .into_iter()
        .find(|p| p["address"] == dave.as_str())
        .unwrap();
    assert_eq!(dave_entry["reputation"], MIN_REPUTATION, "{dave_entry}");
    assert_eq!(dave_entry["eligible_stake"], false, "{dave_entry}");

    // The chain's events say the same, and name nobody else.
    wait_for("the dispute's events", Duration::from_secs(10), || {
        events_of(&events, "dispute_resolved")
            .iter()
            .any(|e| e["job"] == id.as_str())
    });
    let slashed = events_of(&events, "slashed");
    assert!(
        slashed.iter().any(|e| e["who"] == dave.as_str()
            && e["job"] == id.as_str()
            && amount(&e["amount"]) == fraud_slash),
        "{slashed:?}"
    );
    assert!(
        slashed.iter().all(|e| e["who"] == dave.as_str()),
        "only dave is slashed: {slashed:?}"
    );
    let resolved = events_of(&events, "dispute_resolved");
    let decided = resolved.iter().find(|e| e["job"] == id.as_str()).unwrap();
    assert_eq!(decided["outcome"], "provider_wrong", "{decided}");
    assert_eq!(amount(&decided["slashed"]), fraud_slash);
    // Half the slash goes to the winners (the spot checker and the quorum), in equal shares;
    // the rest is burned.
    let winners = (spot.len() + quorum.len()) as u128;
    let share = fraud_slash * slash_reward_bps / 10_000 / winners;
    assert_eq!(amount(&decided["rewarded"]), share * winners);
    assert_eq!(amount(&decided["burned"]), fraud_slash - share * winners);

    // The supply fell by exactly what disputes burned; supply == holdings still.
    let burned: u128 = resolved.iter().map(|e| amount(&e["burned"])).sum();
    let supply1 = amount(&check_supply(&rpc)["supply"]);
    assert_eq!(supply0 - supply1, burned, "{resolved:?}");

    // The honest providers were never slashed: their stakes moved only by the penalties the
    // chain reported (none when all ran in time).
    for honest in [&p1, &p2] {
        let penalties: u128 = events_of(&events, "provider_penalised")
            .iter()
            .filter(|e| e["provider"] == honest.as_str())
            .chain(
                events_of(&events, "check_missed")
                    .iter()
                    .filter(|e| e["verifier"] == honest.as_str()),
            )
            .map(|e| amount(&e["amount"]))
            .sum();
        assert_eq!(balance(&rpc, honest).1, DEV_PROVIDER_STAKE - penalties);
    }
    drop(devnet);
    let _ = std::fs::remove_dir_all(&dir);
}
