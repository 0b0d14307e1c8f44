//! JSON over HTTP (axum). Every error is a 4xx/5xx with `{"error": {"code", "message"}}`.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/status` | chain id, finalized height, head, state root, supply and holdings, mempool size, finality latency |
//! | GET | `/accounts/{address}` | balance, nonce, stake, unbonding entries |
//! | POST | `/tx` | submit `{"tx": "<hex of the signed transaction's canonical encoding>"}` |
//! | GET | `/tx/{hash}` | pending, finalized (height, success, error) or dropped |
//! | GET | `/blocks/{height}` | a finalized block |
//! | GET | `/state_roots/{height}` | the state root after block `height` |
//! | GET | `/events/blocks` | server-sent events, one per finalized block (with its job events) |
//! | GET | `/models` | registered models, base prices, capacity and demand |
//! | GET | `/providers` | registered providers with stake and reputation |
//! | GET | `/providers/{address}` | one provider |
//! | GET | `/providers/{address}/jobs` | jobs still in the state assigned to the provider or with a check by it |
//! | GET | `/jobs/{id}` | a job: queued, assigned, committed, revealed, settled or refunded |
//! | POST | `/blobs` | store a payload (raw body, at most the chain's `max_payload_size`) |
//! | GET | `/blobs/{hash}` | a stored payload's bytes |

use crate::app::Mailbox;
use crate::blobs::{BlobError, BlobStore};
use crate::shared::{BlockEvent, Shared, TxStatus, job_json};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State, rejection::BytesRejection},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use commonware_codec::Encode;
use plexus_types::{
    Action, Address, Block, Height, JobId, SignedTransaction, digest_hex, limits, parse_digest,
};
use serde::Serialize;
use serde_json::{Value, json};
use std::convert::Infallible;

/// Largest request body read at all; bodies between a maximal transaction and this get a
/// precise `tx_too_large` error, larger ones `body_too_large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct RpcState {
    pub shared: Shared,
    pub mailbox: Mailbox,
    pub blobs: BlobStore,
}

/// An error response: status code, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The RPC application, with no server attached (tests drive it with `oneshot`).
pub fn app(state: RpcState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/accounts/{address}", get(account))
        .route("/tx", post(submit))
        .route("/tx/{hash}", get(tx_status))
        .route("/blocks/{height}", get(block))
        .route("/state_roots/{height}", get(state_root))
        .route("/events/blocks", get(events))
        .route("/models", get(models))
        .route("/providers", get(providers))
        .route("/providers/{address}", get(provider))
        .route("/providers/{address}/jobs", get(provider_jobs))
        .route("/jobs/{id}", get(job))
        .route(
            "/blobs",
            // Payloads get their own limit (one more byte, so an oversized body reaches the
            // handler's precise error rather than a generic rejection).
            post(put_blob).layer(DefaultBodyLimit::max(state.blobs.max_size() + 1)),
        )
        .route("/blobs/{hash}", get(get_blob))
        .fallback(|| async {
            ApiError::not_found("not_found", "no such endpoint; see the node's RPC docs")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

#[derive(Serialize)]
pub struct Finality {
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub samples: usize,
}

async fn status(State(state): State<RpcState>) -> ApiResult<Value> {
    let node = state.shared.lock();
    let ledger = &node.ledger;
    let holdings = ledger.holdings().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invariant",
            e.to_string(),
        )
    })?;
    let finality = node
        .latencies
        .percentiles()
        .map(|(p50_ms, p99_ms, samples)| Finality {
            p50_ms,
            p99_ms,
            samples,
        });
    Ok(Json(json!({
        "chain_id": ledger.chain_id(),
        "genesis": digest_hex(&node.genesis_digest),
        "finalized_height": ledger.height().get(),
        "head": digest_hex(&node.head_digest),
        "head_timestamp_ms": node.head_timestamp_ms,
        "state_root": digest_hex(&ledger.state_root()),
        "supply": ledger.supply(),
        "holdings": holdings,
        "treasury": ledger.treasury(),
        "min_fee": ledger.params().min_fee,
        "unbonding_delay": ledger.params().unbonding_delay,
        "escrow": ledger.escrow(),
        "params": ledger.params(),
        "mempool": node.mempool.len(),
        "finality": finality,
    })))
}

fn parse_address(s: &str) -> Result<Address, ApiError> {
    s.parse()
        .map_err(|e: plexus_types::Error| ApiError::bad_request("invalid_address", e.to_string()))
}

