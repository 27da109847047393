use custos_server::ServerConfig;

use crate::support::{Backend, JSON, NDJSON, TestApp, error, json, ndjson, rule_run};

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = TestApp::start(Backend::Sqlite).await;
    error(app.client.get(app.url("/nope")).send().await.unwrap(), 404, "not_found").await;
    error(app.client.delete(app.url("/v1/tenants/acme/rule-runs")).send().await.unwrap(), 405, "method_not_allowed")
        .await;
}

#[tokio::test]
async fn request_ids_and_trace_context_are_honoured_and_returned() {
    let app = TestApp::start(Backend::Sqlite).await;
    let response = app
        .client
        .get(app.url("/health/liveness"))
        .header("x-request-id", "my-request-42")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "my-request-42");
    let traceparent = response.headers()["traceparent"].to_str().unwrap();
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
    assert!(!traceparent.contains("00f067aa0ba902b7"), "the server answers with its own span id");
    let generated = app.client.get(app.url("/health/liveness")).send().await.unwrap();
    assert_eq!(generated.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn health_probes() {
    let app = TestApp::start(Backend::Sqlite).await;
    for path in ["/health/liveness", "/health/readiness"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/health+json");
        let (status, body) = json(response).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("pass")), "{path}");
    }
}

#[tokio::test]
async fn body_and_batch_limits_are_413() {
    let config = ServerConfig { max_body_bytes: 4096, max_batch_records: 5, ..ServerConfig::default() };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let path = "/v1/tenants/acme/rule-runs";
    let six: Vec<_> = (0..6).map(|i| rule_run(&format!("r{i}"), i)).collect();
    let err = error(app.post(&token, path, NDJSON, ndjson(&six)).await, 413, "payload_too_large").await;
    assert!(err["message"].as_str().unwrap().contains("more than 5 records"));
    let big: Vec<_> = (0..5)
        .map(|i| {
            let mut r = rule_run(&format!("r{i}"), i);
            r["context"] = serde_json::json!({"event": "e".repeat(700)});
            r
        })
        .collect();
    let err = error(app.post(&token, path, NDJSON, ndjson(&big)).await, 413, "payload_too_large").await;
    assert!(err["message"].as_str().unwrap().contains("4096 bytes"));
    // A chunked body (no Content-Length) over the limit is refused as it streams in.
    let chunks: Vec<Result<String, std::io::Error>> = big.iter().map(|r| Ok(format!("{r}\n"))).collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    error(app.post(&token, path, NDJSON, streamed).await, 413, "payload_too_large").await;
    let (_, page) = json(app.get(&token, path).await).await;
    assert!(page["items"].as_array().unwrap().is_empty());
    assert_eq!(app.post(&token, path, JSON, rule_run("ok", 1).to_string()).await.status(), 201);
}

#[tokio::test]
async fn oversized_context_is_truncated_with_a_marker() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let mut run = rule_run("r1", 1);
    run["context"] = serde_json::json!({"event": "x".repeat(20_000)});
    assert_eq!(app.post(&token, "/v1/tenants/acme/rule-runs", JSON, run.to_string()).await.status(), 201);
    let (_, page) = json(app.get(&token, "/v1/tenants/acme/rule-runs").await).await;
    let context = &page["items"][0]["context"];
    assert_eq!(context["_custos_truncated"], true);
    assert!(context["original_bytes"].as_u64().unwrap() > 20_000);
}

