//! Job capsules: what a scheduled job's run consumed, produced and ran in, as the
//! platform reports it (`POST /v1/tenants/{t}/jobs/{job}/capsule`), kept write-once in
//! the object store and anchored in the timeline, so a `job` evidence bundle can preserve
//! it later.
//!
//! Environment variables are reported with their values; custos keeps only a salted
//! SHA-256 of each value (see [`hash_variable`]) and never stores or logs a value.
//! Objects: `tenants/<t>/jobs/<job>/capsules/<run>/capsule.json` and, when a transcript
//! was reported, `…/transcript.txt`.

use std::collections::BTreeMap;

use custos_model::{FieldError, TenantId, Timestamp};
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};

/// The `format` of a stored capsule.
pub const CAPSULE_FORMAT: &str = "custos-job-capsule/v1";
/// Largest capsule request body: the transcript's bound and room for the rest.
pub const MAX_CAPSULE_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Largest transcript, in bytes.
pub const MAX_TRANSCRIPT_BYTES: usize = 1024 * 1024;
/// Most inputs, and most outputs, one capsule lists.
pub const MAX_DIGESTS: usize = 1000;
/// Most environment variables one capsule reports.
pub const MAX_VARIABLES: usize = 1000;
/// Longest environment variable name, and longest value, in bytes.
pub const MAX_VARIABLE_NAME_BYTES: usize = 256;
pub const MAX_VARIABLE_VALUE_BYTES: usize = 64 * 1024;
/// Longest input or output name, and runner image reference, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// The timeline kind recording a capsule.
pub const CAPSULE_EVENT: &str = "custos.job.capsule.reported";

/// An input or output of a run, by digest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestRef {
    /// What it is: a path, a URL, a table (1..=1024 bytes).
    pub name: String,
    /// SHA-256 of its bytes, 64 hex digits (kept lowercase).
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A capsule as a platform reports it.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapsuleInput {
    /// The run (1..=128 of `A-Za-z0-9._:-`; a UUIDv7 when absent). One capsule per run.
    pub run_id: Option<String>,
    pub started_at: Option<String>,
    /// Not before `started_at`.
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// The runner's image by digest: `sha256:<64 hex>`, or a reference ending in one
    /// (`ghcr.io/acme/runner@sha256:…`).
    pub runner_image: Option<String>,
    #[serde(default)]
    pub inputs: Vec<DigestRef>,
    #[serde(default)]
    pub outputs: Vec<DigestRef>,
    /// Variable names (`[A-Za-z_][A-Za-z0-9_]*`) and values: each value is hashed on
    /// receipt, never stored.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// What ran and what it printed (UTF-8, at most 1 MiB).
    pub transcript: Option<String>,
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: Option<String>,
}

/// The environment as kept: each value's salted digest, and one digest over them all.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentDigest {
    /// 32 random bytes, hex, drawn for this capsule.
    pub salt: String,
    /// Each variable's `SHA-256(salt ‖ name ‖ 0x00 ‖ value)`, hex, by name.
    pub variables: BTreeMap<String, String>,
    /// SHA-256 of the lines `<name> <digest>\n` in name order, hex: the environment's
    /// digest.
    pub sha256: String,
}

/// The transcript's file and digest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscriptRef {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A capsule as stored (`capsule.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capsule {
    /// Always [`CAPSULE_FORMAT`].
    pub format: String,
    pub tenant_id: String,
    pub job_id: String,
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_image: Option<String>,
    pub inputs: Vec<DigestRef>,
    pub outputs: Vec<DigestRef>,
    pub environment: EnvironmentDigest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<TranscriptRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The token that reported it.
    pub reported_by: String,
    pub received_at: Timestamp,
}

/// One variable's digest: `SHA-256(salt ‖ name ‖ 0x00 ‖ value)`. The salt keeps equal
/// values in two capsules from matching and defeats precomputed tables; a value of
/// little entropy (`true`, a short PIN) can still be guessed by whoever holds the
/// capsule, so secrets belong in a secret store, not the environment.
pub fn hash_variable(salt: &[u8; 32], name: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(name.as_bytes());
    hasher.update([0]);
    hasher.update(value.as_bytes());
    hex::encode(hasher.finalize())
}

/// The environment's digest over its variables' digests.
pub fn environment_sha256(variables: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (name, digest) in variables {
        hasher.update(format!("{name} {digest}\n").as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid(FieldError::new(field, message))
}

fn check_digests(field: &str, refs: &mut [DigestRef]) -> Result<(), ApiError> {
    if refs.len() > MAX_DIGESTS {
        return Err(invalid(field, format!("at most {MAX_DIGESTS} entries")));
    }
    for (i, r) in refs.iter_mut().enumerate() {
        if r.name.is_empty() || r.name.len() > MAX_NAME_BYTES || r.name.chars().any(char::is_control) {
            return Err(invalid(format!("{field}[{i}].name"), "must be 1 to 1024 bytes, no control characters"));
        }
        r.sha256.make_ascii_lowercase();
        if r.sha256.len() != 64 || !r.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!("{field}[{i}].sha256"), "must be 64 hex digits"));
        }
    }
    Ok(())
}

