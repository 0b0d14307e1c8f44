//! Running jobs: a job's input bytes in, its output bytes and units out, following the
//! formats and rules of [`crate::payload`]. Blocking (it runs the models): the agent calls it
//! on a blocking thread.
//!
//! The embedding jobs of one batch, for one model, go through [`Embedder::embed`] calls of
//! up to 64 texts (never splitting a job; at most [`MAX_TEXTS`]): batching is where
//! embedding throughput comes from, and emitting each call's results at once lets the agent
//! commit them while the next call computes. Chat jobs run one after the other; each piece
//! of text the model emits goes to the job's [stream](crate::stream) as it is produced, and
//! the stream ends with the job's outcome.

use crate::error::{Error, Result};
use crate::payload::{
    self, ChatInput, ChatOutput, ChatUsage, EmbedInput, EmbedOutput, ErrorOutput, codes,
};
use crate::stream::{End, Writer};
use plexus_inference::catalog::{self, ModelFiles, ModelKind};
use plexus_inference::chat::CONTEXT_TOKENS;
use plexus_inference::embed::MAX_TEXTS;
use plexus_inference::{
    ChatModel, Completion, Device, Embedder, FinishReason, GenerateParams, Message, Precision,
};
use plexus_types::{Digest, JobId, parse_digest};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// What the embedding path needs of a model (a seam for tests).
pub(crate) trait EmbedEngine: Send + Sync {
    fn tokenize(&self, texts: &[&str]) -> plexus_inference::Result<Vec<Vec<u32>>>;
    fn embed(&self, texts: &[&str]) -> plexus_inference::Result<Vec<Vec<f32>>>;
}

impl EmbedEngine for Embedder {
    fn tokenize(&self, texts: &[&str]) -> plexus_inference::Result<Vec<Vec<u32>>> {
        Embedder::tokenize(self, texts)
    }
    fn embed(&self, texts: &[&str]) -> plexus_inference::Result<Vec<Vec<f32>>> {
        Embedder::embed(self, texts)
    }
}

/// What the chat path needs of a model (a seam for tests).
pub(crate) trait ChatEngine: Send {
    /// Generate, passing every final piece of text to `on_text` as it is produced; the
    /// pieces concatenate to the completion's `text`.
    fn complete(
        &mut self,
        messages: &[Message],
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str),
    ) -> plexus_inference::Result<Completion>;
}

impl ChatEngine for ChatModel {
    fn complete(
        &mut self,
        messages: &[Message],
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str),
    ) -> plexus_inference::Result<Completion> {
        self.chat_messages(messages, params, on_text)
    }
}

pub(crate) enum Engine {
    Embedding(Box<dyn EmbedEngine>),
    Chat(Mutex<Box<dyn ChatEngine>>),
}

/// A model this provider serves.
pub(crate) struct Loaded {
    /// Catalogue name.
    pub name: String,
    /// On-chain hash.
    pub hash: Digest,
    pub kind: ModelKind,
    pub engine: Engine,
}

/// The models this provider serves, in the order they were configured.
pub(crate) struct Models {
    models: Vec<Loaded>,
}

impl Models {
    /// Load catalogue models by name, verifying their files. Blocking (reads and checks the
    /// weights).
    pub fn load(names: &[String], models_dir: Option<&Path>, device: &Device) -> Result<Self> {
        let mut models = Vec::new();
        for name in names {
            let model_error = |source| Error::Model {
                name: name.clone(),
                source,
            };
            let files = ModelFiles::locate(name, models_dir).map_err(model_error)?;
            let engine = match files.spec.kind {
                ModelKind::Embedding => Engine::Embedding(Box::new(
                    Embedder::load(&files, device).map_err(model_error)?,
                )),
                ModelKind::Chat => Engine::Chat(Mutex::new(Box::new(
                    ChatModel::load(&files, Precision::Exact, device).map_err(model_error)?,
                ))),
            };
            models.push(Loaded {
                name: files.spec.name.to_string(),
                hash: spec_hash(files.spec)?,
                kind: files.spec.kind,
                engine,
            });
        }
        Ok(Self { models })
    }

    #[cfg(test)]
    pub fn from_loaded(models: Vec<Loaded>) -> Self {
        Self { models }
    }

