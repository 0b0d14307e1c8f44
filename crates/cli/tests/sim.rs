//! `plexus sim` as a user runs it: the JSON fields scripts rely on, the invariants, the
//! many-seed summary, and clear refusals of impossible mixes.

mod common;
use common::*;

#[test]
fn sim_reports_what_verification_caught() {
    let r = cli_json(&[
        "sim",
        "--seed",
        "3",
        "--jobs",
        "400",
        "--cheat-rate",
        "1",
        "--lazy",
        "1",
        "--offline",
        "1",
        "--providers",
        "6",
        "--json",
    ]);
    for field in [
        "honest_slashed",
        "invariant_violations",
        "cheaters",
        "cheaters_caught",
        "cheaters_profitable",
    ] {
        assert!(r[field].is_u64(), "{field} is an integer: {r}");
    }
    assert!(r["verification_overhead"].is_f64());
    assert_eq!(r["honest_slashed"], 0);
    assert_eq!(r["invariant_violations"], 0);
    assert_eq!(r["cheaters"], 1);
    assert_eq!(r["cheaters_caught"], 1, "a cheater on every job is caught");
    assert_eq!(r["cheaters_profitable"], 0);
    assert_eq!(r["providers"].as_array().unwrap().len(), 6);

    let many = cli_json(&[
        "sim",
        "--jobs",
        "100",
        "--seeds",
        "3",
        "--threads",
        "2",
        "--json",
    ]);
    assert_eq!(many["summary"]["seeds"], 3);
    assert_eq!(many["runs"].as_array().unwrap().len(), 3);
    assert_eq!(many["summary"]["seeds_with_violations"], 0);

    let (code, out, _) = cli(&["sim", "--seed", "3", "--jobs", "100"]);
    assert_eq!(code, 0);
    assert!(out.contains("overhead") && out.contains("cheater"), "{out}");
}

#[test]
fn sim_refuses_impossible_mixes_by_name() {
    let (code, _, err) = cli(&["sim", "--providers", "3", "--cheaters", "2", "--lazy", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("honest provider"), "{err}");
    let (code, _, err) = cli(&["sim", "--cheat-rate", "1.5"]);
    assert_ne!(code, 0);
    assert!(err.contains("--cheat-rate"), "{err}");
}
