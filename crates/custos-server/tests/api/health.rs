//! `GET /health` and the readiness probe: the IETF format, time-boxed checks (a stalled
//! database), worker heartbeats (a dead worker), the object store (local, a real S3
//! server, and one that never answers), and draining on shutdown.

use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends!(a_healthy_service_passes_every_check);

/// `/health` as an operator sees it: with a token holding `admin` on every tenant, so
/// each check's `output` is there.
async fn health(app: &TestApp) -> (u16, String, Value) {
    let operator = app.token(&["admin#tenant/*"]).await;
    let response = app.client.get(app.url("/health")).bearer_auth(operator).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    (status, content_type, response.json().await.unwrap())
}

/// The report once it passes: on a busy test machine, opening a fresh pool connection
/// can take longer than a check's 50 ms, which the report rightly calls a failure.
async fn health_once_passing(app: &TestApp) -> (u16, String, Value) {
    let mut last = health(app).await;
    for _ in 0..40 {
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = health(app).await;
    }
    last
}

async fn a_healthy_service_passes_every_check(app: TestApp) {
    let (status, content_type, body) = health_once_passing(&app).await;
    assert_eq!((status, content_type.as_str()), (200, "application/health+json"), "{body}");
    assert_eq!(body["status"], "pass", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["releaseId"].as_str().is_some_and(|r| !r.is_empty()));
    let connectivity = &body["checks"]["database:connectivity"][0];
    assert_eq!(connectivity["status"], "pass");
    assert_eq!(connectivity["componentType"], "datastore");
    assert_eq!(connectivity["observedUnit"], "ms");
    assert_eq!(connectivity["componentId"], app.store.backend().as_str());
    let migrations = &body["checks"]["database:migrations"][0];
    assert_eq!(
        (migrations["status"].as_str(), migrations["observedValue"].as_f64()),
        (Some("pass"), Some(app.store.expected_schema_version() as f64))
    );
    assert!(body["checks"].get("worker:heartbeat").is_none(), "no workers registered");
}

/// A worker that stops beating turns the report to `warn`, then `fail` (503), naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_fails_the_report() {
    let app = TestApp::start(Backend::Sqlite).await;
    app.state.workers.register("alive", Duration::from_secs(60));
    app.state.workers.register("stuck", Duration::from_millis(20));
    app.state.workers.finished_iteration("stuck", Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(250)).await;
    app.state.workers.finished_iteration("alive", Duration::from_millis(1));
    let (status, _, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "fail");
    let workers = body["checks"]["worker:heartbeat"].as_array().unwrap();
    let by_id = |id: &str| workers.iter().find(|w| w["componentId"] == id).unwrap().clone();
    assert_eq!(by_id("alive")["status"], "pass");
    let stuck = by_id("stuck");
    assert_eq!(stuck["status"], "fail");
    assert!(stuck["output"].as_str().unwrap().contains("no iteration for"), "{stuck}");
    assert_eq!(stuck["observedUnit"], "s");
    // The metrics saw the iterations too.
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"custos_worker_loop_duration_seconds_count{worker="stuck"} 1"#), "{metrics}");
}

/// A database that stops answering: the check that waits on it fails at its time box
/// instead of holding the report, and the report says which check it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_database_fails_its_check_not_the_answer() {
    let app = TestApp::start(Backend::Postgres).await;
    let mut owner = sqlx::PgConnection::connect(app.database_url.as_deref().unwrap()).await.unwrap();
    let mut tx = owner.begin().await.unwrap();
    // Every read of the schema version now waits for this transaction.
    sqlx::query("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
    let mut connectivity_passed = false;
    for _ in 0..20 {
        let (status, _, body) = health(&app).await;
        assert_eq!(status, 503, "{body}");
        let migrations = &body["checks"]["database:migrations"][0];
        assert_eq!(migrations["status"], "fail");
        assert_eq!(migrations["output"], "no answer within 50 ms");
        if body["checks"]["database:connectivity"][0]["status"] == "pass" {
            connectivity_passed = true;
            break;
        }
    }
    assert!(connectivity_passed, "the database itself still answers, and its check says so");
    tx.rollback().await.unwrap();
    let (status, _, body) = health_once_passing(&app).await;
    assert_eq!(status, 200, "healthy again once the lock is gone: {body}");
}

