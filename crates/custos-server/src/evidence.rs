//! The evidence locker: case artifacts streamed into the object store, bundles sealed
//! from them (a manifest of every file's digest, an RFC 6962 root over them, a DSSE
//! signature, a provenance attestation), read back and re-verified, and streamed out as
//! the deterministic archive `custos forensic verify` checks offline.
//!
//! Objects are written once ([`custos_store::Objects::put_new`]): under
//! `tenants/<t>/evidence/<case>/uploads/<upload id>` for uploads, and
//! `tenants/<t>/evidence/<case>/<bundle id>/…` for a bundle's files.

use std::io::Read;

use axum::body::Body;
use base64::Engine as _;
use custos_ledger::bundle::{
    self, ArchiveWriter, BundleError, FileEntry, MANIFEST, MANIFEST_ENVELOPE, Manifest, ROOT_FILE, TIMESTAMP_FILE,
    TrustedKey, Verifier,
};
use custos_ledger::dsse::DsseKey;
use custos_ledger::intoto::{
    BuildDefinition, BuildMetadata, Builder, Provenance, ResourceDescriptor, RunDetails, Statement,
};
use custos_ledger::tsa::{self, Certificate, VerifiedTimestamp};
use custos_model::ledger::{AuditActor, AuditOutcome, AuditRecord, LogName, TimelineEvent};
use custos_model::{FieldError, TenantId, Timestamp};
use custos_store::{ArtifactRecord, AttestationRecord, BundleRecord, LogAppend, Objects};
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// The largest case artifact accepted when none is configured: 2 GiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Longest artifact name, in bytes.
pub const MAX_ARTIFACT_NAME_BYTES: usize = 255;
/// Part size of a streamed upload (S3's smallest): one upload holds a part being filled
/// and at most [`UPLOAD_PARTS_IN_FLIGHT`] being written.
const UPLOAD_PART_BYTES: usize = 5 * 1024 * 1024;
const UPLOAD_PARTS_IN_FLIGHT: usize = 2;
/// Archive bytes buffered between the archive writer and the response.
const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;
/// The build type of a bundle's provenance.
/// The subject type of a bundle's attestation.
pub const SUBJECT_BUNDLE: &str = "evidence_bundle";
/// The file in a case bundle recording each artifact's upload (the chain of custody).
pub const CUSTODY_FILE: &str = "custody.json";

/// The time-stamping authority bundles' roots are stamped by.
#[derive(Debug, Clone)]
pub struct TsaConfig {
    /// Where `application/timestamp-query` requests are posted.
    pub url: String,
    /// Its certificates, pinned: a token is kept, and later verified, only against them.
    pub certificates: Vec<Certificate>,
}

/// How long a TSA may take to answer.
const TSA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Largest TSA answer read.
const MAX_TSA_RESPONSE: usize = 256 * 1024;

/// Asks the TSA to stamp `root`; the token, once verified against the pinned
/// certificates and this request's nonce.
async fn stamp(config: &TsaConfig, root: &[u8; 32]) -> Result<(Vec<u8>, VerifiedTimestamp), ApiError> {
    // The TSA's address and the client's own error text are the operator's (in the log,
    // under the request id); the caller learns only that the stamp failed.
    let unavailable = |why: String| {
        tracing::error!(tsa_url = config.url, error = why, "the time-stamping authority failed");
        ApiError::new(
            ErrorCode::Unavailable,
            "the time-stamping authority failed (the request id identifies it in the server's logs); nothing was \
             sealed; retry later",
        )
    };
    let nonce: u64 = rand::random();
    let response = reqwest::Client::new()
        .post(&config.url)
        .header("content-type", "application/timestamp-query")
        .timeout(TSA_TIMEOUT)
        .body(tsa::request(root, nonce))
        .send()
        .await
        .map_err(|e| unavailable(format!("no answer ({e})")))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("HTTP {}", response.status())));
    }
    let body = response.bytes().await.map_err(|e| unavailable(format!("reading the answer: {e}")))?;
    if body.len() > MAX_TSA_RESPONSE {
        return Err(unavailable(format!("an answer of {} bytes", body.len())));
    }
    let token = tsa::token_from_response(&body).map_err(|e| unavailable(e.to_string()))?;
    let verified =
        tsa::verify_token(&token, root, Some(nonce), &config.certificates).map_err(|e| unavailable(e.to_string()))?;
    Ok((token, verified))
}

/// The object store, or a 503 saying none is configured.
pub(crate) fn objects(state: &AppState) -> Result<&Objects, ApiError> {
    state.objects.as_ref().ok_or_else(|| {
        ApiError::new(ErrorCode::Unavailable, "the evidence locker needs an object store, and none is configured")
    })
}

/// A case id: 1..=128 of `A-Za-z0-9._:-`, as any custos id.
pub(crate) fn check_case_id(field: &str, case: &str) -> Result<(), ApiError> {
    custos_model::check::identifier(field, case, 128).map_err(ApiError::invalid)?;
    // `.` and `..` would name no directory of their own in an object path.
    if case.bytes().all(|b| b == b'.') {
        return Err(ApiError::invalid(FieldError::new(field, "must not be made only of dots")));
    }
    Ok(())
}

/// An artifact's name: 1..=255 bytes of `A-Za-z0-9._+=@,-`, not starting with a dot. It
/// becomes `artifacts/<name>` in bundles, on every file system and object store as is.
pub(crate) fn check_artifact_name(name: &str) -> Result<(), FieldError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._+=@,-".contains(&b);
    if name.is_empty() || name.len() > MAX_ARTIFACT_NAME_BYTES {
        return Err(FieldError::new("name", format!("must be 1 to {MAX_ARTIFACT_NAME_BYTES} bytes")));
    }
    if name.starts_with('.') || !name.bytes().all(allowed) {
        return Err(FieldError::new(
            "name",
            "must be letters, digits and . _ + = @ , - (not starting with a dot); got an other character",
        ));
    }
    Ok(())
}

/// A media type as given in `Content-Type`: `type/subtype`, parameters dropped.
pub(crate) fn media_type(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".into());
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => Ok(essence),
        _ => Err(ApiError::invalid(FieldError::new("content-type", format!("{text:?} is not a media type")))),
    }
}

pub(crate) fn case_prefix(tenant: &TenantId, case: &str) -> String {
    format!("tenants/{tenant}/evidence/{case}")
}

