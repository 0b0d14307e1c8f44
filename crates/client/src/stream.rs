//! A chat job's text as its provider generates it: `GET /jobs/{id}/stream` on the provider's
//! endpoint, signed by the job's owner like [`Client::early_result`].
//!
//! The body is NDJSON, one object per line: `{"delta":"<text>"}` for each piece from the
//! first, then one last line, `{"done":true,"finish_reason":"stop"|"length"}` or
//! `{"error":"<message>"}`. The stream is not the result: only the output committed on
//! chain counts, and its `text` must extend exactly what was streamed.

use crate::{Client, ClientError, Result};
use plexus_types::{JobId, PrivateKey};
use serde_json::Value;

/// Longest line accepted (a piece is a few characters; a replay of a stored output is the
/// whole text, at most the chain's payload limit).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// One line of a result stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next piece of text.
    Delta(String),
    /// Generation finished: `stop` or `length`. Nothing follows.
    Done { finish_reason: String },
    /// The job has no (more) text to give: its output is an error, or it could not run on
    /// this provider. Nothing follows.
    Error(String),
}

/// The open body of `GET /jobs/{id}/stream`; read it with [`ResultStream::next`].
#[derive(Debug)]
pub struct ResultStream {
    response: reqwest::Response,
    url: String,
    /// Bytes received and not yet handed out as lines.
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no newline.
    scanned: usize,
    ended: bool,
}

impl Client {
    /// On a provider's endpoint: `GET /jobs/{id}/stream`, signed as the job's `owner`. The
    /// provider waits up to 30 s for a job it does not know yet before answering 404
    /// `unknown_job`; other refusals are [`ClientError::Api`] too (`not_streamable` for a
    /// job that is not chat).
    pub async fn stream_result(&self, owner: &PrivateKey, job: &JobId) -> Result<ResultStream> {
        let url = format!("{}/jobs/{job}/stream", self.base);
        let response = self.owner_get(owner, job, "stream").await?;
        Ok(ResultStream {
            response,
            url,
            buffer: Vec::new(),
            scanned: 0,
            ended: false,
        })
    }
}

