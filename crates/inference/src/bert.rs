//! BERT encoder (the architecture of all-MiniLM-L6-v2), inference only.
//!
//! Reads the weights of a Hugging Face `BertModel` checkpoint (`embeddings.*`,
//! `encoder.layer.N.*`, optionally under a `bert.` prefix) and returns the last hidden
//! states. How it differs from a literal transcription, all for speed:
//! - the texts of a batch are packed, without padding, into one `(tokens, hidden)` matrix;
//!   every linear layer is one GEMM on that matrix (weights transposed once at load, query,
//!   key and value fused into one matrix), and attention runs per text on its exact length,
//!   so no work goes into padding and no mask is needed;
//! - bias + GELU, bias + residual + layer norm, and scale + softmax are each one pass over
//!   contiguous rows; `exp` and `erf` are our own branch-free, vectorisable approximations
//!   (relative error ~1e-7, see [`exp_approx`] and [`gelu_erf`]).
//!
//! The result of a row depends only on its own text and the GEMM kernels, never on the
//! thread count: GEMMs split work over output blocks, everything else runs per row or per
//! text in a fixed order.

use candle_core::{DType, Device, Result, Storage, Tensor};
use candle_nn::VarBuilder;
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

/// A linear layer: `weight` transposed to `(in, out)` and contiguous, `bias` `(out)`.
struct Linear {
    weight: Tensor,
    bias: Vec<f32>,
}

impl Linear {
    fn new(weight_out_in: Tensor, bias: Tensor) -> Result<Self> {
        Ok(Self {
            weight: weight_out_in.t()?.contiguous()?,
            bias: bias.to_vec1()?,
        })
    }

    fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Self::new(
            vb.get((out_dim, in_dim), "weight")?,
            vb.get(out_dim, "bias")?,
        )
    }

    /// `x @ weight` (no bias) for `x` given as `rows` rows, row-major.
    fn matmul(&self, x: Vec<f32>, rows: usize) -> Result<Tensor> {
        let k = self.weight.dim(0)?;
        Tensor::from_vec(x, (rows, k), &Device::Cpu)?.matmul(&self.weight)
    }
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?.to_vec1()?,
            bias: vb.get(size, "bias")?.to_vec1()?,
            eps: eps as f32,
        })
    }

    /// Normalises one row in place.
    fn apply(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + self.eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: Norm,
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
            Tensor::cat(&[qb, kb, vb_], 0)?,
        )?;
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            qkv,
            attn_out: Linear::load(att.pp("output").pp("dense"), h, h)?,
            attn_norm: Norm::load(att.pp("output").pp("LayerNorm"), h, eps)?,
            ffn_in: Linear::load(vb.pp("intermediate").pp("dense"), h, cfg.intermediate_size)?,
            ffn_out: Linear::load(vb.pp("output").pp("dense"), cfg.intermediate_size, h)?,
            ffn_norm: Norm::load(vb.pp("output").pp("LayerNorm"), h, eps)?,
        })
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("the BERT encoder runs on the CPU only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("expected a contiguous tensor");
    };
    Ok(f(&cpu.as_slice::<f32>()?[start..end]))
}

/// A BERT encoder (CPU).
pub struct BertModel {
    word: Tensor,
    position: Tensor,
    token_type0: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    act: HiddenAct,
}

