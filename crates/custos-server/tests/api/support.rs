//! `TestApp`: the real router on a loopback port, a real store, and helpers.

use std::sync::Arc;

use custos_model::{Scope, TenantId, Timestamp, token};
use custos_server::{AppState, ServerConfig};
use custos_store::{Store, Tenant, TokenRecord};
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The server's metrics registry (to stand in for a worker, which the API tests do not run).
    pub metrics: Arc<custos_telemetry::Metrics>,
    /// The server's state: its workers registry, its draining switch.
    pub state: AppState,
    /// The PostgreSQL database's URL (its owner), on that backend.
    pub database_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    /// Last: fields drop in order, and the database goes once the server is told to stop.
    _database: Option<custos_store::testing::TestDatabase>,
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl TestApp {
    pub async fn start(backend: Backend) -> Self {
        Self::with_config(backend, ServerConfig::default()).await
    }

    pub async fn with_config(backend: Backend, config: ServerConfig) -> Self {
        Self::with_objects(backend, config, None).await
    }

    /// With an object store, proved writable every `period` by the server's prober.
    pub async fn with_objects(
        backend: Backend,
        config: ServerConfig,
        objects: Option<(custos_store::Objects, std::time::Duration)>,
    ) -> Self {
        let (store, dir, database) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (custos_store::open(None, dir.path()).await.unwrap(), Some(dir), None)
            }
            Backend::Postgres => {
                let database = custos_store::testing::fresh_postgres().await;
                (
                    custos_store::open(Some(database.url()), std::path::Path::new("/nonexistent")).await.unwrap(),
                    None,
                    Some(database),
                )
            }
        };
        for tenant in ["acme", "globex"] {
            store
                .create_tenant(&Tenant {
                    id: TenantId::parse(tenant).unwrap(),
                    name: None,
                    retention_days: 30,
                    created_at: Timestamp::now(),
                })
                .await
                .unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut state = AppState::new(store.clone(), config);
        if let Some((objects, period)) = objects {
            state = state.with_objects(objects);
            custos_server::health::spawn_object_probe(state.clone(), period);
        }
        let metrics = state.metrics.clone();
        let kept = state.clone();
        tokio::spawn(async move {
            custos_server::serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            base,
            client: reqwest::Client::new(),
            store,
            metrics,
            state: kept,
            database_url: database.as_ref().map(|d| d.url().to_owned()),
            _dir: dir,
            _database: database,
            _shutdown: tx,
        }
    }

    /// Another server on the same store, as after a restart or on a second replica;
    /// returns its base URL.
    pub async fn another_server(&self, config: ServerConfig) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(self.store.clone(), config);
        tokio::spawn(async move { custos_server::serve(listener, state, std::future::pending()).await.unwrap() });
        base
    }

    /// Runs SQL as the database's owner: `sqlite` on that backend, `postgres` on the other.
    pub async fn sql(&self, sqlite: &str, postgres: &str) {
        let dir = self._dir.as_ref().map_or_else(|| std::path::PathBuf::from("/nonexistent"), |d| d.path().to_owned());
        let sql = if self.database_url.is_some() { postgres } else { sqlite };
        custos_store::testing::run_sql(self.database_url.as_deref(), &dir, sql).await;
    }

    /// A new token with `scopes` (full scope strings), created in the store.
    pub async fn token(&self, scopes: &[&str]) -> String {
        self.token_with(scopes, None).await
    }

    pub async fn token_with(&self, scopes: &[&str], expires_at: Option<Timestamp>) -> String {
        self.token_record("test", scopes, expires_at).await
    }

    /// A new token named `name`.
    pub async fn token_named(&self, name: &str, scopes: &[&str]) -> String {
        self.token_record(name, scopes, None).await
    }

    async fn token_record(&self, name: &str, scopes: &[&str], expires_at: Option<Timestamp>) -> String {
        let generated = token::generate();
        let scopes: Vec<Scope> = scopes.iter().map(|s| s.parse().unwrap()).collect();
        self.store
            .create_token(&TokenRecord {
                id: generated.id,
                name: name.into(),
                secret_hash: generated.secret_hash,
                scopes,
                created_at: Timestamp::now(),
                expires_at,
                revoked_at: None,
            })
            .await
            .unwrap();
        generated.secret
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(
        &self,
        token: &str,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put_json(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client.put(self.url(path)).bearer_auth(token).json(body).send().await.unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }
}

/// Status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// Asserts a JSON error response and returns its `error` object.
pub async fn error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let request_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let (got, body) = json(response).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["error"]["request_id"].as_str(), request_id.as_deref(), "error bodies carry the request id");
    body["error"].clone()
}

pub fn rule_run(id: &str, minute: u32) -> Value {
    serde_json::json!({
        "id": id, "rule_key": "okta.impossible_travel", "rule_version": "3", "integration_id": "okta-prod",
        "status": "succeeded", "events_evaluated": 120, "findings_created": 1, "duration_ms": 42,
        "started_at": format!("2026-11-22T10:{minute:02}:00Z"), "finished_at": format!("2026-11-22T10:{minute:02}:01Z")
    })
}

pub fn ndjson(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";

/// Declares each test once per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::TestApp::start($crate::support::Backend::Sqlite).await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::TestApp::start($crate::support::Backend::Postgres).await).await })*
        }
    };
}

/// Runs `program` with `stdin` fed to it; returns whether it succeeded, its standard
/// output and its standard error. For the external checkers the suite uses (promtool,
/// Python readers), which `scripts/test.sh` installs.
pub fn run_checker(program: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test.sh installs it)"));
    if let Some(input) = stdin {
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
