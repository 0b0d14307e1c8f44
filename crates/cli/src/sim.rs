//! `plexus sim`: a whole network from a seed, with cheaters, lazy verifiers and offline
//! providers, driving the real ledger; prints what verification caught and what it cost.

use anyhow::{Result, bail};
use clap::Args;
use plexus_sim::{Config, Report, Role, Summary};

#[derive(Args)]
#[command(
    after_help = "Example: plexus sim --seed 7 --providers 5 --cheaters 1 --cheat-rate 0.05 \
    --jobs 10000 --json\n\nThe ledger is the real one (spot checks, disputes, slashing, pricing); \
    consensus and p2p are not re-run (see the node's own simulations). Exit status 1 if an \
    invariant broke or an honest party was slashed."
)]
pub struct SimArgs {
    /// Seed of the run (genesis keys, job sizes, who cheats on which job, block seeds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run this many seeds (seed, seed+1, ...) and print a summary with one row per seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Threads for --seeds (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Providers in all, adversaries included; all serve the model with the same stake.
    #[arg(long, default_value_t = 5)]
    providers: usize,
    /// Providers that cheat: they skip the work on --cheat-rate of their jobs and commit a
    /// wrong result (as verifiers they are honest).
    #[arg(long, default_value_t = 1)]
    cheaters: usize,
    /// Fraction of a cheater's jobs it cheats on, 0 to 1.
    #[arg(long, default_value_t = 0.05)]
    cheat_rate: f64,
    /// Lazy verifiers: never re-run a check; half copy the provider's commitment, half guess.
    #[arg(long, default_value_t = 0)]
    lazy: usize,
    /// Providers that go offline at a random block (deadline penalties, not fraud).
    #[arg(long, default_value_t = 0)]
    offline: usize,
    /// Jobs the users post (chat, 1 to 64 tokens each).
    #[arg(long, default_value_t = 10_000)]
    jobs: u64,
    /// Jobs posted per block (above ~5 the price climbs: demand passes the target use).
    #[arg(long, default_value_t = 4)]
    jobs_per_block: u32,
    /// Probability that a committed job is spot-checked, 0 to 1 (the chain's verify_bps).
    #[arg(long, default_value_t = 0.1)]
    verify_rate: f64,
    /// Compute cost of a job as a fraction of its price, 0 to 1: what a cheater saves per
    /// cheated job (1: the worst case for the protocol).
    #[arg(long, default_value_t = 1.0)]
    cost: f64,
    /// Print the report as JSON (one object; with --seeds, {"summary", "runs"}).
    #[arg(long)]
    json: bool,
}

fn bps(name: &str, v: f64) -> Result<u64> {
    if !(0.0..=1.0).contains(&v) {
        bail!("--{name} must be between 0 and 1, got {v}");
    }
    Ok((v * 10_000.0).round() as u64)
}

pub fn run(args: SimArgs) -> Result<()> {
    let config = Config {
        seed: args.seed,
        providers: args.providers,
        cheaters: args.cheaters,
        cheat_rate_bps: bps("cheat-rate", args.cheat_rate)? as u32,
        lazy: args.lazy,
        offline: args.offline,
        jobs: args.jobs,
        jobs_per_block: args.jobs_per_block,
        cost_bps: bps("cost", args.cost)?,
        verify_bps: bps("verify-rate", args.verify_rate)?,
    };
    if let Some(problem) = config.problem() {
        bail!("cannot simulate: {problem}");
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let reports = if args.seeds == 1 {
        vec![plexus_sim::run(&config)]
    } else {
        if !args.json {
            eprintln!("running {} seeds on {threads} threads...", args.seeds);
        }
        plexus_sim::run_seeds(&config, args.seeds, threads)
    };
    let failed = reports
        .iter()
        .any(|r| r.invariant_violations > 0 || r.honest_slashed > 0);
    if args.seeds == 1 {
        let r = &reports[0];
        if args.json {
            println!("{}", serde_json::to_string_pretty(r)?);
        } else {
            print_report(r);
        }
    } else {
        let summary = Summary::of(&reports);
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "config": config,
                    "summary": summary,
                    "runs": reports,
                }))?
            );
        } else {
            print_summary(&summary, &reports);
        }
    }
    if failed {
        bail!("an invariant broke or an honest party was slashed (see the report)");
    }
    Ok(())
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Honest => "honest",
        Role::Cheater => "cheater",
        Role::LazyCopier => "lazy (copies)",
        Role::LazyGuesser => "lazy (guesses)",
        Role::Offline => "goes offline",
    }
}

