//! The evidence locker's rows (migration 0009): case artifacts, bundles, attestations
//! and case holds. The bytes live in the object store; these rows say where, and keep
//! the digests a read is checked against. The SQL is shared by both backends, written
//! with `$n` parameters (SQLite reads them as `?n`).

use custos_model::Timestamp;

use crate::error::{StoreError, StoreResult};
use crate::table::{RowReader, Value};

/// A file uploaded to a case, as recorded when its upload completed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ArtifactRecord {
    pub case_id: String,
    pub name: String,
    /// Where its bytes are, in the object store.
    #[serde(skip)]
    pub object_key: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub media_type: String,
    /// The uploading token's id.
    pub uploaded_by: String,
    pub uploaded_at: Timestamp,
    /// The timeline event that recorded the upload.
    pub event_id: String,
}

/// A sealed bundle: where its files are and what they must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRecord {
    pub bundle_id: String,
    pub case_id: String,
    /// `case`, `evaluation`, `job` or `export`.
    pub kind: String,
    pub resource_id: String,
    /// The object-store prefix of its files (`tenants/<t>/evidence/<case>/<bundle>`).
    pub object_prefix: String,
    /// The Merkle root over its files, lowercase hex.
    pub merkle_root: String,
    /// SHA-256 of `manifest.json`, lowercase hex.
    pub manifest_sha256: String,
    /// The keys that signed its manifest.
    pub key_ids: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub created_by: String,
    pub created_at: Timestamp,
    pub trace_id: Option<String>,
    /// The timeline event that recorded it.
    pub event_id: String,
}

/// A signed provenance statement about one subject custos produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRecord {
    pub attestation_id: String,
    /// `evidence_bundle`, `export`, `artifact`.
    pub subject_type: String,
    pub subject_id: String,
    pub subject_name: String,
    /// Lowercase hex.
    pub subject_sha256: String,
    pub predicate_type: String,
    /// The DSSE envelope, as JSON.
    pub envelope: String,
    pub created_at: Timestamp,
}

/// Which attestations to list.
#[derive(Debug, Clone, Default)]
pub struct AttestationQuery {
    pub subject_id: Option<String>,
    pub subject_sha256: Option<String>,
    pub limit: usize,
}

/// Most rows one evidence listing returns.
pub const MAX_LIST: usize = 1000;

/// Most artifacts one case holds (a case bundle carries them all).
pub const MAX_CASE_ARTIFACTS: usize = 10_000;

fn count(value: i64, what: &'static str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt { what, detail: format!("a negative count {value}") })
}

