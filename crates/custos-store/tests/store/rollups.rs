//! Metric rollups, on both backends: they count each inserted record once, bucket
//! exactly, keep the latest queue snapshot whatever the arrival order, hold the series
//! cap (100,000 distinct rule keys against the default cap of 10,000), and agree with
//! the backfills of migrations 0002 and 0005 from the stored records; and the hourly
//! buckets and last errors fold with their series.

use std::sync::Arc;

use custos_model::records::{
    ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RuleRun, Validate, ValidationContext,
};
use custos_model::{ComponentInput, TenantId, Timestamp};
use custos_store::rollup::{self, DEFAULT_SERIES_CAP, FOLDED_KEY};
use custos_store::{
    BucketRow, HourTotals, LastError, PostgresStore, RollupFamily, SeriesRow, SqliteStore, Store, Tenant,
};

enum Backend {
    Sqlite(Arc<SqliteStore>, #[allow(dead_code)] tempfile::TempDir),
    Postgres(Arc<PostgresStore>, #[allow(dead_code)] custos_store::testing::TestDatabase),
}

impl Backend {
    fn store(&self) -> &dyn Store {
        match self {
            Backend::Sqlite(s, _) => &**s,
            Backend::Postgres(s, _) => &**s,
        }
    }

    async fn rerun_backfill(&self) {
        match self {
            Backend::Sqlite(s, _) => s.rerun_rollup_backfill().await.unwrap(),
            Backend::Postgres(s, _) => s.rerun_rollup_backfill().await.unwrap(),
        }
    }

    async fn rerun_hourly_backfill(&self) {
        match self {
            Backend::Sqlite(s, _) => s.rerun_hourly_backfill().await.unwrap(),
            Backend::Postgres(s, _) => s.rerun_hourly_backfill().await.unwrap(),
        }
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("custos.db")).await.unwrap();
    store.migrate().await.unwrap();
    Backend::Sqlite(Arc::new(store), dir)
}

async fn postgres() -> Backend {
    let database = custos_store::testing::fresh_postgres().await;
    let store = PostgresStore::connect(database.url()).await.unwrap();
    store.migrate().await.unwrap();
    Backend::Postgres(Arc::new(store), database)
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::sqlite().await).await })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::postgres().await).await })*
        }
    };
}

both_backends!(
    each_inserted_record_counts_once,
    buckets_totals_and_last_times_are_exact,
    the_latest_queue_snapshot_wins_whatever_the_arrival_order,
    the_cap_folds_new_series_and_counts_what_it_folded,
    the_cap_holds_under_100_000_rule_keys,
    the_migration_backfill_agrees_with_the_ingest_path,
    hourly_buckets_and_last_errors_follow_the_records_and_the_folds,
);

fn now() -> Timestamp {
    Timestamp::parse("t", "2026-11-22T12:00:00Z").unwrap()
}

fn validate<R: IngestRecord>(json: serde_json::Value) -> R {
    R::validate(serde_json::from_value(json).unwrap(), &ValidationContext::new(now())).unwrap()
}

fn run(id: &str, rule_key: &str, status: &str, duration_ms: Option<i64>) -> RuleRun {
    let mut json = serde_json::json!({
        "id": id, "rule_key": rule_key, "status": status, "events_evaluated": 10, "findings_created": 2,
        "findings_reopened": 1, "findings_resolved": 3, "started_at": "2026-11-22T10:00:00Z",
    });
    if let Some(ms) = duration_ms {
        json["duration_ms"] = ms.into();
    }
    validate(json)
}

fn snapshot(id: &str, queue: &str, observed_at: &str, pending: i64) -> QueueSnapshot {
    let ctx = ValidationContext { path_component_id: Some(queue.into()), ..ValidationContext::new(now()) };
    let input = serde_json::from_value(serde_json::json!({
        "id": id, "observed_at": observed_at, "depth": {"pending": pending, "dead_lettered": 1},
        "oldest_item_age_ms": 1500, "processed_total": 100, "failed_total": 2
    }))
    .unwrap();
    QueueSnapshot::validate(input, &ctx).unwrap()
}

async fn tenant(store: &dyn Store, id: &str) -> TenantId {
    let tenant = TenantId::parse(id).unwrap();
    store
        .create_tenant(&Tenant { id: tenant.clone(), name: None, retention_days: 30, created_at: now() })
        .await
        .unwrap();
    tenant
}

