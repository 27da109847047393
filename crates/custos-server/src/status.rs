//! The status evaluator: a worker that, every period, derives each status-page
//! component's state from what the store holds and what this process saw, records the
//! changes (the uptime bars are drawn from them), and runs the incident detector.
//!
//! Failure ratios are taken over the last period, as the difference of cumulative
//! counts between two passes (the metric rollups for rule runs, syncs and deliveries;
//! the queues' own processed and failed totals; this process's request tallies), the
//! way a Prometheus `rate()` is. The first pass after a start has nothing to difference
//! and judges on freshness, jobs and workers only.
//!
//! What each component is made of:
//!
//! | scope | component | failures | parts down |
//! |---|---|---|---|
//! | platform | `api` | this process's 5xx answers outside the console; slow when p95 > 2 s | |
//! | platform | `ingestion` | every tenant's failed connector syncs and failed queue items | connectors past red freshness |
//! | platform | `delivery` | every tenant's delivery attempts not succeeded | |
//! | platform | `workers` | | custos workers without a heartbeat, scheduled jobs `down` |
//! | platform | `console` | 5xx answers of `/status…` and `/admin…` | |
//! | tenant | each connector | its failed syncs | itself, when red (yellow: degraded) |
//! | tenant | each destination | its attempts not succeeded | |
//!
//! A maintenance window covering a component records `under_maintenance`. Incidents
//! are not recorded into the states: the page applies open manual incidents as it
//! renders (see `overlay`), and automatic ones come from the same signals as the
//! states, so they would only count twice. Automatic incidents: one signal per
//! platform component, per tenant's rule runs and per tenant's connector, each through
//! [`custos_model::status::detect`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use custos_model::component::{ComponentKind, FreshnessState};
use custos_model::jobs::JobStatus;
use custos_model::status::{
    ComponentStatus, DetectorAction, DetectorConfig, DetectorInput, DetectorState, Impact, IncidentInput,
    IncidentStatus, Observation, PLATFORM_COMPONENTS, Thresholds, derive_status, detect, worst,
};
use custos_model::{TenantId, Timestamp};
use custos_store::rollup::{FOLDED_KEY, RollupFamily};
use custos_store::{IncidentRecord, IncidentSource, MaintenanceRecord, NewIncidentUpdate, StatusScope, StoreError};

use crate::AppState;
use crate::health::{Status as HealthStatus, worker_status};
use crate::platform_metrics::{self, TenantData};
use crate::routes::incidents::new_incident;

/// The worker's name in logs, metrics and `/health`.
pub const EVALUATOR: &str = "status-evaluator";

/// A request slower than this makes the API's p95 slow, and the API degraded.
pub const SLOW_API_P95_MS: f64 = 2_000.0;

/// Request duration bucket bounds of [`RequestTally`], in milliseconds.
const LATENCY_BOUNDS_MS: [u64; 10] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000];

/// Which of this process's surfaces a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    Api,
    Console,
}

impl Surface {
    /// The console's pages (`/status…`, `/admin…`), and everything else.
    pub(crate) fn of_route(route: &str) -> Surface {
        if route.starts_with("/status") || route.starts_with("/admin") { Surface::Console } else { Surface::Api }
    }
}

/// Cumulative counts of one signal: attempts and failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub total: u64,
    pub failed: u64,
}

impl Tally {
    fn add(&mut self, total: u64, failed: u64) {
        self.total += total;
        self.failed += failed;
    }

    /// What happened since `before`; a counter that went backwards (a reset) counts
    /// from zero.
    fn since(self, before: Option<Tally>) -> Tally {
        match before {
            Some(b) if b.total <= self.total && b.failed <= self.failed => {
                Tally { total: self.total - b.total, failed: self.failed - b.failed }
            }
            Some(_) => self,
            None => Tally::default(),
        }
    }
}

#[derive(Debug, Default)]
struct SurfaceTally {
    total: AtomicU64,
    server_errors: AtomicU64,
    /// Requests at or under each bound (not cumulative); above the last, in `total` only.
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len()],
}

/// What this process answered, per surface, as cumulative counts the evaluator
/// differences between passes.
#[derive(Debug, Default)]
pub struct RequestTally {
    api: SurfaceTally,
    console: SurfaceTally,
}

