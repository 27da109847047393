//! What the status page keeps: component state changes, incidents with their updates,
//! and maintenance windows, each in a scope (the platform's public page, or one
//! tenant's). The rules (what a state means, when an incident opens) live in
//! `custos_model::status`; this module holds the stored shapes and the SQL both
//! backends share, written with `$n` parameters (SQLite reads them as `?n`).

use custos_model::status::{ComponentStatus, Impact, IncidentStatus, MaintenanceInput, MaintenanceWindow};
use custos_model::{TenantId, Timestamp};
use serde::Serialize;

use crate::error::{StoreError, StoreResult};
use crate::table::RowReader;

/// Whose page a row belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusScope {
    /// The platform-wide page, public by default: nothing in it names a tenant.
    Platform,
    Tenant(TenantId),
}

impl StatusScope {
    /// The `tenant_id` column's value: the tenant's id, or `''` for the platform (no
    /// tenant id is empty).
    pub fn key(&self) -> &str {
        match self {
            StatusScope::Platform => "",
            StatusScope::Tenant(tenant) => tenant.as_str(),
        }
    }
}

/// A component's state from `at` until the next change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub component: String,
    pub at: Timestamp,
    pub status: ComponentStatus,
}

/// Who opened an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentSource {
    Manual,
    /// The detector, from failure rates or freshness.
    Auto,
}

impl IncidentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentSource::Manual => "manual",
            IncidentSource::Auto => "auto",
        }
    }
}

/// One update of an incident, in order (`seq` from 1).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentUpdate {
    pub seq: i64,
    pub at: Timestamp,
    pub status: IncidentStatus,
    pub impact: Impact,
    pub message: String,
}

/// An incident and its history, newest update last.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentRecord {
    pub id: String,
    pub title: String,
    pub status: IncidentStatus,
    pub impact: Impact,
    pub components: Vec<String>,
    pub source: IncidentSource,
    /// For an automatic incident, the signal it was opened for (`rules`,
    /// `connector:okta-prod`); at most one is open per signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub updates: Vec<IncidentUpdate>,
}

/// A new update: a status, what is known, and the impact from now on.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncidentUpdate {
    pub status: IncidentStatus,
    pub impact: Impact,
    pub message: String,
    pub at: Timestamp,
}

/// A maintenance window as stored.
#[derive(Debug, Clone)]
pub struct MaintenanceRecord {
    pub id: String,
    pub window: MaintenanceWindow,
    pub created_at: Timestamp,
}

fn corrupt(what: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt { what, detail }
}

pub(crate) fn component_status(value: &str) -> StoreResult<ComponentStatus> {
    ComponentStatus::parse(value).ok_or_else(|| corrupt("status change", format!("unknown status {value:?}")))
}

fn incident_status(value: &str) -> StoreResult<IncidentStatus> {
    IncidentStatus::parse(value).ok_or_else(|| corrupt("incident", format!("unknown status {value:?}")))
}

fn impact(value: &str) -> StoreResult<Impact> {
    Impact::parse(value).ok_or_else(|| corrupt("incident", format!("unknown impact {value:?}")))
}

pub(crate) fn components_json(components: &[String]) -> String {
    serde_json::to_string(components).unwrap_or_else(|_| "[]".to_owned())
}

fn components_from_json(what: &'static str, text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| corrupt(what, format!("components: {e}")))
}

// Status changes.

/// Columns: component, at_us, status.
pub(crate) const LATEST_STATUS_SQL: &str = "SELECT component, at_us, status FROM status_changes c \
     WHERE tenant_id = $1 AND at_us = (SELECT MAX(at_us) FROM status_changes l \
     WHERE l.tenant_id = c.tenant_id AND l.component = c.component)";
pub(crate) const INSERT_STATUS_SQL: &str =
    "INSERT INTO status_changes (tenant_id, component, at_us, status) VALUES ($1, $2, $3, $4)";
/// Changes at or after `$2`, and for each component the last change before it.
pub(crate) const STATUS_CHANGES_SQL: &str = "SELECT component, at_us, status FROM status_changes c \
     WHERE tenant_id = $1 AND (at_us >= $2 OR at_us = (SELECT MAX(at_us) FROM status_changes l \
     WHERE l.tenant_id = c.tenant_id AND l.component = c.component AND l.at_us < $2)) \
     ORDER BY component, at_us";

pub(crate) fn change_from_row(row: &impl RowReader) -> StoreResult<StatusChange> {
    Ok(StatusChange {
        component: row.text(0)?,
        at: Timestamp::from_micros(row.int(1)?),
        status: component_status(&row.text(2)?)?,
    })
}

/// Of `observed` (component, status), those that differ from the latest stored change.
pub(crate) fn changed<'a>(
    latest: &[StatusChange],
    observed: &'a [(String, ComponentStatus)],
) -> Vec<&'a (String, ComponentStatus)> {
    observed
        .iter()
        .filter(|(component, status)| {
            latest.iter().find(|c| &c.component == component).is_none_or(|c| c.status != *status)
        })
        .collect()
}

// Incidents.

const INCIDENT_COLUMNS: &str =
    "id, title, status, impact, components, source, auto_key, created_at_us, updated_at_us, resolved_at_us";

pub(crate) const INSERT_INCIDENT_SQL: &str = "INSERT INTO incidents (tenant_id, id, title, status, impact, components, \
     source, auto_key, created_at_us, updated_at_us, resolved_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub(crate) const INSERT_UPDATE_SQL: &str = "INSERT INTO incident_updates (tenant_id, incident_id, seq, at_us, status, \
     impact, message) VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const SET_INCIDENT_SQL: &str = "UPDATE incidents SET status = $3, impact = $4, updated_at_us = $5, \
     resolved_at_us = $6 WHERE tenant_id = $1 AND id = $2";
