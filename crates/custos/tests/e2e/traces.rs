//! Traces from real `custos serve` processes into a real OTLP receiver: the HTTP hop
//! from a caller, the store calls under it, sampling, and a collector that is down.

use crate::common::otlp::{self, Received, SPAN_KIND_CONSUMER, SPAN_KIND_SERVER};
use crate::common::{Server, Store, create_token, rule_run};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn otel_env(endpoint: &str, protocol: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_SERVICE_NAME", "custos-under-test".to_owned()),
    ]
}

fn start(store: &Store, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with_env(store, &[], &env)
}

fn prepared_store() -> (Store, String) {
    let store = Store::sqlite();
    store.ok(&["tenants", "create", "acme"]);
    let token = create_token(&store, &["--tenant", "acme", "--scope", "ingest:write"]);
    (store, token)
}

async fn post(base: &str, token: &str, id: &str, traceparent: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/tenants/acme/rule-runs"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(rule_run(id));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent).header("tracestate", "vendor=abc,other=1");
    }
    request.send().await.unwrap()
}

async fn the_http_hop_and_store_calls_form_one_trace(protocol: &'static str) {
    let received = Received::default();
    let endpoint = match protocol {
        "grpc" => otlp::start_grpc(received.clone()).await,
        _ => otlp::start_http(received.clone()).await,
    };
    let (store, token) = prepared_store();
    let server = start(&store, &otel_env(&endpoint, protocol));

    let response = post(&server.base, &token, "r1", Some(&format!("00-{TRACE}-{CALLER_SPAN}-01"))).await;
    assert_eq!(response.status(), 201);
    let returned = response.headers()["traceparent"].to_str().unwrap().to_owned();

    let request = received.wait_for("for the POST", |s| s.kind == SPAN_KIND_SERVER && s.trace_id == TRACE).await;
    assert_eq!(request.parent_span_id, CALLER_SPAN, "the caller's span is the parent");
    assert_eq!(request.name, "POST /v1/tenants/{tenant}/rule-runs");
    assert_eq!(request.service_name, "custos-under-test");
    assert_eq!(request.trace_state, "vendor=abc,other=1", "tracestate is carried");
    for (key, value) in [
        ("http.request.method", "POST"),
        ("http.route", "/v1/tenants/{tenant}/rule-runs"),
        ("http.response.status_code", "201"),
        ("url.path", "/v1/tenants/acme/rule-runs"),
        ("client.address", "127.0.0.1"),
        ("tenant_id", "acme"),
        ("custos.auth.outcome", "allowed"),
    ] {
        assert_eq!(request.attr(key), Some(value), "{key} on {request:#?}");
    }
    assert_eq!(request.status_code, 0, "a success leaves the status unset");
    assert_eq!(returned, format!("00-{TRACE}-{}-01", request.span_id), "the response names the server span");

    let insert = received.wait_for("for the insert", |s| s.name == "record_rule_runs" && s.trace_id == TRACE).await;
    assert_eq!(insert.parent_span_id, request.span_id, "store calls are children of the request");
    assert_eq!(insert.attr("db.system.name"), Some("sqlite"));

    // A refused request is traced too, and a 4xx is not a server error.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/tenants/acme/rule-runs", server.base))
        .bearer_auth("cst_not-a-token")
        .header("traceparent", format!("00-{}-{CALLER_SPAN}-01", "1".repeat(32)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let refused =
        received.wait_for("for the 401", |s| s.trace_id == "1".repeat(32) && s.kind == SPAN_KIND_SERVER).await;
    assert_eq!(refused.attr("custos.auth.outcome"), Some("unauthenticated"));
    assert_eq!(refused.status_code, 0);

    // The log lines of the request carry the exported span's ids.
    let (_, lines) = server.stop();
    let finished = lines
        .iter()
        .find(|l| l.contains("\"request finished\"") && l.contains(TRACE))
        .unwrap_or_else(|| panic!("no log line for the traced request: {lines:?}"));
    assert!(finished.contains(&format!("\"span_id\":\"{}\"", request.span_id)), "{finished}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_grpc_the_http_hop_and_store_calls_form_one_trace() {
    the_http_hop_and_store_calls_form_one_trace("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_protobuf_the_http_hop_and_store_calls_form_one_trace() {
    the_http_hop_and_store_calls_form_one_trace("http/protobuf").await;
}

/// Parent-based ratio sampling: at ratio 0 a new trace is not exported, but a caller's
/// sampled trace is continued and exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_parent_then_the_ratio() {
    let received = Received::default();
    let endpoint = otlp::start_http(received.clone()).await;
    let (store, token) = prepared_store();
    let mut env = otel_env(&endpoint, "http/protobuf");
    env.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".to_owned()));
    env.push(("OTEL_TRACES_SAMPLER_ARG", "0".to_owned()));
    let server = start(&store, &env);

    let root = post(&server.base, &token, "r1", None).await;
    let unsampled = root.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(unsampled.ends_with("-00"), "a new trace at ratio 0 is not sampled: {unsampled}");
    post(&server.base, &token, "r2", Some(&format!("00-{TRACE}-{CALLER_SPAN}-01"))).await;
    received.wait_for("for the sampled caller", |s| s.trace_id == TRACE).await;
    let root_trace = &unsampled[3..35];
    assert!(received.spans().iter().all(|s| s.trace_id != root_trace), "the unsampled trace was exported");
    drop(server);
}

/// A collector that accepts connections and never answers, then one that refuses them:
/// requests keep succeeding, the spans waiting for export stay under the bound, and
/// what could not be exported is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_requests_nothing() {
    for (protocol, endpoint, counter) in [
        ("http/protobuf", otlp::start_black_hole().await, "custos_trace_spans_dropped_total"),
        ("grpc", "http://127.0.0.1:9".to_owned(), "custos_trace_spans_export_failed_total"),
    ] {
        let (store, token) = prepared_store();
        let mut env = otel_env(&endpoint, protocol);
        env.push(("OTEL_BSP_MAX_QUEUE_SIZE", "50".to_owned()));
        let mut server = start(&store, &env);
        let client = reqwest::Client::new();
        for i in 0..300 {
            let response = post(&server.base, &token, &format!("r{i}"), None).await;
            assert_eq!(response.status(), 201, "{protocol}: request {i}");
        }
        let value = |text: &str, name: &str| -> f64 {
            text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
        };
        let mut text = String::new();
        for _ in 0..100 {
            text = client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
            if value(&text, counter) > 0.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(value(&text, counter) > 0.0, "{protocol}: {counter} stayed 0:\n{text}");
        assert!(value(&text, "custos_trace_spans_pending") <= 50.0, "{protocol}: the bound holds");
        assert_eq!(value(&text, "custos_trace_spans_exported_total"), 0.0);
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
}

/// custos's own outbound calls carry the trace: the demo's simulator (a worker) makes
/// client spans whose `traceparent` the server continues, so one trace runs worker →
/// HTTP client → HTTP server → store. The worker's iterations are timed in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_iteration_traces_through_its_outbound_call() {
    let received = Received::default();
    let endpoint = otlp::start_http(received.clone()).await;
    let store = Store::sqlite();
    let env = otel_env(&endpoint, "http/protobuf");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut demo = Server::spawn(&store, &["demo", "--listen", "127.0.0.1:0", "--rate", "20"], &env);

    let worker = received.wait_for("for a simulator iteration", |s| s.name == "demo_simulator iteration").await;
    let client = received
        .wait_for("for an outbound call of that iteration", |s| {
            s.parent_span_id == worker.span_id && s.kind == otlp::SPAN_KIND_CLIENT
        })
        .await;
    assert_eq!(client.name, "POST");
    assert_eq!(client.attr("http.request.method"), Some("POST"));
    assert_eq!(client.attr("server.address"), Some("127.0.0.1"));
    let server = received
        .wait_for("for the server side of that call", |s| {
            s.parent_span_id == client.span_id && s.kind == SPAN_KIND_SERVER
        })
        .await;
    assert_eq!(server.trace_id, worker.trace_id, "one trace from the worker to the server");
    assert!(server.name.starts_with("POST /v1/tenants/{tenant}/"), "{}", server.name);
    received
        .wait_for("for a store call under it", |s| {
            s.parent_span_id == server.span_id && s.attr("db.system.name") == Some("sqlite")
        })
        .await;

    let metrics = reqwest::get(format!("{}/metrics", demo.base)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with(r#"custos_worker_loop_duration_seconds_count{worker="demo_simulator"}"#)),
        "{metrics}"
    );
    assert!(metrics.contains(r#"custos_worker_last_run_timestamp_seconds{worker="demo_simulator"}"#));
    demo.child.kill().unwrap();
    demo.child.wait().unwrap();
}

/// A ping is stored by a background writer, not the request (a job hop): the request's
/// trace continues in the writer with a child span for that ping, linked to the batch
/// that stored it; the batch links back to the request; the stored ping keeps the
/// trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_handed_to_the_writer_continues_its_request_trace() {
    let received = Received::default();
    let endpoint = otlp::start_http(received.clone()).await;
    let (store, token) = prepared_store();
    let reader = create_token(&store, &["--tenant", "acme", "--scope", "obs:read"]);
    let server = start(&store, &otel_env(&endpoint, "http/protobuf"));
    let client = reqwest::Client::new();
    let response = client
        .put(format!("{}/v1/tenants/acme/components/nightly", server.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"kind": "scheduled_job", "schedule": {"period_seconds": 60}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = client
        .post(format!("{}/v1/tenants/acme/jobs/nightly/success", server.base))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let request = received.wait_for("for the ping", |s| s.kind == SPAN_KIND_SERVER && s.trace_id == TRACE).await;
    let batch = received
        .wait_for("for the writer's batch", |s| {
            s.name == "job-ping-writer batch" && s.links.iter().any(|(trace, _)| trace == TRACE)
        })
        .await;
    assert_eq!(batch.links, vec![(TRACE.to_owned(), request.span_id.clone())], "the batch links to the request span");
    assert_ne!(batch.trace_id, TRACE, "the batch is its own trace, linked, not a child");
    let store_call = received
        .wait_for("for the batch's store call", |s| s.name == "apply_job_events" && s.trace_id == batch.trace_id)
        .await;
    assert_eq!(store_call.parent_span_id, batch.span_id);
    let process = received.wait_for("for the ping's span in the writer", |s| s.name == "job-ping-writer process").await;
    assert_eq!(process.trace_id, TRACE, "the writer continues the request's trace");
    assert_eq!(process.parent_span_id, request.span_id, "as a child of the request's span");
    assert_eq!(process.kind, SPAN_KIND_CONSUMER);
    assert_eq!(process.links, vec![(batch.trace_id.clone(), batch.span_id.clone())], "linked to its batch");

    let pings: serde_json::Value = client
        .get(format!("{}/v1/tenants/acme/jobs/nightly/pings", server.base))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pings["items"][0]["trace_id"], TRACE, "the stored ping keeps its request's trace id");
    server.stop();
}
