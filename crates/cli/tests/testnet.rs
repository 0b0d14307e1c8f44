//! End to end: `plexus testnet init --validators 4`, four `plexus node run` processes on
//! loopback; one is killed with SIGKILL and the other three keep finalizing; restarted, it
//! catches up from its peers and every validator reports the same state root at the same
//! height; a process holding validator 3's key on another genesis (chain id) is refused by
//! the others' handshakes and finalizes nothing; garbage sent to every p2p port changes
//! nothing.
//!
//! Early runs failed in about one of three (the restarted validator stayed behind for over
//! 90 s) while the test's ports came from the kernel's ephemeral range: the killed
//! validator's port could be taken as the source port of an outgoing connection before the
//! restart. With ports from below that range it passed 24 of 24 runs, then 13 of 13, and runs
//! in `cargo test`. Keep the processes' logs with `PLEXUS_TEST_LOGS=1`.

mod common;
use common::*;

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Validator(Child);

impl Validator {
    fn start(config: &str) -> Self {
        // PLEXUS_TEST_LOGS=1 keeps each validator's log next to its config.
        let stderr = match std::env::var_os("PLEXUS_TEST_LOGS") {
            Some(_) => {
                let path = std::path::Path::new(config).with_extension(format!(
                    "{}.log",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                ));
                Stdio::from(std::fs::File::create(path).unwrap())
            }
            None => Stdio::null(),
        };
        Self(
            Command::new(BIN)
                .args(["node", "run", "--config", config])
                .env("PLEXUS_LOG", "info,plexus_node=debug")
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start validator"),
        )
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The node's status, or `None` while it is not answering.
fn try_status(rpc: &str) -> Option<Value> {
    let (code, out, _) = cli(&["status", "--rpc", rpc, "--json"]);
    (code == 0)
        .then(|| serde_json::from_str(&out).ok())
        .flatten()
}

fn height(rpc: &str) -> u64 {
    try_status(rpc).map_or(0, |s| s["finalized_height"].as_u64().unwrap())
}

fn root_at(rpc: &str, h: u64) -> String {
    let s = cli_json(&["status", "--rpc", rpc, "--json", "--height", &h.to_string()]);
    s["state_root"].as_str().unwrap().to_string()
}

/// Configs for validator 3's key on a genesis with another chain id: one with its own data
/// directory, one pointing at the real validator's.
fn impostor(dir: &std::path::Path, config: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = dir.join("impostor");
    std::fs::create_dir_all(&root).unwrap();
    let mut genesis: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("genesis.json")).unwrap()).unwrap();
    genesis["chain_id"] = "plexus-impostor".into();
    std::fs::write(root.join("genesis.json"), genesis.to_string()).unwrap();
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace(
            "genesis_file = \"../genesis.json\"",
            "genesis_file = \"genesis.json\"",
        )
        .replace(
            "key_file = \"validator.key\"",
            "key_file = \"../validator-3/validator.key\"",
        );
    assert!(text.contains("genesis_file = \"genesis.json\""), "{text}");
    let own = root.join("config.toml");
    std::fs::write(&own, &text).unwrap();
    let theirs = root.join("wrong-genesis.toml");
    std::fs::write(
        &theirs,
        text.replace("data_dir = \"data\"", "data_dir = \"../validator-3/data\""),
    )
    .unwrap();
    (own, theirs)
}

