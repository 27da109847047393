//! `/admin/health`: connectors, destinations, ingestion queues and detection rules of
//! one tenant, at a glance.
//!
//! Every panel reads rollups kept at ingest, never raw records: the hourly buckets of
//! the last 24 hours ([`WINDOW_HOURS`]), each series' latest error, each queue's latest
//! snapshot, and the cumulative series (for "not run in 24 h"). The only per-row reads
//! are bounded index probes: each connector's last success, and each ingestion queue's
//! last [`QUEUE_HISTORY`] snapshots. The derivation from those inputs is pure
//! ([`derive`]) and tested without a store.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use custos_model::records::{Delivery, QueueDepth, QueueSnapshot};
use custos_model::{
    Component, ComponentKind, FreshnessState, FreshnessThresholds, Permission, TenantId, ThresholdSource, Timestamp,
};
use custos_store::rollup::{BUCKET_US, FOLDED_KEY, bucket_of};
use custos_store::{HourTotals, LastError, RecordQuery, RollupFamily, SeriesRow, SeriesValues, Stored};
use serde::{Deserialize, Serialize};

use super::{ConsoleUser, error_page, one_tenant, pick_tenant};
use crate::AppState;
use crate::error::ApiError;

/// The panels' window: the last this many hours (the current one included).
pub(crate) const WINDOW_HOURS: i64 = 24;
/// Snapshots read per ingestion queue for its processing-rate sparkline.
pub(crate) const QUEUE_HISTORY: usize = 49;
/// Rows in the slowest and noisiest rule lists.
const TOP: usize = 5;
/// Most silent rules listed (all are counted).
const SILENT_LISTED: usize = 50;
/// Rows in a drill-down list.
const DRILL_DOWN_ROWS: usize = 100;

/// The whole console page's data (also `/admin/health.json`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthView {
    pub tenant: String,
    pub generated_at: Timestamp,
    pub window_hours: i64,
    pub connectors: Vec<ConnectorRow>,
    pub siem_destinations: Vec<DestinationRow>,
    pub workflow_destinations: Vec<DestinationRow>,
    pub ingestion: Vec<QueueRow>,
    pub rules: RulePanels,
}

/// One hour of a sparkline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HourPoint {
    pub start: Timestamp,
    pub total: i64,
    pub failed: i64,
    pub partial: i64,
    /// Mean duration of the hour's observations, in milliseconds.
    pub mean_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorView {
    pub at: Timestamp,
    pub record_id: String,
    pub message: String,
}