fn int(value: u64) -> Value {
    Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

const ARTIFACT_COLUMNS: &str =
    "case_id, name, object_key, size, sha256, media_type, uploaded_by, uploaded_at_us, event_id";

pub(crate) const INSERT_ARTIFACT_SQL: &str = "INSERT INTO evidence_artifacts (tenant_id, case_id, name, object_key, \
     size, sha256, media_type, uploaded_by, uploaded_at_us, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT DO NOTHING";

pub(crate) fn artifact_values(tenant: &str, artifact: &ArtifactRecord) -> Vec<Value> {
    vec![
        text(tenant),
        text(&artifact.case_id),
        text(&artifact.name),
        text(&artifact.object_key),
        int(artifact.size),
        text(&artifact.sha256),
        text(&artifact.media_type),
        text(&artifact.uploaded_by),
        Value::Int(artifact.uploaded_at.as_micros()),
        text(&artifact.event_id),
    ]
}

/// Parameters: tenant, case, and (for one artifact) name.
pub(crate) fn artifacts_sql(one: bool) -> String {
    let name = if one { " AND name = $3" } else { "" };
    format!(
        "SELECT {ARTIFACT_COLUMNS} FROM evidence_artifacts WHERE tenant_id = $1 AND case_id = $2{name} \
         ORDER BY name LIMIT {}",
        MAX_CASE_ARTIFACTS + 1
    )
}

pub(crate) fn artifact_from_row(row: &impl RowReader) -> StoreResult<ArtifactRecord> {
    Ok(ArtifactRecord {
        case_id: row.text(0)?,
        name: row.text(1)?,
        object_key: row.text(2)?,
        size: count(row.int(3)?, "evidence artifact")?,
        sha256: row.text(4)?,
        media_type: row.text(5)?,
        uploaded_by: row.text(6)?,
        uploaded_at: Timestamp::from_micros(row.int(7)?),
        event_id: row.text(8)?,
    })
}

const BUNDLE_COLUMNS: &str = "bundle_id, case_id, kind, resource_id, object_prefix, merkle_root, manifest_sha256, \
     key_ids, files, bytes, created_by, created_at_us, trace_id, event_id";

pub(crate) const INSERT_BUNDLE_SQL: &str = "INSERT INTO evidence_bundles (tenant_id, bundle_id, case_id, kind, \
     resource_id, object_prefix, merkle_root, manifest_sha256, key_ids, files, bytes, created_by, created_at_us, \
     trace_id, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
     ON CONFLICT DO NOTHING";

pub(crate) fn bundle_values(tenant: &str, bundle: &BundleRecord) -> Vec<Value> {
    vec![
        text(tenant),
        text(&bundle.bundle_id),
        text(&bundle.case_id),
        text(&bundle.kind),
        text(&bundle.resource_id),
        text(&bundle.object_prefix),
        text(&bundle.merkle_root),
        text(&bundle.manifest_sha256),
        Value::Text(bundle.key_ids.join(" ")),
        int(bundle.files),
        int(bundle.bytes),
        text(&bundle.created_by),
        Value::Int(bundle.created_at.as_micros()),
        bundle.trace_id.clone().map_or(Value::Null, Value::Text),
        text(&bundle.event_id),
    ]
}

/// Parameters: tenant, then the bundle id (`by_id`) or else a case id.
pub(crate) fn bundles_sql(by_id: bool) -> String {
    let key = if by_id { "bundle_id" } else { "case_id" };
    format!(
        "SELECT {BUNDLE_COLUMNS} FROM evidence_bundles WHERE tenant_id = $1 AND {key} = $2 \
         ORDER BY created_at_us DESC, bundle_id LIMIT {MAX_LIST}"
    )
}

pub(crate) fn bundle_from_row(row: &impl RowReader) -> StoreResult<BundleRecord> {
    Ok(BundleRecord {
        bundle_id: row.text(0)?,
        case_id: row.text(1)?,
        kind: row.text(2)?,
        resource_id: row.text(3)?,
        object_prefix: row.text(4)?,
        merkle_root: row.text(5)?,
        manifest_sha256: row.text(6)?,
        key_ids: row.text(7)?.split(' ').filter(|k| !k.is_empty()).map(str::to_owned).collect(),
        files: count(row.int(8)?, "evidence bundle")?,
        bytes: count(row.int(9)?, "evidence bundle")?,
        created_by: row.text(10)?,
        created_at: Timestamp::from_micros(row.int(11)?),
        trace_id: row.opt_text(12)?,
        event_id: row.text(13)?,
    })
}

const ATTESTATION_COLUMNS: &str = "attestation_id, subject_type, subject_id, subject_name, subject_sha256, \
     predicate_type, envelope, created_at_us";

pub(crate) const INSERT_ATTESTATION_SQL: &str = "INSERT INTO attestations (tenant_id, attestation_id, subject_type, \
     subject_id, subject_name, subject_sha256, predicate_type, envelope, created_at_us) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(crate) fn attestation_values(tenant: &str, attestation: &AttestationRecord) -> Vec<Value> {
    vec![
        text(tenant),
        text(&attestation.attestation_id),
        text(&attestation.subject_type),
        text(&attestation.subject_id),
        text(&attestation.subject_name),
        text(&attestation.subject_sha256),
        text(&attestation.predicate_type),
        text(&attestation.envelope),
        Value::Int(attestation.created_at.as_micros()),
    ]
}

/// The query and its values (tenant first), newest first.
pub(crate) fn attestations_sql(tenant: &str, query: &AttestationQuery) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {ATTESTATION_COLUMNS} FROM attestations WHERE tenant_id = $1");
    let mut values = vec![text(tenant)];
    if let Some(subject) = &query.subject_id {
        values.push(text(subject));
        sql.push_str(&format!(" AND subject_id = ${}", values.len()));
    }
    if let Some(digest) = &query.subject_sha256 {
        values.push(text(digest));
        sql.push_str(&format!(" AND subject_sha256 = ${}", values.len()));
    }
    sql.push_str(&format!(" ORDER BY created_at_us DESC, attestation_id LIMIT {}", query.limit.clamp(1, MAX_LIST)));
    (sql, values)
}

pub(crate) fn attestation_from_row(row: &impl RowReader) -> StoreResult<AttestationRecord> {
    Ok(AttestationRecord {
        attestation_id: row.text(0)?,
        subject_type: row.text(1)?,
        subject_id: row.text(2)?,
        subject_name: row.text(3)?,
        subject_sha256: row.text(4)?,
        predicate_type: row.text(5)?,
        envelope: row.text(6)?,
        created_at: Timestamp::from_micros(row.int(7)?),
    })
}

const HOLD_COLUMNS: &str = "id, reason, created_by, created_at_us, released_at_us";

