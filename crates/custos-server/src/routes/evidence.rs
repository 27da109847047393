//! The evidence locker's routes: case artifacts in, bundles sealed, read back
//! re-verified, downloaded (audited), held, and their attestations listed.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_ledger::dsse::Envelope;
use custos_ledger::intoto::verify_provenance;
use custos_model::ledger::LogName;
use custos_model::{FieldError, Permission, TenantId, Timestamp};
use custos_store::{ArtifactRecord, AttestationQuery, BundleRecord, LegalHold, LogAppend, StoreError};
use custos_telemetry::TraceContext;
use serde_json::json;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::evidence::{self, Requester, Verification};
use crate::ledger::{AdminAction, action_records};

fn requester(caller: &Caller, trace: Option<&axum::Extension<TraceContext>>) -> Requester {
    Requester { actor: super::holds::actor(caller), trace_id: trace.map(|t| t.trace_id_hex()) }
}

#[utoipa::path(
    put, path = "/v1/tenants/{tenant}/evidence/cases/{case}/artifacts/{name}", tag = "evidence",
    summary = "Upload a file to a case, streamed; write-once",
    description = "The body is the file, streamed to the object store and hashed on the way (at most \
        `--evidence-max-artifact-bytes`, 2 GiB by default). `Content-Type` is kept as its media type. A name is \
        written once: the same name again is a 409, whatever the bytes. The upload is recorded in the tenant's \
        timeline (`custos.evidence.artifact.uploaded`) and audit log.",
    params(("tenant" = String, Path), ("case" = String, Path), ("name" = String, Path,
        description = "1..=255 bytes of letters, digits and `._+=@,-`, not starting with a dot")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = ArtifactRecord),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 409, description = "The case has an artifact by this name", body = crate::error::ErrorResponse),
        (status = 413, description = "Over the artifact size limit", body = crate::error::ErrorResponse),
        (status = 422, description = "A bad case id, name or media type", body = crate::error::ErrorResponse),
        (status = 503, description = "No object store is configured", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:create"]))
)]
pub(crate) async fn upload_artifact(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, case, name)): Path<(String, String, String)>,
    trace: Option<axum::Extension<TraceContext>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceCreate).await?;
    evidence::check_case_id("case", &case)?;
    evidence::check_artifact_name(&name).map_err(ApiError::invalid)?;
    let media_type = evidence::media_type(&headers)?;
    let objects = evidence::objects(&state)?;
    let max = state.config.evidence_max_artifact_bytes;
    if let Some(existing) = state.store.artifact(&tenant, &case, &name).await? {
        return Err(name_taken(&existing));
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the artifact exceeds the limit of {max} bytes (--evidence-max-artifact-bytes)"),
        ));
    }
    let requester = requester(&caller, trace.as_ref());
    let key = format!("{}/uploads/{}", evidence::case_prefix(&tenant, &case), uuid::Uuid::now_v7().simple());
    let (size, digest) = evidence::upload(objects, &key, body, max).await?;
    let sha256 = hex::encode(digest);
    let details =
        serde_json::json!({"case_id": case, "name": name, "sha256": sha256, "size": size, "media_type": media_type});
    let event = requester.event(&tenant, "custos.evidence.artifact.uploaded", &case, details.clone());
    let artifact = ArtifactRecord {
        case_id: case.clone(),
        name: name.clone(),
        object_key: key.clone(),
        size,
        sha256,
        media_type,
        uploaded_by: caller.token.id.clone(),
        uploaded_at: event.ts,
        event_id: event.event_id.clone(),
    };
    match state.store.put_artifact(&tenant, &artifact).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists { .. }) => {
            // Another upload of the name finished first: this one was never recorded.
            evidence::discard(objects, &key).await;
            let existing = state.store.artifact(&tenant, &case, &name).await?;
            return Err(existing.as_ref().map_or_else(|| ApiError::new(ErrorCode::Conflict, "taken"), name_taken));
        }
        Err(other) => {
            evidence::discard(objects, &key).await;
            return Err(other.into());
        }
    }
    evidence::hold_written(&state, &tenant, &case, &evidence::object_path(&key)?, false).await;
    let audit = requester.audit(&tenant, "custos.evidence.artifact.uploaded", ("evidence_case", &case), details);
    record(&state, &tenant, Some(LogAppend::timeline(&event)), LogAppend::audit(&audit)).await?;
    Ok((StatusCode::CREATED, Json(artifact)).into_response())
}

fn name_taken(existing: &ArtifactRecord) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "case {:?} already has an artifact named {:?} (sha256 {}, uploaded {}); artifacts are write-once, \
             so upload under another name",
            existing.case_id, existing.name, existing.sha256, existing.uploaded_at
        ),
    )
    .with_field("name")
}