fn series<'a>(rows: &'a [SeriesRow], family: RollupFamily, key: &str, status: &str) -> &'a SeriesRow {
    rows.iter()
        .find(|r| r.family == family && r.key == key && r.status == status)
        .unwrap_or_else(|| panic!("no series {family:?}/{key}/{status} in {rows:#?}"))
}

async fn each_inserted_record_counts_once(backend: Backend) {
    let store = backend.store();
    let acme = tenant(store, "acme").await;
    let globex = tenant(store, "globex").await;
    let batch = vec![run("r1", "k", "failed", Some(40)), run("r2", "k", "failed", Some(60))];
    store.record_rule_runs(&acme, batch.clone(), now()).await.unwrap();
    // A re-send and a batch that conflicts change nothing.
    store.record_rule_runs(&acme, batch, now()).await.unwrap();
    let conflicting = vec![run("r3", "k", "failed", Some(1)), run("r1", "k", "succeeded", None)];
    store.record_rule_runs(&acme, conflicting, now()).await.unwrap_err();

    let rows = store.metric_series(&acme).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let k = series(&rows, RollupFamily::RuleRuns, "k", "failed");
    assert_eq!((k.values.records, k.values.observations), (2, 2));
    assert_eq!(k.values.totals, [20.0, 4.0, 2.0, 6.0]);
    assert!(store.metric_series(&globex).await.unwrap().is_empty(), "tenants never share series");
}

async fn buckets_totals_and_last_times_are_exact(backend: Backend) {
    let store = backend.store();
    let acme = tenant(store, "acme").await;
    // 5 ms sits on the first bound (inclusive); 5.001 s is above the 5 s bound; 20 min
    // is above every bound; a run without a duration counts but is not observed.
    let runs = vec![
        run("a", "k", "succeeded", Some(5)),
        run("b", "k", "succeeded", Some(5_001)),
        run("c", "k", "succeeded", Some(1_200_000)),
        run("d", "k", "succeeded", None),
    ];
    store.record_rule_runs(&acme, runs, now()).await.unwrap();
    let syncs: Vec<ConnectorSync> = (0..3)
        .map(|i| {
            validate(serde_json::json!({
                "id": format!("s{i}"), "integration_id": "okta", "triggered_by": "scheduled", "status": "succeeded",
                "events_ingested": 100, "started_at": format!("2026-11-22T10:0{i}:00Z"),
                "finished_at": format!("2026-11-22T10:0{i}:30Z")
            }))
        })
        .collect();
    store.record_connector_syncs(&acme, syncs, now()).await.unwrap();
    let deliveries: Vec<Delivery> = [1, 3, 3, 200]
        .iter()
        .enumerate()
        .map(|(i, attempt)| {
            validate(serde_json::json!({
                "id": format!("d{i}"), "destination_id": "splunk", "status": "retrying", "attempt": attempt,
                "latency_ms": 250, "attempted_at": "2026-11-22T10:00:00Z"
            }))
        })
        .collect();
    store.record_deliveries(&acme, deliveries, now()).await.unwrap();

    let rows = store.metric_series(&acme).await.unwrap();
    let k = &series(&rows, RollupFamily::RuleRuns, "k", "succeeded").values;
    assert_eq!((k.records, k.observations), (4, 3));
    assert_eq!(k.buckets[0], 1, "5 ms is in the 5 ms bucket");
    assert_eq!(k.buckets[10], 1, "5.001 s is in the (5 s, 10 s] bucket");
    assert_eq!(k.buckets.iter().sum::<i64>(), 2, "20 min is above every finite bucket");
    assert_eq!(k.sum, (5_000 + 5_001_000 + 1_200_000_000) as f64);
    assert_eq!(k.last_us, Some(Timestamp::parse("t", "2026-11-22T10:00:00Z").unwrap().as_micros()));

    let okta = &series(&rows, RollupFamily::ConnectorSyncs, "okta", "succeeded").values;
    assert_eq!((okta.records, okta.observations, okta.buckets[11]), (3, 3, 3), "30 s syncs: the (10 s, 30 s] bucket");
    assert_eq!(okta.totals[0], 300.0);
    assert_eq!(okta.last_us, Some(Timestamp::parse("t", "2026-11-22T10:02:30Z").unwrap().as_micros()));

    let splunk = &series(&rows, RollupFamily::Deliveries, "splunk", "retrying").values;
    assert_eq!((splunk.buckets[0], splunk.buckets[2], splunk.observations), (1, 2, 4));
    assert_eq!(splunk.totals[0], 1000.0, "latency sum");
}