pub(crate) fn object_path(key: &str) -> Result<ObjectPath, ApiError> {
    ObjectPath::parse(key).map_err(|e| ApiError::internal(&e))
}

/// After a hold changed, brings S3's legal holds in line with custos's holds, when
/// Object Lock is configured: on for every object of each held case, off for the others
/// (of `case`, or of all the tenant's cases for a tenant-wide hold). It runs on its own
/// task, so a large tenant does not hold the request up and a client that goes away does
/// not cut it short, and records what it did as `custos.evidence.s3_legal_holds.synced`
/// (`objects_on`, `objects_off`, or `error`). custos's own hold stands either way, and is
/// what its retention obeys.
pub(crate) fn spawn_mirror_holds(
    state: &AppState,
    tenant: &TenantId,
    case: Option<&str>,
    actor: AuditActor,
    cause: &'static str,
) {
    if !state.objects.as_ref().is_some_and(|objects| objects.mirrors_holds()) {
        return;
    }
    let (state, tenant, case) = (state.clone(), tenant.clone(), case.map(str::to_owned));
    let task = async move {
        let mut details = serde_json::json!({"cause": cause});
        if let Some(case) = &case {
            details["case_id"] = serde_json::json!(case);
        }
        match mirror_holds(&state, &tenant, case.as_deref()).await {
            Ok((on, off)) => {
                details["objects_on"] = serde_json::json!(on);
                details["objects_off"] = serde_json::json!(off);
            }
            Err(error) => {
                tracing::error!(
                    tenant_id = tenant.as_str(),
                    error = &error as &dyn std::error::Error,
                    "S3 legal holds could not be brought in line with custos's holds"
                );
                details["error"] = serde_json::json!(error.to_string());
            }
        }
        let action = crate::ledger::AdminAction {
            kind: "custos.evidence.s3_legal_holds.synced",
            actor,
            resource_type: if case.is_some() { "evidence_case" } else { "tenant" },
            resource_id: case.as_deref().unwrap_or(tenant.as_str()),
            details,
        };
        crate::ledger::record_admin_action(&*state.store, std::slice::from_ref(&tenant), &action).await;
    };
    tokio::spawn(tracing::Instrument::instrument(task, tracing::Span::current()));
}

/// Sets each case's objects' legal holds to whether the case is held; how many were
/// set on and off. A case found unheld is checked again after its objects were turned
/// off: a hold placed meanwhile (perhaps on another replica) then turns them back on
/// here, and one placed after that check runs its own pass after these requests, so
/// an object is never left off while its case is held.
async fn mirror_holds(
    state: &AppState,
    tenant: &TenantId,
    case: Option<&str>,
) -> Result<(u64, u64), custos_store::StoreError> {
    let Some(objects) = state.objects.as_ref() else { return Ok((0, 0)) };
    let cases = match case {
        Some(case) => vec![case.to_owned()],
        None => objects.children(&ObjectPath::from(format!("tenants/{tenant}/evidence"))).await?,
    };
    let (mut on, mut off) = (0u64, 0u64);
    for case in cases {
        let prefix = ObjectPath::from(case_prefix(tenant, &case));
        if state.store.case_held(tenant, &case).await? {
            on += objects.set_legal_holds_under(&prefix, true).await?;
            continue;
        }
        let cleared = objects.set_legal_holds_under(&prefix, false).await?;
        if state.store.case_held(tenant, &case).await? {
            on += objects.set_legal_holds_under(&prefix, true).await?;
        } else {
            off += cleared;
        }
    }
    Ok((on, off))
}

/// After objects were written into `case` (`path`: one object, or with `prefix` a
/// bundle's directory): puts them under S3 legal hold when the case is held and Object
/// Lock is configured. The hold is checked after the write, so a hold placed meanwhile,
/// which lists the case's objects once it is recorded, cannot miss them. A failure is
/// logged, not returned: the write is recorded already, and custos's hold, which is what
/// retention obeys, covers it.
pub(crate) async fn hold_written(state: &AppState, tenant: &TenantId, case: &str, path: &ObjectPath, prefix: bool) {
    let Some(objects) = state.objects.as_ref().filter(|objects| objects.mirrors_holds()) else { return };
    let held = async {
        if !state.store.case_held(tenant, case).await? {
            return Ok(());
        }
        match prefix {
            true => objects.set_legal_holds_under(path, true).await.map(drop),
            false => objects.set_legal_hold(path, true).await,
        }
    };
    if let Err(error) = held.await {
        tracing::error!(
            tenant_id = tenant.as_str(),
            case_id = case,
            object = %path,
            error = &error as &dyn std::error::Error,
            "an object written into a held case could not be put under S3 legal hold"
        );
    }
}

/// The published signing keys, with their validity windows.
pub(crate) async fn trusted_keys(state: &AppState) -> Result<Vec<TrustedKey>, ApiError> {
    Ok(state
        .store
        .signing_keys()
        .await?
        .iter()
        .filter_map(|k| {
            let key = DsseKey::from_bytes(&k.public_key)?;
            Some(TrustedKey { key, not_before: Some(k.not_before), not_after: k.not_after })
        })
        .collect())
}

/// Streams `body` into a new object at `key`, hashing it; refuses (and removes) it
/// beyond `max` bytes. Its size and SHA-256.
pub(crate) async fn upload(objects: &Objects, key: &str, body: Body, max: u64) -> Result<(u64, [u8; 32]), ApiError> {
    let path = object_path(key)?;
    let mut upload = objects.upload_new(&path, UPLOAD_PART_BYTES).await.map_err(ApiError::from)?;
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let failure = loop {
        let chunk = match stream.next().await {
            None => break None,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                break Some(ApiError::new(ErrorCode::MalformedBody, format!("could not read the body: {e}")));
            }
        };
        size += chunk.len() as u64;
        if size > max {
            break Some(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the artifact exceeds the limit of {max} bytes (--evidence-max-artifact-bytes)"),
            ));
        }
        hasher.update(&chunk);
        upload.put(chunk);
        if let Err(e) = upload.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await {
            break Some(ApiError::from(custos_store::StoreError::Object {
                context: format!("uploading {key}"),
                source: e,
            }));
        }
    };
    if let Some(error) = failure {
        if let Err(abort) = upload.abort().await {
            tracing::warn!(error = &abort as &dyn std::error::Error, key, "aborting a refused upload failed");
        }
        return Err(error);
    }
    let written = upload.finish().await.map_err(|e| {
        ApiError::from(custos_store::StoreError::Object { context: format!("finishing {key}"), source: e })
    })?;
    objects.seal(&path, &written).await.map_err(ApiError::from)?;
    Ok((size, hasher.finalize().into()))
}

