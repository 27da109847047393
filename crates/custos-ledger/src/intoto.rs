//! in-toto attestations: Statement v1 (<https://github.com/in-toto/attestation>, spec
//! v1.0) with SLSA Provenance v1 predicates (<https://slsa.dev/provenance/v1>), signed as
//! DSSE envelopes of payload type `application/vnd.in-toto+json`.
//!
//! Verifying an attestation always checks, besides the signature, the statement type,
//! the predicate type and that a subject carries the expected SHA-256 digest: a valid
//! signature over a statement about something else, or of another kind, is refused (the
//! class of bypass where a verifier checks the signature and trusts the rest).

use std::collections::BTreeMap;

use crate::dsse::{DsseError, DsseKey, DsseSigner, Envelope, PAYLOAD_TYPE_IN_TOTO};

/// The `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The `predicateType` of SLSA Provenance v1.
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";

/// Why an attestation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error(transparent)]
    Envelope(#[from] DsseError),
    #[error("the statement is not valid JSON of an in-toto statement: {0}")]
    Malformed(String),
    #[error("the statement's _type is {found:?}, expected {STATEMENT_TYPE:?}")]
    StatementType { found: String },
    #[error("the statement's predicateType is {found:?}, expected {expected:?}")]
    PredicateType { expected: String, found: String },
    #[error("the statement has no subject with sha256 digest {expected} (subjects: {found})")]
    SubjectDigest { expected: String, found: String },
    #[error("the predicate is not a valid {predicate_type} predicate: {message}")]
    Predicate { predicate_type: String, message: String },
}

/// An in-toto resource descriptor: what a subject, a dependency or a byproduct is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Algorithm name to lowercase hex digest (`sha256`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ResourceDescriptor {
    /// A descriptor of `name` with its SHA-256 digest (lowercase hex).
    pub fn sha256(name: impl Into<String>, digest: impl Into<String>) -> Self {
        Self { name: Some(name.into()), digest: BTreeMap::from([("sha256".into(), digest.into())]), ..Self::default() }
    }
}

/// An in-toto Statement v1 with its predicate as `P`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Statement<P = serde_json::Value> {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: P,
}

/// A SLSA Provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// A URI naming the template of the build: how the other fields are to be read.
    pub build_type: String,
    /// The parameters an outside party chose (a JSON object).
    pub external_parameters: serde_json::Map<String, serde_json::Value>,
    /// The parameters the builder chose (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// The inputs, by digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BuildMetadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Builder {
    /// A URI naming the builder: for custos, its instance.
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builder_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

impl Statement<Provenance> {
    /// A SLSA provenance statement about `subject`.
    pub fn provenance(subject: Vec<ResourceDescriptor>, predicate: Provenance) -> Self {
        Self { statement_type: STATEMENT_TYPE.into(), subject, predicate_type: SLSA_PROVENANCE.into(), predicate }
    }
}

impl<P: serde::Serialize> Statement<P> {
    /// The statement's JSON, as signed.
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement serializes")
    }

    /// The statement in a DSSE envelope signed by `signers`.
    pub fn sign(&self, signers: &[&DsseSigner]) -> Envelope {
        Envelope::sign(PAYLOAD_TYPE_IN_TOTO, &self.to_payload(), signers)
    }
}

/// What a verified attestation says, and who signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAttestation {
    pub statement: Statement<Provenance>,
    pub signed_by: Vec<String>,
    /// The subject whose digest matched.
    pub subject: ResourceDescriptor,
}

/// Verifies a SLSA provenance attestation about the artifact whose SHA-256 is
/// `subject_sha256` (hex, either case): the envelope's signature by one of `keys`, its
/// payload type, the statement type, the predicate type and the subject's digest, then
/// the predicate's shape.
pub fn verify_provenance(
    envelope: &Envelope,
    keys: &[DsseKey],
    subject_sha256: &str,
) -> Result<VerifiedAttestation, AttestationError> {
    let verified = envelope.verify(keys, PAYLOAD_TYPE_IN_TOTO)?;
    let statement: Statement =
        serde_json::from_slice(&verified.payload).map_err(|e| AttestationError::Malformed(e.to_string()))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(AttestationError::StatementType { found: statement.statement_type });
    }
    if statement.predicate_type != SLSA_PROVENANCE {
        return Err(AttestationError::PredicateType {
            expected: SLSA_PROVENANCE.into(),
            found: statement.predicate_type,
        });
    }
    let expected = subject_sha256.to_ascii_lowercase();
    let subject = statement
        .subject
        .iter()
        .find(|s| s.digest.get("sha256").is_some_and(|d| d.eq_ignore_ascii_case(&expected)))
        .cloned()
        .ok_or_else(|| AttestationError::SubjectDigest {
            found: statement
                .subject
                .iter()
                .map(|s| {
                    format!(
                        "{} sha256:{}",
                        s.name.as_deref().unwrap_or("(unnamed)"),
                        s.digest.get("sha256").map_or("none", String::as_str)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            expected,
        })?;
    let predicate: Provenance = serde_json::from_value(statement.predicate)
        .map_err(|e| AttestationError::Predicate { predicate_type: SLSA_PROVENANCE.into(), message: e.to_string() })?;
    let statement = Statement {
        statement_type: statement.statement_type,
        subject: statement.subject,
        predicate_type: statement.predicate_type,
        predicate,
    };
    Ok(VerifiedAttestation { statement, signed_by: verified.signed_by, subject })
}

#[cfg(test)]
mod tests;