/// Appends the timeline event (when there is one) and the audit record a request owes;
/// failing to is failing the request.
async fn record(
    state: &AppState,
    tenant: &TenantId,
    event: Option<LogAppend>,
    audit: LogAppend,
) -> Result<(), ApiError> {
    if let Some(event) = event {
        evidence::append_required(state, tenant, LogName::Timeline, event).await?;
    }
    evidence::append_required(state, tenant, LogName::Audit, audit).await
}

/// A bundle to seal.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotInput {
    /// What to preserve: `case` (the case's uploaded artifacts), `evaluation` (a rule
    /// run, with the timeline events about it and their inclusion proofs) or `job` (a
    /// job run's capsule, likewise). `export` is answered with a 422 naming what this
    /// build seals.
    pub kind: String,
    /// The case the bundle belongs to.
    pub case_id: String,
    /// What the bundle is of: for `evaluation`, the rule run's id; for `job`,
    /// `<job>/<run_id>` (both required); for `case`, the case id (the default).
    pub resource_id: Option<String>,
}

/// A bundle as recorded.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct BundleView {
    pub bundle_id: String,
    pub case_id: String,
    pub kind: String,
    pub resource_id: String,
    /// The RFC 6962 root over the bundle's files, hex.
    pub merkle_root: String,
    /// SHA-256 of `manifest.json`: the subject of the bundle's attestation.
    pub manifest_sha256: String,
    pub signed_by: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub created_by: String,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The timeline event that recorded the sealing.
    pub event_id: String,
}

impl From<&BundleRecord> for BundleView {
    fn from(b: &BundleRecord) -> Self {
        Self {
            bundle_id: b.bundle_id.clone(),
            case_id: b.case_id.clone(),
            kind: b.kind.clone(),
            resource_id: b.resource_id.clone(),
            merkle_root: b.merkle_root.clone(),
            manifest_sha256: b.manifest_sha256.clone(),
            signed_by: b.key_ids.clone(),
            files: b.files,
            bytes: b.bytes,
            created_by: b.created_by.clone(),
            created_at: b.created_at,
            trace_id: b.trace_id.clone(),
            event_id: b.event_id.clone(),
        }
    }
}

/// A sealed bundle.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SnapshotOutput {
    #[serde(flatten)]
    pub bundle: BundleView,
    /// Its provenance attestation (`GET …/attestations?subject_id=<bundle_id>`).
    pub attestation_id: String,
    /// SHA-256 of the bundle's `custody.json`.
    pub custody_sha256: String,
    /// When the time-stamping authority stamped the root (with `--tsa-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamped_at: Option<Timestamp>,
}

/// The kinds this build seals, quoted, for messages.
fn sealed_kinds() -> String {
    let sealed: Vec<String> = KINDS.iter().filter(|(_, sealed)| *sealed).map(|(k, _)| format!("{k:?}")).collect();
    sealed.join(", ")
}