/// Removes an object custos wrote but never recorded (an upload that lost a race).
pub(crate) async fn discard(objects: &Objects, key: &str) {
    if let Ok(path) = ObjectPath::parse(key)
        && let Err(error) = objects.store().delete(&path).await
    {
        tracing::warn!(error = &error as &dyn std::error::Error, key, "removing an unrecorded upload failed");
    }
}

/// Who asked and under which trace, for the records a request leaves.
#[derive(Debug, Clone)]
pub(crate) struct Requester {
    pub actor: AuditActor,
    pub trace_id: Option<String>,
}

impl Requester {
    /// Who acted, as a timeline event names them.
    pub(crate) fn actor_text(&self) -> Option<String> {
        self.actor.name.clone().or_else(|| self.actor.id.clone())
    }

    /// A timeline event of custos's own about `case`.
    pub(crate) fn event(&self, tenant: &TenantId, kind: &str, case: &str, details: serde_json::Value) -> TimelineEvent {
        let slug = kind.trim_start_matches("custos.").replace(['.', '_'], "-");
        TimelineEvent {
            event_id: crate::ledger::own_event_id(&slug),
            ts: Timestamp::now(),
            tenant_id: tenant.clone(),
            project_id: None,
            kind: kind.to_owned(),
            actor: self.actor_text(),
            resource_type: Some("evidence_case".into()),
            resource_id: Some(case.to_owned()),
            trace_id: self.trace_id.clone(),
            details,
        }
    }

    /// An audit record of custos's own about `resource`.
    pub(crate) fn audit(
        &self,
        tenant: &TenantId,
        action: &str,
        resource: (&str, &str),
        details: serde_json::Value,
    ) -> AuditRecord {
        let slug = action.trim_start_matches("custos.").replace(['.', '_'], "-");
        AuditRecord {
            event_id: crate::ledger::own_event_id(&slug),
            ts: Timestamp::now(),
            tenant_id: tenant.clone(),
            actor: self.actor.clone(),
            actor_ip: None,
            action: action.to_owned(),
            outcome: AuditOutcome::Success,
            resource_type: Some(resource.0.to_owned()),
            resource_id: Some(resource.1.to_owned()),
            request_id: None,
            trace_id: self.trace_id.clone(),
            details,
        }
    }
}

/// Appends a record the request cannot do without (chain of custody, a download's
/// audit): its failure fails the request.
pub(crate) async fn append_required(
    state: &AppState,
    tenant: &TenantId,
    log: LogName,
    record: LogAppend,
) -> Result<(), ApiError> {
    crate::ledger::append(state, tenant, log, vec![record], Timestamp::now()).await.map(drop)
}

/// A line of the custody file: one artifact as uploaded.
#[derive(Debug, serde::Serialize)]
struct CustodyStep<'a> {
    step: &'static str,
    name: &'a str,
    sha256: &'a str,
    size: u64,
    media_type: &'a str,
    by: &'a str,
    at: Timestamp,
    /// The timeline event that recorded the step.
    event_id: &'a str,
}

/// What sealing produced.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub bundle: BundleRecord,
    pub attestation: AttestationRecord,
    pub custody_sha256: String,
    /// The RFC 3161 timestamp of the root, when a TSA is configured.
    pub timestamp: Option<VerifiedTimestamp>,
}

/// Seals a case's artifacts into a new bundle: each artifact is re-hashed against its
/// upload digest and linked into the bundle, the custody file and manifest written, the
/// manifest signed, and the bundle with its attestation recorded.
pub(crate) async fn seal_case(
    state: &AppState,
    tenant: &TenantId,
    case: &str,
    requester: &Requester,
) -> Result<Sealed, ApiError> {
    let objects = objects(state)?;
    let artifacts = state.store.artifacts(tenant, case).await?;
    if artifacts.len() > custos_store::evidence::MAX_CASE_ARTIFACTS {
        return Err(ApiError::invalid(FieldError::new(
            "case_id",
            format!(
                "case {case:?} holds more than {} artifacts, more than one bundle carries",
                custos_store::evidence::MAX_CASE_ARTIFACTS
            ),
        )));
    }
    if artifacts.is_empty() {
        return Err(ApiError::invalid(FieldError::new(
            "case_id",
            format!("case {case:?} has no artifacts to seal; upload some first"),
        )));
    }
    let draft = Draft::new(state, tenant, case, "case", case.to_owned())?;
    let mut files = Vec::with_capacity(artifacts.len() + 1);
    for artifact in &artifacts {
        let (size, digest) = hash_object(objects, &artifact.object_key).await?;
        if size != artifact.size || hex::encode(digest) != artifact.sha256 {
            tracing::error!(
                tenant_id = tenant.as_str(),
                case_id = case,
                artifact = artifact.name,
                "a case artifact no longer matches its upload digest"
            );
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "artifact {:?} no longer matches the digest recorded at its upload (sha256 {}, {} bytes; \
                     the object now has {} bytes); the object store was changed outside custos, and the case \
                     is not sealed",
                    artifact.name, artifact.sha256, artifact.size, size
                ),
            ));
        }
        let path = format!("artifacts/{}", artifact.name);
        let to = object_path(&format!("{}/{path}", draft.prefix))?;
        objects.copy_new(&object_path(&artifact.object_key)?, &to).await.map_err(ApiError::from)?;
        files.push(FileEntry { path, size, sha256: artifact.sha256.clone(), media_type: artifact.media_type.clone() });
    }

    let custody = custody_json(case, &artifacts);
    finish(state, tenant, draft, files, custody, requester).await
}

/// A bundle being sealed: where its files go, and what it is.
struct Draft<'a> {
    bundle_id: String,
    prefix: String,
    started: Timestamp,
    kind: &'static str,
    case: &'a str,
    resource_id: String,
    /// The key that signs it, read before anything is written.
    key: std::sync::Arc<crate::keys::SigningKey>,
}

