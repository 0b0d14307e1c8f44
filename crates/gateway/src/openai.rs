//! The OpenAI-compatible routes. Requests are read field by field from JSON, so every bad
//! field gets an error naming it; what the network cannot honour (several choices, tools,
//! penalties, log-probabilities) is refused rather than silently ignored.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::keys::{Caller, Reservation};
use crate::network::{ChainModel, JobResult, JobSpec, Posted};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use plexus_client::StreamEvent;
use plexus_inference::chat::{CONTEXT_TOKENS, DEFAULT_MAX_TOKENS, MAX_PROMPT_BYTES};
use plexus_provider::payload::{
    self, ChatInput, ChatOutput, EmbedInput, EmbedOutput, ErrorOutput, Message, codes,
};
use plexus_types::{Amount, JobId, digest_hex};
use serde_json::{Map, Value, json};
use std::time::Instant;

/// The header listing a response's receipt ids (job ids), comma-separated.
pub const RECEIPT_HEADER: &str = "x-plexus-receipt";
/// Texts per embedding job: a request with more is split into several jobs, which the chain
/// may give to different providers.
pub const EMBED_TEXTS_PER_JOB: usize = 64;
/// Most texts in one embeddings request (OpenAI's limit).
pub const MAX_EMBED_INPUTS: usize = 2048;
/// Most stop sequences (OpenAI's limit).
pub const MAX_STOP: usize = 4;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The body as a JSON object, or 400/413 saying what is wrong with it.
fn json_object(body: Result<Bytes, BytesRejection>) -> ApiResult<Map<String, Value>> {
    let body = body.map_err(|e| ApiError {
        status: e.status(),
        ..ApiError::bad_request(
            "invalid_body",
            None,
            format!("Could not read the request body: {}.", e.body_text()),
        )
    })?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "invalid_json",
            None,
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            None,
            format!("The request body is not valid JSON: {e}."),
        )),
    }
}

fn is_set(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn string_field<'a>(req: &'a Map<String, Value>, name: &str) -> ApiResult<&'a str> {
    match is_set(req.get(name)) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::invalid(
            name,
            format!("`{name}` must be a string."),
        )),
        None => Err(ApiError::invalid(name, format!("`{name}` is required."))),
    }
}

fn number_field(req: &Map<String, Value>, name: &str, lo: f64, hi: f64) -> ApiResult<Option<f64>> {
    match is_set(req.get(name)) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                name,
                format!("`{name}` must be a number from {lo} to {hi}."),
            )),
        },
    }
}

fn integer_field(req: &Map<String, Value>, name: &str, lo: u64, hi: u64) -> ApiResult<Option<u64>> {
    match is_set(req.get(name)) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                name,
                format!("`{name}` must be an integer from {lo} to {hi}."),
            )),
        },
    }
}

/// Refuse a field the network cannot honour unless it has its neutral value.
fn unsupported(req: &Map<String, Value>, name: &str, neutral: &[Value]) -> ApiResult<()> {
    match is_set(req.get(name)) {
        Some(v) if !neutral.contains(v) => Err(ApiError::invalid(
            name,
            format!("`{name}` is not supported by this network."),
        )),
        _ => Ok(()),
    }
}

/// The API key of `Authorization: Bearer KEY`, authenticated.
fn authenticate(app: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "You didn't provide an API key. Send it as `Authorization: Bearer KEY`.",
            )
        })?;
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("The Authorization header must be `Bearer KEY`."))?;
    app.keys.authenticate(secret)
}

/// Check the account can pay `cost` and reserve it against the key's limit.
async fn reserve(app: &AppState, caller: &Caller, cost: Amount) -> ApiResult<Reservation> {
    let balance = app.network.balance(&caller.account).await?;
    if balance < cost {
        return Err(ApiError::insufficient_funds(format!(
            "This request may cost up to {cost} (escrow and fees) and account {} holds {balance}. Fund the account or lower the request.",
            caller.account
        )));
    }
    app.keys.reserve(&caller.key_id, cost)
}

