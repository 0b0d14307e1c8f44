//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while installing, loading or running a model.
///
/// Messages are lowercase and say what to do where the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel { name: String, known: String },

    #[error("model `{model}` is a {actual} model, not a {expected} model")]
    WrongKind {
        model: String,
        expected: &'static str,
        actual: &'static str,
    },

    #[error("model file {} is missing; run `plexus models install {model}`", path.display())]
    MissingFile { model: String, path: PathBuf },

    #[error(
        "model file {} is corrupted (sha256 {actual}, expected {expected}); run `plexus models install {model}` to fetch it again",
        path.display()
    )]
    CorruptedFile {
        model: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("no input: {0}")]
    EmptyInput(&'static str),

    #[error("input too long: {what} is {actual}, the limit is {limit}")]
    InputTooLong {
        what: &'static str,
        actual: usize,
        limit: usize,
    },

    #[error("invalid parameter: {0}")]
    InvalidParameter(String),

    #[error("installing `{model}` failed: {reason}")]
    Install { model: String, reason: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("model format: {0}")]
    Format(String),

    #[error("i/o on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tokenizer(e: impl std::fmt::Display) -> Self {
        Self::Tokenizer(e.to_string())
    }
}