impl<'a> Draft<'a> {
    fn new(
        state: &AppState,
        tenant: &TenantId,
        case: &'a str,
        kind: &'static str,
        resource_id: String,
    ) -> Result<Self, ApiError> {
        let key = state.ledger.key()?;
        let bundle_id = format!("evb_{}", uuid::Uuid::now_v7().simple());
        let prefix = format!("{}/{bundle_id}", case_prefix(tenant, case));
        Ok(Self { bundle_id, prefix, started: Timestamp::now(), kind, case, resource_id, key })
    }

    /// Writes one file of the bundle (once: an existing object is an error) and lists it.
    async fn put(
        &self,
        objects: &Objects,
        files: &mut Vec<FileEntry>,
        path: String,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ApiError> {
        files.push(FileEntry {
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            media_type: media_type.to_owned(),
            path: path.clone(),
        });
        objects
            .put_new(&object_path(&format!("{}/{path}", self.prefix))?, PutPayload::from(bytes))
            .await
            .map_err(ApiError::from)
    }
}

/// Ends sealing a bundle whose own files are written and listed in `files`: writes the
/// custody file, stamps the root (with a TSA), writes and signs the manifest, and
/// records the bundle with its attestation.
async fn finish(
    state: &AppState,
    tenant: &TenantId,
    draft: Draft<'_>,
    mut files: Vec<FileEntry>,
    custody: Vec<u8>,
    requester: &Requester,
) -> Result<Sealed, ApiError> {
    let objects = objects(state)?;
    let Draft { bundle_id, prefix, started, kind, case, resource_id, key } = draft;
    let custody_sha256 = hex::encode(Sha256::digest(&custody));
    files.push(FileEntry {
        path: CUSTODY_FILE.into(),
        size: custody.len() as u64,
        sha256: custody_sha256.clone(),
        media_type: "application/json".into(),
    });
    objects
        .put_new(&object_path(&format!("{prefix}/{CUSTODY_FILE}"))?, PutPayload::from(custody))
        .await
        .map_err(ApiError::from)?;
    files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let root = bundle::merkle_root(&files);
    let timestamp = match &state.config.tsa {
        Some(config) => {
            let (token, verified) = stamp(config, &root).await?;
            let path = object_path(&format!("{prefix}/{TIMESTAMP_FILE}"))?;
            objects.put_new(&path, PutPayload::from(token)).await.map_err(ApiError::from)?;
            Some(verified)
        }
        None => None,
    };

    let created_by = requester.actor.id.clone().unwrap_or_else(|| "custos".into());
    let created_at = Timestamp::now();
    // The current key, and the one it replaced while a rotation's overlap lasts.
    let dsse_signers = key.dsse_signers(created_at);
    let signers: Vec<&custos_ledger::dsse::DsseSigner> = dsse_signers.iter().collect();
    let key_ids: Vec<String> = signers.iter().map(|s| s.key_id().to_owned()).collect();
    let manifest = Manifest {
        format: bundle::BUNDLE_FORMAT.into(),
        bundle_id: bundle_id.clone(),
        tenant_id: tenant.to_string(),
        case_id: case.to_owned(),
        kind: kind.into(),
        resource_id: resource_id.clone(),
        created_at,
        created_by: created_by.clone(),
        custos_version: state.config.version.clone(),
        deployment: state.ledger.deployment().to_owned(),
        key_id: key.key_id().to_owned(),
        merkle_root: hex::encode(root),
        files,
    };
    let manifest_bytes = manifest.to_bytes();
    let envelope = Manifest::sign(&manifest_bytes, &signers);
    let manifest_sha256 = hex::encode(Sha256::digest(&manifest_bytes));
    for (name, bytes) in [
        (MANIFEST, manifest_bytes),
        (MANIFEST_ENVELOPE, envelope.to_json().into_bytes()),
        (ROOT_FILE, format!("{}\n", manifest.merkle_root).into_bytes()),
    ] {
        objects
            .put_new(&object_path(&format!("{prefix}/{name}"))?, PutPayload::from(bytes))
            .await
            .map_err(ApiError::from)?;
    }

    let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
    let event_id = crate::ledger::own_event_id("evidence-bundle-sealed");
    let attestation = attest_bundle(state, &manifest, &manifest_sha256, started, &signers);
    let bundle = BundleRecord {
        bundle_id,
        case_id: case.to_owned(),
        kind: kind.into(),
        resource_id,
        object_prefix: prefix,
        merkle_root: manifest.merkle_root.clone(),
        manifest_sha256,
        key_ids,
        files: manifest.files.len() as u64,
        bytes,
        created_by,
        created_at: manifest.created_at,
        trace_id: requester.trace_id.clone(),
        event_id,
    };
    state.store.put_bundle(tenant, &bundle, &attestation).await?;
    Ok(Sealed { bundle, attestation, custody_sha256, timestamp })
}

/// Most log records one bundle carries, each with its proof: the newest are kept, and
/// `custody.json` says when more matched.
pub const MAX_BUNDLE_RECORDS: usize = 1000;

/// A file of a bundle built in memory: path, media type, bytes.
type OwnFile = (String, &'static str, Vec<u8>);

/// Seals what a rule run's evaluation saw: the run as reported (rule key and version,
/// counts, and the evaluation context, which carries the inputs' digests and the
/// engine's version and configuration as the platform reported them), and the timeline
/// events about it, each with its inclusion proof to a checkpoint signed at sealing.
pub(crate) async fn seal_evaluation(
    state: &AppState,
    tenant: &TenantId,
    case: &str,
    run_id: &str,
    requester: &Requester,
) -> Result<Sealed, ApiError> {
    let objects = objects(state)?;
    let query =
        custos_store::RecordQuery { filters: vec![("id".into(), run_id.to_owned())], limit: 1, ..Default::default() };
    let run = state.store.rule_runs_page(tenant, &query).await?.items.into_iter().next().ok_or_else(|| {
        ApiError::invalid(FieldError::new("resource_id", format!("no rule run {run_id:?} in tenant {tenant}")))
    })?;
    let mut queries = vec![("resource_id", run_id.to_owned())];
    queries.extend(run.record.trace_id.clone().map(|trace| ("trace_id", trace)));
    let related = related_records(state, tenant, &queries).await?;
    // custos's own record of a failed run names the rule, not the run: found by its id.
    let failed = custos_store::ledger::failure_event_id("rule_run", run_id);
    let anchors: Vec<_> = state.store.log_entry(tenant, LogName::Timeline, &failed).await?.into_iter().collect();
    let report = pretty(&run);
    let reported = serde_json::json!({
        "step": "reported",
        "what": "rule_run",
        "id": run_id,
        "file": "evaluation/rule_run.json",
        "sha256": hex::encode(Sha256::digest(&report)),
        "at": run.received_at,
    });
    let own = vec![("evaluation/rule_run.json".to_owned(), "application/json", report)];
    let draft = Draft::new(state, tenant, case, "evaluation", run_id.to_owned())?;
    let records = Records { anchors, related };
    seal_with_records(state, tenant, objects, draft, own, reported, records, requester).await
}

/// Seals a job run's capsule as reported (`job/capsule.json`, `job/transcript.txt`),
/// after checking both against the digests the timeline recorded when the capsule was
/// reported, with that record and the timeline events of the capsule's trace, each with
/// its inclusion proof.
pub(crate) async fn seal_job(
    state: &AppState,
    tenant: &TenantId,
    case: &str,
    resource: &str,
    requester: &Requester,
) -> Result<Sealed, ApiError> {
    use crate::capsules::{self, CAPSULE_FILE, Capsule, TRANSCRIPT_FILE};
    let objects = objects(state)?;
    let bad = |message: String| ApiError::invalid(FieldError::new("resource_id", message));
    let (job, run) = resource
        .split_once('/')
        .ok_or_else(|| bad(format!("a job bundle's resource_id is <job>/<run_id>, not {resource:?}")))?;
    capsules::check_segment("resource_id", job)?;
    capsules::check_segment("resource_id", run)?;
    let at = capsules::prefix(tenant, job, run);
    let capsule_bytes = capsules::read(objects, format!("{at}/{CAPSULE_FILE}"))
        .await?
        .ok_or_else(|| bad(format!("job {job:?} has no capsule for run {run:?}; report it first")))?;
    let changed = |what: &str| {
        tracing::error!(
            tenant_id = tenant.as_str(),
            job_id = job,
            run_id = run,
            what,
            "a capsule changed since it was reported"
        );
        ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the {what} of job {job:?} run {run:?} no longer matches the digest recorded when it was reported; \
                 the object store was changed outside custos, and nothing is sealed"
            ),
        )
    };
    let reported =
        state.store.log_entry(tenant, LogName::Timeline, &capsules::event_id(job, run)).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Conflict,
                format!("the timeline no longer holds the report of job {job:?} run {run:?} (retention removed it)"),
            )
        })?;
    let record: serde_json::Value = serde_json::from_str(&reported.record).unwrap_or_default();
    let capsule_sha256 = hex::encode(Sha256::digest(&capsule_bytes));
    if record["details"]["capsule_sha256"].as_str() != Some(capsule_sha256.as_str()) {
        return Err(changed("capsule"));
    }
    let capsule: Capsule = serde_json::from_slice(&capsule_bytes).map_err(|e| ApiError::internal(&e))?;
    let mut own = vec![("job/capsule.json".to_owned(), "application/json", capsule_bytes)];
    if let Some(expected) = &capsule.transcript {
        let text =
            capsules::read(objects, format!("{at}/{TRANSCRIPT_FILE}")).await?.ok_or_else(|| changed("transcript"))?;
        if hex::encode(Sha256::digest(&text)) != expected.sha256 {
            return Err(changed("transcript"));
        }
        own.push(("job/transcript.txt".to_owned(), "text/plain; charset=utf-8", text));
    }
    let queries: Vec<(&str, String)> = capsule.trace_id.iter().map(|t| ("trace_id", t.clone())).collect();
    let related = related_records(state, tenant, &queries).await?;
    let records = Records { anchors: vec![reported.clone()], related };
    let first_step = serde_json::json!({
        "step": "reported",
        "what": "job_capsule",
        "job_id": job,
        "run_id": run,
        "file": "job/capsule.json",
        "sha256": capsule_sha256,
        "by": capsule.reported_by,
        "at": capsule.received_at,
        "event_id": reported.event_id,
    });
    let draft = Draft::new(state, tenant, case, "job", resource.to_owned())?;
    seal_with_records(state, tenant, objects, draft, own, first_step, records, requester).await
}

