//! The agent against a mock node: a few hundred lines of in-memory chain that serves the RPC
//! routes the agent uses, makes a block every [`BLOCK`], and checks commits and reveals the
//! way the ledger does (assignment, phase, `committed_at < height`, commitment, units,
//! receipt signature, `awaiting_verifier`; a verifier's check commitment and verdict rule).
//! Models are the fakes of [`crate::runner::fakes`]; checks are put on jobs by the tests.

use super::{Provider, ProviderConfig};
use crate::payload::{self, EmbedOutput};
use crate::runner::fakes;
use crate::store::tests::TempDir;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use plexus_client::{CheckView, JobView};
use plexus_types::{
    Action, Address, Amount, Height, JobId, PrivateKey, Receipt, SignedTransaction, Signer,
    check_commitment, commitment, digest_hex, key_from_seed, parse_digest, sha256,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BLOCK: Duration = Duration::from_millis(20);
const COMMIT_TIMEOUT: u64 = 10;
const MIN_STAKE: u128 = 1_000;

#[derive(Default)]
struct Chain {
    height: u64,
    /// address -> (nonce, balance, stake)
    accounts: BTreeMap<Address, (u64, u128, u128)>,
    mempool: Vec<SignedTransaction>,
    statuses: BTreeMap<String, Value>,
    providers: BTreeMap<Address, Value>,
    jobs: BTreeMap<JobId, JobView>,
    finished: BTreeMap<JobId, JobView>,
    blobs: BTreeMap<String, Vec<u8>>,
    /// Refuse to admit this kind of action ("commit_result", "reveal_result").
    refuse: Option<&'static str>,
    /// Draw a spot check by this verifier on every commit, as the ledger may.
    spot_check: Option<Address>,
    /// Every transaction applied, as `kind job`.
    applied: Vec<String>,
    /// Finalized heights, for `GET /events/blocks`.
    events: Option<tokio::sync::broadcast::Sender<u64>>,
}

type Mock = Arc<Mutex<Chain>>;

fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into() } });
    (status, Json(body)).into_response()
}

impl Chain {
    fn account(&self, a: &Address) -> (u64, u128, u128) {
        self.accounts.get(a).copied().unwrap_or((0, 0, 0))
    }

    fn queued(&self, a: &Address) -> u64 {
        self.mempool.iter().filter(|t| t.tx.signer == *a).count() as u64
    }

    /// Execute the mempool as the next block.
    fn block(&mut self) {
        self.height += 1;
        let h = self.height;
        for stx in std::mem::take(&mut self.mempool) {
            let hash = digest_hex(&stx.hash());
            let result = self.apply(&stx, h);
            let status = match result {
                Ok(()) => {
                    self.accounts.get_mut(&stx.tx.signer).unwrap().0 += 1;
                    json!({"status": "finalized", "height": h, "success": true})
                }
                Err(e) => json!({"status": "finalized", "height": h, "success": false, "error": e}),
            };
            self.statuses.insert(hash, status);
        }
        if let Some(events) = &self.events {
            let _ = events.send(h);
        }
        // Missed commit deadlines (the agent under test should never miss one).
        for job in self.jobs.values_mut() {
            if job.status == "assigned" && job.deadline.get() <= h {
                job.status = "missed".into();
            }
        }
    }

