use serde_json::json;

use crate::on_both_backends;
use crate::support::{TestApp, error, json};

on_both_backends!(
    pings_drive_status_and_history,
    the_monitor_turns_a_silent_job_down,
    exit_codes_pause_and_resume,
    concurrent_pings_are_all_stored_in_order_per_job,
    bad_pings_are_refused_with_the_field_at_fault,
    schedules_are_validated_on_put
);

const TEXT: &str = "text/plain";

async fn register(app: &TestApp, token: &str, job: &str, schedule: serde_json::Value) {
    let path = format!("/v1/tenants/acme/components/{job}");
    let (status, body) =
        json(app.put_json(token, &path, &json!({"kind": "scheduled_job", "schedule": schedule})).await).await;
    assert_eq!(status, 201, "{body}");
}

async fn ping(app: &TestApp, token: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    json(app.post(token, &format!("/v1/tenants/acme/jobs/{path}"), TEXT, body.to_owned()).await).await
}

async fn pings_drive_status_and_history(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    register(&app, &token, "nightly-backup", json!({"cron": "30 2 * * *", "timezone": "Europe/Paris"})).await;
    let (_, job) = json(app.get(&token, "/v1/tenants/acme/jobs/nightly-backup").await).await;
    assert_eq!(job["status"], "new");
    assert!(job["next_expected_at"].is_string(), "a new cron job shows its next run: {job}");
    assert_eq!(job["schedule"], json!({"cron": "30 2 * * *", "timezone": "Europe/Paris", "grace_seconds": 3600}));

    let (status, started) = ping(&app, &token, "nightly-backup/start?run_id=r1", "").await;
    assert_eq!((status, &started["status"]), (200, &json!("new")), "{started}");
    let (_, running) = json(app.get(&token, "/v1/tenants/acme/jobs/nightly-backup").await).await;
    assert_eq!(running["running"], true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, done) = ping(&app, &token, "nightly-backup/success?run_id=r1&exit_code=0", "backed up 3 GiB").await;
    assert_eq!((status, &done["status"]), (200, &json!("up")), "{done}");
    assert!(done["duration_ms"].as_i64().is_some_and(|d| d >= 20), "measured from the start ping: {done}");
    assert!(done["ping_id"].is_string());

    let (_, job) = json(app.get(&token, "/v1/tenants/acme/jobs/nightly-backup").await).await;
    assert_eq!((job["status"].as_str(), job["running"].as_bool()), (Some("up"), Some(false)));
    assert_eq!((job["pings_total"].as_i64(), job["last_exit_code"].as_i64()), (Some(2), Some(0)));
    let next = job["next_expected_at"].as_str().unwrap();
    assert!(next.ends_with(":30:00.000000Z"), "02:30 Paris is hh:30 UTC: {next}");
    assert!(job["down_at"].is_string());

    let (_, list) = json(app.get(&token, "/v1/tenants/acme/jobs").await).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, pings) = json(app.get(&token, "/v1/tenants/acme/jobs/nightly-backup/pings?limit=1").await).await;
    assert_eq!(pings["items"][0]["kind"], "success");
    assert_eq!(pings["items"][0]["body"], "backed up 3 GiB");
    assert_eq!(pings["items"][0]["run_id"], "r1");
    assert!(pings["items"][0]["trace_id"].as_str().is_some_and(|t| t.len() == 32), "{pings}");
    let cursor = pings["next_cursor"].as_str().unwrap();
    let (_, rest) =
        json(app.get(&token, &format!("/v1/tenants/acme/jobs/nightly-backup/pings?cursor={cursor}")).await).await;
    assert_eq!(rest["items"][0]["kind"], "start");
    assert!(rest["next_cursor"].is_null());
    let (_, flips) = json(app.get(&token, "/v1/tenants/acme/jobs/nightly-backup/flips").await).await;
    assert_eq!(
        flips["items"],
        json!([{
            "id": flips["items"][0]["id"], "job_id": "nightly-backup", "at": flips["items"][0]["at"],
            "from": "new", "to": "up", "cause": "success_ping"
        }])
    );
}

