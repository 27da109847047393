//! The status page: public and tenant views of `/status.json` and `/status`, the badge,
//! maintenance windows, and the evaluator's automatic incidents, driven pass by pass.

use custos_model::Timestamp;
use custos_server::ServerConfig;
use custos_server::status::Evaluator;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, JSON, TestApp, error, json, ndjson};

on_both_backends!(
    the_public_view_names_no_tenant_and_the_tenant_view_needs_its_scope,
    a_stale_connector_opens_an_incident_that_resolves_when_fresh_again,
    maintenance_windows_show_quiet_the_detector_and_validate,
    the_badge_shows_a_component_or_the_whole_page
);

fn hours_ago(hours: f64) -> String {
    Timestamp::from_micros(Timestamp::now().as_micros() - (hours * 3_600_000_000.0) as i64).to_string()
}

async fn register(app: &TestApp, token: &str) {
    for (id, body) in [
        ("okta-prod", json!({"kind": "connector", "provider": "okta", "name": "Okta production"})),
        ("splunk", json!({"kind": "siem_destination", "provider": "splunk"})),
    ] {
        let response = app.put_json(token, &format!("/v1/tenants/acme/components/{id}"), &body).await;
        assert!(response.status().is_success(), "{id}: {}", response.text().await.unwrap());
    }
}

async fn sync(app: &TestApp, token: &str, id: &str, finished_hours_ago: f64) {
    let body = ndjson(&[json!({"id": id, "integration_id": "okta-prod", "triggered_by": "scheduled",
        "status": "succeeded", "started_at": hours_ago(finished_hours_ago + 0.01),
        "finished_at": hours_ago(finished_hours_ago)})]);
    let response = app.post(token, "/v1/tenants/acme/connector-syncs", crate::support::NDJSON, body).await;
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
}

