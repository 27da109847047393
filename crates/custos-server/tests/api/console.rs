//! The operator console over HTTP: login and its session cookie, anti-forgery tokens,
//! roles mapped to scopes, tenant walls, the health panels' figures against what was
//! ingested, and the rule audit's filters and exports. (`browser.rs` drives the same
//! pages in Chromium.)

use custos_model::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::{Backend, JSON, NDJSON, TestApp, ndjson};

fn ago(minutes: i64) -> String {
    Timestamp::from_micros(Timestamp::now().as_micros() - minutes * 60_000_000).to_string()
}

/// A tenant with something in every panel: two connectors (one fresh, one overdue
/// with failures), a SIEM and a workflow destination (one with dead letters), an
/// ingestion queue with a processing history, and rule runs (slow, noisy, silent).
pub async fn seed(app: &TestApp, admin: &str) {
    let components = [
        ("okta-prod", json!({"kind": "connector", "provider": "okta", "name": "Okta production"})),
        ("crowdstrike", json!({"kind": "connector", "provider": "crowdstrike"})),
        ("splunk", json!({"kind": "siem_destination"})),
        ("jira", json!({"kind": "workflow_destination"})),
        ("ingest-queue", json!({"kind": "ingestion_queue", "name": "Event ingestion"})),
    ];
    for (id, body) in components {
        let response = app.put_json(admin, &format!("/v1/tenants/acme/components/{id}"), &body).await;
        assert!(response.status().is_success(), "{id}: {}", response.text().await.unwrap());
    }
    let mut syncs = Vec::new();
    for i in 0..6 {
        syncs.push(json!({"id": format!("ok-{i}"), "integration_id": "okta-prod", "triggered_by": "scheduled",
            "status": "succeeded", "duration_ms": 2000 + i * 100, "started_at": ago(i * 30 + 2), "finished_at": ago(i * 30 + 1)}));
    }
    for i in 0..4 {
        let failed = i % 2 == 0;
        syncs.push(json!({"id": format!("cs-{i}"), "integration_id": "crowdstrike", "triggered_by": "scheduled",
            "status": if failed { "failed" } else { "succeeded" }, "duration_ms": 30_000,
            "error_message": if failed { json!(format!("HTTP 503 from the provider ({i})")) } else { Value::Null },
            "started_at": ago(600 - i * 60), "finished_at": ago(599 - i * 60)}));
    }
    assert!(app.post(admin, "/v1/tenants/acme/connector-syncs", NDJSON, ndjson(&syncs)).await.status().is_success());
    let mut deliveries = Vec::new();
    for i in 0..10 {
        deliveries.push(json!({"id": format!("sp-{i}"), "destination_id": "splunk", "status": "succeeded",
            "attempted_at": ago(i), "latency_ms": 40}));
    }
    for i in 0..4 {
        let dead = i == 3;
        deliveries.push(json!({"id": format!("ji-{i}"), "destination_id": "jira", "item_id": format!("finding-{i}"),
            "status": if dead { "dead_lettered" } else if i == 0 { "succeeded" } else { "retrying" }, "attempt": i + 1,
            "error_message": if i > 0 { json!("HTTP 401 from Jira: token expired") } else { Value::Null },
            "attempted_at": ago(10 - i)}));
    }
    assert!(app.post(admin, "/v1/tenants/acme/deliveries", NDJSON, ndjson(&deliveries)).await.status().is_success());
    let snapshots: Vec<Value> = (0..5)
        .map(|i| {
            json!({"id": format!("q-{i}"), "observed_at": ago(20 - i * 5),
            "depth": {"pending": 10 + i, "in_flight": 2, "dead_lettered": if i == 4 { 3 } else { 0 }},
            "oldest_item_age_ms": 4000, "processed_total": 1000 + i * 300, "failed_total": i})
        })
        .collect();
    let path = "/v1/tenants/acme/components/ingest-queue/snapshots";
    assert!(app.post(admin, path, NDJSON, ndjson(&snapshots)).await.status().is_success());
    let jira_queue = ndjson(&[json!({"id": "jq", "observed_at": ago(1),
        "depth": {"pending": 7, "in_flight": 1, "retrying": 2, "dead_lettered": 1}})]);
    assert!(
        app.post(admin, "/v1/tenants/acme/components/jira/snapshots", NDJSON, jira_queue).await.status().is_success()
    );
    let mut runs = Vec::new();
    for i in 0..20 {
        let key = ["okta.impossible_travel", "aws.root_login", "gcp.public_bucket"][i % 3];
        let failed = key == "aws.root_login" && i % 2 == 1;
        runs.push(
            json!({"id": format!("run-{i}"), "rule_key": key, "rule_version": "3", "integration_id": "okta-prod",
            "status": if failed { "failed" } else { "succeeded" },
            "duration_ms": if key == "gcp.public_bucket" { 45_000 } else { 120 },
            "findings_created": if key == "okta.impossible_travel" { 5 } else { 0 },
            "error_message": if failed { json!("query timed out") } else { Value::Null },
            "context": {"trigger_event": {"actor": "user-17", "ip": "203.0.113.9"}, "window": "15m"},
            "started_at": ago(i as i64 * 3 + 1)}),
        );
    }
    runs.push(json!({"id": "old-run", "rule_key": "legacy.dormant_rule", "status": "succeeded", "duration_ms": 10,
        "started_at": ago(3 * 24 * 60)}));
    assert!(app.post(admin, "/v1/tenants/acme/rule-runs", NDJSON, ndjson(&runs)).await.status().is_success());
}

