//! The one place errors become HTTP responses.
//!
//! Handlers return [`ApiError`]; its [`ErrorCode`] fixes the status. The response body is
//! `{"error": {"code", "message", "request_id", "field"?, "line"?}}`; the request id is
//! filled in by the `observe` middleware, which also gives axum's own error responses
//! (unknown route, wrong method, panics) the same shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use custos_model::{FieldError, ParseError};
use custos_store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not well-formed JSON or NDJSON, or holds no records.
    MalformedBody,
    /// A query parameter or path segment is wrong.
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// The id exists with different content, or the resource already exists.
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// Well-formed input that breaks a rule; `field` names it.
    InvalidField,
    Internal,
    Unavailable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedBody | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::InvalidField => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedBody => "malformed_body",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The code for an error response that carries none (axum's own responses).
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            422 => ErrorCode::InvalidField,
            503 => ErrorCode::Unavailable,
            400..=499 => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        }
    }
}

/// The JSON error document (the `error` member of the body).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Echoes `X-Request-Id`; quote it when reporting a problem.
    pub request_id: Option<String>,
    /// The input field at fault, as a dotted path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The 1-based line of an NDJSON body at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub line: Option<usize>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None, line: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn invalid(error: FieldError) -> Self {
        let message = error.to_string();
        Self::new(ErrorCode::InvalidField, message).with_field(error.field)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// An error with no mapping: its chain is logged here, inside the request's span,
    /// and the client gets an opaque 500.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error, "internal error");
        Self::new(ErrorCode::Internal, "internal error; the request id identifies it in the server's logs")
    }
}

impl From<ParseError> for ApiError {
    fn from(error: ParseError) -> Self {
        match error {
            ParseError::Syntax { line, column, message } => ApiError {
                code: ErrorCode::MalformedBody,
                message: format!("line {line}, column {column}: malformed JSON: {message}"),
                field: None,
                line: Some(line),
            },
            ParseError::Invalid { line, field, message } => ApiError {
                code: ErrorCode::InvalidField,
                message: if field.is_empty() {
                    format!("line {line}: {message}")
                } else {
                    format!("line {line}: {field}: {message}")
                },
                field: (!field.is_empty()).then_some(field),
                line: Some(line),
            },
            ParseError::Empty => ApiError::new(ErrorCode::MalformedBody, "the body holds no records"),
            ParseError::TooManyRecords { limit } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body holds more than {limit} records; split it into several requests"),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => ApiError::new(ErrorCode::Conflict, error.to_string()).with_field("id"),
            StoreError::LogConflict { .. } => {
                ApiError::new(ErrorCode::Conflict, error.to_string()).with_field("event_id")
            }
            StoreError::AlreadyExists { .. } => ApiError::new(ErrorCode::Conflict, error.to_string()),
            StoreError::NotFound { .. } => ApiError::not_found(error.to_string()),
            StoreError::Object { .. } | StoreError::ObjectLock { .. } => {
                tracing::error!(error = &error as &dyn std::error::Error, "object store failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the object store failed (the request id identifies it in the server's logs); retry later",
                )
            }
            StoreError::RecordNotWritten { .. } => {
                tracing::error!(error = &error as &dyn std::error::Error, "custos's own record could not be written");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "custos could not write its audit record of this request, so nothing was changed; retry later",
                )
            }
            ref unavailable if unavailable.is_unavailable() => {
                tracing::error!(error = unavailable as &dyn std::error::Error, "store unavailable");
                ApiError::new(ErrorCode::Unavailable, "the database is unavailable; retry later")
            }
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body =
            ErrorBody { code: self.code, message: self.message, request_id: None, field: self.field, line: self.line };
        let mut response = (status, axum::Json(ErrorResponse { error: body.clone() })).into_response();
        response.extensions_mut().insert(body);
        response
    }
}
