//! Components a platform registers (connectors, destinations, queues, services, jobs)
//! and connector freshness: how long since the last successful sync, judged against
//! thresholds set per component, else per provider, else the defaults (green under 1 h,
//! yellow under 6 h, red beyond).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{FieldError, check};
use crate::jobs::JobSchedule;
use crate::timestamp::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// A connector (integration) syncing from a provider; `provider` is required.
    Connector,
    SiemDestination,
    WorkflowDestination,
    IngestionQueue,
    Service,
    ScheduledJob,
}

impl ComponentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Connector => "connector",
            ComponentKind::SiemDestination => "siem_destination",
            ComponentKind::WorkflowDestination => "workflow_destination",
            ComponentKind::IngestionQueue => "ingestion_queue",
            ComponentKind::Service => "service",
            ComponentKind::ScheduledJob => "scheduled_job",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
    }
}

/// Freshness thresholds, in seconds since the last successful sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreshnessThresholds {
    /// Green while the last success is younger than this.
    pub green_under_seconds: i64,
    /// Yellow while younger than this (and not green); red beyond.
    pub yellow_under_seconds: i64,
}

impl FreshnessThresholds {
    pub const DEFAULT: FreshnessThresholds =
        FreshnessThresholds { green_under_seconds: 3600, yellow_under_seconds: 6 * 3600 };

    pub fn validate(self, field: &str) -> Result<Self, FieldError> {
        if self.green_under_seconds <= 0 {
            return Err(FieldError::new(format!("{field}.green_under_seconds"), "must be positive"));
        }
        if self.yellow_under_seconds <= self.green_under_seconds {
            return Err(FieldError::new(
                format!("{field}.yellow_under_seconds"),
                "must be greater than green_under_seconds",
            ));
        }
        Ok(self)
    }

    pub fn state(self, now: Timestamp, last_success: Option<Timestamp>) -> FreshnessState {
        let Some(last) = last_success else {
            return FreshnessState::Unknown;
        };
        let age_seconds = now.micros_since(last) / 1_000_000;
        if age_seconds < self.green_under_seconds {
            FreshnessState::Green
        } else if age_seconds < self.yellow_under_seconds {
            FreshnessState::Yellow
        } else {
            FreshnessState::Red
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FreshnessState {
    Green,
    Yellow,
    Red,
    /// No successful sync recorded yet.
    Unknown,
}

/// Where a component's effective thresholds come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdSource {
    Component,
    Provider,
    Default,
}

/// A tenant's freshness thresholds for every connector of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FreshnessPolicy {
    pub provider: String,
    #[serde(flatten)]
    pub thresholds: FreshnessThresholds,
    pub updated_at: Timestamp,
}

/// The body of `PUT /v1/tenants/{t}/components/{id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentInput {
    pub kind: ComponentKind,
    /// Display name, at most 200 characters.
    pub name: Option<String>,
    /// The provider a connector syncs from (`okta`, `crowdstrike`); required for connectors.
    pub provider: Option<String>,
    /// Overrides the provider's and the default thresholds for this component.
    pub freshness: Option<FreshnessThresholds>,
    /// Scheduled jobs: when a run is expected, and the grace period (see `docs/jobs.md`).
    pub schedule: Option<JobSchedule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Component {
    pub id: String,
    pub kind: ComponentKind,
    pub name: Option<String>,
    pub provider: Option<String>,
    pub freshness: Option<FreshnessThresholds>,
    /// Scheduled jobs: the schedule, with its defaults filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<JobSchedule>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub fn validate_provider(field: &str, provider: &str) -> Result<(), FieldError> {
    let ok = !provider.is_empty()
        && provider.len() <= 64
        && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(field, "must be 1 to 64 of lowercase letters, digits, '_', '.' and '-'"))
    }
}