impl BertModel {
    /// Loads the weights; accepts checkpoints with or without the `bert.` prefix. The
    /// weights are moved to the CPU, where the encoder runs.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let vb = vb.set_device(Device::Cpu).set_dtype(DType::F32);
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads");
        }
        let e = vb.pp("embeddings");
        let emb = |name: &str, n: usize| -> Result<Tensor> {
            e.pp(name).get((n, h), "weight")?.contiguous()
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word: emb("word_embeddings", cfg.vocab_size)?,
            position: emb("position_embeddings", cfg.max_position_embeddings)?,
            token_type0: emb("token_type_embeddings", cfg.type_vocab_size)?
                .get(0)?
                .to_vec1()?,
            emb_norm: Norm::load(e.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            layers,
            hidden: h,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
        })
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Last hidden states of several texts, packed: the rows of text 0 (one per token), then
    /// those of text 1, and so on; `(total tokens) * hidden` values. Token types are all 0.
    pub fn forward_packed(&self, texts: &[&[u32]]) -> Result<Vec<f32>> {
        let h = self.hidden;
        let rows: usize = texts.iter().map(|t| t.len()).sum();
        let max_pos = self.position.dim(0)?;
        let vocab = self.word.dim(0)?;
        // Embeddings: word + position + type 0, then layer norm.
        let mut x = vec![0f32; rows * h];
        with_data(&self.word, |word| {
            with_data(&self.position, |pos| {
                let mut r = 0;
                for text in texts {
                    for (p, &id) in text.iter().enumerate() {
                        let id = (id as usize).min(vocab - 1);
                        let p = p.min(max_pos - 1);
                        let row = &mut x[r * h..(r + 1) * h];
                        let w = &word[id * h..(id + 1) * h];
                        let ps = &pos[p * h..(p + 1) * h];
                        for (((o, a), b), c) in row.iter_mut().zip(w).zip(ps).zip(&self.token_type0)
                        {
                            *o = a + (b + c);
                        }
                        self.emb_norm.apply(row);
                        r += 1;
                    }
                }
            })
        })??;
        let lens: Vec<usize> = texts.iter().map(|t| t.len()).collect();
        for layer in &self.layers {
            x = self.layer(layer, x, rows, &lens)?;
        }
        Ok(x)
    }

    fn layer(&self, layer: &Layer, x: Vec<f32>, rows: usize, lens: &[usize]) -> Result<Vec<f32>> {
        let h = self.hidden;
        let qkv = layer.qkv.matmul(x.clone(), rows)?; // (rows, 3h), no bias yet
        let ctx = with_data(&qkv, |qkv| {
            attention(qkv, &layer.qkv.bias, lens, h, self.heads)
        })?;
        let attn = layer.attn_out.matmul(ctx, rows)?;
        let mut x1 = vec![0f32; rows * h];
        with_data(&attn, |attn| {
            residual_norm(&mut x1, attn, &layer.attn_out.bias, &x, &layer.attn_norm, h)
        })?;
        let ff = layer.ffn_in.matmul(x1.clone(), rows)?; // (rows, inter)
        let inter = layer.ffn_in.bias.len();
        let mut act = vec![0f32; rows * inter];
        with_data(&ff, |ff| {
            for (o, i) in act.chunks_exact_mut(inter).zip(ff.chunks_exact(inter)) {
                match self.act {
                    HiddenAct::Gelu => bias_gelu(o, i, &layer.ffn_in.bias),
                    HiddenAct::Relu => {
                        for ((o, i), b) in o.iter_mut().zip(i).zip(&layer.ffn_in.bias) {
                            *o = (i + b).max(0.0);
                        }
                    }
                }
            }
        })?;
        drop(ff);
        let out = layer.ffn_out.matmul(act, rows)?;
        let mut x2 = vec![0f32; rows * h];
        with_data(&out, |out| {
            residual_norm(&mut x2, out, &layer.ffn_out.bias, &x1, &layer.ffn_norm, h)
        })?;
        Ok(x2)
    }

    /// Last hidden states, `(batch, seq, hidden)`, for `input_ids` `(batch, seq)` (u32) and
    /// `mask` `(batch, seq)` (f32, 1 for real tokens, 0 for padding; real tokens must come
    /// first in each row). Padding positions come back as zeros. Token types are all 0.
    pub fn forward(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let ids = input_ids.to_device(&Device::Cpu)?.to_vec2::<u32>()?;
        let mask = mask.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        let texts: Vec<&[u32]> = ids
            .iter()
            .zip(&mask)
            .map(|(ids, m)| &ids[..m.iter().filter(|&&v| v > 0.0).count()])
            .collect();
        let packed = self.forward_packed(&texts)?;
        let h = self.hidden;
        let mut out = vec![0f32; b * s * h];
        let mut r = 0;
        for (i, t) in texts.iter().enumerate() {
            let n = t.len() * h;
            out[i * s * h..i * s * h + n].copy_from_slice(&packed[r..r + n]);
            r += n;
        }
        Tensor::from_vec(out, (b, s, h), input_ids.device())
    }
}

/// `out = norm(y + bias + residual)`, row by row.
fn residual_norm(
    out: &mut [f32],
    y: &[f32],
    bias: &[f32],
    residual: &[f32],
    norm: &Norm,
    h: usize,
) {
    for ((o, y), r) in out
        .chunks_exact_mut(h)
        .zip(y.chunks_exact(h))
        .zip(residual.chunks_exact(h))
    {
        for (((o, y), b), r) in o.iter_mut().zip(y).zip(bias).zip(r) {
            *o = (y + b) + r;
        }
        norm.apply(o);
    }
}

