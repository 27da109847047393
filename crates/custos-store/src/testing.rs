//! Helpers for tests that need a real database: each test gets its own.
//!
//! PostgreSQL tests read the server's admin URL from `CUSTOS_TEST_DATABASE_URL`
//! (`scripts/test.sh` starts a throwaway cluster and sets it) and create a fresh
//! database per test, so tests run in parallel without sharing state.

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

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_url() -> String {
    let admin = postgres_admin_url();
    let name = format!("custos_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await.expect("connecting to the test PostgreSQL server");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("creating a test database");
    let mut url = url::Url::parse(&admin).expect("CUSTOS_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}
