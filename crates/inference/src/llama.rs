//! Llama-architecture decoder read from a GGUF file (the architecture of SmolLM2), inference
//! only, with a key/value cache.
//!
//! Two precisions:
//! - [`Precision::Quantized`]: the projection matrices stay in their GGUF block format and
//!   candle's quantized kernels multiply them (activations are quantized to 8 bits on the fly);
//! - [`Precision::Exact`]: every matrix is dequantized to f32 once at load time and multiplied
//!   in full precision. Greedy tokens then equal those of transformers running the same GGUF.
//!
//! Rotary embeddings use the interleaved (GGML "norm") layout, which is what llama GGUF
//! converters write; grouped-query attention shares each key/value head between
//! `n_head / n_kv_head` query heads without copying it.

use std::io::Cursor;

use candle_core::quantized::{QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::Embedding;

/// How the projection matrices are multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Quantized weights and kernels, as stored in the GGUF (fast).
    #[default]
    Quantized,
    /// Weights dequantized to f32 and full-precision matrix products.
    Exact,
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Hparams {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    pub context_length: usize,
}

impl Hparams {
    fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let get = |k: &str| {
            ct.metadata
                .get(k)
                .ok_or_else(|| candle_core::Error::Msg(format!("gguf metadata has no `{k}`")))
        };
        let arch = get("general.architecture")?.to_string()?.clone();
        if arch != "llama" {
            candle_core::bail!("unsupported architecture `{arch}` (only llama)");
        }
        let u = |k: &str| -> Result<usize> { Ok(get(k)?.to_u32()? as usize) };
        let n_embd = u("llama.embedding_length")?;
        let n_head = u("llama.attention.head_count")?;
        Ok(Self {
            n_layer: u("llama.block_count")?,
            n_embd,
            n_head,
            n_kv_head: u("llama.attention.head_count_kv")?,
            rope_dim: u("llama.rope.dimension_count").unwrap_or(n_embd / n_head.max(1)),
            rope_base: get("llama.rope.freq_base")
                .and_then(|v| v.to_f32())
                .unwrap_or(10_000.0),
            rms_eps: f64::from(get("llama.attention.layer_norm_rms_epsilon")?.to_f32()?),
            context_length: u("llama.context_length").unwrap_or(2048),
        })
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

struct Block {
    attn_norm: RmsNorm,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: RmsNorm,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    cache: Option<(Tensor, Tensor)>,
}

/// The decoder with its cache. One instance serves one sequence at a time.
pub struct Llama {
    pub hparams: Hparams,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    head_dim: usize,
}

struct Loader<'a> {
    ct: &'a gguf_file::Content,
    reader: Cursor<&'a [u8]>,
    device: &'a Device,
    precision: Precision,
}

impl Loader<'_> {
    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        self.ct.tensor(&mut self.reader, name, self.device)
    }

    fn matmul(&mut self, name: &str) -> Result<QMatMul> {
        let q = self.qtensor(name)?;
        match self.precision {
            Precision::Quantized => QMatMul::from_qtensor(q),
            Precision::Exact => Ok(QMatMul::Tensor(q.dequantize(self.device)?)),
        }
    }

    fn norm(&mut self, name: &str, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.qtensor(name)?.dequantize(self.device)?,
            eps: eps as f32,
        })
    }
}

