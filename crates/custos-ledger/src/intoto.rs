//! in-toto attestations: Statement v1 (<https://github.com/in-toto/attestation>, spec
//! v1.0) with SLSA Provenance v1 predicates (<https://slsa.dev/provenance/v1>), signed as
//! DSSE envelopes of payload type `application/vnd.in-toto+json`.
//!
//! Verifying an attestation always checks, besides the signature, the statement type,
//! the predicate type and that a subject carries the expected SHA-256 digest: a valid
//! signature over a statement about something else, or of another kind, is refused (the
//! class of bypass where a verifier checks the signature and trusts the rest).
//!
//! It also checks whose statement it is. custos signs two kinds with one key: its own
//! (an evidence bundle's provenance: a build type under `https://custos.dev/`, built by
//! `https://<deployment>/custos`) and a platform's report of an artifact (any other build
//! type, built by `https://<deployment>/custos/platform`, the tenant and the reporting
//! token in `internalParameters`). A statement whose build type, builder and tenant do
//! not agree is refused, so a tenant cannot get custos to sign something that reads as
//! custos's own provenance of another tenant's evidence ([`check_origin`]).

use std::collections::BTreeMap;

use crate::dsse::{DsseError, DsseKey, DsseSigner, Envelope, PAYLOAD_TYPE_IN_TOTO};

/// The `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The `predicateType` of SLSA Provenance v1.
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";

/// The prefix of custos's own build types: a platform may not claim one.
pub const CUSTOS_BUILD_TYPE_HOST: &str = "custos.dev";
/// The build type of an evidence bundle's provenance.
pub const BUNDLE_BUILD_TYPE: &str = "https://custos.dev/evidence-bundle/v1";
/// The build type of a platform's report that names none of its own: the one type under
/// `https://custos.dev/` a platform may use.
pub const PLATFORM_BUILD_TYPE: &str = "https://custos.dev/platform-artifact/v1";

/// Who a statement is from, as its build type says and its builder must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// custos's own provenance (an evidence bundle): built by `https://<deployment>/custos`.
    Custos,
    /// A platform's report of its own artifact, which custos only countersigns: built by
    /// `https://<deployment>/custos/platform`.
    Platform,
}

impl Origin {
    /// The builder id of a statement of this origin signed by `deployment`.
    pub fn builder_id(self, deployment: &str) -> String {
        match self {
            Self::Custos => format!("https://{deployment}/custos"),
            Self::Platform => format!("https://{deployment}/custos/platform"),
        }
    }

    /// The path a builder id of this origin ends with, after its deployment.
    fn builder_path(self) -> &'static str {
        match self {
            Self::Custos => "custos",
            Self::Platform => "custos/platform",
        }
    }
}

/// Whether `build_type` is custos's own, which no platform may claim: any URI whose host
/// is `custos.dev` (in any case, with or without a port or a trailing dot), except
/// [`PLATFORM_BUILD_TYPE`].
pub fn is_reserved_build_type(build_type: &str) -> bool {
    if build_type == PLATFORM_BUILD_TYPE {
        return false;
    }
    let Some((_, rest)) = build_type.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = host.split(':').next().unwrap_or_default().trim_end_matches('.');
    host.eq_ignore_ascii_case(CUSTOS_BUILD_TYPE_HOST)
}

/// The field of a statement that disagrees with the others, when its origin is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginField {
    BuildType,
    Builder,
    Tenant,
}

impl OriginField {
    /// The name verifiers report the check under.
    pub fn check_name(self) -> &'static str {
        match self {
            Self::BuildType => "build_type",
            Self::Builder => "builder",
            Self::Tenant => "tenant",
        }
    }
}

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
    /// The build type, the builder and the tenant inside the statement do not agree, or
    /// the tenant is not the one expected.
    #[error("{message}")]
    Origin { field: OriginField, message: String },
    #[error("signed by {signed_by}, not a signing key at {at}")]
    KeyWindow { signed_by: String, at: String },
}

impl AttestationError {
    /// The name of the check that failed, as every verifier reports it: `signature`,
    /// `payload_type`, `statement_type`, `predicate_type`, `subject_digest`, `predicate`,
    /// `build_type`, `builder`, `tenant` or `key_window`.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Envelope(DsseError::PayloadType { .. }) => "payload_type",
            Self::Envelope(_) => "signature",
            Self::Malformed(_) | Self::StatementType { .. } => "statement_type",
            Self::PredicateType { .. } => "predicate_type",
            Self::SubjectDigest { .. } => "subject_digest",
            Self::Predicate { .. } => "predicate",
            Self::Origin { field, .. } => field.check_name(),
            Self::KeyWindow { .. } => "key_window",
        }
    }

    fn origin(field: OriginField, message: impl Into<String>) -> Self {
        Self::Origin { field, message: message.into() }
    }
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
    /// Whose statement it is: custos's own, or a platform's report.
    pub origin: Origin,
    /// The tenant the statement belongs to, as signed.
    pub tenant_id: String,
}

