//! gateway: an OpenAI-compatible HTTP API in front of the Plexus network.
//!
//! Point an OpenAI client at `http://HOST:PORT/v1` with a Plexus API key and it gets answers
//! from the network's providers. Every request becomes paid jobs on chain, posted and paid by
//! the account the key is bound to ([`keys`]); every answer names its jobs in the
//! `x-plexus-receipt` header, and each job's provider-signed receipt can be checked against
//! any node (`plexus receipt verify ID`), without trusting the gateway.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/models` | models registered on chain with at least one live provider |
//! | GET | `/v1/models/{id}` | one of them (by name or hash) |
//! | POST | `/v1/embeddings` | `input` string or array, `encoding_format` float or base64 |
//! | POST | `/v1/chat/completions` | `messages`, `max_tokens`/`max_completion_tokens`, `temperature`, `top_p`, `seed`, `stop`, `n`=1, `stream` (+`stream_options.include_usage`) |
//! | GET | `/v1/receipts/{id}` | a job's receipt, checked against the chain (no key needed) |
//! | GET | `/health` | `{"status":"ok"}` |
//!
//! # How a request runs
//!
//! 1. The key is checked (401), the body field by field (400, naming the field), the model
//!    looked up on chain (404 unknown, 503 if no provider serves it).
//! 2. The most the request can cost (escrow at the offered price, plus transaction fees) must
//!    be in the account (402) and within the key's spending limit (429).
//! 3. The input is stored on the node and `PostJob` signed and submitted: one job per chat
//!    request; one job per [`EMBED_TEXTS_PER_JOB`](openai::EMBED_TEXTS_PER_JOB) texts for
//!    embeddings, posted together so several providers can work at once. The price offered
//!    per unit is the model's base price times `price_multiplier` (default 2); the chain
//!    charges `max(base price, provider floor)` and refunds the rest.
//! 4. When a job's commitment is final, its output is fetched from the provider as the job's
//!    owner and checked against the commitment, then answered. The reveal, the receipt and
//!    the settlement follow on chain on their own.
//! 5. With `stream: true`, tokens are relayed from the provider's stream
//!    (`GET /jobs/{id}/stream` on its endpoint) as it generates them. The final chunk is
//!    sent only once the committed result is fetched and found to extend exactly what was
//!    streamed; otherwise the stream ends with an error event.
//!
//! Chat defaults differ from OpenAI's in one place: an unset `temperature` means greedy
//! decoding (0), the most useful setting for small models and the one verifiers re-run
//! exactly. Failures answer in OpenAI's error shape ([`error`]), never with internals.

pub mod error;
pub mod keys;
pub mod network;
pub mod openai;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::{ApiError, ApiResult};
pub use keys::{KeyEntry, Keys};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How to run a gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The node's RPC base URL.
    pub rpc: String,
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The gateway's directory: `keys.json` lives here.
    pub dir: PathBuf,
    /// How long a request waits for its jobs' results.
    pub job_timeout: Duration,
    /// Offered price per unit, as a multiple of the model's base price.
    pub price_multiplier: u32,
}

/// Settings the routes read.
#[derive(Clone, Debug)]
pub struct Settings {
    pub job_timeout: Duration,
    pub price_multiplier: u32,
}

/// What every route shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub network: Arc<network::Network>,
    pub keys: Keys,
    pub settings: Settings,
}

/// The HTTP application, with no server attached.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{id}", get(openai::get_model))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/receipts/{id}", get(openai::receipt))
        .fallback(|| async {
            ApiError::not_found(
                "unknown_url",
                "Unknown URL. The API lives under /v1: models, embeddings, chat/completions, receipts/{id}.",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                ..ApiError::bad_request(
                    "method_not_allowed",
                    None,
                    "This URL does not take that method (GET for models and receipts, POST for embeddings and chat/completions).",
                )
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Errors starting a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// A gateway bound to its address, ready to [`run`](Gateway::run).
#[derive(Debug)]
pub struct Gateway {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: AppState,
}

impl Gateway {
    /// Open the keys and bind the listener.
    pub async fn bind(config: GatewayConfig) -> Result<Self, GatewayError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| keys::KeyError::Write {
            path: config.dir.clone(),
            reason: e.to_string(),
        })?;
        let keys = Keys::open(&config.dir)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| GatewayError::Bind {
                addr: config.listen,
                reason: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| GatewayError::Bind {
            addr: config.listen,
            reason: e.to_string(),
        })?;
        Ok(Self {
            listener,
            addr,
            state: AppState {
                network: Arc::new(network::Network::new(&config.rpc)),
                keys,
                settings: Settings {
                    job_timeout: config.job_timeout,
                    price_multiplier: config.price_multiplier.max(1),
                },
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL OpenAI clients take: `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Serve until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, app(self.state))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests;
