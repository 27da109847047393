//! What the store suites share: a fresh store of either backend, each test its own
//! database (a temporary SQLite file, or a new PostgreSQL database on the server that
//! `scripts/test.sh` starts).

use std::sync::Arc;

use custos_store::Store;

/// A migrated store, and what must live as long as it does.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _database: Option<custos_store::testing::TestDatabase>,
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = custos_store::open(None, dir.path()).await.unwrap();
    Fixture { store, _dir: Some(dir), _database: None }
}

pub async fn postgres() -> Fixture {
    let database = custos_store::testing::fresh_postgres().await;
    let store = custos_store::open(Some(database.url()), std::path::Path::new("/nonexistent")).await.unwrap();
    Fixture { store, _dir: None, _database: Some(database) }
}