/// A value as pretty JSON with a final newline (the form of a bundle's JSON files).
pub(crate) fn pretty(value: &impl serde::Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("records serialize");
    bytes.push(b'\n');
    bytes
}

/// The timeline records matching any of `queries` (one exact-match filter each), by
/// leaf index; at most [`MAX_BUNDLE_RECORDS`] + 1 per query, so truncation shows.
async fn related_records(
    state: &AppState,
    tenant: &TenantId,
    queries: &[(&str, String)],
) -> Result<std::collections::BTreeMap<u64, custos_store::LogEntry>, ApiError> {
    let mut records = std::collections::BTreeMap::new();
    for (column, value) in queries {
        let query = custos_store::LogQuery { limit: MAX_BUNDLE_RECORDS + 1, ..Default::default() }
            .filter(column, value.clone());
        for entry in state.store.log_page(tenant, LogName::Timeline, &query).await?.items {
            records.insert(entry.leaf_index, entry);
        }
    }
    Ok(records)
}

/// The timeline records a bundle proves.
struct Records {
    /// Always carried: the record the bundle is anchored by.
    anchors: Vec<custos_store::LogEntry>,
    /// Carried up to [`MAX_BUNDLE_RECORDS`] in all, the newest first, by leaf index.
    related: std::collections::BTreeMap<u64, custos_store::LogEntry>,
}

impl Records {
    /// The records to carry, in log order, and whether some related ones were left out.
    fn carried(self) -> (Vec<custos_store::LogEntry>, bool) {
        let mut all = self.related;
        let room = MAX_BUNDLE_RECORDS.saturating_sub(self.anchors.len());
        let anchored: std::collections::HashSet<u64> = self.anchors.iter().map(|e| e.leaf_index).collect();
        all.retain(|index, _| !anchored.contains(index));
        let truncated = all.len() > room;
        let skip = all.len().saturating_sub(room);
        let mut carried: Vec<_> = all.into_values().skip(skip).chain(self.anchors).collect();
        carried.sort_by_key(|e| e.leaf_index);
        (carried, truncated)
    }
}

