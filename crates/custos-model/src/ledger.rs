//! The records of a tenant's two tamper-evident logs: timeline events and audit
//! records. Each has a wire form (unknown fields refused) and a validated form, and
//! the validated form's canonical JSON ([`crate::canonical`]) is the record's Merkle
//! leaf: the exact bytes that are hashed, stored, exported and verified.
//!
//! Rules that keep a leaf meaningful:
//! - `ts` is required: a retried event must hash the same, so custos never fills it in.
//! - Kinds and actions are namespaced (`platform.policy.changed`); the `custos.`
//!   namespace is custos's own, so a platform cannot write an event that reads as
//!   custos's.
//! - `details` is a JSON object of at most [`MAX_DETAILS_BYTES`] canonical bytes and
//!   [`MAX_DETAILS_DEPTH`] levels, whose integers are exact doubles (within ±2^53), so
//!   an independent RFC 8785 implementation hashes it the same.
//! - Optional fields that are absent are absent from the leaf, not `null`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{FieldError, check};
use crate::ids::{MAX_ID_LEN, TenantId, TraceId};
use crate::records::{Validate, ValidationContext};
use crate::timestamp::Timestamp;

/// Bound on a record's `details`, in canonical JSON bytes.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// Bound on how deeply `details` nests (the object itself is level 1).
pub const MAX_DETAILS_DEPTH: usize = 8;
pub const MAX_KIND_CHARS: usize = 128;
pub const MAX_ACTOR_CHARS: usize = 256;
pub const MAX_RESOURCE_ID_CHARS: usize = 256;
/// The namespace of kinds and actions custos writes itself.
pub const CUSTOS_NAMESPACE: &str = "custos.";
/// Event ids that would read as the log's own routes (`GET …/timeline/checkpoint`).
pub const RESERVED_EVENT_IDS: &[&str] = &["checkpoint", "export", "proof"];
/// The prefix of the ids of records custos writes itself (a failed run's record, a
/// capsule's, a retention tombstone): reserved, so that a client cannot take an id
/// custos will need later and make custos's own record fail as a duplicate.
pub const CUSTOS_EVENT_ID_PREFIX: &str = "custos-";

/// Which of a tenant's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogName {
    Timeline,
    Audit,
}

impl LogName {
    pub const ALL: [LogName; 2] = [LogName::Timeline, LogName::Audit];

    pub fn as_str(self) -> &'static str {
        match self {
            LogName::Timeline => "timeline",
            LogName::Audit => "audit",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "timeline" => Some(LogName::Timeline),
            "audit" => Some(LogName::Audit),
            _ => None,
        }
    }
}

impl std::fmt::Display for LogName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log's origin line, which names its checkpoints and their signing key:
/// `<deployment>/tenants/<tenant>/<log>`.
pub fn log_origin(deployment: &str, tenant: &TenantId, log: LogName) -> String {
    format!("{deployment}/tenants/{tenant}/{log}")
}

/// A timeline event as a platform sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimelineEventInput {
    /// Client-chosen id (1..=128 of `A-Za-z0-9._:-`); re-sending the same event is a
    /// no-op, sending different content under the same id is a conflict.
    pub event_id: String,
    /// When it happened (RFC 3339; stored to the microsecond).
    pub ts: String,
    /// The URL's tenant, if given.
    pub tenant_id: Option<String>,
    pub project_id: Option<String>,
    /// Namespaced, lowercase: `platform.policy.changed` (`custos.` is reserved).
    pub kind: String,
    /// Who did it, as the platform names them (at most 256 characters).
    pub actor: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: Option<String>,
    /// A JSON object, at most 16 KiB canonical.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// A timeline event as stored and hashed. Serialized, it is the leaf's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEvent {
    pub event_id: String,
    pub ts: Timestamp,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl TimelineEvent {
    /// The leaf's bytes: this event's canonical JSON.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        crate::canonical::to_vec(&serde_json::to_value(self).expect("events serialize infallibly"))
    }

    /// Checks an event custos builds itself (kinds in the `custos.` namespace).
    pub fn checked(self) -> Result<Self, FieldError> {
        check_common(&self.event_id, &self.kind, self.actor.as_deref(), &self.details, true)?;
        Ok(self)
    }
}