    fn apply(&mut self, stx: &SignedTransaction, h: u64) -> Result<(), String> {
        let signer = stx.tx.signer;
        let (nonce, balance, stake) = self.account(&signer);
        if stx.tx.nonce.get() != nonce {
            return Err("nonce".into());
        }
        self.accounts.entry(signer).or_insert((0, balance, stake));
        match &stx.tx.action {
            Action::Bond { amount } => {
                let a = self.accounts.get_mut(&signer).unwrap();
                a.1 = a.1.checked_sub(amount.get()).ok_or("insufficient funds")?;
                a.2 += amount.get();
            }
            Action::RegisterProvider {
                models,
                capacity,
                region,
                price_floor,
                endpoint,
            } => {
                if stake < MIN_STAKE {
                    return Err("stake too low".into());
                }
                self.providers.insert(
                    signer,
                    json!({
                        "address": signer,
                        "models": models.iter().map(digest_hex).collect::<Vec<_>>(),
                        "capacity": capacity,
                        "region": region,
                        "price_floor": price_floor,
                        "endpoint": endpoint,
                        "paused": false,
                    }),
                );
            }
            Action::CommitResult { job, commitment } => {
                let j = self.jobs.get_mut(job).ok_or("unknown job")?;
                if j.provider != Some(signer) || j.status != "assigned" {
                    return Err(format!("wrong phase {}", j.status));
                }
                j.status = "committed".into();
                j.commitment = Some(digest_hex(commitment));
                j.committed_at = Height::new(h);
                j.deadline = Height::new(h + COMMIT_TIMEOUT);
                if let Some(verifier) = self.spot_check {
                    j.checks.push(CheckView {
                        verifier,
                        dispute: false,
                        deadline: Height::new(h + COMMIT_TIMEOUT),
                        commitment: None,
                        output_hash: None,
                        agrees: None,
                        missed: false,
                    });
                }
            }
            Action::RevealResult {
                job,
                output_hash,
                output_size,
                salt,
                units,
                receipt_signature,
            } => {
                let j = self.jobs.get_mut(job).ok_or("unknown job")?;
                if j.provider != Some(signer) || j.status != "committed" {
                    return Err(format!("wrong phase {}", j.status));
                }
                if j.committed_at.get() >= h {
                    return Err("reveal too early".into());
                }
                if j.awaiting_verifier() {
                    return Err("awaiting_verifier".into());
                }
                if j.commitment != Some(digest_hex(&commitment(job, output_hash, salt))) {
                    return Err("commitment mismatch".into());
                }
                if *units == 0 || *units > j.max_units || *output_size == 0 {
                    return Err("invalid units or size".into());
                }
                let receipt = Receipt {
                    chain_id: "mock".into(),
                    job: *job,
                    model: parse_digest(&j.model).unwrap(),
                    input_hash: parse_digest(&j.input_hash).unwrap(),
                    output_hash: *output_hash,
                    output_size: *output_size,
                    units: *units,
                    unit_price: j.unit_price,
                    provider: signer,
                };
                if !receipt.verify(receipt_signature) {
                    return Err("invalid receipt".into());
                }
                j.status = "revealed".into();
                j.output_hash = Some(digest_hex(output_hash));
                j.output_size = *output_size;
                j.salt = Some(digest_hex(salt));
                j.units = *units;
                j.revealed_at = Height::new(h);
            }
            Action::CommitCheck { job, commitment } => {
                let j = self.jobs.get_mut(job).ok_or("unknown job")?;
                let c = j
                    .checks
                    .iter_mut()
                    .find(|c| c.verifier == signer && c.pending())
                    .ok_or("not a verifier")?;
                if c.commitment.is_some() {
                    return Err("check committed already".into());
                }
                c.commitment = Some(digest_hex(commitment));
            }
            Action::RevealCheck {
                job,
                output_hash,
                salt,
                agrees,
            } => {
                let j = self.jobs.get_mut(job).ok_or("unknown job")?;
                if j.status != "revealed" {
                    return Err("check_too_early".into());
                }
                let same = j.output_hash == Some(digest_hex(output_hash));
                let c = j
                    .checks
                    .iter_mut()
                    .find(|c| c.verifier == signer && c.pending())
                    .ok_or("not a verifier")?;
                if c.commitment
                    != Some(digest_hex(&check_commitment(
                        job,
                        &signer,
                        output_hash,
                        salt,
                    )))
                {
                    return Err("check commitment mismatch".into());
                }
                if same && !agrees {
                    return Err("invalid verdict".into());
                }
                c.output_hash = Some(digest_hex(output_hash));
                c.agrees = Some(*agrees);
            }
            other => return Err(format!("the mock does not do {}", other.kind())),
        }
        let what = match &stx.tx.action {
            Action::CommitResult { job, .. }
            | Action::RevealResult { job, .. }
            | Action::CommitCheck { job, .. }
            | Action::RevealCheck { job, .. } => {
                format!("{} {job}", stx.tx.action.kind())
            }
            a => a.kind().to_string(),
        };
        self.applied.push(what);
        Ok(())
    }

    /// A job assigned to `provider` at the current height; `upload` stores its input.
    fn assign(
        &mut self,
        n: u8,
        model: &[u8],
        input: &[u8],
        max_units: u32,
        provider: Address,
        upload: bool,
    ) -> JobId {
        let id = JobId::from_bytes([n; 32]);
        let input_hash = digest_hex(&sha256(&[input]));
        if upload {
            self.blobs.insert(input_hash.clone(), input.to_vec());
        }
        let h = Height::new(self.height);
        let view = JobView {
            id,
            owner: Address::from_bytes([9; 32]),
            model: digest_hex(&sha256(&[model])),
            input_hash,
            input_size: input.len() as u32,
            max_units,
            max_unit_price: Amount::new(10),
            region: String::new(),
            escrow: Amount::new(10 * u128::from(max_units)),
            posted_at: h,
            attempts: 1,
            tried: vec![provider],
            status: "assigned".into(),
            provider: Some(provider),
            unit_price: Amount::new(5),
            assigned_at: h,
            deadline: Height::new(self.height + COMMIT_TIMEOUT),
            commitment: None,
            committed_at: Height::new(0),
            output_hash: None,
            output_size: 0,
            salt: None,
            units: 0,
            receipt_signature: None,
            revealed_at: Height::new(0),
            settle_at: Height::new(0),
            settlement: None,
            refund: None,
            checks: Vec::new(),
            disputed: false,
        };
        self.jobs.insert(id, view);
        id
    }

