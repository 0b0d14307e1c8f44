//! Verification off chain: the verdict a verifier reveals, and the testing switch that makes
//! a provider cheat.
//!
//! # Verdict ([`agrees`])
//!
//! A verifier re-runs the job exactly as a provider does (same runner, same output format)
//! and compares its output bytes with the provider's revealed ones:
//!
//! - identical bytes always agree (the ledger refuses any other verdict for equal hashes);
//! - chat: only identical bytes agree (exact mode: same tokens, same text; the ledger
//!   enforces it);
//! - embeddings: both outputs hold the same number of vectors with the same dimensions and
//!   no component differs by more than `embedding_tolerance_micros` millionths (the chain's
//!   parameter; other CPUs' kernels differ in the last bits), or both are error outputs with
//!   the same code (an input that cannot be run fails the same way everywhere).
//!
//! # Cheating, for tests ([`cheats`], [`corrupt`])
//!
//! `plexus provider run --cheat-rate R` corrupts the fraction `R` of its own job outputs,
//! chosen from the job id (so a restart picks the same jobs): embeddings are negated, chat
//! text is altered. Its re-runs as a verifier stay honest. It exists to test verification
//! end to end; a cheating provider is slashed.

use crate::payload::{self, ChatOutput, EmbedOutput, ErrorOutput};
use plexus_inference::catalog::ModelKind;
use plexus_types::{JobId, sha256};

/// The ledger's default `embedding_tolerance_micros`, for a node that does not report one.
pub const DEFAULT_EMBEDDING_TOLERANCE_MICROS: u32 = 100;

const CHEAT_NAMESPACE: &[u8] = b"_PLEXUS_TEST_CHEAT_V1";

/// Whether the verifier's output `ours` agrees with the provider's `theirs` for a model of
/// `kind` (the rules are in the module docs).
pub fn agrees(kind: ModelKind, ours: &[u8], theirs: &[u8], tolerance_micros: u32) -> bool {
    if ours == theirs {
        return true;
    }
    if kind == ModelKind::Chat {
        return false;
    }
    if let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<ErrorOutput>(ours),
        serde_json::from_slice::<ErrorOutput>(theirs),
    ) {
        return a.error.code == b.error.code;
    }
    let (Ok(a), Ok(b)) = (
        serde_json::from_slice::<EmbedOutput>(ours),
        serde_json::from_slice::<EmbedOutput>(theirs),
    ) else {
        return false;
    };
    let tolerance = f64::from(tolerance_micros) / 1e6;
    a.embeddings.len() == b.embeddings.len()
        && a.embeddings.iter().zip(&b.embeddings).all(|(x, y)| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| (f64::from(*p) - f64::from(*q)).abs() <= tolerance)
        })
}

/// Whether a provider cheating on the fraction `rate` of its jobs cheats on `job`: a
/// deterministic draw from the job id, so 0 never and 1 always.
pub fn cheats(rate: f64, job: &JobId) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let draw = sha256(&[CHEAT_NAMESPACE, job.as_bytes()]);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&draw.as_ref()[..8]);
    // In [0, 1): the top 53 bits.
    let point = (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    point < rate
}