/// A surface's counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SurfaceCounts {
    pub tally: Tally,
    pub buckets: [u64; LATENCY_BOUNDS_MS.len()],
}

impl SurfaceCounts {
    fn since(self, before: Option<SurfaceCounts>) -> SurfaceCounts {
        let tally = self.tally.since(before.map(|b| b.tally));
        let mut buckets = [0; LATENCY_BOUNDS_MS.len()];
        if let Some(b) = before.filter(|b| b.tally.total <= self.tally.total) {
            for (i, out) in buckets.iter_mut().enumerate() {
                *out = self.buckets[i].saturating_sub(b.buckets[i]);
            }
        }
        SurfaceCounts { tally, buckets }
    }

    /// The bucket bound under which 95 % of the requests finished; infinite when more
    /// than 5 % took longer than the last bound; `None` without requests.
    fn p95_ms(&self) -> Option<f64> {
        if self.tally.total == 0 {
            return None;
        }
        let wanted = (self.tally.total as f64 * 0.95).ceil() as u64;
        let mut seen = 0;
        for (bound, count) in LATENCY_BOUNDS_MS.iter().zip(self.buckets) {
            seen += count;
            if seen >= wanted {
                return Some(*bound as f64);
            }
        }
        Some(f64::INFINITY)
    }
}

impl RequestTally {
    fn surface(&self, surface: Surface) -> &SurfaceTally {
        match surface {
            Surface::Api => &self.api,
            Surface::Console => &self.console,
        }
    }

    pub(crate) fn observe(&self, surface: Surface, status: u16, elapsed: Duration) {
        let tally = self.surface(surface);
        tally.total.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            tally.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = elapsed.as_millis();
        if let Some(i) = LATENCY_BOUNDS_MS.iter().position(|&bound| ms <= u128::from(bound)) {
            tally.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(&self, surface: Surface) -> SurfaceCounts {
        let tally = self.surface(surface);
        SurfaceCounts {
            tally: Tally {
                total: tally.total.load(Ordering::Relaxed),
                failed: tally.server_errors.load(Ordering::Relaxed),
            },
            buckets: std::array::from_fn(|i| tally.buckets[i].load(Ordering::Relaxed)),
        }
    }
}

/// Everything one pass reads, gathered first so the derivation is a pure function.
pub(crate) struct Inputs<'a> {
    pub now: Timestamp,
    pub tenants: &'a [TenantData],
    pub api: SurfaceCounts,
    pub console: SurfaceCounts,
    /// This process's workers: (name, heartbeat status).
    pub workers: Vec<(String, HealthStatus)>,
    pub platform_windows: &'a [MaintenanceRecord],
    pub tenant_windows: &'a HashMap<TenantId, Vec<MaintenanceRecord>>,
}

/// Cumulative counts as of one pass, keyed by signal (`api`, `t:acme:sync:okta-prod`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    tallies: HashMap<String, Tally>,
    api: Option<SurfaceCounts>,
    console: Option<SurfaceCounts>,
}

/// What the detector sees of one signal, and what an incident opened for it says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Signal {
    /// `rules`, `connector:okta-prod`, `component:api`: the incident's `auto_key`.
    pub key: String,
    pub input: DetectorInput,
    /// What was seen, in words (`3 of 15 attempts failed (20 %)`).
    pub detail: String,
}

/// One component's derived state, and what the detector should see of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Derived {
    pub component: String,
    pub status: ComponentStatus,
    /// `None`: not a detector signal of its own.
    pub signal: Option<Signal>,
}

/// What an observation shows, in words, for an incident's first update.
fn describe(observed: &Observation, parts: &str) -> String {
    let mut out = Vec::new();
    if observed.parts_down > 0 {
        out.push(format!("{} of {} {parts} down", observed.parts_down, observed.parts));
    }
    if observed.total > 0 {
        let ratio = observed.failed as f64 * 100.0 / observed.total as f64;
        out.push(format!("{} of {} attempts failed ({ratio:.0} %)", observed.failed, observed.total));
    }
    if let Some(p95) = observed.p95_ms.filter(|p| *p > SLOW_API_P95_MS) {
        out.push(if p95.is_finite() { format!("p95 latency {p95:.0} ms") } else { "p95 latency above 5 s".into() });
    }
    if out.is_empty() { "nothing observed in the last evaluation period".into() } else { out.join("; ") }
}