async fn the_monitor_turns_a_silent_job_down(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    register(&app, &token, "heartbeat", json!({"period_seconds": 1, "grace_seconds": 1})).await;
    assert_eq!(ping(&app, &token, "heartbeat/success", "").await.0, 200);
    assert_eq!(custos_server::jobs::monitor_pass(&app.state).await, 0, "on time");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(custos_server::jobs::monitor_pass(&app.state).await, 1);
    assert_eq!(custos_server::jobs::monitor_pass(&app.state).await, 0, "recorded once");
    let (_, job) = json(app.get(&token, "/v1/tenants/acme/jobs/heartbeat").await).await;
    assert_eq!(job["status"], "down");
    let (_, flips) = json(app.get(&token, "/v1/tenants/acme/jobs/heartbeat/flips").await).await;
    assert_eq!(
        (flips["items"][0]["to"].as_str(), flips["items"][0]["cause"].as_str()),
        (Some("down"), Some("expected_run_missing"))
    );
    let (_, back) = ping(&app, &token, "heartbeat/success", "").await;
    assert_eq!(back["status"], "up");

    // The metrics show the job's status and its last success, from the store.
    let (_, text) = crate::metrics::scrape_all(&app, None).await;
    let series = |name: &str, extra: &str| format!("custos_{name}{{tenant=\"acme\",job=\"heartbeat\"{extra}}}");
    let value = |name: &str, extra: &str| crate::metrics::value(&text, &series(name, extra));
    assert_eq!(value("scheduled_job_status", ",status=\"up\""), Some(1.0), "{text}");
    assert_eq!(value("scheduled_job_status", ",status=\"down\""), Some(0.0));
    assert_eq!(value("scheduled_job_pings_total", ""), Some(2.0));
    let last_success = value("scheduled_job_last_success_timestamp_seconds", "").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - last_success).abs() < 60.0, "{last_success} vs {now}");
}

async fn exit_codes_pause_and_resume(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let admin = app.token(&["admin#tenant/acme"]).await;
    register(&app, &token, "report", json!({"period_seconds": 86400})).await;
    let (_, failed) = ping(&app, &token, "report/exit/2", "upload failed").await;
    assert_eq!(failed["status"], "down");
    let (_, job) = json(app.get(&token, "/v1/tenants/acme/jobs/report").await).await;
    assert_eq!((job["last_exit_code"].as_i64(), job["last_failure_at"].is_string()), (Some(2), true));
    let (_, ok) = ping(&app, &token, "report/exit/0", "").await;
    assert_eq!(ok["status"], "up");

    error(app.post(&token, "/v1/tenants/acme/jobs/report/pause", TEXT, "").await, 403, "forbidden").await;
    let (status, paused) = json(app.post(&admin, "/v1/tenants/acme/jobs/report/pause", TEXT, "").await).await;
    assert_eq!((status, &paused["status"]), (200, &json!("paused")));
    assert!(paused.get("ping_id").is_none(), "a pause is no ping");
    let (_, resumed) = json(app.post(&admin, "/v1/tenants/acme/jobs/report/resume", TEXT, "").await).await;
    assert_eq!(resumed["status"], "new");
    let (_, flips) = json(app.get(&token, "/v1/tenants/acme/jobs/report/flips").await).await;
    let causes: Vec<&str> = flips["items"].as_array().unwrap().iter().map(|f| f["cause"].as_str().unwrap()).collect();
    assert_eq!(causes, ["resumed", "paused", "success_ping", "fail_ping"]);
}

