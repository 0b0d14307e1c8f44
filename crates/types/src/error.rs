/// Errors from parsing and decoding types.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("invalid {what}: {reason}")]
    Hex { what: &'static str, reason: String },
    #[error("invalid amount {input:?}: {reason}")]
    Amount { input: String, reason: String },
    #[error("malformed encoding: {0}")]
    Codec(String),
    #[error("transaction is {size} bytes, larger than the limit of {limit}")]
    TxTooLarge { size: usize, limit: usize },
}