/// The updates of the incidents [`incidents_sql`] lists (same `$1` and `$2`), matched to
/// them in code by [`attach_updates`].
pub(crate) const UPDATES_SQL: &str = "SELECT incident_id, seq, at_us, status, impact, message FROM incident_updates \
     WHERE tenant_id = $1 AND incident_id IN (SELECT id FROM incidents WHERE tenant_id = $1 \
     AND (resolved_at_us IS NULL OR resolved_at_us >= $2)) ORDER BY incident_id, seq";

pub(crate) fn incidents_sql() -> String {
    format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE tenant_id = $1 \
         AND (resolved_at_us IS NULL OR resolved_at_us >= $2) ORDER BY created_at_us DESC, id DESC"
    )
}

pub(crate) fn incident_sql() -> String {
    format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE tenant_id = $1 AND id = $2")
}

pub(crate) fn incident_updates_sql() -> &'static str {
    "SELECT incident_id, seq, at_us, status, impact, message FROM incident_updates \
     WHERE tenant_id = $1 AND incident_id = $2 ORDER BY seq"
}

pub(crate) fn incident_from_row(row: &impl RowReader) -> StoreResult<IncidentRecord> {
    let source = match row.text(5)?.as_str() {
        "manual" => IncidentSource::Manual,
        "auto" => IncidentSource::Auto,
        other => return Err(corrupt("incident", format!("unknown source {other:?}"))),
    };
    Ok(IncidentRecord {
        id: row.text(0)?,
        title: row.text(1)?,
        status: incident_status(&row.text(2)?)?,
        impact: impact(&row.text(3)?)?,
        components: components_from_json("incident", &row.text(4)?)?,
        source,
        auto_key: row.opt_text(6)?,
        created_at: Timestamp::from_micros(row.int(7)?),
        updated_at: Timestamp::from_micros(row.int(8)?),
        resolved_at: row.opt_int(9)?.map(Timestamp::from_micros),
        updates: Vec::new(),
    })
}

/// (incident id, update).
pub(crate) fn update_from_row(row: &impl RowReader) -> StoreResult<(String, IncidentUpdate)> {
    Ok((
        row.text(0)?,
        IncidentUpdate {
            seq: row.int(1)?,
            at: Timestamp::from_micros(row.int(2)?),
            status: incident_status(&row.text(3)?)?,
            impact: impact(&row.text(4)?)?,
            message: row.text(5)?,
        },
    ))
}

/// Gives each incident its updates (both lists as read, updates ordered by id, seq).
pub(crate) fn attach_updates(incidents: &mut [IncidentRecord], updates: Vec<(String, IncidentUpdate)>) {
    for (incident_id, update) in updates {
        if let Some(incident) = incidents.iter_mut().find(|i| i.id == incident_id) {
            incident.updates.push(update);
        }
    }
}

/// The incident after `update` (read with all its updates): its status and impact, and
/// resolved when resolved (reopened when an update moves it back). Returns the update
/// to store, numbered after the last.
pub(crate) fn apply_update(incident: &mut IncidentRecord, update: &NewIncidentUpdate) -> IncidentUpdate {
    let seq = incident.updates.last().map_or(1, |u| u.seq + 1);
    incident.status = update.status;
    incident.impact = update.impact;
    incident.updated_at = update.at;
    incident.resolved_at = match update.status {
        IncidentStatus::Resolved => Some(incident.resolved_at.unwrap_or(update.at)),
        _ => None,
    };
    let stored = IncidentUpdate {
        seq,
        at: update.at,
        status: update.status,
        impact: update.impact,
        message: update.message.clone(),
    };
    incident.updates.push(stored.clone());
    stored
}

// Maintenance windows.

pub(crate) const INSERT_MAINTENANCE_SQL: &str = "INSERT INTO maintenance_windows (tenant_id, id, title, components, \
     starts_at_us, ends_at_us, cron, timezone, duration_minutes, created_at_us, cancelled_at_us) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)";
pub(crate) const CANCEL_MAINTENANCE_SQL: &str = "UPDATE maintenance_windows SET cancelled_at_us = $3 \
     WHERE tenant_id = $1 AND id = $2 AND cancelled_at_us IS NULL";
pub(crate) const MAINTENANCE_SQL: &str = "SELECT id, title, components, starts_at_us, ends_at_us, cron, timezone, \
     duration_minutes, created_at_us FROM maintenance_windows WHERE tenant_id = $1 AND cancelled_at_us IS NULL \
     ORDER BY created_at_us, id";

pub(crate) fn maintenance_from_row(row: &impl RowReader) -> StoreResult<MaintenanceRecord> {
    let input = MaintenanceInput {
        title: row.text(1)?,
        components: components_from_json("maintenance window", &row.text(2)?)?,
        starts_at: row.opt_int(3)?.map(Timestamp::from_micros),
        ends_at: row.opt_int(4)?.map(Timestamp::from_micros),
        cron: row.opt_text(5)?,
        timezone: row.opt_text(6)?,
        duration_minutes: row.opt_int(7)?,
    };
    // Stored windows were validated against the components known then; they are
    // re-checked for shape only.
    let components = input.components.clone();
    let known: Vec<&str> = components.iter().map(String::as_str).collect();
    let window = input.validate(&known).map_err(|e| corrupt("maintenance window", e.to_string()))?;
    Ok(MaintenanceRecord { id: row.text(0)?, window, created_at: Timestamp::from_micros(row.int(8)?) })
}
