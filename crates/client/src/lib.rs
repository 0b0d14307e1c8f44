//! client: Talk to a node over its API (shared by cli, gateway, explorer, tests).

mod receipt;
pub use receipt::{OutputCheck, ReceiptReport, ReceiptStatus, check_receipt, fetch_output};

use commonware_codec::Encode;
use plexus_types::{
    Action, Address, Amount, Digest, Height, JobId, Nonce, PrivateKey, SignedTransaction,
    Transaction, TxHash, digest_hex, sha256,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::{Duration, Instant};

mod stream;
pub use stream::{ResultStream, StreamEvent};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the node at {url}: {reason} (is it running? set --rpc or PLEXUS_RPC)")]
    Unreachable { url: String, reason: String },
    /// The node answered with an error.
    #[error("{message} ({code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected response from the node: {0}")]
    Decode(String),
    #[error(
        "transaction {hash} not finalized after {waited:?}; check later with `plexus tx {hash}`"
    )]
    Timeout { hash: String, waited: Duration },
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// `GET /status`.
#[derive(Clone, Debug, Deserialize)]
pub struct Status {
    pub chain_id: String,
    pub genesis: String,
    pub finalized_height: u64,
    pub head: String,
    pub state_root: String,
    pub supply: Amount,
    pub holdings: Amount,
    pub treasury: Amount,
    pub min_fee: Amount,
    pub mempool: usize,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

/// `GET /accounts/{address}`.
#[derive(Clone, Debug, Deserialize)]
pub struct AccountInfo {
    pub address: Address,
    pub balance: Amount,
    pub nonce: Nonce,
    /// The nonce to sign with next: `nonce` plus this sender's transactions in the mempool.
    pub next_nonce: Nonce,
    pub stake: Amount,
    pub unbonding: Vec<Value>,
    pub height: Height,
}

/// A job as the node reports it (`GET /jobs/{id}`, `GET /providers/{address}/jobs`):
/// the ledger's job record plus where it stands. Digests and signatures are hex.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct JobView {
    pub id: JobId,
    pub owner: Address,
    pub model: String,
    pub input_hash: String,
    pub input_size: u32,
    pub max_units: u32,
    pub max_unit_price: Amount,
    pub region: String,
    pub escrow: Amount,
    pub posted_at: Height,
    pub attempts: u32,
    pub tried: Vec<Address>,
    /// queued, assigned, committed, revealed (in the state) or settled, refunded (final).
    pub status: String,
    pub provider: Option<Address>,
    pub unit_price: Amount,
    pub assigned_at: Height,
    pub deadline: Height,
    pub commitment: Option<String>,
    pub committed_at: Height,
    pub output_hash: Option<String>,
    pub output_size: u32,
    pub salt: Option<String>,
    pub units: u32,
    pub receipt_signature: Option<String>,
    pub revealed_at: Height,
    pub settle_at: Height,
    /// Set once settled: `{height, payment, fee, refund}`.
    pub settlement: Option<Settlement>,
    /// Set once refunded: `{height, amount, reason}`.
    pub refund: Option<Refund>,
    /// The spot check, if the job was drawn for one, then a dispute's quorum, if any
    /// (empty from a node older than verification).
    #[serde(default)]
    pub checks: Vec<CheckView>,
    /// A verifier disagreed with the provider: the quorum's checks decide.
    #[serde(default)]
    pub disputed: bool,
}

impl JobView {
    /// This address's check of the job that still owes a commit or a reveal.
    pub fn pending_check(&self, verifier: &Address) -> Option<&CheckView> {
        self.checks
            .iter()
            .find(|c| c.verifier == *verifier && c.pending())
    }

    /// A spot check is drawn and its verifier has not committed yet: the provider's reveal
    /// must wait (the ledger refuses it with `awaiting_verifier`).
    pub fn awaiting_verifier(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.pending() && c.commitment.is_none())
    }
}