async fn the_latest_queue_snapshot_wins_whatever_the_arrival_order(backend: Backend) {
    let store = backend.store();
    let acme = tenant(store, "acme").await;
    for queue in ["ingest", "siem-out"] {
        let component = ComponentInput {
            kind: custos_model::ComponentKind::IngestionQueue,
            name: None,
            provider: None,
            freshness: None,
            schedule: None,
        }
        .validate(queue, now())
        .unwrap();
        store.put_component(&acme, &component).await.unwrap();
    }
    let at = |minute: u32| format!("2026-11-22T10:{minute:02}:00Z");
    // In one batch, out of order; then an older one alone; then a tie on time.
    let batch = vec![
        snapshot("q2", "ingest", &at(2), 20),
        snapshot("q3", "ingest", &at(3), 30),
        snapshot("q1", "ingest", &at(1), 10),
    ];
    store.record_queue_snapshots(&acme, batch, now()).await.unwrap();
    store.record_queue_snapshots(&acme, vec![snapshot("q0", "ingest", &at(0), 5)], now()).await.unwrap();
    store.record_queue_snapshots(&acme, vec![snapshot("s-b", "siem-out", &at(5), 7)], now()).await.unwrap();
    store.record_queue_snapshots(&acme, vec![snapshot("s-a", "siem-out", &at(5), 6)], now()).await.unwrap();

    let latest = store.latest_queue_snapshots(&acme).await.unwrap();
    let got: Vec<(&str, &str, i64)> =
        latest.iter().map(|s| (s.record.component_id.as_str(), s.record.id.as_str(), s.record.depth.pending)).collect();
    assert_eq!(got, [("ingest", "q3", 30), ("siem-out", "s-b", 7)], "a tie on time goes to the greater id");
    assert_eq!(latest[0].record.depth.dead_lettered, 1);
    assert_eq!(latest[0].record.processed_total, Some(100));
}

async fn the_cap_folds_new_series_and_counts_what_it_folded(backend: Backend) {
    let store = backend.store();
    let acme = tenant(store, "acme").await;
    let globex = tenant(store, "globex").await;
    store.set_metric_series_cap(2);
    store
        .record_rule_runs(&acme, vec![run("1", "b", "failed", Some(1)), run("2", "a", "failed", Some(1))], now())
        .await
        .unwrap();
    // At the cap: new keys fold (per status); known series keep counting.
    let more = vec![
        run("3", "a", "failed", Some(1)),
        run("4", "c", "failed", Some(1)),
        run("5", "d", "succeeded", Some(1)),
        run("6", "d", "succeeded", Some(1)),
        run("7", "a", "succeeded", Some(1)),
    ];
    store.record_rule_runs(&acme, more, now()).await.unwrap();
    let rows = store.metric_series(&acme).await.unwrap();
    let keys: Vec<(&str, &str, i64)> =
        rows.iter().map(|r| (r.key.as_str(), r.status.as_str(), r.values.records)).collect();
    assert_eq!(
        keys,
        [(FOLDED_KEY, "failed", 1), (FOLDED_KEY, "succeeded", 3), ("a", "failed", 2), ("b", "failed", 1)],
        "(a, succeeded) is a new series too, so it folds"
    );
    // The cap is per tenant.
    store
        .record_rule_runs(&globex, vec![run("1", "x", "failed", None), run("2", "y", "failed", None)], now())
        .await
        .unwrap();
    assert_eq!(store.metric_series(&globex).await.unwrap().len(), 2);
}