impl ResultStream {
    /// The next event; `None` once the body ends (after `Done` or `Error`, or early if the
    /// provider went away: then the text is incomplete).
    pub async fn next(&mut self) -> Result<Option<StreamEvent>> {
        loop {
            if let Some(at) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=self.scanned + at).collect();
                self.scanned = 0;
                match parse_line(&line)? {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            if self.ended {
                // A last line without its newline still counts.
                let line = std::mem::take(&mut self.buffer);
                self.scanned = 0;
                return parse_line(&line);
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > MAX_LINE {
                return Err(ClientError::Decode(format!(
                    "a line of {} is longer than {MAX_LINE} bytes",
                    self.url
                )));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => self.ended = true,
                Err(e) => {
                    return Err(ClientError::Decode(format!(
                        "the stream {} broke off: {e}",
                        self.url
                    )));
                }
            }
        }
    }
}

/// One NDJSON line; `None` for a blank one.
fn parse_line(line: &[u8]) -> Result<Option<StreamEvent>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let bad = |why: &str| {
        ClientError::Decode(format!(
            "bad stream line ({why}): {}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        ))
    };
    let value: Value = serde_json::from_slice(line).map_err(|e| bad(&e.to_string()))?;
    if let Some(delta) = value.get("delta") {
        let delta = delta.as_str().ok_or_else(|| bad("delta is not a string"))?;
        return Ok(Some(StreamEvent::Delta(delta.to_string())));
    }
    if value.get("done") == Some(&Value::Bool(true)) {
        let finish_reason = value["finish_reason"]
            .as_str()
            .ok_or_else(|| bad("no finish_reason"))?;
        return Ok(Some(StreamEvent::Done {
            finish_reason: finish_reason.to_string(),
        }));
    }
    match value.get("error") {
        Some(Value::String(message)) => Ok(Some(StreamEvent::Error(message.clone()))),
        // The shape of the provider's HTTP errors, should one arrive as a line.
        Some(error) => Ok(Some(StreamEvent::Error(
            error["message"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_string),
        ))),
        None => Err(bad("not a delta, done or error")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_types::{Address, Signer, key_from_seed, verify_result_request_auth};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An HTTP/1.1 server for one request: checks the owner's signature for `job`, then
    /// answers `status` with `body` in `chunks` (chunked transfer encoding), a pause
    /// between chunks.
    async fn serve_once(
        owner: Address,
        job: JobId,
        status: &'static str,
        chunks: Vec<&'static str>,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8(request).unwrap();
            assert!(request.starts_with(&format!("GET /jobs/{job}/stream HTTP/1.1\r\n")));
            let auth = request
                .lines()
                .find_map(|l| l.strip_prefix("x-plexus-auth: "))
                .expect("signed");
            assert!(verify_result_request_auth(&owner, &job, auth).is_some());
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            for chunk in chunks {
                let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                socket.write_all(frame.as_bytes()).await.unwrap();
                socket.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            socket.write_all(b"0\r\n\r\n").await.unwrap();
        });
        (url, task)
    }

    async fn all(stream: &mut ResultStream) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        while let Some(event) = stream.next().await.unwrap() {
            events.push(event);
        }
        events
    }

    #[tokio::test]
    async fn reads_lines_split_across_chunks() {
        let owner = key_from_seed(1);
        let job = JobId::from_bytes([3; 32]);
        let (url, server) = serve_once(
            Address::from(&owner.public_key()),
            job,
            "200 OK",
            vec![
                "{\"delta\":\"He",
                "l\"}\n{\"delta\":\"lo \\\"w\\nörld\\\"\"}\n\n{\"del",
                "ta\":\"!\"}\n",
                "{\"done\":true,\"finish_reason\":\"length\"}",
            ],
        )
        .await;
        let mut stream = Client::new(&url).stream_result(&owner, &job).await.unwrap();
        assert_eq!(
            all(&mut stream).await,
            vec![
                StreamEvent::Delta("Hel".into()),
                StreamEvent::Delta("lo \"w\nörld\"".into()),
                StreamEvent::Delta("!".into()),
                StreamEvent::Done {
                    finish_reason: "length".into()
                },
            ]
        );
        assert_eq!(stream.next().await.unwrap(), None);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn errors_in_the_stream_and_before_it() {
        let owner = key_from_seed(1);
        let job = JobId::from_bytes([4; 32]);
        let (url, server) = serve_once(
            Address::from(&owner.public_key()),
            job,
            "200 OK",
            vec!["{\"delta\":\"a\"}\n{\"error\":\"output_too_large: split the job\"}\n"],
        )
        .await;
        let mut stream = Client::new(&url).stream_result(&owner, &job).await.unwrap();
        assert_eq!(
            all(&mut stream).await,
            vec![
                StreamEvent::Delta("a".into()),
                StreamEvent::Error("output_too_large: split the job".into()),
            ]
        );
        server.await.unwrap();

        let (url, server) = serve_once(
            Address::from(&owner.public_key()),
            job,
            "409 Conflict",
            vec![r#"{"error":{"code":"not_streamable","message":"not a chat job"}}"#],
        )
        .await;
        match Client::new(&url).stream_result(&owner, &job).await {
            Err(ClientError::Api {
                status,
                code,
                message,
            }) => assert_eq!(
                (status, code.as_str(), message.as_str()),
                (409, "not_streamable", "not a chat job")
            ),
            other => panic!("expected an API error, got {other:?}"),
        }
        server.await.unwrap();

        let (url, server) = serve_once(
            Address::from(&owner.public_key()),
            job,
            "200 OK",
            vec!["{\"delta\":\"a\"}\n", "not json\n"],
        )
        .await;
        let mut stream = Client::new(&url).stream_result(&owner, &job).await.unwrap();
        assert_eq!(
            stream.next().await.unwrap(),
            Some(StreamEvent::Delta("a".into()))
        );
        assert!(matches!(stream.next().await, Err(ClientError::Decode(_))));
        server.await.unwrap();
    }

    #[test]
    fn lines() {
        assert_eq!(parse_line(b"  \r\n").unwrap(), None);
        assert_eq!(
            parse_line(b"{\"delta\":\"x\"}\r\n").unwrap(),
            Some(StreamEvent::Delta("x".into()))
        );
        assert!(parse_line(b"{\"delta\":1}").is_err());
        assert!(parse_line(b"{\"done\":true}").is_err());
        assert!(parse_line(b"{}").is_err());
    }
}