/// Seals `own` files with timeline `records` (the anchors, and the newest related ones
/// up to [`MAX_BUNDLE_RECORDS`] in all), each
/// as `timeline/<leaf index>.json` with its proof `proofs/timeline/<leaf index>.json` to
/// `proofs/timeline.checkpoint`, signed now if the latest checkpoint does not cover the
/// log's head with the current key. `custody.json` lists `first_step`, then each record.
#[allow(clippy::too_many_arguments)]
async fn seal_with_records(
    state: &AppState,
    tenant: &TenantId,
    objects: &Objects,
    draft: Draft<'_>,
    own: Vec<OwnFile>,
    first_step: serde_json::Value,
    records: Records,
    requester: &Requester,
) -> Result<Sealed, ApiError> {
    let log = LogName::Timeline;
    let (records, truncated) = records.carried();
    let checkpoint = crate::ledger::checkpoint(state, tenant, log).await?;
    let mut files_in_memory = own;
    let mut steps = vec![first_step];
    for entry in records {
        if entry.leaf_index >= checkpoint.size {
            // The checkpoint was signed after the records were read: it covers them.
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!(
                    "timeline leaf {} is beyond the checkpoint of {} leaves signed after it was read",
                    entry.leaf_index, checkpoint.size
                ),
            ));
        }
        let audit_path =
            crate::ledger::inclusion_proof(&*state.store, tenant, log, entry.leaf_index, checkpoint.size).await?;
        let leaf = format!("{log}/{}.json", entry.leaf_index);
        let proof_path = format!("{}/{log}/{}.json", bundle::PROOFS_DIR, entry.leaf_index);
        let proof = bundle::InclusionProof {
            format: bundle::PROOF_FORMAT.into(),
            log: log.as_str().into(),
            leaf: leaf.clone(),
            leaf_index: entry.leaf_index,
            tree_size: checkpoint.size,
            audit_path: audit_path.iter().map(|h| base64::engine::general_purpose::STANDARD.encode(h)).collect(),
        };
        let record: serde_json::Value = serde_json::from_str(&entry.record).unwrap_or_default();
        steps.push(serde_json::json!({
            "step": "recorded",
            "what": "timeline_event",
            "event_id": entry.event_id,
            "kind": record.get("kind"),
            "leaf_index": entry.leaf_index,
            "file": leaf,
            "proof": proof_path,
            "sha256": hex::encode(Sha256::digest(entry.record.as_bytes())),
            "at": entry.received_at,
        }));
        files_in_memory.push((leaf, "application/json", entry.record.into_bytes()));
        files_in_memory.push((proof_path, "application/json", proof.to_bytes()));
    }
    let checkpoint_path = format!("{}/{log}.checkpoint", bundle::PROOFS_DIR);
    files_in_memory.push((checkpoint_path.clone(), "text/plain; charset=utf-8", checkpoint.note.clone().into_bytes()));
    let custody = pretty(&serde_json::json!({
        "case_id": draft.case,
        "kind": draft.kind,
        "resource_id": draft.resource_id,
        "steps": steps,
        "checkpoint": {"log": log.as_str(), "size": checkpoint.size, "root": hex::encode(checkpoint.root),
            "key_id": checkpoint.key_id, "file": checkpoint_path},
        "records_truncated": truncated,
    }));
    let mut files = Vec::with_capacity(files_in_memory.len() + 1);
    for (path, media_type, bytes) in files_in_memory {
        draft.put(objects, &mut files, path, media_type, bytes).await?;
    }
    finish(state, tenant, draft, files, custody, requester).await
}

/// The custody file: the case and each artifact's upload, in name order.
fn custody_json(case: &str, artifacts: &[ArtifactRecord]) -> Vec<u8> {
    let steps: Vec<CustodyStep<'_>> = artifacts
        .iter()
        .map(|a| CustodyStep {
            step: "upload",
            name: &a.name,
            sha256: &a.sha256,
            size: a.size,
            media_type: &a.media_type,
            by: &a.uploaded_by,
            at: a.uploaded_at,
            event_id: &a.event_id,
        })
        .collect();
    pretty(&serde_json::json!({"case_id": case, "steps": steps}))
}

/// The SLSA provenance of a bundle: its subject is the manifest (which names every
/// file's digest), its builder this deployment.
fn attest_bundle(
    state: &AppState,
    manifest: &Manifest,
    manifest_sha256: &str,
    started: Timestamp,
    signers: &[&custos_ledger::dsse::DsseSigner],
) -> AttestationRecord {
    let subject_name = format!("{}/{MANIFEST}", manifest.bundle_id);
    let parameters = |pairs: &[(&str, &str)]| {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned()))).collect()
    };
    let statement = Statement::provenance(
        vec![ResourceDescriptor::sha256(subject_name.clone(), manifest_sha256)],
        Provenance {
            build_definition: BuildDefinition {
                build_type: custos_ledger::intoto::BUNDLE_BUILD_TYPE.into(),
                external_parameters: parameters(&[
                    ("tenant_id", &manifest.tenant_id),
                    ("case_id", &manifest.case_id),
                    ("kind", &manifest.kind),
                    ("resource_id", &manifest.resource_id),
                ]),
                internal_parameters: Some(parameters(&[
                    ("tenant_id", &manifest.tenant_id),
                    ("merkle_root", &manifest.merkle_root),
                    ("signed_at", &manifest.created_at.to_string()),
                ])),
                resolved_dependencies: manifest
                    .files
                    .iter()
                    .map(|f| ResourceDescriptor::sha256(f.path.clone(), f.sha256.clone()))
                    .collect(),
            },
            run_details: RunDetails {
                builder: Builder {
                    id: custos_ledger::intoto::Origin::Custos.builder_id(state.ledger.deployment()),
                    version: [("custos".to_owned(), state.config.version.clone())].into(),
                    builder_dependencies: vec![],
                },
                metadata: Some(BuildMetadata {
                    invocation_id: Some(manifest.bundle_id.clone()),
                    started_on: Some(started.to_string()),
                    finished_on: Some(manifest.created_at.to_string()),
                }),
                byproducts: vec![],
            },
        },
    );
    let envelope = statement.sign(signers);
    AttestationRecord {
        attestation_id: format!("att_{}", uuid::Uuid::now_v7().simple()),
        subject_type: SUBJECT_BUNDLE.into(),
        subject_id: manifest.bundle_id.clone(),
        subject_name,
        subject_sha256: manifest_sha256.to_owned(),
        predicate_type: custos_ledger::intoto::SLSA_PROVENANCE.into(),
        envelope: envelope.to_json(),
        created_at: manifest.created_at,
    }
}

