use custos_model::component::Component;
use custos_model::status::MaintenanceInput;
use custos_store::rollup::{SeriesRow, SeriesValues};

use super::*;

const HOUR_US: i64 = 3_600_000_000;

fn now() -> Timestamp {
    Timestamp::parse("now", "2026-11-20T12:00:00Z").unwrap()
}

fn component(id: &str, kind: ComponentKind) -> Component {
    Component {
        id: id.into(),
        kind,
        name: None,
        provider: (kind == ComponentKind::Connector).then(|| "okta".to_owned()),
        freshness: None,
        schedule: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn series(family: RollupFamily, key: &str, status: &str, records: i64, last: Option<Timestamp>) -> SeriesRow {
    SeriesRow {
        family,
        key: key.into(),
        status: status.into(),
        values: SeriesValues { records, last_us: last.map(Timestamp::as_micros), ..SeriesValues::default() },
    }
}

fn tenant(series: Vec<SeriesRow>) -> TenantData {
    TenantData {
        tenant: TenantId::parse("acme").unwrap(),
        components: vec![
            component("okta-prod", ComponentKind::Connector),
            component("splunk", ComponentKind::SiemDestination),
        ],
        provider_policies: HashMap::new(),
        series,
        queues: Vec::new(),
        jobs: Vec::new(),
    }
}

struct World {
    tenants: Vec<TenantData>,
    platform_windows: Vec<MaintenanceRecord>,
    tenant_windows: HashMap<TenantId, Vec<MaintenanceRecord>>,
    api: SurfaceCounts,
    workers: Vec<(String, HealthStatus)>,
}

impl World {
    fn new(tenants: Vec<TenantData>) -> Self {
        World {
            tenants,
            platform_windows: Vec::new(),
            tenant_windows: HashMap::new(),
            api: SurfaceCounts::default(),
            workers: Vec::new(),
        }
    }

    fn evaluate(&self, previous: &Counts) -> Evaluation {
        evaluate(
            &Inputs {
                now: now(),
                tenants: &self.tenants,
                api: self.api,
                console: SurfaceCounts::default(),
                workers: self.workers.clone(),
                platform_windows: &self.platform_windows,
                tenant_windows: &self.tenant_windows,
            },
            previous,
        )
    }
}

fn status_of(derived: &[Derived], component: &str) -> ComponentStatus {
    derived.iter().find(|d| d.component == component).unwrap().status
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

#[test]
fn the_first_pass_judges_no_ratio_but_freshness_at_once() {
    let recent = Some(now().saturating_add_micros(-HOUR_US / 2));
    let world = World::new(vec![tenant(vec![
        series(RollupFamily::ConnectorSyncs, "okta-prod", "succeeded", 10, recent),
        series(RollupFamily::ConnectorSyncs, "okta-prod", "failed", 90, recent),
    ])]);
    let first = world.evaluate(&Counts::default());
    // 90 % failures ever, but nothing to difference against yet.
    assert_eq!(status_of(&first.tenants[&acme()], "okta-prod"), ComponentStatus::Operational);

    let stale = Some(now().saturating_add_micros(-7 * HOUR_US));
    let world =
        World::new(vec![tenant(vec![series(RollupFamily::ConnectorSyncs, "okta-prod", "succeeded", 1, stale)])]);
    let evaluation = world.evaluate(&Counts::default());
    assert_eq!(status_of(&evaluation.tenants[&acme()], "okta-prod"), ComponentStatus::MajorOutage);
    // One connector of one is red: the platform's ingestion is down too.
    assert_eq!(status_of(&evaluation.platform, "ingestion"), ComponentStatus::MajorOutage);
    let signal = evaluation.tenant_signals[&acme()].iter().find(|s| s.key == "connector:okta-prod").unwrap();
    assert!(signal.input.stale);
    assert_eq!(signal.detail, "no successful sync for 7 h (red beyond 6 h)");
}

#[test]
fn failure_ratios_come_from_what_changed_between_passes() {
    let recent = Some(now().saturating_add_micros(-60_000_000));
    let before = World::new(vec![tenant(vec![
        series(RollupFamily::ConnectorSyncs, "okta-prod", "succeeded", 100, recent),
        series(RollupFamily::Deliveries, "splunk", "succeeded", 100, recent),
        series(RollupFamily::RuleRuns, "r1", "succeeded", 100, recent),
    ])]);
    let first = before.evaluate(&Counts::default());
    let after = World::new(vec![tenant(vec![
        // 20 more syncs, 3 failed: 15 % → partial outage.
        series(RollupFamily::ConnectorSyncs, "okta-prod", "succeeded", 117, recent),
        series(RollupFamily::ConnectorSyncs, "okta-prod", "failed", 3, recent),
        // 10 more attempts, 6 dead-lettered: 60 % → major outage.
        series(RollupFamily::Deliveries, "splunk", "succeeded", 104, recent),
        series(RollupFamily::Deliveries, "splunk", "dead_lettered", 6, recent),
        series(RollupFamily::RuleRuns, "r1", "succeeded", 110, recent),
        series(RollupFamily::RuleRuns, "r1", "failed", 10, recent),
        // Skipped runs are neither successes nor failures.
        series(RollupFamily::RuleRuns, "r1", "skipped", 1000, recent),
    ])]);
    let second = after.evaluate(&first.counts);
    let acme_derived = &second.tenants[&acme()];
    assert_eq!(status_of(acme_derived, "okta-prod"), ComponentStatus::PartialOutage);
    assert_eq!(status_of(acme_derived, "splunk"), ComponentStatus::MajorOutage);
    assert_eq!(status_of(&second.platform, "delivery"), ComponentStatus::MajorOutage);
    assert_eq!(status_of(&second.platform, "ingestion"), ComponentStatus::PartialOutage);
    let rules = &second.tenant_signals[&acme()][0];
    assert_eq!((rules.key.as_str(), rules.input.total, rules.input.failed), ("rules", 20, 10));
    assert_eq!(rules.detail, "10 of 20 attempts failed (50 %)");

    // A third pass with nothing new: nothing judged, all operational again.
    let third = after.evaluate(&second.counts);
    assert_eq!(status_of(&third.tenants[&acme()], "splunk"), ComponentStatus::Operational);
}

#[test]
fn a_counter_that_went_backwards_counts_from_zero() {
    assert_eq!(
        Tally { total: 5, failed: 2 }.since(Some(Tally { total: 50, failed: 1 })),
        Tally { total: 5, failed: 2 }
    );
    assert_eq!(
        Tally { total: 50, failed: 2 }.since(Some(Tally { total: 40, failed: 1 })),
        Tally { total: 10, failed: 1 }
    );
    assert_eq!(Tally { total: 50, failed: 2 }.since(None), Tally::default());
}

#[test]
fn maintenance_shows_and_quiets_the_detector() {
    let stale = Some(now().saturating_add_micros(-7 * HOUR_US));
    let mut world =
        World::new(vec![tenant(vec![series(RollupFamily::ConnectorSyncs, "okta-prod", "succeeded", 1, stale)])]);
    let window = MaintenanceInput {
        title: "Okta upgrade".into(),
        components: vec!["okta-prod".into()],
        starts_at: Some(now().saturating_add_micros(-HOUR_US)),
        ends_at: Some(now().saturating_add_micros(HOUR_US)),
        cron: None,
        timezone: None,
        duration_minutes: None,
    }
    .validate(&["okta-prod"])
    .unwrap();
    world.tenant_windows.insert(acme(), vec![MaintenanceRecord { id: "mw_1".into(), window, created_at: now() }]);
    let evaluation = world.evaluate(&Counts::default());
    assert_eq!(status_of(&evaluation.tenants[&acme()], "okta-prod"), ComponentStatus::UnderMaintenance);
    let signal = evaluation.tenant_signals[&acme()].iter().find(|s| s.key == "connector:okta-prod").unwrap();
    assert!(signal.input.in_maintenance);
}

#[test]
fn open_manual_incidents_set_a_floor_and_automatic_ones_do_not() {
    let incident = |source, resolved| {
        let mut incident = new_incident(
            IncidentInput {
                title: "Deliveries slow".into(),
                status: None,
                impact: Some(Impact::Major),
                components: vec!["delivery".into()],
                message: "Looking".into(),
            },
            source,
            None,
            now(),
        );
        incident.resolved_at = resolved;
        incident
    };
    let floor = |incidents: &[IncidentRecord]| overlay("delivery", ComponentStatus::Operational, &[], incidents, now());
    assert_eq!(floor(&[incident(IncidentSource::Manual, None)]), ComponentStatus::PartialOutage);
    assert_eq!(floor(&[incident(IncidentSource::Auto, None)]), ComponentStatus::Operational);
    assert_eq!(floor(&[incident(IncidentSource::Manual, Some(now()))]), ComponentStatus::Operational);
    let worse =
        overlay("delivery", ComponentStatus::MajorOutage, &[], &[incident(IncidentSource::Manual, None)], now());
    assert_eq!(worse, ComponentStatus::MajorOutage, "a floor never improves a state");
}

#[test]
fn the_api_is_judged_on_server_errors_and_its_p95() {
    let world = World::new(Vec::new());
    let first = world.evaluate(&Counts::default());
    let mut slow = World::new(Vec::new());
    // 100 requests, 3 server errors, 10 above 5 s: p95 beyond every bound.
    let mut buckets = [0; LATENCY_BOUNDS_MS.len()];
    buckets[2] = 90;
    slow.api = SurfaceCounts { tally: Tally { total: 100, failed: 3 }, buckets };
    let second = slow.evaluate(&first.counts);
    assert_eq!(status_of(&second.platform, "api"), ComponentStatus::DegradedPerformance);
    let mut p = SurfaceCounts { tally: Tally { total: 100, failed: 0 }, buckets };
    assert_eq!(p.p95_ms(), Some(f64::INFINITY));
    p.buckets[3] = 10;
    assert_eq!(p.p95_ms(), Some(50.0));
}

#[test]
fn dead_workers_and_down_jobs_are_parts_of_the_workers_component() {
    let mut world = World::new(Vec::new());
    world.workers = vec![("job-monitor".into(), HealthStatus::Fail), ("object-store-probe".into(), HealthStatus::Pass)];
    let evaluation = world.evaluate(&Counts::default());
    // One part of two down: at least a partial outage.
    assert_eq!(status_of(&evaluation.platform, "workers"), ComponentStatus::PartialOutage);
    let signal = evaluation.platform.iter().find(|d| d.component == "workers").unwrap().signal.clone().unwrap();
    assert!(signal.input.stale);
    assert_eq!(signal.detail, "1 of 2 workers and scheduled jobs down");
}

#[test]
fn routes_are_split_into_console_and_api() {
    assert_eq!(Surface::of_route("/status.json"), Surface::Console);
    assert_eq!(Surface::of_route("/admin/health"), Surface::Console);
    assert_eq!(Surface::of_route("/v1/tenants/{tenant}/rule-runs"), Surface::Api);
}

#[test]
fn automatic_incidents_are_titled_by_signal() {
    let signal = |key: &str| Signal {
        key: key.into(),
        input: DetectorInput { total: 40, failed: 20, stale: false, in_maintenance: false },
        detail: "20 of 40 attempts failed (50 %)".into(),
    };
    assert_eq!(auto_text(&signal("rules")).0, "Elevated rule-run failures");
    assert_eq!(auto_text(&signal("connector:okta-prod")).0, "Connector okta-prod is failing or stale");
    assert_eq!(auto_text(&signal("component:delivery")).0, "Delivery dispatcher degraded");
    assert_eq!(auto_text(&signal("rules")).1, "Opened automatically: 20 of 40 attempts failed (50 %).");
}
