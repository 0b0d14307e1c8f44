//! The off-chain payloads of jobs: what a poster stores as a job's input and what a provider
//! returns as its output. The chain only sees their sha256 and size.
//!
//! Inputs and outputs are JSON. An output is serialized with [`serde_json::to_vec`]
//! (compact, fields in declaration order, floats in their shortest round-trip form): that
//! exact byte string is the output, and `output_hash = sha256(bytes)`.
//!
//! | model kind | input | output | units billed |
//! |---|---|---|---|
//! | embedding | [`EmbedInput`] | [`EmbedOutput`] | input tokens, after truncation, `[CLS]`/`[SEP]` included |
//! | chat | [`ChatInput`] | [`ChatOutput`] | completion tokens |
//! | either, input unusable | | [`ErrorOutput`] | 1 |
//!
//! An input that cannot be run (not JSON, wrong shape, no texts, more units than the job's
//! `max_units`, blob unavailable) still gets a result, an [`ErrorOutput`] billed one unit, so
//! the poster learns why and the provider is not penalised for a job nobody could run.
//!
//! Chat generates at most `min(input.max_tokens, job.max_units,`
//! [`CONTEXT_TOKENS`](plexus_inference::chat::CONTEXT_TOKENS)`)` tokens, always at full
//! precision ([`Precision::Exact`](plexus_inference::Precision::Exact)) so a verifier
//! re-running the job compares the same tokens. Unset sampling fields mean greedy decoding
//! (`temperature` 0), `top_p` 1 and `seed` 0.

use serde::{Deserialize, Serialize};

pub use plexus_inference::Message;

/// Longest embedding input counted by [`embed_max_units`], in tokens (the model truncates
/// there).
pub const EMBED_MAX_TOKENS_PER_TEXT: u32 = plexus_inference::embed::MAX_TOKENS as u32;

/// Input of an embedding job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedInput {
    /// The texts to embed, each non-blank.
    pub texts: Vec<String>,
}

/// Output of an embedding job: one L2-normalised vector per input text, in input order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedOutput {
    /// Catalogue name of the model.
    pub model: String,
    /// The model's on-chain hash, 64 hex digits.
    pub model_hash: String,
    pub embeddings: Vec<Vec<f32>>,
}

/// Input of a chat job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatInput {
    /// The conversation, at least one message; roles are `system`, `user` or `assistant`.
    pub messages: Vec<Message>,
    /// Most tokens to generate (at least 1); the job's `max_units` caps it too.
    pub max_tokens: u32,
    /// 0 or unset: greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus mass in (0, 1]; unset: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sampler seed; unset: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Generation stops before the first of these.
    #[serde(default)]
    pub stop: Vec<String>,
}

/// Output of a chat job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatOutput {
    pub model: String,
    pub model_hash: String,
    pub text: String,
    /// Generated token ids, a final end-of-turn token included if one was produced.
    pub tokens: Vec<u32>,
    /// `stop` (end of turn or a stop string) or `length` (token limit or context window).
    pub finish_reason: String,
    pub usage: ChatUsage,
}

/// Token counts of a chat job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Output of a job whose input could not be run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorOutput {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, one of the `*` constants of [`codes`].
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
}

/// The error codes of [`ErrorOutput`].
pub mod codes {
    /// Not JSON, or not the shape the model kind takes.
    pub const INVALID_INPUT: &str = "invalid_input";
    /// No texts, a blank text, or no messages.
    pub const EMPTY_INPUT: &str = "empty_input";
    /// Too many texts, too long a text or prompt.
    pub const INPUT_TOO_LONG: &str = "input_too_long";
    /// A parameter out of range (`max_tokens` 0, `top_p` outside (0, 1], ...).
    pub const INVALID_PARAMETER: &str = "invalid_parameter";
    /// The input needs more units than the job's `max_units` allows.
    pub const TOO_MANY_UNITS: &str = "too_many_units";
    /// The result would be larger than the chain's `max_payload_size`.
    pub const OUTPUT_TOO_LARGE: &str = "output_too_large";
    /// The input blob could not be found by its hash.
    pub const INPUT_UNAVAILABLE: &str = "input_unavailable";
}

