//! Receipts anyone can check. A job's receipt is rebuilt from the record of a node the user
//! chooses (not the gateway that served the answer), its provider signature is verified, and
//! optionally the output bytes are fetched and checked against the signed hash and size.
//!
//! The [`ReceiptStatus`] of a report follows only from the node's job record and those checks:
//!
//! - `pending`: not revealed yet (queued, assigned, committed), or revealed and waiting for
//!   its challenge window to end.
//! - `settled`: settled on chain with a valid provider signature; the output bytes were not
//!   checked (not asked for, or unavailable).
//! - `verified`: settled, the signature is valid, and the output bytes hash to the signed
//!   output hash and have the signed size.
//! - `disputed`: revealed, and a verifier disagreed with the result: a quorum is re-running
//!   it (the node reports the job `revealed` with `disputed: true`).
//! - `refunded`: no work was paid for; the escrow went back to the job's owner.
//! - `invalid`: a check failed (each failure is listed in `problems`).
//!
//! The output is looked for in the node's payload store first, then at the provider's
//! registered endpoint. Bytes that do not match are reported, not silently skipped: a source
//! that serves other bytes than the provider signed for is a failed check.

use crate::{Client, ClientError, JobView, Result};
use commonware_codec::DecodeExt;
use plexus_types::{
    Address, Amount, Digest, Height, JobId, Receipt, Signature, digest_hex, parse_digest, sha256,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a job's receipt stands (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Pending,
    Settled,
    Verified,
    Disputed,
    Refunded,
    Invalid,
}

impl ReceiptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Settled => "settled",
            Self::Verified => "verified",
            Self::Disputed => "disputed",
            Self::Refunded => "refunded",
            Self::Invalid => "invalid",
        }
    }
}

impl fmt::Display for ReceiptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's receipt as rebuilt from a node's record, and what checking it found. Digests and
/// the signature are hex; fields the job does not have yet are `None`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceiptReport {
    pub job: JobId,
    pub status: ReceiptStatus,
    /// One plain sentence for a person.
    pub explanation: String,
    pub chain_id: String,
    pub model_hash: String,
    pub input_hash: String,
    pub output_hash: Option<String>,
    pub output_size: u32,
    pub units: u32,
    pub unit_price: Amount,
    /// `units * unit_price`, once the provider has revealed the units.
    pub price: Option<Amount>,
    pub provider: Option<Address>,
    pub provider_signature: Option<String>,
    /// Whether the provider's signature verifies over the rebuilt receipt; `None` before the
    /// reveal (there is no receipt yet).
    pub signature_valid: Option<bool>,
    /// Whether fetched output bytes match the signed hash and size; `None` when they were not
    /// checked (not asked for, or unavailable).
    pub output_checked: Option<bool>,
    pub settlement_height: Option<Height>,
    pub protocol_fee: Option<Amount>,
    /// What went back to the owner: the unused escrow at settlement, or all of it when the
    /// job was refunded.
    pub refund: Option<Amount>,
    /// The end of the challenge window, once revealed.
    pub settle_at: Option<Height>,
    /// Every check that failed, one sentence each.
    pub problems: Vec<String>,
}

/// What became of the output bytes when a receipt was checked.
#[derive(Clone, Debug)]
pub enum OutputCheck {
    /// Not asked for.
    NotAsked,
    /// Asked for, but no source served them (why).
    Unavailable(String),
    /// Bytes served by `from` (a URL, or a description of where they came from), to be checked
    /// against the signed output hash and size.
    Fetched { from: String, bytes: Vec<u8> },
}

/// Read job `id` from the node behind `client`, rebuild its receipt, verify the provider's
/// signature and, if `check_output`, fetch the output bytes (node, else provider) and check
/// them. An unknown job is the node's 404 (`ClientError::Api`, code `unknown_job`).
pub async fn check_receipt(
    client: &Client,
    id: &JobId,
    check_output: bool,
) -> Result<ReceiptReport> {
    let job = client.job(id).await?;
    if job.id != *id {
        return Err(ClientError::Decode(format!(
            "asked for job {id}, the node answered with job {}",
            job.id
        )));
    }
    let chain_id = client.status().await?.chain_id;
    let output = if check_output && job.output_hash.is_some() {
        match fetch(client, &job).await {
            Ok((from, bytes)) => OutputCheck::Fetched { from, bytes },
            Err(why) => OutputCheck::Unavailable(why),
        }
    } else {
        OutputCheck::NotAsked
    };
    Ok(ReceiptReport::new(&chain_id, &job, &output))
}