impl From<&LastError> for ErrorView {
    fn from(e: &LastError) -> Self {
        ErrorView { at: Timestamp::from_micros(e.at_us), record_id: e.record_id.clone(), message: e.message.clone() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnectorRow {
    pub id: String,
    pub name: Option<String>,
    pub provider: Option<String>,
    pub last_success_at: Option<Timestamp>,
    pub freshness: FreshnessState,
    pub green_under_seconds: i64,
    pub yellow_under_seconds: i64,
    pub threshold_source: ThresholdSource,
    pub syncs: i64,
    pub failed: i64,
    /// Failed syncs over all syncs in the window; null without syncs.
    pub error_rate: Option<f64>,
    pub last_error: Option<ErrorView>,
    /// One point per hour of the window, oldest first.
    pub hours: Vec<HourPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueView {
    pub observed_at: Timestamp,
    pub depth: QueueDepth,
    pub oldest_item_age_ms: Option<i64>,
    pub processed_total: Option<i64>,
    pub failed_total: Option<i64>,
}

impl From<&QueueSnapshot> for QueueView {
    fn from(q: &QueueSnapshot) -> Self {
        QueueView {
            observed_at: q.observed_at,
            depth: q.depth,
            oldest_item_age_ms: q.oldest_item_age_ms,
            processed_total: q.processed_total,
            failed_total: q.failed_total,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DestinationRow {
    pub id: String,
    pub name: Option<String>,
    pub attempts: i64,
    pub succeeded: i64,
    pub retrying: i64,
    pub dead_lettered: i64,
    /// Succeeded attempts over all attempts in the window; null without attempts.
    pub success_rate: Option<f64>,
    /// The destination's delivery queue, from its latest snapshot (null when it
    /// reports none).
    pub queue: Option<QueueView>,
    pub last_delivery_at: Option<Timestamp>,
    pub last_error: Option<ErrorView>,
}

/// A processing rate between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RatePoint {
    pub at: Timestamp,
    /// Items processed per second since the previous snapshot.
    pub per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueRow {
    pub id: String,
    pub name: Option<String>,
    pub latest: Option<QueueView>,
    /// Oldest first; a counter reset (the total going down) leaves a gap.
    pub rates: Vec<RatePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RuleStat {
    pub rule_key: String,
    pub runs: i64,
    pub failed: i64,
    /// 95th percentile of run durations in the window, in milliseconds (estimated from
    /// the histogram).
    pub p95_ms: Option<f64>,
    pub findings_created: i64,
    pub findings_per_hour: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SilentRule {
    pub rule_key: String,
    pub last_run_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RulePanels {
    /// Rules that ran in the window.
    pub active: usize,
    pub slowest: Vec<RuleStat>,
    pub noisiest: Vec<RuleStat>,
    /// Every rule custos has seen that has not run in the window.
    pub silent_total: usize,
    /// The longest silent first, at most 50.
    pub silent: Vec<SilentRule>,
    /// Runs in the window of rules beyond the series cap, counted together.
    pub folded_runs: i64,
}

/// What [`derive`] needs, as read from the store.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthInputs {
    pub components: Vec<Component>,
    pub provider_policies: HashMap<String, FreshnessThresholds>,
    pub last_successes: HashMap<String, Timestamp>,
    pub sync_hours: Vec<HourTotals>,
    pub sync_errors: HashMap<String, LastError>,
    pub delivery_window: Vec<SeriesRow>,
    pub delivery_errors: HashMap<String, LastError>,
    pub queues: HashMap<String, QueueSnapshot>,
    /// Each ingestion queue's recent snapshots, any order.
    pub queue_history: HashMap<String, Vec<QueueSnapshot>>,
    pub rule_window: Vec<SeriesRow>,
    /// Every cumulative series (all families; rule runs are read).
    pub series: Vec<SeriesRow>,
}

/// The start of the window: the hour `WINDOW_HOURS - 1` before the current one.
pub(crate) fn window_start(now: Timestamp) -> Timestamp {
    Timestamp::from_micros(bucket_of(now.as_micros()) - (WINDOW_HOURS - 1) * BUCKET_US)
}

pub(crate) async fn load(state: &AppState, tenant: &TenantId, now: Timestamp) -> Result<HealthInputs, ApiError> {
    let store = &*state.store;
    let since = window_start(now);
    let components = store.components(tenant).await?;
    let connectors: Vec<String> =
        components.iter().filter(|c| c.kind == ComponentKind::Connector).map(|c| c.id.clone()).collect();
    let queue_ids: Vec<&str> =
        components.iter().filter(|c| c.kind == ComponentKind::IngestionQueue).map(|c| c.id.as_str()).collect();
    let queue_history = async {
        let mut history = HashMap::new();
        for queue in queue_ids {
            let query = RecordQuery {
                filters: vec![("component_id".into(), queue.to_owned())],
                limit: QUEUE_HISTORY,
                ..RecordQuery::default()
            };
            let page = store.queue_snapshots_page(tenant, &query).await?;
            history.insert(queue.to_owned(), page.items.into_iter().map(|s| s.record).collect());
        }
        Ok(history)
    };
    let last_successes = async {
        if connectors.is_empty() { Ok(Vec::new()) } else { store.last_successful_syncs(tenant, &connectors).await }
    };
    // The reads are independent: run together, they overlap on the store's connections.
    let (
        policies,
        last_successes,
        sync_hours,
        sync_errors,
        delivery_window,
        delivery_errors,
        queues,
        queue_history,
        rule_window,
        series,
    ) = tokio::try_join!(
        store.freshness_policies(tenant),
        last_successes,
        store.metric_hour_totals(tenant, RollupFamily::ConnectorSyncs, since),
        store.last_errors(tenant, RollupFamily::ConnectorSyncs),
        store.metric_window(tenant, RollupFamily::Deliveries, since),
        store.last_errors(tenant, RollupFamily::Deliveries),
        store.latest_queue_snapshots(tenant),
        queue_history,
        store.metric_window(tenant, RollupFamily::RuleRuns, since),
        store.metric_series(tenant),
    )?;
    Ok(HealthInputs {
        provider_policies: policies.into_iter().map(|p| (p.provider, p.thresholds)).collect(),
        last_successes: last_successes.into_iter().collect(),
        sync_hours,
        sync_errors: sync_errors.into_iter().collect(),
        delivery_window,
        delivery_errors: delivery_errors.into_iter().collect(),
        queues: queues.into_iter().map(|s| (s.record.component_id.clone(), s.record)).collect(),
        queue_history,
        rule_window,
        series,
        components,
    })
}

/// How bad a freshness state is, worst first, for ordering rows.
fn freshness_rank(state: FreshnessState) -> u8 {
    match state {
        FreshnessState::Red => 0,
        FreshnessState::Yellow => 1,
        FreshnessState::Unknown => 2,
        FreshnessState::Green => 3,
    }
}

/// Sums series per key (over statuses), with per-status record counts.
fn per_key<'a>(
    rows: impl IntoIterator<Item = &'a SeriesRow>,
) -> BTreeMap<&'a str, (SeriesValues, HashMap<&'a str, i64>)> {
    let mut out: BTreeMap<&str, (SeriesValues, HashMap<&str, i64>)> = BTreeMap::new();
    for row in rows {
        let entry = out.entry(row.key.as_str()).or_default();
        entry.0.merge(&row.values);
        *entry.1.entry(row.status.as_str()).or_default() += row.values.records;
    }
    out
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The panels, from what the store holds (pure).
pub(crate) fn derive(tenant: &TenantId, inputs: &HealthInputs, now: Timestamp) -> HealthView {
    let start = window_start(now).as_micros();
    let hours: Vec<i64> = (0..WINDOW_HOURS).map(|i| start + i * BUCKET_US).collect();

    // Connectors: each key's hours, summed over statuses, with the syncs per status.
    #[derive(Default)]
    struct Hour<'a> {
        records: i64,
        observations: i64,
        sum: f64,
        by_status: HashMap<&'a str, i64>,
    }
    let mut sync_hours: HashMap<(&str, i64), Hour> = HashMap::new();
    for h in &inputs.sync_hours {
        let hour = sync_hours.entry((h.key.as_str(), h.bucket_us)).or_default();
        hour.records += h.records;
        hour.observations += h.observations;
        hour.sum += h.sum;
        *hour.by_status.entry(h.status.as_str()).or_default() += h.records;
    }
    let mut connectors: Vec<ConnectorRow> = inputs
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::Connector)
        .map(|c| {
            let policy = c.provider.as_ref().and_then(|p| inputs.provider_policies.get(p));
            let (thresholds, source) = c.effective_thresholds(policy);
            let last = inputs.last_successes.get(&c.id).copied();
            let hours: Vec<HourPoint> = hours
                .iter()
                .map(|&hour| {
                    let h = sync_hours.get(&(c.id.as_str(), hour));
                    let outcome = |status: &str| h.and_then(|h| h.by_status.get(status)).copied().unwrap_or(0);
                    HourPoint {
                        start: Timestamp::from_micros(hour),
                        total: h.map_or(0, |h| h.records),
                        failed: outcome("failed"),
                        partial: outcome("partial"),
                        mean_ms: h.filter(|h| h.observations > 0).map(|h| h.sum / h.observations as f64 / 1000.0),
                    }
                })
                .collect();
            let syncs = hours.iter().map(|h| h.total).sum();
            let failed = hours.iter().map(|h| h.failed).sum();
            ConnectorRow {
                id: c.id.clone(),
                name: c.name.clone(),
                provider: c.provider.clone(),
                last_success_at: last,
                freshness: thresholds.state(now, last),
                green_under_seconds: thresholds.green_under_seconds,
                yellow_under_seconds: thresholds.yellow_under_seconds,
                threshold_source: source,
                syncs,
                failed,
                error_rate: ratio(failed, syncs),
                last_error: inputs.sync_errors.get(&c.id).map(ErrorView::from),
                hours,
            }
        })
        .collect();
    connectors.sort_by(|a, b| {
        (freshness_rank(a.freshness), std::cmp::Reverse(a.error_rate.map(|r| (r * 1e6) as i64)), &a.id).cmp(&(
            freshness_rank(b.freshness),
            std::cmp::Reverse(b.error_rate.map(|r| (r * 1e6) as i64)),
            &b.id,
        ))
    });

    // Destinations.
    let deliveries = per_key(&inputs.delivery_window);
    let all_time = per_key(inputs.series.iter().filter(|s| s.family == RollupFamily::Deliveries));
    let destination = |c: &Component| {
        let (attempts, by_status) =
            deliveries.get(c.id.as_str()).map_or((0, HashMap::new()), |(v, s)| (v.records, s.clone()));
        let count = |status: &str| by_status.get(status).copied().unwrap_or(0);
        DestinationRow {
            id: c.id.clone(),
            name: c.name.clone(),
            attempts,
            succeeded: count("succeeded"),
            retrying: count("retrying"),
            dead_lettered: count("dead_lettered"),
            success_rate: ratio(count("succeeded"), attempts),
            queue: inputs.queues.get(&c.id).map(QueueView::from),
            last_delivery_at: all_time.get(c.id.as_str()).and_then(|(v, _)| v.last_us).map(Timestamp::from_micros),
            last_error: inputs.delivery_errors.get(&c.id).map(ErrorView::from),
        }
    };
    let destinations = |kind: ComponentKind| -> Vec<DestinationRow> {
        let mut rows: Vec<DestinationRow> =
            inputs.components.iter().filter(|c| c.kind == kind).map(destination).collect();
        rows.sort_by(|a, b| {
            let dead = |r: &DestinationRow| r.queue.as_ref().map_or(0, |q| q.depth.dead_lettered);
            (std::cmp::Reverse(dead(a)), a.success_rate.map(|r| (r * 1e6) as i64), &a.id).cmp(&(
                std::cmp::Reverse(dead(b)),
                b.success_rate.map(|r| (r * 1e6) as i64),
                &b.id,
            ))
        });
        rows
    };

    // Ingestion queues.
    let ingestion = inputs
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::IngestionQueue)
        .map(|c| {
            let mut history: Vec<&QueueSnapshot> =
                inputs.queue_history.get(&c.id).map(|h| h.iter().collect()).unwrap_or_default();
            history.sort_by(|a, b| (a.observed_at, &a.id).cmp(&(b.observed_at, &b.id)));
            let rates = history
                .windows(2)
                .filter_map(|pair| {
                    let (before, after) = (pair[0], pair[1]);
                    let seconds = after.observed_at.micros_since(before.observed_at) as f64 / 1e6;
                    let delta = after.processed_total? - before.processed_total?;
                    (seconds > 0.0 && delta >= 0)
                        .then(|| RatePoint { at: after.observed_at, per_second: delta as f64 / seconds })
                })
                .collect();
            QueueRow {
                id: c.id.clone(),
                name: c.name.clone(),
                latest: inputs.queues.get(&c.id).map(QueueView::from),
                rates,
            }
        })
        .collect();

    // Rules.
    let window = per_key(inputs.rule_window.iter().filter(|s| s.key != FOLDED_KEY));
    let folded_runs = inputs.rule_window.iter().filter(|s| s.key == FOLDED_KEY).map(|s| s.values.records).sum::<i64>();
    let stats: Vec<RuleStat> = window
        .iter()
        .map(|(key, (values, by_status))| {
            let findings = values.totals[1] as i64;
            RuleStat {
                rule_key: (*key).to_owned(),
                runs: values.records,
                failed: by_status.get("failed").copied().unwrap_or(0),
                p95_ms: values.quantile(RollupFamily::RuleRuns, 0.95).map(|us| us / 1000.0),
                findings_created: findings,
                findings_per_hour: findings as f64 / WINDOW_HOURS as f64,
            }
        })
        .collect();
    let mut slowest: Vec<RuleStat> = stats.iter().filter(|s| s.p95_ms.is_some()).cloned().collect();
    slowest.sort_by(|a, b| {
        b.p95_ms.partial_cmp(&a.p95_ms).unwrap_or(std::cmp::Ordering::Equal).then(a.rule_key.cmp(&b.rule_key))
    });
    slowest.truncate(TOP);
    let mut noisiest: Vec<RuleStat> = stats.iter().filter(|s| s.findings_created > 0).cloned().collect();
    noisiest.sort_by(|a, b| b.findings_created.cmp(&a.findings_created).then(a.rule_key.cmp(&b.rule_key)));
    noisiest.truncate(TOP);
    let ever = per_key(inputs.series.iter().filter(|s| s.family == RollupFamily::RuleRuns && s.key != FOLDED_KEY));
    let mut silent: Vec<SilentRule> = ever
        .iter()
        .filter(|(key, (values, _))| {
            !window.contains_key(*key)
                && values.last_us.is_none_or(|last| last < now.as_micros() - WINDOW_HOURS * BUCKET_US)
        })
        .map(|(key, (values, _))| SilentRule {
            rule_key: (*key).to_owned(),
            last_run_at: values.last_us.map(Timestamp::from_micros),
        })
        .collect();
    silent.sort_by(|a, b| (a.last_run_at, &a.rule_key).cmp(&(b.last_run_at, &b.rule_key)));
    let silent_total = silent.len();
    silent.truncate(SILENT_LISTED);

    HealthView {
        tenant: tenant.as_str().to_owned(),
        generated_at: now,
        window_hours: WINDOW_HOURS,
        connectors,
        siem_destinations: destinations(ComponentKind::SiemDestination),
        workflow_destinations: destinations(ComponentKind::WorkflowDestination),
        ingestion,
        rules: RulePanels { active: window.len(), slowest, noisiest, silent_total, silent, folded_runs },
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TenantQuery {
    tenant: Option<String>,
}

async fn view(state: &AppState, tenant: &TenantId) -> Result<HealthView, ApiError> {
    let now = Timestamp::now();
    let inputs = load(state, tenant, now).await?;
    Ok(derive(tenant, &inputs, now))
}

/// `GET /admin/health`.
pub(crate) async fn page(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<TenantQuery>,
) -> Response {
    let result = async {
        Ok::<_, ApiError>(match pick_tenant(&state, &user, query.tenant.as_deref(), Permission::Admin).await? {
            Ok(tenant) => {
                crate::pages::page_response(crate::pages::console::health(&view(&state, &tenant).await?, &user))
            }
            Err(choices) => {
                crate::pages::page_response(crate::pages::console::pick_tenant("/admin/health", &choices, &user))
            }
        })
    }
    .await;
    result.unwrap_or_else(error_page)
}

/// `GET /admin/health.json`: the same data.
pub(crate) async fn json(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<TenantQuery>,
) -> Result<Response, ApiError> {
    let tenant = one_tenant(&state, &user, query.tenant.as_deref(), Permission::Admin).await?;
    Ok(Json(view(&state, &tenant).await?).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeliveriesQuery {
    tenant: Option<String>,
    destination: String,
    status: Option<String>,
}

/// `GET /admin/health/deliveries?destination=&status=`: a destination's latest
/// deliveries (dead-lettered ones by default), newest first.
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<DeliveriesQuery>,
) -> Response {
    let result: Result<Response, ApiError> = async {
        let tenant = one_tenant(&state, &user, query.tenant.as_deref(), Permission::Admin).await?;
        use custos_model::records::IngestRecord;
        Delivery::check_filter("destination_id", &query.destination).map_err(ApiError::invalid)?;
        let status = query.status.clone().unwrap_or_else(|| "dead_lettered".to_owned());
        Delivery::check_filter("status", &status).map_err(ApiError::invalid)?;
        let request = RecordQuery {
            filters: vec![("destination_id".into(), query.destination.clone()), ("status".into(), status.clone())],
            limit: DRILL_DOWN_ROWS,
            ..RecordQuery::default()
        };
        let page = state.store.deliveries_page(&tenant, &request).await?;
        Ok(crate::pages::page_response(crate::pages::console::deliveries(
            &tenant,
            &query.destination,
            &status,
            &page.items,
            &user,
        )))
    }
    .await;
    result.unwrap_or_else(error_page)
}

/// `GET /admin/health/queues/{queue}`: a queue's latest snapshots, newest first.
pub(crate) async fn queue(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(queue): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Response {
    let result: Result<Response, ApiError> = async {
        let tenant = one_tenant(&state, &user, query.tenant.as_deref(), Permission::Admin).await?;
        custos_model::ids::component_id("queue", &queue).map_err(ApiError::invalid)?;
        let request = RecordQuery {
            filters: vec![("component_id".into(), queue.clone())],
            limit: DRILL_DOWN_ROWS,
            ..RecordQuery::default()
        };
        let page: Vec<Stored<QueueSnapshot>> = state.store.queue_snapshots_page(&tenant, &request).await?.items;
        Ok(crate::pages::page_response(crate::pages::console::queue(&tenant, &queue, &page, &user)))
    }
    .await;
    result.unwrap_or_else(error_page)
}