impl Llama {
    /// Reads the model from the bytes of a GGUF file.
    pub fn from_gguf(
        ct: &gguf_file::Content,
        bytes: &[u8],
        precision: Precision,
        device: &Device,
    ) -> Result<Self> {
        let hp = Hparams::from_gguf(ct)?;
        if hp.n_head == 0 || hp.n_kv_head == 0 || !hp.n_head.is_multiple_of(hp.n_kv_head) {
            candle_core::bail!("head counts {} / {} do not divide", hp.n_head, hp.n_kv_head);
        }
        let head_dim = hp.n_embd / hp.n_head;
        let mut l = Loader {
            ct,
            reader: Cursor::new(bytes),
            device,
            precision,
        };
        let embd_q = l.qtensor("token_embd.weight")?;
        let embd = embd_q.dequantize(device)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            l.matmul("output.weight")?
        } else {
            // Tied embeddings: the exact path reuses the f32 copy instead of a second one.
            match precision {
                Precision::Quantized => QMatMul::from_qtensor(embd_q)?,
                Precision::Exact => QMatMul::Tensor(embd.clone()),
            }
        };
        let mut blocks = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = format!("blk.{i}");
            blocks.push(Block {
                attn_norm: l.norm(&format!("{p}.attn_norm.weight"), hp.rms_eps)?,
                wq: l.matmul(&format!("{p}.attn_q.weight"))?,
                wk: l.matmul(&format!("{p}.attn_k.weight"))?,
                wv: l.matmul(&format!("{p}.attn_v.weight"))?,
                wo: l.matmul(&format!("{p}.attn_output.weight"))?,
                ffn_norm: l.norm(&format!("{p}.ffn_norm.weight"), hp.rms_eps)?,
                gate: l.matmul(&format!("{p}.ffn_gate.weight"))?,
                up: l.matmul(&format!("{p}.ffn_up.weight"))?,
                down: l.matmul(&format!("{p}.ffn_down.weight"))?,
                cache: None,
            });
        }
        let norm = l.norm("output_norm.weight", hp.rms_eps)?;
        let (cos, sin) = rope_tables(hp.rope_dim, hp.rope_base, hp.context_length, device)?;
        Ok(Self {
            embed: Embedding::new(embd, hp.n_embd),
            blocks,
            norm,
            output,
            cos,
            sin,
            head_dim,
            hparams: hp,
        })
    }

    /// Forgets the cached keys and values (start a new sequence).
    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.cos.device()
    }

    /// Drops the cached keys and values. On a GPU, call it on a thread bound to the model's
    /// context ([`crate::bind_device_to_thread`]), as [`crate::ChatModel`] does.
    pub fn clear_cache(&mut self) {
        for b in &mut self.blocks {
            b.cache = None;
        }
    }

    /// Runs `tokens` (one sequence) placed at positions `pos..pos + len` and returns the
    /// logits of the last one, `(vocab,)` f32. Positions before `pos` must be in the cache.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        let s = tokens.len();
        if s == 0 || pos + s > self.hparams.context_length {
            candle_core::bail!("positions {pos}..{} out of the context", pos + s);
        }
        let dev = self.cos.device().clone();
        // This thread may not be the one that loaded the model.
        crate::bind_device_to_thread(&dev)?;
        let ids = Tensor::new(tokens, &dev)?.unsqueeze(0)?;
        let mut x = self.embed.forward(&ids)?; // (1, s, h)
        let mask = if s > 1 {
            Some(causal_mask(s, pos, &dev)?)
        } else {
            None
        };
        let cos = self.cos.narrow(0, pos, s)?;
        let sin = self.sin.narrow(0, pos, s)?;
        let (n_head, n_kv, hd) = (self.hparams.n_head, self.hparams.n_kv_head, self.head_dim);
        let rep = n_head / n_kv;
        let scale = 1.0 / (hd as f64).sqrt();
        for b in &mut self.blocks {
            let h = b.attn_norm.forward(&x)?;
            let q =
                b.wq.forward(&h)?
                    .reshape((1, s, n_head, hd))?
                    .transpose(1, 2)?;
            let k =
                b.wk.forward(&h)?
                    .reshape((1, s, n_kv, hd))?
                    .transpose(1, 2)?;
            let v =
                b.wv.forward(&h)?
                    .reshape((1, s, n_kv, hd))?
                    .transpose(1, 2)?;
            let q = candle_nn::rotary_emb::rope_i(&q.contiguous()?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k.contiguous()?, &cos, &sin)?;
            let v = v.contiguous()?;
            let (k, v) = match &b.cache {
                Some((ck, cv)) if pos > 0 => {
                    (Tensor::cat(&[ck, &k], 2)?, Tensor::cat(&[cv, &v], 2)?)
                }
                _ => (k, v),
            };
            b.cache = Some((k.clone(), v.clone()));
            let kv_len = k.dim(2)?;
            // Query heads of one group are adjacent: fold them into the row dimension so each
            // key/value head is used by its group without being copied.
            let q = q.reshape((1, n_kv, rep * s, hd))?;
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att
                    .reshape((1, n_kv, rep, s, kv_len))?
                    .broadcast_add(m)?
                    .reshape((1, n_kv, rep * s, kv_len))?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v)?; // (1, n_kv, rep * s, hd)
            let y = y
                .reshape((1, n_head, s, hd))?
                .transpose(1, 2)?
                .reshape((1, s, n_head * hd))?;
            x = (b.wo.forward(&y)? + &x)?;
            let h = b.ffn_norm.forward(&x)?;
            let ff = (candle_nn::ops::silu(&b.gate.forward(&h)?)? * b.up.forward(&h)?)?;
            x = (b.down.forward(&ff)? + &x)?;
        }
        let x = self.norm.forward(&x.narrow(1, s - 1, 1)?)?;
        let logits = self.output.forward(&x)?;
        logits.flatten_all()?.to_dtype(DType::F32)
    }
}

fn rope_tables(dim: usize, base: f32, len: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
        .collect();
    let inv = Tensor::new(inv.as_slice(), device)?.reshape((1, dim / 2))?;
    let t = Tensor::arange(0u32, len as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((len, 1))?;
    let freqs = t.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// `(s, pos + s)` additive mask: 0 where query `i` may see key `j`, -inf elsewhere.
fn causal_mask(s: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let kv = pos + s;
    let m: Vec<f32> = (0..s)
        .flat_map(|i| (0..kv).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(m, (s, kv), device)
}

/// Reads GGUF metadata and tensor directory from the file's bytes.
pub fn read_gguf(bytes: &[u8]) -> Result<gguf_file::Content> {
    gguf_file::Content::read(&mut Cursor::new(bytes))
}