/// The most a set of jobs can cost: their escrow plus one transaction fee each.
async fn max_cost(app: &AppState, jobs: &[JobSpec]) -> ApiResult<Amount> {
    let fee = app.network.info().await?.min_fee;
    let overflow = || ApiError::invalid("input", "The request's cost overflows.");
    jobs.iter().try_fold(Amount::ZERO, |sum, job| {
        job.max_unit_price
            .checked_mul(u128::from(job.max_units))
            .and_then(|e| e.checked_add(fee))
            .and_then(|c| sum.checked_add(c))
            .ok_or_else(overflow)
    })
}

/// What a finished job cost: units times unit price, plus its transaction fee.
fn job_cost(result: &JobResult, fee: Amount) -> Amount {
    result
        .job
        .unit_price
        .checked_mul(u128::from(result.result.units))
        .and_then(|p| p.checked_add(fee))
        .unwrap_or(Amount::MAX)
}

/// The price offered per unit: the base price times the configured multiplier.
fn offer(app: &AppState, model: &ChainModel) -> ApiResult<Amount> {
    model
        .base_price
        .checked_mul(u128::from(app.settings.price_multiplier))
        .ok_or_else(|| ApiError::upstream("The model's price overflows."))
}

fn receipt_header(posted: &[Posted]) -> (header::HeaderName, HeaderValue) {
    let ids: Vec<String> = posted.iter().map(|p| p.id.to_string()).collect();
    (
        header::HeaderName::from_static(RECEIPT_HEADER),
        HeaderValue::from_str(&ids.join(",")).expect("hex ids are valid header text"),
    )
}

/// An [`ErrorOutput`] a provider answered an input with, as the API error it means.
fn output_error(error: &ErrorOutput, param: &str) -> ApiError {
    let message = format!("The provider rejected the input: {}", error.error.message);
    match error.error.code.as_str() {
        codes::INPUT_TOO_LONG => {
            ApiError::bad_request("context_length_exceeded", Some(param), message)
        }
        codes::TOO_MANY_UNITS => {
            ApiError::bad_request("context_length_exceeded", Some(param), message)
        }
        codes::OUTPUT_TOO_LARGE => ApiError::bad_request("output_too_large", None, message),
        codes::INPUT_UNAVAILABLE => ApiError::no_provider(message),
        codes::INVALID_PARAMETER => ApiError::invalid(param, message),
        _ => ApiError::bad_request("invalid_input", Some(param), message),
    }
}

// ---- models ----

fn model_json(m: &ChainModel) -> Value {
    json!({
        "id": m.name,
        "object": "model",
        "created": 0,
        "owned_by": "plexus",
        "plexus": {
            "hash": digest_hex(&m.hash),
            "kind": m.kind,
            "unit": m.unit,
            "base_price": m.base_price,
            "providers": m.providers,
            "capacity": m.capacity,
        },
    })
}

