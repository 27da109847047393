use custos_server::ServerConfig;

use crate::support::{Backend, JSON, NDJSON, TestApp, error, ndjson, rule_run, run_checker};

/// `/metrics` without a token: custos's own signals only.
pub(crate) async fn scrape(app: &TestApp, accept: Option<&str>) -> (String, String) {
    scrape_with(app, accept, None).await
}

/// `/metrics` with a token that reads every tenant: the tenant families too.
pub(crate) async fn scrape_all(app: &TestApp, accept: Option<&str>) -> (String, String) {
    let token = app.token(&["obs:read#tenant/*"]).await;
    scrape_with(app, accept, Some(&token)).await
}

async fn scrape_with(app: &TestApp, accept: Option<&str>, token: Option<&str>) -> (String, String) {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    (content_type, response.text().await.unwrap())
}

/// The value of the sample whose name and labels are exactly `series`.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

#[tokio::test]
async fn requests_ingest_outcomes_and_auth_failures_are_counted() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    let path = "/v1/tenants/acme/rule-runs";
    assert_eq!(app.post(&token, path, JSON, rule_run("r1", 1).to_string()).await.status(), 201);
    app.post(&token, path, NDJSON, ndjson(&[rule_run("r1", 1), rule_run("r2", 2), rule_run("r3", 3)])).await;
    let mut bad = rule_run("r4", 4);
    bad["status"] = serde_json::json!("exploded");
    error(app.post(&token, path, NDJSON, ndjson(&[rule_run("r5", 5), bad])).await, 422, "invalid_field").await;
    error(app.post("cst_nope", path, JSON, "{}").await, 401, "unauthorized").await;
    error(app.get(&token, path).await, 403, "forbidden").await;

    let (content_type, text) = scrape(&app, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let route = r#"route="/v1/tenants/{tenant}/rule-runs""#;
    assert_eq!(
        value(&text, &format!(r#"custos_http_requests_total{{method="POST",{route},status="201"}}"#)),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &format!(r#"custos_http_requests_total{{method="POST",{route},status="200"}}"#)),
        Some(1.0)
    );
    assert_eq!(
        value(&text, &format!(r#"custos_http_request_duration_seconds_count{{method="POST",{route},status="422"}}"#)),
        Some(1.0)
    );
    assert_eq!(value(&text, r#"custos_ingest_records_total{kind="rule_run",outcome="inserted"}"#), Some(3.0));
    assert_eq!(value(&text, r#"custos_ingest_records_total{kind="rule_run",outcome="duplicate"}"#), Some(1.0));
    assert_eq!(value(&text, r#"custos_ingest_records_total{kind="rule_run",outcome="rejected"}"#), Some(2.0));
    assert_eq!(value(&text, r#"custos_auth_failures_total{reason="unknown_token"}"#), Some(1.0));
    assert_eq!(value(&text, r#"custos_auth_failures_total{reason="missing_scope"}"#), Some(1.0));
    assert_eq!(value(&text, "custos_http_requests_in_flight"), Some(1.0), "the scrape itself is in flight");
    assert!(text.lines().any(|l| l.starts_with("custos_build_info{version=")), "{text}");
    // Two ingest calls reached the store (the invalid body never did). The valid
    // token was read from the store once (its repeats came from the token cache), the
    // unknown one once.
    assert_eq!(
        value(&text, r#"custos_store_operation_duration_seconds_count{operation="record_rule_runs"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&text, r#"custos_store_operation_duration_seconds_count{operation="token_by_secret_hash"}"#),
        Some(2.0)
    );
    assert!(!text.contains("/v1/tenants/acme"), "raw paths never become label values");
}

#[tokio::test]
async fn openmetrics_exemplars_carry_the_callers_trace_id() {
    let app = TestApp::start(Backend::Sqlite).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    app.client
        .get(app.url("/health/liveness"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let (content_type, text) = scrape(&app, Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")).await;
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(text.ends_with("# EOF\n"));
    let bucket = text
        .lines()
        .find(|l| {
            l.starts_with("custos_http_request_duration_seconds_bucket{")
                && l.contains(r#"route="/health/liveness""#)
                && l.contains(" # {")
        })
        .unwrap_or_else(|| panic!("no exemplar on the liveness histogram:\n{text}"));
    assert!(bucket.contains(&format!(r#"# {{trace_id="{trace_id}"}}"#)), "{bucket}");
    openmetrics_check(&text);
}

/// Asserts that an independent OpenMetrics parser (the Python `prometheus_client`
/// package's strict one, installed by scripts/test.sh) accepts `text` whole.
pub(crate) fn openmetrics_check(text: &str) {
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
                  families = list(text_string_to_metric_families(sys.stdin.read()))\nprint(len(families))";
    let (ok, stdout, stderr) = run_checker("python3", &["-c", script], Some(text));
    assert!(ok, "the OpenMetrics parser refused the exposition:\n{stderr}\n{text}");
    let families: usize = stdout.trim().parse().unwrap();
    assert!(families > 5, "parsed only {families} families");
}

#[tokio::test]
async fn promtool_accepts_the_classic_format() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    app.post(&token, "/v1/tenants/acme/rule-runs", JSON, rule_run("r1", 1).to_string()).await;
    let (_, text) = scrape(&app, None).await;
    promtool_check(&text);
}

/// Asserts that `promtool check metrics` finds nothing to say about `text`.
pub(crate) fn promtool_check(text: &str) {
    let (ok, stdout, stderr) = run_checker("promtool", &["check", "metrics"], Some(text));
    let report = format!("{stdout}{stderr}");
    assert!(ok, "promtool refused the exposition:\n{report}\n{text}");
    assert!(report.trim().is_empty(), "promtool found problems:\n{report}");
}

#[tokio::test]
async fn the_metrics_token_gates_the_endpoint() {
    let config = ServerConfig { metrics_token: Some("s3cret-metrics".into()), ..ServerConfig::default() };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    error(app.client.get(app.url("/metrics")).send().await.unwrap(), 401, "unauthorized").await;
    error(app.client.get(app.url("/metrics")).bearer_auth("wrong").send().await.unwrap(), 401, "unauthorized").await;
    let empty = app.client.get(app.url("/metrics")).header("authorization", "Bearer ").send().await.unwrap();
    error(empty, 401, "unauthorized").await;
    let response = app.client.get(app.url("/metrics")).bearer_auth("s3cret-metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains(r#"custos_auth_failures_total{reason="metrics_token"} 3"#));
    assert!(!text.contains("tenant_families_withheld"), "the metrics token sees everything");
}

/// A network peer without a token sees custos's own signals and nothing that names a
/// tenant; the tenant families need the metrics token, a token reading every tenant,
/// or the metrics port. A scrape flood reads the store at most once a second.
#[tokio::test]
async fn tenant_families_are_withheld_from_an_open_scrape() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    assert_eq!(app.post(&token, "/v1/tenants/acme/rule-runs", JSON, rule_run("r1", 1).to_string()).await.status(), 201);
    app.get(&token, "/v1/tenants/acme/components").await;

    let (_, open) = scrape(&app, None).await;
    assert!(!open.contains("tenant="), "an open scrape names no tenant:\n{open}");
    assert!(!open.contains("acme"), "{open}");
    assert_eq!(value(&open, "custos_metrics_tenant_families_withheld"), Some(1.0), "{open}");
    assert!(
        open.contains(
            "# HELP custos_metrics_tenant_families_withheld 1: this scrape carries custos's own signals only"
        )
    );
    assert!(value(&open, r#"custos_ingest_records_total{kind="rule_run",outcome="inserted"}"#) == Some(1.0));
    assert_eq!(
        value(&open, r#"custos_db_pool_max_connections{backend="sqlite"}"#),
        Some(5.0),
        "the pool is custos's own"
    );
    promtool_check(&open);

    let (_, all) = scrape_all(&app, None).await;
    assert!(all.contains(r#"custos_rule_execution_duration_seconds_count{tenant="acme""#), "{all}");
    assert!(all.contains(r#"custos_api_token_invocations_total{tenant="acme""#), "{all}");
    assert!(!all.contains("tenant_families_withheld"));

    // One tenant's token is not enough, nor is a wrong one: a 401, not a silent subset.
    let reader = app.token(&["obs:read#tenant/acme"]).await;
    for bearer in [reader.as_str(), "cst_unknown"] {
        let response = app.client.get(app.url("/metrics")).bearer_auth(bearer).send().await.unwrap();
        error(response, 401, "unauthorized").await;
    }

    // The metrics port serves everything without a token.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = format!("http://{}/metrics", listener.local_addr().unwrap());
    let router = custos_server::metrics_router(app.state.clone());
    tokio::spawn(custos_server::serve_router(listener, router, std::future::pending()));
    let text = app.client.get(&port).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"tenant="acme""#), "{text}");

    // Twenty scrapes at once read each tenant's series once, or once more for each
    // second they took.
    let loads = |text: &str| {
        value(text, r#"custos_store_operation_duration_seconds_count{operation="metric_series"}"#).unwrap_or(0.0)
    };
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = loads(&app.client.get(&port).send().await.unwrap().text().await.unwrap());
    let started = std::time::Instant::now();
    let flood: Vec<_> = (0..20).map(|_| app.client.get(&port).send()).collect();
    for response in futures::future::join_all(flood).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let seconds = started.elapsed().as_secs_f64().ceil();
    let after = loads(&app.client.get(&port).send().await.unwrap().text().await.unwrap());
    let tenants = 2.0;
    assert!(
        after - before <= tenants * (seconds + 1.0),
        "{} store reads for 20 scrapes in {seconds} s",
        after - before
    );
}

/// A Prometheus server scraping one target every second, stopped on drop.
pub(crate) struct Prometheus {
    child: std::process::Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scraping `target` with `token` as its bearer, when given (as
    /// `deploy/prometheus/prometheus.yml` shows).
    pub(crate) fn start(target: &str, token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let authorization =
            token.map(|t| format!("    authorization: {{type: Bearer, credentials: \"{t}\"}}\n")).unwrap_or_default();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: custos\n    static_configs: [{{targets: [\"{target}\"]}}]\n{authorization}"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus is installed by scripts/test.sh (Debian package prometheus)");
        Prometheus { child, base: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The value of an instant query once it has one (polls for up to 60 s).
    pub(crate) async fn query_until(&self, client: &reqwest::Client, promql: &str, expected: f64) -> f64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut last = f64::NAN;
        while std::time::Instant::now() < deadline {
            let response = client.get(format!("{}/api/v1/query", self.base)).query(&[("query", promql)]).send().await;
            if let Ok(response) = response
                && let Ok(body) = response.json::<serde_json::Value>().await
                && let Some(value) = body["data"]["result"][0]["value"][1].as_str()
            {
                last = value.parse().unwrap();
                if last == expected {
                    return last;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus scrapes a running custos and answers a query with a value custos
/// ingested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_custos() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    let runs: Vec<_> = (0..7).map(|i| rule_run(&format!("r{i}"), i)).collect();
    assert_eq!(app.post(&token, "/v1/tenants/acme/rule-runs", NDJSON, ndjson(&runs)).await.status(), 200);
    let prometheus = Prometheus::start(app.base.trim_start_matches("http://"), None);
    let client = reqwest::Client::new();
    assert_eq!(prometheus.query_until(&client, r#"up{job="custos"}"#, 1.0).await, 1.0, "the scrape succeeded");
    let inserted = r#"custos_ingest_records_total{job="custos",kind="rule_run",outcome="inserted"}"#;
    assert_eq!(prometheus.query_until(&client, inserted, 7.0).await, 7.0);
}
