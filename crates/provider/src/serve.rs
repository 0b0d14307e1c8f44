//! The provider's HTTP endpoint (the `endpoint` it registers on chain): it serves the outputs
//! it produced, by hash, so a poster can fetch a result even if the node lost it.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | `{"status":"ok","provider":"<address>"}` |
//! | GET | `/blobs/{hash}` | the output bytes with that sha256 (`application/octet-stream`) |
//! | GET | `/jobs/{id}/result` | for the job's owner only: the output as soon as it is committed, before the reveal |
//!
//! `/jobs/{id}/result` needs the header [`RESULT_AUTH_HEADER`] (the owner's signature over the
//! job id and a timestamp within [`MAX_REQUEST_SKEW_MS`]); the answer carries the output hash,
//! salt and units in `x-plexus-output-hash`, `x-plexus-salt` and `x-plexus-units`, so the
//! owner can check the bytes against the commitment already on chain. Only the owner: before
//! the reveal, anyone else could copy the result (a verifier, a competing provider).
//!
//! Errors are `{"error":{"code","message"}}`, as the node's: `invalid_hash` (400),
//! `invalid_job_id` (400), `unauthorized` (401), `forbidden` (403), `unknown_blob` (404),
//! `unknown_job` (404), `not_found` (404), `node_unreachable` (502), `internal` (500,
//! details only in the log).

use crate::store::{Outputs, Store};
use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use plexus_types::{
    Address, JobId, RESULT_AUTH_HEADER, digest_hex, parse_digest, verify_result_request_auth,
};
use serde_json::json;
use std::sync::{Arc, Mutex};

/// How far a result request's timestamp may be from the provider's clock.
pub const MAX_REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;

#[derive(Clone, Debug)]
pub(crate) struct ServeState {
    pub outputs: Outputs,
    pub provider: Address,
    /// The job records (salts), for owners fetching a result before the reveal.
    pub records: Arc<Mutex<Store>>,
    /// The node, to learn a job's owner.
    pub client: plexus_client::Client,
}

struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// The HTTP application, with no server attached.
pub(crate) fn app(state: ServeState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/blobs/{hash}", get(blob))
        .route("/jobs/{id}/result", get(result))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: "no such endpoint; try GET /blobs/{hash} or GET /health".into(),
            }
        })
        .with_state(state)
}

async fn health(State(state): State<ServeState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "provider": state.provider }))
}

async fn blob(State(state): State<ServeState>, Path(hash): Path<String>) -> Response {
    let digest = match parse_digest(&hash) {
        Ok(d) => d,
        Err(e) => {
            return ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_hash",
                message: e.to_string(),
            }
            .into_response();
        }
    };
    let outputs = state.outputs.clone();
    let read = tokio::task::spawn_blocking(move || outputs.get(&digest)).await;
    match read {
        Ok(Ok(Some(bytes))) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        Ok(Ok(None)) => ApiError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_blob",
            message: format!("this provider holds no output {}", hash.trim()),
        }
        .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading an output");
            internal()
        }
        Err(e) => {
            tracing::error!(error = %e, "reading an output");
            internal()
        }
    }
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    ApiError {
        status,
        code,
        message: message.into(),
    }
    .into_response()
}

async fn result(
    State(state): State<ServeState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let job: JobId = match id.parse() {
        Ok(job) => job,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_job_id", format!("{e}")),
    };
    let Some(auth) = headers
        .get(RESULT_AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "sign the request as the job's owner: header {RESULT_AUTH_HEADER}: <unix_ms>.<signature>"
            ),
        );
    };
    let record = state
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&job)
        .cloned();
    let Some(record) = record else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_job",
            format!(
                "this provider has no result for job {job} (not assigned here, or not computed yet)"
            ),
        );
    };
    let view = match state.client.job(&job).await {
        Ok(view) => view,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                "node_unreachable",
                format!("cannot look the job up on the node: {e}"),
            );
        }
    };
    let Some(unix_ms) = verify_result_request_auth(&view.owner, &job, auth) else {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the job's owner may fetch its result before the reveal (bad or foreign signature)",
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if unix_ms.abs_diff(now) > MAX_REQUEST_SKEW_MS {
        return error(
            StatusCode::UNAUTHORIZED,
            "stale_request",
            "the request's timestamp is too far from the provider's clock; sign a fresh one",
        );
    }
    let outputs = state.outputs.clone();
    let hash = record.output_hash;
    match tokio::task::spawn_blocking(move || outputs.get(&hash)).await {
        Ok(Ok(Some(bytes))) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static("x-plexus-output-hash"),
                    digest_hex(&record.output_hash),
                ),
                (
                    header::HeaderName::from_static("x-plexus-salt"),
                    digest_hex(&record.salt),
                ),
                (
                    header::HeaderName::from_static("x-plexus-units"),
                    record.units.to_string(),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            "unknown_blob",
            "the job's output is missing from this provider's store",
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading an output");
            internal()
        }
        Err(e) => {
            tracing::error!(error = %e, "reading an output");
            internal()
        }
    }
}

fn internal() -> Response {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: "the provider could not read its store; see its log".into(),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, Store, tests::TempDir};
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use plexus_types::{JobId, digest_hex, sha256};
    use tower::ServiceExt;

    async fn get(app: &Router, path: &str) -> (StatusCode, Vec<u8>) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, body.to_vec())
    }

    fn error_code(body: &[u8]) -> String {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["error"]["code"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn serves_stored_outputs_and_explains_the_rest() {
        let dir = TempDir::new("serve");
        let mut store = Store::open(&dir.0).unwrap();
        let output = br#"{"model":"m","model_hash":"h","embeddings":[[0.5]]}"#.to_vec();
        let hash = sha256(&[&output]);
        store
            .insert(&[(
                Record {
                    job: JobId::from_bytes([1; 32]),
                    output_hash: hash,
                    salt: sha256(&[b"salt"]),
                    output_size: output.len() as u32,
                    units: 1,
                    model: sha256(&[b"model"]),
                },
                output.clone(),
            )])
            .unwrap();
        let provider = Address::from_bytes([7; 32]);
        let outputs = store.outputs();
        let app = app(ServeState {
            outputs,
            provider,
            records: Arc::new(Mutex::new(store)),
            // Not reached by these requests (no owner check happens).
            client: plexus_client::Client::new("http://127.0.0.1:9"),
        });

        let (status, body) = get(&app, &format!("/blobs/{}", digest_hex(&hash))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, output);

        let (status, body) = get(&app, &format!("/blobs/{}", digest_hex(&sha256(&[b"x"])))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&body), "unknown_blob");

        let (status, body) = get(&app, "/blobs/not-hex").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "invalid_hash");

        // Results before the reveal need the owner's signature.
        let job = JobId::from_bytes([1; 32]);
        let (status, body) = get(&app, &format!("/jobs/{job}/result")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&body), "unauthorized");
        let (status, body) = get(&app, "/jobs/xyz/result").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "invalid_job_id");

        let (status, body) = get(&app, "/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&body), "not_found");

        let (status, body) = get(&app, "/health").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["provider"], provider.to_string());
    }
}