/// An object's size and SHA-256, read on the blocking pool.
async fn hash_object(objects: &Objects, key: &str) -> Result<(u64, [u8; 32]), ApiError> {
    let (objects, path, runtime) = (objects.clone(), object_path(key)?, tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || {
        let mut reader = objects.blocking_reader(&runtime, &path).map_err(ApiError::from)?;
        bundle::hash_reader(&mut reader).map_err(|e| ApiError::internal(&e))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
}

/// A stored bundle's files, relative to its prefix, with their sizes, in bytewise order.
async fn bundle_files(objects: &Objects, prefix: &str) -> Result<Vec<(String, u64)>, ApiError> {
    let listed: Vec<object_store::ObjectMeta> = objects
        .store()
        .list(Some(&object_path(prefix)?))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ApiError::from(custos_store::StoreError::Object { context: format!("listing {prefix}"), source: e })
        })?;
    let mut files: Vec<(String, u64)> = listed
        .into_iter()
        .filter_map(|meta| {
            let path = meta.location.as_ref().strip_prefix(prefix)?.strip_prefix('/')?.to_owned();
            Some((path, meta.size))
        })
        .collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(files)
}

/// The verdict on a stored bundle.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Verification {
    pub verified: bool,
    /// When not verified: the check that failed (`file_digest`, `signature`, `merkle_root`,
    /// `recorded_root`, …) and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The keys whose signatures verified.
    pub signed_by: Vec<String>,
    /// When the manifest says it was signed (its `created_at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<Timestamp>,
    /// The RFC 3161 timestamp of the root, when the bundle carries one:
    /// `{"verified": true, "time", "tsa", "serial", "policy"}`, checked on this read
    /// against the configured TSA certificate.
    #[schema(value_type = Option<Object>)]
    pub timestamp: Option<serde_json::Value>,
    /// Inclusion proofs of the bundle's log records, each verified to its checkpoint.
    #[serde(skip_serializing_if = "is_zero")]
    pub inclusion_proofs: usize,
    /// When this verification ran.
    pub checked_at: Timestamp,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Verification {
    fn failed(check: &'static str, error: String) -> Self {
        Self {
            verified: false,
            check: Some(check),
            error: Some(error),
            signed_by: vec![],
            signed_at: None,
            timestamp: None,
            inclusion_proofs: 0,
            checked_at: Timestamp::now(),
        }
    }
}

/// Reads every file of a stored bundle back and verifies it as `custos forensic verify`
/// would, then checks its root and manifest digest against what the database recorded
/// at sealing (a bundle replaced wholesale, even validly signed, is caught). Also the
/// manifest as read (read first, so it is there whatever fails after), when it is JSON.
pub(crate) async fn verify_stored(
    objects: &Objects,
    record: &BundleRecord,
    keys: Vec<TrustedKey>,
    tsa_certificates: Vec<Certificate>,
) -> Result<(Verification, Option<serde_json::Value>), ApiError> {
    let mut files = bundle_files(objects, &record.object_prefix).await?;
    // The manifest first: it is returned even when a later file fails.
    files.sort_by_key(|(path, _)| path != MANIFEST);
    let (objects, prefix, runtime) = (objects.clone(), record.object_prefix.clone(), tokio::runtime::Handle::current());
    let (verdict, manifest) = tokio::task::spawn_blocking(move || {
        let verifier = Verifier::new(keys).with_tsa_certificates(tsa_certificates);
        let mut check = verifier.check();
        let mut manifest: Option<Vec<u8>> = None;
        let read = (|| -> Result<(), BundleError> {
            for (path, _) in &files {
                let object =
                    ObjectPath::parse(format!("{prefix}/{path}")).map_err(|e| BundleError::Read(e.to_string()))?;
                let reader =
                    objects.blocking_reader(&runtime, &object).map_err(|e| BundleError::Read(e.to_string()))?;
                if path == MANIFEST {
                    let mut bytes = Vec::new();
                    reader
                        .take(bundle::MAX_METADATA_BYTES + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|e| BundleError::Read(e.to_string()))?;
                    check.add(path, bytes.as_slice())?;
                    manifest = Some(bytes);
                } else {
                    check.add(path, reader)?;
                }
            }
            Ok(())
        })();
        (read.and_then(|()| check.finish()), manifest)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let manifest_sha256 = manifest.as_ref().map(|bytes| hex::encode(Sha256::digest(bytes))).unwrap_or_default();
    let verification = match verdict {
        Err(error) => Verification::failed(error.check(), error.to_string()),
        Ok(report) if report.merkle_root != record.merkle_root => Verification::failed(
            "recorded_root",
            format!(
                "the bundle's root {} is not the root recorded at sealing, {}",
                report.merkle_root, record.merkle_root
            ),
        ),
        Ok(_) if manifest_sha256 != record.manifest_sha256 => Verification::failed(
            "recorded_manifest",
            format!(
                "the manifest's SHA-256 {manifest_sha256} is not the one recorded at sealing, {}",
                record.manifest_sha256
            ),
        ),
        Ok(report) => Verification {
            verified: true,
            check: None,
            error: None,
            timestamp: match (&report.timestamp, report.timestamp_unchecked) {
                (Some(stamp), _) => Some(serde_json::json!({"verified": true, "time": stamp.time, "tsa": stamp.tsa,
                    "serial": stamp.serial, "policy": stamp.policy})),
                (None, true) => Some(serde_json::json!({"verified": null,
                    "note": "the bundle carries a timestamp, and no TSA certificate is configured to check it"})),
                (None, false) => None,
            },
            signed_by: report.signed_by,
            signed_at: Some(report.signed_at),
            inclusion_proofs: report.inclusion_proofs,
            checked_at: Timestamp::now(),
        },
    };
    Ok((verification, manifest.and_then(|bytes: Vec<u8>| serde_json::from_slice(&bytes).ok())))
}

/// The bundle as its deterministic `.tar.gz`, streamed: written on the blocking pool
/// into a bounded channel the response reads, so memory stays flat whatever its size.
pub(crate) async fn archive_body(objects: &Objects, record: &BundleRecord) -> Result<Body, ApiError> {
    let files = bundle_files(objects, &record.object_prefix).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let (objects, record, runtime) = (objects.clone(), record.clone(), tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter { sender: sender.clone(), buffer: Vec::with_capacity(DOWNLOAD_CHUNK_BYTES) };
        let written = (|| -> std::io::Result<()> {
            let mut archive = ArchiveWriter::new(out, &record.bundle_id);
            for (path, size) in &files {
                let object =
                    ObjectPath::parse(format!("{}/{path}", record.object_prefix)).map_err(std::io::Error::other)?;
                let reader = objects.blocking_reader(&runtime, &object).map_err(std::io::Error::other)?;
                archive.add(path, *size, reader)?;
            }
            archive.finish()?.flush_all()
        })();
        if let Err(error) = written {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                bundle_id = record.bundle_id,
                "a bundle download broke off"
            );
            let _ = sender.blocking_send(Err(error));
        }
    });
    Ok(Body::from_stream(tokio_stream_from(receiver)))
}