async fn account(State(state): State<RpcState>, Path(address): Path<String>) -> ApiResult<Value> {
    let address = parse_address(&address)?;
    let node = state.shared.lock();
    let account = node.ledger.account(&address);
    let next_nonce = account.nonce.get() + node.mempool.queued(&address);
    Ok(Json(json!({
        "address": address,
        "balance": account.balance,
        "nonce": account.nonce,
        "next_nonce": next_nonce,
        "stake": account.stake,
        "unbonding": account.unbonding,
        "height": node.ledger.height(),
    })))
}

/// Decode the submit body: `{"tx": "<hex>"}`.
pub fn decode_submission(body: &[u8]) -> Result<SignedTransaction, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("body is not JSON: {e}")))?;
    let hex_tx = value.get("tx").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request(
            "missing_tx",
            "body must be {\"tx\": \"<hex-encoded signed transaction>\"}",
        )
    })?;
    if hex_tx.len() > 2 * limits::MAX_TX_SIZE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "tx_too_large",
            format!(
                "transaction is {} bytes, larger than the limit of {}",
                hex_tx.len() / 2,
                limits::MAX_TX_SIZE
            ),
        ));
    }
    let bytes = hex::decode(hex_tx)
        .map_err(|e| ApiError::bad_request("malformed_tx", format!("tx is not valid hex: {e}")))?;
    SignedTransaction::decode_bounded(&bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed_tx",
            format!("tx does not decode as a signed transaction: {e}"),
        )
    })
}

async fn submit(
    State(state): State<RpcState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "body_too_large",
            format!(
                "request body rejected: {}; the limit is {MAX_BODY_BYTES} bytes",
                e.body_text()
            ),
        )
    })?;
    let tx = decode_submission(&body)?;
    let result = state.shared.lock().submit(tx);
    match result {
        Ok(hash) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "hash": digest_hex(&hash), "status": "pending" })),
        )
            .into_response()),
        Err(e) => {
            let status = match &e {
                crate::mempool::AdmitError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
                crate::mempool::AdmitError::Duplicate(_) => StatusCode::CONFLICT,
                crate::mempool::AdmitError::Invalid(
                    plexus_ledger::TxError::InsufficientFunds { .. },
                ) => StatusCode::PAYMENT_REQUIRED,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, e.code(), e.to_string()))
        }
    }
}

async fn tx_status(State(state): State<RpcState>, Path(hash): Path<String>) -> ApiResult<Value> {
    let hash =
        parse_digest(&hash).map_err(|e| ApiError::bad_request("invalid_hash", e.to_string()))?;
    let node = state.shared.lock();
    match node.statuses.get(&hash) {
        Some(status) => {
            let mut value = serde_json::to_value(status).unwrap_or_default();
            value["hash"] = json!(digest_hex(&hash));
            if matches!(status, TxStatus::Finalized { .. }) {
                value["finalized_height"] = json!(node.ledger.height());
            }
            Ok(Json(value))
        }
        None => Err(ApiError::not_found(
            "unknown_tx",
            format!("no transaction {} is known to this node", digest_hex(&hash)),
        )),
    }
}

fn parse_height(s: &str) -> Result<Height, ApiError> {
    s.parse::<u64>().map(Height::new).map_err(|_| {
        ApiError::bad_request("invalid_height", format!("{s:?} is not a block height"))
    })
}