impl Validate for TimelineEvent {
    type Input = TimelineEventInput;

    fn validate(input: TimelineEventInput, ctx: &ValidationContext) -> Result<Self, FieldError> {
        let tenant_id = tenant_of(input.tenant_id, ctx)?;
        let details = input.details.unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        check_common(&input.event_id, &input.kind, input.actor.as_deref(), &details, false)?;
        Ok(Self {
            ts: Timestamp::parse("ts", &input.ts)?,
            tenant_id,
            project_id: opt_identifier("project_id", input.project_id)?,
            resource_type: opt_identifier("resource_type", input.resource_type)?,
            resource_id: opt_text("resource_id", input.resource_id, MAX_RESOURCE_ID_CHARS)?,
            trace_id: opt_trace_id(input.trace_id)?,
            event_id: input.event_id,
            kind: input.kind,
            actor: input.actor,
            details,
        })
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    Failure,
    Denied,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Failure => "failure",
            AuditOutcome::Denied => "denied",
        }
    }
}

/// Who acted: for custos's own records, the API token (its id and name, never its
/// secret); for a platform's, whoever it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditActor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An audit record as a platform sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRecordInput {
    /// Client-chosen id, as for timeline events.
    pub event_id: String,
    pub ts: String,
    pub tenant_id: Option<String>,
    pub actor: Option<AuditActor>,
    /// The client's address as the platform saw it.
    pub actor_ip: Option<String>,
    /// Namespaced, lowercase: `platform.user.login` (`custos.` is reserved).
    pub action: String,
    pub outcome: AuditOutcome,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// An audit record as stored and hashed. Serialized, it is the leaf's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub event_id: String,
    pub ts: Timestamp,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    pub actor: AuditActor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_ip: Option<String>,
    pub action: String,
    pub outcome: AuditOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl AuditRecord {
    /// The leaf's bytes: this record's canonical JSON.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        crate::canonical::to_vec(&serde_json::to_value(self).expect("records serialize infallibly"))
    }

    /// Checks a record custos builds itself (actions in the `custos.` namespace).
    pub fn checked(self) -> Result<Self, FieldError> {
        check_common(&self.event_id, &self.action, self.actor.name.as_deref(), &self.details, true)?;
        Ok(self)
    }
}

impl Validate for AuditRecord {
    type Input = AuditRecordInput;

    fn validate(input: AuditRecordInput, ctx: &ValidationContext) -> Result<Self, FieldError> {
        let tenant_id = tenant_of(input.tenant_id, ctx)?;
        let details = input.details.unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        let actor = input.actor.unwrap_or_default();
        if let Some(id) = &actor.id {
            check::text("actor.id", id, MAX_ACTOR_CHARS)?;
        }
        if let Some(name) = &actor.name {
            check::text("actor.name", name, MAX_ACTOR_CHARS)?;
        }
        check_common(&input.event_id, &input.action, None, &details, false)
            .map_err(|e| if e.field == "kind" { FieldError::new("action", e.message) } else { e })?;
        let actor_ip = match input.actor_ip {
            Some(ip) => Some(
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| FieldError::new("actor_ip", "must be an IPv4 or IPv6 address"))?
                    .to_string(),
            ),
            None => None,
        };
        Ok(Self {
            ts: Timestamp::parse("ts", &input.ts)?,
            tenant_id,
            actor,
            actor_ip,
            outcome: input.outcome,
            resource_type: opt_identifier("resource_type", input.resource_type)?,
            resource_id: opt_text("resource_id", input.resource_id, MAX_RESOURCE_ID_CHARS)?,
            request_id: opt_text("request_id", input.request_id, MAX_ID_LEN)?,
            trace_id: opt_trace_id(input.trace_id)?,
            event_id: input.event_id,
            action: input.action,
            details,
        })
    }
}