/// The kinds a snapshot names, and whether this build seals them.
const KINDS: &[(&str, bool)] = &[("case", true), ("evaluation", true), ("job", true), ("export", false)];

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/evidence/snapshots", tag = "evidence",
    summary = "Seal a signed evidence bundle",
    description = "`case`: the case's artifacts, each re-hashed against its upload digest, with `custody.json` \
        (who uploaded what, when, and the timeline event of each upload). `evaluation`: the rule run \
        `resource_id` as reported (`evaluation/rule_run.json`), and the timeline events about it (same \
        `resource_id` or `trace_id`, and custos's record of its failure), each as `timeline/<leaf>.json` with \
        its inclusion proof to `proofs/timeline.checkpoint`, signed at sealing. `job`: the capsule \
        `resource_id` = `<job>/<run_id>` as reported (`job/capsule.json`, `job/transcript.txt`), checked against \
        the digest the timeline recorded when it was reported, with that record and the events of its trace, \
        proven likewise. Every bundle has a manifest of \
        every file's size, SHA-256 and media type, the RFC 6962 root over them, the manifest's DSSE signature \
        and a SLSA provenance attestation. Recorded in the timeline (`custos.evidence.bundle.sealed`) and \
        audit log.",
    params(("tenant" = String, Path)),
    request_body(content((SnapshotInput = "application/json"))),
    responses(
        (status = 201, body = SnapshotOutput),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 409, description = "An artifact no longer matches its upload digest", body = crate::error::ErrorResponse),
        (status = 422, description = "An unknown kind, a bad case id, or a case without artifacts", body = crate::error::ErrorResponse),
        (status = 503, description = "No object store or signing key is configured", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:create"]))
)]
pub(crate) async fn create_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    trace: Option<axum::Extension<TraceContext>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceCreate).await?;
    let input: SnapshotInput = crate::body::read_json(&headers, body, 64 * 1024).await?;
    evidence::check_case_id("case_id", &input.case_id)?;
    match KINDS.iter().find(|(kind, _)| *kind == input.kind) {
        Some((_, true)) => {}
        Some((kind, false)) => {
            return Err(ApiError::invalid(FieldError::new(
                "kind",
                format!("{kind:?} bundles are not sealed by this build yet; it seals {}", sealed_kinds()),
            )));
        }
        None => {
            let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            return Err(ApiError::invalid(FieldError::new(
                "kind",
                format!("unknown kind {:?}; known: {}", input.kind, known.join(", ")),
            )));
        }
    }
    let requester = requester(&caller, trace.as_ref());
    let sealed = match input.kind.as_str() {
        "case" => {
            if input.resource_id.as_ref().is_some_and(|r| *r != input.case_id) {
                return Err(ApiError::invalid(FieldError::new(
                    "resource_id",
                    "a case bundle's resource is its case_id",
                )));
            }
            evidence::seal_case(&state, &tenant, &input.case_id, &requester).await?
        }
        _ => {
            let resource = input.resource_id.as_deref().ok_or_else(|| {
                ApiError::invalid(FieldError::new(
                    "resource_id",
                    format!("a {} bundle needs the id of what it preserves", input.kind),
                ))
            })?;
            if resource.is_empty() || resource.len() > 256 {
                return Err(ApiError::invalid(FieldError::new("resource_id", "must be 1 to 256 bytes")));
            }
            if input.kind == "job" {
                evidence::seal_job(&state, &tenant, &input.case_id, resource, &requester).await?
            } else {
                evidence::seal_evaluation(&state, &tenant, &input.case_id, resource, &requester).await?
            }
        }
    };
    let bundle = &sealed.bundle;
    let prefix = evidence::object_path(&bundle.object_prefix)?;
    evidence::hold_written(&state, &tenant, &bundle.case_id, &prefix, true).await;
    let details = serde_json::json!({
        "bundle_id": bundle.bundle_id,
        "case_id": bundle.case_id,
        "kind": bundle.kind,
        "resource_id": bundle.resource_id,
        "merkle_root": bundle.merkle_root,
        "manifest_sha256": bundle.manifest_sha256,
        "custody_sha256": sealed.custody_sha256,
        "files": bundle.files,
        "bytes": bundle.bytes,
        "signed_by": bundle.key_ids,
        "attestation_id": sealed.attestation.attestation_id,
        "timestamp": sealed.timestamp.as_ref().map(|t| serde_json::json!({"time": t.time, "tsa": t.tsa, "serial": t.serial})),
    });
    let mut event = requester.event(&tenant, "custos.evidence.bundle.sealed", &bundle.case_id, details.clone());
    event.event_id = bundle.event_id.clone();
    let audit =
        requester.audit(&tenant, "custos.evidence.bundle.sealed", ("evidence_bundle", &bundle.bundle_id), details);
    record(&state, &tenant, Some(LogAppend::timeline(&event)), LogAppend::audit(&audit)).await?;
    let output = SnapshotOutput {
        bundle: BundleView::from(bundle),
        attestation_id: sealed.attestation.attestation_id.clone(),
        custody_sha256: sealed.custody_sha256,
        timestamped_at: sealed.timestamp.as_ref().map(|t| t.time),
    };
    Ok((StatusCode::CREATED, Json(output)).into_response())
}

/// A bundle, its manifest and the verdict of reading it back.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct BundleOutput {
    pub bundle: BundleView,
    /// `manifest.json` as stored; null when it cannot be read.
    #[schema(value_type = Option<Object>)]
    pub manifest: Option<serde_json::Value>,
    pub verification: Verification,
    pub storage: Storage,
}

/// Where the bundle's bytes are and what protects them from change, read from the
/// object store on every read.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Storage {
    /// `local` (a directory; files read-only, no protection from its owner) or `s3`.
    pub backend: &'static str,
    /// The S3 Object Lock retention of the bundle's `manifest.json`, as S3 reports it
    /// (set by `--evidence-object-lock` or the bucket's default retention); null when it
    /// has none, and always on a local directory.
    pub object_lock: Option<custos_store::objects::Retention>,
}