/// One pass's result.
#[derive(Debug, Clone, Default)]
pub(crate) struct Evaluation {
    pub platform: Vec<Derived>,
    pub tenants: BTreeMap<TenantId, Vec<Derived>>,
    /// Every signal of each tenant: its rule runs, and its connectors.
    pub tenant_signals: BTreeMap<TenantId, Vec<Signal>>,
    pub counts: Counts,
}

fn tenant_key(tenant: &TenantId, what: &str, id: &str) -> String {
    format!("t:{}:{what}:{id}", tenant.as_str())
}

/// `under_maintenance` while a window covering the component is active at `now`, else
/// `status`: what the evaluator records.
fn maintained(
    component: &str,
    status: ComponentStatus,
    windows: &[MaintenanceRecord],
    now: Timestamp,
) -> ComponentStatus {
    if in_maintenance(component, windows, now) { ComponentStatus::UnderMaintenance } else { status }
}

/// What the page shows: [`maintained`], then raised by each open manual incident naming
/// the component to at least its impact.
pub(crate) fn overlay(
    component: &str,
    status: ComponentStatus,
    windows: &[MaintenanceRecord],
    incidents: &[IncidentRecord],
    now: Timestamp,
) -> ComponentStatus {
    incidents
        .iter()
        .filter(|i| i.source == IncidentSource::Manual && i.resolved_at.is_none())
        .filter(|i| i.components.iter().any(|c| c == component))
        .fold(maintained(component, status, windows, now), |s, i| worst(s, i.impact.component_status()))
}

fn in_maintenance(component: &str, windows: &[MaintenanceRecord], now: Timestamp) -> bool {
    windows.iter().any(|w| w.window.covers(component) && w.window.active_at(now).is_some())
}

fn freshness_status(state: FreshnessState) -> ComponentStatus {
    match state {
        FreshnessState::Red => ComponentStatus::MajorOutage,
        FreshnessState::Yellow => ComponentStatus::DegradedPerformance,
        FreshnessState::Green | FreshnessState::Unknown => ComponentStatus::Operational,
    }
}