    pub fn get(&self, hash: &Digest) -> Option<&Loaded> {
        self.models.iter().find(|m| &m.hash == hash)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Loaded> {
        self.models.iter()
    }
}

/// The on-chain hash of a catalogue model.
pub(crate) fn spec_hash(spec: &catalog::ModelSpec) -> Result<Digest> {
    parse_digest(&spec.model_hash()).map_err(|e| Error::Model {
        name: spec.name.to_string(),
        source: plexus_inference::Error::Format(e.to_string()),
    })
}

/// One job to run.
#[derive(Debug)]
pub(crate) struct Work {
    pub job: JobId,
    pub model: Digest,
    pub max_units: u32,
    pub input: Input,
    /// Where a chat job's text goes as it is generated (see [`crate::stream`]); ended with
    /// the job's outcome.
    pub stream: Option<Writer>,
}

#[derive(Debug)]
pub(crate) enum Input {
    /// The input blob, its hash checked.
    Bytes(Vec<u8>),
    /// The input could not be had; the job is answered with this error.
    Unusable(ErrorOutput),
}

/// What came of one job.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// A result to commit: the output bytes (possibly an [`ErrorOutput`]) and the units.
    Done {
        job: JobId,
        model: Digest,
        output: Vec<u8>,
        units: u32,
    },
    /// This provider could not run the job (no such model here, the model failed): nothing
    /// to commit. Not the input's fault, so no error output is billed.
    Failed { job: JobId, reason: String },
}

impl Outcome {
    pub fn job(&self) -> JobId {
        match self {
            Outcome::Done { job, .. } | Outcome::Failed { job, .. } => *job,
        }
    }
}

/// Run a batch: embeddings first (calls of up to 64 texts per model), then chats one by one. `emit` gets
/// each group's outcomes as soon as they are ready. `max_output` is the chain's
/// `max_payload_size`: a larger result is answered with `output_too_large`.
pub(crate) fn run(
    models: &Models,
    work: Vec<Work>,
    max_output: u32,
    mut emit: impl FnMut(Vec<Outcome>),
) {
    let mut embeds: BTreeMap<Digest, Vec<(JobId, u32, Vec<u8>)>> = BTreeMap::new();
    let mut chats = Vec::new();
    let mut immediate = Vec::new();
    for w in work {
        let bytes = match w.input {
            Input::Unusable(error) => {
                let outcome = error_outcome(w.job, w.model, &error);
                end_stream(w.stream, &outcome);
                immediate.push(outcome);
                continue;
            }
            Input::Bytes(bytes) => bytes,
        };
        match models.get(&w.model).map(|m| &m.engine) {
            None => {
                let outcome = Outcome::Failed {
                    job: w.job,
                    reason: format!(
                        "model {} is not served by this provider",
                        plexus_types::digest_hex(&w.model)
                    ),
                };
                end_stream(w.stream, &outcome);
                immediate.push(outcome);
            }
            Some(Engine::Embedding(_)) => {
                if let Some(stream) = w.stream {
                    stream.finish(End::Error(format!(
                        "job {} is not a chat job: it has no text to stream",
                        w.job
                    )));
                }
                embeds
                    .entry(w.model)
                    .or_default()
                    .push((w.job, w.max_units, bytes));
            }
            Some(Engine::Chat(_)) => chats.push((w.job, w.model, w.max_units, bytes, w.stream)),
        }
    }
    if !immediate.is_empty() {
        emit(immediate);
    }
    for (hash, jobs) in embeds {
        let model = models.get(&hash).expect("grouped by served model");
        if let Engine::Embedding(engine) = &model.engine {
            run_embeddings(model, engine.as_ref(), jobs, max_output, &mut emit);
        }
    }
    for (job, hash, max_units, bytes, stream) in chats {
        let model = models.get(&hash).expect("grouped by served model");
        if let Engine::Chat(engine) = &model.engine {
            let mut engine = engine.lock().unwrap_or_else(|e| e.into_inner());
            let outcome = run_chat(
                model,
                engine.as_mut(),
                job,
                max_units,
                &bytes,
                max_output,
                stream.as_ref(),
            );
            end_stream(stream, &outcome);
            emit(vec![outcome]);
        }
    }
}

/// End a job's stream, if it has one, as its outcome says: the finish reason of a chat
/// output, else the error.
fn end_stream(stream: Option<Writer>, outcome: &Outcome) {
    let Some(stream) = stream else { return };
    let end = match outcome {
        Outcome::Done { output, .. } => End::of_output(output).map_or_else(
            || End::Error("the job's output is not a chat output".into()),
            |(_, end)| end,
        ),
        Outcome::Failed { reason, .. } => End::Error(reason.clone()),
    };
    stream.finish(end);
}