async fn bundle_record(state: &AppState, tenant: &TenantId, id: &str) -> Result<BundleRecord, ApiError> {
    state.store.bundle(tenant, id).await?.ok_or_else(|| ApiError::not_found(format!("no evidence bundle {id:?}")))
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/evidence/{bundle}", tag = "evidence",
    summary = "A bundle's manifest and verification, re-verified on every read",
    description = "Reads every file of the bundle back from the object store and verifies it as `custos \
        forensic verify` does offline (each file's digest, no file missing or added, the Merkle root, the \
        manifest's signature by a key valid when it was sealed), then checks the root and manifest digest \
        against what was recorded at sealing. `verification.verified: false` names the failed check; the \
        response is a 200 either way.",
    params(("tenant" = String, Path), ("bundle" = String, Path)),
    responses(
        (status = 200, body = BundleOutput),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 503, description = "No object store is configured", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:read"]))
)]
pub(crate) async fn get_bundle(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceRead).await?;
    let objects = evidence::objects(&state)?;
    let record = bundle_record(&state, &tenant, &id).await?;
    let keys = evidence::trusted_keys(&state).await?;
    let tsa = state.config.tsa.as_ref().map(|t| t.certificates.clone()).unwrap_or_default();
    let (verification, manifest) = evidence::verify_stored(objects, &record, keys, tsa).await?;
    if !verification.verified {
        tracing::error!(
            tenant_id = tenant.as_str(),
            bundle_id = record.bundle_id,
            check = verification.check,
            error = verification.error,
            "a stored evidence bundle failed verification"
        );
    }
    let manifest_path =
        evidence::object_path(&format!("{}/{}", record.object_prefix, custos_ledger::bundle::MANIFEST))?;
    // A manifest that cannot be read is already the verification's finding.
    let object_lock = objects.retention(&manifest_path).await.unwrap_or_else(|error| {
        tracing::warn!(error = &error as &dyn std::error::Error, "the bundle's Object Lock retention is unknown");
        None
    });
    let storage = Storage { backend: objects.kind().as_str(), object_lock };
    Ok(Json(BundleOutput { bundle: BundleView::from(&record), manifest, verification, storage }).into_response())
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/evidence/{bundle}/download", tag = "evidence",
    summary = "Download a bundle as its deterministic .tar.gz (audited)",
    description = "The same bundle always downloads to the same bytes: entries `<bundle_id>/<path>` in bytewise \
        order, fixed modes, owners and times, stored (not compressed) deflate. Each download is recorded in \
        the tenant's audit log (`custos.evidence.bundle.downloaded`) before a byte is sent. Verify it offline \
        with `custos forensic verify`.",
    params(("tenant" = String, Path), ("bundle" = String, Path)),
    responses(
        (status = 200, content_type = "application/gzip", body = Vec<u8>),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 503, description = "No object store is configured", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:export"]))
)]
pub(crate) async fn download_bundle(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
    trace: Option<axum::Extension<TraceContext>>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceExport).await?;
    let objects = evidence::objects(&state)?;
    let record = bundle_record(&state, &tenant, &id).await?;
    let requester = requester(&caller, trace.as_ref());
    let details = serde_json::json!({
        "bundle_id": record.bundle_id,
        "case_id": record.case_id,
        "merkle_root": record.merkle_root,
        "manifest_sha256": record.manifest_sha256,
    });
    let audit =
        requester.audit(&tenant, "custos.evidence.bundle.downloaded", ("evidence_bundle", &record.bundle_id), details);
    record_audit(&state, &tenant, audit).await?;
    let body = evidence::archive_body(objects, &record).await?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{}.tar.gz\"", record.bundle_id)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&record.manifest_sha256) {
        headers.insert("x-custos-manifest-sha256", value);
    }
    Ok(response)
}

async fn record_audit(
    state: &AppState,
    tenant: &TenantId,
    audit: custos_model::ledger::AuditRecord,
) -> Result<(), ApiError> {
    evidence::append_required(state, tenant, LogName::Audit, LogAppend::audit(&audit)).await
}

/// A case's evidence.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CaseOutput {
    pub case_id: String,
    /// Whether retention must keep its evidence: a hold on the case, or a tenant-wide
    /// legal hold.
    pub held: bool,
    pub holds: Vec<LegalHold>,
    pub artifacts: Vec<ArtifactRecord>,
    /// Newest first.
    pub bundles: Vec<BundleView>,
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/evidence/cases/{case}", tag = "evidence",
    summary = "A case's artifacts, bundles and holds",
    params(("tenant" = String, Path), ("case" = String, Path)),
    responses(
        (status = 200, body = CaseOutput),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 422, body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:read"]))
)]
pub(crate) async fn get_case(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, case)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceRead).await?;
    evidence::check_case_id("case", &case)?;
    let output = CaseOutput {
        held: state.store.case_held(&tenant, &case).await?,
        holds: state.store.case_holds(&tenant, Some(&case)).await?,
        artifacts: state.store.artifacts(&tenant, &case).await?,
        bundles: state.store.case_bundles(&tenant, &case).await?.iter().map(BundleView::from).collect(),
        case_id: case,
    };
    Ok(Json(output).into_response())
}

