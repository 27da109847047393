//! Helpers for tests that need a real database: each test gets its own.
//!
//! PostgreSQL tests read the server's admin URL from `CUSTOS_TEST_DATABASE_URL`
//! (`scripts/test.sh` starts a throwaway cluster and sets it) and create a fresh
//! database per test, so tests run in parallel without sharing state, and drop it
//! when the test ends.

use sqlx::{Connection, Executor, PgConnection};

pub const TEST_DATABASE_URL: &str = "CUSTOS_TEST_DATABASE_URL";

/// The admin URL of the test PostgreSQL server. Panics with instructions when unset:
/// a PostgreSQL test never passes by skipping.
pub fn postgres_admin_url() -> String {
    std::env::var(TEST_DATABASE_URL).unwrap_or_else(|_| {
        panic!(
            "{TEST_DATABASE_URL} is not set: run the suite with scripts/test.sh, which starts PostgreSQL and sets it"
        )
    })
}

/// An empty database on the test server, dropped (with its connections) when this
/// guard is. Keep it alive for as long as the test uses [`TestDatabase::url`]: test
/// databases would otherwise pile up on the cluster, hundreds per run.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    name: String,
    admin: String,
}

/// The login role tests serve as: owns nothing, a member of `custos_app` only (what
/// `docs/security/tenancy.md` tells operators to create).
pub const TEST_LOGIN_ROLE: &str = "custos_test_login";

impl TestDatabase {
    /// The URL of this database, as the superuser of the test server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of this database as [`TEST_LOGIN_ROLE`]: what `custos serve` runs as.
    pub fn app_url(&self) -> String {
        let mut url = url::Url::parse(&self.url).expect("a URL");
        url.set_username(TEST_LOGIN_ROLE).expect("a URL with a user");
        url.to_string()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside a test's runtime, which cannot block on its own futures:
        // the DROP gets a thread and a runtime of its own. Best effort: the cluster is
        // thrown away at the end of the run anyway.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// Creates an empty database on the test server.
pub async fn fresh_postgres() -> TestDatabase {
    let admin = postgres_admin_url();
    let name = format!("custos_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await.expect("connecting to the test PostgreSQL server");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("creating a test database");
    // Cluster-wide roles, created once by whichever test comes first.
    for role in ["CREATE ROLE custos_app NOLOGIN", &format!("CREATE ROLE {TEST_LOGIN_ROLE} LOGIN IN ROLE custos_app")] {
        let create =
            format!("DO $$ BEGIN {role}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$");
        conn.execute(sqlx::AssertSqlSafe(create)).await.expect("creating the test roles");
    }
    let mut url = url::Url::parse(&admin).expect("CUSTOS_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    TestDatabase { url: url.to_string(), name, admin }
}

/// Runs `sql` (one or more statements) on a store's database as its owner, below the
/// application: how tests tamper with a log to prove verification notices. SQLite when
/// `database_url` is `None` (the file under `data_dir`).
///
/// # Panics
///
/// When the database cannot be opened or a statement fails.
pub async fn run_sql(database_url: Option<&str>, data_dir: &std::path::Path, sql: &str) {
    match database_url {
        Some(url) => {
            let mut conn = PgConnection::connect(url).await.expect("connecting as the database owner");
            conn.execute(sqlx::AssertSqlSafe(sql.to_owned())).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        None => {
            let path = data_dir.join("custos.db");
            let sql = sql.to_owned();
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open(&path).expect("opening the SQLite database");
                conn.busy_timeout(std::time::Duration::from_secs(10)).expect("setting a busy timeout");
                conn.execute_batch(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            })
            .await
            .expect("the SQL task finished");
        }
    }
}

/// What boto3, an independent S3 client, reads of every object under `prefix` of
/// `bucket` at `endpoint` (moto's S3 in the suite): key (without the prefix) to the
/// `head_object` answer's `field` (`ObjectLockMode`, `ObjectLockLegalHoldStatus`, …),
/// null when absent.
pub fn s3_head_field(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    field: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    const SCRIPT: &str = r#"
import json, sys, boto3
endpoint, bucket, prefix, field = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])]
print(json.dumps({k[len(prefix) + 1:]: s3.head_object(Bucket=bucket, Key=k).get(field) for k in keys}))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", SCRIPT, endpoint, bucket, prefix, field])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "boto3: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("boto3 printed JSON")
}

/// The records of an administrative change as the server builds them (an audit record of
/// `kind` about `resource_id`, and its timeline twin), with fresh ids.
pub fn action_records(tenant: &custos_model::TenantId, kind: &str, resource_id: &str) -> crate::ActionRecords {
    use custos_model::ledger::{AuditActor, AuditOutcome, AuditRecord, TimelineEvent};
    let now = custos_model::Timestamp::now();
    let id = || format!("custos-test-{}", uuid::Uuid::new_v4().simple());
    let timeline = crate::LogAppend::timeline(&TimelineEvent {
        event_id: id(),
        ts: now,
        tenant_id: tenant.clone(),
        project_id: None,
        kind: kind.into(),
        actor: Some("cli:test".into()),
        resource_type: Some("legal_hold".into()),
        resource_id: Some(resource_id.into()),
        trace_id: None,
        details: serde_json::json!({}),
    });
    let audit = crate::LogAppend::audit(&AuditRecord {
        event_id: id(),
        ts: now,
        tenant_id: tenant.clone(),
        actor: AuditActor { id: None, name: Some("cli:test".into()) },
        actor_ip: None,
        action: kind.into(),
        outcome: AuditOutcome::Success,
        resource_type: Some("legal_hold".into()),
        resource_id: Some(resource_id.into()),
        request_id: None,
        trace_id: None,
        details: serde_json::json!({}),
    });
    crate::ActionRecords { audit, timeline }
}
