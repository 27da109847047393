//! Job capsules: what a scheduled job's run consumed, produced and ran in, as the
//! platform reports it (`POST /v1/tenants/{t}/jobs/{job}/capsule`), and the capsule
//! custos keeps of it. This module reads and checks the report (no IO); the server
//! stores it.
//!
//! Environment variables are reported with their values; custos keeps only a salted
//! SHA-256 of each value (see [`hash_variable`]) and never stores or logs a value.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::{FieldError, TenantId, Timestamp};

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

fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message)
}

fn check_digests(field: &str, refs: &mut [DigestRef]) -> Result<(), FieldError> {
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

fn check_runner_image(image: &str) -> Result<(), FieldError> {
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

/// What custos adds to a report: who reported it and when, and the environment's salt
/// (32 random bytes in the server; fixed in tests and fuzzing).
#[derive(Debug, Clone)]
pub struct Receipt {
    pub reported_by: String,
    pub received_at: Timestamp,
    pub salt: [u8; 32],
}

/// Validates a reported capsule; the capsule to store (environment values hashed and
/// dropped) and its transcript. A report without `run_id` gets a UUIDv7.
///
/// # Errors
///
/// The first field at fault.
pub fn build(
    tenant: &TenantId,
    job_id: &str,
    input: CapsuleInput,
    receipt: Receipt,
) -> Result<(Capsule, Option<String>), FieldError> {
    let Receipt { reported_by, received_at, salt } = receipt;
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
            crate::error::check::identifier("run_id", &id, crate::jobs::MAX_RUN_ID_BYTES)?;
            check_segment("run_id", &id)?;
            id
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let started_at = started_at.map(|t| Timestamp::parse("started_at", &t)).transpose()?;
    let finished_at = finished_at.map(|t| Timestamp::parse("finished_at", &t)).transpose()?;
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

/// A job id or run id that cannot be a path segment of an object.
///
/// # Errors
///
/// When it is only dots.
pub fn check_segment(field: &str, id: &str) -> Result<(), FieldError> {
    if id.bytes().all(|b| b == b'.') {
        return Err(invalid(field, "cannot be only dots"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fuzz/seeds/capsule_input/full.json`, whose digests were computed with Python's
    /// `hashlib` (salt: 32 bytes of 7).
    #[test]
    fn the_seed_report_hashes_as_python_computes_it() {
        let seed = include_bytes!("../../../fuzz/seeds/capsule_input/full.json");
        let input: CapsuleInput = serde_json::from_slice(seed).unwrap();
        let receipt = Receipt { reported_by: "tok_1".into(), received_at: Timestamp::from_micros(0), salt: [7; 32] };
        let tenant = TenantId::parse("acme").unwrap();
        let (capsule, transcript) = build(&tenant, "nightly", input, receipt).unwrap();
        assert_eq!(
            capsule.environment.variables["RUST_LOG"],
            "575e442289f3c6ff47f86dff05ef236cfcfdaaa79c1c08148c486cde102cba3e"
        );
        assert_eq!(
            capsule.environment.variables["WAREHOUSE_PASSWORD"],
            "802841152d2246831562a690885969873315febb69a1be93c9911467dddd971a"
        );
        assert_eq!(capsule.environment.sha256, "f451754c6d387c4a962a46ba1b33d30d631b65e30228297387ba8ee712fd1837");
        assert_eq!(
            capsule.transcript.as_ref().unwrap().sha256,
            "51e2021232a7b8ddb95ddcb058e49e3da35ed876af9c6e0ee3e708476c81c88f"
        );
        assert!(transcript.unwrap().starts_with("$ load-iocs"));
        // Digests are kept lowercase; the value is nowhere.
        assert_eq!(capsule.inputs[0].sha256, "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae");
        let stored = serde_json::to_string(&capsule).unwrap();
        assert!(!stored.contains("correct horse"), "{stored}");
    }
}