/// A block as JSON (transactions decoded, plus their canonical hex).
pub fn block_json(block: &Block) -> Value {
    let txs: Vec<Value> = block
        .txs
        .iter()
        .map(|stx| {
            let mut action = json!({ "type": stx.tx.action.kind() });
            match &stx.tx.action {
                Action::Transfer { to, amount } => {
                    action["to"] = json!(to);
                    action["amount"] = json!(amount);
                }
                Action::Bond { amount } | Action::Unbond { amount } => {
                    action["amount"] = json!(amount);
                }
                Action::Withdraw | Action::Deregister => {}
                Action::RegisterModel {
                    hash,
                    name,
                    kind,
                    unit,
                    min_price,
                    blocks_per_1000_units,
                } => {
                    action["blocks_per_1000_units"] = json!(blocks_per_1000_units);
                    action["hash"] = json!(digest_hex(hash));
                    action["name"] = json!(name);
                    action["kind"] = json!(kind);
                    action["unit"] = json!(unit);
                    action["min_price"] = json!(min_price);
                }
                Action::RegisterProvider {
                    models,
                    capacity,
                    region,
                    price_floor,
                    endpoint,
                } => {
                    action["models"] = json!(models.iter().map(digest_hex).collect::<Vec<_>>());
                    action["capacity"] = json!(capacity);
                    action["region"] = json!(region);
                    action["price_floor"] = json!(price_floor);
                    action["endpoint"] = json!(endpoint);
                }
                Action::PauseProvider { paused } => action["paused"] = json!(paused),
                Action::PostJob {
                    model,
                    input_hash,
                    input_size,
                    max_units,
                    max_unit_price,
                    region,
                } => {
                    action["job"] = json!(JobId::new(&stx.tx.signer, stx.tx.nonce));
                    action["model"] = json!(digest_hex(model));
                    action["input_hash"] = json!(digest_hex(input_hash));
                    action["input_size"] = json!(input_size);
                    action["max_units"] = json!(max_units);
                    action["max_unit_price"] = json!(max_unit_price);
                    action["region"] = json!(region);
                }
                Action::CommitResult { job, commitment }
                | Action::CommitCheck { job, commitment } => {
                    action["job"] = json!(job);
                    action["commitment"] = json!(digest_hex(commitment));
                }
                Action::RevealCheck {
                    job,
                    output_hash,
                    agrees,
                    ..
                } => {
                    action["job"] = json!(job);
                    action["output_hash"] = json!(digest_hex(output_hash));
                    action["agrees"] = json!(agrees);
                }
                Action::RevealResult {
                    job,
                    output_hash,
                    output_size,
                    units,
                    ..
                } => {
                    action["job"] = json!(job);
                    action["output_hash"] = json!(digest_hex(output_hash));
                    action["output_size"] = json!(output_size);
                    action["units"] = json!(units);
                }
            }
            json!({
                "hash": digest_hex(&stx.hash()),
                "signer": stx.tx.signer,
                "nonce": stx.tx.nonce,
                "fee": stx.tx.fee,
                "action": action,
                "raw": hex::encode(stx.encode()),
            })
        })
        .collect();
    json!({
        "height": block.height(),
        "digest": digest_hex(&block.digest()),
        "parent": digest_hex(&block.header.parent),
        "timestamp_ms": block.header.timestamp_ms,
        "txs": txs,
    })
}

async fn block(State(state): State<RpcState>, Path(height): Path<String>) -> ApiResult<Value> {
    let height = parse_height(&height)?;
    let finalized = state.shared.lock().ledger.height();
    if height.get() == 0 || height > finalized {
        return Err(ApiError::not_found(
            "unknown_block",
            format!("no finalized block at height {height} (finalized height is {finalized})"),
        ));
    }
    match state.mailbox.block(height).await {
        Some(block) => Ok(Json(block_json(&block))),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node is shutting down",
        )),
    }
}

async fn state_root(State(state): State<RpcState>, Path(height): Path<String>) -> ApiResult<Value> {
    let height = parse_height(&height)?;
    let node = state.shared.lock();
    match node.state_roots.get(height.get() as usize) {
        Some(root) => Ok(Json(
            json!({ "height": height, "state_root": digest_hex(root) }),
        )),
        None => Err(ApiError::not_found(
            "unknown_block",
            format!(
                "no finalized block at height {height} (finalized height is {})",
                node.ledger.height()
            ),
        )),
    }
}

async fn events(
    State(state): State<RpcState>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.shared.lock().events.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((Ok(sse_event(&event)), receiver)),
                // A slow reader skips blocks rather than holding the node back.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn models(State(state): State<RpcState>) -> ApiResult<Value> {
    let node = state.shared.lock();
    let ledger = &node.ledger;
    let models: Vec<Value> = ledger
        .models()
        .map(|m| {
            let mut v = serde_json::to_value(m).unwrap_or_default();
            v["capacity"] = json!(ledger.model_capacity(&m.hash));
            v["providers"] = json!(
                ledger
                    .providers()
                    .filter(|(_, p)| !p.paused && p.models.contains(&m.hash))
                    .count()
            );
            v
        })
        .collect();
    Ok(Json(json!({ "height": ledger.height(), "models": models })))
}

fn provider_json(ledger: &plexus_ledger::State, address: &Address) -> Option<Value> {
    let p = ledger.provider(address)?;
    let mut v = serde_json::to_value(p).unwrap_or_default();
    v["address"] = json!(address);
    v["stake"] = json!(ledger.account(address).stake);
    v["eligible_stake"] =
        json!(ledger.account(address).stake >= ledger.params().min_provider_stake);
    // The biggest job (by escrow) this stake can secure; null: no bound (no spot checks).
    v["max_job_escrow"] = json!(plexus_ledger::max_secured_escrow(
        ledger.params(),
        ledger.account(address).stake
    ));
    Some(v)
}

