//! The provider's HTTP endpoint (the `endpoint` it registers on chain): it serves the outputs
//! it produced, by hash, so a poster can fetch a result even if the node lost it.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | `{"status":"ok","provider":"<address>"}` |
//! | GET | `/blobs/{hash}` | the output bytes with that sha256 (`application/octet-stream`) |
//! | GET | `/jobs/{id}/result` | for the job's owner only: the output as soon as it is committed, before the reveal |
//! | GET | `/jobs/{id}/stream` | for the job's owner only: a chat job's text as the model produces it (NDJSON) |
//!
//! Both job routes need the header [`RESULT_AUTH_HEADER`] (the owner's signature over the
//! job id and a timestamp within [`MAX_REQUEST_SKEW_MS`]), checked by one function against
//! the job's owner on the node. Only the owner: before the reveal, anyone else could copy the
//! result (a verifier, a competing provider).
//!
//! `/jobs/{id}/result` carries the output hash, salt and units in `x-plexus-output-hash`,
//! `x-plexus-salt` and `x-plexus-units`, so the owner can check the bytes against the
//! commitment already on chain.
//!
//! `/jobs/{id}/stream` answers `application/x-ndjson`, chunked, one JSON object per line:
//!
//! - `{"delta":"<text>"}` per piece, from the first (a late reader gets everything so far
//!   replayed, then live pieces); the deltas concatenate to the output's `text`;
//! - then exactly one last line: `{"done":true,"finish_reason":"stop"|"length"}`, or
//!   `{"error":"<message>"}` when the job has no text to give (its output is an error output,
//!   e.g. `"invalid_parameter: ..."` or `"output_too_large: ..."`, possibly after deltas; or it
//!   could not run here and will go to another provider).
//!
//! The stream is not a result: only the committed output counts, and it must extend exactly
//! what was streamed. A job not yet known here is waited for up to [`STREAM_WAIT`] (its owner
//! may ask a moment before this provider sees the assignment), then `unknown_job` (404). A
//! finished stream is kept a while (see `stream`); after that the stored output is sent as
//! one delta and its end. A job whose output is not chat (an embedding) is `not_streamable`
//! (409): fetch it from `/jobs/{id}/result`.
//!
//! Errors are `{"error":{"code","message"}}`, as the node's: `invalid_hash` (400),
//! `invalid_job_id` (400), `unauthorized` (401), `stale_request` (401), `forbidden` (403),
//! `unknown_blob` (404), `unknown_job` (404), `not_found` (404), `not_streamable` (409),
//! `node_unreachable` (502), `internal` (500, details only in the log).

use crate::store::{Outputs, Record, Store};
use crate::stream::{End, Event, Reader, Streams};
use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use plexus_client::ClientError;
use plexus_types::{
    Address, JobId, RESULT_AUTH_HEADER, digest_hex, parse_digest, verify_result_request_auth,
};
use serde_json::json;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How far a result request's timestamp may be from the provider's clock.
pub const MAX_REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;
/// How long `/jobs/{id}/stream` waits for a job this provider does not know yet.
pub const STREAM_WAIT: Duration = Duration::from_secs(30);
/// How often that wait also looks for the job's record in the store.
const STORE_POLL: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub(crate) struct ServeState {
    pub outputs: Outputs,
    pub provider: Address,
    /// The job records (salts), for owners fetching a result before the reveal.
    pub records: Arc<Mutex<Store>>,
    /// The node, to learn a job's owner.
    pub client: plexus_client::Client,
    /// Chat text as it is generated, for owners streaming it.
    pub streams: Streams,
    /// How long a stream request waits for an unknown job: [`STREAM_WAIT`] (shorter in tests).
    pub stream_wait: Duration,
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
        .route("/jobs/{id}/stream", get(stream))
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

/// The job id of a job route, and the check both job routes share: the request is signed
/// by the job's owner (as the node reports it) at a time close to the provider's clock.
async fn authorize(
    state: &ServeState,
    id: &str,
    headers: &HeaderMap,
) -> std::result::Result<JobId, Response> {
    let job: JobId = id
        .parse()
        .map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_job_id", format!("{e}")))?;
    let Some(auth) = headers
        .get(RESULT_AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "sign the request as the job's owner: header {RESULT_AUTH_HEADER}: <unix_ms>.<signature>"
            ),
        ));
    };
    let view = match state.client.job(&job).await {
        Ok(view) => view,
        Err(ClientError::Api { status: 404, .. }) => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "unknown_job",
                format!("the node knows no job {job}"),
            ));
        }
        Err(e) => {
            return Err(error(
                StatusCode::BAD_GATEWAY,
                "node_unreachable",
                format!("cannot look the job up on the node: {e}"),
            ));
        }
    };
    let Some(unix_ms) = verify_result_request_auth(&view.owner, &job, auth) else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the job's owner may fetch its result before the reveal (bad or foreign signature)",
        ));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if unix_ms.abs_diff(now) > MAX_REQUEST_SKEW_MS {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "stale_request",
            "the request's timestamp is too far from the provider's clock; sign a fresh one",
        ));
    }
    Ok(job)
}

