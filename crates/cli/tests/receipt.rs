//! `plexus receipt verify` without models: its help, and its errors against a devnet with no
//! providers (the verified path needs real models and is checked in `tests/jobs.rs`).

mod common;
use common::*;

#[test]
fn receipt_verify_explains_itself_and_rejects_unknown_jobs() {
    let (code, out, _) = cli(&["receipt", "verify", "--help"]);
    assert_eq!(code, 0);
    for word in [
        "verified",
        "settled",
        "pending",
        "disputed",
        "refunded",
        "invalid",
        "--no-output",
        "--rpc",
        "x-plexus-receipt",
    ] {
        assert!(out.contains(word), "--help lacks {word}: {out}");
    }

    let (code, _, err) = cli(&["receipt", "verify", "not-a-job"]);
    assert_eq!(code, 1);
    assert!(err.contains("receipt id"), "{err}");

    let dir = std::env::temp_dir().join(format!("plexus-receipt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let devnet = Devnet::start(&dir, free_port(), free_port());
    wait_height(&devnet.rpc, 1);
    let unknown = "00".repeat(32);
    for json in [false, true] {
        let mut args = vec!["receipt", "verify", &unknown, "--rpc", &devnet.rpc];
        if json {
            args.push("--json");
        }
        let (code, out, err) = cli(&args);
        assert_eq!(code, 1, "{out}");
        assert!(out.is_empty(), "errors go to stderr: {out}");
        assert!(err.contains("unknown_job"), "{err}");
    }
    drop(devnet);
    let _ = std::fs::remove_dir_all(&dir);
}
