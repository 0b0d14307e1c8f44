//! `plexus receipt verify`: check a job's receipt against a node you choose.

use crate::RpcArgs;
use anyhow::{Result, anyhow};
use plexus_client::{Client, ReceiptReport, ReceiptStatus};
use plexus_types::JobId;

#[derive(clap::Subcommand)]
pub enum ReceiptCommand {
    /// Check a job's receipt against the chain: signature, settlement and output bytes.
    ///
    /// Reads the job from the node given by --rpc (any node you choose: there is no need to
    /// trust the gateway that served the answer), rebuilds the receipt the provider signed
    /// (chain id, job, model, input and output hashes, output size, units, unit price),
    /// verifies the provider's signature over it and, unless --no-output, fetches the output
    /// bytes (from the node, else the provider) and checks their hash and size.
    ///
    /// Statuses and exit codes:
    ///   verified  (0) settled, signature valid, output bytes match the signed hash
    ///   settled   (0) settled, signature valid, output not checked (--no-output, or unavailable)
    ///   pending   (2) not revealed yet, or revealed and waiting for its challenge window
    ///   disputed  (1) revealed, but a verifier disagreed: a quorum is re-running the job
    ///   refunded  (1) no work was paid for: the escrow went back to the job's owner
    ///   invalid   (1) a check failed: each problem is listed
    /// An unknown job, a bad id or an unreachable node is an error (exit 1).
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The receipt id: the job id (64 hex characters), as `plexus job submit` prints it and a
    /// gateway returns it in its `x-plexus-receipt` header.
    id: String,
    /// Do not fetch the output bytes: check the signature and the settlement only.
    #[arg(long)]
    no_output: bool,
    #[command(flatten)]
    rpc: RpcArgs,
}

/// The exit code for a report: 0 paid for and signed, 2 not final yet, 1 otherwise.
fn exit_code(status: ReceiptStatus) -> i32 {
    match status {
        ReceiptStatus::Verified | ReceiptStatus::Settled => 0,
        ReceiptStatus::Pending => 2,
        ReceiptStatus::Disputed | ReceiptStatus::Refunded | ReceiptStatus::Invalid => 1,
    }
}

pub async fn run(command: ReceiptCommand) -> Result<()> {
    let ReceiptCommand::Verify(args) = command;
    let id: JobId = args
        .id
        .parse()
        .map_err(|e| anyhow!("receipt id (a job id, 64 hex characters): {e}"))?;
    let client = Client::new(&args.rpc.rpc);
    let report = plexus_client::check_receipt(&client, &id, !args.no_output).await?;
    if args.rpc.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, client.url());
    }
    match exit_code(report.status) {
        0 => Ok(()),
        code => std::process::exit(code),
    }
}

fn print_report(r: &ReceiptReport, node: &str) {
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    outln!("receipt    {}", r.job);
    outln!("status     {}", r.status);
    outln!("chain      {} (as read from {node})", r.chain_id);
    outln!("provider   {}", or_none(r.provider.map(|p| p.to_string())));
    outln!("model      {}", r.model_hash);
    outln!("input      {}", r.input_hash);
    if let Some(hash) = &r.output_hash {
        let checked = match r.output_checked {
            Some(true) => "bytes checked",
            Some(false) => "bytes DO NOT MATCH",
            None => "bytes not checked",
        };
        outln!("output     {hash} ({} bytes, {checked})", r.output_size);
        outln!(
            "price      {} units x {} = {}",
            r.units,
            r.unit_price,
            or_none(r.price.map(|p| p.to_string()))
        );
    }
    if let Some(valid) = r.signature_valid {
        outln!("signature  {}", if valid { "valid" } else { "INVALID" });
    }
    if let Some(height) = r.settlement_height {
        outln!(
            "settled    at height {height} (protocol fee {}, refunded {})",
            or_none(r.protocol_fee.map(|f| f.to_string())),
            or_none(r.refund.map(|f| f.to_string()))
        );
    } else if let (ReceiptStatus::Pending, Some(at)) = (r.status, r.settle_at) {
        outln!("settles    at height {at}");
    }
    outln!();
    outln!("{}", r.explanation);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        for (status, code) in [
            (ReceiptStatus::Verified, 0),
            (ReceiptStatus::Settled, 0),
            (ReceiptStatus::Pending, 2),
            (ReceiptStatus::Disputed, 1),
            (ReceiptStatus::Refunded, 1),
            (ReceiptStatus::Invalid, 1),
        ] {
            assert_eq!(exit_code(status), code, "{status}");
        }
    }
}