struct Ready {
    job: JobId,
    texts: Vec<String>,
    units: u32,
}

fn run_embeddings(
    model: &Loaded,
    engine: &dyn EmbedEngine,
    jobs: Vec<(JobId, u32, Vec<u8>)>,
    max_output: u32,
    emit: &mut impl FnMut(Vec<Outcome>),
) {
    let mut outcomes = Vec::new();
    let mut ready = Vec::new();
    for (job, max_units, bytes) in jobs {
        match prepare_embed(engine, &bytes, max_units) {
            Ok((texts, units)) => ready.push(Ready { job, texts, units }),
            Err(error) => outcomes.push(error_outcome(job, model.hash, &error)),
        }
    }
    if !outcomes.is_empty() {
        emit(std::mem::take(&mut outcomes));
    }
    // Calls of up to EMIT_TEXTS texts (a job is never split), each emitted as soon as it is
    // done: the first commits go out while later chunks compute, and a chunk of 64 already
    // fills the embedder's length-sorted batches.
    let limit = MAX_TEXTS.min(EMIT_TEXTS);
    let mut start = 0;
    while start < ready.len() {
        let mut end = start;
        let mut count = 0;
        while end < ready.len() && (end == start || count + ready[end].texts.len() <= limit) {
            count += ready[end].texts.len();
            end += 1;
        }
        let chunk = &ready[start..end];
        let refs: Vec<&str> = chunk
            .iter()
            .flat_map(|r| r.texts.iter().map(String::as_str))
            .collect();
        match engine.embed(&refs) {
            Ok(vectors) if vectors.len() == refs.len() => {
                let mut vectors = vectors.into_iter();
                for r in chunk {
                    let embeddings: Vec<Vec<f32>> = vectors.by_ref().take(r.texts.len()).collect();
                    let output = payload::to_bytes(&EmbedOutput {
                        model: model.name.clone(),
                        model_hash: plexus_types::digest_hex(&model.hash),
                        embeddings,
                    });
                    outcomes.push(done(r.job, model.hash, output, r.units, max_output));
                }
            }
            result => {
                let reason = match result {
                    Err(e) => format!("embedding failed: {e}"),
                    Ok(v) => format!(
                        "the embedder returned {} vectors for {}",
                        v.len(),
                        refs.len()
                    ),
                };
                outcomes.extend(chunk.iter().map(|r| Outcome::Failed {
                    job: r.job,
                    reason: reason.clone(),
                }));
            }
        }
        emit(std::mem::take(&mut outcomes));
        start = end;
    }
}

/// Most texts per embedding call before its results are emitted (see `run_embeddings`).
const EMIT_TEXTS: usize = 64;

/// Parse and check an embedding input; its texts and units, or the error to answer with.
fn prepare_embed(
    engine: &dyn EmbedEngine,
    bytes: &[u8],
    max_units: u32,
) -> std::result::Result<(Vec<String>, u32), ErrorOutput> {
    let input: EmbedInput = serde_json::from_slice(bytes).map_err(|e| {
        ErrorOutput::new(
            codes::INVALID_INPUT,
            format!("not an embedding input ({e}); send {{\"texts\": [\"...\"]}}"),
        )
    })?;
    let refs: Vec<&str> = input.texts.iter().map(String::as_str).collect();
    let ids = engine.tokenize(&refs).map_err(|e| input_error(&e))?;
    let units = ids.iter().fold(0u32, |sum, t| {
        sum.saturating_add(u32::try_from(t.len()).unwrap_or(u32::MAX))
    });
    if units > max_units {
        return Err(ErrorOutput::new(
            codes::TOO_MANY_UNITS,
            format!(
                "the texts are {units} tokens, more than the job's max_units {max_units}; post the job with max_units of at least {units}"
            ),
        ));
    }
    Ok((input.texts, units))
}

