//! The platform families of `/metrics`: derived from what tenants reported, the same
//! from a restarted process, valid for promtool, and bounded by the series cap.

use custos_model::Timestamp;
use custos_server::ServerConfig;
use serde_json::json;

use crate::metrics::{openmetrics_check, promtool_check, scrape_all, value};
use crate::on_both_backends;
use crate::support::{Backend, JSON, NDJSON, TestApp, ndjson};

on_both_backends!(platform_families_follow_what_tenants_report);

fn minutes_ago(minutes: i64) -> String {
    Timestamp::from_micros(Timestamp::now().as_micros() - minutes * 60_000_000).to_string()
}

async fn platform_families_follow_what_tenants_report(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let put = |id: &str, body: serde_json::Value| {
        let (app, token, id) = (&app, &token, id.to_owned());
        async move {
            let response = app.put_json(token, &format!("/v1/tenants/acme/components/{id}"), &body).await;
            assert!(response.status().is_success(), "{id}: {}", response.text().await.unwrap());
        }
    };
    put("okta-prod", json!({"kind": "connector", "provider": "okta"})).await;
    put("gws", json!({"kind": "connector", "provider": "google"})).await;
    put("ingest", json!({"kind": "ingestion_queue"})).await;
    put("splunk", json!({"kind": "siem_destination", "provider": "splunk"})).await;

    let sync = |id: &str, status: &str, finished: &str| {
        json!({"id": id, "integration_id": "okta-prod", "triggered_by": "scheduled", "status": status,
               "events_ingested": 500, "duration_ms": 2000, "started_at": minutes_ago(30), "finished_at": finished})
    };
    let last_success = minutes_ago(10);
    let syncs = ndjson(&[
        sync("s1", "succeeded", &minutes_ago(20)),
        sync("s2", "succeeded", &last_success),
        sync("s3", "failed", &minutes_ago(5)),
    ]);
    assert_eq!(app.post(&token, "/v1/tenants/acme/connector-syncs", NDJSON, syncs).await.status(), 200);
    let run = |id: &str, status: &str, ms: i64| {
        json!({"id": id, "rule_key": "okta.impossible_travel", "status": status, "events_evaluated": 100,
               "findings_created": 2, "findings_resolved": 1, "duration_ms": ms, "started_at": minutes_ago(3)})
    };
    let runs = ndjson(&[run("r1", "succeeded", 40), run("r2", "succeeded", 700), run("r3", "failed", 12_000)]);
    assert_eq!(app.post(&token, "/v1/tenants/acme/rule-runs", NDJSON, runs.clone()).await.status(), 200);
    // A re-send counts nothing twice.
    assert_eq!(app.post(&token, "/v1/tenants/acme/rule-runs", NDJSON, runs).await.status(), 200);
    let delivery = |id: &str, status: &str, attempt: i64| json!({"id": id, "destination_id": "splunk", "status": status, "attempt": attempt, "attempted_at": minutes_ago(1)});
    let deliveries =
        ndjson(&[delivery("d1", "succeeded", 1), delivery("d2", "retrying", 2), delivery("d3", "dead_lettered", 5)]);
    assert_eq!(app.post(&token, "/v1/tenants/acme/deliveries", NDJSON, deliveries).await.status(), 200);
    for (queue, pending) in [("ingest", 40), ("splunk", 7)] {
        let snapshot = json!({"depth": {"pending": pending, "dead_lettered": 3}, "oldest_item_age_ms": 90_000, "processed_total": 1000, "failed_total": 12});
        let path = format!("/v1/tenants/acme/components/{queue}/snapshots");
        assert_eq!(app.post(&token, &path, JSON, snapshot.to_string()).await.status(), 201);
    }

    let (_, text) = scrape_all(&app, None).await;
    let t = r#"tenant="acme""#;
    let okta = format!(r#"{t},provider="okta",integration_id="okta-prod""#);
    let expected_last = Timestamp::parse("t", &last_success).unwrap().as_micros() as f64 / 1e6;
    assert_eq!(
        value(&text, &format!("custos_connector_last_success_timestamp_seconds{{{okta}}}")),
        Some(expected_last),
        "{text}"
    );
    let age = value(&text, &format!("custos_connector_last_sync_seconds{{{okta}}}")).unwrap();
    assert!((599.0..700.0).contains(&age), "10 minutes since the last success: {age}");
    assert_eq!(
        value(&text, &format!(r#"custos_connector_sync_duration_seconds_count{{{okta},status="succeeded"}}"#)),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"custos_connector_sync_duration_seconds_bucket{{le="1.0",{okta},status="succeeded"}}"#)
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"custos_connector_sync_duration_seconds_bucket{{le="2.5",{okta},status="succeeded"}}"#)
        ),
        Some(2.0)
    );
    assert_eq!(value(&text, &format!("custos_connector_events_ingested_total{{{okta}}}")), Some(1500.0));
    assert_eq!(value(&text, &format!(r#"custos_connector_freshness_state{{{okta},state="green"}}"#)), Some(1.0));
    assert_eq!(value(&text, &format!(r#"custos_connector_freshness_state{{{okta},state="red"}}"#)), Some(0.0));
    let gws = format!(r#"{t},provider="google",integration_id="gws""#);
    assert_eq!(
        value(&text, &format!(r#"custos_connector_freshness_state{{{gws},state="unknown"}}"#)),
        Some(1.0),
        "never synced"
    );

    let rule = format!(r#"{t},rule_key="okta.impossible_travel""#);
    assert_eq!(
        value(&text, &format!(r#"custos_rule_execution_duration_seconds_count{{{rule},status="succeeded"}}"#)),
        Some(2.0)
    );
    assert_eq!(
        value(&text, &format!(r#"custos_rule_execution_duration_seconds_sum{{{rule},status="succeeded"}}"#)),
        Some(0.74)
    );
    assert_eq!(
        value(&text, &format!(r#"custos_rule_execution_duration_seconds_bucket{{le="10.0",{rule},status="failed"}}"#)),
        Some(0.0)
    );
    assert_eq!(
        value(&text, &format!(r#"custos_rule_execution_duration_seconds_bucket{{le="30.0",{rule},status="failed"}}"#)),
        Some(1.0)
    );
    assert_eq!(value(&text, &format!("custos_rule_findings_created_total{{{rule}}}")), Some(6.0));
    assert_eq!(value(&text, &format!("custos_rule_findings_resolved_total{{{rule}}}")), Some(3.0));
    assert_eq!(value(&text, &format!("custos_rule_events_evaluated_total{{{rule}}}")), Some(300.0));

    let siem = format!(r#"{t},destination_kind="siem""#);
    assert_eq!(value(&text, &format!(r#"custos_delivery_attempts_total{{{siem},status="dead_lettered"}}"#)), Some(1.0));
    assert_eq!(
        value(&text, &format!(r#"custos_delivery_retry_depth_bucket{{le="4.0",{siem},status="dead_lettered"}}"#)),
        Some(0.0)
    );
    assert_eq!(
        value(&text, &format!(r#"custos_delivery_retry_depth_bucket{{le="5.0",{siem},status="dead_lettered"}}"#)),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"custos_siem_delivery_queue_depth{{{t},destination_id="splunk",status="dead_lettered"}}"#)
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&text, &format!(r#"custos_siem_delivery_queue_depth{{{t},destination_id="splunk",status="pending"}}"#)),
        Some(7.0)
    );
    assert_eq!(
        value(&text, &format!(r#"custos_ingestion_queue_depth{{{t},queue="ingest",status="pending"}}"#)),
        Some(40.0)
    );
    assert_eq!(
        value(&text, &format!(r#"custos_ingestion_queue_oldest_item_age_seconds{{{t},queue="ingest"}}"#)),
        Some(90.0)
    );
    assert_eq!(value(&text, &format!(r#"custos_ingestion_queue_processed_total{{{t},queue="ingest"}}"#)), Some(1000.0));
    assert_eq!(value(&text, &format!(r#"custos_ingestion_queue_failed_total{{{t},queue="ingest"}}"#)), Some(12.0));
    assert!(
        !text.contains(r#"custos_ingestion_queue_depth{tenant="acme",queue="splunk""#),
        "a destination's queue is a delivery queue"
    );

    assert_eq!(
        value(&text, &format!(r#"custos_api_token_invocations_total{{{t},scope="ingest:write",status="201"}}"#)),
        Some(6.0),
        "4 components created, 2 snapshots"
    );
    assert_eq!(value(&text, &format!(r#"custos_metrics_series{{{t},family="rule_runs"}}"#)), Some(2.0));
    assert_eq!(value(&text, &format!(r#"custos_metrics_series_dropped_total{{{t},family="rule_runs"}}"#)), Some(0.0));
    assert!(!text.contains(r#"tenant="globex",rule_key"#), "globex reported nothing");
    let (backend, max) = match app.store.backend() {
        custos_store::Backend::Sqlite => ("sqlite", 5.0),
        custos_store::Backend::Postgres => ("postgres", 16.0),
    };
    assert_eq!(value(&text, &format!(r#"custos_db_pool_max_connections{{backend="{backend}"}}"#)), Some(max));
    let open = value(&text, &format!(r#"custos_db_pool_connections{{backend="{backend}",state="idle"}}"#)).unwrap()
        + value(&text, &format!(r#"custos_db_pool_connections{{backend="{backend}",state="in_use"}}"#)).unwrap();
    assert!((1.0..=max).contains(&open), "{open} connections open");
    promtool_check(&text);
    let (_, openmetrics) = scrape_all(&app, Some("application/openmetrics-text;version=1.0.0")).await;
    openmetrics_check(&openmetrics);

    // A restarted process (or another replica) serves the same platform values.
    let other = app.another_server(ServerConfig::default()).await;
    let scraper = app.token(&["obs:read#tenant/*"]).await;
    let again =
        app.client.get(format!("{other}/metrics")).bearer_auth(&scraper).send().await.unwrap().text().await.unwrap();
    let platform = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(r#"tenant="acme""#) && !l.contains("_last_sync_seconds") && !l.contains("api_token"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(platform(&again), platform(&text));
}

/// The cap bounds what a tenant can make custos expose: 100,000 distinct rule keys
/// give 10,000 series and one `other`, and the dropped counter says how much folded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_cap_holds_under_100_000_rule_keys() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    let started_at = minutes_ago(1);
    for batch in 0..2 {
        let body: String = (0..50_000)
            .map(|i| {
                let n = batch * 50_000 + i;
                format!(
                    "{{\"id\":\"r{n}\",\"rule_key\":\"rule.{n:06}\",\"status\":\"succeeded\",\"duration_ms\":5,\"started_at\":\"{started_at}\"}}\n"
                )
            })
            .collect();
        assert_eq!(app.post(&token, "/v1/tenants/acme/rule-runs", NDJSON, body).await.status(), 200);
    }
    let (_, text) = scrape_all(&app, None).await;
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(r#"custos_rule_execution_duration_seconds_count{tenant="acme""#))
        .collect();
    assert_eq!(counts.len(), 10_001, "10,000 series and other");
    assert_eq!(
        value(
            &text,
            r#"custos_rule_execution_duration_seconds_count{tenant="acme",rule_key="other",status="succeeded"}"#
        ),
        Some(90_000.0)
    );
    assert_eq!(
        value(&text, r#"custos_metrics_series_dropped_total{tenant="acme",family="rule_runs"}"#),
        Some(90_000.0)
    );
    assert_eq!(value(&text, r#"custos_metrics_series{tenant="acme",family="rule_runs"}"#), Some(10_000.0));
}
