//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, with the status
//! codes OpenAI clients expect. Messages say what was wrong and how to fix it; internal
//! details (node errors, file paths) go to the log, never to the caller.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to an API caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `insufficient_quota`, `server_error`, ...
    pub kind: &'static str,
    pub code: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    pub message: String,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        Self {
            status,
            kind,
            code,
            param: None,
            message,
        }
    }

    /// 400: a parameter is missing, malformed or out of range.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_parameter",
                message.into(),
            )
        }
    }

    /// 400 with a specific code (`context_length_exceeded`, `invalid_json`, ...).
    pub fn bad_request(
        code: &'static str,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            param: param.map(str::to_string),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                message.into(),
            )
        }
    }

    /// 401: no key, or a key this gateway does not know.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message.into(),
        )
    }

    /// 404: the model is not registered on the chain.
    pub fn unknown_model(model: &str) -> Self {
        Self {
            param: Some("model".into()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!(
                    "The model `{model}` does not exist on this network; GET /v1/models lists the models it can serve."
                ),
            )
        }
    }

    /// 404 for a path or an object that does not exist.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            code,
            message.into(),
        )
    }

    /// 402: the account cannot pay for the request.
    pub fn insufficient_funds(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_funds",
            message.into(),
        )
    }

    /// 429: the key's spending limit would be exceeded.
    pub fn over_limit(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "spending_limit_exceeded",
            message.into(),
        )
    }

    /// 503: no provider serves the model now, or none took the job.
    pub fn no_provider(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "no_provider",
            message.into(),
        )
    }

    /// 502: the node or a provider failed; details are logged, not returned.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream_error",
            message.into(),
        )
    }

    /// 504: the job did not finish in time (it may still finish and settle).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "timeout",
            message.into(),
        )
    }

    /// 500 with no detail (the cause is logged).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            "The gateway failed to handle the request; its operator can find the cause in its log."
                .into(),
        )
    }

    /// The JSON body, also used for errors inside a stream.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}
