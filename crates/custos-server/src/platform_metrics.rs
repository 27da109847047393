//! The platform families of `/metrics`: what custos knows about each tenant's platform,
//! derived at scrape time from the store's rollups (see `custos_store::rollup`), so a
//! restarted process or another replica serves the same values.
//!
//! Every family carries `tenant`. Label values come from stored keys, registered
//! components and fixed vocabularies; the rollups' series cap bounds the keyed ones
//! and folds the excess into `other`.

use std::collections::{BTreeMap, HashMap};

use custos_model::records::QueueDepth;
use custos_model::{Component, ComponentKind, FreshnessState, FreshnessThresholds, TenantId, Timestamp};
use custos_store::rollup::FOLDED_KEY;
use custos_store::{RollupFamily, SeriesRow, SeriesValues, Store, StoreResult};
use custos_telemetry::{ConstFamilies, ConstFamily, FamilyKind, SampleValue};

/// The exposed value of a stored key: the overflow series is `other`.
fn key_label(key: &str) -> String {
    if key == FOLDED_KEY { "other".to_owned() } else { key.to_owned() }
}

type Labels = Vec<(&'static str, String)>;

/// A family under construction: samples with equal labels merge (sum, or max for
/// timestamps), so aggregating destinations by kind, or a real key named `other`
/// meeting the overflow series, still yields one sample per label set.
struct Builder {
    family: ConstFamily,
    samples: BTreeMap<Labels, SampleValue>,
    merge_max: bool,
}

impl Builder {
    fn new(name: &'static str, help: &'static str, kind: FamilyKind) -> Self {
        Self { family: ConstFamily::new(name, help, kind), samples: BTreeMap::new(), merge_max: false }
    }

    /// A gauge whose merged value is the greatest (a latest time).
    fn latest(name: &'static str, help: &'static str) -> Self {
        Self { merge_max: true, ..Self::new(name, help, FamilyKind::Gauge) }
    }

    fn add(&mut self, labels: Labels, value: SampleValue) {
        let merge_max = self.merge_max;
        match self.samples.get_mut(&labels) {
            None => {
                self.samples.insert(labels, value);
            }
            Some(existing) => merge(existing, value, merge_max),
        }
    }

    fn value(&mut self, labels: Labels, value: f64) {
        let value = match self.family.kind {
            FamilyKind::Counter => SampleValue::Counter(value),
            _ => SampleValue::Gauge(value),
        };
        self.add(labels, value);
    }

    fn histogram(&mut self, labels: Labels, family: RollupFamily, values: &SeriesValues) {
        let scale = family.unit_scale();
        let mut buckets: Vec<(f64, u64)> = family
            .bounds()
            .iter()
            .zip(values.buckets)
            .map(|(&bound, count)| (bound as f64 / scale, count.max(0) as u64))
            .collect();
        let finite: u64 = buckets.iter().map(|(_, c)| c).sum();
        let count = values.observations.max(0) as u64;
        buckets.push((f64::INFINITY, count.saturating_sub(finite)));
        self.add(labels, SampleValue::Histogram { sum: values.sum / scale, count, buckets });
    }

    fn build(mut self) -> ConstFamily {
        for (labels, value) in self.samples {
            self.family.push(labels, value);
        }
        self.family
    }
}

fn merge(into: &mut SampleValue, other: SampleValue, max: bool) {
    match (into, other) {
        (SampleValue::Counter(a), SampleValue::Counter(b)) => *a += b,
        (SampleValue::Gauge(a), SampleValue::Gauge(b)) => *a = if max { a.max(b) } else { *a + b },
        (SampleValue::Histogram { sum, count, buckets }, SampleValue::Histogram { sum: s, count: c, buckets: b }) => {
            *sum += s;
            *count += c;
            for (into, (_, add)) in buckets.iter_mut().zip(b) {
                into.1 += add;
            }
        }
        _ => {}
    }
}

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

/// What a destination component's kind is called in `destination_kind`.
fn destination_kind(kind: Option<ComponentKind>) -> &'static str {
    match kind {
        Some(ComponentKind::SiemDestination) => "siem",
        Some(ComponentKind::WorkflowDestination) => "workflow",
        _ => "other",
    }
}