/// A client that shows redirects instead of following them, so cookies can be read.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// Logs in through the form as a browser would; returns the session cookie's value.
pub async fn login(app: &TestApp, token: &str) -> Result<String, (StatusCode, String)> {
    let (session, location) = login_then(app, token, "/admin/audit/rules").await?;
    assert_eq!(location, "/admin/audit/rules");
    Ok(session)
}

/// Logs in with `next` in the form; returns the session and where the login redirects.
async fn login_then(app: &TestApp, token: &str, next: &str) -> Result<(String, String), (StatusCode, String)> {
    let client = no_redirects();
    let form = client.get(app.url("/admin/login?next=/admin/audit/rules")).send().await.unwrap();
    let nonce_cookie = cookie_value(&form, "custos_login").expect("the form sets its nonce cookie");
    let nonce = nonce_cookie.split(';').next().unwrap().trim_start_matches("custos_login=").to_owned();
    let page = form.text().await.unwrap();
    assert!(page.contains(&format!("value=\"{nonce}\"")), "the form carries the nonce");
    let response = client
        .post(app.url("/admin/login"))
        .header(COOKIE, format!("custos_login={nonce}"))
        .form(&[("token", token), ("csrf", &nonce), ("next", next)])
        .send()
        .await
        .unwrap();
    if response.status() != StatusCode::SEE_OTHER {
        return Err((response.status(), response.text().await.unwrap()));
    }
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let set = cookie_value(&response, "custos_session").expect("a session cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/admin"), "{set}");
    let value = set.split(';').next().unwrap().trim_start_matches("custos_session=").to_owned();
    assert!(value.starts_with("css_"));
    Ok((value, location))
}

async fn get_with_session(app: &TestApp, session: &str, path: &str) -> reqwest::Response {
    no_redirects().get(app.url(path)).header(COOKIE, format!("custos_session={session}")).send().await.unwrap()
}

