//! The provider's HTTP endpoint (the `endpoint` it registers on chain): it serves the outputs
//! it produced, by hash, so a poster can fetch a result even if the node lost it.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | `{"status":"ok","provider":"<address>"}` |
//! | GET | `/blobs/{hash}` | the output bytes with that sha256 (`application/octet-stream`) |
//!
//! Errors are `{"error":{"code","message"}}`, as the node's: `invalid_hash` (400),
//! `unknown_blob` (404), `not_found` (404), `internal` (500, details only in the log).

use crate::store::Outputs;
use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use plexus_types::{Address, parse_digest};
use serde_json::json;

#[derive(Clone, Debug)]
pub(crate) struct ServeState {
    pub outputs: Outputs,
    pub provider: Address,
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
        let app = app(ServeState {
            outputs: store.outputs(),
            provider,
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
