//! `GET /health`: every dependency and worker checked at once, each check time-boxed,
//! answered in the IETF health-check format (`application/health+json`,
//! draft-inadarei-api-health-check): `pass` and `warn` are 200, `fail` is 503.
//!
//! Pure decisions (a worker's status from its heartbeat age, the overall status) are
//! plain functions; the IO is the checks themselves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::AppState;
use crate::workers::WorkerBeat;

/// How long any one check may take; a check still running then reports `fail`. The
/// checks run concurrently, so the whole answer takes about this long at worst.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Pass,
    Warn,
    Fail,
}

/// One check's result, as the format names its fields.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    pub component_type: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<&'static str>,
    /// When the check ran (RFC 3339).
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HealthReport {
    pub status: Status,
    pub version: String,
    pub release_id: String,
    pub service_id: String,
    pub description: &'static str,
    /// Keyed `component:measurement` (`database:connectivity`, `worker:heartbeat`).
    pub checks: BTreeMap<String, Vec<CheckResult>>,
}

fn result(component_type: &'static str, status: Status) -> CheckResult {
    CheckResult {
        component_id: None,
        component_type,
        status,
        observed_value: None,
        observed_unit: None,
        time: custos_model::Timestamp::now().to_string(),
        output: None,
    }
}

/// Runs `check` within [`CHECK_TIMEOUT`]; a check that does not finish in time fails.
async fn time_boxed(component_type: &'static str, check: impl Future<Output = CheckResult>) -> CheckResult {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(done) => done,
        Err(_) => CheckResult {
            output: Some(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
            ..result(component_type, Status::Fail)
        },
    }
}

async fn database_connectivity(state: &AppState) -> CheckResult {
    let started = Instant::now();
    let outcome = state.store.ping().await;
    let mut check = result("datastore", if outcome.is_ok() { Status::Pass } else { Status::Fail });
    check.component_id = Some(state.store.backend().as_str().to_owned());
    check.observed_value = Some((started.elapsed().as_secs_f64() * 1e6).round() / 1e3);
    check.observed_unit = Some("ms");
    if let Err(error) = outcome {
        tracing::warn!(error = &error as &dyn std::error::Error, "health: database unreachable");
        check.output = Some(format!("store: {}", error.code()));
    }
    check
}

async fn database_migrations(state: &AppState) -> CheckResult {
    let expected = state.store.expected_schema_version();
    match state.store.schema_version().await {
        Ok(version) => {
            let status = if version == expected { Status::Pass } else { Status::Fail };
            let mut check = result("datastore", status);
            check.observed_value = Some(version as f64);
            if status == Status::Fail {
                check.output =
                    Some(format!("schema version {version}, this build needs {expected}: run custos migrate"));
            }
            check
        }
        Err(error) => {
            CheckResult { output: Some(format!("store: {}", error.code())), ..result("datastore", Status::Fail) }
        }
    }
}

/// A worker is `pass` within three of its periods of its last iteration (or of its
/// start, before the first), `warn` within ten, `fail` beyond: dead or stuck.
pub(crate) fn worker_status(beat: &WorkerBeat, now: Instant) -> (Status, Duration) {
    let since = now.saturating_duration_since(beat.last_iteration.unwrap_or(beat.registered));
    let status = if since <= beat.period * 3 {
        Status::Pass
    } else if since <= beat.period * 10 {
        Status::Warn
    } else {
        Status::Fail
    };
    (status, since)
}

fn worker_heartbeats(state: &AppState) -> Vec<CheckResult> {
    let now = Instant::now();
    state
        .workers
        .snapshot()
        .into_iter()
        .map(|(name, beat)| {
            let (status, since) = worker_status(&beat, now);
            let mut check = result("component", status);
            check.component_id = Some(name);
            check.observed_value = Some((since.as_secs_f64() * 1000.0).round() / 1000.0);
            check.observed_unit = Some("s");
            if status != Status::Pass {
                check.output = Some(format!(
                    "no iteration for {:.1} s; the worker runs every {:.1} s",
                    since.as_secs_f64(),
                    beat.period.as_secs_f64()
                ));
            }
            check
        })
        .collect()
}

/// The whole report: the worst check decides.
pub(crate) async fn report(state: &AppState) -> HealthReport {
    let (connectivity, migrations) = tokio::join!(
        time_boxed("datastore", database_connectivity(state)),
        time_boxed("datastore", database_migrations(state)),
    );
    let mut checks = BTreeMap::new();
    checks.insert("database:connectivity".to_owned(), vec![connectivity]);
    checks.insert("database:migrations".to_owned(), vec![migrations]);
    let workers = worker_heartbeats(state);
    if !workers.is_empty() {
        checks.insert("worker:heartbeat".to_owned(), workers);
    }
    let status = checks.values().flatten().map(|c| c.status).max().unwrap_or(Status::Pass);
    HealthReport {
        status,
        version: state.config.version.clone(),
        release_id: state.config.commit.clone(),
        service_id: state.config.instance_id.clone(),
        description: "custos",
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_status_by_heartbeat_age() {
        let start = Instant::now();
        let beat = |last: Option<u64>| WorkerBeat {
            period: Duration::from_secs(10),
            registered: start,
            last_iteration: last.map(|s| start + Duration::from_secs(s)),
        };
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(worker_status(&beat(None), at(30)).0, Status::Pass, "three periods after start, no iteration yet");
        assert_eq!(worker_status(&beat(None), at(31)).0, Status::Warn);
        assert_eq!(worker_status(&beat(Some(100)), at(130)).0, Status::Pass);
        assert_eq!(worker_status(&beat(Some(100)), at(200)).0, Status::Warn);
        assert_eq!(worker_status(&beat(Some(100)), at(201)).0, Status::Fail);
        assert_eq!(worker_status(&beat(Some(100)), at(50)).1, Duration::ZERO, "a clock before the beat is age zero");
    }

    #[test]
    fn the_worst_status_wins() {
        assert!(Status::Fail > Status::Warn && Status::Warn > Status::Pass);
    }
}