/// Derives every component's state from `inputs`, differencing against `previous`.
pub(crate) fn evaluate(inputs: &Inputs<'_>, previous: &Counts) -> Evaluation {
    let now = inputs.now;
    let mut counts = Counts::default();
    let mut delta = |key: String, current: Tally| -> Tally {
        let d = current.since(previous.tallies.get(&key).copied());
        counts.tallies.insert(key, current);
        d
    };
    let thresholds = Thresholds::default();
    let mut evaluation = Evaluation::default();
    // Platform aggregates over every tenant.
    let mut ingestion = Observation::default();
    let mut delivery = Observation::default();
    let mut workers = Observation::default();

    for t in inputs.tenants {
        let tenant = &t.tenant;
        let no_windows = Vec::new();
        let windows = inputs.tenant_windows.get(tenant).unwrap_or(&no_windows);
        // Cumulative tallies: the tenant's rule runs, and each sync and delivery key.
        let mut rules = Tally::default();
        let mut syncs: BTreeMap<&str, Tally> = BTreeMap::new();
        let mut deliveries: BTreeMap<&str, Tally> = BTreeMap::new();
        let mut last_success: HashMap<&str, i64> = HashMap::new();
        for row in &t.series {
            let records = row.values.records.max(0) as u64;
            match row.family {
                RollupFamily::RuleRuns => match row.status.as_str() {
                    "succeeded" => rules.add(records, 0),
                    "failed" => rules.add(records, records),
                    _ => {}
                },
                RollupFamily::ConnectorSyncs => {
                    let failed = if row.status == "failed" { records } else { 0 };
                    syncs.entry(row.key.as_str()).or_default().add(records, failed);
                    if row.status == "succeeded"
                        && row.key != FOLDED_KEY
                        && let Some(last) = row.values.last_us
                    {
                        last_success.insert(row.key.as_str(), last);
                    }
                }
                RollupFamily::Deliveries => {
                    let failed = if row.status == "succeeded" { 0 } else { records };
                    deliveries.entry(row.key.as_str()).or_default().add(records, failed);
                }
            }
        }
        let rules = delta(tenant_key(tenant, "rules", ""), rules);
        let rules_observed = Observation { total: rules.total, failed: rules.failed, ..Observation::default() };
        let mut signals = vec![Signal {
            key: "rules".to_owned(),
            input: DetectorInput {
                total: rules.total,
                failed: rules.failed,
                stale: false,
                in_maintenance: in_maintenance("rules", windows, now),
            },
            detail: describe(&rules_observed, "rules"),
        }];
        let mut derived = Vec::new();
        for component in &t.components {
            match component.kind {
                ComponentKind::Connector => {
                    let policy = component.provider.as_ref().and_then(|p| t.provider_policies.get(p));
                    let (limits, _) = component.effective_thresholds(policy);
                    let last = last_success.get(component.id.as_str()).map(|&us| Timestamp::from_micros(us));
                    let freshness = limits.state(now, last);
                    let sync = delta(
                        tenant_key(tenant, "sync", &component.id),
                        syncs.get(component.id.as_str()).copied().unwrap_or_default(),
                    );
                    let observed = Observation { total: sync.total, failed: sync.failed, ..Observation::default() };
                    let status = worst(derive_status(&observed, &thresholds), freshness_status(freshness));
                    ingestion.total += sync.total;
                    ingestion.failed += sync.failed;
                    ingestion.parts += 1;
                    ingestion.parts_down += u64::from(freshness == FreshnessState::Red);
                    let input = DetectorInput {
                        total: sync.total,
                        failed: sync.failed,
                        stale: freshness == FreshnessState::Red,
                        in_maintenance: in_maintenance(&component.id, windows, now),
                    };
                    let detail = match (freshness, last) {
                        (FreshnessState::Red, Some(last)) => format!(
                            "no successful sync for {} h (red beyond {} h)",
                            now.micros_since(last) / 3_600_000_000,
                            limits.yellow_under_seconds / 3600
                        ),
                        _ => describe(&observed, "connectors"),
                    };
                    derived.push(Derived {
                        component: component.id.clone(),
                        status: maintained(&component.id, status, windows, now),
                        signal: Some(Signal { key: format!("connector:{}", component.id), input, detail }),
                    });
                }
                ComponentKind::SiemDestination | ComponentKind::WorkflowDestination => {
                    let attempts = delta(
                        tenant_key(tenant, "delivery", &component.id),
                        deliveries.get(component.id.as_str()).copied().unwrap_or_default(),
                    );
                    delivery.total += attempts.total;
                    delivery.failed += attempts.failed;
                    let observed =
                        Observation { total: attempts.total, failed: attempts.failed, ..Observation::default() };
                    derived.push(Derived {
                        component: component.id.clone(),
                        status: maintained(&component.id, derive_status(&observed, &thresholds), windows, now),
                        signal: None,
                    });
                }
                ComponentKind::IngestionQueue | ComponentKind::Service | ComponentKind::ScheduledJob => {}
            }
        }
        // Deliveries to destinations nobody registered still count on the platform.
        for (key, tally) in &deliveries {
            if !t.components.iter().any(|c| c.id == *key) {
                let attempts = delta(tenant_key(tenant, "delivery", key), *tally);
                delivery.total += attempts.total;
                delivery.failed += attempts.failed;
            }
        }
        for queue in &t.queues {
            let is_destination = t.components.iter().any(|c| {
                c.id == queue.component_id
                    && matches!(c.kind, ComponentKind::SiemDestination | ComponentKind::WorkflowDestination)
            });
            if is_destination {
                continue;
            }
            let processed = queue.processed_total.unwrap_or(0).max(0) as u64;
            let failed = queue.failed_total.unwrap_or(0).max(0) as u64;
            let items =
                delta(tenant_key(tenant, "queue", &queue.component_id), Tally { total: processed + failed, failed });
            ingestion.total += items.total;
            ingestion.failed += items.failed;
        }
        for job in &t.jobs {
            let status = job.state.evaluate(job.compiled_schedule().as_ref(), now).status;
            if status != JobStatus::Paused {
                workers.parts += 1;
                workers.parts_down += u64::from(status == JobStatus::Down);
            }
        }
        signals.extend(derived.iter().filter_map(|d| d.signal.clone()));
        evaluation.tenant_signals.insert(tenant.clone(), signals);
        evaluation.tenants.insert(tenant.clone(), derived);
    }

    for (_, beat) in &inputs.workers {
        workers.parts += 1;
        workers.parts_down += u64::from(*beat == HealthStatus::Fail);
    }
    let api = inputs.api.since(previous.api);
    let console = inputs.console.since(previous.console);
    counts.api = Some(inputs.api);
    counts.console = Some(inputs.console);
    let surface = |c: &SurfaceCounts| Observation {
        total: c.tally.total,
        failed: c.tally.failed,
        p95_ms: c.p95_ms(),
        ..Observation::default()
    };
    let slow = Thresholds { slow_p95_ms: Some(SLOW_API_P95_MS), ..thresholds };
    for (id, _) in PLATFORM_COMPONENTS {
        let (observed, limits) = match id {
            "api" => (surface(&api), slow),
            "console" => (surface(&console), slow),
            "ingestion" => (ingestion, thresholds),
            "delivery" => (delivery, thresholds),
            _ => (workers, thresholds),
        };
        let status = derive_status(&observed, &limits);
        let input = DetectorInput {
            total: observed.total,
            failed: observed.failed,
            // Parts down, or too slow, count as bad whatever the failure ratio.
            stale: status.severity() >= ComponentStatus::PartialOutage.severity(),
            in_maintenance: in_maintenance(id, inputs.platform_windows, now),
        };
        evaluation.platform.push(Derived {
            component: id.to_owned(),
            status: maintained(id, status, inputs.platform_windows, now),
            signal: Some(Signal {
                key: format!("component:{id}"),
                input,
                detail: describe(&observed, if id == "workers" { "workers and scheduled jobs" } else { "connectors" }),
            }),
        });
    }
    evaluation.counts = counts;
    evaluation
}