/// A case hold: the ledger's [`crate::LegalHold`] shape, with the case id as its id.
pub(crate) const INSERT_HOLD_SQL: &str = "INSERT INTO evidence_holds (tenant_id, id, reason, created_by, \
     created_at_us, released_at_us) VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT DO NOTHING";

pub(crate) fn release_hold_sql() -> String {
    format!(
        "UPDATE evidence_holds SET released_at_us = $3, release_leaf = $4 WHERE tenant_id = $1 AND id = $2 \
         AND released_at_us IS NULL RETURNING {HOLD_COLUMNS}"
    )
}

/// Parameters: tenant, and (`one_case`) a case id. Newest first.
pub(crate) fn holds_sql(one_case: bool) -> String {
    let case = if one_case { " AND id = $2" } else { "" };
    format!(
        "SELECT {HOLD_COLUMNS} FROM evidence_holds WHERE tenant_id = $1{case} \
         ORDER BY created_at_us DESC, id LIMIT {MAX_LIST}"
    )
}

/// Parameters: tenant, case. Whether the case's evidence is held: by a hold on the case
/// or by a tenant-wide legal hold.
pub(crate) const HELD_SQL: &str = "SELECT CASE WHEN EXISTS (SELECT 1 FROM evidence_holds \
     WHERE tenant_id = $1 AND id = $2 AND released_at_us IS NULL) OR EXISTS (SELECT 1 FROM legal_holds \
     WHERE tenant_id = $1 AND released_at_us IS NULL) THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END";

pub(crate) fn hold_from_row(row: &impl RowReader) -> StoreResult<crate::LegalHold> {
    Ok(crate::LegalHold {
        id: row.text(0)?,
        reason: row.text(1)?,
        created_by: row.text(2)?,
        created_at: Timestamp::from_micros(row.int(3)?),
        released_at: row.opt_int(4)?.map(Timestamp::from_micros),
    })
}

pub(crate) fn hold_values(tenant: &str, hold: &crate::LegalHold) -> Vec<Value> {
    vec![
        text(tenant),
        text(&hold.id),
        text(&hold.reason),
        text(&hold.created_by),
        Value::Int(hold.created_at.as_micros()),
    ]
}

/// Parameters: tenant, days (NULL: forever), by, at.
pub(crate) const SET_RETENTION_SQL: &str = "INSERT INTO evidence_retention (tenant_id, days, updated_by, \
     updated_at_us) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET days = excluded.days, \
     updated_by = excluded.updated_by, updated_at_us = excluded.updated_at_us";

/// Parameter: tenant. One row of `days` (NULL: forever), or none.
pub(crate) const RETENTION_SQL: &str = "SELECT days FROM evidence_retention WHERE tenant_id = $1";

/// The condition that no hold keeps `alias`'s row (its case's, or the tenant's).
fn unheld(alias: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM evidence_holds h WHERE h.tenant_id = {alias}.tenant_id AND h.id = {alias}.case_id \
         AND h.released_at_us IS NULL) AND NOT EXISTS (SELECT 1 FROM legal_holds l \
         WHERE l.tenant_id = {alias}.tenant_id AND l.released_at_us IS NULL)"
    )
}

/// Parameters: tenant, before. Bundles sealed before, and held by nothing, oldest first.
pub(crate) fn expired_bundles_sql() -> String {
    let columns: Vec<String> = BUNDLE_COLUMNS.split(", ").map(|c| format!("b.{c}")).collect();
    format!(
        "SELECT {} FROM evidence_bundles b WHERE b.tenant_id = $1 AND b.created_at_us < $2 AND {} \
         ORDER BY b.created_at_us, b.bundle_id LIMIT {MAX_LIST}",
        columns.join(", "),
        unheld("b")
    )
}

/// Parameters: tenant, before. Uploads received before, and held by nothing, oldest first.
pub(crate) fn expired_artifacts_sql() -> String {
    let columns: Vec<String> = ARTIFACT_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect();
    format!(
        "SELECT {} FROM evidence_artifacts a WHERE a.tenant_id = $1 AND a.uploaded_at_us < $2 AND {} \
         ORDER BY a.uploaded_at_us, a.case_id, a.name LIMIT {MAX_LIST}",
        columns.join(", "),
        unheld("a")
    )
}

pub(crate) const DELETE_BUNDLE_SQL: &str = "DELETE FROM evidence_bundles WHERE tenant_id = $1 AND bundle_id = $2";
pub(crate) const DELETE_ARTIFACT_SQL: &str =
    "DELETE FROM evidence_artifacts WHERE tenant_id = $1 AND case_id = $2 AND name = $3";

/// What a retention pass may delete of a tenant's evidence: at most [`MAX_LIST`] of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredEvidence {
    pub bundles: Vec<BundleRecord>,
    pub artifacts: Vec<ArtifactRecord>,
}