fn check_runner_image(image: &str) -> Result<(), ApiError> {
    let digest = image.rsplit_once("sha256:").map(|(_, hex)| hex);
    let at_end = digest.is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    let prefix_ok = image.starts_with("sha256:") || image.contains("@sha256:");
    if image.len() > MAX_NAME_BYTES || !at_end || !prefix_ok || image.chars().any(char::is_whitespace) {
        return Err(invalid(
            "runner_image",
            "must be an image by digest: sha256:<64 hex>, or <reference>@sha256:<64 hex>",
        ));
    }
    Ok(())
}

fn check_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_VARIABLE_NAME_BYTES
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Validates a reported capsule; the capsule to store (environment values hashed and
/// dropped) and its transcript.
pub fn build(
    tenant: &TenantId,
    job_id: &str,
    input: CapsuleInput,
    reported_by: String,
    received_at: Timestamp,
) -> Result<(Capsule, Option<String>), ApiError> {
    let CapsuleInput {
        run_id,
        started_at,
        finished_at,
        exit_code,
        runner_image,
        mut inputs,
        mut outputs,
        environment,
        transcript,
        trace_id,
    } = input;
    let run_id = match run_id {
        Some(id) => {
            custos_model::error::check::identifier("run_id", &id, custos_model::jobs::MAX_RUN_ID_BYTES)
                .map_err(ApiError::invalid)?;
            check_segment("run_id", &id)?;
            id
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let started_at = started_at.map(|t| Timestamp::parse("started_at", &t)).transpose().map_err(ApiError::invalid)?;
    let finished_at =
        finished_at.map(|t| Timestamp::parse("finished_at", &t)).transpose().map_err(ApiError::invalid)?;
    if let (Some(start), Some(finish)) = (started_at, finished_at)
        && finish < start
    {
        return Err(invalid("finished_at", "must not be before started_at"));
    }
    if let Some(image) = &runner_image {
        check_runner_image(image)?;
    }
    check_digests("inputs", &mut inputs)?;
    check_digests("outputs", &mut outputs)?;
    if environment.len() > MAX_VARIABLES {
        return Err(invalid("environment", format!("at most {MAX_VARIABLES} variables")));
    }
    let salt: [u8; 32] = rand::random();
    let mut variables = BTreeMap::new();
    for (name, value) in &environment {
        if !check_variable_name(name) {
            return Err(invalid(
                format!("environment.{name}"),
                "a variable name is 1 to 256 of letters, digits and '_', not starting with a digit",
            ));
        }
        if value.len() > MAX_VARIABLE_VALUE_BYTES {
            return Err(invalid(format!("environment.{name}"), "a value is at most 64 KiB"));
        }
        variables.insert(name.clone(), hash_variable(&salt, name, value));
    }
    drop(environment);
    if let Some(trace) = &trace_id
        && (trace.len() != 32 || !trace.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(invalid("trace_id", "must be 32 lowercase hex digits"));
    }
    if transcript.as_ref().is_some_and(|t| t.len() > MAX_TRANSCRIPT_BYTES) {
        return Err(invalid("transcript", "at most 1 MiB"));
    }
    let capsule = Capsule {
        format: CAPSULE_FORMAT.into(),
        tenant_id: tenant.to_string(),
        job_id: job_id.to_owned(),
        run_id,
        started_at,
        finished_at,
        exit_code,
        runner_image,
        inputs,
        outputs,
        environment: EnvironmentDigest { salt: hex::encode(salt), sha256: environment_sha256(&variables), variables },
        transcript: transcript.as_ref().map(|t| TranscriptRef {
            file: TRANSCRIPT_FILE.into(),
            sha256: hex::encode(Sha256::digest(t.as_bytes())),
            bytes: t.len() as u64,
        }),
        trace_id,
        reported_by,
        received_at,
    };
    Ok((capsule, transcript))
}

pub const CAPSULE_FILE: &str = "capsule.json";
pub const TRANSCRIPT_FILE: &str = "transcript.txt";

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

/// A job id or run id that cannot be a path segment of an object.
pub fn check_segment(field: &str, id: &str) -> Result<(), ApiError> {
    if id.bytes().all(|b| b == b'.') {
        return Err(invalid(field, "cannot be only dots"));
    }
    Ok(())
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
