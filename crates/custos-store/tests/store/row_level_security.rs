//! PostgreSQL's second wall: even a query that forgets its tenant filter, run through
//! the application's own connection pool, sees only the current tenant's rows, and the
//! application role can neither rewrite nor delete records.

use custos_model::records::{RuleRun, Validate, ValidationContext};
use custos_model::{TenantId, Timestamp};
use custos_store::{PostgresStore, Store, Tenant};
use sqlx::{Connection, Executor, Row};

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

/// The service logs in as a role that owns nothing and is a member of `custos_app` (what
/// `docs/security/tenancy.md` tells operators to create). Such a session cannot get
/// around row-level security: `RESET ROLE` leaves it with `custos_app`'s rights, and the
/// store says the owner's session is privileged and this one is not.
#[tokio::test]
async fn the_login_role_cannot_reset_its_way_past_row_level_security() {
    let database = custos_store::testing::fresh_postgres().await;
    let owner = PostgresStore::connect(database.url()).await.unwrap();
    owner.migrate().await.unwrap();
    for (tenant, ids) in [("acme", vec!["a1"]), ("globex", vec!["g1", "g2"])] {
        let tenant = TenantId::parse(tenant).unwrap();
        owner
            .create_tenant(&Tenant { id: tenant.clone(), name: None, retention_days: 1, created_at: Timestamp::now() })
            .await
            .unwrap();
        owner.record_rule_runs(&tenant, ids.into_iter().map(run).collect(), Timestamp::now()).await.unwrap();
    }
    let reason = owner.privileged_role().await.unwrap().expect("the owner's session is privileged");
    assert!(reason.contains("is a superuser") || reason.contains("owns custos's tables"), "{reason}");

    let app = PostgresStore::connect(&database.app_url()).await.unwrap();
    assert_eq!(app.privileged_role().await.unwrap(), None);
    assert!(app.schema_is_current().await.unwrap());
    assert!(app.migrate().await.is_err(), "the login role cannot migrate");
    let mut conn = sqlx::PgConnection::connect(&database.app_url()).await.unwrap();
    conn.execute("RESET ROLE").await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut conn).await.unwrap();
    assert_eq!(user, custos_store::testing::TEST_LOGIN_ROLE);
    assert!(conn.fetch_all("SELECT id FROM rule_runs").await.unwrap().is_empty(), "no tenant set: nothing");
    let mut tx = conn.begin().await.unwrap();
    tx.execute("SELECT set_config('custos.tenant_id', 'acme', true)").await.unwrap();
    assert_eq!(tx.fetch_all("SELECT id FROM rule_runs").await.unwrap().len(), 1, "acme's only");
    tx.rollback().await.unwrap();
    // A revoked token stays revoked; a tenant's retention is not the service's to change.
    conn.execute(
        "INSERT INTO api_tokens (id, name, secret_hash, scopes, created_at_us, expires_at_us, revoked_at_us) \
         VALUES ('tok_x', 'x', 'h', '[]', 0, NULL, 5)",
    )
    .await
    .unwrap();
    let err = conn.execute("UPDATE api_tokens SET revoked_at_us = NULL WHERE id = 'tok_x'").await.unwrap_err();
    assert!(err.to_string().contains("stays revoked"), "{err}");
    for statement in [
        "UPDATE tenants SET retention_days = 0",
        "UPDATE api_tokens SET scopes = '[\"admin#tenant/*\"]'",
        "DELETE FROM rule_runs",
        "ALTER TABLE rule_runs DISABLE ROW LEVEL SECURITY",
        "SET ROLE custos_test_owner_that_does_not_exist",
        "SET session_replication_role = replica",
    ] {
        let err = conn.execute(statement).await.unwrap_err().to_string();
        assert!(
            ["permission denied", "must be owner", "does not exist"].iter().any(|m| err.contains(m)),
            "{statement}: {err}"
        );
    }
}

/// What `custos_app` may do, read from the catalogue, is exactly the table in
/// `docs/security/tenancy.md`: the docs cannot drift from the grants again.
#[tokio::test]
async fn the_application_role_holds_exactly_the_grants_the_docs_list() {
    let database = custos_store::testing::fresh_postgres().await;
    let store = PostgresStore::connect(database.url()).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(database.url()).await.unwrap();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, string_agg(privilege_type, ', ' ORDER BY privilege_type) \
         FROM information_schema.role_table_grants \
         WHERE grantee = 'custos_app' AND table_schema = current_schema() GROUP BY table_name ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let functions: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT routine_name::text FROM information_schema.role_routine_grants \
         WHERE grantee = 'custos_app' AND routine_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, privilege_type::text, string_agg(column_name::text, ', ' ORDER BY column_name) \
         FROM information_schema.role_column_grants c \
         WHERE grantee = 'custos_app' AND table_schema = current_schema() AND NOT EXISTS \
           (SELECT 1 FROM information_schema.role_table_grants t WHERE t.grantee = c.grantee \
            AND t.table_name = c.table_name AND t.privilege_type = c.privilege_type) \
         GROUP BY table_name, privilege_type",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut actual: Vec<String> = tables
        .iter()
        .map(|(t, p)| {
            let mut privileges = vec![p.clone()];
            privileges
                .extend(columns.iter().filter(|(c, ..)| c == t).map(|(_, kind, cols)| format!("{kind} ({cols})")));
            format!("| `{t}` | {} |", privileges.join(", "))
        })
        .collect();
    actual.extend(functions.iter().map(|(f,)| format!("| `{f}()` | EXECUTE |")));
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security/tenancy.md")).unwrap();
    let listed: Vec<String> = docs
        .split("<!-- grants:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- grants:end -->").next())
        .expect("the page has the grants table")
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed,
        actual,
        "docs/security/tenancy.md's grants table, as the catalogue has it:\n{}",
        actual.join("\n")
    );
}
