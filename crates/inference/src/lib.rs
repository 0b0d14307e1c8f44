//! inference: Run real models reproducibly on CPU (and CUDA where present) with candle.
//!
//! # Bird's eye view
//!
//! - [`catalog`]: which models exist, how each is identified ([`ModelSpec::model_hash`]:
//!   sha256 over its weights, config and tokenizer), and how they are installed and verified.
//! - [`embed`]: sentence embeddings (all-MiniLM-L6-v2), the same vectors as
//!   sentence-transformers.
//! - [`chat`]: chat generation (SmolLM2-135M-Instruct, GGUF Q4_1) with greedy or seeded
//!   sampling, stop strings, streaming and usage counts; an exact (f32) mode.
//! - [`bert`] and [`llama`]: the two model architectures, one flat file each.
//!
//! # Reproducibility
//!
//! On one machine, the same input, model hash, parameters and seed give bit-identical output
//! across runs and across thread counts: matrix products split work over output blocks, never
//! over the summed dimension, and sampling draws from a seeded generator. Across CPUs, results
//! may differ in the last bits: the matrix kernels are chosen at run time from the CPU's
//! vector extensions (AVX2/FMA vs AVX-512), which changes summation order, and `exp`/`erf`
//! approximations are vectorised differently. Embeddings then agree to a cosine of ~1 - 1e-7;
//! greedy tokens agree unless two candidates are within rounding of each other, and sampled
//! tokens can diverge after such a near-tie.
//!
//! # Threads
//!
//! candle reads its thread count once per process from `RAYON_NUM_THREADS` (or
//! `CANDLE_NUM_THREADS`), defaulting to the number of physical cores.

pub mod bert;
pub mod catalog;
pub mod chat;
pub mod embed;
mod error;
pub mod llama;

pub use catalog::{CATALOG, ModelFiles, ModelKind, ModelSpec};
pub use chat::{ChatModel, Completion, FinishReason, GenerateParams, Message, Precision, Usage};
pub use embed::Embedder;
pub use error::{Error, Result};

/// Set to `cpu` to keep a CUDA build's chat on the CPU (to compare the two on one machine).
pub const DEVICE_ENV: &str = "PLEXUS_DEVICE";

/// The device chat inference runs on: the first CUDA GPU when built with the `cuda` feature
/// and one is present (unless `PLEXUS_DEVICE=cpu`), else the CPU. Embeddings always run on
/// the CPU (the packed encoder in `bert` is CPU code).
pub fn default_device() -> candle_core::Device {
    #[cfg(feature = "cuda")]
    if std::env::var(DEVICE_ENV).as_deref() != Ok("cpu")
        && let Ok(d) = candle_core::Device::new_cuda(0)
    {
        return d;
    }
    candle_core::Device::Cpu
}

/// Makes `device`'s CUDA context current on the calling thread (a no-op on the CPU). The
/// driver keeps one current context per thread, and a model loaded on one thread is later run
/// on others (the provider's blocking pool). cudarc binds before its checked calls but not
/// when it frees a buffer: freeing on an unbound thread fails, the memory leaks and the
/// recorded `CUDA_ERROR_INVALID_CONTEXT` fails the next call, as a GPU provider's chat jobs
/// did on an H100 until generation bound the context first.
pub fn bind_device_to_thread(device: &candle_core::Device) -> candle_core::Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(d) = device {
        d.cuda_stream()
            .context()
            .bind_to_thread()
            .map_err(|e| candle_core::Error::Msg(format!("binding the CUDA context: {e:?}")))?;
    }
    #[cfg(not(feature = "cuda"))]
    let _ = device;
    Ok(())
}

/// `cpu`, or `cuda:N` for GPU N: what reports say the work ran on.
pub fn device_name(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Threads candle uses in this process (set with `RAYON_NUM_THREADS` before it starts).
pub fn num_threads() -> usize {
    candle_core::utils::get_num_threads()
}

pub use candle_core::Device;

/// The 256 sentences `plexus bench embed` and `bench/` use, one per line.
pub const BENCH_SENTENCES: &str = include_str!("../data/bench_sentences.txt");

/// [`BENCH_SENTENCES`] split into lines.
pub fn bench_sentences() -> Vec<&'static str> {
    BENCH_SENTENCES.lines().filter(|l| !l.is_empty()).collect()
}