/// A hold to place on a case.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseHoldInput {
    /// Why (a matter or ticket reference), at most 1024 characters.
    pub reason: String,
}

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/evidence/holds/{case}", tag = "evidence",
    summary = "Hold a case's evidence: no retention path deletes it while the hold is active",
    params(("tenant" = String, Path), ("case" = String, Path)),
    request_body(content((CaseHoldInput = "application/json"))),
    responses(
        (status = 201, body = LegalHold),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 409, description = "The case is held already", body = crate::error::ErrorResponse),
        (status = 422, body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:hold"]))
)]
pub(crate) async fn place_case_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, case)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceHold).await?;
    evidence::check_case_id("case", &case)?;
    let input: CaseHoldInput = crate::body::read_json(&headers, body, 64 * 1024).await?;
    let reason = input.reason.trim().to_owned();
    custos_model::check::text("reason", &reason, super::holds::MAX_REASON_CHARS).map_err(ApiError::invalid)?;
    let hold = LegalHold {
        id: case.clone(),
        reason,
        created_by: caller.token.id.clone(),
        created_at: Timestamp::now(),
        released_at: None,
    };
    let action = AdminAction {
        kind: "custos.evidence.hold.placed",
        actor: super::holds::actor(&caller),
        resource_type: "evidence_case",
        resource_id: &case,
        details: serde_json::json!({"case_id": case, "reason": hold.reason}),
    };
    // The hold and its records commit together, or the request fails and nothing changed.
    state.store.create_case_hold(&tenant, &hold, &action_records(&tenant, &action)?).await?;
    evidence::spawn_mirror_holds(&state, &tenant, Some(&case), action.actor, "custos.evidence.hold.placed");
    Ok((StatusCode::CREATED, Json(hold)).into_response())
}

#[utoipa::path(
    delete, path = "/v1/tenants/{tenant}/evidence/holds/{case}", tag = "evidence",
    summary = "Release a case's hold (kept, with its release time)",
    params(("tenant" = String, Path), ("case" = String, Path)),
    responses(
        (status = 200, body = LegalHold),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, description = "The case has no active hold", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:hold"]))
)]
pub(crate) async fn release_case_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, case)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceHold).await?;
    let active = state.store.case_holds(&tenant, Some(&case)).await?.into_iter().find(|h| h.released_at.is_none());
    let hold = active.ok_or_else(|| ApiError::not_found(format!("case {case:?} has no active hold")))?;
    let action = AdminAction {
        kind: "custos.evidence.hold.released",
        actor: super::holds::actor(&caller),
        resource_type: "evidence_case",
        resource_id: &case,
        details: serde_json::json!({"case_id": case, "reason": hold.reason, "placed_at": hold.created_at}),
    };
    let records = action_records(&tenant, &action)?;
    let hold = state.store.release_case_hold(&tenant, &case, Timestamp::now(), &records).await?;
    evidence::spawn_mirror_holds(&state, &tenant, Some(&case), action.actor, "custos.evidence.hold.released");
    Ok(Json(hold).into_response())
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/evidence/holds", tag = "evidence",
    summary = "Every case hold of the tenant, newest first (released ones too)",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<LegalHold>),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:read"]))
)]
pub(crate) async fn list_case_holds(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceRead).await?;
    Ok(Json(state.store.case_holds(&tenant, None).await?).into_response())
}

/// Which attestations to list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttestationParams {
    /// What they are about: a bundle id.
    pub subject_id: Option<String>,
    /// The subject's SHA-256, 64 hex digits.
    pub subject_sha256: Option<String>,
    /// At most this many, newest first (1..=1000, default 100).
    pub limit: Option<usize>,
}

/// An attestation as stored, and the verdict of verifying it now.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AttestationOutput {
    pub attestation_id: String,
    pub subject_type: String,
    pub subject_id: String,
    pub subject_name: String,
    pub subject_sha256: String,
    pub predicate_type: String,
    pub created_at: Timestamp,
    /// The DSSE envelope.
    #[schema(value_type = Object)]
    pub envelope: serde_json::Value,
    pub verification: AttestationVerification,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AttestationVerification {
    pub verified: bool,
    /// When not verified: the check that failed, as `POST /v1/attestations/verify` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub signed_by: Vec<String>,
    /// Whose statement it is: `custos` (a bundle's provenance) or `platform` (a report).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub origin: Option<custos_ledger::intoto::Origin>,
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/attestations", tag = "evidence",
    summary = "The tenant's attestations, each verified on read",
    description = "Each envelope is verified now against the published keys, its payload and predicate types \
        and its subject digest, as `POST /v1/attestations/verify` does.",
    params(("tenant" = String, Path), AttestationParams),
    responses(
        (status = 200, body = Vec<AttestationOutput>),
        (status = 400, description = "An unknown parameter", body = crate::error::ErrorResponse),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 422, body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:read"]))
)]
pub(crate) async fn list_attestations(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    params: Result<Query<AttestationParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceRead).await?;
    let Query(params) = params.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=custos_store::evidence::MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid(FieldError::new("limit", "must be 1 to 1000")));
    }
    let digest = params.subject_sha256.map(|d| d.to_ascii_lowercase());
    if digest.as_ref().is_some_and(|d| d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(ApiError::invalid(FieldError::new("subject_sha256", "must be 64 hex digits")));
    }
    let query = AttestationQuery { subject_id: params.subject_id, subject_sha256: digest, limit };
    let keys: Vec<_> = evidence::trusted_keys(&state).await?.into_iter().map(|k| k.key).collect();
    let found = state.store.attestations(&tenant, &query).await?;
    let output: Vec<AttestationOutput> = found
        .into_iter()
        .map(|a| {
            let verification = match Envelope::parse(a.envelope.as_bytes())
                .map_err(custos_ledger::intoto::AttestationError::Envelope)
                .and_then(|envelope| verify_provenance(&envelope, &keys, &a.subject_sha256, Some(tenant.as_str())))
            {
                Ok(verified) => AttestationVerification {
                    verified: true,
                    check: None,
                    error: None,
                    signed_by: verified.signed_by,
                    origin: Some(verified.origin),
                },
                Err(error) => AttestationVerification {
                    verified: false,
                    check: Some(error.check()),
                    error: Some(error.to_string()),
                    signed_by: vec![],
                    origin: None,
                },
            };
            AttestationOutput {
                envelope: serde_json::from_str(&a.envelope).unwrap_or(serde_json::Value::Null),
                attestation_id: a.attestation_id,
                subject_type: a.subject_type,
                subject_id: a.subject_id,
                subject_name: a.subject_name,
                subject_sha256: a.subject_sha256,
                predicate_type: a.predicate_type,
                created_at: a.created_at,
                verification,
            }
        })
        .collect();
    Ok(Json(output).into_response())
}