/// `GET /v1/models`: the models that can be served now (registered, with a live provider).
pub async fn list_models(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authenticate(&app, &headers)?;
    let data: Vec<Value> = app
        .network
        .models()
        .await?
        .iter()
        .filter(|m| m.providers > 0 && m.capacity > 0)
        .map(model_json)
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/models/{id}`.
pub async fn get_model(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    authenticate(&app, &headers)?;
    let hash = plexus_types::parse_digest(&id).ok();
    app.network
        .models()
        .await?
        .iter()
        .find(|m| (m.name == id || Some(m.hash) == hash) && m.providers > 0 && m.capacity > 0)
        .map(|m| Json(model_json(m)))
        .ok_or_else(|| ApiError::unknown_model(&id))
}

// ---- embeddings ----

/// The texts of an embeddings `input`: a string or an array of strings.
fn embedding_texts(input: Option<&Value>) -> ApiResult<Vec<String>> {
    let bad = || {
        ApiError::invalid(
            "input",
            "`input` must be a non-empty string or an array of non-empty strings (token arrays are not supported).",
        )
    };
    let texts: Vec<String> = match is_set(input) {
        None => return Err(ApiError::invalid("input", "`input` is required.")),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(bad()),
    };
    if texts.is_empty() || texts.iter().any(|t| t.trim().is_empty()) {
        return Err(bad());
    }
    if texts.len() > MAX_EMBED_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!(
                "`input` has {} texts; at most {MAX_EMBED_INPUTS} per request.",
                texts.len()
            ),
        ));
    }
    Ok(texts)
}

/// `POST /v1/embeddings`: one job per [`EMBED_TEXTS_PER_JOB`] texts, posted together.
pub async fn embeddings(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let caller = authenticate(&app, &headers)?;
    let req = json_object(body)?;
    let model_name = string_field(&req, "model")?;
    let texts = embedding_texts(req.get("input"))?;
    let base64 = match is_set(req.get("encoding_format")).map(|v| v.as_str()) {
        None | Some(Some("float")) => false,
        Some(Some("base64")) => true,
        _ => {
            return Err(ApiError::invalid(
                "encoding_format",
                "`encoding_format` must be \"float\" or \"base64\".",
            ));
        }
    };
    unsupported(&req, "dimensions", &[])?;
    let model = app
        .network
        .resolve(model_name, "embedding", "/v1/embeddings")
        .await?;
    let price = offer(&app, &model)?;
    let max_payload = app.network.info().await?.max_payload_size;
    let jobs: Vec<JobSpec> = texts
        .chunks(EMBED_TEXTS_PER_JOB)
        .map(|chunk| {
            let input = payload::to_bytes(&EmbedInput {
                texts: chunk.to_vec(),
            });
            if input.len() as u64 > max_payload {
                return Err(ApiError::bad_request(
                    "input_too_large",
                    Some("input"),
                    format!(
                        "{} texts make {} bytes, more than the network's payload limit of {max_payload}; send shorter texts.",
                        chunk.len(),
                        input.len()
                    ),
                ));
            }
            Ok(JobSpec {
                model: model.hash,
                max_units: payload::embed_max_units(chunk),
                input,
                max_unit_price: price,
            })
        })
        .collect::<ApiResult<_>>()?;
    let mut reservation = reserve(&app, &caller, max_cost(&app, &jobs).await?).await?;
    let posted = app
        .network
        .post(&caller.signer, jobs, &mut reservation)
        .await?;
    let deadline = Instant::now() + app.settings.job_timeout;
    let results = futures::future::join_all(
        posted
            .iter()
            .map(|p| app.network.result(&caller.signer, p, deadline)),
    )
    .await;
    let fee = app.network.info().await?.min_fee;
    let mut spent = Amount::ZERO;
    let mut vectors = Vec::with_capacity(texts.len());
    let mut units = 0u64;
    let mut failure = None;
    for result in results {
        match result {
            Ok(r) => {
                spent = spent.checked_add(job_cost(&r, fee)).unwrap_or(Amount::MAX);
                units += u64::from(r.result.units);
                match serde_json::from_slice::<EmbedOutput>(&r.result.output) {
                    Ok(out) => vectors.extend(out.embeddings),
                    Err(_) => {
                        failure.get_or_insert(
                            match serde_json::from_slice::<ErrorOutput>(&r.result.output) {
                                Ok(e) => output_error(&e, "input"),
                                Err(_) => ApiError::upstream(
                                    "The provider returned an output that is not an embedding.",
                                ),
                            },
                        );
                    }
                }
            }
            Err(e) => {
                // Unknown cost: count the job's whole escrow.
                spent = Amount::MAX;
                failure.get_or_insert(e);
            }
        }
    }
    reservation.finish(spent);
    if let Some(e) = failure {
        return Err(e);
    }
    if vectors.len() != texts.len() {
        return Err(ApiError::upstream(
            "The providers returned a different number of embeddings than texts.",
        ));
    }
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": { "prompt_tokens": units, "total_tokens": units },
    });
    Ok(([receipt_header(&posted)], Json(body)).into_response())
}

// ---- chat ----

/// The text of a message's `content`: a string, or an array of `{"type": "text"}` parts.
fn message_content(content: Option<&Value>, index: usize) -> ApiResult<String> {
    let param = format!("messages[{index}].content");
    match is_set(content) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(text)) => Ok(text),
                _ => Err(ApiError::invalid(
                    &param,
                    "Only text content parts ({\"type\": \"text\", \"text\": ...}) are supported.",
                )),
            })
            .collect::<ApiResult<Vec<_>>>()
            .map(|texts| texts.concat()),
        _ => Err(ApiError::invalid(
            &param,
            "`content` must be a string or an array of text parts.",
        )),
    }
}

/// A chat request, checked and turned into the job's input.
#[derive(Debug)]
struct ChatRequest {
    model: String,
    input: ChatInput,
    stream: bool,
    include_usage: bool,
}

fn parse_chat(req: &Map<String, Value>) -> ApiResult<ChatRequest> {
    let model = string_field(req, "model")?.to_string();
    let Some(Value::Array(raw)) = is_set(req.get("messages")) else {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must be a non-empty array of {\"role\", \"content\"} objects.",
        ));
    };
    if raw.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty.",
        ));
    }
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let role = match m["role"].as_str() {
            Some(r @ ("system" | "user" | "assistant")) => r,
            Some("developer") => "system",
            _ => {
                return Err(ApiError::invalid(
                    &format!("messages[{i}].role"),
                    "`role` must be \"system\", \"developer\", \"user\" or \"assistant\" (tools are not supported).",
                ));
            }
        };
        messages.push(Message {
            role: role.to_string(),
            content: message_content(m.get("content"), i)?,
        });
    }
    let prompt_bytes: usize = messages.iter().map(|m| m.content.len()).sum();
    if prompt_bytes > MAX_PROMPT_BYTES {
        return Err(ApiError::bad_request(
            "context_length_exceeded",
            Some("messages"),
            format!(
                "The messages are {prompt_bytes} bytes; at most {MAX_PROMPT_BYTES} fit the model's context of {CONTEXT_TOKENS} tokens."
            ),
        ));
    }
    let limit = CONTEXT_TOKENS as u64;
    let max_tokens = match integer_field(req, "max_completion_tokens", 1, limit)? {
        Some(n) => n,
        None => integer_field(req, "max_tokens", 1, limit)?.unwrap_or(DEFAULT_MAX_TOKENS as u64),
    };
    let temperature = number_field(req, "temperature", 0.0, 2.0)?;
    let top_p = number_field(req, "top_p", f64::MIN_POSITIVE, 1.0)?;
    let seed =
        match is_set(req.get("seed")) {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                ApiError::invalid("seed", "`seed` must be a non-negative integer.")
            })?),
        };
    let stop = match is_set(req.get("stop")) {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid("stop", "`stop` must be a string or an array of strings.")
            })?,
        Some(_) => {
            return Err(ApiError::invalid(
                "stop",
                "`stop` must be a string or an array of strings.",
            ));
        }
    };
    if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            format!("`stop` takes at most {MAX_STOP} non-empty strings."),
        ));
    }
    integer_field(req, "n", 1, 1).map_err(|_| {
        ApiError::invalid(
            "n",
            "Only `n` = 1 is supported: send separate requests for several answers.",
        )
    })?;
    let stream = match is_set(req.get("stream")) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("stream", "`stream` must be a boolean.")),
    };
    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (name, neutral) in [
        ("frequency_penalty", vec![json!(0), json!(0.0)]),
        ("presence_penalty", vec![json!(0), json!(0.0)]),
        ("logprobs", vec![json!(false)]),
        ("top_logprobs", vec![json!(0)]),
        ("tools", vec![json!([])]),
        ("tool_choice", vec![json!("none")]),
        ("functions", vec![json!([])]),
        ("logit_bias", vec![json!({})]),
    ] {
        unsupported(req, name, &neutral)?;
    }
    if let Some(format) = is_set(req.get("response_format"))
        && format["type"] != "text"
    {
        return Err(ApiError::invalid(
            "response_format",
            "Only `response_format` {\"type\": \"text\"} is supported.",
        ));
    }
    Ok(ChatRequest {
        model,
        input: ChatInput {
            messages,
            max_tokens: max_tokens as u32,
            temperature,
            top_p,
            seed,
            stop,
        },
        stream,
        include_usage,
    })
}

fn completion_id(job: &JobId) -> String {
    format!("chatcmpl-{job}")
}

fn chat_output(result: &JobResult) -> ApiResult<ChatOutput> {
    serde_json::from_slice::<ChatOutput>(&result.result.output).map_err(|_| {
        match serde_json::from_slice::<ErrorOutput>(&result.result.output) {
            Ok(e) => output_error(&e, "messages"),
            Err(_) => {
                ApiError::upstream("The provider returned an output that is not a chat completion.")
            }
        }
    })
}

fn usage_json(out: &ChatOutput) -> Value {
    let (p, c) = (out.usage.prompt_tokens, out.usage.completion_tokens);
    json!({ "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c })
}

/// `POST /v1/chat/completions`: one chat job; with `stream`, tokens are relayed from the
/// provider as it generates them, and the stream ends once the result is committed on chain
/// and matches what was streamed.
pub async fn chat_completions(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let caller = authenticate(&app, &headers)?;
    let req = parse_chat(&json_object(body)?)?;
    let model = app
        .network
        .resolve(&req.model, "chat", "/v1/chat/completions")
        .await?;
    let input = payload::to_bytes(&req.input);
    let job = JobSpec {
        model: model.hash,
        max_units: req.input.max_tokens,
        input,
        max_unit_price: offer(&app, &model)?,
    };
    let fee = app.network.info().await?.min_fee;
    let mut reservation = reserve(
        &app,
        &caller,
        max_cost(&app, std::slice::from_ref(&job)).await?,
    )
    .await?;
    let posted = app
        .network
        .post(&caller.signer, vec![job], &mut reservation)
        .await?;
    let posted = posted[0];
    let deadline = Instant::now() + app.settings.job_timeout;
    let created = now_secs();
    if req.stream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Event>(256);
        tokio::spawn(stream_chat(
            app.clone(),
            caller,
            posted,
            model.name.clone(),
            created,
            req.include_usage,
            deadline,
            reservation,
            tx,
        ));
        let events = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
        });
        let sse = Sse::new(events).keep_alive(KeepAlive::default());
        return Ok(([receipt_header(&[posted])], sse).into_response());
    }
    let result = app.network.result(&caller.signer, &posted, deadline).await;
    let spent = result.as_ref().map_or(Amount::MAX, |r| job_cost(r, fee));
    reservation.finish(spent);
    let result = result?;
    let out = chat_output(&result)?;
    let body = json!({
        "id": completion_id(&posted.id),
        "object": "chat.completion",
        "created": created,
        "model": model.name,
        "system_fingerprint": format!("plexus-{}", &out.model_hash[..16.min(out.model_hash.len())]),
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": out.text },
            "logprobs": null,
            "finish_reason": out.finish_reason,
        }],
        "usage": usage_json(&out),
    });
    Ok(([receipt_header(&[posted])], Json(body)).into_response())
}

fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Event {
    Event::default().data(
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
        .to_string(),
    )
}

/// Relay a streaming chat job: deltas from the provider as they come, then the verified end.
#[allow(clippy::too_many_arguments)]
async fn stream_chat(
    app: AppState,
    caller: Caller,
    posted: Posted,
    model: String,
    created: u64,
    include_usage: bool,
    deadline: Instant,
    reservation: Reservation,
    events: tokio::sync::mpsc::Sender<Event>,
) {
    let id = completion_id(&posted.id);
    // A send fails only when the client went away; the job is followed to the end anyway,
    // so the key's spending is recorded exactly.
    let send = |e: Event| {
        let events = events.clone();
        async move {
            let _ = events.send(e).await;
        }
    };
    send(chunk(
        &id,
        created,
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    ))
    .await;

    let (delta_tx, mut deltas) = tokio::sync::mpsc::channel::<String>(1024);
    let relay = {
        let app = app.clone();
        let signer = caller.signer.clone();
        tokio::spawn(async move {
            let job = app
                .network
                .wait_job(&posted, deadline, |j| j.provider.is_some())
                .await?;
            let provider = app
                .network
                .provider(&job.provider.ok_or_else(ApiError::internal)?)
                .await?;
            let mut stream = provider
                .stream_result(&signer, &posted.id)
                .await
                .map_err(|e| ApiError::upstream(format!("streaming from the provider: {e}")))?;
            while let Some(event) = stream
                .next()
                .await
                .map_err(|e| ApiError::upstream(format!("streaming from the provider: {e}")))?
            {
                match event {
                    StreamEvent::Delta(text) => {
                        if delta_tx.send(text).await.is_err() {
                            break;
                        }
                    }
                    StreamEvent::Done { .. } | StreamEvent::Error(_) => break,
                }
            }
            Ok::<(), ApiError>(())
        })
    };

    let result = app.network.result(&caller.signer, &posted, deadline);
    tokio::pin!(result);
    let mut streamed = String::new();
    let mut open = true;
    let result = loop {
        tokio::select! {
            delta = deltas.recv(), if open => match delta {
                Some(text) => {
                    streamed.push_str(&text);
                    send(chunk(&id, created, &model, json!({ "content": text }), None)).await;
                }
                None => open = false,
            },
            result = &mut result => break result,
        }
    };
    relay.abort();
    let fee = app.network.info().await.map_or(Amount::ZERO, |i| i.min_fee);
    reservation.finish(result.as_ref().map_or(Amount::MAX, |r| job_cost(r, fee)));
    let out = match result.and_then(|r| chat_output(&r)) {
        Ok(out) => out,
        Err(e) => {
            send(Event::default().data(e.body().to_string())).await;
            return;
        }
    };
    // The committed text must extend what was streamed; send what the stream did not carry.
    let Some(rest) = out.text.strip_prefix(streamed.as_str()) else {
        tracing::warn!(job = %posted.id, "a provider streamed text that differs from its commitment");
        let e = ApiError::upstream(
            "The provider streamed text that differs from the result it committed on chain; discard this answer.",
        );
        send(Event::default().data(e.body().to_string())).await;
        return;
    };
    if !rest.is_empty() {
        send(chunk(
            &id,
            created,
            &model,
            json!({ "content": rest }),
            None,
        ))
        .await;
    }
    send(chunk(
        &id,
        created,
        &model,
        json!({}),
        Some(&out.finish_reason),
    ))
    .await;
    if include_usage {
        send(
            Event::default().data(
                json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage_json(&out),
                })
                .to_string(),
            ),
        )
        .await;
    }
    send(Event::default().data("[DONE]")).await;
}

// ---- receipts ----

/// `GET /v1/receipts/{id}`: the job's signed receipt, checked against the chain by the
/// gateway's node. Anyone can repeat the check against any node with `plexus receipt verify`.
pub async fn receipt(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let job: JobId = id.parse().map_err(|_| {
        ApiError::not_found(
            "receipt_not_found",
            format!("`{id}` is not a receipt id (a job id: 64 hex digits)."),
        )
    })?;
    match plexus_client::check_receipt(app.network.node(), &job, true).await {
        Ok(report) => Ok(Json(
            serde_json::to_value(report).map_err(|_| ApiError::internal())?,
        )),
        Err(plexus_client::ClientError::Api { status: 404, .. }) => Err(ApiError::not_found(
            "receipt_not_found",
            format!("No job {job} is known to the network."),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "checking a receipt");
            Err(ApiError::upstream("The network node could not be read."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn chat_requests_are_checked_field_by_field() {
        let ok = parse_chat(&obj(json!({
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]},
            ],
            "max_tokens": 5,
            "max_completion_tokens": 7,
            "temperature": 0.5,
            "top_p": 0.9,
            "seed": 3,
            "stop": "\n",
            "n": 1,
            "stream": true,
            "stream_options": {"include_usage": true},
            "frequency_penalty": 0,
            "user": "someone",
        })))
        .unwrap();
        assert_eq!(ok.input.messages[0].role, "system");
        assert_eq!(ok.input.messages[1].content, "Hi!");
        assert_eq!(ok.input.max_tokens, 7, "max_completion_tokens wins");
        assert_eq!(ok.input.temperature, Some(0.5));
        assert_eq!(ok.input.seed, Some(3));
        assert_eq!(ok.input.stop, vec!["\n".to_string()]);
        assert!(ok.stream && ok.include_usage);

        let minimal = parse_chat(&obj(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        ))
        .unwrap();
        assert_eq!(minimal.input.max_tokens as usize, DEFAULT_MAX_TOKENS);
        assert_eq!(minimal.input.temperature, None, "unset means greedy");
        assert!(!minimal.stream);

        let param_of = |v: Value| parse_chat(&obj(v)).unwrap_err().param.unwrap_or_default();
        let user = json!([{"role": "user", "content": "x"}]);
        assert_eq!(param_of(json!({"messages": user})), "model");
        assert_eq!(param_of(json!({"model": "m"})), "messages");
        assert_eq!(param_of(json!({"model": "m", "messages": []})), "messages");
        assert_eq!(
            param_of(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]})),
            "messages[0].role"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": [{"role": "user", "content": 5}]})),
            "messages[0].content"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "max_tokens": 0})),
            "max_tokens"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "max_tokens": 100000})),
            "max_tokens"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "temperature": 3})),
            "temperature"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "top_p": 0})),
            "top_p"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "seed": -1})),
            "seed"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "n": 2})),
            "n"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "stop": ["a","b","c","d","e"]})),
            "stop"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "stream": "yes"})),
            "stream"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "tools": [{"type": "function"}]})),
            "tools"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": user, "logprobs": true})),
            "logprobs"
        );
        assert_eq!(
            param_of(
                json!({"model": "m", "messages": user, "response_format": {"type": "json_object"}})
            ),
            "response_format"
        );
        let long = "x".repeat(MAX_PROMPT_BYTES + 1);
        let e = parse_chat(&obj(
            json!({"model": "m", "messages": [{"role": "user", "content": long}]}),
        ))
        .unwrap_err();
        assert_eq!(e.code, "context_length_exceeded");
    }

    #[test]
    fn embedding_inputs() {
        assert_eq!(embedding_texts(Some(&json!("a"))).unwrap(), vec!["a"]);
        assert_eq!(
            embedding_texts(Some(&json!(["a", "b"]))).unwrap(),
            vec!["a", "b"]
        );
        for bad in [
            json!([]),
            json!([""]),
            json!(["a", " "]),
            json!([1, 2]),
            json!(5),
            Value::Null,
        ] {
            let e = embedding_texts(Some(&bad)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("input"), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_EMBED_INPUTS).map(|i| i.to_string()).collect();
        assert!(embedding_texts(Some(&json!(many))).is_err());
    }

    #[test]
    fn provider_errors_map_to_client_errors() {
        let e = output_error(
            &ErrorOutput::new(codes::INPUT_TOO_LONG, "too long"),
            "messages",
        );
        assert_eq!(
            (e.status.as_u16(), e.code),
            (400, "context_length_exceeded")
        );
        let e = output_error(&ErrorOutput::new(codes::INPUT_UNAVAILABLE, "gone"), "input");
        assert_eq!(e.status.as_u16(), 503);
        let e = output_error(&ErrorOutput::new(codes::EMPTY_INPUT, "empty"), "input");
        assert_eq!(
            (e.status.as_u16(), e.param.as_deref()),
            (400, Some("input"))
        );
    }
}
