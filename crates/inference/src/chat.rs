//! Chat generation with a GGUF llama model (SmolLM2-135M-Instruct).
//!
//! - The tokenizer is built from the GGUF metadata. candle's builder gives SmolLM2 a GPT-2
//!   pre-tokenizer that adds a prefix space; ours replaces it with the one in the model's own
//!   `tokenizer.json`: split digits one by one, then byte-level without a prefix space.
//! - Messages are rendered with the model's chat template (ChatML, with SmolLM2's default
//!   system message when none is given) and end with the assistant header.
//! - Sampling is greedy when `temperature` is 0, otherwise softmax at that temperature,
//!   optionally restricted to the top-p nucleus, drawn from a generator seeded with `seed`:
//!   the same prompt, model hash, parameters and seed give the same tokens.
//! - Generation stops at `<|im_end|>` (or the GGUF's end-of-sequence token), at the first
//!   occurrence of any stop string (the stop string is not returned), after `max_tokens`, or at
//!   the end of the context window.
//! - Text is streamed through a callback as soon as it is final: never half a UTF-8
//!   character, and never text that could still turn out to be the start of a stop string.

use candle_core::Device;
use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use crate::catalog::{ModelFiles, ModelKind};
use crate::error::{Error, Result};
pub use crate::llama::Precision;
use crate::llama::{self, Llama};

/// Most tokens in one sequence, prompt and completion together.
pub const CONTEXT_TOKENS: usize = 2048;
/// Longest prompt accepted, in bytes, before tokenization.
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
/// Default number of tokens to generate.
pub const DEFAULT_MAX_TOKENS: usize = 256;
/// SmolLM2's default system message, as in its chat template.
pub const DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
const END_OF_TURN: &str = "<|im_end|>";

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate (at least 1).
    pub max_tokens: usize,
    /// 0 means greedy; otherwise the softmax temperature.
    pub temperature: f64,
    /// Nucleus size in (0, 1]; 1 samples from the whole distribution.
    pub top_p: f64,
    /// Seed of the sampler; unused when greedy.
    pub seed: u64,
    /// Generation stops before the first occurrence of any of these.
    pub stop: Vec<String>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

impl GenerateParams {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidParameter(m));
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        if self.max_tokens > CONTEXT_TOKENS {
            return Err(Error::InputTooLong {
                what: "max_tokens",
                actual: self.max_tokens,
                limit: CONTEXT_TOKENS,
            });
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return bad("stop strings must not be empty".into());
        }
        Ok(())
    }

    fn sampler(&self) -> LogitsProcessor {
        let sampling = if self.temperature == 0.0 {
            Sampling::ArgMax
        } else if self.top_p < 1.0 {
            Sampling::TopP {
                p: self.top_p,
                temperature: self.temperature,
            }
        } else {
            Sampling::All {
                temperature: self.temperature,
            }
        };
        LogitsProcessor::from_sampling(self.seed, sampling)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// End of turn, end of sequence or a stop string.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Completion {
    pub text: String,
    /// Generated token ids, including a final end-of-turn token if one was produced.
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

/// A loaded chat model.
pub struct ChatModel {
    model: Llama,
    tokenizer: Tokenizer,
    stop_tokens: Vec<u32>,
    precision: Precision,
}

impl std::fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModel")
            .field("hparams", &self.model.hparams)
            .field("precision", &self.precision)
            .finish_non_exhaustive()
    }
}

impl ChatModel {
    /// Loads an installed catalogue model, verifying its checksum first.
    pub fn load(files: &ModelFiles, precision: Precision, device: &Device) -> Result<Self> {
        files.spec.expect_kind(ModelKind::Chat)?;
        let bytes = files.read_verified("model.gguf")?;
        Self::from_gguf_bytes(&bytes, precision, device)
    }