/// The job's output bytes, from the node's payload store or else the provider's endpoint,
/// checked against the output hash and size on chain.
pub async fn fetch_output(client: &Client, job: &JobView) -> Result<Vec<u8>> {
    match fetch(client, job).await {
        Ok((from, bytes)) => match output_problem(job, &from, &bytes) {
            None => Ok(bytes),
            Some(problem) => Err(ClientError::Decode(problem)),
        },
        Err(why) => Err(ClientError::Api {
            status: 404,
            code: "output_unavailable".into(),
            message: why,
        }),
    }
}

impl ReceiptReport {
    /// The report on `job` (as a node of chain `chain_id` reports it), given what became of
    /// its output bytes. Pure: no I/O.
    pub fn new(chain_id: &str, job: &JobView, output: &OutputCheck) -> Self {
        let mut problems = Vec::new();
        let receipt = if has_receipt(&job.status) {
            match rebuild(chain_id, job) {
                Ok(receipt) => Some(receipt),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            }
        } else {
            None
        };
        let signature_valid = receipt.as_ref().map(|receipt| {
            let valid = job
                .receipt_signature
                .as_deref()
                .and_then(|s| hex::decode(s).ok())
                .and_then(|b| Signature::decode(b).ok())
                .is_some_and(|signature| receipt.verify(&signature));
            if !valid {
                problems.push(match &job.receipt_signature {
                    None => "the node reports no provider signature for this revealed job".into(),
                    Some(_) => format!(
                        "the provider signature does not verify over the receipt rebuilt from \
                         the node's record (chain {chain_id})"
                    ),
                });
            }
            valid
        });
        let output_checked = match output {
            OutputCheck::Fetched { from, bytes } if receipt.is_some() => {
                let problem = output_problem(job, from, bytes);
                let matched = problem.is_none();
                problems.extend(problem);
                Some(matched)
            }
            _ => None,
        };
        let settlement = job.settlement.as_ref();
        if job.status == "settled" && settlement.is_none() {
            problems.push("the node reports the job settled but gives no settlement".into());
        }
        let (status, explanation) = classify(job, output, &problems);
        Self {
            job: job.id,
            status,
            explanation,
            chain_id: chain_id.to_string(),
            model_hash: job.model.clone(),
            input_hash: job.input_hash.clone(),
            output_hash: job.output_hash.clone(),
            output_size: job.output_size,
            units: job.units,
            unit_price: job.unit_price,
            price: receipt.as_ref().and_then(Receipt::price),
            provider: job.provider,
            provider_signature: job.receipt_signature.clone(),
            signature_valid,
            output_checked,
            settlement_height: settlement.map(|s| s.height),
            protocol_fee: settlement.map(|s| s.fee),
            refund: settlement
                .map(|s| s.refund)
                .or(job.refund.as_ref().map(|r| r.amount)),
            settle_at: has_receipt(&job.status).then_some(job.settle_at),
            problems,
        }
    }
}

/// Statuses in which the provider has revealed, so a signed receipt exists.
fn has_receipt(status: &str) -> bool {
    matches!(status, "revealed" | "settled")
}

/// The receipt the provider signed, rebuilt from the node's record of the job.
fn rebuild(chain_id: &str, job: &JobView) -> std::result::Result<Receipt, String> {
    let digest = |what: &str, hex: Option<&str>| {
        let hex = hex.ok_or_else(|| format!("the node reports no {what} for this revealed job"))?;
        parse_digest(hex).map_err(|e| format!("the node reports a malformed {what}: {e}"))
    };
    Ok(Receipt {
        chain_id: chain_id.to_string(),
        job: job.id,
        model: digest("model hash", Some(&job.model))?,
        input_hash: digest("input hash", Some(&job.input_hash))?,
        output_hash: digest("output hash", job.output_hash.as_deref())?,
        output_size: job.output_size,
        units: job.units,
        unit_price: job.unit_price,
        provider: job
            .provider
            .ok_or("the node reports no provider for this revealed job")?,
    })
}