#[test]
fn four_validator_processes_survive_kill_9_and_agree() {
    let dir = std::env::temp_dir().join(format!("plexus-testnet-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let init = cli_json(&[
        "testnet",
        "init",
        "--validators",
        "4",
        "--dir",
        dir.to_str().unwrap(),
        "--rpc-port",
        &free_ports(4).to_string(),
        "--p2p-port",
        &free_ports(4).to_string(),
        "--block-time-ms",
        "100",
        "--json",
    ]);
    let rpcs: Vec<String> = init["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rpc"].as_str().unwrap().to_string())
        .collect();
    let configs: Vec<String> = init["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["config"].as_str().unwrap().to_string())
        .collect();
    let mut validators: Vec<Option<Validator>> =
        configs.iter().map(|c| Some(Validator::start(c))).collect();
    wait_for("all four to finalize", Duration::from_secs(60), || {
        rpcs.iter().all(|rpc| height(rpc) >= 5)
    });

    // A transfer goes through while all are up.
    let alice = dir.join("keys").join("alice.key");
    let bob = dir.join("keys").join("bob.key");
    let sent = cli_json(&[
        "transfer",
        "--rpc",
        &rpcs[1],
        "--key",
        alice.to_str().unwrap(),
        "--to",
        bob.to_str().unwrap(),
        "--amount",
        "1234",
        "--wait",
        "--json",
    ]);
    assert_eq!(sent["success"], true, "{sent}");

    // SIGKILL validator 3: the other three keep finalizing.
    validators[3].take();
    let before = height(&rpcs[0]);
    wait_for(
        "the three to keep finalizing",
        Duration::from_secs(60),
        || height(&rpcs[0]) >= before + 10,
    );
    let sent = cli_json(&[
        "transfer",
        "--rpc",
        &rpcs[0],
        "--key",
        alice.to_str().unwrap(),
        "--to",
        bob.to_str().unwrap(),
        "--amount",
        "5",
        "--wait",
        "--json",
    ]);
    assert_eq!(sent["success"], true, "{sent}");

    // Validator 3's key and address, but a genesis with another chain id (its own data
    // directory): every handshake commits to the genesis, so the others refuse it. It
    // finalizes nothing and the three carry on undisturbed.
    let (impostor_config, wrong_data) = impostor(&dir, &configs[3]);
    let mut other = Validator::start(impostor_config.to_str().unwrap());
    let other_rpc = rpcs[3].clone();
    wait_for("the impostor's RPC", Duration::from_secs(30), || {
        try_status(&other_rpc).is_some()
    });
    let before = height(&rpcs[0]);
    wait_for(
        "the three to keep finalizing beside the impostor",
        Duration::from_secs(60),
        || height(&rpcs[0]) >= before + 10,
    );
    let status = try_status(&other_rpc).unwrap();
    assert_eq!(status["finalized_height"], 0, "{status}");
    assert_ne!(status["genesis"], try_status(&rpcs[0]).unwrap()["genesis"]);
    assert!(other.0.try_wait().unwrap().is_none(), "the impostor exited");
    drop(other);
    // Pointed at the real validator's data directory, the other genesis is refused before
    // anything is touched, with both digests named.
    let (code, _, err) = cli(&["node", "run", "--config", wrong_data.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("holds the chain of genesis"), "{err}");

    // Restarted, it catches up and agrees.
    validators[3] = Some(Validator::start(&configs[3]));
    let target = height(&rpcs[0]);
    wait_for(
        "the restarted validator to catch up",
        Duration::from_secs(90),
        || height(&rpcs[3]) >= target,
    );
    let common = rpcs.iter().map(|rpc| height(rpc)).min().unwrap();
    let roots: Vec<String> = rpcs.iter().map(|rpc| root_at(rpc, common)).collect();
    assert!(
        roots.iter().all(|r| *r == roots[0]),
        "all four agree at height {common}: {roots:?}"
    );
    for rpc in &rpcs {
        let s = try_status(rpc).unwrap();
        assert_eq!(s["supply"], s["holdings"]);
    }

    // Garbage on the p2p port (a stranger, no handshake, bogus length prefixes) is dropped:
    // every validator stays up and keeps finalizing.
    let p2p: Vec<String> = init["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["p2p"].as_str().unwrap().to_string())
        .collect();
    let mut junk: Vec<u8> = vec![0xff; 8];
    junk.extend((0..65_536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    for addr in &p2p {
        use std::io::Write as _;
        for bytes in [&junk[..], &[0u8; 4][..], b"GET / HTTP/1.1\r\n\r\n"] {
            if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
                let _ = stream.write_all(bytes);
            }
        }
    }
    let before = rpcs.iter().map(|rpc| height(rpc)).max().unwrap();
    wait_for(
        "all four to keep finalizing after garbage",
        Duration::from_secs(60),
        || rpcs.iter().all(|rpc| height(rpc) >= before + 5),
    );
    for v in validators.iter_mut().flatten() {
        assert!(v.0.try_wait().unwrap().is_none(), "a validator exited");
    }
    drop(validators);
    if std::env::var_os("PLEXUS_TEST_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