async fn providers(State(state): State<RpcState>) -> ApiResult<Value> {
    let node = state.shared.lock();
    let ledger = &node.ledger;
    let providers: Vec<Value> = ledger
        .providers()
        .filter_map(|(a, _)| provider_json(ledger, a))
        .collect();
    Ok(Json(
        json!({ "height": ledger.height(), "providers": providers }),
    ))
}

async fn provider(State(state): State<RpcState>, Path(address): Path<String>) -> ApiResult<Value> {
    let address = parse_address(&address)?;
    let node = state.shared.lock();
    provider_json(&node.ledger, &address)
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_provider",
                format!("{address} is not a registered provider"),
            )
        })
}

async fn provider_jobs(
    State(state): State<RpcState>,
    Path(address): Path<String>,
) -> ApiResult<Value> {
    let address = parse_address(&address)?;
    let node = state.shared.lock();
    let jobs: Vec<Value> = node
        .ledger
        .jobs()
        .filter(|j| j.provider == Some(address) || j.checks.iter().any(|c| c.verifier == address))
        .map(|j| job_json(j, None))
        .collect();
    Ok(Json(
        json!({ "height": node.ledger.height(), "jobs": jobs }),
    ))
}

async fn job(State(state): State<RpcState>, Path(id): Path<String>) -> ApiResult<Value> {
    let id: JobId = id
        .parse()
        .map_err(|e: plexus_types::Error| ApiError::bad_request("invalid_job_id", e.to_string()))?;
    let node = state.shared.lock();
    if let Some(job) = node.ledger.job(&id) {
        return Ok(Json(job_json(job, None)));
    }
    match node.finished_jobs.get(&id) {
        Some(f) => Ok(Json(job_json(&f.job, Some((&f.height, &f.outcome))))),
        None => Err(ApiError::not_found(
            "unknown_job",
            format!("no job {id} is known to this node (not posted, or not yet finalized)"),
        )),
    }
}