/// A tenant's evidence retention.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionInput {
    /// Days bundles and uploads are kept (1..=36500); null: forever.
    pub days: Option<u32>,
}

/// Longest evidence retention accepted, in days (100 years).
const MAX_RETENTION_DAYS: u32 = 36_500;

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/evidence/retention", tag = "evidence",
    summary = "How long the tenant's evidence is kept",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = RetentionInput),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:read"]))
)]
pub(crate) async fn get_retention(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceRead).await?;
    Ok(Json(RetentionInput { days: state.store.evidence_retention(&tenant).await? }).into_response())
}

#[utoipa::path(
    put, path = "/v1/tenants/{tenant}/evidence/retention", tag = "evidence",
    summary = "Set how long the tenant's evidence is kept",
    description = "The retention worker (every `--retention-period`) deletes bundles sealed, and uploads \
        received, more than `days` ago, unless their case or the tenant is held, and records what it deleted \
        (`custos.evidence.pruned`). `null`, the default: kept forever.",
    params(("tenant" = String, Path)),
    request_body(content((RetentionInput = "application/json"))),
    responses(
        (status = 200, body = RetentionInput),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 422, body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn put_retention(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::Admin).await?;
    let input: RetentionInput = crate::body::read_json(&headers, body, 4 * 1024).await?;
    if input.days.is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d)) {
        return Err(ApiError::invalid(FieldError::new("days", "must be 1 to 36500, or null for forever")));
    }
    let action = AdminAction {
        kind: "custos.evidence.retention.set",
        actor: super::holds::actor(&caller),
        resource_type: "evidence",
        resource_id: tenant.as_str(),
        details: serde_json::json!({"days": input.days}),
    };
    let records = action_records(&tenant, &action)?;
    state.store.set_evidence_retention(&tenant, input.days, &caller.token.id, Timestamp::now(), &records).await?;
    Ok(Json(input).into_response())
}

/// An artifact a platform job produced, for custos to attest.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttestInput {
    /// The artifact's name (a file name, an image reference), 1..=255 characters.
    pub subject_name: String,
    /// Its SHA-256, 64 hex digits.
    pub subject_sha256: String,
    /// What made it: a URI naming the job's kind (default
    /// `https://custos.dev/platform-artifact/v1`). Other `https://custos.dev/` types are
    /// custos's own and refused.
    pub build_type: Option<String>,
    /// The job's inputs as it reports them (a JSON object, at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub external_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// The job run's id.
    pub invocation_id: Option<String>,
    /// When the job started and finished (RFC 3339).
    pub started_on: Option<String>,
    pub finished_on: Option<String>,
}

/// A new attestation.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AttestOutput {
    pub attestation_id: String,
    /// The DSSE envelope of the in-toto statement.
    #[schema(value_type = Object)]
    pub envelope: serde_json::Value,
}