/// Why `bytes` (served by `from`) are not the output the provider signed for, if they are not.
fn output_problem(job: &JobView, from: &str, bytes: &[u8]) -> Option<String> {
    let Some(Ok(signed)) = job.output_hash.as_deref().map(parse_digest) else {
        return Some(format!(
            "job {} has no valid output hash to check against",
            job.id
        ));
    };
    let hash = sha256(&[bytes]);
    if hash != signed {
        return Some(format!(
            "the output served by {from} hashes to {}, not to the signed output hash {}",
            digest_hex(&hash),
            digest_hex(&signed)
        ));
    }
    if bytes.len() != job.output_size as usize {
        return Some(format!(
            "the output served by {from} is {} bytes, not the signed {}",
            bytes.len(),
            job.output_size
        ));
    }
    None
}

/// The status and its one-sentence explanation. `problems` holds every failed check: when it
/// is empty, the signature verified and any fetched output matched.
fn classify(job: &JobView, output: &OutputCheck, problems: &[String]) -> (ReceiptStatus, String) {
    let provider = job
        .provider
        .map_or_else(|| "the provider".to_string(), |p| format!("provider {p}"));
    if !problems.is_empty() {
        return (
            ReceiptStatus::Invalid,
            format!("Invalid: {}.", problems.join("; ")),
        );
    }
    match job.status.as_str() {
        "queued" => (
            ReceiptStatus::Pending,
            "Pending: the job is queued for a provider; there is no receipt until one reveals \
             its result."
                .into(),
        ),
        "assigned" => (
            ReceiptStatus::Pending,
            format!(
                "Pending: {provider} is running the job; there is no receipt until it reveals \
                 its result."
            ),
        ),
        "committed" => (
            ReceiptStatus::Pending,
            format!(
                "Pending: {provider} has committed to a result; its signed receipt comes with \
                 the reveal."
            ),
        ),
        "revealed" if job.disputed => (
            ReceiptStatus::Disputed,
            format!(
                "Disputed: a verifier disagreed with the result {provider} revealed and a \
                 quorum of verifiers is re-running it; do not rely on it until the dispute is \
                 decided (a wrong result is refunded in full)."
            ),
        ),
        "revealed" => (
            ReceiptStatus::Pending,
            format!(
                "Pending: revealed with a valid signature from {provider}; settles at height {} \
                 when its challenge window ends.",
                job.settle_at
            ),
        ),
        "settled" => {
            let height = job
                .settlement
                .as_ref()
                .map_or_else(|| "?".to_string(), |s| s.height.to_string());
            match output {
                OutputCheck::Fetched { bytes, .. } => (
                    ReceiptStatus::Verified,
                    format!(
                        "Verified: {provider} signed this receipt, the job settled on chain at \
                         height {height}, and the output ({} bytes) hashes to the signed output \
                         hash.",
                        bytes.len()
                    ),
                ),
                OutputCheck::NotAsked => (
                    ReceiptStatus::Settled,
                    format!(
                        "Settled on chain at height {height} with a valid signature from \
                         {provider}; the output bytes were not checked (not asked for)."
                    ),
                ),
                OutputCheck::Unavailable(why) => (
                    ReceiptStatus::Settled,
                    format!(
                        "Settled on chain at height {height} with a valid signature from \
                         {provider}, but the output bytes were unavailable to check ({why})."
                    ),
                ),
            }
        }
        "refunded" => (
            ReceiptStatus::Refunded,
            match &job.refund {
                Some(r) => format!(
                    "Refunded at height {}: {}; the owner got {} back and no work was paid for.",
                    r.height, r.reason, r.amount
                ),
                None => "Refunded: no work was paid for.".into(),
            },
        ),
        other => (
            ReceiptStatus::Invalid,
            format!(
                "Invalid: the node reports an unknown job status {other:?} (is this client older \
                 than the node?)."
            ),
        ),
    }
}