    /// Builds the model and tokenizer from the bytes of a GGUF file.
    pub fn from_gguf_bytes(bytes: &[u8], precision: Precision, device: &Device) -> Result<Self> {
        let ct = llama::read_gguf(bytes).map_err(|e| Error::Format(format!("gguf: {e}")))?;
        let tokenizer = tokenizer_from_gguf(&ct)?;
        let model = Llama::from_gguf(&ct, bytes, precision, device)?;
        let mut stop_tokens: Vec<u32> = tokenizer.token_to_id(END_OF_TURN).into_iter().collect();
        if let Some(eos) = ct
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
        {
            stop_tokens.push(eos);
        }
        Ok(Self {
            model,
            tokenizer,
            stop_tokens,
            precision,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The model's tokenizer (prompt text to ids, as the model was trained).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) are
    /// recognised, nothing is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(Error::tokenizer)?
            .get_ids()
            .to_vec())
    }

    /// Answers one user prompt, streaming text to `on_text`.
    pub fn chat(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        on_text: impl FnMut(&str),
    ) -> Result<Completion> {
        if prompt.trim().is_empty() {
            return Err(Error::EmptyInput("the prompt is empty"));
        }
        self.chat_messages(&[Message::user(prompt)], params, on_text)
    }

    /// Continues a conversation, streaming text to `on_text`.
    pub fn chat_messages(
        &mut self,
        messages: &[Message],
        params: &GenerateParams,
        on_text: impl FnMut(&str),
    ) -> Result<Completion> {
        if messages.is_empty() {
            return Err(Error::EmptyInput("no messages"));
        }
        let prompt = render_template(messages);
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(Error::InputTooLong {
                what: "the prompt (bytes)",
                actual: prompt.len(),
                limit: MAX_PROMPT_BYTES,
            });
        }
        let ids = self.encode(&prompt)?;
        self.generate(&ids, params, on_text)
    }

    /// Generates from prompt token ids.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        mut on_text: impl FnMut(&str),
    ) -> Result<Completion> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(Error::EmptyInput("the prompt has no tokens"));
        }
        let context = CONTEXT_TOKENS.min(self.model.hparams.context_length);
        if prompt.len() >= context {
            return Err(Error::InputTooLong {
                what: "the prompt (tokens)",
                actual: prompt.len(),
                limit: context - 1,
            });
        }
        let mut sampler = params.sampler();
        let mut stream = TextStream::new(&params.stop);
        let mut tokens = Vec::new();
        let mut finish = FinishReason::Length;
        // Before anything touches GPU memory, freeing the last job's cache included: a GPU
        // buffer freed on a thread without the context leaks and poisons the next call.
        crate::bind_device_to_thread(self.model.device())?;
        self.model.clear_cache();
        let mut logits = self.model.forward(prompt, 0)?;
        loop {
            let next = sampler.sample(&logits)?;
            tokens.push(next);
            if self.stop_tokens.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            let text = self
                .tokenizer
                .decode(&tokens, true)
                .map_err(Error::tokenizer)?;
            if stream.push(&text, &mut on_text) {
                finish = FinishReason::Stop;
                break;
            }
            let pos = prompt.len() + tokens.len() - 1;
            if tokens.len() >= params.max_tokens || pos + 1 >= context {
                break;
            }
            logits = self.model.forward(&[next], pos)?;
        }
        let text = stream.finish(&mut on_text);
        Ok(Completion {
            text,
            usage: Usage {
                prompt_tokens: prompt.len(),
                completion_tokens: tokens.len(),
            },
            tokens,
            finish_reason: finish,
        })
    }
}

/// The model's chat template with the generation prompt appended.
pub fn render_template(messages: &[Message]) -> String {
    let mut out = String::new();
    if messages.first().is_none_or(|m| m.role != "system") {
        out.push_str("<|im_start|>system\n");
        out.push_str(DEFAULT_SYSTEM);
        out.push_str("<|im_end|>\n");
    }
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(&m.role);
        out.push('\n');
        out.push_str(&m.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// candle's GGUF tokenizer with the pre-tokenizer SmolLM2's own tokenizer uses.
pub fn tokenizer_from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_gguf(ct).map_err(Error::tokenizer)?;
    let pre = Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ]);
    tokenizer.with_pre_tokenizer(Some(pre));
    Ok(tokenizer)
}