async fn the_cap_holds_under_100_000_rule_keys(backend: Backend) {
    let store = backend.store();
    let acme = tenant(store, "acme").await;
    let keys = 100_000;
    for chunk in 0..10 {
        let runs = (0..keys / 10)
            .map(|i| {
                let n = chunk * (keys / 10) + i;
                run(&format!("r{n}"), &format!("rule.{n:06}"), "succeeded", Some(10))
            })
            .collect();
        store.record_rule_runs(&acme, runs, now()).await.unwrap();
    }
    let rows = store.metric_series(&acme).await.unwrap();
    let real = rows.iter().filter(|r| r.key != FOLDED_KEY).count();
    assert_eq!(real, DEFAULT_SERIES_CAP);
    let folded = series(&rows, RollupFamily::RuleRuns, FOLDED_KEY, "succeeded");
    assert_eq!(folded.values.records as usize, keys - DEFAULT_SERIES_CAP);
    assert_eq!(rows.len(), DEFAULT_SERIES_CAP + 1);
    // Every record is still counted once, in its own series or the fold.
    assert_eq!(rows.iter().map(|r| r.values.records).sum::<i64>(), keys as i64);
}

async fn the_migration_backfill_agrees_with_the_ingest_path(backend: Backend) {
    let store = backend.store();
    for name in ["acme", "globex"] {
        let t = tenant(store, name).await;
        let runs: Vec<RuleRun> = (0..300)
            .map(|i| {
                let status = ["succeeded", "failed", "skipped", "started"][i % 4];
                let duration = if i % 7 == 0 { None } else { Some((i as i64 * 37) % 2_000_000) };
                let mut r = run(&format!("r{i}"), &format!("rule.{}", i % 13), status, duration);
                r.started_at = Timestamp::from_micros(r.started_at.as_micros() + (i as i64 % 5) * 1_234_567_890);
                if status == "failed" {
                    r.error_message = Some(format!("boom {}", i % 3));
                }
                r
            })
            .collect();
        store.record_rule_runs(&t, runs, now()).await.unwrap();
        let syncs: Vec<ConnectorSync> = (0..50)
            .map(|i| {
                validate(serde_json::json!({
                    "id": format!("s{i}"), "integration_id": format!("int-{}", i % 4), "triggered_by": "manual",
                    "status": (["succeeded", "failed", "partial"][i % 3]), "events_ingested": i * 3,
                    "error_message": if i % 3 == 1 { format!("sync {i} failed").into() } else { serde_json::Value::Null },
                    "duration_ms": if i % 5 == 0 { serde_json::Value::Null } else { (i * 911).into() },
                    "started_at": "2026-11-22T10:00:00Z", "finished_at": format!("2026-11-22T10:{:02}:{:02}Z", i / 60, i % 60)
                }))
            })
            .collect();
        store.record_connector_syncs(&t, syncs, now()).await.unwrap();
        let deliveries: Vec<Delivery> = (0..40)
            .map(|i| {
                validate(serde_json::json!({
                    "id": format!("d{i}"), "destination_id": format!("dest-{}", i % 3), "attempt": 1 + i * 3,
                    "status": (["succeeded", "retrying", "dead_lettered"][i % 3]),
                    "attempted_at": format!("2026-11-22T{:02}:59:59Z", 8 + i % 3),
                    "error_message": if i % 3 == 0 { serde_json::Value::Null } else { format!("HTTP 50{}", i % 4).into() },
                    "latency_ms": if i % 2 == 0 { serde_json::Value::Null } else { (i * 10).into() }
                }))
            })
            .collect();
        store.record_deliveries(&t, deliveries, now()).await.unwrap();
        let component = ComponentInput {
            kind: custos_model::ComponentKind::IngestionQueue,
            name: None,
            provider: None,
            freshness: None,
            schedule: None,
        }
        .validate("q", now())
        .unwrap();
        store.put_component(&t, &component).await.unwrap();
        let snaps = (0..5)
            .map(|i| snapshot(&format!("q{i}"), "q", &format!("2026-11-22T10:0{}:00Z", (i * 3) % 5), i))
            .collect();
        store.record_queue_snapshots(&t, snaps, now()).await.unwrap();
    }
    let acme = TenantId::parse("acme").unwrap();
    let incremental = (
        store.metric_series(&acme).await.unwrap(),
        store.latest_queue_snapshots(&acme).await.unwrap(),
        hourly(store, &acme).await,
    );
    assert!(incremental.0.len() > 40, "{}", incremental.0.len());
    assert!(incremental.2.0.len() > incremental.0.len(), "runs span several hours");
    assert_eq!(incremental.2.1.len(), 13 + 4 + 2, "every key but dest-0 had an error: {:#?}", incremental.2.1);
    backend.rerun_backfill().await;
    let backfilled = (
        store.metric_series(&acme).await.unwrap(),
        store.latest_queue_snapshots(&acme).await.unwrap(),
        hourly(store, &acme).await,
    );
    assert_eq!(incremental, backfilled);
}