/// The worker's memory between passes.
#[derive(Debug, Default)]
pub struct Evaluator {
    counts: Counts,
    /// Per (scope key, signal): where the detector stands.
    detectors: HashMap<(String, String), DetectorState>,
    /// Open automatic incidents have been read back (once, at the first pass), so a
    /// restarted process resolves what an earlier one opened.
    primed: bool,
}

/// The title and first update of an automatic incident for `signal`.
fn auto_text(signal: &Signal) -> (String, String) {
    let title = match signal.key.split_once(':') {
        Some(("connector", id)) => format!("Connector {id} is failing or stale"),
        Some(("component", id)) => {
            let name = PLATFORM_COMPONENTS.iter().find(|(c, _)| *c == id).map_or(id, |(_, name)| name);
            format!("{name} degraded")
        }
        _ if signal.key == "rules" => "Elevated rule-run failures".to_owned(),
        _ => format!("Automatic incident: {}", signal.key),
    };
    (title, format!("Opened automatically: {}.", signal.detail))
}

fn signal_components(signal: &str) -> Vec<String> {
    match signal.split_once(':') {
        Some((_, id)) => vec![id.to_owned()],
        None => Vec::new(),
    }
}

impl Evaluator {
    /// Reads back the open automatic incidents of `scope` (first pass only).
    fn prime(&mut self, scope: &StatusScope, incidents: &[IncidentRecord]) {
        for incident in incidents {
            if let (Some(key), None) = (&incident.auto_key, incident.resolved_at) {
                let state = DetectorState { open: true, bad_streak: 0, good_streak: 0 };
                self.detectors.entry((scope.key().to_owned(), key.clone())).or_insert(state);
            }
        }
    }

