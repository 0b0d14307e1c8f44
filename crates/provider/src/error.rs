//! The one error type of this crate.

use plexus_types::JobId;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that stops the provider from starting or running. Messages are lowercase and
/// say what to do where the operator can fix it.
///
/// Problems with a single job (a bad input, a rejected transaction) are not errors of the
/// provider: they become an error output for the poster, or a log line, and the provider
/// goes on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] plexus_client::ClientError),

    #[error("the node sent an unexpected {what}: {reason}")]
    Node { what: &'static str, reason: String },

    #[error("no models to serve; name at least one (see `plexus models list`)")]
    NoModels,

    #[error("model `{name}` is listed twice; list each model once")]
    DuplicateModel { name: String },

    #[error("model `{name}`: {source}")]
    Model {
        name: String,
        source: plexus_inference::Error,
    },

    #[error(
        "model `{name}` ({hash}) is not registered on this chain; serve a registered model (see `GET /models` on the node) or register this one first"
    )]
    ModelNotRegistered { name: String, hash: String },

    #[error(
        "model `{name}` is registered on this chain as a {chain} model, but it is a {local} model here"
    )]
    ModelKindMismatch {
        name: String,
        chain: String,
        local: &'static str,
    },

    #[error(
        "stake target {target} is below the chain's minimum provider stake {min}; ask for at least {min}"
    )]
    StakeBelowMinimum {
        target: plexus_types::Amount,
        min: plexus_types::Amount,
    },

    #[error("the {what} transaction {hash} failed on chain: {reason}")]
    TxFailed {
        what: &'static str,
        hash: String,
        reason: String,
    },

    #[error("cannot listen on {addr}: {source}; choose another listen address")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },

    #[error("serving outputs failed: {0}")]
    Serve(std::io::Error),

    #[error("i/o on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "job record {} is unreadable: {reason}; if you know the job is settled, move the file out of the data dir and restart",
        path.display()
    )]
    CorruptRecord { path: PathBuf, reason: String },

    #[error("job {0} already has a record; a committed result is never replaced")]
    RecordExists(JobId),

    #[error("the output of job {0} does not match its record's hash and size")]
    OutputMismatch(JobId),

    #[error("cheat rate {0} is outside 0..=1; give a fraction of jobs such as 0.1")]
    CheatRate(f64),

    #[error("a background task failed: {0}")]
    Task(String),
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

    pub(crate) fn node(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Node {
            what,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Binaries wrap it in `anyhow` and spawn the provider on a multi-threaded runtime.
    #[test]
    fn error_and_provider_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        fn send<T: Send + 'static>() {}
        send_sync::<super::Error>();
        send::<crate::Provider>();
    }
}