/// Every route the router serves is in the OpenAPI document, with its security.
#[tokio::test]
async fn openapi_describes_every_endpoint() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (status, doc) = json(app.client.get(app.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("/v1/tenants/{tenant}/components", vec!["get"]),
        ("/v1/tenants/{tenant}/components/{component}", vec!["get", "put"]),
        ("/v1/tenants/{tenant}/components/{component}/snapshots", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/freshness-policies", vec!["get"]),
        ("/v1/tenants/{tenant}/freshness-policies/{provider}", vec!["put"]),
        ("/v1/tenants/{tenant}/rule-runs", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/connector-syncs", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/deliveries", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/snapshots", vec!["get"]),
        ("/v1/tenants/{tenant}/jobs", vec!["get"]),
        ("/v1/tenants/{tenant}/jobs/{job}", vec!["get"]),
        ("/v1/tenants/{tenant}/jobs/{job}/start", vec!["post"]),
        ("/v1/tenants/{tenant}/jobs/{job}/success", vec!["post"]),
        ("/v1/tenants/{tenant}/jobs/{job}/fail", vec!["post"]),
        ("/v1/tenants/{tenant}/jobs/{job}/exit/{code}", vec!["post"]),
        ("/v1/tenants/{tenant}/jobs/{job}/pause", vec!["post"]),
        ("/v1/tenants/{tenant}/jobs/{job}/resume", vec!["post"]),
        ("/v1/tenants/{tenant}/jobs/{job}/pings", vec!["get"]),
        ("/v1/tenants/{tenant}/jobs/{job}/flips", vec!["get"]),
        ("/v1/tenants/{tenant}/timeline/events", vec!["post"]),
        ("/v1/tenants/{tenant}/timeline", vec!["get"]),
        ("/v1/tenants/{tenant}/timeline/{event_id}", vec!["get"]),
        ("/v1/tenants/{tenant}/timeline/checkpoint", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/timeline/proof/consistency", vec!["get"]),
        ("/v1/tenants/{tenant}/timeline/proof/inclusion", vec!["get"]),
        ("/v1/tenants/{tenant}/timeline/export", vec!["get"]),
        ("/v1/tenants/{tenant}/audit/events", vec!["post"]),
        ("/v1/tenants/{tenant}/audit", vec!["get"]),
        ("/v1/tenants/{tenant}/audit/{event_id}", vec!["get"]),
        ("/v1/tenants/{tenant}/audit/checkpoint", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/audit/proof/consistency", vec!["get"]),
        ("/v1/tenants/{tenant}/audit/proof/inclusion", vec!["get"]),
        ("/v1/tenants/{tenant}/audit/export", vec!["get"]),
        ("/v1/keys", vec!["get"]),
        ("/v1/tenants/{tenant}/holds", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/holds/{hold}", vec!["delete"]),
        ("/v1/tenants/{tenant}/traces/{trace_id}", vec!["get"]),
        ("/v1/incidents", vec!["get", "post"]),
        ("/v1/incidents/{incident}", vec!["get"]),
        ("/v1/incidents/{incident}/updates", vec!["post"]),
        ("/v1/tenants/{tenant}/incidents", vec!["get"]),
        ("/v1/maintenance", vec!["get", "post"]),
        ("/v1/maintenance/{window}", vec!["delete"]),
        ("/v1/tenants/{tenant}/maintenance", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/maintenance/{window}", vec!["delete"]),
        ("/status", vec!["get"]),
        ("/status.json", vec!["get"]),
        ("/status/badge.svg", vec!["get"]),
        ("/health", vec!["get"]),
        ("/health/liveness", vec!["get"]),
        ("/health/readiness", vec!["get"]),
        ("/openapi.json", vec!["get"]),
        ("/metrics", vec!["get"]),
        ("/v1/attestations/verify", vec!["post"]),
        ("/v1/tenants/{tenant}/attestations", vec!["get", "post"]),
        ("/v1/tenants/{tenant}/jobs/{job}/capsule", vec!["post"]),
        ("/v1/tenants/{tenant}/evidence/cases/{case}", vec!["get"]),
        ("/v1/tenants/{tenant}/evidence/cases/{case}/artifacts/{name}", vec!["put"]),
        ("/v1/tenants/{tenant}/evidence/holds", vec!["get"]),
        ("/v1/tenants/{tenant}/evidence/retention", vec!["get", "put"]),
        ("/v1/tenants/{tenant}/evidence/holds/{case}", vec!["post", "delete"]),
        ("/v1/tenants/{tenant}/evidence/snapshots", vec!["post"]),
        ("/v1/tenants/{tenant}/evidence/{bundle}", vec!["get"]),
        ("/v1/tenants/{tenant}/evidence/{bundle}/download", vec!["get"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), expected.len(), "{:?}", paths.keys().collect::<Vec<_>>());
    for (path, methods) in expected {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
        for method in methods {
            let operation = &item[method];
            assert!(operation.is_object(), "{method} {path} missing");
            // The published signing keys, and verifying against them, are public:
            // verifiers need no token.
            if path.starts_with("/v1/") && !["/v1/keys", "/v1/attestations/verify"].contains(&path) {
                assert!(operation["security"][0]["bearer"].is_array(), "{method} {path} declares no scope");
                assert!(operation["responses"]["403"].is_object(), "{method} {path} documents no 403");
            }
        }
    }
    assert!(doc["components"]["schemas"]["RuleRunInput"].is_object());
}

/// The shapes clients parse: an error body and a list page (ids and times redacted).
#[tokio::test]
async fn response_shapes_are_stable() {
    let app = TestApp::start(Backend::Sqlite).await;
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let mut bad = rule_run("r1", 1);
    bad["duration_ms"] = serde_json::json!(-5);
    let (_, error) =
        json(app.post(&token, "/v1/tenants/acme/rule-runs", NDJSON, ndjson(&[rule_run("r0", 0), bad])).await).await;
    insta::assert_json_snapshot!("error_body", error, { ".error.request_id" => "[request_id]" });
    app.post(&token, "/v1/tenants/acme/rule-runs", NDJSON, ndjson(&[rule_run("r1", 1), rule_run("r2", 2)])).await;
    let (_, page) = json(app.get(&token, "/v1/tenants/acme/rule-runs?limit=1").await).await;
    insta::assert_json_snapshot!("rule_run_page", page, {
        ".items[].received_at" => "[received_at]",
        ".next_cursor" => "[cursor]",
    });
}

/// A request whose body never finishes arriving: it holds its slot until its sender
/// (returned) is dropped.
fn stalled_body() -> (reqwest::Body, tokio::sync::oneshot::Sender<()>) {
    use futures::StreamExt as _;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let chunks = futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"id\":")) })
        .chain(futures::stream::once(async move {
            let _ = released.await;
            Err(std::io::Error::other("the client gave up"))
        }));
    (reqwest::Body::wrap_stream(chunks), release)
}

/// Too many requests at once are shed at once (503, Retry-After), not queued; a request
/// that takes longer than the timeout is stopped with a 503; probes are answered
/// whatever the load; both refusals are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_and_slowness_are_503_not_a_queue() {
    let config = ServerConfig {
        max_concurrent_requests: 1,
        request_timeout: std::time::Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;

    // One request holds the only slot, its body stalled.
    let (body, release) = stalled_body();
    let url = app.url("/v1/tenants/acme/rule-runs");
    let stalled = {
        let request = app.client.post(&url).bearer_auth(&token).header("content-type", JSON).body(body);
        tokio::spawn(request.send())
    };
    // Wait until it is being served: /metrics (answered whatever the load) counts it in
    // flight, beside the scrape itself.
    for _ in 0..500 {
        let (_, text) = crate::metrics::scrape(&app, None).await;
        if crate::metrics::value(&text, "custos_http_requests_in_flight") == Some(2.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let shed = app.get(&token, "/v1/tenants/acme/components").await;
    assert_eq!(shed.headers()["retry-after"], "1");
    let body = error(shed, 503, "unavailable").await;
    assert!(body["message"].as_str().unwrap().contains("--max-concurrent-requests"), "{body}");
    assert_eq!(app.client.get(app.url("/health/liveness")).send().await.unwrap().status(), 200, "probes pass");

    // The stalled one is stopped at the timeout.
    let stopped = stalled.await.unwrap().unwrap();
    let body = error(stopped, 503, "unavailable").await;
    assert!(body["message"].as_str().unwrap().contains("--request-timeout"), "{body}");
    drop(release);
    // The slot is free again.
    assert_eq!(app.get(&token, "/v1/tenants/acme/components").await.status(), 200);
    let (_, text) = crate::metrics::scrape(&app, None).await;
    assert!(crate::metrics::value(&text, r#"custos_http_requests_shed_total{reason="overloaded"}"#) >= Some(1.0));
    assert_eq!(crate::metrics::value(&text, r#"custos_http_requests_shed_total{reason="timeout"}"#), Some(1.0));
}
