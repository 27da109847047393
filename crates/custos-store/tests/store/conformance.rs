//! One behavioural suite, run unchanged against SQLite and against the real PostgreSQL
//! that `scripts/test.sh` starts. Each test gets its own database.

use custos_model::records::{
    ConnectorSync, ConnectorSyncInput, Delivery, DeliveryInput, IngestRecord, QueueSnapshot, QueueSnapshotInput,
    RuleRun, Validate, ValidationContext,
};
use custos_model::{
    Component, ComponentInput, ComponentKind, FreshnessPolicy, FreshnessThresholds, Scope, TenantId, Timestamp,
};
use custos_store::{PutOutcome, RecordQuery, Store, StoreError, Tenant, TokenRecord};

use crate::support::{postgres, sqlite};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let f = super::sqlite().await; super::suite::$name(&*f.store).await })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { let f = super::postgres().await; super::suite::$name(&*f.store).await })*
        }
    };
}

conformance!(
    migrations_are_idempotent,
    tenants_are_created_once,
    tokens_are_looked_up_by_hash_and_revoked_once,
    components_put_created_unchanged_updated,
    freshness_policies_upsert,
    rule_runs_round_trip,
    resends_are_duplicates_and_changes_are_conflicts,
    a_conflicting_batch_writes_nothing,
    pages_are_newest_first_without_gaps_or_overlaps,
    filters_and_windows_select_exactly,
    tenants_never_see_each_other,
    every_record_kind_round_trips,
    last_successful_syncs_pick_the_latest_success,
    large_batches_span_insert_chunks,
);

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse("t", s).unwrap()
}

fn now() -> Timestamp {
    ts("2026-11-22T12:00:00Z")
}

fn ctx() -> ValidationContext {
    ValidationContext::new(now())
}

fn validate<R: IngestRecord>(json: serde_json::Value) -> R {
    R::validate(serde_json::from_value(json).unwrap(), &ctx()).unwrap()
}

/// A rule run `id` started `minute` minutes after 10:00.
fn run(id: &str, rule_key: &str, minute: u32) -> RuleRun {
    validate::<RuleRun>(serde_json::json!({
        "id": id, "rule_key": rule_key, "status": if minute.is_multiple_of(5) { "failed" } else { "succeeded" },
        "events_evaluated": minute * 10, "findings_created": minute % 3, "duration_ms": 40 + minute,
        "started_at": format!("2026-11-22T10:{:02}:00Z", minute % 60),
        "finished_at": format!("2026-11-22T10:{:02}:30Z", minute % 60),
        "integration_id": "okta-prod", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "context": {"trigger": {"event_id": format!("e{minute}")}}
    }))
}

async fn with_tenants(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        store
            .create_tenant(&Tenant { id: tenant(id), name: None, retention_days: 30, created_at: now() })
            .await
            .unwrap();
    }
}

fn query(limit: usize) -> RecordQuery {
    RecordQuery { limit, ..RecordQuery::default() }
}

mod suite {
    use super::*;

    pub async fn migrations_are_idempotent(store: &dyn Store) {
        assert_eq!(store.migrate().await.unwrap(), 0);
        store.ping().await.unwrap();
        let schema = store.describe_schema().await.unwrap();
        assert!(schema.tables.contains_key("rule_runs"));
    }