/// Every hourly bucket and last error of a tenant, all families, from the epoch on.
async fn hourly(store: &dyn Store, tenant: &TenantId) -> (Vec<BucketRow>, Vec<(RollupFamily, String, LastError)>) {
    let mut buckets = Vec::new();
    let mut errors = Vec::new();
    for family in RollupFamily::ALL {
        buckets.extend(store.metric_buckets(tenant, family, Timestamp::from_micros(0)).await.unwrap());
        for (key, error) in store.last_errors(tenant, family).await.unwrap() {
            errors.push((family, key, error));
        }
    }
    (buckets, errors)
}

async fn hourly_buckets_and_last_errors_follow_the_records_and_the_folds(backend: Backend) {
    let store = backend.store();
    let acme = tenant(store, "acme").await;
    store.set_metric_series_cap(2);
    let at = |r: &mut RuleRun, hour: i64, error: Option<&str>| {
        r.started_at = Timestamp::from_micros(r.started_at.as_micros() + hour * rollup::BUCKET_US);
        r.error_message = error.map(str::to_owned);
    };
    let mut runs = vec![
        run("1", "a", "failed", Some(10)),
        run("2", "a", "failed", Some(20)),
        run("3", "b", "succeeded", Some(30)),
        run("4", "c", "failed", Some(40)),
        run("5", "d", "failed", Some(50)),
    ];
    at(&mut runs[0], 0, Some("first"));
    at(&mut runs[1], 1, Some("second"));
    at(&mut runs[2], 1, None);
    at(&mut runs[3], 1, Some("c broke"));
    at(&mut runs[4], 0, Some("d broke"));
    store.record_rule_runs(&acme, runs, now()).await.unwrap();
    let (buckets, errors) = hourly(store, &acme).await;
    let got: Vec<(i64, &str, &str, i64)> = buckets
        .iter()
        .map(|b| {
            (
                (b.bucket_us - rollup::bucket_of(now().as_micros())) / rollup::BUCKET_US,
                b.key.as_str(),
                b.status.as_str(),
                b.values.records,
            )
        })
        .collect();
    // `a` and `b` are admitted (first sorted keys); `c` and `d` fold into ''.
    assert_eq!(
        got,
        [
            (-2, FOLDED_KEY, "failed", 1),
            (-2, "a", "failed", 1),
            (-1, FOLDED_KEY, "failed", 1),
            (-1, "a", "failed", 1),
            (-1, "b", "succeeded", 1)
        ]
    );
    let errors: Vec<(&str, &str)> = errors.iter().map(|(_, key, e)| (key.as_str(), e.message.as_str())).collect();
    assert_eq!(errors, [(FOLDED_KEY, "c broke"), ("a", "second")]);
    // The narrow read of the hours is the same rows, in the same order, without histograms.
    let totals = store.metric_hour_totals(&acme, RollupFamily::RuleRuns, Timestamp::from_micros(0)).await.unwrap();
    let narrowed: Vec<HourTotals> = buckets
        .iter()
        .map(|b| HourTotals {
            bucket_us: b.bucket_us,
            key: b.key.clone(),
            status: b.status.clone(),
            records: b.values.records,
            observations: b.values.observations,
            sum: b.values.sum,
        })
        .collect();
    assert_eq!(totals, narrowed);
    // A window sums the hours per series.
    let window = store.metric_window(&acme, RollupFamily::RuleRuns, Timestamp::from_micros(0)).await.unwrap();
    let a = series(&window, RollupFamily::RuleRuns, "a", "failed");
    assert_eq!((a.values.records, a.values.sum), (2, 30_000.0));
    let since_last_hour = Timestamp::from_micros(now().as_micros() - rollup::BUCKET_US);
    let recent = store.metric_window(&acme, RollupFamily::RuleRuns, since_last_hour).await.unwrap();
    assert_eq!(series(&recent, RollupFamily::RuleRuns, "a", "failed").values.records, 1);
    // The backfill folds the same way, from metric_series as stored.
    let before = hourly(store, &acme).await;
    backend.rerun_hourly_backfill().await;
    assert_eq!(hourly(store, &acme).await, before);
}