/// Polls `/health` until `check` reports `status` (the prober runs in the background).
async fn until_check(app: &TestApp, check: &str, status: &str) -> Value {
    let mut body = Value::Null;
    for _ in 0..100 {
        body = health(app).await.2;
        if body["checks"][check][0]["status"] == status {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{check} never reported {status}: {body}");
}

/// The local object directory (the embedded default) and a real S3-compatible server
/// both pass, proved by a write, a read-back and a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_s3_object_stores_pass_their_probe() {
    let dir = tempfile::tempdir().unwrap();
    let local = custos_store::objects::open(None, dir.path()).unwrap();
    let app =
        TestApp::with_objects(Backend::Sqlite, Default::default(), Some((local, Duration::from_millis(200)))).await;
    let body = until_check(&app, "objectStore:writable", "pass").await;
    assert_eq!(body["checks"]["objectStore:writable"][0]["componentId"], "local", "{body}");
    assert!(
        body["checks"]["worker:heartbeat"].as_array().unwrap().iter().any(|w| w["componentId"] == "object-store-probe")
    );

    let endpoint = std::env::var("CUSTOS_TEST_S3_ENDPOINT")
        .expect("CUSTOS_TEST_S3_ENDPOINT is unset: run the tests with scripts/test.sh, which starts an S3 server");
    let bucket = std::env::var("CUSTOS_TEST_S3_BUCKET").unwrap_or_else(|_| "custos-test".into());
    let s3 = custos_store::objects::open_s3(&format!("s3://{bucket}/health-test"), Some(&endpoint)).unwrap();
    let app = TestApp::with_objects(Backend::Sqlite, Default::default(), Some((s3, Duration::from_millis(200)))).await;
    let body = until_check(&app, "objectStore:writable", "pass").await;
    let check = &body["checks"]["objectStore:writable"][0];
    assert_eq!((check["componentId"].as_str(), check["observedUnit"].as_str()), (Some("s3"), Some("ms")), "{body}");
}

/// An object store that accepts connections and never answers: `/health` still answers
/// at once (it reads the prober's latest result), and fails the check, naming the
/// store, once no probe has finished for three periods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_object_store_fails_its_check_not_the_answer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let stalled = custos_store::objects::open_s3("s3://stalled/prefix", Some(&format!("http://{address}"))).unwrap();
    let app =
        TestApp::with_objects(Backend::Sqlite, Default::default(), Some((stalled, Duration::from_millis(100)))).await;
    let started = std::time::Instant::now();
    let (status, _, body) = health(&app).await;
    assert!(started.elapsed() < Duration::from_secs(1), "the answer does not wait on the store");
    assert_eq!(body["checks"]["objectStore:writable"][0]["status"], "warn", "before any probe finished: {body}");
    assert_eq!(status, 200, "warn is still 200: {body}");
    let body = until_check(&app, "objectStore:writable", "fail").await;
    assert_eq!(body["status"], "fail");
    let output = body["checks"]["objectStore:writable"][0]["output"].as_str().unwrap().to_owned();
    assert!(output.contains("s3://stalled/prefix"), "{output}");

    // Whoever reaches the port without an operator's token sees the check and its status,
    // not the storage location or the error.
    for token in [None, Some(app.token(&["admin#tenant/acme"]).await)] {
        let mut request = app.client.get(app.url("/health"));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let public: Value = request.send().await.unwrap().json().await.unwrap();
        let check = &public["checks"]["objectStore:writable"][0];
        assert_eq!(check["status"], "fail", "{public}");
        assert!(check.get("output").is_none(), "{public}");
        assert!(!public.to_string().contains("stalled"), "{public}");
    }
}

/// Shutting down: readiness fails so load balancers stop sending, liveness still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_draining() {
    let app = TestApp::start(Backend::Sqlite).await;
    let ready = app.client.get(app.url("/health/readiness")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.state.start_draining();
    let ready = app.client.get(app.url("/health/readiness")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["output"], "draining: shutting down");
    assert_eq!(app.client.get(app.url("/health/liveness")).send().await.unwrap().status(), 200);
}