const MAX_PARAMETERS_BYTES: usize = 16 * 1024;

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/attestations", tag = "evidence",
    summary = "Attest an artifact a platform job produced",
    description = "custos signs an in-toto Statement v1 with a SLSA Provenance v1 predicate about the artifact \
        (its name and SHA-256), carrying what the job reported (`buildType`, `externalParameters`, the run's id \
        and times) and who reported it (`internalParameters.tenant_id` and `reported_by`: the tenant and the \
        token's id), built by `https://<deployment>/custos/platform`. Build types under `https://custos.dev/` \
        other than the default are custos's own and refused (422 naming `build_type`). custos vouches that \
        the platform reported this, with this token, at this time; not that the job did what it says. \
        Recorded in the timeline (`custos.attestation.created`).",
    params(("tenant" = String, Path)),
    request_body(content((AttestInput = "application/json"))),
    responses(
        (status = 201, body = AttestOutput),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 422, body = crate::error::ErrorResponse),
        (status = 503, description = "No signing key is configured", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["evidence:create"]))
)]
pub(crate) async fn create_attestation(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    trace: Option<axum::Extension<TraceContext>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    use custos_ledger::intoto::{
        BuildDefinition, BuildMetadata, Builder, Provenance, ResourceDescriptor, RunDetails, Statement,
    };
    let tenant = caller.tenant_access(&state, &tenant, Permission::EvidenceCreate).await?;
    let input: AttestInput = crate::body::read_json(&headers, body, 64 * 1024).await?;
    custos_model::check::text("subject_name", &input.subject_name, 255).map_err(ApiError::invalid)?;
    let digest = input.subject_sha256.to_ascii_lowercase();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(FieldError::new("subject_sha256", "must be 64 hex digits")));
    }
    let build_type = input.build_type.unwrap_or_else(|| custos_ledger::intoto::PLATFORM_BUILD_TYPE.to_owned());
    let uri = build_type.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic()) && !rest.is_empty()
    });
    if !uri || build_type.len() > 256 || build_type.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(FieldError::new("build_type", "must be an absolute URI of at most 256 bytes")));
    }
    // custos's own build types say custos made the thing; a platform's report must not
    // read as one (a tenant could otherwise get custos to sign another tenant's bundle).
    if custos_ledger::intoto::is_reserved_build_type(&build_type) {
        return Err(ApiError::invalid(FieldError::new(
            "build_type",
            format!(
                "build types under https://custos.dev/ are custos's own; name your platform's, or omit it for {}",
                custos_ledger::intoto::PLATFORM_BUILD_TYPE
            ),
        )));
    }
    let parameters = input.external_parameters.unwrap_or_default();
    if serde_json::to_vec(&parameters).map_or(0, |b| b.len()) > MAX_PARAMETERS_BYTES {
        return Err(ApiError::invalid(FieldError::new("external_parameters", "must be at most 16 KiB of JSON")));
    }
    if let Some(id) = &input.invocation_id {
        custos_model::check::text("invocation_id", id, 255).map_err(ApiError::invalid)?;
    }
    let time = |field: &str, value: Option<String>| {
        value.map(|v| Timestamp::parse(field, &v).map(|t| t.to_string()).map_err(ApiError::invalid)).transpose()
    };
    let started_on = time("started_on", input.started_on)?;
    let finished_on = time("finished_on", input.finished_on)?;
    let key = state.ledger.key()?;
    let internal: serde_json::Map<String, serde_json::Value> = [
        ("tenant_id".to_owned(), json!(tenant.as_str())),
        ("reported_by".to_owned(), json!(caller.token.id)),
        ("signed_at".to_owned(), json!(Timestamp::now())),
    ]
    .into_iter()
    .collect();
    let statement = Statement::provenance(
        vec![ResourceDescriptor::sha256(input.subject_name.clone(), digest.clone())],
        Provenance {
            build_definition: BuildDefinition {
                build_type,
                external_parameters: parameters,
                internal_parameters: Some(internal),
                resolved_dependencies: vec![],
            },
            run_details: RunDetails {
                builder: Builder {
                    id: custos_ledger::intoto::Origin::Platform.builder_id(state.ledger.deployment()),
                    version: [("custos".to_owned(), state.config.version.clone())].into(),
                    builder_dependencies: vec![],
                },
                metadata: Some(BuildMetadata { invocation_id: input.invocation_id, started_on, finished_on }),
                byproducts: vec![],
            },
        },
    );
    let signers = key.dsse_signers(Timestamp::now());
    let envelope = statement.sign(&signers.iter().collect::<Vec<_>>());
    let record = custos_store::AttestationRecord {
        attestation_id: format!("att_{}", uuid::Uuid::now_v7().simple()),
        subject_type: "artifact".into(),
        subject_id: input.subject_name.clone(),
        subject_name: input.subject_name.clone(),
        subject_sha256: digest.clone(),
        predicate_type: custos_ledger::intoto::SLSA_PROVENANCE.into(),
        envelope: envelope.to_json(),
        created_at: Timestamp::now(),
    };
    state.store.put_attestation(&tenant, &record).await?;
    let requester = requester(&caller, trace.as_ref());
    let details = json!({"attestation_id": record.attestation_id, "subject_name": record.subject_name,
        "subject_sha256": digest});
    let mut event = requester.event(&tenant, "custos.attestation.created", "-", details);
    (event.resource_type, event.resource_id) = (Some("attestation".into()), Some(record.attestation_id.clone()));
    evidence::append_required(&state, &tenant, LogName::Timeline, LogAppend::timeline(&event)).await?;
    let envelope: serde_json::Value = serde_json::from_str(&record.envelope).map_err(|e| ApiError::internal(&e))?;
    Ok((StatusCode::CREATED, Json(AttestOutput { attestation_id: record.attestation_id, envelope })).into_response())
}