/// A verifier's re-run of a job, as the node reports it (digests hex).
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct CheckView {
    pub verifier: Address,
    /// Drawn to decide a dispute (rather than as the spot check).
    pub dispute: bool,
    /// Commit deadline until the verifier commits, then its reveal deadline.
    pub deadline: Height,
    pub commitment: Option<String>,
    pub output_hash: Option<String>,
    /// The verdict: whether the verifier's result agrees with the provider's.
    pub agrees: Option<bool>,
    /// The verifier missed a deadline; its check no longer counts.
    pub missed: bool,
}

impl CheckView {
    /// Still owes a commit or a reveal.
    pub fn pending(&self) -> bool {
        !self.missed && self.agrees.is_none()
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct Settlement {
    pub height: Height,
    pub payment: Amount,
    pub fee: Amount,
    pub refund: Amount,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct Refund {
    pub height: Height,
    pub amount: Amount,
    pub reason: String,
}

/// `GET /providers/{address}/jobs`: the jobs still in the state that are assigned to the
/// provider or have a check by it (as a verifier).
#[derive(Clone, Debug, Deserialize)]
pub struct ProviderJobs {
    /// The height the list was read at.
    pub height: Height,
    pub jobs: Vec<JobView>,
}

/// `POST /blobs`.
#[derive(Clone, Debug, Deserialize)]
pub struct BlobRef {
    pub hash: String,
    pub size: u64,
}

/// A job's result fetched from its provider before the reveal, checked against the
/// commitment on chain (so the provider cannot later reveal anything else).
#[derive(Clone, Debug)]
pub struct EarlyResult {
    pub output: Vec<u8>,
    pub output_hash: Digest,
    pub salt: Digest,
    pub units: u32,
}

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(url: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn parse<T: DeserializeOwned>(&self, response: reqwest::Response) -> Result<T> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if !status.is_success() {
            let value: Value = serde_json::from_slice(&body).unwrap_or_default();
            let error = &value["error"];
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: error["code"].as_str().unwrap_or("http_error").to_string(),
                message: error["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                    }),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.parse(response).await
    }

    pub async fn status(&self) -> Result<Status> {
        self.get("/status").await
    }

    pub async fn status_json(&self) -> Result<Value> {
        self.get("/status").await
    }

    pub async fn account(&self, address: &Address) -> Result<AccountInfo> {
        self.get(&format!("/accounts/{address}")).await
    }

    pub async fn block(&self, height: u64) -> Result<Value> {
        self.get(&format!("/blocks/{height}")).await
    }

    pub async fn state_root(&self, height: u64) -> Result<Value> {
        self.get(&format!("/state_roots/{height}")).await
    }

    pub async fn tx(&self, hash: &str) -> Result<Value> {
        self.get(&format!("/tx/{hash}")).await
    }

    /// `GET /jobs/{id}`.
    pub async fn job(&self, id: &JobId) -> Result<JobView> {
        self.get(&format!("/jobs/{id}")).await
    }

    /// `GET /providers/{address}/jobs`.
    pub async fn provider_jobs(&self, provider: &Address) -> Result<ProviderJobs> {
        self.get(&format!("/providers/{provider}/jobs")).await
    }

    /// `GET /providers/{address}`: the registry entry (404 `unknown_provider` if none).
    pub async fn provider(&self, provider: &Address) -> Result<Value> {
        self.get(&format!("/providers/{provider}")).await
    }

    /// `GET /providers`.
    pub async fn providers(&self) -> Result<Value> {
        self.get("/providers").await
    }

    /// `GET /models`: registered models with their current base prices.
    pub async fn models(&self) -> Result<Value> {
        self.get("/models").await
    }

    /// Store a payload in the node's content-addressed store; returns its sha256.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<BlobRef> {
        let response = self
            .http
            .post(format!("{}/blobs", self.base))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.parse(response).await
    }

    /// Fetch a payload by hash and check that its bytes hash to it.
    pub async fn get_blob(&self, hash: &Digest) -> Result<Vec<u8>> {
        let hex_hash = digest_hex(hash);
        let response = self
            .http
            .get(format!("{}/blobs/{hex_hash}", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if !status.is_success() {
            return self.parse::<Vec<u8>>(response).await;
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        if sha256(&[&bytes]) != *hash {
            return Err(ClientError::Decode(format!(
                "payload {hex_hash} from {} does not match its hash",
                self.base
            )));
        }
        Ok(bytes.to_vec())
    }

    /// On a provider's endpoint: `GET /jobs/{id}/result`, signed as the job's `owner`. The
    /// bytes must hash to the returned output hash and, with the salt, open `commitment`
    /// (the job's commitment on chain); otherwise this is an error.
    pub async fn early_result(
        &self,
        owner: &PrivateKey,
        job: &JobId,
        commitment: &Digest,
    ) -> Result<EarlyResult> {
        let response = self.owner_get(owner, job, "result").await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| ClientError::Decode(format!("the provider sent no {name} header")))
        };
        let digest = |s: String| {
            plexus_types::parse_digest(&s).map_err(|e| ClientError::Decode(e.to_string()))
        };
        let output_hash = digest(header("x-plexus-output-hash")?)?;
        let salt = digest(header("x-plexus-salt")?)?;
        let units = header("x-plexus-units")?
            .parse()
            .map_err(|_| ClientError::Decode("bad x-plexus-units".into()))?;
        let output = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?
            .to_vec();
        if sha256(&[&output]) != output_hash
            || plexus_types::commitment(job, &output_hash, &salt) != *commitment
        {
            return Err(ClientError::Decode(format!(
                "the result {} served for job {job} does not open its commitment on chain",
                self.base
            )));
        }
        Ok(EarlyResult {
            output,
            output_hash,
            salt,
            units,
        })
    }

    /// On a provider's endpoint: `GET /jobs/{id}/{what}` signed as the job's `owner`
    /// ([`RESULT_AUTH_HEADER`](plexus_types::RESULT_AUTH_HEADER)); a refusal is an error.
    pub(crate) async fn owner_get(
        &self,
        owner: &PrivateKey,
        job: &JobId,
        what: &str,
    ) -> Result<reqwest::Response> {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let response = self
            .http
            .get(format!("{}/jobs/{job}/{what}", self.base))
            .header(
                plexus_types::RESULT_AUTH_HEADER,
                plexus_types::result_request_auth(owner, job, unix_ms),
            )
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(self
                .parse::<Value>(response)
                .await
                .err()
                .unwrap_or_else(|| ClientError::Decode(format!("HTTP {status}"))));
        }
        Ok(response)
    }

    /// Submit a signed transaction; returns its hash once the mempool accepted it.
    pub async fn submit(&self, tx: &SignedTransaction) -> Result<TxHash> {
        let body = serde_json::json!({ "tx": hex::encode(tx.encode()) });
        let response = self
            .http
            .post(format!("{}/tx", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let _: Value = self.parse(response).await?;
        Ok(tx.hash())
    }

    /// Poll until the transaction is finalized or dropped.
    pub async fn wait(&self, hash: &TxHash, timeout: Duration) -> Result<Value> {
        let hex_hash = digest_hex(hash);
        let started = Instant::now();
        loop {
            let status = self.tx(&hex_hash).await?;
            if status["status"] != "pending" {
                return Ok(status);
            }
            if started.elapsed() > timeout {
                return Err(ClientError::Timeout {
                    hash: hex_hash,
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Build, sign and submit `action` from `key`, using the node's chain id, minimum fee
    /// (unless `fee` is given) and next nonce.
    pub async fn send(
        &self,
        key: &PrivateKey,
        action: Action,
        fee: Option<Amount>,
    ) -> Result<SignedTransaction> {
        use plexus_types::Signer as _;
        let status = self.status().await?;
        let signer = Address::from(&key.public_key());
        let account = self.account(&signer).await?;
        let tx = Transaction {
            chain_id: status.chain_id,
            signer,
            nonce: account.next_nonce,
            fee: fee.unwrap_or(status.min_fee),
            action,
        }
        .sign(key);
        self.submit(&tx).await?;
        Ok(tx)
    }
}