struct Families {
    sync_last_success: Builder,
    sync_age: Builder,
    sync_duration: Builder,
    sync_events: Builder,
    freshness: Builder,
    queue_depth: Builder,
    queue_oldest: Builder,
    queue_processed: Builder,
    queue_failed: Builder,
    queue_observed: Builder,
    delivery_attempts: Builder,
    delivery_retry_depth: Builder,
    siem_queue_depth: Builder,
    workflow_queue_depth: Builder,
    delivery_queue_oldest: Builder,
    rule_duration: Builder,
    rule_created: Builder,
    rule_reopened: Builder,
    rule_resolved: Builder,
    rule_events: Builder,
    rule_last_run: Builder,
    series: Builder,
    dropped: Builder,
    job_last_success: Builder,
    job_status: Builder,
    job_pings: Builder,
    job_duration: Builder,
}

impl Families {
    fn new() -> Self {
        use FamilyKind::{Counter, Gauge, Histogram};
        Self {
            sync_last_success: Builder::latest(
                "connector_last_success_timestamp_seconds",
                "When the connector's latest successful sync finished (Unix time)",
            ),
            sync_age: Builder::new(
                "connector_last_sync_seconds",
                "Seconds since the connector's latest successful sync finished, at scrape time",
                Gauge,
            ),
            sync_duration: Builder::new(
                "connector_sync_duration_seconds",
                "Connector sync durations, by status",
                Histogram,
            ),
            sync_events: Builder::new("connector_events_ingested", "Events ingested by connector syncs", Counter),
            freshness: Builder::new(
                "connector_freshness_state",
                "1 for the registered connector's current freshness state (green, yellow, red, unknown), 0 for the others",
                Gauge,
            ),
            queue_depth: Builder::new(
                "ingestion_queue_depth",
                "Items in the ingestion queue by status, from its latest snapshot",
                Gauge,
            ),
            queue_oldest: Builder::new(
                "ingestion_queue_oldest_item_age_seconds",
                "Age of the oldest item in the ingestion queue, from its latest snapshot",
                Gauge,
            ),
            queue_processed: Builder::new(
                "ingestion_queue_processed",
                "Items the ingestion queue has processed, as its latest snapshot reports",
                Counter,
            ),
            queue_failed: Builder::new(
                "ingestion_queue_failed",
                "Items the ingestion queue has failed, as its latest snapshot reports",
                Counter,
            ),
            queue_observed: Builder::latest(
                "queue_snapshot_timestamp_seconds",
                "When the queue's latest snapshot was observed (Unix time)",
            ),
            delivery_attempts: Builder::new(
                "delivery_attempts",
                "Delivery attempts reported, by destination kind and status",
                Counter,
            ),
            delivery_retry_depth: Builder::new(
                "delivery_retry_depth",
                "Attempt number of each reported delivery attempt (1 is the first try), by destination kind and status",
                Histogram,
            ),
            siem_queue_depth: Builder::new(
                "siem_delivery_queue_depth",
                "Items in a SIEM destination's delivery queue by status (dead_lettered included), from its latest snapshot",
                Gauge,
            ),
            workflow_queue_depth: Builder::new(
                "workflow_delivery_queue_depth",
                "Items in a workflow destination's delivery queue by status (dead_lettered included), from its latest snapshot",
                Gauge,
            ),
            delivery_queue_oldest: Builder::new(
                "delivery_queue_oldest_item_age_seconds",
                "Age of the oldest item in a destination's delivery queue, from its latest snapshot",
                Gauge,
            ),
            rule_duration: Builder::new(
                "rule_execution_duration_seconds",
                "Rule execution durations, by rule and status",
                Histogram,
            ),
            rule_created: Builder::new("rule_findings_created", "Findings created by the rule", Counter),
            rule_reopened: Builder::new("rule_findings_reopened", "Findings reopened by the rule", Counter),
            rule_resolved: Builder::new("rule_findings_resolved", "Findings resolved by the rule", Counter),
            rule_events: Builder::new("rule_events_evaluated", "Events the rule evaluated", Counter),
            rule_last_run: Builder::latest(
                "rule_last_run_timestamp_seconds",
                "When the rule's latest reported run started (Unix time)",
            ),
            series: Builder::new(
                "metrics_series",
                "Series the tenant holds in each rollup family (bounded by the series cap, plus one other series per status)",
                Gauge,
            ),
            dropped: Builder::new(
                "metrics_series_dropped",
                "Records whose label set was new while the family was at its series cap, counted into the other series instead",
                Counter,
            ),
            job_last_success: Builder::latest(
                "scheduled_job_last_success_timestamp_seconds",
                "When the scheduled job's latest success ping arrived (Unix time)",
            ),
            job_status: Builder::new(
                "scheduled_job_status",
                "1 for the scheduled job's current status (new, up, late, down, paused), 0 for the others",
                Gauge,
            ),
            job_pings: Builder::new("scheduled_job_pings", "Pings the scheduled job has sent", Counter),
            job_duration: Builder::new(
                "scheduled_job_last_duration_seconds",
                "Duration of the scheduled job's latest finished run, given or measured from its start ping",
                Gauge,
            ),
        }
    }

