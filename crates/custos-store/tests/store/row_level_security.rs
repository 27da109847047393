//! PostgreSQL's second wall: even a query that forgets its tenant filter, run through
//! the application's own connection pool, sees only the current tenant's rows, and the
//! application role can neither rewrite nor delete records.

use custos_model::records::{RuleRun, Validate, ValidationContext};
use custos_model::{TenantId, Timestamp};
use custos_store::{PostgresStore, Store, Tenant};
use sqlx::{Executor, Row};

fn run(id: &str) -> RuleRun {
    let input = serde_json::from_value(serde_json::json!({
        "id": id, "rule_key": "k", "status": "succeeded", "started_at": "2026-11-22T10:00:00Z"
    }))
    .unwrap();
    RuleRun::validate(input, &ValidationContext::new(Timestamp::now())).unwrap()
}

#[tokio::test]
async fn an_unfiltered_select_sees_only_the_current_tenant() {
    let database = custos_store::testing::fresh_postgres().await;
    let store = PostgresStore::connect(database.url()).await.unwrap();
    store.migrate().await.unwrap();
    for (tenant, ids) in [("acme", vec!["a1", "a2"]), ("globex", vec!["g1"])] {
        let tenant = TenantId::parse(tenant).unwrap();
        store
            .create_tenant(&Tenant { id: tenant.clone(), name: None, retention_days: 1, created_at: Timestamp::now() })
            .await
            .unwrap();
        store.record_rule_runs(&tenant, ids.into_iter().map(run).collect(), Timestamp::now()).await.unwrap();
    }

    let mut conn = store.pool().acquire().await.unwrap();
    let role: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(role, custos_store::APP_ROLE);

    // No tenant set: nothing is visible, records or their metric rollups.
    let rows = conn.fetch_all("SELECT tenant_id, id FROM rule_runs").await.unwrap();
    assert!(rows.is_empty(), "without a tenant, row-level security hides every row");
    let rows = conn.fetch_all("SELECT tenant_id FROM metric_series").await.unwrap();
    assert!(rows.is_empty(), "rollups are tenant rows too");

    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    sqlx::query("SELECT set_config('custos.tenant_id', 'acme', true)").execute(&mut *tx).await.unwrap();
    let rows = tx.fetch_all("SELECT tenant_id, id FROM rule_runs ORDER BY id").await.unwrap();
    let seen: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(seen, [("acme".to_owned(), "a1".to_owned()), ("acme".to_owned(), "a2".to_owned())]);
    let rows = tx.fetch_all("SELECT tenant_id, records FROM metric_series").await.unwrap();
    let seen: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(seen, [("acme".to_owned(), 2)]);

    // Writing another tenant's row is refused by the policy's WITH CHECK.
    let err = tx
        .execute(
            "INSERT INTO rule_runs (tenant_id, id, rule_key, status, events_evaluated, findings_created, findings_reopened,
             findings_resolved, started_at_us, content_sha256, received_at_us) VALUES ('globex', 'x', 'k', 'succeeded', 0, 0, 0, 0, 0, '\\x00', 0)",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();

    // Records are append-only for the application role.
    for statement in [
        "UPDATE rule_runs SET rule_key = 'x'",
        "DELETE FROM rule_runs",
        "DELETE FROM metric_series",
        "ALTER TABLE rule_runs DISABLE ROW LEVEL SECURITY",
    ] {
        let err = conn.execute(statement).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied") || err.to_string().contains("must be owner"),
            "{statement}: {err}"
        );
    }
}

#[tokio::test]
async fn every_table_with_a_tenant_column_is_walled() {
    let database = custos_store::testing::fresh_postgres().await;
    let store = PostgresStore::connect(database.url()).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let rows = conn
        .fetch_all(
            "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname = current_schema() AND EXISTS \
             (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) \
             ORDER BY 1",
        )
        .await
        .unwrap();
    let tables: Vec<(String, bool, bool)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert!(tables.iter().any(|(t, ..)| t == "evidence_bundles"), "{tables:?}");
    let open: Vec<&String> = tables.iter().filter(|(_, on, forced)| !(*on && *forced)).map(|(t, ..)| t).collect();
    assert!(open.is_empty(), "tables with tenant rows but no forced row-level security: {open:?}");
}