#[tokio::test]
async fn after_login_only_console_pages_are_followed() {
    let app = TestApp::start(Backend::Sqlite).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    for (next, expected) in [
        ("/admin/health?tenant=acme", "/admin/health?tenant=acme"),
        ("https://evil.example/admin", "/admin/health"),
        ("/admin\\evil.example", "/admin/health"),
        // Not a valid Location header: once a 500 (the redirect refused to be built).
        ("/admin/health\r\nSet-Cookie: stolen=1", "/admin/health"),
        ("/admin/h\u{e9}alth", "/admin/health"),
    ] {
        let (_, location) = login_then(&app, &admin, next).await.unwrap();
        assert_eq!(location, expected, "{next:?}");
    }
}

#[tokio::test]
async fn login_exchanges_a_token_for_a_session_and_logout_needs_the_forms_token() {
    let app = TestApp::start(Backend::Sqlite).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    // No credentials: pages go to the login form and come back; data answers 401.
    let response = no_redirects().get(app.url("/admin/health?tenant=acme")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/admin/login?next=%2Fadmin%2Fhealth%3Ftenant%3Dacme");
    assert_eq!(no_redirects().get(app.url("/admin/health.json")).send().await.unwrap().status(), 401);

    let session = login(&app, &admin).await.unwrap();
    let page = get_with_session(&app, &session, "/admin/health").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("tenant <strong>acme</strong>"), "one tenant: picked without asking");
    // The logout form carries the session's anti-forgery token; without it, nothing ends.
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let forged = no_redirects()
        .post(app.url("/admin/logout"))
        .header(COOKIE, format!("custos_session={session}"))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(get_with_session(&app, &session, "/admin/health").await.status(), 200, "still logged in");
    let logout = no_redirects()
        .post(app.url("/admin/logout"))
        .header(COOKIE, format!("custos_session={session}"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert!(cookie_value(&logout, "custos_session").unwrap().contains("Max-Age=0"));
    let after = get_with_session(&app, &session, "/admin/health").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "the session ended server-side, not only in the browser");
}

#[tokio::test]
async fn login_refuses_forged_forms_bad_tokens_and_tokens_without_a_console_role() {
    let app = TestApp::start(Backend::Sqlite).await;
    let client = no_redirects();
    let admin = app.token(&["admin#tenant/acme"]).await;
    // No nonce cookie (a form posted from another site): refused before the token is looked at.
    let forged = client
        .post(app.url("/admin/login"))
        .form(&[("token", admin.as_str()), ("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(cookie_value(&forged, "custos_session").is_none());
    assert_eq!(login(&app, "cst_not-a-real-token-at-all-000000000000000").await.unwrap_err().0, 401);
    let writer = app.token(&["ingest:write#tenant/acme"]).await;
    let (status, body) = login(&app, &writer).await.unwrap_err();
    assert_eq!(status, 403);
    assert!(body.contains("grants no console role"), "{body}");
    // A revoked token's session ends with it.
    let session = login(&app, &admin).await.unwrap();
    let token_id = app
        .store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.scopes.len() == 1 && t.scopes[0].to_string() == "admin#tenant/acme")
        .unwrap()
        .id;
    app.store.revoke_token(&token_id, Timestamp::now()).await.unwrap();
    assert_eq!(get_with_session(&app, &session, "/admin/health").await.status(), StatusCode::SEE_OTHER);
    // An expired token cannot log in.
    let expired = app.token_with(&["admin#tenant/acme"], Some(Timestamp::from_micros(1))).await;
    assert_eq!(login(&app, &expired).await.unwrap_err().0, 401);
}

#[tokio::test]
async fn roles_map_to_scopes_and_tenants_stay_apart() {
    let app = TestApp::start(Backend::Postgres).await;
    let admin = app.token(&["admin#tenant/*"]).await;
    seed(&app, &admin).await;
    let analyst = app.token(&["obs:read#tenant/acme"]).await;
    // The security analyst reads the audit log, not the health console.
    assert_eq!(app.get(&analyst, "/admin/audit/rules?tenant=acme").await.status(), 200);
    let health = app.get(&analyst, "/admin/health.json?tenant=acme").await;
    assert_eq!(health.status(), 403);
    assert!(health.text().await.unwrap().contains("missing scope admin#tenant/acme"));
    // Another tenant: 403, whether by bearer or session.
    assert_eq!(app.get(&analyst, "/admin/audit/rules?tenant=globex").await.status(), 403);
    let session = login(&app, &analyst).await.unwrap();
    assert_eq!(get_with_session(&app, &session, "/admin/audit/rules?tenant=globex").await.status(), 403);
    assert_eq!(get_with_session(&app, &session, "/admin/audit/rules.csv?tenant=globex").await.status(), 403);
    let page = get_with_session(&app, &session, "/admin/audit/rules?tenant=acme").await.text().await.unwrap();
    assert!(page.contains("okta.impossible_travel"));
    // A token over several tenants is asked to pick one.
    let picker = app.get(&admin, "/admin/health").await.text().await.unwrap();
    assert!(picker.contains("Pick one") && picker.contains("tenant=globex"), "{picker}");
    // globex's console shows none of acme's data.
    let (_, globex) = crate::support::json(app.get(&admin, "/admin/health.json?tenant=globex").await).await;
    assert_eq!(globex["connectors"], json!([]));
    assert_eq!(globex["rules"]["active"], 0);
}

#[tokio::test]
async fn the_health_panels_add_up_to_what_was_ingested() {
    let app = TestApp::start(Backend::Postgres).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    seed(&app, &admin).await;
    let (status, view) = crate::support::json(app.get(&admin, "/admin/health.json?tenant=acme").await).await;
    assert_eq!(status, 200, "{view}");
    let connectors = view["connectors"].as_array().unwrap();
    // Worst first: crowdstrike last succeeded 9+ hours ago (red), okta is fresh.
    assert_eq!(connectors[0]["id"], "crowdstrike");
    assert_eq!(connectors[0]["freshness"], "red");
    assert_eq!((connectors[0]["syncs"].as_i64(), connectors[0]["failed"].as_i64()), (Some(4), Some(2)));
    assert_eq!(connectors[0]["error_rate"], 0.5);
    assert_eq!(connectors[0]["last_error"]["message"], "HTTP 503 from the provider (2)");
    assert_eq!(connectors[1]["id"], "okta-prod");
    assert_eq!(connectors[1]["freshness"], "green");
    assert_eq!(connectors[1]["error_rate"], 0.0);
    let hours = connectors[1]["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(hours.iter().map(|h| h["total"].as_i64().unwrap()).sum::<i64>(), 6);
    let siem = &view["siem_destinations"][0];
    assert_eq!((siem["attempts"].as_i64(), siem["success_rate"].as_f64()), (Some(10), Some(1.0)));
    let jira = &view["workflow_destinations"][0];
    assert_eq!(
        (jira["attempts"].as_i64(), jira["succeeded"].as_i64(), jira["dead_lettered"].as_i64()),
        (Some(4), Some(1), Some(1))
    );
    assert_eq!(jira["queue"]["depth"], json!({"pending": 7, "in_flight": 1, "retrying": 2, "dead_lettered": 1}));
    assert_eq!(jira["last_error"]["message"], "HTTP 401 from Jira: token expired");
    let queue = &view["ingestion"][0];
    assert_eq!(queue["latest"]["depth"]["dead_lettered"], 3);
    let rates: Vec<f64> =
        queue["rates"].as_array().unwrap().iter().map(|r| r["per_second"].as_f64().unwrap()).collect();
    assert_eq!(rates.len(), 4);
    assert!(rates.iter().all(|r| (r - 1.0).abs() < 1e-3), "300 items per 5 minutes: {rates:?}");
    let rules = &view["rules"];
    assert_eq!(rules["active"], 3);
    assert_eq!(rules["slowest"][0]["rule_key"], "gcp.public_bucket");
    assert!(rules["slowest"][0]["p95_ms"].as_f64().unwrap() > 30_000.0);
    assert_eq!(rules["noisiest"].as_array().unwrap().len(), 1);
    assert_eq!(rules["noisiest"][0]["rule_key"], "okta.impossible_travel");
    assert_eq!(rules["noisiest"][0]["findings_created"], 35);
    assert_eq!(
        rules["silent"],
        json!([{"rule_key": "legacy.dormant_rule", "last_run_at": rules["silent"][0]["last_run_at"]}])
    );
    assert_eq!(rules["silent_total"], 1);

    // The drill-downs.
    let dead = app.get(&admin, "/admin/health/deliveries?tenant=acme&destination=jira").await.text().await.unwrap();
    assert!(dead.contains("finding-3") && !dead.contains("finding-2"), "dead-lettered only by default");
    let history = app.get(&admin, "/admin/health/queues/ingest-queue?tenant=acme").await.text().await.unwrap();
    assert_eq!(history.matches("<tr>").count(), 1 + 5, "header and five snapshots");
    let bad = app.get(&admin, "/admin/health/deliveries?tenant=acme&destination=jira&status=lost").await;
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn the_audit_log_filters_drills_down_and_exports_the_filter() {
    let app = TestApp::start(Backend::Sqlite).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    seed(&app, &admin).await;
    let page = app.get(&admin, "/admin/audit/rules?tenant=acme&rule_key=aws.root_login&status=failed&window=24h").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let rows = html.matches("href=\"/admin/audit/rules/run-").count();
    assert_eq!(rows, 4, "aws.root_login runs 1, 4, 7, …, 19; the odd ones (1, 7, 13, 19) failed");
    // The export of the same filter, streamed as CSV.
    let csv =
        app.get(&admin, "/admin/audit/rules.csv?tenant=acme&rule_key=aws.root_login&status=failed&window=24h").await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"rule-runs-acme-")
    );
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let status_col = header.iter().position(|h| h == "status").unwrap();
    let key_col = header.iter().position(|h| h == "rule_key").unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows);
    assert!(records.iter().all(|r| &r[status_col] == "failed" && &r[key_col] == "aws.root_login"));
    let ndjson = app.get(&admin, "/admin/audit/rules.ndjson?tenant=acme&window=all").await.text().await.unwrap();
    assert_eq!(ndjson.lines().count(), 21, "every run, the dormant one included");
    // Drill-down: the trigger event and the context.
    let run = app.get(&admin, "/admin/audit/rules/run-0?tenant=acme").await.text().await.unwrap();
    assert!(
        run.contains("Trigger event")
            && run.contains("203.0.113.9")
            && run.contains("&quot;window&quot;: &quot;15m&quot;"),
        "{run}"
    );
    assert_eq!(app.get(&admin, "/admin/audit/rules/nope?tenant=acme").await.status(), 404);
    // Bad input names the field.
    let bad = app.get(&admin, "/admin/audit/rules.csv?tenant=acme&status=exploded").await;
    let body = crate::support::error(bad, 422, "invalid_field").await;
    assert_eq!(body["field"], "status", "{body}");
    let unknown = app.get(&admin, "/admin/audit/rules.csv?tenant=acme&colour=red").await;
    assert_eq!(crate::support::error(unknown, 400, "bad_request").await["field"], "colour");
    let html_error = app.get(&admin, "/admin/audit/rules?tenant=acme&from=yesterday").await;
    assert_eq!(html_error.status(), 422);
    assert!(html_error.text().await.unwrap().contains("from"));
}

#[tokio::test]
async fn the_console_is_posted_to_only_with_forms_not_json() {
    let app = TestApp::start(Backend::Sqlite).await;
    // A JSON login body is not a form: 4xx, never a session.
    let response = no_redirects()
        .post(app.url("/admin/login"))
        .header("content-type", JSON)
        .body(r#"{"token":"x","csrf":"y"}"#)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert!(cookie_value(&response, "custos_session").is_none());
}