    pub async fn tenants_are_created_once(store: &dyn Store) {
        with_tenants(store, &["globex", "acme"]).await;
        let err = store
            .create_tenant(&Tenant { id: tenant("acme"), name: None, retention_days: 1, created_at: now() })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { what: "tenant", .. }), "{err:?}");
        let listed: Vec<String> = store.tenants().await.unwrap().into_iter().map(|t| t.id.to_string()).collect();
        assert_eq!(listed, ["acme", "globex"]);
        assert_eq!(store.tenant(&tenant("acme")).await.unwrap().unwrap().retention_days, 30);
        assert!(store.tenant(&tenant("initech")).await.unwrap().is_none());
    }

    pub async fn tokens_are_looked_up_by_hash_and_revoked_once(store: &dyn Store) {
        let scopes: Vec<Scope> = vec!["obs:read#tenant/acme".parse().unwrap(), "admin#tenant/*".parse().unwrap()];
        let token = TokenRecord {
            id: "tok_1".into(),
            name: "ci".into(),
            secret_hash: "ab".repeat(32),
            scopes: scopes.clone(),
            created_at: now(),
            expires_at: Some(ts("2027-01-01T00:00:00Z")),
            revoked_at: None,
        };
        store.create_token(&token).await.unwrap();
        assert!(matches!(store.create_token(&token).await.unwrap_err(), StoreError::AlreadyExists { .. }));
        let found = store.token_by_secret_hash(&"ab".repeat(32)).await.unwrap().unwrap();
        assert_eq!(found, token);
        assert!(found.is_active(now()));
        assert!(!found.is_active(ts("2027-01-01T00:00:00Z")));
        assert!(store.token_by_secret_hash(&"cd".repeat(32)).await.unwrap().is_none());

        let revoked = store.revoke_token("tok_1", ts("2026-11-23T00:00:00Z")).await.unwrap();
        assert_eq!(revoked.revoked_at, Some(ts("2026-11-23T00:00:00Z")));
        assert!(!revoked.is_active(now()));
        let again = store.revoke_token("tok_1", ts("2026-12-01T00:00:00Z")).await.unwrap();
        assert_eq!(again.revoked_at, Some(ts("2026-11-23T00:00:00Z")), "the first revocation time is kept");
        assert!(matches!(store.revoke_token("tok_x", now()).await.unwrap_err(), StoreError::NotFound { .. }));
        assert_eq!(store.tokens().await.unwrap().len(), 1);
    }

    fn component(id: &str, name: &str, at: Timestamp) -> Component {
        ComponentInput {
            kind: ComponentKind::Connector,
            name: Some(name.into()),
            provider: Some("okta".into()),
            freshness: None,
            schedule: None,
        }
        .validate(id, at)
        .unwrap()
    }

    pub async fn components_put_created_unchanged_updated(store: &dyn Store) {
        with_tenants(store, &["acme", "globex"]).await;
        let acme = tenant("acme");
        let first = component("okta-prod", "Okta", now());
        assert_eq!(store.put_component(&acme, &first).await.unwrap(), (PutOutcome::Created, first.clone()));
        let later = ts("2026-11-22T13:00:00Z");
        let (outcome, stored) = store.put_component(&acme, &component("okta-prod", "Okta", later)).await.unwrap();
        assert_eq!(outcome, PutOutcome::Unchanged);
        assert_eq!(stored.updated_at, now(), "an unchanged PUT does not touch updated_at");
        let (outcome, stored) =
            store.put_component(&acme, &component("okta-prod", "Okta (prod)", later)).await.unwrap();
        assert_eq!(outcome, PutOutcome::Updated);
        assert_eq!((stored.created_at, stored.updated_at), (now(), later));
        assert_eq!(store.component(&acme, "okta-prod").await.unwrap().unwrap(), stored);
        store.put_component(&acme, &component("aaa", "A", now())).await.unwrap();
        let ids: Vec<String> = store.components(&acme).await.unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["aaa", "okta-prod"]);
        assert!(store.components(&tenant("globex")).await.unwrap().is_empty());
        assert!(store.component(&tenant("globex"), "okta-prod").await.unwrap().is_none());
    }

    pub async fn freshness_policies_upsert(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        let policy = |green, at| FreshnessPolicy {
            provider: "okta".into(),
            thresholds: FreshnessThresholds { green_under_seconds: green, yellow_under_seconds: green * 2 },
            updated_at: at,
        };
        store.put_freshness_policy(&acme, &policy(60, now())).await.unwrap();
        store.put_freshness_policy(&acme, &policy(90, ts("2026-11-22T13:00:00Z"))).await.unwrap();
        assert_eq!(store.freshness_policies(&acme).await.unwrap(), vec![policy(90, ts("2026-11-22T13:00:00Z"))]);
    }

    pub async fn rule_runs_round_trip(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        let runs = vec![run("r1", "k", 1), run("r2", "k", 2)];
        let summary = store.record_rule_runs(&acme, runs.clone(), now()).await.unwrap();
        assert_eq!((summary.inserted, summary.duplicates), (2, 0));
        let page = store.rule_runs_page(&acme, &query(10)).await.unwrap();
        let got: Vec<RuleRun> = page.items.iter().map(|s| s.record.clone()).collect();
        assert_eq!(got, vec![runs[1].clone(), runs[0].clone()]);
        assert!(page.items.iter().all(|s| s.received_at == now()));
        assert!(page.next_cursor.is_none());
    }

    pub async fn resends_are_duplicates_and_changes_are_conflicts(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        store.record_rule_runs(&acme, vec![run("r1", "k", 1)], now()).await.unwrap();
        let again = store.record_rule_runs(&acme, vec![run("r1", "k", 1), run("r2", "k", 2)], now()).await.unwrap();
        assert_eq!((again.inserted, again.duplicates), (1, 1));
        let mut changed = run("r1", "k", 1);
        changed.findings_created += 1;
        let err = store.record_rule_runs(&acme, vec![changed], now()).await.unwrap_err();
        assert!(matches!(&err, StoreError::Conflict { id, .. } if id == "r1"), "{err:?}");
        // Within one batch too: the same id twice is one record, or a conflict.
        let twice = store.record_rule_runs(&acme, vec![run("r3", "k", 3), run("r3", "k", 3)], now()).await.unwrap();
        assert_eq!((twice.inserted, twice.duplicates), (1, 1));
        let mut other = run("r4", "k", 4);
        let first = other.clone();
        other.duration_ms = Some(1);
        assert!(matches!(
            store.record_rule_runs(&acme, vec![first, other], now()).await.unwrap_err(),
            StoreError::Conflict { .. }
        ));
        assert_eq!(store.rule_runs_page(&acme, &query(100)).await.unwrap().items.len(), 3);
    }

    pub async fn a_conflicting_batch_writes_nothing(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        store.record_rule_runs(&acme, vec![run("r1", "k", 1)], now()).await.unwrap();
        let mut conflicting = run("r1", "k", 1);
        conflicting.status = custos_model::records::RuleRunStatus::Skipped;
        let batch = vec![run("new-1", "k", 2), run("new-2", "k", 3), conflicting];
        store.record_rule_runs(&acme, batch, now()).await.unwrap_err();
        let ids: Vec<String> =
            store.rule_runs_page(&acme, &query(100)).await.unwrap().items.into_iter().map(|s| s.record.id).collect();
        assert_eq!(ids, ["r1"], "the rows before the conflict were rolled back");
    }

    pub async fn pages_are_newest_first_without_gaps_or_overlaps(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        // 25 runs over 12 distinct start times, so ties are broken by id.
        let runs: Vec<RuleRun> = (0..25).map(|i| run(&format!("r{i:02}"), "k", i % 12)).collect();
        store.record_rule_runs(&acme, runs.clone(), now()).await.unwrap();
        let mut expected: Vec<(Timestamp, String)> = runs.iter().map(|r| (r.started_at, r.id.clone())).collect();
        expected.sort();
        expected.reverse();
        let mut seen = Vec::new();
        let mut q = query(10);
        let mut pages = 0;
        loop {
            let page = store.rule_runs_page(&acme, &q).await.unwrap();
            pages += 1;
            seen.extend(page.items.iter().map(|s| (s.record.started_at, s.record.id.clone())));
            match page.next_cursor {
                Some(cursor) => q.after = Some(cursor),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, expected);
    }

    pub async fn filters_and_windows_select_exactly(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        let runs: Vec<RuleRun> =
            (0..20).map(|i| run(&format!("r{i:02}"), if i % 2 == 0 { "even" } else { "odd" }, i)).collect();
        store.record_rule_runs(&acme, runs, now()).await.unwrap();
        let ids = |q: RecordQuery| async move {
            store
                .rule_runs_page(&tenant("acme"), &q)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|s| s.record.id)
                .collect::<Vec<_>>()
        };
        let q = RecordQuery { filters: vec![("rule_key".into(), "odd".into())], ..query(100) };
        assert_eq!(ids(q).await.len(), 10);
        let q = RecordQuery {
            filters: vec![("rule_key".into(), "even".into()), ("status".into(), "failed".into())],
            ..query(100)
        };
        assert_eq!(ids(q).await, ["r10", "r00"]);
        let q =
            RecordQuery { from: Some(ts("2026-11-22T10:05:00Z")), to: Some(ts("2026-11-22T10:08:00Z")), ..query(100) };
        assert_eq!(ids(q).await, ["r07", "r06", "r05"], "from is inclusive, to exclusive");
        let q = RecordQuery { filters: vec![("rule_key".into(), "nope".into())], ..query(100) };
        assert!(ids(q).await.is_empty());
    }

    pub async fn tenants_never_see_each_other(store: &dyn Store) {
        with_tenants(store, &["acme", "globex"]).await;
        store.record_rule_runs(&tenant("acme"), vec![run("shared-id", "k", 1)], now()).await.unwrap();
        assert!(store.rule_runs_page(&tenant("globex"), &query(10)).await.unwrap().items.is_empty());
        // The same id under another tenant is a different record, not a conflict.
        let other = run("shared-id", "other", 2);
        let summary = store.record_rule_runs(&tenant("globex"), vec![other], now()).await.unwrap();
        assert_eq!(summary.inserted, 1);
        let acme_runs = store.rule_runs_page(&tenant("acme"), &query(10)).await.unwrap().items;
        assert_eq!(acme_runs.len(), 1);
        assert_eq!(acme_runs[0].record.rule_key, "k");
    }

    pub async fn every_record_kind_round_trips(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        let sync: ConnectorSync = ConnectorSync::validate(
            serde_json::from_value::<ConnectorSyncInput>(serde_json::json!({
                "id": "s1", "integration_id": "okta-prod", "triggered_by": "webhook", "status": "partial",
                "events_ingested": 10, "new_assets_observed": 2, "api_calls_made": 3, "duration_ms": 900,
                "error_message": "rate limited", "started_at": "2026-11-22T10:00:00Z", "finished_at": "2026-11-22T10:00:01Z"
            }))
            .unwrap(),
            &ctx(),
        )
        .unwrap();
        store.record_connector_syncs(&acme, vec![sync.clone()], now()).await.unwrap();
        assert_eq!(store.connector_syncs_page(&acme, &query(5)).await.unwrap().items[0].record, sync);

        let snapshot_ctx = ValidationContext { path_component_id: Some("siem-queue".into()), ..ctx() };
        let snapshot = QueueSnapshot::validate(
            serde_json::from_value::<QueueSnapshotInput>(serde_json::json!({
                "id": "q1", "depth": {"pending": 5, "in_flight": 2, "retrying": 1, "dead_lettered": 7},
                "oldest_item_age_ms": 12000, "processed_total": 1000
            }))
            .unwrap(),
            &snapshot_ctx,
        )
        .unwrap();
        store.record_queue_snapshots(&acme, vec![snapshot.clone()], now()).await.unwrap();
        let stored = store.queue_snapshots_page(&acme, &query(5)).await.unwrap().items;
        assert_eq!(stored[0].record, snapshot);
        assert_eq!(stored[0].record.depth.dead_lettered, 7);

        let delivery = Delivery::validate(
            serde_json::from_value::<DeliveryInput>(serde_json::json!({
                "id": "d1", "destination_id": "splunk", "item_id": "finding-9", "status": "dead_lettered", "attempt": 5,
                "latency_ms": 30000, "error_message": "HTTP 503", "attempted_at": "2026-11-22T10:00:00Z"
            }))
            .unwrap(),
            &ctx(),
        )
        .unwrap();
        store.record_deliveries(&acme, vec![delivery.clone()], now()).await.unwrap();
        let q = RecordQuery { filters: vec![("status".into(), "dead_lettered".into())], ..query(5) };
        assert_eq!(store.deliveries_page(&acme, &q).await.unwrap().items[0].record, delivery);
    }

    pub async fn last_successful_syncs_pick_the_latest_success(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        let sync = |id: &str, integration: &str, status: &str, minute: u32| {
            ConnectorSync::validate(
                serde_json::from_value::<ConnectorSyncInput>(serde_json::json!({
                    "id": id, "integration_id": integration, "triggered_by": "scheduled", "status": status,
                    "started_at": format!("2026-11-22T10:{minute:02}:00Z"), "finished_at": format!("2026-11-22T10:{minute:02}:09Z")
                }))
                .unwrap(),
                &ctx(),
            )
            .unwrap()
        };
        let syncs = vec![
            sync("a1", "okta", "succeeded", 1),
            sync("a2", "okta", "succeeded", 5),
            sync("a3", "okta", "failed", 9),
            sync("b1", "crowdstrike", "failed", 3),
        ];
        store.record_connector_syncs(&acme, syncs, now()).await.unwrap();
        let ids = ["okta".to_owned(), "crowdstrike".to_owned(), "never".to_owned()];
        let found = store.last_successful_syncs(&acme, &ids).await.unwrap();
        assert_eq!(found, vec![("okta".to_owned(), ts("2026-11-22T10:05:09Z"))]);
    }

    pub async fn large_batches_span_insert_chunks(store: &dyn Store) {
        with_tenants(store, &["acme"]).await;
        let acme = tenant("acme");
        let runs: Vec<RuleRun> = (0..12_345).map(|i| run(&format!("bulk-{i}"), "bulk", i % 60)).collect();
        let summary = store.record_rule_runs(&acme, runs.clone(), now()).await.unwrap();
        assert_eq!(summary.inserted, 12_345);
        let again = store.record_rule_runs(&acme, runs, now()).await.unwrap();
        assert_eq!((again.inserted, again.duplicates), (0, 12_345));
    }
}

/// The two backends' schemas have the same tables, columns (and nullability),
/// primary keys and indexes, so their migration histories cannot drift apart.
#[tokio::test]
async fn sqlite_and_postgres_schemas_are_equivalent() {
    let sqlite = sqlite().await;
    let postgres = postgres().await;
    let a = sqlite.store.describe_schema().await.unwrap();
    let b = postgres.store.describe_schema().await.unwrap();
    assert_eq!(a.tables.keys().collect::<Vec<_>>(), b.tables.keys().collect::<Vec<_>>());
    for (name, table) in &a.tables {
        assert_eq!(table, &b.tables[name], "table {name} differs between SQLite and PostgreSQL");
    }
}