/// Verifies a SLSA provenance attestation about the artifact whose SHA-256 is
/// `subject_sha256` (hex, either case): the envelope's signature by one of `keys`, its
/// payload type, the statement type, the predicate type and the subject's digest, then
/// the predicate's shape, and last its origin ([`check_origin`]): that its build type,
/// builder and tenant agree, and that the tenant is `tenant` when one is expected.
pub fn verify_provenance(
    envelope: &Envelope,
    keys: &[DsseKey],
    subject_sha256: &str,
    tenant: Option<&str>,
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
    let (origin, tenant_id) = check_origin(&predicate, tenant)?;
    let statement = Statement {
        statement_type: statement.statement_type,
        subject: statement.subject,
        predicate_type: statement.predicate_type,
        predicate,
    };
    Ok(VerifiedAttestation { statement, signed_by: verified.signed_by, subject, origin, tenant_id })
}

/// Whose a provenance is, from its build type, and the tenant it belongs to; refused
/// unless its builder and its tenant agree with that, and the tenant is `expected_tenant`
/// when one is given.
///
/// - custos's own (a build type under `custos.dev`, [`is_reserved_build_type`]): built by
///   `https://<deployment>/custos`; the tenant is `externalParameters.tenant_id`, and
///   `internalParameters.tenant_id`, which custos writes since this check exists, must
///   be the same; it carries no `reported_by` (only a platform's report does).
/// - a platform's report (any other build type): built by
///   `https://<deployment>/custos/platform`; the tenant is `internalParameters.tenant_id`,
///   which custos wrote (the platform's `externalParameters` are its own to fill).
pub fn check_origin(
    predicate: &Provenance,
    expected_tenant: Option<&str>,
) -> Result<(Origin, String), AttestationError> {
    let definition = &predicate.build_definition;
    let build_type = definition.build_type.as_str();
    let origin = if is_reserved_build_type(build_type) { Origin::Custos } else { Origin::Platform };
    let builder = predicate.run_details.builder.id.as_str();
    let builder_path = builder.strip_prefix("https://").and_then(|rest| rest.split_once('/'));
    if !builder_path.is_some_and(|(host, path)| !host.is_empty() && path == origin.builder_path()) {
        let expected = origin.builder_id("<deployment>");
        return Err(AttestationError::origin(
            OriginField::Builder,
            format!(
                "the builder {builder:?} does not agree with the build type {build_type:?}, which only {expected} signs"
            ),
        ));
    }
    let text = |parameters: Option<&serde_json::Map<String, serde_json::Value>>, name: &str| {
        parameters.and_then(|p| p.get(name)).and_then(serde_json::Value::as_str).map(str::to_owned)
    };
    let internal = definition.internal_parameters.as_ref();
    let internal_tenant = text(internal, "tenant_id");
    let tenant = match origin {
        Origin::Custos => {
            if internal.is_some_and(|p| p.contains_key("reported_by")) {
                return Err(AttestationError::origin(
                    OriginField::BuildType,
                    format!(
                        "the build type {build_type:?} is custos's own, but the statement is a platform's report (internalParameters.reported_by)"
                    ),
                ));
            }
            let external_tenant = text(Some(&definition.external_parameters), "tenant_id").ok_or_else(|| {
                AttestationError::origin(
                    OriginField::Tenant,
                    "the statement names no tenant (externalParameters.tenant_id)",
                )
            })?;
            if let Some(internal_tenant) = internal_tenant.filter(|t| *t != external_tenant) {
                return Err(AttestationError::origin(
                    OriginField::Tenant,
                    format!(
                        "the statement names tenant {external_tenant:?} in externalParameters and {internal_tenant:?} in internalParameters"
                    ),
                ));
            }
            external_tenant
        }
        Origin::Platform => internal_tenant.ok_or_else(|| {
            AttestationError::origin(
                OriginField::Tenant,
                "the statement names no tenant (internalParameters.tenant_id)",
            )
        })?,
    };
    if let Some(expected) = expected_tenant.filter(|expected| *expected != tenant) {
        return Err(AttestationError::origin(
            OriginField::Tenant,
            format!("the statement is tenant {tenant:?}'s, not {expected:?}'s"),
        ));
    }
    Ok((origin, tenant))
}

#[cfg(test)]
mod tests;