fn tenant_of(given: Option<String>, ctx: &ValidationContext) -> Result<TenantId, FieldError> {
    let path = ctx.path_tenant.clone().ok_or_else(|| FieldError::new("tenant_id", "no tenant in the URL"))?;
    match given {
        Some(given) if given != path.as_str() => {
            Err(FieldError::new("tenant_id", format!("must be the URL's tenant {path:?} when given")))
        }
        _ => Ok(path),
    }
}

/// The checks timeline events and audit records share. `kind` is reported as `kind`.
fn check_common(
    event_id: &str,
    kind: &str,
    actor: Option<&str>,
    details: &serde_json::Value,
    by_custos: bool,
) -> Result<(), FieldError> {
    check::identifier("event_id", event_id, MAX_ID_LEN)?;
    if RESERVED_EVENT_IDS.contains(&event_id) {
        return Err(FieldError::new(
            "event_id",
            format!("{event_id:?} is reserved (it names a route under the log: {})", RESERVED_EVENT_IDS.join(", ")),
        ));
    }
    if !by_custos
        && event_id.get(..CUSTOS_EVENT_ID_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(CUSTOS_EVENT_ID_PREFIX))
    {
        return Err(FieldError::new(
            "event_id",
            format!("ids starting with {CUSTOS_EVENT_ID_PREFIX:?} are reserved for records custos writes itself"),
        ));
    }
    check_kind(kind, by_custos)?;
    if let Some(actor) = actor {
        check::text("actor", actor, MAX_ACTOR_CHARS)?;
    }
    check_details(details)
}

/// A namespaced kind: dot-separated segments of `a-z 0-9 _`, each starting with a
/// letter, at least two of them.
fn check_kind(kind: &str, by_custos: bool) -> Result<(), FieldError> {
    let segment_ok = |s: &str| {
        s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if kind.len() > MAX_KIND_CHARS || kind.split('.').count() < 2 || !kind.split('.').all(segment_ok) {
        return Err(FieldError::new(
            "kind",
            format!(
                "must be a namespaced name such as platform.policy.changed: dot-separated lowercase segments, at most {MAX_KIND_CHARS} characters"
            ),
        ));
    }
    if kind.starts_with(CUSTOS_NAMESPACE) != by_custos {
        let message = if by_custos {
            "custos's own records use the custos. namespace"
        } else {
            "the custos. namespace is reserved for events custos records itself"
        };
        return Err(FieldError::new("kind", message));
    }
    Ok(())
}

fn check_details(details: &serde_json::Value) -> Result<(), FieldError> {
    if !details.is_object() {
        return Err(FieldError::new("details", "must be a JSON object"));
    }
    if depth(details) > MAX_DETAILS_DEPTH {
        return Err(FieldError::new("details", format!("must nest at most {MAX_DETAILS_DEPTH} levels deep")));
    }
    crate::canonical::check_exact_numbers("details", details).map_err(|path| {
        FieldError::new(path, "integers beyond ±2^53 do not hash exactly as JSON numbers; send them as strings")
    })?;
    let size = crate::canonical::to_vec(details).len();
    if size > MAX_DETAILS_BYTES {
        return Err(FieldError::new(
            "details",
            format!("must be at most {MAX_DETAILS_BYTES} bytes as canonical JSON (got {size})"),
        ));
    }
    Ok(())
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn opt_identifier(field: &str, value: Option<String>) -> Result<Option<String>, FieldError> {
    if let Some(v) = &value {
        check::identifier(field, v, MAX_ID_LEN)?;
    }
    Ok(value)
}

fn opt_text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, FieldError> {
    if let Some(v) = &value {
        check::text(field, v, max)?;
    }
    Ok(value)
}

fn opt_trace_id(value: Option<String>) -> Result<Option<String>, FieldError> {
    if let Some(v) = &value {
        TraceId::parse("trace_id", v)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