    /// A job of `provider`, committed, with a spot check by `verifier` due.
    fn checked(
        &mut self,
        n: u8,
        model: &[u8],
        input: &[u8],
        max_units: u32,
        provider: Address,
        verifier: Address,
    ) -> JobId {
        let id = self.assign(n, model, input, max_units, provider, true);
        let h = self.height;
        let job = self.jobs.get_mut(&id).unwrap();
        job.status = "committed".into();
        job.commitment = Some(digest_hex(&sha256(&[b"someone else's commitment"])));
        job.committed_at = Height::new(h);
        job.checks.push(CheckView {
            verifier,
            dispute: false,
            deadline: Height::new(h + COMMIT_TIMEOUT),
            commitment: None,
            output_hash: None,
            agrees: None,
            missed: false,
        });
        id
    }

    /// The other provider of a checked job reveals `output` (stored on the node).
    fn reveal_as_other(&mut self, id: &JobId, output: &[u8]) {
        let hash = digest_hex(&sha256(&[output]));
        self.blobs.insert(hash.clone(), output.to_vec());
        let h = self.height;
        let job = self.jobs.get_mut(id).unwrap();
        job.status = "revealed".into();
        job.output_hash = Some(hash);
        job.output_size = output.len() as u32;
        job.revealed_at = Height::new(h);
        for c in job.checks.iter_mut().filter(|c| c.pending()) {
            c.deadline = Height::new(h + COMMIT_TIMEOUT);
        }
    }

    /// How many times `kind` was applied to `job`.
    fn applied(&self, kind: &str, job: &JobId) -> usize {
        let what = format!("{kind} {job}");
        self.applied.iter().filter(|a| **a == what).count()
    }

    /// Settle every revealed job: it leaves the state.
    fn settle_revealed(&mut self) {
        let revealed: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.status == "revealed")
            .map(|j| j.id)
            .collect();
        for id in revealed {
            let mut job = self.jobs.remove(&id).unwrap();
            job.status = "settled".into();
            self.finished.insert(id, job);
        }
    }
}

fn node_app(mock: Mock) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/accounts/{address}", get(account))
        .route("/tx", axum::routing::post(submit))
        .route("/tx/{hash}", get(tx_status))
        .route("/models", get(models))
        .route("/providers/{address}", get(provider))
        .route("/providers/{address}/jobs", get(provider_jobs))
        .route("/jobs/{id}", get(job))
        .route("/blobs", axum::routing::post(put_blob))
        .route("/blobs/{hash}", get(get_blob))
        .route("/events/blocks", get(events))
        .with_state(mock)
}

async fn events(State(mock): State<Mock>) -> Response {
    use axum::response::sse::{Event, Sse};
    let Some(sender) = mock.lock().unwrap().events.clone() else {
        return api_error(StatusCode::NOT_FOUND, "not_found", "no events");
    };
    let stream = futures::stream::unfold(sender.subscribe(), |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(h) => {
                    let event = Event::default()
                        .event("block")
                        .data(json!({ "height": h, "txs": 0 }).to_string());
                    return Some((Ok::<_, std::convert::Infallible>(event), receiver));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).into_response()
}

async fn status(State(mock): State<Mock>) -> Json<Value> {
    let chain = mock.lock().unwrap();
    Json(json!({
        "chain_id": "mock",
        "genesis": "00",
        "finalized_height": chain.height,
        "head": "00",
        "state_root": "00",
        "supply": "0",
        "holdings": "0",
        "treasury": "0",
        "mempool": chain.mempool.len(),
        "min_fee": "1",
        "params": {
            "min_provider_stake": MIN_STAKE.to_string(),
            "commit_timeout": COMMIT_TIMEOUT,
            "max_payload_size": 1 << 20,
        },
    }))
}

async fn account(State(mock): State<Mock>, Path(a): Path<String>) -> Json<Value> {
    let chain = mock.lock().unwrap();
    let address: Address = a.parse().unwrap();
    let (nonce, balance, stake) = chain.account(&address);
    Json(json!({
        "address": address,
        "balance": balance.to_string(),
        "nonce": nonce,
        "next_nonce": nonce + chain.queued(&address),
        "stake": stake.to_string(),
        "unbonding": [],
        "height": chain.height,
    }))
}

async fn submit(State(mock): State<Mock>, Json(body): Json<Value>) -> Response {
    let bytes = hex::decode(body["tx"].as_str().unwrap()).unwrap();
    let stx = SignedTransaction::decode_bounded(&bytes).unwrap();
    assert!(stx.verify_signature());
    assert_eq!(stx.tx.chain_id, "mock");
    let mut chain = mock.lock().unwrap();
    let kind = stx.tx.action.kind();
    if chain.refuse == Some(kind) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "refused",
            format!("the test refuses {kind}"),
        );
    }
    let expected = chain.account(&stx.tx.signer).0 + chain.queued(&stx.tx.signer);
    if stx.tx.nonce.get() != expected {
        let code = if stx.tx.nonce.get() < expected {
            "stale_nonce"
        } else {
            "nonce_gap"
        };
        return api_error(StatusCode::BAD_REQUEST, code, "wrong nonce");
    }
    let hash = digest_hex(&stx.hash());
    chain
        .statuses
        .insert(hash.clone(), json!({"status": "pending"}));
    chain.mempool.push(stx);
    (
        StatusCode::ACCEPTED,
        Json(json!({"hash": hash, "status": "pending"})),
    )
        .into_response()
}