async fn concurrent_pings_are_all_stored_in_order_per_job(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    for job in ["a", "b"] {
        register(&app, &token, job, json!({"period_seconds": 60})).await;
    }
    let requests = (0..200).map(|i| {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/v1/tenants/acme/jobs/{}/success", ["a", "b"][i % 2])),
            token.clone(),
        );
        tokio::spawn(async move { client.post(url).bearer_auth(token).send().await.unwrap().status().as_u16() })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.unwrap(), 200);
    }
    for job in ["a", "b"] {
        let (_, view) = json(app.get(&token, &format!("/v1/tenants/acme/jobs/{job}")).await).await;
        assert_eq!(view["pings_total"], 100, "{view}");
        let (_, pings) = json(app.get(&token, &format!("/v1/tenants/acme/jobs/{job}/pings?limit=1000")).await).await;
        let items = pings["items"].as_array().unwrap();
        assert_eq!(items.len(), 100);
        let times: Vec<&str> = items.iter().map(|p| p["received_at"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        let (_, flips) = json(app.get(&token, &format!("/v1/tenants/acme/jobs/{job}/flips")).await).await;
        assert_eq!(flips["items"].as_array().unwrap().len(), 1, "only the first ping flips the job");
    }
}

async fn bad_pings_are_refused_with_the_field_at_fault(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let reader = app.token(&["obs:read#tenant/acme"]).await;
    register(&app, &token, "etl", json!({"period_seconds": 60})).await;
    app.put_json(&token, "/v1/tenants/acme/components/okta-prod", &json!({"kind": "connector", "provider": "okta"}))
        .await;

    let bad = |path: &'static str| app.post(&token, path, TEXT, "");
    let e = error(bad("/v1/tenants/acme/jobs/etl/success?exitcode=1").await, 400, "bad_request").await;
    assert_eq!(e["field"], "exitcode");
    let e = error(bad("/v1/tenants/acme/jobs/etl/fail?exit_code=one").await, 422, "invalid_field").await;
    assert_eq!(e["field"], "exit_code");
    let e = error(bad("/v1/tenants/acme/jobs/etl/success?duration_ms=-5").await, 422, "invalid_field").await;
    assert_eq!(e["field"], "duration_ms");
    let e = error(bad("/v1/tenants/acme/jobs/etl/start?run_id=has%20space").await, 422, "invalid_field").await;
    assert_eq!(e["field"], "run_id");
    let e = error(bad("/v1/tenants/acme/jobs/etl/exit/x").await, 400, "bad_request").await;
    assert_eq!(e["field"], "code");
    error(bad("/v1/tenants/acme/jobs/nope/success").await, 404, "not_found").await;
    error(bad("/v1/tenants/acme/jobs/okta-prod/success").await, 409, "conflict").await;
    error(bad("/v1/tenants/acme/jobs/etl/finish").await, 404, "not_found").await;
    error(app.post(&reader, "/v1/tenants/acme/jobs/etl/success", TEXT, "").await, 403, "forbidden").await;
    let big = "x".repeat(custos_model::jobs::MAX_PING_BODY_BYTES + 1);
    error(app.post(&token, "/v1/tenants/acme/jobs/etl/success", TEXT, big).await, 413, "payload_too_large").await;
    let e = error(
        app.post(&token, "/v1/tenants/acme/jobs/etl/success", TEXT, vec![0xff, 0xfe]).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(e["field"], "body");
    let e = error(app.get(&token, "/v1/tenants/acme/jobs/etl/pings?limit=0").await, 422, "invalid_field").await;
    assert_eq!(e["field"], "limit");
    error(app.get(&token, "/v1/tenants/acme/jobs/nope/pings").await, 404, "not_found").await;
    // Nothing refused was stored.
    let (_, view) = json(app.get(&token, "/v1/tenants/acme/jobs/etl").await).await;
    assert_eq!((view["pings_total"].as_i64(), view["status"].as_str()), (Some(0), Some("new")));
}

async fn schedules_are_validated_on_put(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    let put = async |body: serde_json::Value| app.put_json(&token, "/v1/tenants/acme/components/j", &body).await;
    let cases = [
        (json!({"kind": "scheduled_job", "schedule": {"cron": "61 * * * *"}}), "schedule.cron"),
        (
            json!({"kind": "scheduled_job", "schedule": {"cron": "0 * * * *", "timezone": "Nowhere/City"}}),
            "schedule.timezone",
        ),
        (json!({"kind": "scheduled_job", "schedule": {"period_seconds": 0}}), "schedule.period_seconds"),
        (
            json!({"kind": "scheduled_job", "schedule": {"period_seconds": 60, "grace_seconds": 0}}),
            "schedule.grace_seconds",
        ),
        (json!({"kind": "scheduled_job", "schedule": {}}), "schedule"),
        (json!({"kind": "service", "schedule": {"period_seconds": 60}}), "schedule"),
    ];
    for (body, field) in cases {
        let e = error(put(body.clone()).await, 422, "invalid_field").await;
        assert_eq!(e["field"], field, "{body}");
    }
    let e = error(put(json!({"kind": "scheduled_job", "schedule": {"every": 5}})).await, 422, "invalid_field").await;
    assert!(e["message"].as_str().unwrap().contains("every"), "{e}");
}
