//! Route tests with `oneshot`. The node is a small stand-in serving `/status`, `/models` and
//! `/accounts/{a}` on loopback (the real node, providers and the official `openai` client are
//! exercised end to end by `scripts/openai_e2e.sh`).

use super::*;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use plexus_types::{Signer as _, digest_hex, sha256};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A stand-in node: one embedding model with a provider, one chat model without, and every
/// account holding `balance`.
async fn fake_node(balance: u128) -> String {
    let models = json!({
        "height": 5,
        "models": [
            {"hash": digest_hex(&sha256(&[b"embed"])), "name": "embed-model", "kind": "embedding",
             "unit": "input_tokens", "base_price": "1000", "min_price": "1000", "providers": 1, "capacity": 8},
            {"hash": digest_hex(&sha256(&[b"chat"])), "name": "chat-model", "kind": "chat",
             "unit": "output_tokens", "base_price": "10000", "min_price": "10000", "providers": 0, "capacity": 0},
        ]
    });
    let node = Router::new()
        .route(
            "/status",
            get(|| async {
                axum::Json(json!({"chain_id": "test", "min_fee": "10", "params": {"max_payload_size": 1_000_000}}))
            }),
        )
        .route("/models", get(move || async move { axum::Json(models) }))
        .route(
            "/accounts/{a}",
            get(move |axum::extract::Path(a): axum::extract::Path<String>| async move {
                axum::Json(json!({"address": a, "balance": balance.to_string(), "nonce": 0,
                    "next_nonce": 0, "stake": "0", "unbonding": [], "height": 5}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, node).await.unwrap() });
    format!("http://{addr}")
}

struct Setup {
    app: Router,
    secret: String,
    limited: String,
    dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup(balance: u128) -> Setup {
    let dir = std::env::temp_dir().join(format!(
        "plexus-gateway-app-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("alice.key");
    std::fs::write(
        &key_file,
        plexus_types::private_key_hex(&plexus_types::key_from_seed(1)),
    )
    .unwrap();
    let (_, secret) = keys::create(&dir, &key_file, "test", None).unwrap();
    let (_, limited) =
        keys::create(&dir, &key_file, "tiny", Some(plexus_types::Amount::new(5))).unwrap();
    let state = AppState {
        network: Arc::new(network::Network::new(&fake_node(balance).await)),
        keys: Keys::open(&dir).unwrap(),
        settings: Settings {
            job_timeout: Duration::from_secs(5),
            price_multiplier: 2,
        },
    };
    Setup {
        app: app(state),
        secret,
        limited,
        dir,
    }
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn assert_error(body: &Value, code: &str) {
    let error = &body["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(error.get(field).is_some(), "no {field} in {body}");
    }
    assert_eq!(error["code"], code, "{body}");
}

#[tokio::test]
async fn auth_errors_and_unknown_routes_have_openai_shape() {
    let s = setup(1_000_000_000).await;
    let (status, body) = call(&s.app, "GET", "/v1/models", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "invalid_api_key");
    let (status, body) = call(&s.app, "GET", "/v1/models", Some("sk-plexus-nope"), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "invalid_api_key");
    let (status, body) = call(&s.app, "GET", "/v2/anything", Some(&s.secret), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_url");
    let (status, body) = call(&s.app, "GET", "/v1/embeddings", Some(&s.secret), "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
    let (status, body) = call(&s.app, "GET", "/v1/receipts/not-a-job", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "receipt_not_found");
}

#[tokio::test]
async fn models_lists_only_models_with_providers() {
    let s = setup(1_000_000_000).await;
    let (status, body) = call(&s.app, "GET", "/v1/models", Some(&s.secret), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["embed-model"]);
    assert_eq!(body["data"][0]["object"], "model");
    let (status, _) = call(&s.app, "GET", "/v1/models/embed-model", Some(&s.secret), "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&s.app, "GET", "/v1/models/chat-model", Some(&s.secret), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "model_not_found");
}

#[tokio::test]
async fn requests_are_refused_before_anything_is_paid() {
    let s = setup(1_000_000_000).await;
    let key = Some(s.secret.as_str());
    let post = |path: &'static str, body: &'static str, key: Option<&str>| {
        let app = s.app.clone();
        let key = key.map(str::to_string);
        async move { call(&app, "POST", path, key.as_deref(), body).await }
    };
    let (status, body) = post("/v1/embeddings", "{not json", key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_json");
    let (status, body) = post("/v1/embeddings", r#"{"model":"nope","input":"x"}"#, key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    let (status, body) = post(
        "/v1/embeddings",
        r#"{"model":"chat-model","input":"x"}"#,
        key,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "model");
    let (status, body) = post(
        "/v1/embeddings",
        r#"{"model":"embed-model","input":"x","encoding_format":"hex"}"#,
        key,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "encoding_format");
    let (status, body) = post(
        "/v1/chat/completions",
        r#"{"model":"chat-model","messages":[{"role":"user","content":"hi"}]}"#,
        key,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error(&body, "no_provider");
    // The limited key may spend 5 base units: less than any job's escrow.
    let (status, body) = post(
        "/v1/embeddings",
        r#"{"model":"embed-model","input":"x"}"#,
        Some(&s.limited),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, "spending_limit_exceeded");
    // Too large a body.
    let big = format!(
        r#"{{"model":"embed-model","input":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    let (status, body) = call(&s.app, "POST", "/v1/embeddings", key, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_error(&body, "invalid_body");
}

#[tokio::test]
async fn an_account_that_cannot_pay_gets_402() {
    let s = setup(5).await;
    let (status, body) = call(
        &s.app,
        "POST",
        "/v1/embeddings",
        Some(&s.secret),
        r#"{"model":"embed-model","input":["a","b"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_error(&body, "insufficient_funds");
    let account = plexus_types::Address::from(&plexus_types::key_from_seed(1).public_key());
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&account.to_string())
    );
}