async fn tx_status(State(mock): State<Mock>, Path(hash): Path<String>) -> Response {
    match mock.lock().unwrap().statuses.get(&hash) {
        Some(s) => Json(s.clone()).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "unknown_tx", "no such tx"),
    }
}

async fn models() -> Json<Value> {
    Json(json!({"models": [
        {"hash": digest_hex(&sha256(&[b"embed"])), "name": "embed", "kind": "embedding"},
        {"hash": digest_hex(&sha256(&[b"chat"])), "name": "chat", "kind": "chat"},
    ]}))
}

async fn provider(State(mock): State<Mock>, Path(a): Path<String>) -> Response {
    let address: Address = a.parse().unwrap();
    match mock.lock().unwrap().providers.get(&address) {
        Some(p) => Json(p.clone()).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "unknown_provider", "not registered"),
    }
}

async fn provider_jobs(State(mock): State<Mock>, Path(a): Path<String>) -> Json<Value> {
    let address: Address = a.parse().unwrap();
    let chain = mock.lock().unwrap();
    let jobs: Vec<&JobView> = chain
        .jobs
        .values()
        .filter(|j| {
            (j.provider == Some(address) || j.checks.iter().any(|c| c.verifier == address))
                && j.status != "missed"
        })
        .collect();
    Json(json!({"height": chain.height, "jobs": jobs}))
}

async fn job(State(mock): State<Mock>, Path(id): Path<String>) -> Response {
    let id: JobId = id.parse().unwrap();
    let chain = mock.lock().unwrap();
    match chain.jobs.get(&id).or_else(|| chain.finished.get(&id)) {
        Some(j) => Json(j.clone()).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "unknown_job", "no such job"),
    }
}

async fn put_blob(State(mock): State<Mock>, body: Bytes) -> Response {
    let hash = digest_hex(&sha256(&[&body]));
    mock.lock()
        .unwrap()
        .blobs
        .insert(hash.clone(), body.to_vec());
    (
        StatusCode::CREATED,
        Json(json!({"hash": hash, "size": body.len()})),
    )
        .into_response()
}

async fn get_blob(State(mock): State<Mock>, Path(hash): Path<String>) -> Response {
    match mock.lock().unwrap().blobs.get(&hash) {
        Some(b) => b.clone().into_response(),
        None => api_error(StatusCode::NOT_FOUND, "unknown_blob", "no such blob"),
    }
}

/// A running mock node; stops on drop.
struct Node {
    mock: Mock,
    url: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// A mock node; with `events`, it also serves block events (else the agent polls).
async fn node(funded: Address, events: bool) -> Node {
    let mut chain = Chain::default();
    if events {
        chain.events = Some(tokio::sync::broadcast::channel(64).0);
    }
    chain.accounts.insert(funded, (0, 1_000_000, 0));
    let mock = Arc::new(Mutex::new(chain));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = node_app(mock.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let blocks = {
        let mock = mock.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(BLOCK).await;
                mock.lock().unwrap().block();
            }
        })
    };
    Node {
        mock,
        url,
        tasks: vec![server, blocks],
    }
}

fn config(node: &Node, key: &PrivateKey, data_dir: &std::path::Path) -> ProviderConfig {
    ProviderConfig {
        rpc: node.url.clone(),
        key: key.clone(),
        models: Vec::new(),
        models_dir: None,
        stake: None,
        region: "eu".into(),
        capacity: 8,
        price_floor: Amount::new(1),
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        endpoint: None,
        cheat_rate: 0.0,
    }
}