/// The output bytes from the first source that serves them: the node's payload store, else
/// the provider's registered endpoint. Bytes that match the signed hash and size win; failing
/// that, bytes that do not match are returned (for the caller to report); if no source served
/// anything, why.
async fn fetch(client: &Client, job: &JobView) -> std::result::Result<(String, Vec<u8>), String> {
    let hash = match job.output_hash.as_deref().map(parse_digest) {
        Some(Ok(hash)) => hash,
        Some(Err(e)) => return Err(format!("job {} has a malformed output hash: {e}", job.id)),
        None => return Err(format!("job {} has no revealed output yet", job.id)),
    };
    let limit = job.output_size as usize;
    let mut failures = Vec::new();
    let mut mismatched = None;
    let node = client.url().to_string();
    match get_bounded(client, &hash, limit).await {
        Ok(bytes) if output_problem(job, &node, &bytes).is_none() => return Ok((node, bytes)),
        Ok(bytes) => mismatched = Some((node, bytes)),
        Err(e) => failures.push(format!("node {node}: {e}")),
    }
    let endpoint = match job.provider {
        None => Err("the job has no provider".to_string()),
        Some(provider) => match client.provider(&provider).await {
            Ok(info) => info["endpoint"]
                .as_str()
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("provider {provider} registers no endpoint")),
            Err(e) => Err(format!("provider {provider}: {e}")),
        },
    };
    match endpoint {
        Ok(endpoint) => match get_bounded(&Client::new(&endpoint), &hash, limit).await {
            Ok(bytes) if output_problem(job, &endpoint, &bytes).is_none() => {
                return Ok((endpoint, bytes));
            }
            Ok(bytes) => mismatched = mismatched.or(Some((endpoint, bytes))),
            Err(e) => failures.push(format!("provider {endpoint}: {e}")),
        },
        Err(e) => failures.push(e),
    }
    mismatched.ok_or_else(|| {
        format!(
            "output {} of job {} is unavailable: {}",
            digest_hex(&hash),
            job.id,
            failures.join("; ")
        )
    })
}

