//! The gateway's side of the chain: look models up, post jobs as a key's account, follow them
//! to their commitment and fetch results from providers, checked against the chain.
//!
//! Transactions of one account are signed one at a time with consecutive nonces kept here
//! (read once from the node, then counted up), so concurrent requests of the same key do not
//! race for a nonce; a nonce error (another client used the account) re-reads it and retries
//! once.

use crate::error::{ApiError, ApiResult};
use crate::keys::Reservation;
use plexus_client::{Client, ClientError, EarlyResult, JobView};
use plexus_types::{
    Action, Address, Amount, Digest, JobId, Nonce, PrivateKey, Signer as _, Transaction, TxHash,
    digest_hex, parse_digest,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a job in flight is polled on the node.
const POLL: Duration = Duration::from_millis(25);
/// How often a job the node does not know yet checks its posting transaction.
const TX_CHECK: Duration = Duration::from_millis(500);

/// A registered model, as the node reports it.
#[derive(Clone, Debug)]
pub struct ChainModel {
    pub hash: Digest,
    pub name: String,
    /// `embedding` or `chat`.
    pub kind: String,
    /// The unit of work billed (`input_tokens`, `output_tokens`).
    pub unit: String,
    pub base_price: Amount,
    /// Providers registered for it and not paused.
    pub providers: u64,
    pub capacity: u64,
}

/// The chain's constants the gateway needs.
#[derive(Clone, Debug)]
pub struct ChainInfo {
    pub chain_id: String,
    pub min_fee: Amount,
    pub max_payload_size: u64,
}

/// A job to post.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub model: Digest,
    pub input: Vec<u8>,
    pub max_units: u32,
    pub max_unit_price: Amount,
}

/// A posted job.
#[derive(Clone, Copy, Debug)]
pub struct Posted {
    pub id: JobId,
    pub tx: TxHash,
}

/// A job's committed result, fetched from its provider and checked against the chain.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub job: JobView,
    pub result: EarlyResult,
}

#[derive(Debug)]
pub struct Network {
    node: Client,
    info: tokio::sync::OnceCell<ChainInfo>,
    /// Per account: the next nonce to sign with (`None`: ask the node).
    nonces: Mutex<BTreeMap<Address, Arc<tokio::sync::Mutex<Option<Nonce>>>>>,
}

/// Log a node or provider failure and answer 502 without its details.
fn upstream(what: &str, e: &ClientError) -> ApiError {
    tracing::warn!(error = %e, "{what}");
    match e {
        ClientError::Unreachable { .. } => {
            ApiError::upstream(format!("{what}: the network node is unreachable."))
        }
        _ => ApiError::upstream(format!("{what}: the network answered unexpectedly.")),
    }
}

