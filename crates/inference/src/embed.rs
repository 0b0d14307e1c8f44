//! Sentence embeddings with a BERT encoder (all-MiniLM-L6-v2), computed the way
//! sentence-transformers does:
//!
//! 1. tokenize with the model's `tokenizer.json`, adding `[CLS]`/`[SEP]`, truncating each text
//!    at [`MAX_TOKENS`] tokens (the tokenizer's built-in fixed padding/truncation at 128 is
//!    switched off);
//! 2. run the encoder on batches padded to the longest text of the batch, with the padding
//!    masked out of attention;
//! 3. mean-pool the last hidden states over the attention mask;
//! 4. L2-normalise.
//!
//! Texts are batched by length (sorted by token count, stable on ties), so a batch holds
//! texts of similar length and little time goes into padding; results are put back in input
//! order. Masked padding contributes exact zeros, so a text's vector does not depend on what
//! it is batched with beyond floating-point summation order in the matrix products.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

use crate::bert::{BertModel, Config};
use crate::catalog::{ModelFiles, ModelKind};
use crate::error::{Error, Result};

/// Texts longer than this many tokens (counting `[CLS]` and `[SEP]`) are truncated, as
/// sentence-transformers does for this model.
pub const MAX_TOKENS: usize = 256;
/// Longest text accepted, in bytes. Anything beyond [`MAX_TOKENS`] tokens is truncated
/// anyway; this bounds the work a request can ask of the tokenizer.
pub const MAX_TEXT_BYTES: usize = 32 * 1024;
/// Most texts accepted in one call.
pub const MAX_TEXTS: usize = 4096;
/// Texts per forward pass.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// A loaded embedding model.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    hidden_size: usize,
    batch_size: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("hidden_size", &self.hidden_size)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads an installed catalogue model, verifying every file's checksum first.
    pub fn load(files: &ModelFiles, device: &Device) -> Result<Self> {
        files.spec.expect_kind(ModelKind::Embedding)?;
        let config = files.read_verified("config.json")?;
        let tokenizer = files.read_verified("tokenizer.json")?;
        let weights = files.read_verified("model.safetensors")?;
        Self::from_bytes(&config, &tokenizer, weights, device)
    }

    /// Builds an embedder from the raw bytes of `config.json`, `tokenizer.json` and
    /// `model.safetensors` (no checksum: callers that need identity use [`Embedder::load`]).
    pub fn from_bytes(
        config_json: &[u8],
        tokenizer_json: &[u8],
        safetensors: Vec<u8>,
        device: &Device,
    ) -> Result<Self> {
        let config: Config = serde_json::from_slice(config_json)
            .map_err(|e| Error::Format(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json).map_err(Error::tokenizer)?;
        // The file carries fixed padding and truncation at 128; we pad per batch ourselves and
        // truncate at MAX_TOKENS like sentence-transformers.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS.min(config.max_position_embeddings),
                ..Default::default()
            }))
            .map_err(Error::tokenizer)?;
        // The encoder runs on the CPU whatever `device` is (see `bert`).
        let _ = device;
        let vb = VarBuilder::from_buffered_safetensors(safetensors, DType::F32, &Device::Cpu)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self {
            model,
            tokenizer,
            hidden_size: config.hidden_size,
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Sets how many texts go into one forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Length of each embedding vector.
    pub fn dimension(&self) -> usize {
        self.hidden_size
    }

    /// Token ids of each text, after truncation, with `[CLS]`/`[SEP]`.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        check_texts(texts)?;
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(Error::tokenizer)?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// One L2-normalised vector per text, in input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids = self.tokenize(texts)?;
        // Longest first, ties in input order: deterministic for a given input.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let vectors = self.embed_batch(&batch)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn embed_batch(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let h = self.hidden_size;
        let hidden = self.model.forward_packed(batch)?; // (total tokens, h), no padding
        let mut out = Vec::with_capacity(batch.len());
        let mut rows = hidden.chunks_exact(h);
        for text in batch {
            // Mean over the text's tokens, then L2 normalisation.
            let mut mean = vec![0f32; h];
            for row in rows.by_ref().take(text.len()) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += v;
                }
            }
            let n = text.len() as f32;
            mean.iter_mut().for_each(|m| *m /= n);
            let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(1e-12);
            mean.iter_mut().for_each(|m| *m /= norm);
            out.push(mean);
        }
        Ok(out)
    }
}

fn check_texts(texts: &[&str]) -> Result<()> {
    if texts.is_empty() {
        return Err(Error::EmptyInput("give at least one text to embed"));
    }
    if texts.len() > MAX_TEXTS {
        return Err(Error::InputTooLong {
            what: "the number of texts",
            actual: texts.len(),
            limit: MAX_TEXTS,
        });
    }
    for t in texts {
        if t.trim().is_empty() {
            return Err(Error::EmptyInput("a text to embed is empty"));
        }
        if t.len() > MAX_TEXT_BYTES {
            return Err(Error::InputTooLong {
                what: "a text (bytes)",
                actual: t.len(),
                limit: MAX_TEXT_BYTES,
            });
        }
    }
    Ok(())
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}
