//! The shipped integrations under `deploy/`: the Prometheus config is valid, every
//! PromQL expression in the Grafana dashboards names a metric custos exposes and is
//! accepted by a real Prometheus scraping custos, and the collector config's pipeline
//! uses only components it defines.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::metrics::{Prometheus, scrape_all};
use crate::support::{Backend, JSON, NDJSON, TestApp, ndjson, rule_run, run_checker};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let (ok, stdout, stderr) = run_checker(program, args, stdin);
    (ok, format!("{stdout}{stderr}"))
}

#[test]
fn the_prometheus_config_is_valid() {
    let config = deploy_dir().join("prometheus/prometheus.yml");
    let (ok, report) = run("promtool", &["check", "config", config.to_str().unwrap()], None);
    assert!(ok, "{report}");
}

#[test]
fn the_collector_pipeline_uses_only_defined_components_and_tail_samples_errors_and_slow_traces() {
    let config = std::fs::read_to_string(deploy_dir().join("otel-collector/config.yaml")).unwrap();
    let script = "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(sys.stdin.read())))";
    let (ok, text) = run("python3", &["-c", script], Some(&config));
    assert!(ok, "the collector config is not YAML: {text}");
    let config: Value = serde_json::from_str(&text).unwrap();
    let pipeline = &config["service"]["pipelines"]["traces"];
    for (section, list) in [("receivers", "receivers"), ("processors", "processors"), ("exporters", "exporters")] {
        let names = pipeline[list].as_array().unwrap_or_else(|| panic!("the traces pipeline lists no {list}"));
        assert!(!names.is_empty());
        for name in names {
            let name = name.as_str().unwrap();
            assert!(config[section].get(name).is_some(), "{list} {name} is used but not defined");
        }
    }
    assert!(
        config["receivers"]["otlp"]["protocols"]["grpc"].is_object()
            && config["receivers"]["otlp"]["protocols"]["http"].is_object()
    );
    let policies: Vec<&str> = config["processors"]["tail_sampling"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert!(policies.contains(&"status_code") && policies.contains(&"latency"), "{policies:?}");
}

/// Reports one of everything, so that every platform family has a series.
async fn seed_every_family(app: &TestApp) {
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    for (id, body) in [
        ("okta", json!({"kind": "connector", "provider": "okta"})),
        ("ingest", json!({"kind": "ingestion_queue"})),
        ("splunk", json!({"kind": "siem_destination"})),
        ("jira", json!({"kind": "workflow_destination"})),
    ] {
        let response = app.put_json(&token, &format!("/v1/tenants/acme/components/{id}"), &body).await;
        assert!(response.status().is_success());
    }
    let now = custos_model::Timestamp::now().to_string();
    let posts = [
        ("/v1/tenants/acme/rule-runs", ndjson(&[rule_run("r1", 1)])),
        (
            "/v1/tenants/acme/connector-syncs",
            ndjson(&[json!({"integration_id": "okta", "triggered_by": "scheduled", "status": "succeeded",
                "events_ingested": 5, "started_at": now, "finished_at": now})]),
        ),
        (
            "/v1/tenants/acme/deliveries",
            ndjson(&[
                json!({"destination_id": "splunk", "status": "succeeded", "attempted_at": now}),
                json!({"destination_id": "jira", "status": "dead_lettered", "attempt": 4, "attempted_at": now}),
            ]),
        ),
    ];
    for (path, body) in posts {
        assert_eq!(app.post(&token, path, NDJSON, body).await.status(), 200, "{path}");
    }
    // A worker iteration (the demo's simulator is the only worker so far).
    app.metrics.observe_worker_iteration("test_worker", 0.01);
    // An auth failure, so custos_auth_failures_total has a series too.
    assert_eq!(app.get("cst_not-a-token", "/v1/tenants/acme/rule-runs").await.status(), 401);
    for queue in ["ingest", "splunk", "jira"] {
        let body = json!({"depth": {"pending": 1}, "oldest_item_age_ms": 10, "processed_total": 3, "failed_total": 1});
        let path = format!("/v1/tenants/acme/components/{queue}/snapshots");
        assert_eq!(app.post(&token, &path, JSON, body.to_string()).await.status(), 201);
    }
}

/// Metric names in a PromQL expression: identifiers in custos's namespace or `process_`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
        } else {
            if (current.starts_with("custos_") || current.starts_with("process_")) && !names.contains(&current) {
                names.push(current.clone());
            }
            current.clear();
        }
    }
    names
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let dir = deploy_dir().join("grafana/dashboards");
    let mut exprs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                exprs.push((format!("{file}: {}", panel["title"]), target["expr"].as_str().unwrap().to_owned()));
            }
        }
    }
    assert!(exprs.len() >= 30, "found only {} dashboard queries", exprs.len());
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_query_only_what_custos_exposes() {
    let app = TestApp::start(Backend::Sqlite).await;
    seed_every_family(&app).await;
    let (_, text) = scrape_all(&app, None).await;
    let exposed: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let exprs = dashboard_exprs();
    for (panel, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{panel}: no custos metric in {expr}");
        for name in names {
            assert!(exposed.contains(name.as_str()), "{panel}: {name} is not exposed by custos (in {expr})");
        }
    }

    // Every expression, with Grafana's variables filled in, is valid PromQL to a real
    // Prometheus that scrapes this custos.
    let scraper = app.token(&["obs:read#tenant/*"]).await;
    let prometheus = Prometheus::start(app.base.trim_start_matches("http://"), Some(&scraper));
    let client = reqwest::Client::new();
    prometheus.query_until(&client, r#"up{job="custos"}"#, 1.0).await;
    for (panel, expr) in &exprs {
        let promql = expr.replace("$tenant", ".*").replace("$__rate_interval", "1m");
        let body: Value = client
            .get(format!("{}/api/v1/query", prometheus.base))
            .query(&[("query", promql.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{panel}: Prometheus refused {promql}: {body}");
    }
    // And a platform value reported above arrives through Prometheus: the workflow
    // destination's queue depth.
    let pending = r#"sum(custos_workflow_delivery_queue_depth{tenant="acme",status="pending"})"#;
    assert_eq!(prometheus.query_until(&client, pending, 1.0).await, 1.0);
}