/// Turns the growing decoded text into final pieces for the callback.
struct TextStream<'a> {
    stop: &'a [String],
    text: String,
    emitted: usize,
}

impl<'a> TextStream<'a> {
    fn new(stop: &'a [String]) -> Self {
        Self {
            stop,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Takes the full decoded text so far; returns true when a stop string was found.
    fn push(&mut self, decoded: &str, on_text: &mut impl FnMut(&str)) -> bool {
        self.text = decoded.to_string();
        if let Some(cut) = self
            .stop
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
        {
            self.text.truncate(cut);
            return true;
        }
        // A trailing U+FFFD is half a character still being decoded.
        let mut end = self.text.trim_end_matches('\u{FFFD}').len();
        // Hold back a tail that could still grow into a stop string.
        let hold = self
            .stop
            .iter()
            .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
            .filter(|prefix| self.text[..end].ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        end -= hold;
        if end > self.emitted && self.text.is_char_boundary(end) {
            on_text(&self.text[self.emitted..end]);
            self.emitted = end;
        }
        false
    }

    fn finish(mut self, on_text: &mut impl FnMut(&str)) -> String {
        if self.text.len() > self.emitted {
            on_text(&self.text[self.emitted..]);
            self.emitted = self.text.len();
        }
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds successive full decodings, as the generator does.
    fn run(stop: &[&str], decoded: &[&str]) -> (Vec<String>, String, bool) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut s = TextStream::new(&stop);
        let mut out = Vec::new();
        let mut stopped = false;
        for d in decoded {
            if s.push(d, &mut |t: &str| out.push(t.to_string())) {
                stopped = true;
                break;
            }
        }
        let text = s.finish(&mut |t: &str| out.push(t.to_string()));
        (out, text, stopped)
    }

    #[test]
    fn stream_emits_everything_without_stops() {
        let (out, text, stopped) = run(&[], &["Hel", "Hello", "Hello world"]);
        assert_eq!(out.concat(), "Hello world");
        assert_eq!(text, "Hello world");
        assert!(!stopped);
    }

    #[test]
    fn stream_holds_back_possible_stop_prefix_and_cuts_at_stop() {
        let (out, text, stopped) = run(&["END"], &["one E", "one EN", "one END two"]);
        assert!(stopped);
        assert_eq!(text, "one ");
        assert_eq!(out.concat(), "one ");
        // "E" was never emitted before we knew it was part of the stop string.
        assert!(out.iter().all(|p| !p.contains('E')));
    }

    #[test]
    fn stream_releases_false_alarm() {
        let (out, text, stopped) = run(&["END"], &["an E", "an END", "an ENDx"]);
        assert!(stopped);
        assert_eq!(text, "an ");
        assert_eq!(out.concat(), "an ");
        let (out, text, _) = run(&["END"], &["an E", "an Elk"]);
        assert_eq!(text, "an Elk");
        assert_eq!(out.concat(), "an Elk");
    }

    #[test]
    fn stream_waits_for_whole_characters() {
        let (out, text, _) = run(&[], &["caf", "caf\u{FFFD}", "café"]);
        assert_eq!(text, "café");
        assert_eq!(out, ["caf", "é"]);
    }

    #[test]
    fn template_adds_default_system_and_generation_prompt() {
        let t = render_template(&[Message::user("Hi")]);
        assert_eq!(
            t,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let t = render_template(&[
            Message {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            Message::user("Hi"),
        ]);
        assert!(t.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
    }

    #[test]
    fn params_are_validated() {
        let ok = GenerateParams::default();
        assert!(ok.validate().is_ok());
        for bad in [
            GenerateParams {
                max_tokens: 0,
                ..ok.clone()
            },
            GenerateParams {
                temperature: -1.0,
                ..ok.clone()
            },
            GenerateParams {
                top_p: 0.0,
                ..ok.clone()
            },
            GenerateParams {
                stop: vec![String::new()],
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let e = GenerateParams {
            max_tokens: CONTEXT_TOKENS + 1,
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("input too long"), "{e}");
    }
}