    fn build(self) -> Vec<ConstFamily> {
        [
            self.sync_last_success,
            self.sync_age,
            self.sync_duration,
            self.sync_events,
            self.freshness,
            self.queue_depth,
            self.queue_oldest,
            self.queue_processed,
            self.queue_failed,
            self.queue_observed,
            self.delivery_attempts,
            self.delivery_retry_depth,
            self.siem_queue_depth,
            self.workflow_queue_depth,
            self.delivery_queue_oldest,
            self.rule_duration,
            self.rule_created,
            self.rule_reopened,
            self.rule_resolved,
            self.rule_events,
            self.rule_last_run,
            self.series,
            self.dropped,
            self.job_last_success,
            self.job_status,
            self.job_pings,
            self.job_duration,
        ]
        .into_iter()
        .map(Builder::build)
        .collect()
    }
}

/// What the store holds for one tenant.
pub(crate) struct TenantData {
    pub tenant: TenantId,
    pub components: Vec<Component>,
    pub provider_policies: HashMap<String, FreshnessThresholds>,
    pub series: Vec<SeriesRow>,
    pub queues: Vec<custos_model::records::QueueSnapshot>,
    pub jobs: Vec<custos_store::JobRecord>,
}

pub(crate) async fn load(store: &dyn Store) -> StoreResult<Vec<TenantData>> {
    let mut out = Vec::new();
    for tenant in store.tenants().await? {
        let id = tenant.id;
        let provider_policies =
            store.freshness_policies(&id).await?.into_iter().map(|p| (p.provider, p.thresholds)).collect();
        out.push(TenantData {
            components: store.components(&id).await?,
            provider_policies,
            series: store.metric_series(&id).await?,
            queues: store.latest_queue_snapshots(&id).await?.into_iter().map(|s| s.record).collect(),
            jobs: store.jobs(&id).await?,
            tenant: id,
        });
    }
    Ok(out)
}