/// Run `provider` in the background; the returned sender stops it.
fn spawn(
    provider: Provider,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<crate::Result<()>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(provider.run(async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_jobs_end_to_end() {
    let key = key_from_seed(11);
    let me = Address::from(&key.public_key());
    let node = node(me, true).await;
    let dir = TempDir::new("agent-e2e");
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(calls.clone(), 0.0),
    )
    .await
    .unwrap();
    let addr = provider.local_addr();
    assert_eq!(provider.endpoint(), format!("http://{addr}"));
    {
        let chain = node.mock.lock().unwrap();
        assert_eq!(
            chain.account(&me).2,
            MIN_STAKE,
            "bonded the chain's minimum"
        );
        assert_eq!(chain.providers[&me]["endpoint"], format!("http://{addr}"));
        assert_eq!(chain.applied, vec!["bond", "register_provider"]);
    }
    // Starting again finds the stake and the declaration in place: no transaction.
    drop(provider);
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(calls.clone(), 0.0),
    )
    .await
    .unwrap();
    let addr = provider.local_addr();
    let endpoint_changed = node.mock.lock().unwrap().applied.len();
    // The port differs, so the endpoint was updated (one more registration), nothing else.
    assert_eq!(endpoint_changed, 3);

    let (e1, e2, e3, chat, bad, missing) = {
        let mut chain = node.mock.lock().unwrap();
        (
            chain.assign(1, b"embed", br#"{"texts":["a b","c"]}"#, 100, me, true),
            chain.assign(2, b"embed", br#"{"texts":["d e f"]}"#, 100, me, true),
            chain.assign(3, b"embed", br#"{"texts":["g"]}"#, 100, me, true),
            chain.assign(
                4,
                b"chat",
                br#"{"messages":[{"role":"user","content":"hello"}],"max_tokens":3}"#,
                10,
                me,
                true,
            ),
            chain.assign(5, b"embed", b"not json", 100, me, true),
            chain.assign(6, b"embed", br#"{"texts":["x"]}"#, 100, me, false),
        )
    };
    let (stop, task) = spawn(provider);
    let all = [e1, e2, e3, chat, bad, missing];
    until("every job revealed", || {
        let chain = node.mock.lock().unwrap();
        all.iter().all(|id| chain.jobs[id].status == "revealed")
    })
    .await;
    // The three embedding jobs that were waiting together ran in one call.
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (views, blobs) = {
        let chain = node.mock.lock().unwrap();
        (chain.jobs.clone(), chain.blobs.clone())
    };
    let http = reqwest::Client::new();
    let mut outputs = BTreeMap::new();
    for id in all {
        let view = &views[&id];
        let hash = view.output_hash.clone().unwrap();
        // The node got the output, and the provider serves it too.
        let on_node = blobs[&hash].clone();
        let served = http
            .get(format!("http://{addr}/blobs/{hash}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&served[..], &on_node[..]);
        assert_eq!(on_node.len() as u32, view.output_size);
        let output: Value = serde_json::from_slice(&on_node).unwrap();
        outputs.insert(id, (output, view.units));
    }
    assert_eq!(
        outputs[&e1].0["embeddings"],
        json!([[0.0, 2.0], [1.0, 1.0]])
    );
    assert_eq!(outputs[&e1].1, 4 + 3);
    assert_eq!(outputs[&e2].0["embeddings"], json!([[2.0, 3.0]]));
    assert_eq!(outputs[&e3].1, 3);
    assert_eq!(outputs[&chat].0["text"], "hel");
    assert_eq!(outputs[&chat].1, 3);
    assert_eq!(outputs[&bad].0["error"]["code"], "invalid_input");
    assert_eq!(outputs[&bad].1, 1);
    assert_eq!(outputs[&missing].0["error"]["code"], "input_unavailable");
    // Each job committed and revealed exactly once.
    {
        let chain = node.mock.lock().unwrap();
        for id in all {
            for kind in ["commit_result", "reveal_result"] {
                let n = chain
                    .applied
                    .iter()
                    .filter(|a| **a == format!("{kind} {id}"))
                    .count();
                assert_eq!(n, 1, "{kind} {id}");
            }
        }
        assert!(
            chain.statuses.values().all(|s| s["success"] != false),
            "no failed tx"
        );
    }
    let record_file = dir.0.join("jobs").join(format!("{e1}.json"));
    assert!(record_file.exists());

    // Once settled and gone for a while, the records are deleted.
    node.mock.lock().unwrap().settle_revealed();
    // The record goes first, then the output.
    let output_file = dir
        .0
        .join("outputs")
        .join(views[&e1].output_hash.as_ref().unwrap());
    until("records pruned", || {
        !record_file.exists() && !output_file.exists()
    })
    .await;
    let served = http
        .get(format!(
            "http://{addr}/blobs/{}",
            views[&e1].output_hash.as_ref().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 404);

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_commits_and_reveals_the_recorded_result() {
    let key = key_from_seed(12);
    let me = Address::from(&key.public_key());
    let node = node(me, false).await;
    let dir = TempDir::new("agent-restart");

    // The first run computes and records, but its commit never gets in.
    let first_calls = Arc::new(AtomicUsize::new(0));
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(first_calls.clone(), 0.0),
    )
    .await
    .unwrap();
    let job = {
        let mut chain = node.mock.lock().unwrap();
        chain.refuse = Some("commit_result");
        chain.assign(1, b"embed", br#"{"texts":["a b"]}"#, 100, me, true)
    };
    let (stop, task) = spawn(provider);
    let record_file = dir.0.join("jobs").join(format!("{job}.json"));
    until("the result recorded", || record_file.exists()).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let record: crate::store::Record =
        serde_json::from_slice(&std::fs::read(&record_file).unwrap()).unwrap();
    assert_eq!(first_calls.load(Ordering::SeqCst), 1);
    assert_eq!(node.mock.lock().unwrap().jobs[&job].status, "assigned");

    // The second run has a model that would answer differently; it must not run the job
    // again, but commit and reveal what the first run recorded.
    node.mock.lock().unwrap().refuse = None;
    let second_calls = Arc::new(AtomicUsize::new(0));
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(second_calls.clone(), 0.5),
    )
    .await
    .unwrap();
    let (stop, task) = spawn(provider);
    until("revealed", || {
        node.mock.lock().unwrap().jobs[&job].status == "revealed"
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(second_calls.load(Ordering::SeqCst), 0);
    let chain = node.mock.lock().unwrap();
    let view = &chain.jobs[&job];
    assert_eq!(view.output_hash, Some(digest_hex(&record.output_hash)));
    assert_eq!(view.salt, Some(digest_hex(&record.salt)));
    assert_eq!(view.units, record.units);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_follows_block_events_and_reports_when_they_are_missing() {
    let me = Address::from_bytes([1; 32]);
    let node = node(me, true).await;
    let mut feed = super::feed::spawn(&node.url);
    tokio::time::timeout(Duration::from_secs(10), async {
        while *feed.heights.borrow_and_update() < 3 {
            feed.heights.changed().await.unwrap();
        }
    })
    .await
    .expect("block events arrive");
    assert!(feed.is_live());

    let silent = self::node(me, false).await;
    let feed = super::feed::spawn(&silent.url);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!feed.is_live());
    assert_eq!(*feed.heights.borrow(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_streams_a_chat_job_before_it_is_committed() {
    let key = key_from_seed(13);
    let me = Address::from(&key.public_key());
    let owner = key_from_seed(14);
    let node = node(me, true).await;
    let dir = TempDir::new("agent-stream");
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(Arc::new(AtomicUsize::new(0)), 0.0),
    )
    .await
    .unwrap();
    let endpoint = plexus_client::Client::new(provider.endpoint());
    let (stop, task) = spawn(provider);
    // Posted, not yet assigned: the owner asks for the stream before the provider knows
    // the job.
    let job = {
        let mut chain = node.mock.lock().unwrap();
        let job = chain.assign(
            4,
            b"chat",
            br#"{"messages":[{"role":"user","content":"hello"}],"max_tokens":3}"#,
            10,
            me,
            true,
        );
        let view = chain.jobs.get_mut(&job).unwrap();
        view.owner = Address::from(&owner.public_key());
        view.status = "queued".into();
        view.provider = None;
        job
    };
    let reader = tokio::spawn({
        let owner = owner.clone();
        async move {
            let mut stream = endpoint.stream_result(&owner, &job).await.unwrap();
            let mut events = Vec::new();
            while let Some(event) = stream.next().await.unwrap() {
                events.push(event);
            }
            events
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let mut chain = node.mock.lock().unwrap();
        let height = chain.height;
        let view = chain.jobs.get_mut(&job).unwrap();
        view.status = "assigned".into();
        view.provider = Some(me);
        view.deadline = Height::new(height + COMMIT_TIMEOUT);
    }
    let events = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the stream ends")
        .unwrap();
    use plexus_client::StreamEvent;
    assert_eq!(
        events,
        vec![
            StreamEvent::Delta("h".into()),
            StreamEvent::Delta("e".into()),
            StreamEvent::Delta("l".into()),
            StreamEvent::Done {
                finish_reason: "length".into()
            },
        ]
    );
    // What was streamed is what gets committed and revealed.
    until("revealed", || {
        node.mock.lock().unwrap().jobs[&job].status == "revealed"
    })
    .await;
    let output = {
        let chain = node.mock.lock().unwrap();
        chain.blobs[chain.jobs[&job].output_hash.as_ref().unwrap()].clone()
    };
    let output: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(output["text"], "hel");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// The output the fake embedder gives for `vectors`, as a provider would serve it.
fn embed_output(vectors: Vec<Vec<f32>>) -> Vec<u8> {
    payload::to_bytes(&EmbedOutput {
        model: "embed".into(),
        model_hash: digest_hex(&sha256(&[b"embed"])),
        embeddings: vectors,
    })
}

fn chat_output(text: &str) -> Vec<u8> {
    payload::to_bytes(&payload::ChatOutput {
        model: "chat".into(),
        model_hash: digest_hex(&sha256(&[b"chat"])),
        text: text.into(),
        tokens: (0..text.chars().count() as u32).collect(),
        finish_reason: "length".into(),
        usage: payload::ChatUsage {
            prompt_tokens: 5,
            completion_tokens: text.chars().count() as u32,
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_other_providers_jobs_and_reveals_verdicts() {
    let key = key_from_seed(15);
    let me = Address::from(&key.public_key());
    let other = Address::from_bytes([8; 32]);
    let node = node(me, true).await;
    let dir = TempDir::new("agent-verify");
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(Arc::new(AtomicUsize::new(0)), 0.0),
    )
    .await
    .unwrap();
    let chat_input =
        br#"{"messages":[{"role":"user","content":"hello"}],"max_tokens":3}"#.as_slice();
    // (job, what the other provider reveals, the verdict expected). The three embedding
    // checks run in one call, in job order, and the fake embedder's first component is a
    // text's index in its call: the honest vectors are [0, 2], [1, 2] and [2, 2].
    let cases = {
        let mut chain = node.mock.lock().unwrap();
        let input = br#"{"texts":["a b"]}"#.as_slice();
        vec![
            (
                chain.checked(20, b"embed", input, 100, other, me),
                embed_output(vec![vec![0.0, 2.0]]),
                true,
            ),
            (
                chain.checked(21, b"embed", input, 100, other, me),
                embed_output(vec![vec![1.00005, 2.0]]),
                true,
            ),
            (
                chain.checked(22, b"embed", input, 100, other, me),
                embed_output(vec![vec![-2.0, -2.0]]),
                false,
            ),
            (
                chain.checked(23, b"chat", chat_input, 10, other, me),
                chat_output("hel"),
                true,
            ),
            (
                chain.checked(24, b"chat", chat_input, 10, other, me),
                chat_output("heL"),
                false,
            ),
        ]
    };
    let (stop, task) = spawn(provider);
    until("every check committed", || {
        let chain = node.mock.lock().unwrap();
        cases
            .iter()
            .all(|(id, _, _)| chain.jobs[id].checks[0].commitment.is_some())
    })
    .await;
    for (id, _, _) in &cases {
        assert!(dir.0.join("checks").join(format!("{id}.json")).exists());
        assert!(!dir.0.join("jobs").join(format!("{id}.json")).exists());
    }
    // Nothing is revealed before the provider reveals (the ledger would refuse it).
    tokio::time::sleep(BLOCK * 5).await;
    {
        let mut chain = node.mock.lock().unwrap();
        assert!(
            cases
                .iter()
                .all(|(id, _, _)| chain.applied("reveal_check", id) == 0)
        );
        for (id, output, _) in &cases {
            chain.reveal_as_other(id, output);
        }
    }
    until("every verdict revealed", || {
        let chain = node.mock.lock().unwrap();
        cases
            .iter()
            .all(|(id, _, _)| chain.jobs[id].checks[0].agrees.is_some())
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let chain = node.mock.lock().unwrap();
    for (id, _, expected) in &cases {
        let check = &chain.jobs[id].checks[0];
        assert_eq!(check.agrees, Some(*expected), "job {id}");
        assert_eq!(chain.applied("commit_check", id), 1);
        assert_eq!(chain.applied("reveal_check", id), 1);
        // The re-run's output is on the node for a dispute to inspect.
        assert!(
            chain
                .blobs
                .contains_key(check.output_hash.as_ref().unwrap())
        );
    }
    assert!(
        chain.statuses.values().all(|s| s["success"] != false),
        "no failed tx"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_verifier_commits_its_recorded_check_and_never_another() {
    let key = key_from_seed(16);
    let me = Address::from(&key.public_key());
    let other = Address::from_bytes([8; 32]);
    let node = node(me, false).await;
    let dir = TempDir::new("agent-verify-restart");
    let first_calls = Arc::new(AtomicUsize::new(0));
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(first_calls.clone(), 0.0),
    )
    .await
    .unwrap();
    let job = {
        let mut chain = node.mock.lock().unwrap();
        chain.refuse = Some("commit_check");
        chain.checked(30, b"embed", br#"{"texts":["a b"]}"#, 100, other, me)
    };
    let (stop, task) = spawn(provider);
    let record_file = dir.0.join("checks").join(format!("{job}.json"));
    until("the check recorded", || record_file.exists()).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let record: crate::store::CheckRecord =
        serde_json::from_slice(&std::fs::read(&record_file).unwrap()).unwrap();
    assert_eq!(first_calls.load(Ordering::SeqCst), 1);

    // Restarted with a model that would answer differently: no re-run, the recorded
    // commitment goes in.
    node.mock.lock().unwrap().refuse = None;
    let second_calls = Arc::new(AtomicUsize::new(0));
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(second_calls.clone(), 0.5),
    )
    .await
    .unwrap();
    let (stop, task) = spawn(provider);
    until("the check committed", || {
        node.mock.lock().unwrap().jobs[&job].checks[0]
            .commitment
            .is_some()
    })
    .await;
    node.mock
        .lock()
        .unwrap()
        .reveal_as_other(&job, &embed_output(vec![vec![0.0, 2.0]]));
    until("the verdict revealed", || {
        node.mock.lock().unwrap().jobs[&job].checks[0].agrees == Some(true)
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(second_calls.load(Ordering::SeqCst), 0);
    let chain = node.mock.lock().unwrap();
    let check = &chain.jobs[&job].checks[0];
    assert_eq!(
        check.commitment,
        Some(digest_hex(&check_commitment(
            &job,
            &me,
            &record.output_hash,
            &record.salt
        )))
    );
    assert_eq!(check.output_hash, Some(digest_hex(&record.output_hash)));
    assert_eq!(chain.applied("commit_check", &job), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_checked_job_is_revealed_once_its_verifier_commits() {
    let key = key_from_seed(17);
    let me = Address::from(&key.public_key());
    let verifier = Address::from_bytes([8; 32]);
    let node = node(me, true).await;
    let dir = TempDir::new("agent-awaiting");
    let provider = Provider::start_with_models(
        config(&node, &key, &dir.0),
        fakes::models(Arc::new(AtomicUsize::new(0)), 0.0),
    )
    .await
    .unwrap();
    let job = {
        let mut chain = node.mock.lock().unwrap();
        chain.spot_check = Some(verifier);
        chain.assign(40, b"embed", br#"{"texts":["a b"]}"#, 100, me, true)
    };
    let (stop, task) = spawn(provider);
    until("committed", || {
        node.mock.lock().unwrap().jobs[&job].status == "committed"
    })
    .await;
    tokio::time::sleep(BLOCK * 10).await;
    {
        let mut chain = node.mock.lock().unwrap();
        // No reveal while the verifier has not committed: none sent, none failed.
        assert_eq!(chain.jobs[&job].status, "committed");
        assert!(
            chain.statuses.values().all(|s| s["success"] != false),
            "no failed tx"
        );
        assert_eq!(chain.mempool.len(), 0);
        chain.jobs.get_mut(&job).unwrap().checks[0].commitment =
            Some(digest_hex(&sha256(&[b"verifier"])));
    }
    until("revealed", || {
        node.mock.lock().unwrap().jobs[&job].status == "revealed"
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(node.mock.lock().unwrap().applied("reveal_result", &job), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheating_provider_corrupts_its_own_outputs() {
    let key = key_from_seed(18);
    let me = Address::from(&key.public_key());
    let node = node(me, true).await;
    let dir = TempDir::new("agent-cheat");
    let mut cfg = config(&node, &key, &dir.0);
    cfg.cheat_rate = 1.5;
    assert!(matches!(
        Provider::start_with_models(
            cfg.clone(),
            fakes::models(Arc::new(AtomicUsize::new(0)), 0.0)
        )
        .await,
        Err(crate::Error::CheatRate(_))
    ));
    cfg.cheat_rate = 1.0;
    let provider =
        Provider::start_with_models(cfg, fakes::models(Arc::new(AtomicUsize::new(0)), 0.0))
            .await
            .unwrap();
    let job =
        node.mock
            .lock()
            .unwrap()
            .assign(50, b"embed", br#"{"texts":["a b"]}"#, 100, me, true);
    let (stop, task) = spawn(provider);
    until("revealed", || {
        node.mock.lock().unwrap().jobs[&job].status == "revealed"
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let chain = node.mock.lock().unwrap();
    let output = &chain.blobs[chain.jobs[&job].output_hash.as_ref().unwrap()];
    // The honest vector is [0, 2].
    assert_eq!(output, &embed_output(vec![vec![1.0, -2.0]]));
}