impl ErrorOutput {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorBody {
                code: code.to_string(),
                message: message.into(),
            },
        }
    }
}

/// The bytes of an output: compact JSON, the exact string that is hashed.
pub fn to_bytes<T: Serialize>(output: &T) -> Vec<u8> {
    // Serializing these plain structs to a Vec cannot fail (no maps with non-string keys, no
    // fallible Serialize impls).
    serde_json::to_vec(output).expect("payload structs serialize")
}

/// An upper bound on the units (input tokens) an embedding job over `texts` can bill,
/// computable without the model: the sum over texts of `min(weight + 2, 256)`. Saturating.
///
/// A WordPiece token covers at least one character of the normalised text (a word it
/// cannot split is one `[UNK]`); 2 is for `[CLS]` and `[SEP]`; the model truncates at 256.
/// Normalisation decomposes characters (NFD) and drops the non-spacing marks, so a
/// character below U+0300 (ASCII, Latin-1, Latin Extended) stays at most one character, but
/// others can become several that each make a token: a Hangul syllable splits into up to 3
/// jamo, and a two-part Indic vowel sign into 2 (`"কো"` is 5 tokens). So the weight of a
/// text counts 1 per character below U+0300 and 3 per character from U+0300 up.
///
/// Posters use it as the job's `max_units`, so an embedding job is never answered with
/// `too_many_units`; what the job does not use is refunded at settlement.
pub fn embed_max_units<S: AsRef<str>>(texts: &[S]) -> u32 {
    texts.iter().fold(0u32, |sum, text| {
        let weight = text.as_ref().chars().fold(0u32, |w, c| {
            w.saturating_add(if c < '\u{300}' { 1 } else { 3 })
        });
        sum.saturating_add(weight.saturating_add(2).min(EMBED_MAX_TOKENS_PER_TEXT))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_roundtrip_and_compact_bytes() {
        let input = EmbedInput {
            texts: vec!["hello".into(), "world".into()],
        };
        let bytes = to_bytes(&input);
        assert_eq!(bytes, br#"{"texts":["hello","world"]}"#);
        assert_eq!(serde_json::from_slice::<EmbedInput>(&bytes).unwrap(), input);

        let output = EmbedOutput {
            model: "all-minilm-l6-v2".into(),
            model_hash: "ab".repeat(32),
            embeddings: vec![vec![0.1, -0.25, 1.0e-8], vec![]],
        };
        let bytes = to_bytes(&output);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(!text.contains(' ') && !text.contains('\n'), "{text}");
        assert!(text.starts_with(r#"{"model":"all-minilm-l6-v2","model_hash":"#));
        let back: EmbedOutput = serde_json::from_slice(&bytes).unwrap();
        // f32 survives the round trip bit for bit, so re-serializing gives the same bytes.
        assert_eq!(back, output);
        assert_eq!(to_bytes(&back), bytes);
    }

    #[test]
    fn chat_roundtrip_and_defaults() {
        let input: ChatInput = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#,
        )
        .unwrap();
        assert_eq!(input.messages, vec![Message::user("hi")]);
        assert_eq!(input.max_tokens, 16);
        assert_eq!(
            (input.temperature, input.top_p, input.seed),
            (None, None, None)
        );
        assert!(input.stop.is_empty());
        let full = ChatInput {
            temperature: Some(0.7),
            top_p: Some(0.9),
            seed: Some(42),
            stop: vec!["\n".into()],
            ..input
        };
        let back: ChatInput = serde_json::from_slice(&to_bytes(&full)).unwrap();
        assert_eq!(back, full);

        let output = ChatOutput {
            model: "smollm2-135m-instruct".into(),
            model_hash: "cd".repeat(32),
            text: "Hello!".into(),
            tokens: vec![1, 2, 3],
            finish_reason: "stop".into(),
            usage: ChatUsage {
                prompt_tokens: 20,
                completion_tokens: 3,
            },
        };
        let back: ChatOutput = serde_json::from_slice(&to_bytes(&output)).unwrap();
        assert_eq!(back, output);
    }

    #[test]
    fn inputs_reject_wrong_shapes() {
        assert!(serde_json::from_str::<EmbedInput>(r#"{"text":["a"]}"#).is_err());
        assert!(serde_json::from_str::<EmbedInput>(r#"{"texts":"a"}"#).is_err());
        assert!(serde_json::from_str::<EmbedInput>(r#"{"texts":["a"],"x":1}"#).is_err());
        assert!(serde_json::from_str::<ChatInput>(r#"{"messages":[]}"#).is_err());
        assert!(serde_json::from_str::<ChatInput>(r#"{"messages":[],"max_tokens":-1}"#).is_err());
    }

    #[test]
    fn error_output_shape() {
        let e = ErrorOutput::new(codes::EMPTY_INPUT, "give at least one text");
        assert_eq!(
            to_bytes(&e),
            br#"{"error":{"code":"empty_input","message":"give at least one text"}}"#
        );
    }

    #[test]
    fn embed_max_units_formula() {
        assert_eq!(embed_max_units::<&str>(&[]), 0);
        assert_eq!(embed_max_units(&["a"]), 3);
        assert_eq!(embed_max_units(&["hello world"]), 13);
        // Characters, not bytes.
        assert_eq!(embed_max_units(&["héllo"]), 7);
        // A Hangul syllable may become three jamo, a Bengali vowel sign two letters.
        assert_eq!(embed_max_units(&["한국"]), 8);
        assert_eq!(embed_max_units(&["কো"]), 8);
        // Truncation at 256 per text.
        assert_eq!(embed_max_units(&["x".repeat(10_000)]), 256);
        assert_eq!(embed_max_units(&["x".repeat(254), "ab".into()]), 256 + 4);
    }

    /// The bound holds against the real tokenizer. Needs the model installed
    /// (`plexus models install all-minilm-l6-v2`); run with `--ignored`.
    #[test]
    #[ignore]
    fn embed_max_units_bounds_real_token_counts() {
        let files = plexus_inference::ModelFiles::locate("all-minilm-l6-v2", None).unwrap();
        let embedder =
            plexus_inference::Embedder::load(&files, &plexus_inference::Device::Cpu).unwrap();
        let tricky = [
            "a",
            "Hello, world!",
            "i.e. e.g. U.S.A. ... !!! ???",
            "1234567890 3.14159 1,000,000",
            "ﬁnancial ﬂow ½ ² ™ ℃ Ⅻ",
            "İstanbul ΐ ǅ Å ﬀ",
            "naïve café résumé coöperate",
            "日本語のテキスト 中文文本",
            "한국어 텍스트 안녕하세요",
            "கொடு தொலை கோ",
            "কো কৌ বোকা",
            "കൊ കോ കൌ",
            "ಕೀ ಕೊ ಕೋ",
            "ශ්‍රී ලංකා කො",
            "ጤና ይስጥልኝ ภาษาไทย",
            "கொ",
            "কো",
            "കൊ",
            "ಕೊ",
            "한",
            "ǅ",
            "emoji 😀🎉👍🏽 family 👨‍👩‍👧‍👦",
            "zero\u{200b}width\u{200d}joiner\u{feff}bom",
            "tab\tnew\nline\r\n  spaces   ",
            "supercalifragilisticexpialidocious antidisestablishmentarianism",
            "مرحبا بالعالم שלום עולם",
            "Ελληνικά Русский текст",
            "x̸̡̛͓̘̥̩͍͇̪̓̆̀̈́̇̚ combining",
            "\u{0}\u{1}control\u{7f}",
        ];
        let long = "token ".repeat(400);
        let mut texts: Vec<&str> = tricky.to_vec();
        texts.push(&long);
        for text in texts {
            let ids = embedder.tokenize(&[text]).unwrap();
            let actual = ids[0].len() as u32;
            let bound = embed_max_units(&[text]);
            assert!(actual <= bound, "{text:?}: {actual} tokens > bound {bound}");
        }
    }
}