impl Network {
    pub fn new(node_url: &str) -> Self {
        Self {
            node: Client::new(node_url),
            info: tokio::sync::OnceCell::new(),
            nonces: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn node(&self) -> &Client {
        &self.node
    }

    pub async fn info(&self) -> ApiResult<&ChainInfo> {
        self.info
            .get_or_try_init(|| async {
                let status = self
                    .node
                    .status_json()
                    .await
                    .map_err(|e| upstream("reading the chain's status", &e))?;
                let min_fee = status["min_fee"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(Amount::ZERO);
                Ok(ChainInfo {
                    chain_id: status["chain_id"].as_str().unwrap_or_default().to_string(),
                    min_fee,
                    max_payload_size: status["params"]["max_payload_size"]
                        .as_u64()
                        .unwrap_or(u64::MAX),
                })
            })
            .await
    }

    /// The registered models.
    pub async fn models(&self) -> ApiResult<Vec<ChainModel>> {
        let list = self
            .node
            .models()
            .await
            .map_err(|e| upstream("listing the models", &e))?;
        Ok(list["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(parse_model)
            .collect())
    }

    /// The model named `wanted` (catalogue name or 64-hex hash): 404 if not registered, 400
    /// if not of `kind`, 503 if no provider serves it.
    pub async fn resolve(&self, wanted: &str, kind: &str, endpoint: &str) -> ApiResult<ChainModel> {
        let wanted = wanted.trim();
        if wanted.is_empty() {
            return Err(ApiError::invalid("model", "`model` is required."));
        }
        let hash = parse_digest(wanted).ok();
        let model = self
            .models()
            .await?
            .into_iter()
            .find(|m| m.name == wanted || Some(m.hash) == hash)
            .ok_or_else(|| ApiError::unknown_model(wanted))?;
        if model.kind != kind {
            return Err(ApiError::invalid(
                "model",
                format!(
                    "The model `{}` is a {} model; {endpoint} needs a {kind} model.",
                    model.name, model.kind
                ),
            ));
        }
        if model.providers == 0 || model.capacity == 0 {
            return Err(ApiError::no_provider(format!(
                "No provider serves `{}` right now; try again later.",
                model.name
            )));
        }
        Ok(model)
    }

    /// The account's spendable balance.
    pub async fn balance(&self, account: &Address) -> ApiResult<Amount> {
        self.node
            .account(account)
            .await
            .map(|a| a.balance)
            .map_err(|e| upstream("reading the account", &e))
    }

    /// Store the inputs and post one job per spec, in order, from `signer`'s account. The
    /// reservation is marked posted as soon as the node accepts the first job: from then on
    /// the account may be charged even if a later job fails.
    pub async fn post(
        &self,
        signer: &PrivateKey,
        jobs: Vec<JobSpec>,
        reservation: &mut Reservation,
    ) -> ApiResult<Vec<Posted>> {
        let info = self.info().await?.clone();
        let uploads = jobs.iter().map(|job| self.node.put_blob(job.input.clone()));
        for upload in futures::future::join_all(uploads).await {
            upload.map_err(|e| match &e {
                ClientError::Api { status: 413, .. } => ApiError::bad_request(
                    "input_too_large",
                    Some("input"),
                    "The input is larger than the network's payload limit; send less at once.",
                ),
                _ => upstream("storing the input", &e),
            })?;
        }
        let account = Address::from(&signer.public_key());
        let slot = self
            .nonces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(account)
            .or_default()
            .clone();
        let mut next = slot.lock().await;
        let mut posted = Vec::with_capacity(jobs.len());
        for job in jobs {
            let action = Action::PostJob {
                model: job.model,
                input_hash: plexus_types::sha256(&[&job.input]),
                input_size: job.input.len() as u32,
                max_units: job.max_units,
                max_unit_price: job.max_unit_price,
                region: String::new(),
            };
            let mut retried = false;
            loop {
                let nonce = match *next {
                    Some(n) => n,
                    None => {
                        self.node
                            .account(&account)
                            .await
                            .map_err(|e| upstream("reading the account", &e))?
                            .next_nonce
                    }
                };
                let tx = Transaction {
                    chain_id: info.chain_id.clone(),
                    signer: account,
                    nonce,
                    fee: info.min_fee,
                    action: action.clone(),
                }
                .sign(signer);
                match self.node.submit(&tx).await {
                    Ok(hash) => {
                        reservation.posted();
                        *next = nonce.checked_next();
                        posted.push(Posted {
                            id: JobId::new(&account, nonce),
                            tx: hash,
                        });
                        break;
                    }
                    Err(ClientError::Api { code, .. })
                        if !retried && (code == "stale_nonce" || code == "nonce_gap") =>
                    {
                        retried = true;
                        *next = None;
                    }
                    Err(e) => {
                        *next = None;
                        return Err(submit_error(&e));
                    }
                }
            }
        }
        Ok(posted)
    }

    /// Follow a job until `done` holds of it (or it is refunded, its post failed, or the
    /// deadline passes).
    pub async fn wait_job(
        &self,
        posted: &Posted,
        deadline: Instant,
        done: impl Fn(&JobView) -> bool,
    ) -> ApiResult<JobView> {
        let mut tx_checked = Instant::now();
        loop {
            match self.node.job(&posted.id).await {
                Ok(view) if done(&view) => return Ok(view),
                Ok(view) if view.status == "refunded" => {
                    let reason = view.refund.as_ref().map_or("", |r| r.reason.as_str());
                    return Err(ApiError::no_provider(format!(
                        "No provider completed job {} ({reason}); its escrow was refunded in full.",
                        posted.id
                    )));
                }
                Ok(_) => {}
                Err(ClientError::Api { status: 404, .. }) => {
                    if tx_checked.elapsed() >= TX_CHECK {
                        tx_checked = Instant::now();
                        self.check_post(posted).await?;
                    }
                }
                Err(e) => return Err(upstream("following the job", &e)),
            }
            if Instant::now() >= deadline {
                return Err(ApiError::timeout(format!(
                    "Job {} did not finish in time; it may still complete (see GET /v1/receipts/{}).",
                    posted.id, posted.id
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Fail if the job's posting transaction failed or was dropped.
    async fn check_post(&self, posted: &Posted) -> ApiResult<()> {
        let status = match self.node.tx(&digest_hex(&posted.tx)).await {
            Ok(s) => s,
            Err(ClientError::Api { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(upstream("following the job's transaction", &e)),
        };
        match status["status"].as_str() {
            Some("finalized") if status["success"] == false => {
                let error = status["error"].as_str().unwrap_or("rejected");
                tracing::warn!(job = %posted.id, error, "a job post failed on chain");
                if error.contains("insufficient") {
                    Err(ApiError::insufficient_funds(
                        "The key's account cannot pay for this request.",
                    ))
                } else {
                    Err(ApiError::upstream(format!(
                        "The network rejected the job: {error}"
                    )))
                }
            }
            Some("dropped") => Err(ApiError::upstream(format!(
                "The network dropped the job's transaction: {}",
                status["reason"].as_str().unwrap_or("no reason given")
            ))),
            _ => Ok(()),
        }
    }

    /// A client for the provider's endpoint.
    pub async fn provider(&self, provider: &Address) -> ApiResult<Client> {
        let info = self
            .node
            .provider(provider)
            .await
            .map_err(|e| upstream("looking the provider up", &e))?;
        let endpoint = info["endpoint"].as_str().unwrap_or_default();
        if endpoint.is_empty() {
            return Err(ApiError::upstream("The job's provider has no endpoint."));
        }
        Ok(Client::new(endpoint))
    }

    /// Wait for the job's commitment, then fetch its output from the provider as the job's
    /// owner; the bytes are checked against the commitment on chain.
    pub async fn result(
        &self,
        owner: &PrivateKey,
        posted: &Posted,
        deadline: Instant,
    ) -> ApiResult<JobResult> {
        let job = self
            .wait_job(posted, deadline, |j| j.commitment.is_some())
            .await?;
        let provider = job.provider.ok_or_else(ApiError::internal)?;
        let commitment = parse_digest(job.commitment.as_deref().unwrap_or_default())
            .map_err(|_| ApiError::upstream("The node reported a malformed commitment."))?;
        match self
            .provider(&provider)
            .await?
            .early_result(owner, &posted.id, &commitment)
            .await
        {
            Ok(result) => Ok(JobResult { job, result }),
            // The provider did not serve it (restarted, or slow to store): wait for the
            // reveal, which puts the output on the node.
            Err(e) => {
                tracing::warn!(job = %posted.id, error = %e, "fetching a committed result from its provider");
                self.revealed_result(posted, deadline).await
            }
        }
    }

    /// The result from the node's payload store once revealed.
    async fn revealed_result(&self, posted: &Posted, deadline: Instant) -> ApiResult<JobResult> {
        let job = self
            .wait_job(posted, deadline, |j| j.output_hash.is_some())
            .await?;
        let output = plexus_client::fetch_output(&self.node, &job)
            .await
            .map_err(|e| upstream("fetching the job's output", &e))?;
        let output_hash = parse_digest(job.output_hash.as_deref().unwrap_or_default())
            .map_err(|_| ApiError::upstream("The node reported a malformed output hash."))?;
        let salt = parse_digest(job.salt.as_deref().unwrap_or_default())
            .map_err(|_| ApiError::upstream("The node reported a malformed salt."))?;
        let units = job.units;
        Ok(JobResult {
            job,
            result: EarlyResult {
                output,
                output_hash,
                salt,
                units,
            },
        })
    }
}

fn parse_model(m: &Value) -> Option<ChainModel> {
    Some(ChainModel {
        hash: parse_digest(m["hash"].as_str()?).ok()?,
        name: m["name"].as_str()?.to_string(),
        kind: m["kind"].as_str()?.to_string(),
        unit: m["unit"].as_str().unwrap_or_default().to_string(),
        base_price: m["base_price"].as_str()?.parse().ok()?,
        providers: m["providers"].as_u64().unwrap_or(0),
        capacity: m["capacity"].as_u64().unwrap_or(0),
    })
}

/// The node refused a job's transaction.
fn submit_error(e: &ClientError) -> ApiError {
    match e {
        ClientError::Api { code, message, .. } => match code.as_str() {
            "insufficient_funds" => {
                ApiError::insufficient_funds(format!("The key's account cannot pay: {message}"))
            }
            "max_price_below_base" => ApiError::no_provider(
                "The model's price moved above what this request offered; retry.",
            ),
            "queue_full" => ApiError::no_provider(
                "The network's job queue for this model is full; retry later.",
            ),
            "payload_too_large" => ApiError::bad_request(
                "input_too_large",
                Some("input"),
                "The input is larger than the network's payload limit.",
            ),
            "unknown_model" => {
                ApiError::not_found("model_not_found", "The model is not registered.")
            }
            _ => {
                tracing::warn!(%code, %message, "the node refused a job");
                ApiError::upstream(format!("The network refused the job ({code})."))
            }
        },
        other => upstream("posting the job", other),
    }
}