/// `GET /blobs/{hash}` without the hash check (the caller checks and reports), reading at most
/// one byte more than `limit`, so that a source cannot make the checker hold an unbounded body.
async fn get_bounded(client: &Client, hash: &Digest, limit: usize) -> Result<Vec<u8>> {
    let mut response = client
        .http
        .get(format!("{}/blobs/{}", client.base, digest_hex(hash)))
        .send()
        .await
        .map_err(|e| client.unreachable(e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(client
            .parse::<serde_json::Value>(response)
            .await
            .err()
            .unwrap_or_else(|| ClientError::Decode(format!("HTTP {status}"))));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            break;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Refund, Settlement};
    use commonware_codec::Encode;
    use plexus_types::{Nonce, PrivateKey, Signer, key_from_seed};

    const CHAIN: &str = "plexus-test";
    const OUTPUT: &[u8] = b"{\"embeddings\":[[0.5,0.25]]}";

    fn signed_receipt(key: &PrivateKey) -> (Receipt, Signature) {
        let receipt = Receipt {
            chain_id: CHAIN.into(),
            job: JobId::new(&Address::from_bytes([1; 32]), Nonce::new(3)),
            model: sha256(&[b"model"]),
            input_hash: sha256(&[b"input"]),
            output_hash: sha256(&[OUTPUT]),
            output_size: OUTPUT.len() as u32,
            units: 7,
            unit_price: Amount::new(1000),
            provider: Address::from(&key.public_key()),
        };
        let signature = receipt.sign(key);
        (receipt, signature)
    }

    /// A job as a node reports it in `status`: revealed ones carry the signed receipt.
    fn view(status: &str) -> JobView {
        let key = key_from_seed(4);
        let (receipt, signature) = signed_receipt(&key);
        let revealed = has_receipt(status);
        let committed = revealed || status == "committed";
        let assigned = committed || status == "assigned";
        JobView {
            id: receipt.job,
            owner: Address::from_bytes([1; 32]),
            model: digest_hex(&receipt.model),
            input_hash: digest_hex(&receipt.input_hash),
            input_size: 5,
            max_units: 10,
            max_unit_price: Amount::new(2000),
            region: String::new(),
            escrow: Amount::new(20_000),
            posted_at: Height::new(1),
            attempts: u32::from(assigned),
            tried: Vec::new(),
            status: status.into(),
            provider: assigned.then_some(receipt.provider),
            unit_price: if assigned {
                receipt.unit_price
            } else {
                Amount::ZERO
            },
            assigned_at: Height::new(1),
            deadline: Height::new(20),
            commitment: committed.then(|| digest_hex(&sha256(&[b"commitment"]))),
            committed_at: Height::new(2),
            output_hash: revealed.then(|| digest_hex(&receipt.output_hash)),
            output_size: if revealed { receipt.output_size } else { 0 },
            salt: revealed.then(|| digest_hex(&sha256(&[b"salt"]))),
            units: if revealed { receipt.units } else { 0 },
            receipt_signature: revealed.then(|| hex::encode(signature.encode())),
            revealed_at: Height::new(3),
            settle_at: Height::new(13),
            settlement: (status == "settled").then_some(Settlement {
                height: Height::new(13),
                payment: Amount::new(7000),
                fee: Amount::new(350),
                refund: Amount::new(13_000),
            }),
            refund: (status == "refunded").then(|| Refund {
                height: Height::new(21),
                amount: Amount::new(20_000),
                reason: "no provider could take the job before the queue timeout".into(),
            }),
            checks: Vec::new(),
            disputed: false,
        }
    }

    fn fetched(bytes: &[u8]) -> OutputCheck {
        OutputCheck::Fetched {
            from: "http://node".into(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn the_rebuilt_receipt_is_the_one_the_provider_signed() {
        let key = key_from_seed(4);
        let (signed, signature) = signed_receipt(&key);
        let job = view("settled");
        assert_eq!(rebuild(CHAIN, &job).unwrap(), signed);
        assert!(signed.verify(&signature));
        let report = ReceiptReport::new(CHAIN, &job, &fetched(OUTPUT));
        assert_eq!(report.status, ReceiptStatus::Verified, "{report:?}");
        assert_eq!(report.signature_valid, Some(true));
        assert_eq!(report.output_checked, Some(true));
        assert_eq!(report.price, signed.price());
        assert_eq!(report.provider, Some(signed.provider));
        assert_eq!(
            report.provider_signature,
            Some(hex::encode(signature.encode()))
        );
        assert_eq!(report.settlement_height, Some(Height::new(13)));
        assert_eq!(report.protocol_fee, Some(Amount::new(350)));
        assert_eq!(report.refund, Some(Amount::new(13_000)));
        assert!(report.problems.is_empty());
    }

    #[test]
    fn every_status() {
        let cases: Vec<(JobView, OutputCheck, ReceiptStatus, &str)> = vec![
            (
                view("queued"),
                OutputCheck::NotAsked,
                ReceiptStatus::Pending,
                "queued",
            ),
            (
                view("assigned"),
                OutputCheck::NotAsked,
                ReceiptStatus::Pending,
                "running",
            ),
            (
                view("committed"),
                OutputCheck::NotAsked,
                ReceiptStatus::Pending,
                "committed",
            ),
            (
                view("revealed"),
                fetched(OUTPUT),
                ReceiptStatus::Pending,
                "settles at height 13",
            ),
            (
                view("settled"),
                OutputCheck::NotAsked,
                ReceiptStatus::Settled,
                "not asked for",
            ),
            (
                view("settled"),
                OutputCheck::Unavailable("node: unknown blob".into()),
                ReceiptStatus::Settled,
                "unavailable to check (node: unknown blob)",
            ),
            (
                view("settled"),
                fetched(OUTPUT),
                ReceiptStatus::Verified,
                "hashes to the signed output hash",
            ),
            (
                JobView {
                    disputed: true,
                    ..view("revealed")
                },
                fetched(OUTPUT),
                ReceiptStatus::Disputed,
                "a quorum of verifiers is re-running it",
            ),
            (
                view("refunded"),
                OutputCheck::NotAsked,
                ReceiptStatus::Refunded,
                "no provider could take the job",
            ),
            (
                view("settled"),
                fetched(b"other bytes"),
                ReceiptStatus::Invalid,
                "not to the signed output hash",
            ),
            (
                view("frozen"),
                OutputCheck::NotAsked,
                ReceiptStatus::Invalid,
                "unknown job status",
            ),
        ];
        for (job, output, status, says) in cases {
            let report = ReceiptReport::new(CHAIN, &job, &output);
            assert_eq!(report.status, status, "{}: {report:?}", job.status);
            assert!(
                report.explanation.contains(says),
                "{}: {:?} lacks {says:?}",
                job.status,
                report.explanation
            );
            assert_eq!(
                report.signature_valid,
                has_receipt(&job.status).then_some(true),
                "{}",
                job.status
            );
        }
    }

    #[test]
    fn failed_checks_are_invalid_and_each_is_listed() {
        // Another chain's receipt: the signature does not cover it.
        let report = ReceiptReport::new("other-chain", &view("settled"), &OutputCheck::NotAsked);
        assert_eq!(report.status, ReceiptStatus::Invalid);
        assert_eq!(report.signature_valid, Some(false));
        assert_eq!(report.problems.len(), 1, "{report:?}");

        // The node's record differs from what was signed, and the bytes are someone else's.
        let mut job = view("settled");
        job.units += 1;
        let report = ReceiptReport::new(CHAIN, &job, &fetched(b"not it"));
        assert_eq!(report.status, ReceiptStatus::Invalid);
        assert_eq!(report.signature_valid, Some(false));
        assert_eq!(report.output_checked, Some(false));
        assert_eq!(report.problems.len(), 2, "{report:?}");
        assert!(report.explanation.starts_with("Invalid: "));

        // The right bytes but the wrong signed size (the signature breaks too).
        let mut job = view("settled");
        job.output_size += 1;
        let report = ReceiptReport::new(CHAIN, &job, &fetched(OUTPUT));
        assert_eq!(report.status, ReceiptStatus::Invalid);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("bytes, not the signed")),
            "{report:?}"
        );

        // No signature, or one that is not hex.
        for signature in [None, Some("zz".to_string())] {
            let mut job = view("settled");
            job.receipt_signature = signature;
            let report = ReceiptReport::new(CHAIN, &job, &OutputCheck::NotAsked);
            assert_eq!(report.status, ReceiptStatus::Invalid, "{report:?}");
            assert_eq!(report.signature_valid, Some(false));
        }

        // A revealed job with a malformed record.
        let mut job = view("revealed");
        job.output_hash = Some("xyz".into());
        let report = ReceiptReport::new(CHAIN, &job, &OutputCheck::NotAsked);
        assert_eq!(report.status, ReceiptStatus::Invalid);
        assert!(
            report.problems[0].contains("malformed output hash"),
            "{report:?}"
        );
    }

    #[test]
    fn the_json_keeps_the_receipt_field_names() {
        let report = ReceiptReport::new(CHAIN, &view("settled"), &OutputCheck::NotAsked);
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "chain_id",
            "job",
            "model_hash",
            "input_hash",
            "output_hash",
            "output_size",
            "units",
            "unit_price",
            "price",
            "provider",
            "provider_signature",
            "signature_valid",
            "settlement_height",
            "protocol_fee",
            "refund",
            "status",
            "explanation",
            "output_checked",
            "settle_at",
            "problems",
        ] {
            assert!(json.get(key).is_some(), "missing {key}: {json}");
        }
        assert_eq!(json["status"], "settled");
        assert_eq!(json["price"], "7000");
        let back: ReceiptReport = serde_json::from_value(json).unwrap();
        assert_eq!(back.status, ReceiptStatus::Settled);
    }
}