/// A visibly wrong version of a job output: every embedding component negated, or the chat
/// text altered. Error outputs (nothing was computed) stay as they are.
pub fn corrupt(output: &[u8]) -> Vec<u8> {
    if let Ok(mut embed) = serde_json::from_slice::<EmbedOutput>(output) {
        for v in embed.embeddings.iter_mut().flatten() {
            // 0 stays 0 when negated; move it too.
            *v = if *v == 0.0 { 1.0 } else { -*v };
        }
        return payload::to_bytes(&embed);
    }
    if let Ok(mut chat) = serde_json::from_slice::<ChatOutput>(output) {
        chat.text = format!("{} (altered by a cheating provider)", chat.text);
        return payload::to_bytes(&chat);
    }
    output.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::codes;

    fn embed(vectors: Vec<Vec<f32>>) -> Vec<u8> {
        payload::to_bytes(&EmbedOutput {
            model: "m".into(),
            model_hash: "00".into(),
            embeddings: vectors,
        })
    }

    #[test]
    fn embedding_verdicts_follow_the_tolerance() {
        let a = embed(vec![vec![0.5, -0.25], vec![0.1, 0.2]]);
        let near = embed(vec![vec![0.50009, -0.25], vec![0.1, 0.2]]);
        let far = embed(vec![vec![0.5002, -0.25], vec![0.1, 0.2]]);
        let e = ModelKind::Embedding;
        assert!(agrees(e, &a, &a, 0));
        assert!(agrees(e, &a, &near, 100));
        assert!(!agrees(e, &a, &near, 50));
        assert!(!agrees(e, &a, &far, 100));
        // Another count or shape never agrees.
        assert!(!agrees(e, &a, &embed(vec![vec![0.5, -0.25]]), 1_000_000));
        assert!(!agrees(
            e,
            &a,
            &embed(vec![vec![0.5], vec![0.1, 0.2]]),
            1_000_000
        ));
        assert!(!agrees(e, &a, b"not json", 1_000_000));
        // Errors agree on their code.
        let err = |code, msg: &str| payload::to_bytes(&ErrorOutput::new(code, msg));
        assert!(agrees(
            e,
            &err(codes::INVALID_INPUT, "x"),
            &err(codes::INVALID_INPUT, "y"),
            0
        ));
        assert!(!agrees(
            e,
            &err(codes::INVALID_INPUT, "x"),
            &err(codes::EMPTY_INPUT, "x"),
            0
        ));
        assert!(!agrees(e, &a, &err(codes::INVALID_INPUT, "x"), 1_000_000));
    }

    #[test]
    fn chat_verdicts_are_exact() {
        let out = |text: &str| {
            payload::to_bytes(&ChatOutput {
                model: "c".into(),
                model_hash: "00".into(),
                text: text.into(),
                tokens: vec![1, 2],
                finish_reason: "stop".into(),
                usage: payload::ChatUsage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                },
            })
        };
        assert!(agrees(ModelKind::Chat, &out("hi"), &out("hi"), 0));
        assert!(!agrees(ModelKind::Chat, &out("hi"), &out("hi!"), 1_000_000));
    }

    #[test]
    fn cheating_is_deterministic_visible_and_proportional() {
        let jobs: Vec<JobId> = (0..2000u32)
            .map(|i| JobId::from_bytes(sha256(&[&i.to_be_bytes()]).0))
            .collect();
        assert!(jobs.iter().all(|j| !cheats(0.0, j) && cheats(1.0, j)));
        let n = jobs.iter().filter(|j| cheats(0.25, j)).count();
        assert!((400..600).contains(&n), "{n} of 2000 at 25%");
        assert_eq!(cheats(0.25, &jobs[0]), cheats(0.25, &jobs[0]));

        let honest = embed(vec![vec![0.5, 0.0, -0.25]]);
        let bad = corrupt(&honest);
        assert_ne!(bad, honest);
        assert!(!agrees(ModelKind::Embedding, &honest, &bad, 1000));
        let chat = payload::to_bytes(&ChatOutput {
            model: "c".into(),
            model_hash: "00".into(),
            text: "hello".into(),
            tokens: vec![1],
            finish_reason: "stop".into(),
            usage: payload::ChatUsage {
                prompt_tokens: 1,
                completion_tokens: 1,
            },
        });
        let altered: ChatOutput = serde_json::from_slice(&corrupt(&chat)).unwrap();
        assert_ne!(altered.text, "hello");
        let error = payload::to_bytes(&ErrorOutput::new(codes::INVALID_INPUT, "x"));
        assert_eq!(corrupt(&error), error);
    }
}
