//! Live chat streams: the text of each chat job as the model produces it, for its owner to
//! read off-chain (`GET /jobs/{id}/stream`) while the commitment goes on chain.
//!
//! The agent [opens](Streams::open) a stream when a chat job enters its backlog, so a reader
//! finds it while the job waits behind others; the [`Writer`] travels with the job to the
//! runner, which [pushes](Writer::push) every final UTF-8 piece the model emits and
//! [finishes](Writer::finish) the stream with the job's end: its `finish_reason`, or the error
//! its output or failure reports. A writer dropped unfinished (the job left this provider,
//! the provider stopped, the batch panicked) ends its stream with an error, so no reader
//! waits forever.
//!
//! A [`Reader`] replays every piece from the first, then follows live ones, then the end.
//! Pieces concatenate to the job's output `text` (the model holds back a tail that could
//! still become a stop string, and emits whole characters only).
//!
//! Memory is bounded: finished streams are kept [`KEEP_FOR`], at most [`MAX_FINISHED`] of
//! them, and at most [`MAX_STREAMS`] streams in all (the oldest go first). A pruned stream
//! lives on for readers already attached; later readers get the stored output instead.

use crate::payload::{ChatOutput, ErrorOutput};
use plexus_types::JobId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a finished stream is kept for late readers.
pub const KEEP_FOR: Duration = Duration::from_secs(10 * 60);
/// Most finished streams kept.
pub const MAX_FINISHED: usize = 256;
/// Most streams kept, live or finished.
pub const MAX_STREAMS: usize = 1024;

/// The end of a stream told to readers when its writer went away unfinished.
const ABANDONED: &str =
    "the job stopped before its result was ready (it left this provider, or the provider stopped)";

/// How a stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Generation finished: `stop` or `length`.
    Done { finish_reason: String },
    /// The job has no text to stream: its output is an error, or it could not run here.
    Error(String),
}

impl End {
    /// The end an output reports: its `finish_reason` for chat, its message for an error
    /// output; `None` for other outputs (embeddings).
    pub(crate) fn of_output(output: &[u8]) -> Option<(String, End)> {
        if let Ok(chat) = serde_json::from_slice::<ChatOutput>(output) {
            let end = End::Done {
                finish_reason: chat.finish_reason,
            };
            return Some((chat.text, end));
        }
        let error = serde_json::from_slice::<ErrorOutput>(output).ok()?;
        let message = format!("{}: {}", error.error.code, error.error.message);
        Some((String::new(), End::Error(message)))
    }
}

/// What a reader gets next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The next piece of text.
    Delta(String),
    /// The stream ended; nothing follows.
    End(End),
}

/// A stream's state: every piece so far, and the end once there is one.
#[derive(Debug, Default)]
struct Progress {
    pieces: Vec<String>,
    end: Option<End>,
}

#[derive(Debug)]
struct Entry {
    /// Order of opening, to tell a reopened stream from its predecessor and evict the oldest.
    seq: u64,
    progress: watch::Sender<Progress>,
    finished_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Registry {
    next_seq: u64,
    entries: BTreeMap<JobId, Entry>,
}

impl Registry {
    /// Drop finished streams older than [`KEEP_FOR`], then the oldest finished beyond
    /// [`MAX_FINISHED`], then the oldest of any beyond [`MAX_STREAMS`].
    fn prune(&mut self, now: Instant) {
        self.entries.retain(|_, e| {
            e.finished_at
                .is_none_or(|at| now.saturating_duration_since(at) <= KEEP_FOR)
        });
        let mut finished: Vec<(Instant, u64, JobId)> = self
            .entries
            .iter()
            .filter_map(|(job, e)| e.finished_at.map(|at| (at, e.seq, *job)))
            .collect();
        if finished.len() > MAX_FINISHED {
            finished.sort_unstable();
            for (_, _, job) in &finished[..finished.len() - MAX_FINISHED] {
                self.entries.remove(job);
            }
        }
        if self.entries.len() > MAX_STREAMS {
            let mut all: Vec<(u64, JobId)> =
                self.entries.iter().map(|(j, e)| (e.seq, *j)).collect();
            all.sort_unstable();
            for (_, job) in &all[..all.len() - MAX_STREAMS] {
                self.entries.remove(job);
            }
        }
    }
}

/// The registry of live chat streams, shared by the agent and runner (writers) and the
/// output server (readers). Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Streams {
    registry: Arc<Mutex<Registry>>,
    /// Bumped whenever a stream opens, to wake readers waiting for one.
    opened: watch::Sender<u64>,
}

impl Default for Streams {
    fn default() -> Self {
        Self::new()
    }
}