fn run_chat(
    model: &Loaded,
    engine: &mut dyn ChatEngine,
    job: JobId,
    max_units: u32,
    bytes: &[u8],
    max_output: u32,
    stream: Option<&Writer>,
) -> Outcome {
    let (messages, params) = match prepare_chat(bytes, max_units) {
        Ok(p) => p,
        Err(error) => return error_outcome(job, model.hash, &error),
    };
    let mut on_text = |piece: &str| {
        if let Some(stream) = stream {
            stream.push(piece);
        }
    };
    match engine.complete(&messages, &params, &mut on_text) {
        Ok(c) => {
            let units = u32::try_from(c.usage.completion_tokens)
                .unwrap_or(u32::MAX)
                .max(1);
            let output = payload::to_bytes(&ChatOutput {
                model: model.name.clone(),
                model_hash: plexus_types::digest_hex(&model.hash),
                text: c.text,
                tokens: c.tokens,
                finish_reason: match c.finish_reason {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                }
                .to_string(),
                usage: ChatUsage {
                    prompt_tokens: u32::try_from(c.usage.prompt_tokens).unwrap_or(u32::MAX),
                    completion_tokens: units,
                },
            });
            done(job, model.hash, output, units, max_output)
        }
        Err(e) => match input_error_opt(&e) {
            Some(error) => error_outcome(job, model.hash, &error),
            None => Outcome::Failed {
                job,
                reason: format!("generation failed: {e}"),
            },
        },
    }
}

/// Parse and check a chat input; the messages and generation parameters, or the error to
/// answer with.
fn prepare_chat(
    bytes: &[u8],
    max_units: u32,
) -> std::result::Result<(Vec<Message>, GenerateParams), ErrorOutput> {
    let input: ChatInput = serde_json::from_slice(bytes).map_err(|e| {
        ErrorOutput::new(
            codes::INVALID_INPUT,
            format!(
                "not a chat input ({e}); send {{\"messages\": [{{\"role\": \"user\", \"content\": \"...\"}}], \"max_tokens\": N}}"
            ),
        )
    })?;
    if input.messages.is_empty() {
        return Err(ErrorOutput::new(
            codes::EMPTY_INPUT,
            "no messages; give at least one",
        ));
    }
    if let Some(m) = input
        .messages
        .iter()
        .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
    {
        return Err(ErrorOutput::new(
            codes::INVALID_INPUT,
            format!("unknown role {:?}; use system, user or assistant", m.role),
        ));
    }
    if input.max_tokens == 0 {
        return Err(ErrorOutput::new(
            codes::INVALID_PARAMETER,
            "max_tokens must be at least 1",
        ));
    }
    let limit = input.max_tokens.min(max_units) as usize;
    let params = GenerateParams {
        max_tokens: limit.min(CONTEXT_TOKENS),
        temperature: input.temperature.unwrap_or(0.0),
        top_p: input.top_p.unwrap_or(1.0),
        seed: input.seed.unwrap_or(0),
        stop: input.stop,
    };
    Ok((input.messages, params))
}

/// The error output for an inference error caused by the input.
fn input_error(e: &plexus_inference::Error) -> ErrorOutput {
    input_error_opt(e).unwrap_or_else(|| ErrorOutput::new(codes::INVALID_INPUT, e.to_string()))
}

fn input_error_opt(e: &plexus_inference::Error) -> Option<ErrorOutput> {
    use plexus_inference::Error as E;
    let code = match e {
        E::EmptyInput(_) => codes::EMPTY_INPUT,
        E::InputTooLong { .. } => codes::INPUT_TOO_LONG,
        E::InvalidParameter(_) => codes::INVALID_PARAMETER,
        E::Tokenizer(_) => codes::INVALID_INPUT,
        _ => return None,
    };
    Some(ErrorOutput::new(code, e.to_string()))
}

fn error_outcome(job: JobId, model: Digest, error: &ErrorOutput) -> Outcome {
    Outcome::Done {
        job,
        model,
        output: payload::to_bytes(error),
        units: 1,
    }
}

fn done(job: JobId, model: Digest, output: Vec<u8>, units: u32, max_output: u32) -> Outcome {
    if output.len() > max_output as usize {
        let error = ErrorOutput::new(
            codes::OUTPUT_TOO_LARGE,
            format!(
                "the result is {} bytes, more than the chain's max_payload_size {max_output}; split the job",
                output.len()
            ),
        );
        return error_outcome(job, model, &error);
    }
    Outcome::Done {
        job,
        model,
        output,
        units,
    }
}

/// Model stand-ins for tests of the batching and the agent.
#[cfg(test)]
pub(crate) mod fakes {
    use super::*;
    use plexus_inference::Usage;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Tokens are whitespace-separated words plus 2; the vector of a text is `[its index
    /// in the call, its word count]`. Counts calls.
    pub(crate) struct FakeEmbedder {
        pub calls: Arc<AtomicUsize>,
        /// Added to every vector component, to tell two embedders apart.
        pub offset: f32,
    }