impl ComponentInput {
    /// Validates the body for component `id` (from the URL) at `now`.
    pub fn validate(self, id: &str, now: Timestamp) -> Result<Component, FieldError> {
        crate::ids::component_id("id", id)?;
        if let Some(name) = &self.name {
            check::text("name", name, 200)?;
        }
        match (&self.provider, self.kind) {
            (Some(provider), _) => validate_provider("provider", provider)?,
            (None, ComponentKind::Connector) => {
                return Err(FieldError::new("provider", "is required for a connector"));
            }
            (None, _) => {}
        }
        let freshness = self.freshness.map(|f| f.validate("freshness")).transpose()?;
        let schedule = match (self.schedule, self.kind) {
            (Some(schedule), ComponentKind::ScheduledJob) => Some(schedule.validate("schedule")?),
            (Some(_), _) => return Err(FieldError::new("schedule", "applies to scheduled_job components only")),
            (None, _) => None,
        };
        Ok(Component {
            id: id.to_owned(),
            kind: self.kind,
            name: self.name,
            provider: self.provider,
            freshness,
            schedule,
            created_at: now,
            updated_at: now,
        })
    }
}

impl Component {
    /// Whether `other` defines the same component (timestamps aside): a PUT of it
    /// changes nothing.
    pub fn same_definition(&self, other: &Component) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.name == other.name
            && self.provider == other.provider
            && self.freshness == other.freshness
            && self.schedule == other.schedule
    }

    /// The thresholds that apply: the component's own, else its provider's policy, else
    /// the defaults.
    pub fn effective_thresholds(
        &self,
        provider_policy: Option<&FreshnessThresholds>,
    ) -> (FreshnessThresholds, ThresholdSource) {
        match (self.freshness, provider_policy) {
            (Some(own), _) => (own, ThresholdSource::Component),
            (None, Some(policy)) => (*policy, ThresholdSource::Provider),
            (None, None) => (FreshnessThresholds::DEFAULT, ThresholdSource::Default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: f64) -> Timestamp {
        Timestamp::from_micros((hours * 3600.0 * 1e6) as i64)
    }

    #[test]
    fn default_freshness_bands() {
        let t = FreshnessThresholds::DEFAULT;
        let now = at(100.0);
        assert_eq!(t.state(now, None), FreshnessState::Unknown);
        assert_eq!(t.state(now, Some(at(99.5))), FreshnessState::Green);
        assert_eq!(t.state(now, Some(at(99.0))), FreshnessState::Yellow);
        assert_eq!(t.state(now, Some(at(94.5))), FreshnessState::Yellow);
        assert_eq!(t.state(now, Some(at(94.0))), FreshnessState::Red);
    }

    #[test]
    fn thresholds_resolve_component_then_provider_then_default() {
        let input = ComponentInput {
            kind: ComponentKind::Connector,
            name: None,
            provider: Some("okta".into()),
            freshness: None,
            schedule: None,
        };
        let component = input.validate("okta-prod", at(0.0)).unwrap();
        let policy = FreshnessThresholds { green_under_seconds: 60, yellow_under_seconds: 120 };
        assert_eq!(component.effective_thresholds(None).1, ThresholdSource::Default);
        assert_eq!(component.effective_thresholds(Some(&policy)), (policy, ThresholdSource::Provider));
        let own = FreshnessThresholds { green_under_seconds: 10, yellow_under_seconds: 20 };
        let component = Component { freshness: Some(own), ..component };
        assert_eq!(component.effective_thresholds(Some(&policy)), (own, ThresholdSource::Component));
    }

    #[test]
    fn validation_names_fields() {
        let connector = |provider: Option<&str>, freshness| ComponentInput {
            kind: ComponentKind::Connector,
            name: None,
            provider: provider.map(str::to_owned),
            freshness,
            schedule: None,
        };
        assert_eq!(connector(None, None).validate("c", at(0.0)).unwrap_err().field, "provider");
        assert_eq!(connector(Some("Okta!"), None).validate("c", at(0.0)).unwrap_err().field, "provider");
        let inverted = FreshnessThresholds { green_under_seconds: 100, yellow_under_seconds: 50 };
        assert_eq!(
            connector(Some("okta"), Some(inverted)).validate("c", at(0.0)).unwrap_err().field,
            "freshness.yellow_under_seconds"
        );
        assert_eq!(connector(Some("okta"), None).validate("bad id", at(0.0)).unwrap_err().field, "id");
    }
}