fn print_report(r: &Report) {
    println!("seed {}: {} blocks", r.seed, r.blocks);
    println!(
        "jobs: {} posted, {} settled, {} refunded",
        r.jobs_posted, r.jobs_settled, r.jobs_refunded
    );
    println!(
        "verification: {} spot checks, {} disputes ({} provider wrong, {} provider right, {} \
         undecided) with {} quorum checks; {} slashes, {} burned",
        r.verifications,
        r.disputes,
        r.disputes_provider_wrong,
        r.disputes_provider_right,
        r.disputes_undecided,
        r.dispute_checks,
        r.slashes,
        r.burned
    );
    println!(
        "compute: {} units of jobs, {} units re-run by verifiers: overhead {:.3}x",
        r.job_units, r.verification_units, r.verification_overhead
    );
    println!(
        "cheaters: {} of {} caught, {} profitable; mean detection latency {}",
        r.cheaters_caught,
        r.cheaters,
        r.cheaters_profitable,
        r.mean_detection_latency
            .map_or("-".into(), |l| format!("{l:.1} blocks"))
    );
    println!(
        "invariants: {} violations, {} honest parties slashed{}",
        r.invariant_violations,
        r.honest_slashed,
        r.first_violation
            .as_ref()
            .map_or(String::new(), |v| format!(" (first: {v})"))
    );
    println!();
    println!(
        "{:<14} {:<15} {:>6} {:>7} {:>6} {:>16} {:>10} {:>9} {:>10}",
        "provider",
        "role",
        "jobs",
        "cheated",
        "checks",
        "earnings",
        "slashed",
        "penalties",
        "reputation"
    );
    for p in &r.providers {
        println!(
            "{:<14} {:<15} {:>6} {:>7} {:>6} {:>16} {:>10} {:>9} {:>10}",
            p.address.to_string().chars().take(12).collect::<String>(),
            role(p.role),
            p.jobs_committed,
            p.jobs_cheated,
            p.checks_done,
            p.earnings,
            p.slashed.to_string(),
            p.penalties.to_string(),
            p.reputation
        );
    }
}

fn print_summary(s: &Summary, reports: &[Report]) {
    println!(
        "{:>6} {:>8} {:>9} {:>8} {:>7} {:>10} {:>8}",
        "seed", "checks", "disputes", "caught", "profit", "overhead", "honest!"
    );
    for r in reports {
        println!(
            "{:>6} {:>8} {:>9} {:>8} {:>7} {:>10.3} {:>8}",
            r.seed,
            r.verifications,
            r.disputes,
            format!("{}/{}", r.cheaters_caught, r.cheaters),
            r.cheaters_profitable,
            r.verification_overhead,
            r.honest_slashed + r.invariant_violations
        );
    }
    println!();
    println!(
        "{} seeds: cheaters caught {}/{}, profitable {} (seeds with a profitable cheater: {}); \
         honest slashed in {} seeds, invariant violations in {}; overhead mean {:.3}x, max \
         {:.3}x; mean detection latency {}",
        s.seeds,
        s.cheaters_caught,
        s.cheaters,
        s.cheaters_profitable,
        s.seeds_with_profitable_cheater,
        s.seeds_with_honest_slashed,
        s.seeds_with_violations,
        s.mean_verification_overhead,
        s.max_verification_overhead,
        s.mean_detection_latency
            .map_or("-".into(), |l| format!("{l:.1} blocks"))
    );
}
