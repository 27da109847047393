//! Request logs as operators receive them: one JSON line at start and at finish of
//! every request with the fixed fields filled in, and nothing secret or personal even
//! when a client puts it where custos logs verbatim (the request id it chose).

use custos_model::{Scope, TenantId, Timestamp, token};
use custos_server::{AppState, ServerConfig};
use custos_store::{Tenant, TokenRecord};
use custos_telemetry::{CaptureWriter, LogFormat, LogSettings, json_layer};
use tracing_subscriber::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_carry_the_fixed_fields_and_no_secrets() {
    let buffer = CaptureWriter::default();
    let settings = LogSettings {
        service: "custos".into(),
        version: "test".into(),
        env: "ci".into(),
        instance_id: "i-test".into(),
        format: LogFormat::Json,
        filter: "info".into(),
    };
    tracing_subscriber::registry().with(json_layer(&settings, buffer.clone())).init();

    let dir = tempfile::tempdir().unwrap();
    let store = custos_store::open(None, dir.path()).await.unwrap();
    let acme = TenantId::parse("acme").unwrap();
    store
        .create_tenant(&Tenant { id: acme, name: None, retention_days: 1, created_at: Timestamp::now() })
        .await
        .unwrap();
    let generated = token::generate();
    let scope: Scope = "ingest:write#tenant/acme".parse().unwrap();
    store
        .create_token(&TokenRecord {
            id: generated.id.clone(),
            name: "ci".into(),
            secret_hash: generated.secret_hash.clone(),
            scopes: vec![scope],
            created_at: Timestamp::now(),
            expires_at: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    // The demo's simulator: a token whose requests log their end at debug.
    let simulator = token::generate();
    store
        .create_token(&TokenRecord {
            id: simulator.id.clone(),
            name: "demo-simulator".into(),
            secret_hash: simulator.secret_hash.clone(),
            scopes: vec!["ingest:write#tenant/acme".parse().unwrap()],
            created_at: Timestamp::now(),
            expires_at: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config =
        ServerConfig { env: "ci".into(), quiet_token_ids: vec![simulator.id.clone()], ..ServerConfig::default() };
    let state = AppState::new(store, config);
    tokio::spawn(custos_server::serve(listener, state, std::future::pending()));

    let client = reqwest::Client::new();
    let nosy_request_id = format!("{}-jane.doe@example.com", generated.secret);
    let body = r#"{"id":"r1","rule_key":"k","status":"failed","started_at":"2026-11-22T10:00:00Z"}"#;
    let response = client
        .post(format!("{base}/v1/tenants/acme/rule-runs"))
        .bearer_auth(&generated.secret)
        .header("x-request-id", &nosy_request_id)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // A failing request records its error code and message.
    let response = client
        .post(format!("{base}/v1/tenants/acme/rule-runs"))
        .bearer_auth(&generated.secret)
        .header("x-request-id", "plain-id")
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = client
        .post(format!("{base}/v1/tenants/acme/rule-runs"))
        .bearer_auth(&simulator.secret)
        .header("content-type", "application/json")
        .body(body.replace("r1", "r2"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let text = buffer.contents();
    assert!(!text.contains(&generated.secret), "the token leaked into the logs");
    assert!(!text.contains("jane.doe@example.com"), "an e-mail address leaked into the logs");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let finished: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "request finished").collect();
    assert_eq!(finished.len(), 3, "{text}");
    assert_eq!(finished.iter().map(|l| l["level"].as_str().unwrap()).collect::<Vec<_>>(), ["info", "info", "debug"]);
    assert_eq!(finished[2]["actor"], simulator.id.as_str());
    let ok = finished[0];
    assert_eq!(ok["service"], "custos");
    assert_eq!(ok["env"], "ci");
    assert_eq!(ok["tenant_id"], "acme");
    assert_eq!(ok["actor"], generated.id.as_str());
    assert_eq!(ok["route"], "/v1/tenants/{tenant}/rule-runs");
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["status"], 201);
    assert_eq!(ok["records"], 1);
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(ok["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(ok["span_id"].as_str().unwrap().len(), 16);
    assert!(ok["request_id"].as_str().unwrap().contains("[redacted"), "{}", ok["request_id"]);
    let failed = finished[1];
    assert_eq!((failed["status"].as_u64(), failed["error_code"].as_str()), (Some(415), Some("unsupported_media_type")));
    assert!(failed["error_message"].as_str().unwrap().contains("Content-Type"));
    assert_eq!(failed["request_id"], "plain-id");
    let started: Vec<_> = lines.iter().filter(|l| l["message"] == "request started").collect();
    assert!(!started.is_empty() && started.iter().all(|l| l["level"] == "debug"), "the start is logged at debug");
}