/// Derives every platform family from the loaded data (pure: tested without a store).
pub(crate) fn derive(data: &[TenantData], now: Timestamp) -> ConstFamilies {
    let mut f = Families::new();
    for t in data {
        let tenant = t.tenant.as_str().to_owned();
        for job in &t.jobs {
            let labels = || vec![("tenant", tenant.clone()), ("job", job.component.id.clone())];
            let status = job.state.evaluate(job.compiled_schedule().as_ref(), now).status;
            for candidate in custos_model::jobs::JobStatus::ALL {
                let mut with_status = labels();
                with_status.push(("status", candidate.as_str().to_owned()));
                f.job_status.value(with_status, if candidate == status { 1.0 } else { 0.0 });
            }
            if let Some(at) = job.state.last_success_at {
                f.job_last_success.value(labels(), seconds(at.as_micros()));
            }
            f.job_pings.value(labels(), job.state.pings_total as f64);
            if let Some(ms) = job.state.last_duration_ms {
                f.job_duration.value(labels(), ms as f64 / 1000.0);
            }
        }
        let by_id: HashMap<&str, &Component> = t.components.iter().map(|c| (c.id.as_str(), c)).collect();
        let provider = |id: &str| by_id.get(id).and_then(|c| c.provider.clone()).unwrap_or_default();
        let mut last_success: HashMap<&str, i64> = HashMap::new();
        let mut series_per_family: BTreeMap<RollupFamily, (usize, i64)> =
            RollupFamily::ALL.into_iter().map(|family| (family, (0, 0))).collect();

        for row in &t.series {
            let key = key_label(&row.key);
            let status = row.status.clone();
            let v = &row.values;
            let counts = series_per_family.entry(row.family).or_default();
            if row.key == FOLDED_KEY {
                counts.1 += v.records;
            } else {
                counts.0 += 1;
            }
            match row.family {
                RollupFamily::RuleRuns => {
                    let rule = || vec![("tenant", tenant.clone()), ("rule_key", key.clone())];
                    let mut with_status = rule();
                    with_status.push(("status", status));
                    f.rule_duration.histogram(with_status, row.family, v);
                    f.rule_events.value(rule(), v.totals[0]);
                    f.rule_created.value(rule(), v.totals[1]);
                    f.rule_reopened.value(rule(), v.totals[2]);
                    f.rule_resolved.value(rule(), v.totals[3]);
                    if let Some(last) = v.last_us {
                        f.rule_last_run.value(rule(), seconds(last));
                    }
                }
                RollupFamily::ConnectorSyncs => {
                    let connector = || {
                        vec![
                            ("tenant", tenant.clone()),
                            ("provider", provider(&row.key)),
                            ("integration_id", key.clone()),
                        ]
                    };
                    let mut with_status = connector();
                    with_status.push(("status", status.clone()));
                    f.sync_duration.histogram(with_status, row.family, v);
                    f.sync_events.value(connector(), v.totals[0]);
                    if status == "succeeded"
                        && let Some(last) = v.last_us
                    {
                        f.sync_last_success.value(connector(), seconds(last));
                        if row.key != FOLDED_KEY {
                            last_success.insert(row.key.as_str(), last);
                        }
                    }
                }
                RollupFamily::Deliveries => {
                    let kind = destination_kind(by_id.get(row.key.as_str()).map(|c| c.kind));
                    let labels =
                        vec![("tenant", tenant.clone()), ("destination_kind", kind.to_owned()), ("status", status)];
                    f.delivery_attempts.value(labels.clone(), v.records as f64);
                    f.delivery_retry_depth.histogram(labels, row.family, v);
                }
            }
        }
        for (&family, &(series, dropped)) in &series_per_family {
            let labels = vec![("tenant", tenant.clone()), ("family", family.as_str().to_owned())];
            f.series.value(labels.clone(), series as f64);
            f.dropped.value(labels, dropped as f64);
        }
        for (id, &last) in &last_success {
            let labels =
                vec![("tenant", tenant.clone()), ("provider", provider(id)), ("integration_id", (*id).to_owned())];
            f.sync_age.value(labels, seconds(now.micros_since(Timestamp::from_micros(last))).max(0.0));
        }

        for component in t.components.iter().filter(|c| c.kind == ComponentKind::Connector) {
            let policy = component.provider.as_ref().and_then(|p| t.provider_policies.get(p));
            let (thresholds, _) = component.effective_thresholds(policy);
            let current =
                thresholds.state(now, last_success.get(component.id.as_str()).map(|&us| Timestamp::from_micros(us)));
            for state in [FreshnessState::Green, FreshnessState::Yellow, FreshnessState::Red, FreshnessState::Unknown] {
                let labels = vec![
                    ("tenant", tenant.clone()),
                    ("provider", component.provider.clone().unwrap_or_default()),
                    ("integration_id", component.id.clone()),
                    ("state", freshness_name(state).to_owned()),
                ];
                f.freshness.value(labels, if state == current { 1.0 } else { 0.0 });
            }
        }

        for q in &t.queues {
            let kind = by_id.get(q.component_id.as_str()).map(|c| c.kind);
            let oldest = q.oldest_item_age_ms.map(|ms| ms as f64 / 1000.0);
            let observed = seconds(q.observed_at.as_micros());
            f.queue_observed.value(vec![("tenant", tenant.clone()), ("queue", q.component_id.clone())], observed);
            match kind {
                Some(ComponentKind::SiemDestination | ComponentKind::WorkflowDestination) => {
                    let builder = if kind == Some(ComponentKind::SiemDestination) {
                        &mut f.siem_queue_depth
                    } else {
                        &mut f.workflow_queue_depth
                    };
                    for (status, depth) in depths(&q.depth) {
                        let labels = vec![
                            ("tenant", tenant.clone()),
                            ("destination_id", q.component_id.clone()),
                            ("status", status.to_owned()),
                        ];
                        builder.value(labels, depth as f64);
                    }
                    if let Some(oldest) = oldest {
                        let labels = vec![
                            ("tenant", tenant.clone()),
                            ("destination_kind", destination_kind(kind).to_owned()),
                            ("destination_id", q.component_id.clone()),
                        ];
                        f.delivery_queue_oldest.value(labels, oldest);
                    }
                }
                _ => {
                    let queue = || vec![("tenant", tenant.clone()), ("queue", q.component_id.clone())];
                    for (status, depth) in depths(&q.depth) {
                        let mut labels = queue();
                        labels.push(("status", status.to_owned()));
                        f.queue_depth.value(labels, depth as f64);
                    }
                    if let Some(oldest) = oldest {
                        f.queue_oldest.value(queue(), oldest);
                    }
                    if let Some(processed) = q.processed_total {
                        f.queue_processed.value(queue(), processed as f64);
                    }
                    if let Some(failed) = q.failed_total {
                        f.queue_failed.value(queue(), failed as f64);
                    }
                }
            }
        }
    }
    ConstFamilies(f.build())
}

