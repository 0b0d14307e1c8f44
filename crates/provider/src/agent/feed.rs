//! The agent's ingress: finalized block heights from the node's `GET /events/blocks`
//! (server-sent events, one `data: {json}` per block), so the agent wakes as soon as a block
//! is final instead of polling. Reconnects after [`RECONNECT`]; while disconnected, `live`
//! is false and the agent polls instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Wait before reconnecting a lost event stream.
pub(crate) const RECONNECT: Duration = Duration::from_secs(1);
/// An event line longer than this is dropped (a block event is a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

pub(crate) struct Feed {
    /// The latest finalized height announced (0 before the first).
    pub heights: watch::Receiver<u64>,
    /// Whether the stream is connected.
    pub live: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Feed {
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follow the block events of the node at `base_url`.
pub(crate) fn spawn(base_url: &str) -> Feed {
    let (sender, heights) = watch::channel(0);
    let live = Arc::new(AtomicBool::new(false));
    let url = format!("{}/events/blocks", base_url.trim_end_matches('/'));
    let task = tokio::spawn(follow(url, sender, live.clone()));
    Feed {
        heights,
        live,
        task,
    }
}

async fn follow(url: String, sender: watch::Sender<u64>, live: Arc<AtomicBool>) {
    let http = reqwest::Client::new();
    loop {
        match http
            .get(&url)
            .header("accept", "text/event-stream")
            .send()
            .await
        {
            Ok(mut response) if response.status().is_success() => {
                live.store(true, Ordering::Relaxed);
                tracing::debug!(%url, "following finalized blocks");
                let mut lines = Lines::default();
                while let Ok(Some(chunk)) = response.chunk().await {
                    for line in lines.push(&chunk) {
                        if let Some(height) = block_height(&line) {
                            sender.send_replace(height);
                        }
                    }
                }
                live.store(false, Ordering::Relaxed);
                tracing::debug!(%url, "block events ended; reconnecting");
            }
            Ok(response) => {
                tracing::debug!(%url, status = %response.status(), "no block events; polling");
            }
            Err(e) => tracing::debug!(%url, error = %e, "no block events; polling"),
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// Splits a byte stream into lines (without `\n` or `\r\n`).
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            lines.push(line.trim_end_matches(['\n', '\r']).to_string());
        }
        if self.buf.len() > MAX_LINE {
            self.buf.clear();
        }
        lines
    }
}

/// The height in an SSE `data:` line of a block event.
fn block_height(line: &str) -> Option<u64> {
    let data = line.strip_prefix("data:")?.trim_start();
    let event: serde_json::Value = serde_json::from_str(data).ok()?;
    event["height"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_block_events_across_chunks() {
        let mut lines = Lines::default();
        let mut heights = Vec::new();
        let stream = "event: block\ndata: {\"height\":7,\"txs\":0}\n\n: keep-alive\n\
                      event: block\r\ndata:{\"height\":8}\r\n\r\ndata: not json\n";
        for chunk in stream.as_bytes().chunks(5) {
            heights.extend(lines.push(chunk).iter().filter_map(|l| block_height(l)));
        }
        assert_eq!(heights, vec![7, 8]);
        assert_eq!(block_height("event: block"), None);
        assert_eq!(block_height("data: {\"height\":\"x\"}"), None);
    }

    #[test]
    fn an_endless_line_is_dropped() {
        let mut lines = Lines::default();
        assert!(lines.push(&vec![b'x'; MAX_LINE + 1]).is_empty());
        assert_eq!(lines.push(b"data: {\"height\":1}\n").len(), 1);
    }
}