async fn put_blob(
    State(state): State<RpcState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let max = state.blobs.max_size();
    let body = body.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("payload is larger than the limit of {max} bytes"),
        )
    })?;
    let store = state.blobs.clone();
    let size = body.len();
    let result = tokio::task::spawn_blocking(move || store.put(&body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match result {
        Ok(hash) => Ok((
            StatusCode::CREATED,
            Json(json!({ "hash": digest_hex(&hash), "size": size })),
        )
            .into_response()),
        Err(e) => {
            let (status, code) = match &e {
                BlobError::Empty => (StatusCode::BAD_REQUEST, "empty_payload"),
                BlobError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
                BlobError::Full { .. } => (StatusCode::INSUFFICIENT_STORAGE, "store_full"),
                BlobError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
            };
            Err(ApiError::new(status, code, e.to_string()))
        }
    }
}

async fn get_blob(
    State(state): State<RpcState>,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let hash =
        parse_digest(&hash).map_err(|e| ApiError::bad_request("invalid_hash", e.to_string()))?;
    let store = state.blobs.clone();
    let bytes = tokio::task::spawn_blocking(move || store.get(&hash))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match bytes {
        Some(bytes) => Ok((
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response()),
        None => Err(ApiError::not_found(
            "unknown_blob",
            format!("no payload {} is stored on this node", digest_hex(&hash)),
        )),
    }
}

fn sse_event(event: &BlockEvent) -> Event {
    Event::default()
        .event("block")
        .data(serde_json::to_string(event).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::NodeState;
    use axum::body::Body;
    use axum::http::Request;
    use plexus_ledger::{Genesis, GenesisAccount, Params, State as Ledger};
    use plexus_types::Amount;
    use tower::ServiceExt;

    fn test_app() -> Router {
        let genesis = Genesis {
            chain_id: "t".into(),
            models: Vec::new(),
            params: Params::new(Amount::new(1), 2),
            accounts: vec![GenesisAccount {
                address: Address::from_bytes([1; 32]),
                balance: Amount::new(100),
                stake: Amount::new(5),
            }],
        };
        let ledger = Ledger::from_genesis(&genesis).unwrap();
        let shared = Shared::new(NodeState::new(ledger, genesis.digest(), 10));
        let (sender, _receiver) = commonware_utils::channel::mpsc::unbounded_channel();
        static APPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "plexus-rpc-test-{}-{}",
            std::process::id(),
            APPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        app(RpcState {
            shared,
            mailbox: Mailbox::new(sender),
            blobs: BlobStore::open(&dir, 64, 1 << 20).unwrap(),
        })
    }

    async fn call(method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        call_app(test_app(), method, uri, body).await
    }

    async fn call_app(app: Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn status_reports_both_sides_of_the_invariant() {
        let (status, body) = call("GET", "/status", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["chain_id"], "t");
        assert_eq!(body["finalized_height"], 0);
        assert_eq!(body["supply"], "105");
        assert_eq!(body["holdings"], "105");
    }

    #[tokio::test]
    async fn errors_are_json_with_codes() {
        for (method, uri, body, code, expected) in [
            (
                "POST",
                "/tx",
                "{",
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            ("POST", "/tx", "{}", StatusCode::BAD_REQUEST, "missing_tx"),
            (
                "POST",
                "/tx",
                "{\"tx\":\"abc\"}",
                StatusCode::BAD_REQUEST,
                "malformed_tx",
            ),
            (
                "GET",
                "/accounts/xyz",
                "",
                StatusCode::BAD_REQUEST,
                "invalid_address",
            ),
            ("GET", "/tx/00", "", StatusCode::BAD_REQUEST, "invalid_hash"),
            (
                "GET",
                "/blocks/abc",
                "",
                StatusCode::BAD_REQUEST,
                "invalid_height",
            ),
            (
                "GET",
                "/blocks/7",
                "",
                StatusCode::NOT_FOUND,
                "unknown_block",
            ),
            (
                "GET",
                "/state_roots/7",
                "",
                StatusCode::NOT_FOUND,
                "unknown_block",
            ),
            ("GET", "/nope", "", StatusCode::NOT_FOUND, "not_found"),
            (
                "GET",
                "/jobs/xyz",
                "",
                StatusCode::BAD_REQUEST,
                "invalid_job_id",
            ),
            (
                "GET",
                "/jobs/0000000000000000000000000000000000000000000000000000000000000000",
                "",
                StatusCode::NOT_FOUND,
                "unknown_job",
            ),
            (
                "GET",
                "/providers/0101010101010101010101010101010101010101010101010101010101010101",
                "",
                StatusCode::NOT_FOUND,
                "unknown_provider",
            ),
            (
                "GET",
                "/blobs/0000000000000000000000000000000000000000000000000000000000000000",
                "",
                StatusCode::NOT_FOUND,
                "unknown_blob",
            ),
            (
                "POST",
                "/blobs",
                "",
                StatusCode::BAD_REQUEST,
                "empty_payload",
            ),
            (
                "POST",
                "/blobs",
                &"x".repeat(65),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                "POST",
                "/blobs",
                &"x".repeat(100_000),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
        ] {
            let (status, value) = call(method, uri, body).await;
            assert_eq!(status, code, "{method} {uri}: {value}");
            assert_eq!(value["error"]["code"], expected, "{method} {uri}: {value}");
        }
    }

    #[tokio::test]
    async fn account_and_genesis_state_root() {
        let address = Address::from_bytes([1; 32]);
        let (status, body) = call("GET", &format!("/accounts/{address}"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["balance"], "100");
        assert_eq!(body["stake"], "5");
        assert_eq!(body["next_nonce"], 0);
        let (status, body) = call("GET", "/state_roots/0", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["height"], 0);
    }

    #[tokio::test]
    async fn blobs_roundtrip_and_market_listings() {
        let app = test_app();
        let (status, body) = call_app(app.clone(), "POST", "/blobs", "{\"texts\":[\"hi\"]}").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let hash = body["hash"].as_str().unwrap().to_string();
        assert_eq!(
            hash,
            digest_hex(&plexus_types::sha256(&[b"{\"texts\":[\"hi\"]}"]))
        );
        let request = Request::builder()
            .uri(format!("/blobs/{hash}"))
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"{\"texts\":[\"hi\"]}");
        let (status, body) = call("GET", "/models", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["models"], json!([]));
        let (_, body) = call("GET", "/providers", "").await;
        assert_eq!(body["providers"], json!([]));
        let (_, body) = call("GET", "/status", "").await;
        assert_eq!(body["params"]["min_fee"], "1");
        // Verifiers read the embedding tolerance from here.
        assert!(
            body["params"]["embedding_tolerance_micros"].is_u64(),
            "{body}"
        );
        assert_eq!(body["escrow"], "0");
    }
}