async fn page(app: &TestApp, token: Option<&str>, query: &str) -> (u16, Value) {
    let mut request = app.client.get(app.url(&format!("/status.json{query}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    json(request.send().await.unwrap()).await
}

fn component<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["components"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap()
}

fn tenant_member<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["tenant"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["components"].as_array().unwrap())
        .find(|c| c["id"] == id)
        .unwrap()
}

async fn passes(app: &TestApp, evaluator: &mut Evaluator, n: usize) {
    for _ in 0..n {
        evaluator.pass(&app.state).await.unwrap();
    }
}

async fn the_public_view_names_no_tenant_and_the_tenant_view_needs_its_scope(app: TestApp) {
    let admin = app.token(&["admin#tenant/acme"]).await;
    register(&app, &admin).await;
    sync(&app, &admin, "s1", 0.1).await;
    passes(&app, &mut Evaluator::default(), 1).await;

    let (code, public) = page(&app, None, "").await;
    assert_eq!(code, 200, "{public}");
    let ids: Vec<_> = public["components"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["api", "ingestion", "delivery", "workers", "console"]);
    assert_eq!(public["status"]["indicator"], "none", "{public}");
    assert_eq!(public["status"]["description"], "All Systems Operational");
    let api = component(&public, "api");
    assert_eq!(api["status"], "operational");
    assert_eq!(api["days"].as_array().unwrap().len(), 90);
    assert!(api["status_since"].is_string(), "the evaluator recorded a first state: {api}");
    assert!(public["tenant"].is_null());
    assert_eq!(public["page"]["version"], env!("CARGO_PKG_VERSION"));
    let text = public.to_string();
    for secret in ["acme", "okta", "splunk"] {
        assert!(!text.contains(secret), "the public view names {secret:?}: {text}");
    }
    let html = app.client.get(app.url("/status")).send().await.unwrap();
    assert_eq!(html.status(), 200);
    assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(html.headers()["cache-control"], "public, max-age=30");
    let policy = html.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'none'") && !policy.contains("script-src"), "{policy}");
    assert_eq!(html.headers()["x-content-type-options"], "nosniff");
    let html = html.text().await.unwrap();
    assert!(html.contains("All Systems Operational") && html.contains("Delivery dispatcher"), "{html}");
    assert!(!html.contains("acme") && !html.contains("okta"), "{html}");

    // The tenant's view: its scope, or nothing.
    let (code, _) = page(&app, None, "?tenant=acme").await;
    assert_eq!(code, 401);
    let other = app.token(&["obs:read#tenant/globex"]).await;
    let (code, body) = page(&app, Some(&other), "?tenant=acme").await;
    assert_eq!((code, body["error"]["message"].as_str()), (403, Some("missing scope obs:read#tenant/acme")));
    let reader = app.token(&["obs:read#tenant/acme"]).await;
    let (code, view) = page(&app, Some(&reader), "?tenant=acme").await;
    assert_eq!(code, 200, "{view}");
    let groups: Vec<_> = view["tenant"]["groups"].as_array().unwrap().iter().map(|g| g["id"].clone()).collect();
    assert_eq!(groups, [json!("connectors"), json!("destinations")]);
    let okta = tenant_member(&view, "okta-prod");
    assert_eq!((okta["name"].as_str(), okta["status"].as_str()), (Some("Okta production"), Some("operational")));
    assert_eq!(view["tenant"]["groups"][0]["days"].as_array().unwrap().len(), 90);
    let response = app.client.get(app.url("/status?tenant=acme")).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    assert!(response.text().await.unwrap().contains("Okta production"));
    let bad = app.client.get(app.url("/status.json")).bearer_auth("cst_nope").send().await.unwrap();
    assert_eq!(bad.status(), 401, "a bad token is refused, not ignored");
}

async fn a_stale_connector_opens_an_incident_that_resolves_when_fresh_again(app: TestApp) {
    let admin = app.token(&["admin#tenant/acme"]).await;
    register(&app, &admin).await;
    sync(&app, &admin, "old", 7.0).await;
    let mut evaluator = Evaluator::default();
    passes(&app, &mut evaluator, 2).await;
    let (_, incidents) = json(app.get(&admin, "/v1/tenants/acme/incidents").await).await;
    assert_eq!(incidents, json!([]), "two bad passes are not enough to open");
    passes(&app, &mut evaluator, 1).await;
    let (_, incidents) = json(app.get(&admin, "/v1/tenants/acme/incidents").await).await;
    let incident = &incidents[0];
    assert_eq!(incidents.as_array().unwrap().len(), 1, "{incidents}");
    assert_eq!(
        (incident["source"].as_str(), incident["auto_key"].as_str(), incident["impact"].as_str()),
        (Some("auto"), Some("connector:okta-prod"), Some("major"))
    );
    assert_eq!(incident["title"], "Connector okta-prod is failing or stale");
    let (_, view) = page(&app, Some(&admin), "?tenant=acme").await;
    assert_eq!(tenant_member(&view, "okta-prod")["status"], "major_outage");
    assert_eq!(view["tenant"]["groups"][0]["status"], "major_outage");
    // The platform sees one stale connector of one: ingestion is down, without naming it.
    assert_eq!(component(&view, "ingestion")["status"], "major_outage");
    assert_eq!(view["status"]["indicator"], "critical");
    let (_, platform) = json(app.get(&app.token(&["obs:read#tenant/*"]).await, "/v1/incidents").await).await;
    assert_eq!(platform[0]["auto_key"], "component:ingestion", "{platform}");
    assert!(!platform.to_string().contains("okta"), "{platform}");

    // A restarted evaluator knows the incident is open and does not open another.
    let mut restarted = Evaluator::default();
    passes(&app, &mut restarted, 3).await;
    let (_, incidents) = json(app.get(&admin, "/v1/tenants/acme/incidents").await).await;
    assert_eq!(incidents.as_array().unwrap().len(), 1, "{incidents}");

    sync(&app, &admin, "fresh", 0.05).await;
    passes(&app, &mut restarted, 4).await;
    let (_, incidents) = json(app.get(&admin, "/v1/tenants/acme/incidents").await).await;
    assert!(incidents[0]["resolved_at"].is_null(), "four good passes are not enough to resolve");
    passes(&app, &mut restarted, 1).await;
    let (_, incidents) = json(app.get(&admin, "/v1/tenants/acme/incidents").await).await;
    assert_eq!(incidents[0]["status"], "resolved", "{incidents}");
    let last = incidents[0]["updates"].as_array().unwrap().last().unwrap().clone();
    assert!(last["message"].as_str().unwrap().starts_with("Resolved automatically"), "{last}");
    let (_, view) = page(&app, Some(&admin), "?tenant=acme").await;
    assert_eq!(tenant_member(&view, "okta-prod")["status"], "operational");
    assert_eq!(view["tenant"]["incidents"][0]["status"], "resolved", "resolved incidents stay listed");
}

async fn maintenance_windows_show_quiet_the_detector_and_validate(app: TestApp) {
    let admin = app.token(&["admin#tenant/acme"]).await;
    register(&app, &admin).await;
    sync(&app, &admin, "old", 7.0).await;
    let window = json!({"title": "Okta migration", "components": ["okta-prod"],
        "starts_at": hours_ago(1.0), "ends_at": hours_ago(-1.0)});
    let (code, created) = json(app.post(&admin, "/v1/tenants/acme/maintenance", JSON, window.to_string()).await).await;
    assert_eq!(code, 201, "{created}");
    assert!(created["id"].as_str().unwrap().starts_with("mw_"));
    let mut evaluator = Evaluator::default();
    passes(&app, &mut evaluator, 4).await;
    let (_, incidents) = json(app.get(&admin, "/v1/tenants/acme/incidents").await).await;
    assert_eq!(incidents, json!([]), "the detector stays quiet during maintenance");
    let (_, view) = page(&app, Some(&admin), "?tenant=acme").await;
    assert_eq!(tenant_member(&view, "okta-prod")["status"], "under_maintenance");
    assert_eq!(view["tenant"]["maintenances"][0]["state"], "in_progress");

    // A recurring platform window, scheduled ahead, listed and then cancelled.
    let platform_admin = app.token(&["admin#tenant/*"]).await;
    let recurring = json!({"title": "Weekly database upkeep", "components": ["api"], "cron": "0 3 * * *",
        "timezone": "Europe/Paris", "duration_minutes": 30});
    let (code, created) = json(app.post(&platform_admin, "/v1/maintenance", JSON, recurring.to_string()).await).await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, public) = page(&app, None, "").await;
    let shown = &public["maintenances"][0];
    assert_eq!((shown["title"].as_str(), shown["cron"].as_str()), (Some("Weekly database upkeep"), Some("0 3 * * *")));
    let (_, listed) = json(app.get(&platform_admin, "/v1/maintenance").await).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let cancel = app.client.delete(app.url(&format!("/v1/maintenance/{id}"))).bearer_auth(&platform_admin);
    assert_eq!(cancel.send().await.unwrap().status(), 204);
    let again = app.client.delete(app.url(&format!("/v1/maintenance/{id}"))).bearer_auth(&platform_admin);
    error(again.send().await.unwrap(), 404, "not_found").await;
    let (_, public) = page(&app, None, "").await;
    assert_eq!(public["maintenances"], json!([]));

    // Scopes, and bad windows named by field with nothing stored.
    error(app.post(&admin, "/v1/maintenance", JSON, recurring.to_string()).await, 403, "forbidden").await;
    for (body, field) in [
        (json!({"title": "x", "components": ["nope"], "cron": "0 3 * * *", "duration_minutes": 5}), "components[0]"),
        (json!({"title": "x", "starts_at": hours_ago(1.0)}), "ends_at"),
        (json!({"title": "x", "cron": "0 3 * * *"}), "duration_minutes"),
        (json!({"title": "x", "cron": "61 3 * * *", "duration_minutes": 5}), "cron"),
        (json!({"title": "", "cron": "0 3 * * *", "duration_minutes": 5}), "title"),
    ] {
        let err =
            error(app.post(&admin, "/v1/tenants/acme/maintenance", JSON, body.to_string()).await, 422, "invalid_field")
                .await;
        assert_eq!(err["field"], field, "{err}");
    }
    let (_, listed) = json(app.get(&admin, "/v1/tenants/acme/maintenance").await).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

async fn the_badge_shows_a_component_or_the_whole_page(app: TestApp) {
    passes(&app, &mut Evaluator::default(), 1).await;
    let badge = app.client.get(app.url("/status/badge.svg?component=api")).send().await.unwrap();
    assert_eq!(badge.status(), 200);
    assert_eq!(badge.headers()["content-type"], "image/svg+xml");
    let svg = badge.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("api: operational"), "{svg}");

    let admin = app.token(&["admin#tenant/*"]).await;
    let incident = json!({"title": "Slow API", "impact": "critical", "components": ["api"], "message": "Looking"});
    let response = app.post(&admin, "/v1/incidents", JSON, incident.to_string()).await;
    assert_eq!(response.status(), 201);
    let svg = app.client.get(app.url("/status/badge.svg?component=api")).send().await.unwrap().text().await.unwrap();
    assert!(svg.contains("api: major outage"), "an incident shows at once: {svg}");
    let svg = app.client.get(app.url("/status/badge.svg")).send().await.unwrap().text().await.unwrap();
    assert!(svg.contains("status: major outage"), "{svg}");

    let err =
        error(app.client.get(app.url("/status/badge.svg?component=nope")).send().await.unwrap(), 400, "bad_request")
            .await;
    assert_eq!(err["field"], "component");
}

#[tokio::test]
async fn a_deployment_can_require_a_token_for_the_page() {
    let config = ServerConfig { status_require_token: true, ..ServerConfig::default() };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (code, _) = page(&app, None, "").await;
    assert_eq!(code, 401);
    let badge = app.client.get(app.url("/status/badge.svg")).send().await.unwrap();
    assert_eq!(badge.status(), 401);
    let ingest_only = app.token(&["ingest:write#tenant/acme"]).await;
    let (code, _) = page(&app, Some(&ingest_only), "").await;
    assert_eq!(code, 403);
    let reader = app.token(&["obs:read#tenant/acme"]).await;
    let (code, body) = page(&app, Some(&reader), "").await;
    assert_eq!(code, 200, "{body}");
    let response = app.client.get(app.url("/status.json")).bearer_auth(&reader).send().await.unwrap();
    assert_eq!(response.headers()["cache-control"], "private, no-store");
}

/// `docs/status-page.schema.json` is what the code describes (regenerate it with
/// `CUSTOS_UPDATE_SCHEMA=1`), and a full answer, tenant part included, validates
/// against it with an independent validator (Python's `jsonschema`).
#[tokio::test]
async fn the_documented_schema_is_the_one_served_and_answers_validate() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/status-page.schema.json");
    let generated = serde_json::to_string_pretty(&custos_server::status_page_schema()).unwrap() + "\n";
    if std::env::var_os("CUSTOS_UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let documented = std::fs::read_to_string(path).expect("docs/status-page.schema.json exists");
    assert!(documented == generated, "docs/status-page.schema.json is stale: run with CUSTOS_UPDATE_SCHEMA=1");

    let app = TestApp::start(Backend::Sqlite).await;
    let admin = app.token(&["admin#tenant/*"]).await;
    register(&app, &admin).await;
    sync(&app, &admin, "old", 7.0).await;
    let incident = json!({"title": "Slow API", "impact": "minor", "components": ["api"], "message": "Looking"});
    app.post(&admin, "/v1/incidents", JSON, incident.to_string()).await;
    let window = json!({"title": "Upkeep", "cron": "0 3 * * *", "duration_minutes": 30});
    app.post(&admin, "/v1/maintenance", JSON, window.to_string()).await;
    passes(&app, &mut Evaluator::default(), 3).await;
    let (code, answer) = page(&app, Some(&admin), "?tenant=acme").await;
    assert_eq!(code, 200);
    assert!(answer["tenant"]["incidents"].as_array().is_some_and(|i| !i.is_empty()), "{answer}");
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        jsonschema.Draft202012Validator(schema).validate(json.load(sys.stdin))\n";
    let (ok, _, stderr) = crate::support::run_checker("python3", &["-c", script, path], Some(&answer.to_string()));
    assert!(ok, "{stderr}");
    let (ok, _, _) = crate::support::run_checker(
        "python3",
        &["-c", script, path],
        Some(&json!({"page": {}, "status": {}, "components": "nope"}).to_string()),
    );
    assert!(!ok, "the schema rejects a wrong shape");
}

/// The public page, linked from an incident, is opened by many at once: its platform part
/// is read from the store once per 5 s, and a change made through the API shows at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_on_the_public_page_reads_the_store_once() {
    let app = crate::support::TestApp::start(crate::support::Backend::Sqlite).await;
    let reads = |text: &str| {
        crate::metrics::value(text, r#"custos_store_operation_duration_seconds_count{operation="status_changes"}"#)
            .unwrap_or(0.0)
    };
    assert_eq!(app.client.get(app.url("/status.json")).send().await.unwrap().status(), 200);
    let (_, before) = crate::metrics::scrape(&app, None).await;
    let started = std::time::Instant::now();
    let crowd: Vec<_> = (0..20).map(|_| app.client.get(app.url("/status.json")).send()).collect();
    for response in futures::future::join_all(crowd).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (_, after) = crate::metrics::scrape(&app, None).await;
    let allowed = (seconds / 5.0).ceil() + 1.0;
    assert!(
        reads(&after) - reads(&before) <= allowed,
        "{} reads for 20 visitors in {seconds} s",
        reads(&after) - reads(&before)
    );

    // An incident posted through the API is on the page at once.
    let admin = app.token(&["admin#tenant/*"]).await;
    let incident = serde_json::json!({"title": "Delayed ingestion", "impact": "minor", "components": ["ingestion"],
        "message": "Investigating."});
    let response = app.client.post(app.url("/v1/incidents")).bearer_auth(&admin).json(&incident).send().await.unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let page: serde_json::Value = app.client.get(app.url("/status.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["incidents"][0]["title"], "Delayed ingestion", "{page}");
}
