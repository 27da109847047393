//! Attestations: `POST /v1/attestations/verify` checks an in-toto statement in a DSSE
//! envelope against a subject digest, with this deployment's published keys. Public,
//! like `/v1/keys`: verifying reveals nothing a key list does not.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use custos_ledger::dsse::{DsseKey, Envelope};
use custos_ledger::intoto::{Origin, ResourceDescriptor, verify_provenance};
use custos_model::{FieldError, Timestamp};

use crate::AppState;
use crate::error::ApiError;

/// Largest request body: an envelope and a digest.
pub const MAX_VERIFY_BODY: usize = 1024 * 1024;

/// An attestation to verify.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyInput {
    /// The DSSE envelope (`payload`, `payloadType`, `signatures`).
    #[schema(value_type = Object)]
    pub envelope: serde_json::Value,
    /// The SHA-256 of the artifact the statement must be about: 64 hex digits.
    pub subject_sha256: String,
    /// The tenant the statement must belong to (optional; the verdict names the tenant
    /// either way).
    pub tenant: Option<String>,
}

/// The verdict.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct VerifyOutput {
    pub verified: bool,
    /// When not verified: the check that failed (`signature`, `payload_type`,
    /// `statement_type`, `predicate_type`, `subject_digest`, `predicate`, `build_type`,
    /// `builder`, `tenant`, `key_window`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The keys whose signatures verified (`/v1/keys` ids).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub subject: Option<ResourceDescriptor>,
    /// Whose statement it is: `custos` (an evidence bundle's provenance) or `platform`
    /// (a platform's report of its own artifact, which custos countersigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub origin: Option<Origin>,
    /// The tenant the statement belongs to, as signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The verified statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub statement: Option<serde_json::Value>,
}

fn refused(check: &'static str, error: String) -> VerifyOutput {
    VerifyOutput {
        verified: false,
        check: Some(check),
        error: Some(error),
        signed_by: vec![],
        subject: None,
        origin: None,
        tenant_id: None,
        statement: None,
    }
}

#[utoipa::path(
    post, path = "/v1/attestations/verify", tag = "evidence",
    summary = "Verify a SLSA provenance attestation against an artifact's digest",
    description = "Public. Checks the DSSE signature with this deployment's published keys (a key counts only \
        inside its validity window when the statement states when it was signed: `internalParameters.signed_at`, \
        else `runDetails.metadata.finishedOn`), the payload \
        type `application/vnd.in-toto+json`, the statement type `https://in-toto.io/Statement/v1`, the \
        predicate type `https://slsa.dev/provenance/v1`, that a subject has the given SHA-256, and whose \
        statement it is: a build type under `https://custos.dev/` is custos's own and must be built by \
        `https://<deployment>/custos` with one tenant throughout, any other is a platform's report built by \
        `https://<deployment>/custos/platform`, and the tenant must be `tenant` when given. A verdict is \
        a 200 either way; `verified: false` names the failed check.",
    request_body(content((VerifyInput = "application/json"))),
    responses(
        (status = 200, body = VerifyOutput),
        (status = 413, description = "Over 1 MiB", body = crate::error::ErrorResponse),
        (status = 422, description = "Not an envelope, or not a digest", body = crate::error::ErrorResponse),
    )
)]
pub(crate) async fn verify_attestation(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let input: VerifyInput = crate::body::read_json(&headers, body, MAX_VERIFY_BODY).await?;
    let digest = input.subject_sha256.to_ascii_lowercase();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(FieldError::new("subject_sha256", "must be 64 hex digits")));
    }
    let envelope: Envelope = serde_json::from_value(input.envelope)
        .map_err(|e| ApiError::invalid(FieldError::new("envelope", format!("not a DSSE envelope: {e}"))))?;
    let trusted = crate::evidence::trusted_keys(&state).await?;
    let keys: Vec<DsseKey> = trusted.iter().map(|k| k.key.clone()).collect();
    if let Some(tenant) = &input.tenant {
        custos_model::TenantId::parse(tenant).map_err(ApiError::invalid)?;
    }
    let verified = match verify_provenance(&envelope, &keys, &digest, input.tenant.as_deref()) {
        Ok(verified) => verified,
        Err(error) => return Ok(Json(refused(error.check(), error.to_string())).into_response()),
    };
    // When the statement says when it was signed (custos's `internalParameters.signed_at`),
    // or else when its build finished, a signature counts only from a key that was
    // signing then.
    let predicate = &verified.statement.predicate;
    let signed_at = predicate
        .build_definition
        .internal_parameters
        .as_ref()
        .and_then(|p| p.get("signed_at"))
        .and_then(serde_json::Value::as_str);
    let finished = signed_at.or_else(|| predicate.run_details.metadata.as_ref().and_then(|m| m.finished_on.as_deref()));
    if let Some(finished) = finished {
        let at = Timestamp::parse("signed_at", finished)
            .map_err(|e| ApiError::invalid(FieldError::new("envelope", format!("the statement's {}", e.message))))?;
        let in_window =
            verified.signed_by.iter().any(|id| trusted.iter().any(|k| k.key.key_id() == id && k.valid_at(at)));
        if !in_window {
            return Ok(Json(refused(
                "key_window",
                format!("signed by {}, not a signing key at {finished}", verified.signed_by.join(", ")),
            ))
            .into_response());
        }
    }
    let statement = serde_json::to_value(&verified.statement).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(VerifyOutput {
        verified: true,
        check: None,
        error: None,
        signed_by: verified.signed_by,
        subject: Some(verified.subject),
        origin: Some(verified.origin),
        tenant_id: Some(verified.tenant_id),
        statement: Some(statement),
    })
    .into_response())
}