    impl EmbedEngine for FakeEmbedder {
        fn tokenize(&self, texts: &[&str]) -> plexus_inference::Result<Vec<Vec<u32>>> {
            if texts.is_empty() {
                return Err(plexus_inference::Error::EmptyInput(
                    "give at least one text",
                ));
            }
            if texts.iter().any(|t| t.trim().is_empty()) {
                return Err(plexus_inference::Error::EmptyInput("a text is empty"));
            }
            Ok(texts
                .iter()
                .map(|t| vec![0; t.split_whitespace().count() + 2])
                .collect())
        }
        fn embed(&self, texts: &[&str]) -> plexus_inference::Result<Vec<Vec<f32>>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    vec![
                        i as f32 + self.offset,
                        t.split_whitespace().count() as f32 + self.offset,
                    ]
                })
                .collect())
        }
    }

    /// Echoes the last message, one token per character, up to max_tokens, streaming each
    /// character as a piece.
    pub(crate) struct FakeChat;

    impl ChatEngine for FakeChat {
        fn complete(
            &mut self,
            messages: &[Message],
            params: &GenerateParams,
            on_text: &mut dyn FnMut(&str),
        ) -> plexus_inference::Result<Completion> {
            let text: String = messages
                .last()
                .unwrap()
                .content
                .chars()
                .take(params.max_tokens)
                .collect();
            let mut piece = [0; 4];
            for c in text.chars() {
                on_text(c.encode_utf8(&mut piece));
            }
            let n = text.chars().count();
            Ok(Completion {
                tokens: (0..n as u32).collect(),
                finish_reason: if n == params.max_tokens {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                },
                usage: Usage {
                    prompt_tokens: 5,
                    completion_tokens: n,
                },
                text,
            })
        }
    }

    /// An embedding model "embed" and a chat model "chat" (hashes: sha256 of the names).
    pub(crate) fn models(calls: Arc<AtomicUsize>, offset: f32) -> Models {
        Models::from_loaded(vec![
            Loaded {
                name: "embed".into(),
                hash: plexus_types::sha256(&[b"embed"]),
                kind: ModelKind::Embedding,
                engine: Engine::Embedding(Box::new(FakeEmbedder { calls, offset })),
            },
            Loaded {
                name: "chat".into(),
                hash: plexus_types::sha256(&[b"chat"]),
                kind: ModelKind::Chat,
                engine: Engine::Chat(Mutex::new(Box::new(FakeChat))),
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::ErrorOutput;
    use crate::stream::{Event, Streams};
    use plexus_types::sha256;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn models(calls: Arc<AtomicUsize>) -> Models {
        fakes::models(calls, 0.0)
    }

    fn work(job: u8, model: &[u8], max_units: u32, input: &str) -> Work {
        Work {
            job: JobId::from_bytes([job; 32]),
            model: sha256(&[model]),
            max_units,
            input: Input::Bytes(input.as_bytes().to_vec()),
            stream: None,
        }
    }

    fn run_all(models: &Models, work: Vec<Work>, max_output: u32) -> BTreeMap<JobId, Outcome> {
        let mut all = BTreeMap::new();
        run(models, work, max_output, |outcomes| {
            for o in outcomes {
                assert!(all.insert(o.job(), o).is_none(), "one outcome per job");
            }
        });
        all
    }

    fn done_of(o: &Outcome) -> (serde_json::Value, u32) {
        match o {
            Outcome::Done { output, units, .. } => {
                (serde_json::from_slice(output).unwrap(), *units)
            }
            Outcome::Failed { reason, .. } => panic!("failed: {reason}"),
        }
    }

    fn error_code(o: &Outcome) -> String {
        let (v, units) = done_of(o);
        assert_eq!(units, 1, "an error output bills one unit");
        v["error"]["code"].as_str().unwrap().to_string()
    }

    #[test]
    fn large_batches_are_emitted_in_chunks_of_whole_jobs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let models = models(calls.clone());
        // 50 jobs of 2 texts: chunks of at most 64 texts, never splitting a job.
        let work: Vec<Work> = (0..50u8)
            .map(|i| work(i, b"embed", 100, r#"{"texts":["a b","c"]}"#))
            .collect();
        let mut emitted = Vec::new();
        run(&models, work, 1 << 20, |outcomes| {
            emitted.push(outcomes.len())
        });
        assert_eq!(emitted, vec![32, 18]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn embeddings_of_a_batch_run_in_one_call_and_split_back() {
        let calls = Arc::new(AtomicUsize::new(0));
        let models = models(calls.clone());
        let outcomes = run_all(
            &models,
            vec![
                work(1, b"embed", 100, r#"{"texts":["a b","c"]}"#),
                work(2, b"embed", 100, r#"{"texts":["d e f"]}"#),
                work(3, b"embed", 100, r#"{"texts":["g","h","i j"]}"#),
            ],
            1 << 20,
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let (v, units) = done_of(&outcomes[&JobId::from_bytes([1; 32])]);
        assert_eq!(v["model"], "embed");
        assert_eq!(
            v["model_hash"],
            plexus_types::digest_hex(&sha256(&[b"embed"]))
        );
        assert_eq!(v["embeddings"], serde_json::json!([[0.0, 2.0], [1.0, 1.0]]));
        assert_eq!(units, 4 + 3);
        let (v, units) = done_of(&outcomes[&JobId::from_bytes([2; 32])]);
        assert_eq!(v["embeddings"], serde_json::json!([[2.0, 3.0]]));
        assert_eq!(units, 5);
        let (v, units) = done_of(&outcomes[&JobId::from_bytes([3; 32])]);
        assert_eq!(
            v["embeddings"],
            serde_json::json!([[3.0, 1.0], [4.0, 1.0], [5.0, 2.0]])
        );
        assert_eq!(units, 3 + 3 + 4);
    }

    #[test]
    fn the_output_bytes_are_the_compact_json_of_the_payload() {
        let models = models(Arc::new(AtomicUsize::new(0)));
        let outcomes = run_all(
            &models,
            vec![work(1, b"embed", 10, r#"{"texts":["x"]}"#)],
            1 << 20,
        );
        let Outcome::Done { output, model, .. } = &outcomes[&JobId::from_bytes([1; 32])] else {
            panic!()
        };
        assert_eq!(*model, sha256(&[b"embed"]));
        let expected = payload::to_bytes(&EmbedOutput {
            model: "embed".into(),
            model_hash: plexus_types::digest_hex(&sha256(&[b"embed"])),
            embeddings: vec![vec![0.0, 1.0]],
        });
        assert_eq!(output, &expected);
    }

    #[test]
    fn unusable_embedding_inputs_get_error_outputs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let models = models(calls.clone());
        let outcomes = run_all(
            &models,
            vec![
                work(1, b"embed", 100, "not json"),
                work(2, b"embed", 100, r#"{"texts":"a"}"#),
                work(3, b"embed", 100, r#"{"texts":[]}"#),
                work(4, b"embed", 100, r#"{"texts":["  "]}"#),
                // 3 words + 2 = 5 tokens > 4.
                work(5, b"embed", 4, r#"{"texts":["a b c"]}"#),
                work(6, b"embed", 5, r#"{"texts":["a b c"]}"#),
                Work {
                    job: JobId::from_bytes([7; 32]),
                    model: sha256(&[b"embed"]),
                    max_units: 5,
                    input: Input::Unusable(ErrorOutput::new(codes::INPUT_UNAVAILABLE, "gone")),
                    stream: None,
                },
            ],
            1 << 20,
        );
        let code = |j: u8| error_code(&outcomes[&JobId::from_bytes([j; 32])]);
        assert_eq!(code(1), codes::INVALID_INPUT);
        assert_eq!(code(2), codes::INVALID_INPUT);
        assert_eq!(code(3), codes::EMPTY_INPUT);
        assert_eq!(code(4), codes::EMPTY_INPUT);
        assert_eq!(code(5), codes::TOO_MANY_UNITS);
        assert_eq!(code(7), codes::INPUT_UNAVAILABLE);
        assert_eq!(done_of(&outcomes[&JobId::from_bytes([6; 32])]).1, 5);
        // Only the good job reached the model.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn too_large_outputs_and_unknown_models() {
        let models = models(Arc::new(AtomicUsize::new(0)));
        let outcomes = run_all(
            &models,
            vec![
                work(1, b"embed", 100, r#"{"texts":["a"]}"#),
                work(2, b"other", 100, r#"{"texts":["a"]}"#),
            ],
            20,
        );
        assert_eq!(
            error_code(&outcomes[&JobId::from_bytes([1; 32])]),
            codes::OUTPUT_TOO_LARGE
        );
        assert!(matches!(
            outcomes[&JobId::from_bytes([2; 32])],
            Outcome::Failed { .. }
        ));
    }

    #[test]
    fn chat_bills_completion_tokens_capped_by_max_units() {
        let models = models(Arc::new(AtomicUsize::new(0)));
        let msg = |text: &str, max_tokens: u32| {
            format!(
                r#"{{"messages":[{{"role":"user","content":"{text}"}}],"max_tokens":{max_tokens}}}"#
            )
        };
        let outcomes = run_all(
            &models,
            vec![
                work(1, b"chat", 100, &msg("hello", 100)),
                // The job's max_units caps the input's max_tokens.
                work(2, b"chat", 3, &msg("hello", 100)),
                work(3, b"chat", 100, &msg("hello", 2)),
                work(4, b"chat", 100, &msg("hello", 0)),
                work(5, b"chat", 100, r#"{"messages":[],"max_tokens":5}"#),
                work(
                    6,
                    b"chat",
                    100,
                    r#"{"messages":[{"role":"robot","content":"x"}],"max_tokens":5}"#,
                ),
            ],
            1 << 20,
        );
        let get = |j: u8| &outcomes[&JobId::from_bytes([j; 32])];
        let (v, units) = done_of(get(1));
        assert_eq!((v["text"].as_str().unwrap(), units), ("hello", 5));
        assert_eq!(v["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 5);
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["model"], "chat");
        let (v, units) = done_of(get(2));
        assert_eq!((v["text"].as_str().unwrap(), units), ("hel", 3));
        assert_eq!(v["finish_reason"], "length");
        assert_eq!(done_of(get(3)).1, 2);
        assert_eq!(error_code(get(4)), codes::INVALID_PARAMETER);
        assert_eq!(error_code(get(5)), codes::EMPTY_INPUT);
        assert_eq!(error_code(get(6)), codes::INVALID_INPUT);
    }

    /// Every event of a stream until its end.
    fn read_stream(streams: &Streams, job: &JobId) -> (Vec<String>, End) {
        let mut reader = streams.subscribe(job).expect("the stream is kept");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut pieces = Vec::new();
            loop {
                match reader.next().await {
                    Event::Delta(piece) => pieces.push(piece),
                    Event::End(end) => return (pieces, end),
                }
            }
        })
    }

    #[test]
    fn chat_text_streams_in_order_and_ends_with_the_outcome() {
        let models = models(Arc::new(AtomicUsize::new(0)));
        let streams = Streams::new();
        let msg = |text: &str, max_tokens: u32| {
            format!(
                r#"{{"messages":[{{"role":"user","content":"{text}"}}],"max_tokens":{max_tokens}}}"#
            )
        };
        let streamed = |n: u8, input: &str, max_units: u32| Work {
            stream: Some(streams.open(JobId::from_bytes([n; 32]))),
            ..work(n, b"chat", max_units, input)
        };
        let outcomes = run_all(
            &models,
            vec![
                streamed(1, &msg("héllo wörld", 100), 100),
                streamed(2, &msg("hello", 100), 3),
                streamed(3, &msg("hello", 0), 100),
                Work {
                    input: Input::Unusable(ErrorOutput::new(codes::INPUT_UNAVAILABLE, "gone")),
                    ..streamed(4, "", 100)
                },
                streamed(5, &msg(&"hello ".repeat(8), 100), 100),
            ],
            // Job 5's output (373 bytes) is larger than this, job 1's (227) is not.
            300,
        );
        let text = |j: u8| done_of(&outcomes[&JobId::from_bytes([j; 32])]).0["text"].clone();

        let (pieces, end) = read_stream(&streams, &JobId::from_bytes([1; 32]));
        assert_eq!(pieces.len(), "héllo wörld".chars().count());
        assert_eq!(pieces.concat(), text(1).as_str().unwrap());
        assert_eq!(
            end,
            End::Done {
                finish_reason: "stop".into()
            }
        );

        let (pieces, end) = read_stream(&streams, &JobId::from_bytes([2; 32]));
        assert_eq!(pieces, vec!["h", "e", "l"]);
        assert_eq!(pieces.concat(), text(2).as_str().unwrap());
        assert_eq!(
            end,
            End::Done {
                finish_reason: "length".into()
            }
        );

        // Jobs whose output is an error stream no text, and end with the error.
        let (pieces, end) = read_stream(&streams, &JobId::from_bytes([3; 32]));
        assert!(pieces.is_empty());
        assert!(matches!(end, End::Error(m) if m.starts_with("invalid_parameter: ")));
        let (_, end) = read_stream(&streams, &JobId::from_bytes([4; 32]));
        assert_eq!(end, End::Error("input_unavailable: gone".into()));
        // Text streamed before the output turned out too large is followed by the error.
        let (pieces, end) = read_stream(&streams, &JobId::from_bytes([5; 32]));
        assert_eq!(pieces.concat(), "hello ".repeat(8));
        assert!(matches!(end, End::Error(m) if m.starts_with("output_too_large: ")));
    }

    #[test]
    fn chat_parameters_default_to_greedy() {
        let (messages, params) = prepare_chat(
            br#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":5000}"#,
            10_000,
        )
        .unwrap();
        assert_eq!(messages, vec![Message::user("hi")]);
        assert_eq!(params.max_tokens, CONTEXT_TOKENS);
        assert_eq!(
            (params.temperature, params.top_p, params.seed),
            (0.0, 1.0, 0)
        );
        let (_, params) = prepare_chat(
            br#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":9,"temperature":0.5,"top_p":0.9,"seed":7,"stop":["x"]}"#,
            4,
        )
        .unwrap();
        assert_eq!(params.max_tokens, 4);
        assert_eq!(
            (params.temperature, params.top_p, params.seed),
            (0.5, 0.9, 7)
        );
        assert_eq!(params.stop, vec!["x".to_string()]);
    }

    /// The real models: one batch of embedding jobs gives each job the vectors and units it
    /// would get alone, and a chat job is reproducible. Needs the models installed (`plexus
    /// models install`); run with `--ignored`.
    #[test]
    #[ignore]
    fn real_models_batch_and_reproduce() {
        let names = vec![
            "all-minilm-l6-v2".to_string(),
            "smollm2-135m-instruct".to_string(),
        ];
        let models = Models::load(&names, None, &Device::Cpu).unwrap();
        let embed_hash = models.iter().next().unwrap().hash;
        let chat_hash = models.iter().nth(1).unwrap().hash;
        let Engine::Embedding(embedder) = &models.get(&embed_hash).unwrap().engine else {
            panic!()
        };
        let texts = [
            vec!["The cat sat on the mat.", "Dogs bark."],
            vec!["A completely different sentence about finance and markets."],
        ];
        let inputs: Vec<String> = texts
            .iter()
            .map(|t| serde_json::json!({ "texts": t }).to_string())
            .collect();
        let mut batch: Vec<Work> = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| Work {
                job: JobId::from_bytes([i as u8; 32]),
                model: embed_hash,
                max_units: 1000,
                input: Input::Bytes(input.clone().into_bytes()),
                stream: None,
            })
            .collect();
        let chat_input =
            r#"{"messages":[{"role":"user","content":"What is 2+2?"}],"max_tokens":8}"#;
        let streams = Streams::new();
        batch.push(Work {
            job: JobId::from_bytes([9; 32]),
            model: chat_hash,
            max_units: 8,
            input: Input::Bytes(chat_input.as_bytes().to_vec()),
            stream: Some(streams.open(JobId::from_bytes([9; 32]))),
        });
        let outcomes = run_all(&models, batch, 1 << 20);
        for (i, t) in texts.iter().enumerate() {
            let (v, units) = done_of(&outcomes[&JobId::from_bytes([i as u8; 32])]);
            let alone = embedder.embed(t).unwrap();
            let tokens: usize = embedder.tokenize(t).unwrap().iter().map(Vec::len).sum();
            assert_eq!(units as usize, tokens);
            let got: Vec<Vec<f32>> = serde_json::from_value(v["embeddings"].clone()).unwrap();
            assert_eq!(got.len(), alone.len());
            for (a, b) in got.iter().zip(&alone) {
                assert!(plexus_inference::embed::cosine(a, b) > 0.99999);
            }
            assert!(units <= payload::embed_max_units(t));
        }
        let first = done_of(&outcomes[&JobId::from_bytes([9; 32])]);
        assert!(first.1 >= 1 && first.1 <= 8);
        // The model's pieces, streamed, are the committed text.
        let (pieces, end) = read_stream(&streams, &JobId::from_bytes([9; 32]));
        assert_eq!(pieces.concat(), first.0["text"].as_str().unwrap());
        assert_eq!(
            end,
            End::Done {
                finish_reason: first.0["finish_reason"].as_str().unwrap().into()
            }
        );
        let again = run_all(
            &models,
            vec![Work {
                job: JobId::from_bytes([9; 32]),
                model: chat_hash,
                max_units: 8,
                input: Input::Bytes(chat_input.as_bytes().to_vec()),
                stream: None,
            }],
            1 << 20,
        );
        assert_eq!(done_of(&again[&JobId::from_bytes([9; 32])]), first);
    }
}