fn find_record(state: &ServeState, job: &JobId) -> Option<Record> {
    state
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(job)
        .cloned()
}

/// A job's stored output, or the response that says why there is none.
async fn stored_output(
    state: &ServeState,
    record: &Record,
) -> std::result::Result<Vec<u8>, Response> {
    let outputs = state.outputs.clone();
    let hash = record.output_hash;
    match tokio::task::spawn_blocking(move || outputs.get(&hash)).await {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => Err(error(
            StatusCode::NOT_FOUND,
            "unknown_blob",
            "the job's output is missing from this provider's store",
        )),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading an output");
            Err(internal())
        }
        Err(e) => {
            tracing::error!(error = %e, "reading an output");
            Err(internal())
        }
    }
}

async fn result(
    State(state): State<ServeState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let job = match authorize(&state, &id, &headers).await {
        Ok(job) => job,
        Err(response) => return response,
    };
    let Some(record) = find_record(&state, &job) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_job",
            format!(
                "this provider has no result for job {job} (not assigned here, or not computed yet)"
            ),
        );
    };
    match stored_output(&state, &record).await {
        Ok(bytes) => (
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
        Err(response) => response,
    }
}

async fn stream(
    State(state): State<ServeState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let job = match authorize(&state, &id, &headers).await {
        Ok(job) => job,
        Err(response) => return response,
    };
    let deadline = tokio::time::Instant::now() + state.stream_wait;
    let mut wait = Duration::ZERO;
    loop {
        // The live stream first: it has the pieces as they were produced.
        if let Some(reader) = state.streams.wait(&job, wait).await {
            return ndjson(live_lines(reader));
        }
        // Finished and pruned, or computed before a restart: the stored output.
        if let Some(record) = find_record(&state, &job) {
            let output = match stored_output(&state, &record).await {
                Ok(output) => output,
                Err(response) => return response,
            };
            let Some((text, end)) = End::of_output(&output) else {
                return error(
                    StatusCode::CONFLICT,
                    "not_streamable",
                    format!(
                        "job {job} is not a chat job; fetch its output from /jobs/{job}/result"
                    ),
                );
            };
            let mut lines = Vec::new();
            if !text.is_empty() {
                lines.push(delta_line(&text));
            }
            lines.push(end_line(&end));
            return ndjson(futures::stream::iter(lines));
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_job",
                format!(
                    "job {job} has not reached this provider within {}s (not assigned here, or not yet); try again",
                    state.stream_wait.as_secs()
                ),
            );
        }
        wait = left.min(STORE_POLL);
    }
}

/// Every line of a live stream: its deltas as they come, then its end.
fn live_lines(reader: Reader) -> impl futures::Stream<Item = String> + Send + 'static {
    futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next().await {
            Event::Delta(piece) => Some((delta_line(&piece), Some(reader))),
            Event::End(end) => Some((end_line(&end), None)),
        }
    })
}

fn delta_line(text: &str) -> String {
    format!("{}\n", json!({ "delta": text }))
}

fn end_line(end: &End) -> String {
    let line = match end {
        End::Done { finish_reason } => json!({ "done": true, "finish_reason": finish_reason }),
        End::Error(message) => json!({ "error": message }),
    };
    format!("{line}\n")
}

