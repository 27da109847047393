//! `GET /health`: every dependency and worker checked at once, each check time-boxed,
//! answered in the IETF health-check format (`application/health+json`,
//! draft-inadarei-api-health-check): `pass` and `warn` are 200, `fail` is 503.
//!
//! Pure decisions (a worker's status from its heartbeat age, the overall status) are
//! plain functions; the IO is the checks themselves.

use std::collections::BTreeMap;
use std::sync::Arc;
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

/// Name of the object store prober in the workers registry, logs and `/health`.
pub const OBJECT_PROBE: &str = "object-store-probe";

/// The object store prober's latest finished probe.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeSlot(Arc<std::sync::Mutex<Option<ProbeOutcome>>>);

#[derive(Debug, Clone)]
pub(crate) struct ProbeOutcome {
    pub finished: Instant,
    pub took: Duration,
    /// The error, when the probe failed.
    pub error: Option<String>,
}

impl ProbeSlot {
    fn set(&self, outcome: ProbeOutcome) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(outcome);
    }

    fn get(&self) -> Option<ProbeOutcome> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Proves the object store writable every `period` (writes, reads back and deletes an
/// object named after this instance), each probe bounded by `period`. A probe takes
/// round trips to S3, too slow and too costly for every `/health` request, which reads
/// the latest result instead.
pub fn spawn_object_probe(state: AppState, period: Duration) -> Option<tokio::task::JoinHandle<()>> {
    let objects = state.objects.clone()?;
    let workers = state.workers.clone();
    Some(workers.spawn_periodic(OBJECT_PROBE, period, move || {
        let (state, objects) = (state.clone(), objects.clone());
        async move {
            let started = Instant::now();
            let error = match tokio::time::timeout(period, objects.probe(&state.config.instance_id)).await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => {
                    tracing::warn!(error = &error as &dyn std::error::Error, "object store probe failed");
                    Some(format!("{}: {error}", objects.location()))
                }
                Err(_) => {
                    tracing::warn!(timeout_ms = period.as_millis() as u64, "object store probe timed out");
                    Some(format!("{}: no answer within {} ms", objects.location(), period.as_millis()))
                }
            };
            let probed = usize::from(error.is_none());
            state.object_probe.set(ProbeOutcome { finished: Instant::now(), took: started.elapsed(), error });
            probed
        }
    }))
}

/// The object store check from the latest probe: `pass` when it succeeded within three
/// periods, `fail` when it failed or none finished for three periods (a hanging store),
/// `warn` before the first probe finishes.
pub(crate) fn object_store_status(
    latest: Option<&ProbeOutcome>,
    period: Duration,
    now: Instant,
) -> (Status, Option<String>) {
    match latest {
        None => (Status::Warn, Some("the first probe has not finished".to_owned())),
        Some(outcome) => {
            let age = now.saturating_duration_since(outcome.finished);
            if age > period * 3 {
                (Status::Fail, Some(format!("no probe has finished for {:.1} s", age.as_secs_f64())))
            } else if let Some(error) = &outcome.error {
                (Status::Fail, Some(error.clone()))
            } else {
                (Status::Pass, None)
            }
        }
    }
}

fn object_store_writable(state: &AppState, objects: &custos_store::Objects) -> Option<CheckResult> {
    let period = state.workers.snapshot().get(OBJECT_PROBE)?.period;
    let latest = state.object_probe.get();
    let (status, output) = object_store_status(latest.as_ref(), period, Instant::now());
    let mut check = result("datastore", status);
    check.component_id = Some(objects.kind().as_str().to_owned());
    if let Some(outcome) = &latest {
        check.observed_value = Some((outcome.took.as_secs_f64() * 1e6).round() / 1e3);
        check.observed_unit = Some("ms");
    }
    check.output = output;
    Some(check)
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
    let objects = state.objects.as_ref().and_then(|objects| object_store_writable(state, objects));
    let mut checks = BTreeMap::new();
    checks.insert("database:connectivity".to_owned(), vec![connectivity]);
    checks.insert("database:migrations".to_owned(), vec![migrations]);
    if let Some(objects) = objects {
        checks.insert("objectStore:writable".to_owned(), vec![objects]);
    }
    // Started with --allow-privileged-database-role: row-level security is one wall, not
    // two, and the report says so until the server runs as a role that owns nothing.
    if let Some(privileged) = &state.config.privileged_database_role {
        let mut check = result("datastore", Status::Warn);
        check.output = Some(format!(
            "{privileged}: row-level security can be bypassed (--allow-privileged-database-role); serve as a login \
             role that owns nothing"
        ));
        checks.insert("database:role".to_owned(), vec![check]);
    }
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
    fn object_store_status_by_latest_probe() {
        let now = Instant::now();
        let period = Duration::from_secs(10);
        let probe = |age: u64, error: Option<&str>| ProbeOutcome {
            finished: now - Duration::from_secs(age),
            took: Duration::from_millis(3),
            error: error.map(str::to_owned),
        };
        assert_eq!(object_store_status(None, period, now).0, Status::Warn);
        assert_eq!(object_store_status(Some(&probe(5, None)), period, now), (Status::Pass, None));
        assert_eq!(object_store_status(Some(&probe(30, None)), period, now).0, Status::Pass);
        let (status, output) = object_store_status(Some(&probe(31, None)), period, now);
        assert_eq!(status, Status::Fail, "a probe hanging for three periods fails");
        assert!(output.unwrap().contains("no probe has finished for 31.0 s"));
        assert_eq!(
            object_store_status(Some(&probe(1, Some("s3://b: denied"))), period, now),
            (Status::Fail, Some("s3://b: denied".to_owned()))
        );
    }

    #[test]
    fn the_worst_status_wins() {
        assert!(Status::Fail > Status::Warn && Status::Warn > Status::Pass);
    }
}