/// A capsule as kept.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CapsuleOutput {
    pub job_id: String,
    pub run_id: String,
    /// SHA-256 of the stored `capsule.json`, also recorded in the timeline.
    pub capsule_sha256: String,
    /// The environment's digest (values hashed, never stored).
    pub environment_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript_sha256: Option<String>,
    /// The timeline event recording it (`custos.job.capsule.reported`).
    pub event_id: String,
    pub received_at: Timestamp,
    /// Seal it: `POST …/evidence/snapshots` with this `resource_id` and kind `job`.
    pub resource_id: String,
}

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/jobs/{job}/capsule", tag = "evidence",
    summary = "Report a job run's capsule: inputs, outputs, runner image, environment, transcript",
    description = "What one run of a scheduled job consumed (`inputs`), produced (`outputs`) and ran in \
        (`runner_image` by digest, `environment`), and its command `transcript`. Environment values are hashed \
        on receipt with a salt drawn for the capsule (`SHA-256(salt ‖ name ‖ 0x00 ‖ value)`) and never stored \
        or logged. Written once per run (a second report is a 409) to the object store, and recorded in the \
        timeline (`custos.job.capsule.reported`, with the capsule's SHA-256). Seal it into a `job` evidence \
        bundle with `resource_id` `<job>/<run_id>`. Bounds: body 2 MiB, transcript 1 MiB, 1,000 inputs, \
        1,000 outputs, 1,000 variables of at most 64 KiB each.",
    params(("tenant" = String, Path), ("job" = String, Path, description = "A scheduled_job component")),
    request_body(content((crate::capsules::CapsuleInput = "application/json"))),
    responses(
        (status = 201, body = CapsuleOutput),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, body = crate::error::ErrorResponse),
        (status = 404, description = "Unknown tenant or job", body = crate::error::ErrorResponse),
        (status = 409, description = "The run has a capsule, or the component is not a job", body = crate::error::ErrorResponse),
        (status = 413, body = crate::error::ErrorResponse),
        (status = 422, body = crate::error::ErrorResponse),
        (status = 503, description = "No object store is configured", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["ingest:write"]))
)]
pub(crate) async fn report_capsule(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, job)): Path<(String, String)>,
    trace: Option<axum::Extension<TraceContext>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    use crate::capsules;
    let tenant = caller.tenant_access(&state, &tenant, Permission::IngestWrite).await?;
    capsules::check_segment("job", &job)?;
    let objects = evidence::objects(&state)?;
    match state.store.component(&tenant, &job).await? {
        None => return Err(ApiError::not_found(format!("job {job:?} not found"))),
        Some(c) if c.kind != custos_model::ComponentKind::ScheduledJob => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("component {job:?} is a {}, not a scheduled_job", c.kind.as_str()),
            ));
        }
        Some(_) => {}
    }
    let input: capsules::CapsuleInput =
        crate::body::read_json(&headers, body, capsules::MAX_CAPSULE_BODY_BYTES).await?;
    let requester = requester(&caller, trace.as_ref());
    let reported_by = requester.actor.id.clone().unwrap_or_else(|| "custos".into());
    let (capsule, transcript) = capsules::build(&tenant, &job, input, reported_by, Timestamp::now())?;
    let bytes = capsules::store(objects, &tenant, &capsule, transcript).await?;
    let capsule_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let transcript_sha256 = capsule.transcript.as_ref().map(|t| t.sha256.clone());
    let event = custos_model::ledger::TimelineEvent {
        event_id: capsules::event_id(&job, &capsule.run_id),
        ts: capsule.received_at,
        tenant_id: tenant.clone(),
        project_id: None,
        kind: capsules::CAPSULE_EVENT.into(),
        actor: requester.actor_text(),
        resource_type: Some("job".into()),
        resource_id: Some(job.clone()),
        trace_id: capsule.trace_id.clone().or_else(|| requester.trace_id.clone()),
        details: json!({
            "run_id": capsule.run_id,
            "capsule_sha256": capsule_sha256,
            "environment_sha256": capsule.environment.sha256,
            "transcript_sha256": transcript_sha256,
            "inputs": capsule.inputs.len(),
            "outputs": capsule.outputs.len(),
        }),
    };
    if let Err(error) = evidence::append_required(&state, &tenant, LogName::Timeline, LogAppend::timeline(&event)).await
    {
        // Unrecorded, the capsule is not kept: the report can be sent again.
        let at = capsules::prefix(&tenant, &job, &capsule.run_id);
        evidence::discard(objects, &format!("{at}/{}", capsules::TRANSCRIPT_FILE)).await;
        evidence::discard(objects, &format!("{at}/{}", capsules::CAPSULE_FILE)).await;
        return Err(error);
    }
    let output = CapsuleOutput {
        resource_id: format!("{job}/{}", capsule.run_id),
        job_id: job,
        run_id: capsule.run_id,
        capsule_sha256,
        environment_sha256: capsule.environment.sha256,
        transcript_sha256,
        event_id: event.event_id,
        received_at: capsule.received_at,
    };
    Ok((StatusCode::CREATED, Json(output)).into_response())
}