    /// Runs the detector on one signal and opens or resolves its incident. Returns
    /// whether an incident was opened or resolved.
    async fn detect_signal(
        &mut self,
        state: &AppState,
        scope: &StatusScope,
        signal: &Signal,
        open: &[IncidentRecord],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let input = &signal.input;
        let entry = self.detectors.entry((scope.key().to_owned(), signal.key.clone())).or_default();
        let (next, action) = detect(*entry, input, &DetectorConfig::default());
        *entry = next;
        let tenant = match scope {
            StatusScope::Platform => "",
            StatusScope::Tenant(t) => t.as_str(),
        };
        match action {
            Some(DetectorAction::Open) => {
                let (title, message) = auto_text(signal);
                let impact = if input.stale { Impact::Major } else { Impact::Minor };
                let components = signal_components(&signal.key);
                let incident = new_incident(
                    IncidentInput { title, status: None, impact: Some(impact), components, message },
                    IncidentSource::Auto,
                    Some(signal.key.clone()),
                    now,
                );
                match state.store.create_incident(scope, &incident).await {
                    Ok(()) => {
                        if let StatusScope::Tenant(t) = scope {
                            let event = incident_event(t, "opened", &incident.id, &signal.key, &incident.title, now);
                            crate::ledger::record_own(&*state.store, t, vec![event]).await;
                        }
                        tracing::warn!(
                            tenant_id = tenant,
                            incident_id = incident.id.as_str(),
                            signal = signal.key.as_str(),
                            "incident opened"
                        );
                        Ok(true)
                    }
                    // Another replica opened it first.
                    Err(StoreError::AlreadyExists { .. }) => Ok(false),
                    Err(error) => Err(error),
                }
            }
            Some(DetectorAction::Resolve) => {
                let Some(incident) =
                    open.iter().find(|i| i.auto_key.as_deref() == Some(signal.key.as_str()) && i.resolved_at.is_none())
                else {
                    return Ok(false);
                };
                let update = NewIncidentUpdate {
                    status: IncidentStatus::Resolved,
                    impact: incident.impact,
                    message: "Resolved automatically: the signal has been healthy for several evaluations.".into(),
                    at: now,
                };
                state.store.update_incident(scope, &incident.id, &update).await?;
                if let StatusScope::Tenant(t) = scope {
                    let event = incident_event(t, "resolved", &incident.id, &signal.key, &incident.title, now);
                    crate::ledger::record_own(&*state.store, t, vec![event]).await;
                }
                tracing::info!(
                    tenant_id = tenant,
                    incident_id = incident.id.as_str(),
                    signal = signal.key.as_str(),
                    "incident resolved"
                );
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One pass; returns the state changes recorded plus the incidents opened or
    /// resolved.
    pub async fn pass(&mut self, state: &AppState) -> Result<usize, StoreError> {
        let store = &state.store;
        let now = Timestamp::now();
        let tenants = platform_metrics::load(store.as_ref()).await?;
        // Open incidents only: none resolved after now.
        let open_only = now.saturating_add_micros(1);
        let platform_windows = store.maintenance_windows(&StatusScope::Platform).await?;
        let platform_incidents = store.incidents(&StatusScope::Platform, open_only).await?;
        let mut tenant_windows = HashMap::new();
        let mut tenant_incidents = HashMap::new();
        for t in &tenants {
            let scope = StatusScope::Tenant(t.tenant.clone());
            tenant_windows.insert(t.tenant.clone(), store.maintenance_windows(&scope).await?);
            tenant_incidents.insert(t.tenant.clone(), store.incidents(&scope, open_only).await?);
        }
        let beat_now = Instant::now();
        let workers = state
            .workers
            .snapshot()
            .into_iter()
            .filter(|(name, _)| name != EVALUATOR)
            .map(|(name, beat)| (name, worker_status(&beat, beat_now).0))
            .collect();
        let inputs = Inputs {
            now,
            tenants: &tenants,
            api: state.requests.counts(Surface::Api),
            console: state.requests.counts(Surface::Console),
            workers,
            platform_windows: &platform_windows,
            tenant_windows: &tenant_windows,
        };
        let evaluation = evaluate(&inputs, &self.counts);
        if !self.primed {
            self.prime(&StatusScope::Platform, &platform_incidents);
            for (tenant, incidents) in &tenant_incidents {
                self.prime(&StatusScope::Tenant(tenant.clone()), incidents);
            }
            self.primed = true;
        }
        let mut changed = 0;
        let observed: Vec<_> = evaluation.platform.iter().map(|d| (d.component.clone(), d.status)).collect();
        changed += store.record_status(&StatusScope::Platform, &observed, now).await?;
        for d in &evaluation.platform {
            if let Some(signal) = &d.signal {
                let acted = self.detect_signal(state, &StatusScope::Platform, signal, &platform_incidents, now).await?;
                changed += usize::from(acted);
            }
        }
        for (tenant, derived) in &evaluation.tenants {
            let scope = StatusScope::Tenant(tenant.clone());
            let observed: Vec<_> = derived.iter().map(|d| (d.component.clone(), d.status)).collect();
            let recorded = store.record_status(&scope, &observed, now).await?;
            if recorded > 0 {
                record_status_events(state, tenant, now).await;
            }
            changed += recorded;
            let open = tenant_incidents.get(tenant).map(Vec::as_slice).unwrap_or_default();
            for signal in evaluation.tenant_signals.get(tenant).into_iter().flatten() {
                changed += usize::from(self.detect_signal(state, &scope, signal, open, now).await?);
            }
        }
        self.counts = evaluation.counts;
        Ok(changed)
    }
}

/// The timeline event of an automatic incident of a tenant opening or resolving.
fn incident_event(
    tenant: &TenantId,
    what: &str,
    incident_id: &str,
    signal: &str,
    title: &str,
    at: Timestamp,
) -> crate::ledger::OwnRecord {
    crate::ledger::OwnRecord::Timeline(custos_model::ledger::TimelineEvent {
        event_id: format!("custos-incident-{what}-{incident_id}"),
        ts: at,
        tenant_id: tenant.clone(),
        project_id: None,
        kind: format!("custos.incident.{what}"),
        actor: Some("custos status evaluator".into()),
        resource_type: Some("incident".into()),
        resource_id: Some(incident_id.to_owned()),
        trace_id: None,
        details: serde_json::json!({"signal": signal, "title": title}),
    })
}

/// Timeline events for the component states this pass recorded for `tenant` (those
/// stamped `now`): `custos.component.<state>`, e.g. a connector turning
/// `custos.component.major_outage` when its data goes stale.
async fn record_status_events(state: &AppState, tenant: &TenantId, now: Timestamp) {
    let scope = StatusScope::Tenant(tenant.clone());
    let changes = match state.store.status_changes(&scope, now).await {
        Ok(changes) => changes,
        Err(error) => {
            tracing::warn!(error = &error as &dyn std::error::Error, "reading recorded state changes failed");
            return;
        }
    };
    let mut previous: HashMap<&str, ComponentStatus> = HashMap::new();
    let mut events = Vec::new();
    for change in &changes {
        if change.at == now {
            let status = serde_json::to_value(change.status).ok();
            let status = status.as_ref().and_then(serde_json::Value::as_str).unwrap_or("unknown").to_owned();
            let before = previous.get(change.component.as_str()).and_then(|p| serde_json::to_value(p).ok());
            let (kind, id) = change.component.split_once(':').unwrap_or(("component", change.component.as_str()));
            events.push(crate::ledger::OwnRecord::Timeline(custos_model::ledger::TimelineEvent {
                event_id: format!("custos-status-{}-{}", change.component.replace(':', "-"), now.as_micros()),
                ts: now,
                tenant_id: tenant.clone(),
                project_id: None,
                kind: format!("custos.component.{status}"),
                actor: Some("custos status evaluator".into()),
                resource_type: Some(kind.to_owned()),
                resource_id: Some(id.to_owned()),
                trace_id: None,
                details: serde_json::json!({"component": change.component, "status": status, "previous": before}),
            }));
        }
        previous.insert(change.component.as_str(), change.status);
    }
    if !events.is_empty() {
        crate::ledger::record_own(&*state.store, tenant, events).await;
    }
}

/// Runs the evaluator every `period` until the process ends.
pub fn spawn_evaluator(state: AppState, period: Duration) -> tokio::task::JoinHandle<()> {
    let workers = state.workers.clone();
    let evaluator = std::sync::Arc::new(tokio::sync::Mutex::new(Evaluator::default()));
    workers.spawn_periodic(EVALUATOR, period, move || {
        let state = state.clone();
        let evaluator = evaluator.clone();
        async move {
            let passed = evaluator.lock().await.pass(&state).await;
            crate::routes::status_page::forget_platform_page(&state).await;
            match passed {
                Ok(changed) => changed,
                Err(error) => {
                    tracing::error!(error = &error as &dyn std::error::Error, "status evaluation failed");
                    0
                }
            }
        }
    })
}

#[cfg(test)]
mod tests;
