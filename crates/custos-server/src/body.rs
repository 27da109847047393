//! Reading request bodies within bounds: the declared content type (415 otherwise) and
//! the size limit (413), before any byte is parsed.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use custos_model::BodyFormat;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// The record body format named by `Content-Type`.
pub(crate) fn record_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    match media_type(headers).as_deref() {
        Some(JSON) => Ok(BodyFormat::Json),
        Some(NDJSON) => Ok(BodyFormat::Ndjson),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Type {} is not accepted here; send {JSON} (one record) or {NDJSON} (one record per line)",
                other.map_or_else(|| "(none)".to_owned(), |t| format!("{t:?}"))
            ),
        )),
    }
}

/// Reads the whole body, refusing it once it exceeds `limit` bytes.
pub(crate) async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::new(ErrorCode::PayloadTooLarge, format!("the body exceeds the limit of {limit} bytes"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        use std::error::Error as _;
        let mut source = error.source();
        while let Some(cause) = source {
            if cause.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = cause.source();
        }
        ApiError::new(ErrorCode::MalformedBody, format!("could not read the body: {error}"))
    })
}

/// Reads a JSON document body (`application/json` only) into `T`, with errors that name
/// the field at fault.
pub(crate) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    if media_type(headers).as_deref() != Some(JSON) {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, format!("send the body as {JSON}")));
    }
    let bytes = read_limited(headers, body, limit).await?;
    let malformed = |e: &serde_json::Error| ApiError::new(ErrorCode::MalformedBody, format!("malformed JSON: {e}"));
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(value) => {
            deserializer.end().map_err(|e| malformed(&e))?;
            Ok(value)
        }
        Err(error) if error.inner().is_syntax() || error.inner().is_eof() => Err(malformed(error.inner())),
        Err(error) => {
            let message = custos_model::parse::strip_position(&error.inner().to_string());
            let field = custos_model::parse::field_at_fault(&error.path().to_string(), &message);
            Err(ApiError::new(ErrorCode::InvalidField, format!("{field}: {message}")).with_field(field))
        }
    }
}