fn tokio_stream_from(
    mut receiver: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A writer that hands full chunks to a channel (blocking when the reader lags).
struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(DOWNLOAD_CHUNK_BYTES)));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }

    fn flush_all(mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = DOWNLOAD_CHUNK_BYTES - self.buffer.len();
        let n = data.len().min(room);
        self.buffer.extend_from_slice(&data[..n]);
        if self.buffer.len() == DOWNLOAD_CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One evidence retention pass as of `now`: for each tenant with a retention set, the
/// bundles sealed and uploads received more than that many days before `now` are
/// deleted, unless their case or the tenant is held. A row goes first (the database
/// refuses it under hold, even if a hold was placed since the listing), then its
/// objects; the tenant's timeline and audit log record what went
/// (`custos.evidence.pruned`). Returns the bundles and uploads deleted.
pub async fn retention_pass(state: &AppState, now: Timestamp) -> usize {
    let Some(objects) = state.objects.as_ref() else { return 0 };
    let tenants = match state.store.tenants().await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::warn!(error = &error as &dyn std::error::Error, "listing tenants for evidence retention failed");
            return 0;
        }
    };
    let mut removed = 0;
    for tenant in tenants {
        match prune_evidence(state, objects, &tenant.id, now).await {
            Ok(n) => removed += n,
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                tenant_id = tenant.id.as_str(),
                "evidence retention failed"
            ),
        }
    }
    removed
}

async fn prune_evidence(
    state: &AppState,
    objects: &Objects,
    tenant: &TenantId,
    now: Timestamp,
) -> Result<usize, custos_store::StoreError> {
    let Some(days) = state.store.evidence_retention(tenant).await? else { return Ok(0) };
    let cutoff = now.saturating_add_micros(-(i64::from(days) * 86_400 * 1_000_000));
    let expired = state.store.expired_evidence(tenant, cutoff).await?;
    let (mut bundles, mut uploads) = (Vec::new(), Vec::new());
    for bundle in &expired.bundles {
        if let Err(error) = state.store.delete_bundle(tenant, &bundle.bundle_id).await {
            tracing::warn!(error = &error as &dyn std::error::Error, bundle_id = bundle.bundle_id, "kept a bundle");
            continue;
        }
        delete_objects(objects, &bundle.object_prefix).await;
        bundles.push(bundle.bundle_id.clone());
    }
    for artifact in &expired.artifacts {
        if let Err(error) = state.store.delete_artifact(tenant, &artifact.case_id, &artifact.name).await {
            tracing::warn!(error = &error as &dyn std::error::Error, artifact = artifact.name, "kept an upload");
            continue;
        }
        discard(objects, &artifact.object_key).await;
        uploads.push(format!("{}/{}", artifact.case_id, artifact.name));
    }
    let removed = bundles.len() + uploads.len();
    if removed == 0 {
        return Ok(0);
    }
    tracing::info!(tenant_id = tenant.as_str(), bundles = bundles.len(), uploads = uploads.len(), "evidence retention");
    let requester = Requester {
        actor: AuditActor { id: Some("custos".into()), name: Some("custos retention".into()) },
        trace_id: None,
    };
    let details = serde_json::json!({
        "bundles": bundles, "uploads": uploads, "received_before": cutoff,
        "policy": format!("evidence: {days} days (the tenant's evidence retention)"),
    });
    let mut event = requester.event(tenant, "custos.evidence.pruned", "*", details.clone());
    (event.resource_type, event.resource_id) = (None, None);
    let audit = requester.audit(tenant, "custos.evidence.pruned", ("evidence", "*"), details);
    crate::ledger::record_own(
        &*state.store,
        tenant,
        vec![crate::ledger::OwnRecord::Timeline(event), crate::ledger::OwnRecord::Audit(audit)],
    )
    .await;
    Ok(removed)
}

/// Deletes every object under `prefix` (a bundle's), logging what it cannot.
async fn delete_objects(objects: &Objects, prefix: &str) {
    let Ok(path) = ObjectPath::parse(prefix) else { return };
    let listed: Vec<_> = objects.store().list(Some(&path)).collect().await;
    for meta in listed {
        match meta {
            Ok(meta) => {
                if let Err(error) = objects.store().delete(&meta.location).await {
                    tracing::warn!(error = &error as &dyn std::error::Error, object = %meta.location, "kept an object");
                }
            }
            Err(error) => tracing::warn!(error = &error as &dyn std::error::Error, prefix, "listing a bundle failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> custos_store::LogEntry {
        custos_store::LogEntry {
            leaf_index: index,
            event_id: format!("e-{index}"),
            ts: Timestamp::from_micros(0),
            record: "{}".into(),
            received_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn a_bundle_carries_its_anchors_and_the_newest_related_records() {
        let indexes = |records: &[custos_store::LogEntry]| records.iter().map(|e| e.leaf_index).collect::<Vec<_>>();
        // Few: all, in log order, an anchor among the related counted once.
        let related = [3, 9, 5].into_iter().map(|i| (i, entry(i))).collect();
        let (carried, truncated) = Records { anchors: vec![entry(5), entry(1)], related }.carried();
        assert_eq!((indexes(&carried), truncated), (vec![1, 3, 5, 9], false));
        // Too many: the anchor, then the newest related up to the bound.
        let related = (10..10 + MAX_BUNDLE_RECORDS as u64 + 5).map(|i| (i, entry(i))).collect();
        let (carried, truncated) = Records { anchors: vec![entry(2)], related }.carried();
        assert!(truncated);
        assert_eq!(carried.len(), MAX_BUNDLE_RECORDS);
        assert_eq!(indexes(&carried[..2]), [2, 16], "the oldest related records are the ones left out");
        assert_eq!(carried.last().unwrap().leaf_index, 10 + MAX_BUNDLE_RECORDS as u64 + 4);
    }
}
