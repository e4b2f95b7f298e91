//! The API's error type: `{"error": {"code": "snake_case", "message": "..."}}` with a fitting status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
pub use urna_client::wire::LeaderHint;
use urna_client::wire::{ErrorBody, ErrorDetail};

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// snake_case machine-readable code.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// Leader hint (on 503 answers).
    pub leader: Option<LeaderHint>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            leader: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 500: an internal failure (logged).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message.to_string())
    }

    /// 503: no leader, or the leader is unreachable.
    pub fn unavailable(code: &str, message: impl Into<String>, leader: Option<LeaderHint>) -> Self {
        ApiError {
            leader,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                leader: self.leader,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        Self::new(status, code, r.body_text())
    }
}

impl From<crate::election::precheck::Refusal> for ApiError {
    fn from(r: crate::election::precheck::Refusal) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, r.code, r.message)
    }
}

/// Parses a JSON body into `T`, as a 400 on failure.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
