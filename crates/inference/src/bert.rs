//! BERT encoder (the architecture of all-MiniLM-L6-v2), inference only.
//!
//! Reads the weights of a Hugging Face `BertModel` checkpoint (`embeddings.*`,
//! `encoder.layer.N.*`, optionally under a `bert.` prefix) and returns the last hidden
//! states. Differences from a literal transcription, all for speed and none changing the
//! arithmetic of a single row:
//! - query, key and value projections are one fused matrix product;
//! - the linear layers run on the `(batch * seq, hidden)` matrix, one GEMM each.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of `config.json` this encoder uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: HiddenAct,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

/// Activation of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HiddenAct {
    /// Exact (erf) GELU, what `"gelu"` means in transformers.
    Gelu,
    Relu,
}

fn linear(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Linear> {
    let w = vb.get((out_dim, in_dim), "weight")?;
    let b = vb.get(out_dim, "bias")?;
    Ok(Linear::new(w, Some(b)))
}

fn layer_norm(vb: VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    let w = vb.get(size, "weight")?;
    let b = vb.get(size, "bias")?;
    Ok(LayerNorm::new(w, b, eps))
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        let sa = att.pp("self");
        let part = |name: &str| -> Result<(Tensor, Tensor)> {
            let l = sa.pp(name);
            Ok((l.get((h, h), "weight")?, l.get(h, "bias")?))
        };
        let (qw, qb) = part("query")?;
        let (kw, kb) = part("key")?;
        let (vw, vb_) = part("value")?;
        let qkv = Linear::new(
            Tensor::cat(&[qw, kw, vw], 0)?,
            Some(Tensor::cat(&[qb, kb, vb_], 0)?),
        );
        Ok(Self {
            qkv,
            attn_out: linear(att.pp("output").pp("dense"), h, h)?,
            attn_norm: layer_norm(att.pp("output").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            ffn_in: linear(vb.pp("intermediate").pp("dense"), h, cfg.intermediate_size)?,
            ffn_out: linear(vb.pp("output").pp("dense"), cfg.intermediate_size, h)?,
            ffn_norm: layer_norm(vb.pp("output").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
        })
    }
}

/// A BERT encoder.
pub struct BertModel {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: HiddenAct,
}

impl BertModel {
    /// Loads the weights; accepts checkpoints with or without the `bert.` prefix.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads");
        }
        let e = vb.pp("embeddings");
        let emb = |name: &str, n: usize| -> Result<Embedding> {
            Ok(Embedding::new(e.pp(name).get((n, h), "weight")?, h))
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word: emb("word_embeddings", cfg.vocab_size)?,
            position: emb("position_embeddings", cfg.max_position_embeddings)?,
            token_type: emb("token_type_embeddings", cfg.type_vocab_size)?,
            emb_norm: layer_norm(e.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            layers,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
        })
    }

    /// Last hidden states, `(batch, seq, hidden)`, for `input_ids` `(batch, seq)` (u32) and
    /// `mask` `(batch, seq)` (f32, 1 for real tokens, 0 for padding). Token types are all 0.
    pub fn forward(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let dev = input_ids.device();
        let positions = Tensor::arange(0u32, s as u32, dev)?;
        let x = self.word.forward(input_ids)?; // (b, s, h)
        let h = x.dim(D::Minus1)?;
        let pos = self.position.forward(&positions)?; // (s, h)
        let typ = self
            .token_type
            .forward(&Tensor::zeros(1, DType::U32, dev)?)?; // (1, h)
        let x = x.broadcast_add(&(pos.broadcast_add(&typ))?)?;
        let mut x = self.emb_norm.forward(&x)?.reshape((b * s, h))?;

        // Padding gets the most negative f32 added before softmax: exp() of it is exactly 0.
        let bias = ((mask.ones_like()? - mask)? * f64::from(f32::MIN))?
            .reshape((b, 1, 1, s))?
            .contiguous()?;
        let hd = h / self.heads;
        let scale = 1.0 / (hd as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?; // (b*s, 3h)
            let qkv = qkv.reshape((b, s, 3, self.heads, hd))?;
            let q = qkv
                .narrow(2, 0, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let k = qkv
                .narrow(2, 1, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let v = qkv
                .narrow(2, 2, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?; // (b, heads, s, hd)
            let ctx = ctx.transpose(1, 2)?.reshape((b * s, h))?;
            let attn = layer.attn_out.forward(&ctx)?;
            x = layer.attn_norm.forward(&(attn + &x)?)?;
            let ff = layer.ffn_in.forward(&x)?;
            let ff = match self.act {
                HiddenAct::Gelu => ff.gelu_erf()?,
                HiddenAct::Relu => ff.relu()?,
            };
            let ff = layer.ffn_out.forward(&ff)?;
            x = layer.ffn_norm.forward(&(ff + &x)?)?;
        }
        x.reshape((b, s, h))
    }
}