/// The store's connection pool, for `custos_db_pool_*` (golden signals, no tenant).
pub(crate) fn pool_families(stats: custos_store::PoolStats, backend: &str) -> Vec<ConstFamily> {
    let labels = |state: &str| vec![("backend", backend.to_owned()), ("state", state.to_owned())];
    let mut connections = ConstFamily::new(
        "db_pool_connections",
        "Database connections open, by state (idle, in_use)",
        FamilyKind::Gauge,
    );
    connections.push(labels("idle"), SampleValue::Gauge(f64::from(stats.idle)));
    connections.push(labels("in_use"), SampleValue::Gauge(f64::from(stats.open.saturating_sub(stats.idle))));
    let mut max =
        ConstFamily::new("db_pool_max_connections", "The most connections the pool will open", FamilyKind::Gauge);
    max.push(vec![("backend", backend.to_owned())], SampleValue::Gauge(f64::from(stats.max)));
    vec![connections, max]
}

fn depths(depth: &QueueDepth) -> [(&'static str, i64); 4] {
    [
        ("pending", depth.pending),
        ("in_flight", depth.in_flight),
        ("retrying", depth.retrying),
        ("dead_lettered", depth.dead_lettered),
    ]
}

fn freshness_name(state: FreshnessState) -> &'static str {
    match state {
        FreshnessState::Green => "green",
        FreshnessState::Yellow => "yellow",
        FreshnessState::Red => "red",
        FreshnessState::Unknown => "unknown",
    }
}
