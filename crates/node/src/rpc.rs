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
//! | GET | `/events/blocks` | server-sent events, one per finalized block |

use crate::app::Mailbox;
use crate::shared::{BlockEvent, Shared, TxStatus};
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
    Action, Address, Block, Height, SignedTransaction, digest_hex, limits, parse_digest,
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
                Action::Withdraw => {}
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
            params: Params {
                min_fee: Amount::new(1),
                unbonding_delay: 2,
            },
            accounts: vec![GenesisAccount {
                address: Address::from_bytes([1; 32]),
                balance: Amount::new(100),
                stake: Amount::new(5),
            }],
        };
        let ledger = Ledger::from_genesis(&genesis).unwrap();
        let shared = Shared::new(NodeState::new(ledger, genesis.digest(), 10));
        let (sender, _receiver) = commonware_utils::channel::mpsc::unbounded_channel();
        app(RpcState {
            shared,
            mailbox: Mailbox::new(sender),
        })
    }

    async fn call(method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = test_app().oneshot(request).await.unwrap();
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
}