/// Multi-head self-attention over packed rows of `qkv` (`3h` wide, bias not yet added), one
/// text at a time on its exact length. Returns the context rows, `h` wide.
fn attention(qkv: &[f32], bias: &[f32], lens: &[usize], h: usize, heads: usize) -> Vec<f32> {
    let hd = h / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let rows: usize = lens.iter().sum();
    let mut ctx = vec![0f32; rows * h];
    let max_len = lens.iter().copied().max().unwrap_or(0);
    // Per head: queries (len, hd), keys transposed (hd, len), values (len, hd).
    let mut q = vec![0f32; max_len * hd];
    let mut kt = vec![0f32; hd * max_len];
    let mut v = vec![0f32; max_len * hd];
    let mut scores = vec![0f32; max_len];
    let mut start = 0;
    for &n in lens {
        let text = &qkv[start * 3 * h..(start + n) * 3 * h];
        for head in 0..heads {
            let (qo, ko, vo) = (head * hd, h + head * hd, 2 * h + head * hd);
            for (i, row) in text.chunks_exact(3 * h).enumerate() {
                for d in 0..hd {
                    q[i * hd + d] = row[qo + d] + bias[qo + d];
                    kt[d * n + i] = row[ko + d] + bias[ko + d];
                    v[i * hd + d] = row[vo + d] + bias[vo + d];
                }
            }
            for i in 0..n {
                let s = &mut scores[..n];
                s.fill(0.0);
                for d in 0..hd {
                    let qd = q[i * hd + d];
                    for (s, k) in s.iter_mut().zip(&kt[d * n..(d + 1) * n]) {
                        *s = qd.mul_add(*k, *s);
                    }
                }
                let max = s.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut sum = 0.0_f32;
                for v in s.iter_mut() {
                    *v = exp_approx((*v - max) * scale);
                    sum += *v;
                }
                let inv = 1.0 / sum;
                let out = &mut ctx[(start + i) * h + head * hd..(start + i) * h + (head + 1) * hd];
                for (j, &p) in s.iter().enumerate() {
                    let p = p * inv;
                    for (o, v) in out.iter_mut().zip(&v[j * hd..(j + 1) * hd]) {
                        *o = p.mul_add(*v, *o);
                    }
                }
            }
        }
        start += n;
    }
    ctx
}

/// `e^x`, branch-free so loops over it vectorise: `x = n ln2 + r` with `|r| <= ln2 / 2`,
/// `e^r` by a degree-7 Taylor polynomial (relative error < 2e-8 before rounding), `2^n`
/// built in the exponent bits. Inputs below -87 give 0, above 88 are clamped.
pub fn exp_approx(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p: f32 = 1.0 / 5040.0;
    p = p.mul_add(r, 1.0 / 720.0);
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// Exact (erf) GELU, `x * Phi(x)`, without branches: `Phi` from the complementary error
/// function by the rational-times-exponential form of Abramowitz & Stegun 7.1.26 (absolute
/// error < 1.5e-7 in `erfc`), evaluated on `|x|` and reflected for positive `x`.
pub fn gelu_erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / P.mul_add(z, 1.0);
    let mut poly = A[4];
    poly = poly.mul_add(t, A[3]);
    poly = poly.mul_add(t, A[2]);
    poly = poly.mul_add(t, A[1]);
    poly = poly.mul_add(t, A[0]);
    // erfc(z) = t * poly * e^(-z^2); Phi(-|x|) = erfc(z) / 2.
    let tail = 0.5 * t * poly * exp_approx(-z * z);
    let phi = if x < 0.0 { tail } else { 1.0 - tail };
    x * phi
}

/// `out = gelu(x + bias)` over one row.
fn bias_gelu(out: &mut [f32], x: &[f32], bias: &[f32]) {
    for ((o, x), b) in out.iter_mut().zip(x).zip(bias) {
        *o = gelu_erf(x + b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0;
            let want = (x as f64).exp();
            let got = exp_approx(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "{worst}");
        assert!(exp_approx(-1000.0) < 1e-37);
        assert_eq!(exp_approx(0.0), 1.0);
    }

    #[test]
    fn gelu_is_accurate() {
        // Reference: erf from its Taylor series / continued fraction in f64 via erfc.
        fn erf64(x: f64) -> f64 {
            // Series, good to ~1e-15 for |x| < 6 with enough terms.
            let mut sum = 0.0_f64;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 5.0 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
                if n > 400.0 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut worst = 0f64;
        for i in -6000..6000 {
            let x = i as f64 / 1000.0;
            let want = 0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2));
            let got = gelu_erf(x as f32) as f64;
            worst = worst.max((got - want).abs() / x.abs().max(1.0));
        }
        assert!(worst < 3e-7, "{worst}");
    }
}