/// A chunked `application/x-ndjson` response of `lines` (each ending in a newline).
fn ndjson(lines: impl futures::Stream<Item = String> + Send + 'static) -> Response {
    use futures::StreamExt;
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(lines.map(Ok::<_, Infallible>)),
    )
        .into_response()
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
    use crate::payload::{ChatOutput, ChatUsage};
    use crate::store::{Record, Store, tests::TempDir};
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use futures::StreamExt;
    use plexus_client::JobView;
    use plexus_types::{
        Amount, Height, JobId, PrivateKey, Signer, digest_hex, key_from_seed, result_request_auth,
        sha256,
    };
    use serde_json::Value;
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
            streams: Streams::new(),
            stream_wait: STREAM_WAIT,
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

    /// A node that knows jobs `[1; 32]` to `[9; 32]`, all owned by `owner`.
    async fn stand_in_node(owner: Address) -> (String, tokio::task::JoinHandle<()>) {
        async fn job(State(owner): State<Address>, Path(id): Path<String>) -> Response {
            let id: JobId = id.parse().unwrap();
            if id.as_bytes()[0] > 9 {
                let body = json!({ "error": { "code": "unknown_job", "message": "no such job" } });
                return (StatusCode::NOT_FOUND, Json(body)).into_response();
            }
            let zero = Height::new(0);
            Json(JobView {
                id,
                owner,
                model: digest_hex(&sha256(&[b"chat"])),
                input_hash: digest_hex(&sha256(&[b"input"])),
                input_size: 5,
                max_units: 10,
                max_unit_price: Amount::new(10),
                region: String::new(),
                escrow: Amount::new(100),
                posted_at: zero,
                attempts: 1,
                tried: vec![],
                status: "assigned".into(),
                provider: Some(Address::from_bytes([7; 32])),
                unit_price: Amount::new(5),
                assigned_at: zero,
                deadline: Height::new(10),
                commitment: None,
                committed_at: zero,
                output_hash: None,
                output_size: 0,
                salt: None,
                units: 0,
                receipt_signature: None,
                revealed_at: zero,
                settle_at: zero,
                settlement: None,
                refund: None,
                checks: Vec::new(),
                disputed: false,
            })
            .into_response()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/jobs/{id}", axum::routing::get(job))
            .with_state(owner);
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, server)
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    /// `GET path`, signed by `key` for `job` at `unix_ms` (unsigned without a key).
    async fn signed(
        app: &Router,
        path: &str,
        key: Option<&PrivateKey>,
        job: &JobId,
        unix_ms: u64,
    ) -> Response {
        let mut request = Request::get(path);
        if let Some(key) = key {
            request = request.header(RESULT_AUTH_HEADER, result_request_auth(key, job, unix_ms));
        }
        app.clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    /// Reads an NDJSON body line by line, as the chunks arrive.
    struct Lines {
        body: axum::body::BodyDataStream,
        buffer: Vec<u8>,
    }

    impl Lines {
        fn new(response: Response) -> Self {
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/x-ndjson"
            );
            Self {
                body: response.into_body().into_data_stream(),
                buffer: Vec::new(),
            }
        }

        /// The next line, `None` at the end of the body; fails after 5 s.
        async fn next(&mut self) -> Option<Value> {
            tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = self.buffer.drain(..=at).collect();
                        return Some(serde_json::from_slice(&line).unwrap());
                    }
                    match self.body.next().await {
                        Some(chunk) => self.buffer.extend_from_slice(&chunk.unwrap()),
                        None => {
                            assert!(self.buffer.is_empty(), "a line without its newline");
                            return None;
                        }
                    }
                }
            })
            .await
            .expect("a line or the end within 5 s")
        }

        async fn all(mut self) -> Vec<Value> {
            let mut all = Vec::new();
            while let Some(line) = self.next().await {
                all.push(line);
            }
            all
        }
    }

    fn chat_output(text: &str, finish_reason: &str) -> Vec<u8> {
        crate::payload::to_bytes(&ChatOutput {
            model: "chat".into(),
            model_hash: digest_hex(&sha256(&[b"chat"])),
            text: text.into(),
            tokens: vec![1, 2, 3],
            finish_reason: finish_reason.into(),
            usage: ChatUsage {
                prompt_tokens: 4,
                completion_tokens: 3,
            },
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_chat_text_to_the_owner_only() {
        let owner = key_from_seed(1);
        let stranger = key_from_seed(2);
        let (node, server) = stand_in_node(Address::from(&owner.public_key())).await;
        let dir = TempDir::new("serve-stream");
        let mut store = Store::open(&dir.0).unwrap();
        let record = |n: u8, output: &[u8]| {
            (
                Record {
                    job: JobId::from_bytes([n; 32]),
                    output_hash: sha256(&[output]),
                    salt: sha256(&[b"salt"]),
                    output_size: output.len() as u32,
                    units: 1,
                    model: sha256(&[b"chat"]),
                },
                output.to_vec(),
            )
        };
        let embedding = br#"{"model":"m","model_hash":"h","embeddings":[[0.5]]}"#;
        let error_output =
            crate::payload::to_bytes(&crate::payload::ErrorOutput::new("invalid_input", "bad"));
        store
            .insert(&[
                record(3, embedding),
                record(4, &chat_output("Stored\nanswer", "length")),
                record(5, &error_output),
            ])
            .unwrap();
        let streams = Streams::new();
        let app = app(ServeState {
            outputs: store.outputs(),
            provider: Address::from_bytes([7; 32]),
            records: Arc::new(Mutex::new(store)),
            client: plexus_client::Client::new(&node),
            streams: streams.clone(),
            stream_wait: Duration::from_millis(300),
        });
        let job = |n: u8| JobId::from_bytes([n; 32]);
        let path = |n: u8| format!("/jobs/{}/stream", job(n));

        // A late reader gets the pieces so far, then live ones, then the end.
        let writer = streams.open(job(1));
        writer.push("Hel");
        writer.push("lo");
        let response = signed(&app, &path(1), Some(&owner), &job(1), now_ms()).await;
        let mut lines = Lines::new(response);
        assert_eq!(lines.next().await, Some(json!({"delta": "Hel"})));
        assert_eq!(lines.next().await, Some(json!({"delta": "lo"})));
        writer.push(" \"wo\nrld\"");
        assert_eq!(lines.next().await, Some(json!({"delta": " \"wo\nrld\""})));
        writer.finish(End::Done {
            finish_reason: "stop".into(),
        });
        assert_eq!(
            lines.next().await,
            Some(json!({"done": true, "finish_reason": "stop"}))
        );
        assert_eq!(lines.next().await, None);
        // And a reader after the end gets it all again.
        let response = signed(&app, &path(1), Some(&owner), &job(1), now_ms()).await;
        assert_eq!(
            Lines::new(response).all().await,
            vec![
                json!({"delta": "Hel"}),
                json!({"delta": "lo"}),
                json!({"delta": " \"wo\nrld\""}),
                json!({"done": true, "finish_reason": "stop"}),
            ]
        );

        // A reader who asks before the job reaches this provider waits for it.
        let early = tokio::spawn({
            let app = app.clone();
            let (owner, path) = (owner.clone(), path(2));
            async move { signed(&app, &path, Some(&owner), &job(2), now_ms()).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let writer = streams.open(job(2));
        writer.push("x");
        writer.finish(End::Error("generation failed: boom".into()));
        assert_eq!(
            Lines::new(early.await.unwrap()).all().await,
            vec![
                json!({"delta": "x"}),
                json!({"error": "generation failed: boom"})
            ]
        );

        // No stream here, but a stored output: chat is sent whole, an error output as its
        // error, anything else is refused.
        let response = signed(&app, &path(4), Some(&owner), &job(4), now_ms()).await;
        assert_eq!(
            Lines::new(response).all().await,
            vec![
                json!({"delta": "Stored\nanswer"}),
                json!({"done": true, "finish_reason": "length"}),
            ]
        );
        let response = signed(&app, &path(5), Some(&owner), &job(5), now_ms()).await;
        assert_eq!(
            Lines::new(response).all().await,
            vec![json!({"error": "invalid_input: bad"})]
        );
        let refused = |response: Response| async move {
            let status = response.status();
            let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, error_code(&body))
        };
        let response = signed(&app, &path(3), Some(&owner), &job(3), now_ms()).await;
        assert_eq!(
            refused(response).await,
            (StatusCode::CONFLICT, "not_streamable".into())
        );

        // Nothing appears within the wait.
        let response = signed(&app, &path(6), Some(&owner), &job(6), now_ms()).await;
        assert_eq!(
            refused(response).await,
            (StatusCode::NOT_FOUND, "unknown_job".into())
        );
        // Unknown to the node.
        let response = signed(&app, &path(10), Some(&owner), &job(10), now_ms()).await;
        assert_eq!(
            refused(response).await,
            (StatusCode::NOT_FOUND, "unknown_job".into())
        );

        // Only the owner, signing now, on both job routes.
        for route in ["stream", "result"] {
            let path = format!("/jobs/{}/{route}", job(1));
            let response = signed(&app, &path, None, &job(1), now_ms()).await;
            assert_eq!(
                refused(response).await,
                (StatusCode::UNAUTHORIZED, "unauthorized".into())
            );
            let response = signed(&app, &path, Some(&stranger), &job(1), now_ms()).await;
            assert_eq!(
                refused(response).await,
                (StatusCode::FORBIDDEN, "forbidden".into())
            );
            // Signed for another job.
            let response = signed(&app, &path, Some(&owner), &job(2), now_ms()).await;
            assert_eq!(
                refused(response).await,
                (StatusCode::FORBIDDEN, "forbidden".into())
            );
            let stale = now_ms() - MAX_REQUEST_SKEW_MS - 1_000;
            let response = signed(&app, &path, Some(&owner), &job(1), stale).await;
            assert_eq!(
                refused(response).await,
                (StatusCode::UNAUTHORIZED, "stale_request".into())
            );
        }
        // The owner gets the stored result.
        let response = signed(
            &app,
            &format!("/jobs/{}/result", job(4)),
            Some(&owner),
            &job(4),
            now_ms(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(&body[..], &chat_output("Stored\nanswer", "length")[..]);
        server.abort();
    }
}
