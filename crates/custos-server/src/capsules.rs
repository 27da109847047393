//! Job capsules kept write-once in the object store and anchored in the timeline, so a
//! `job` evidence bundle can preserve them later. What a capsule holds, and how a
//! report is checked, is [`custos_model::capsule`].
//!
//! Objects: `tenants/<t>/jobs/<job>/capsules/<run>/capsule.json` and, when a transcript
//! was reported, `…/transcript.txt`.

use custos_model::capsule;
pub use custos_model::capsule::{
    CAPSULE_EVENT, CAPSULE_FILE, CAPSULE_FORMAT, Capsule, CapsuleInput, DigestRef, EnvironmentDigest,
    MAX_CAPSULE_BODY_BYTES, TRANSCRIPT_FILE, TranscriptRef, environment_sha256, hash_variable,
};
use custos_model::{TenantId, Timestamp};
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};

/// Where a run's capsule is kept.
pub fn prefix(tenant: &TenantId, job_id: &str, run_id: &str) -> String {
    format!("tenants/{tenant}/jobs/{job_id}/capsules/{run_id}")
}

/// The timeline event recording a capsule: its id derives from the job and run, so the
/// capsule's record is found again when it is sealed.
pub fn event_id(job_id: &str, run_id: &str) -> String {
    let digest = Sha256::digest(format!("{job_id}\0{run_id}").as_bytes());
    format!("custos-job-capsule-{}", &hex::encode(digest)[..32])
}

/// A job id or run id that cannot be a path segment of an object: a 422 on `field`.
pub fn check_segment(field: &str, id: &str) -> Result<(), ApiError> {
    capsule::check_segment(field, id).map_err(ApiError::invalid)
}

/// Validates a reported capsule ([`capsule::build`]) with a fresh random salt.
pub fn build(
    tenant: &TenantId,
    job_id: &str,
    input: CapsuleInput,
    reported_by: String,
    received_at: Timestamp,
) -> Result<(Capsule, Option<String>), ApiError> {
    let receipt = capsule::Receipt { reported_by, received_at, salt: rand::random() };
    capsule::build(tenant, job_id, input, receipt).map_err(ApiError::invalid)
}

/// The capsule file's bytes (pretty JSON, a final newline).
pub fn to_bytes(capsule: &Capsule) -> Vec<u8> {
    crate::evidence::pretty(capsule)
}

/// Writes a capsule and its transcript, once: a second report of the run is a 409.
pub async fn store(
    objects: &custos_store::Objects,
    tenant: &TenantId,
    capsule: &Capsule,
    transcript: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    let at = prefix(tenant, &capsule.job_id, &capsule.run_id);
    let bytes = to_bytes(capsule);
    objects
        .put_new(&crate::evidence::object_path(&format!("{at}/{CAPSULE_FILE}"))?, PutPayload::from(bytes.clone()))
        .await
        .map_err(|e| match e {
            custos_store::StoreError::AlreadyExists { .. } => ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "job {:?} run {:?} already has a capsule; a capsule is written once",
                    capsule.job_id, capsule.run_id
                ),
            )
            .with_field("run_id".to_owned()),
            other => ApiError::from(other),
        })?;
    if let Some(text) = transcript {
        objects
            .put_new(
                &crate::evidence::object_path(&format!("{at}/{TRANSCRIPT_FILE}"))?,
                PutPayload::from(text.into_bytes()),
            )
            .await
            .map_err(ApiError::from)?;
    }
    Ok(bytes)
}

/// Reads a stored object whole (capsules and transcripts are bounded).
pub async fn read(objects: &custos_store::Objects, key: String) -> Result<Option<Vec<u8>>, ApiError> {
    match objects.store().get(&crate::evidence::object_path(&key)?).await {
        Ok(found) => Ok(Some(
            found
                .bytes()
                .await
                .map_err(|e| {
                    ApiError::from(custos_store::StoreError::Object { context: format!("reading {key}"), source: e })
                })?
                .to_vec(),
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => {
            Err(ApiError::from(custos_store::StoreError::Object { context: format!("reading {key}"), source: e }))
        }
    }
}