impl Streams {
    pub(crate) fn new() -> Self {
        Self {
            registry: Arc::default(),
            opened: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open the stream of `job`, replacing any earlier one (a job run again starts afresh).
    pub(crate) fn open(&self, job: JobId) -> Writer {
        let (progress, seq) = {
            let mut registry = self.lock();
            let seq = registry.next_seq;
            registry.next_seq += 1;
            let progress = watch::Sender::new(Progress::default());
            registry.entries.insert(
                job,
                Entry {
                    seq,
                    progress: progress.clone(),
                    finished_at: None,
                },
            );
            registry.prune(Instant::now());
            (progress, seq)
        };
        self.opened.send_modify(|n| *n = n.wrapping_add(1));
        Writer {
            streams: self.clone(),
            job,
            seq,
            progress,
            ended: false,
        }
    }

    /// A reader of `job`'s stream from its first piece, if the stream is here.
    pub(crate) fn subscribe(&self, job: &JobId) -> Option<Reader> {
        let registry = self.lock();
        let entry = registry.entries.get(job)?;
        Some(Reader {
            progress: entry.progress.subscribe(),
            next: 0,
        })
    }

    /// [`Streams::subscribe`], waiting up to `timeout` for the stream to open.
    pub(crate) async fn wait(&self, job: &JobId, timeout: Duration) -> Option<Reader> {
        // Subscribed before looking, so an open in between still wakes us.
        let mut opened = self.opened.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(reader) = self.subscribe(job) {
                return Some(reader);
            }
            match tokio::time::timeout_at(deadline, opened.changed()).await {
                Ok(Ok(())) => {}
                // Timed out (the sender lives in `self`, so it is never closed).
                _ => return None,
            }
        }
    }

    /// Mark `job`'s stream (if it is still the one opened as `seq`) finished now.
    fn finished(&self, job: &JobId, seq: u64) {
        let mut registry = self.lock();
        let now = Instant::now();
        if let Some(entry) = registry.entries.get_mut(job).filter(|e| e.seq == seq) {
            entry.finished_at = Some(now);
        }
        registry.prune(now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

/// Appends to one job's stream. Dropped unfinished, it ends the stream with an error.
pub(crate) struct Writer {
    streams: Streams,
    job: JobId,
    seq: u64,
    progress: watch::Sender<Progress>,
    ended: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("job", &self.job)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Append a piece of text (no-op once ended).
    pub(crate) fn push(&self, piece: &str) {
        if self.ended || piece.is_empty() {
            return;
        }
        self.progress
            .send_modify(|p| p.pieces.push(piece.to_string()));
    }

    /// End the stream.
    pub(crate) fn finish(mut self, end: End) {
        self.end(end);
    }

    fn end(&mut self, end: End) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.progress.send_modify(|p| p.end = Some(end));
        self.streams.finished(&self.job, self.seq);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.end(End::Error(ABANDONED.into()));
    }
}

/// Reads one job's stream: every piece from the first, then the end.
#[derive(Debug)]
pub(crate) struct Reader {
    progress: watch::Receiver<Progress>,
    /// Index of the next piece to hand out.
    next: usize,
}

impl Reader {
    /// The next piece, or the end (after which the reader has nothing more). Waits for the
    /// writer when it has given out everything so far.
    pub(crate) async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.ready() {
                return event;
            }
            if self.progress.changed().await.is_err() {
                // Every sender is gone (pruned, and the writer too): the last state is all.
                return self
                    .ready()
                    .unwrap_or_else(|| Event::End(End::Error(ABANDONED.into())));
            }
        }
    }

    /// The next event if it is already there.
    fn ready(&mut self) -> Option<Event> {
        let progress = self.progress.borrow_and_update();
        if let Some(piece) = progress.pieces.get(self.next) {
            self.next += 1;
            return Some(Event::Delta(piece.clone()));
        }
        progress.end.clone().map(Event::End)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u8) -> JobId {
        JobId::from_bytes([n; 32])
    }

    fn stop() -> End {
        End::Done {
            finish_reason: "stop".into(),
        }
    }

    /// Every event until the end, the end included.
    async fn drain(mut reader: Reader) -> (Vec<String>, End) {
        let mut pieces = Vec::new();
        loop {
            match reader.next().await {
                Event::Delta(piece) => pieces.push(piece),
                Event::End(end) => return (pieces, end),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_get_every_piece_in_order_early_late_and_during() {
        let streams = Streams::new();
        let first = job(1);
        let early = streams.wait(&first, Duration::from_secs(5));
        let writer = streams.clone();
        // The runner writes from a blocking thread, as the agent runs it.
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let w = writer.open(job(1));
            for i in 0..200 {
                w.push(&format!("{i} "));
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            w.finish(stop());
        });
        let early = early.await.expect("the stream opened within the wait");
        let during = loop {
            if let Some(r) = streams.subscribe(&job(1)) {
                break r;
            }
            tokio::task::yield_now().await;
        };
        let (early, during) = tokio::join!(drain(early), drain(during));
        thread.join().unwrap();
        let late = drain(streams.subscribe(&job(1)).unwrap()).await;
        let expected: Vec<String> = (0..200).map(|i| format!("{i} ")).collect();
        for (pieces, end) in [early, during, late] {
            assert_eq!(pieces, expected);
            assert_eq!(end, stop());
        }
    }

    #[tokio::test]
    async fn waiting_for_a_stream_that_never_opens_times_out() {
        let streams = Streams::new();
        let _other = streams.open(job(2));
        assert!(
            streams
                .wait(&job(1), Duration::from_millis(50))
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_dropped_writer_ends_its_stream_with_an_error() {
        let streams = Streams::new();
        let writer = streams.open(job(1));
        writer.push("partial");
        let reader = streams.subscribe(&job(1)).unwrap();
        drop(writer);
        let (pieces, end) = drain(reader).await;
        assert_eq!(pieces, vec!["partial"]);
        assert!(matches!(end, End::Error(m) if m.contains("stopped")));
    }

    #[tokio::test]
    async fn an_attached_reader_outlives_pruning() {
        let streams = Streams::new();
        let writer = streams.open(job(1));
        writer.push("a");
        writer.finish(stop());
        let reader = streams.subscribe(&job(1)).unwrap();
        streams
            .lock()
            .prune(Instant::now() + KEEP_FOR + Duration::from_secs(1));
        assert!(streams.subscribe(&job(1)).is_none());
        assert_eq!(drain(reader).await, (vec!["a".to_string()], stop()));
    }

    #[test]
    fn reopening_replaces_and_the_old_writer_cannot_finish_the_new_stream() {
        let streams = Streams::new();
        let old = streams.open(job(1));
        let new = streams.open(job(1));
        drop(old);
        assert_eq!(streams.lock().entries[&job(1)].finished_at, None);
        new.push("x");
        new.finish(stop());
        assert!(streams.lock().entries[&job(1)].finished_at.is_some());
    }

    #[test]
    fn memory_is_bounded() {
        let streams = Streams::new();
        // Live streams are kept up to MAX_STREAMS, the oldest evicted first.
        let live: Vec<Writer> = (0..MAX_STREAMS + 10)
            .map(|i| streams.open(JobId::from_bytes(seq_bytes(i))))
            .collect();
        assert_eq!(streams.len(), MAX_STREAMS);
        assert!(
            streams
                .subscribe(&JobId::from_bytes(seq_bytes(0)))
                .is_none()
        );
        assert!(
            streams
                .subscribe(&JobId::from_bytes(seq_bytes(MAX_STREAMS + 9)))
                .is_some()
        );
        // Finished ones down to MAX_FINISHED, the first finished evicted first.
        for w in live {
            w.finish(stop());
        }
        assert_eq!(streams.len(), MAX_FINISHED);
        assert!(
            streams
                .subscribe(&JobId::from_bytes(seq_bytes(MAX_STREAMS + 9)))
                .is_some()
        );
        // And none once they are older than KEEP_FOR.
        let _live = streams.open(job(0));
        streams
            .lock()
            .prune(Instant::now() + KEEP_FOR + Duration::from_secs(1));
        assert_eq!(streams.len(), 1, "only the live stream is left");
    }

    fn seq_bytes(i: usize) -> [u8; 32] {
        let mut bytes = [0xff; 32];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        bytes
    }

    #[test]
    fn the_end_of_an_output() {
        let chat = crate::payload::to_bytes(&ChatOutput {
            model: "m".into(),
            model_hash: "h".into(),
            text: "hi".into(),
            tokens: vec![1, 2],
            finish_reason: "length".into(),
            usage: crate::payload::ChatUsage {
                prompt_tokens: 1,
                completion_tokens: 2,
            },
        });
        assert_eq!(
            End::of_output(&chat),
            Some((
                "hi".into(),
                End::Done {
                    finish_reason: "length".into()
                }
            ))
        );
        let error = crate::payload::to_bytes(&ErrorOutput::new("invalid_input", "bad"));
        assert_eq!(
            End::of_output(&error),
            Some((String::new(), End::Error("invalid_input: bad".into())))
        );
        assert_eq!(
            End::of_output(br#"{"model":"m","model_hash":"h","embeddings":[[0.5]]}"#),
            None
        );
    }
}
