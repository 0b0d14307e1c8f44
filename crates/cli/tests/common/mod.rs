//! The harness the process-level tests share: free ports, a devnet child process, the CLI.
#![allow(dead_code)]

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_plexus");

/// A port that is free now and below the kernel's ephemeral range (32768 and up on Linux):
/// a test that kills a process and restarts it on the same port must not find that port
/// taken as the source port of some outgoing connection in between.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive free ports below the ephemeral range.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread processes apart, then walk: tests in one process never reuse a block.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() % 500) as u16 * 20;
    loop {
        let offset = NEXT.fetch_add(n, Ordering::Relaxed);
        let base = 20_000 + (seed + offset) % 12_000;
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

pub struct Devnet {
    pub child: Child,
    pub dir: PathBuf,
    pub rpc: String,
}

impl Devnet {
    /// Start `plexus devnet` with no providers.
    pub fn start(dir: &Path, rpc_port: u16, p2p_port: u16) -> Self {
        Self::start_with(dir, rpc_port, p2p_port, &[])
    }

    /// [`Devnet::start`] with more arguments for `plexus devnet` (e.g. `--verify-bps`).
    pub fn start_with(dir: &Path, rpc_port: u16, p2p_port: u16, extra: &[&str]) -> Self {
        let _ = std::fs::remove_file(dir.join("devnet.json"));
        let child = Command::new(BIN)
            .args(["devnet", "--dir"])
            .arg(dir)
            .args(["--rpc-port", &rpc_port.to_string()])
            .args(["--p2p-port", &p2p_port.to_string()])
            .args(["--block-time-ms", "100"])
            .args(["--providers", "0"])
            .args(["--gateway-port", "0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start devnet");
        let started = Instant::now();
        while !dir.join("devnet.json").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "devnet did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json")).unwrap())
                .unwrap();
        Self {
            child,
            dir: dir.to_path_buf(),
            rpc: file["rpc"].as_str().unwrap().to_string(),
        }
    }

    pub fn file(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("devnet.json")).unwrap())
            .unwrap()
    }

    /// The gateway's base URL and API key, once the devnet has written them.
    pub fn gateway(&self) -> (String, String) {
        let started = Instant::now();
        loop {
            let file = self.file();
            if let (Some(url), Some(key)) = (file["gateway"].as_str(), file["api_key"].as_str()) {
                return (url.to_string(), key.to_string());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the devnet's gateway did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub fn cli_json(args: &[&str]) -> Value {
    let (code, out, err) = cli(args);
    assert_eq!(code, 0, "plexus {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

pub fn status(rpc: &str) -> Value {
    cli_json(&["status", "--rpc", rpc, "--json"])
}

pub fn amount(v: &Value) -> u128 {
    v.as_str().unwrap().parse().unwrap()
}

/// Poll `done` every 100 ms; fail the test naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_height(rpc: &str, target: u64) {
    let started = Instant::now();
    while status(rpc)["finalized_height"].as_u64().unwrap() < target {
        assert!(started.elapsed() < Duration::from_secs(60), "chain stalled");
        std::thread::sleep(Duration::from_millis(100));
    }
}
