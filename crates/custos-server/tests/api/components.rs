use serde_json::json;

use crate::on_both_backends;
use crate::support::{JSON, TestApp, error, json};

on_both_backends!(
    components_are_registered_idempotently,
    connector_freshness_follows_thresholds,
    component_input_is_validated
);

async fn components_are_registered_idempotently(app: TestApp) {
    let token = app.token(&["ingest:write#tenant/acme", "obs:read#tenant/acme"]).await;
    let path = "/v1/tenants/acme/components/okta-prod";
    let body = json!({"kind": "connector", "provider": "okta", "name": "Okta (production)"});
    let (status, created) = json(app.put_json(&token, path, &body).await).await;
    assert_eq!(status, 201);
    assert_eq!(
        created["effective_freshness"],
        json!({"green_under_seconds": 3600, "yellow_under_seconds": 21600, "source": "default"})
    );
    assert_eq!(created["freshness_state"], "unknown");
    let (status, again) = json(app.put_json(&token, path, &body).await).await;
    assert_eq!((status, &again["updated_at"]), (200, &created["updated_at"]));
    // How an existing component is judged is the admin's: a reporting token may not
    // loosen its freshness thresholds (nor a job's schedule).
    let body = json!({"kind": "connector", "provider": "okta", "freshness": {"green_under_seconds": 60, "yellow_under_seconds": 600}});
    let refused = error(app.put_json(&token, path, &body).await, 403, "forbidden").await;
    assert_eq!(refused["message"], "missing scope admin#tenant/acme");
    // Nor turn it into a kind that is never stale, or move it to another provider's policy.
    for changed in [json!({"kind": "service"}), json!({"kind": "connector", "provider": "google"})] {
        error(app.put_json(&token, path, &changed).await, 403, "forbidden").await;
    }
    let admin = app.token(&["admin#tenant/acme"]).await;
    let (status, updated) = json(app.put_json(&admin, path, &body).await).await;
    assert_eq!(status, 200);
    assert_eq!(updated["effective_freshness"]["source"], "component");
    assert_eq!(updated["created_at"], created["created_at"]);
    app.put_json(&token, "/v1/tenants/acme/components/splunk", &json!({"kind": "siem_destination"})).await;
    let (_, list) = json(app.get(&token, "/v1/tenants/acme/components").await).await;
    let kinds: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["connector", "siem_destination"]);
    assert_eq!(list[1]["effective_freshness"], serde_json::Value::Null);
    let (status, one) = json(app.get(&token, path).await).await;
    assert_eq!((status, &one["id"]), (200, &json!("okta-prod")));
    error(app.get(&token, "/v1/tenants/acme/components/nope").await, 404, "not_found").await;
}

async fn connector_freshness_follows_thresholds(app: TestApp) {
    let token = app.token(&["admin#tenant/acme"]).await;
    app.put_json(&token, "/v1/tenants/acme/components/okta-prod", &json!({"kind": "connector", "provider": "okta"}))
        .await;
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let finished = now - time::Duration::minutes(30);
    let sync = json!({"integration_id": "okta-prod", "triggered_by": "scheduled", "status": "succeeded",
        "started_at": fmt(finished - time::Duration::seconds(5)), "finished_at": fmt(finished)});
    app.post(&token, "/v1/tenants/acme/connector-syncs", JSON, sync.to_string()).await;
    let (_, view) = json(app.get(&token, "/v1/tenants/acme/components/okta-prod").await).await;
    assert_eq!(view["freshness_state"], "green", "{view}");
    // A provider policy tighter than 30 minutes turns it yellow.
    let policy = json!({"green_under_seconds": 600, "yellow_under_seconds": 3600});
    let (status, _) = json(app.put_json(&token, "/v1/tenants/acme/freshness-policies/okta", &policy).await).await;
    assert_eq!(status, 200);
    let (_, view) = json(app.get(&token, "/v1/tenants/acme/components/okta-prod").await).await;
    assert_eq!(
        (view["freshness_state"].as_str(), view["effective_freshness"]["source"].as_str()),
        (Some("yellow"), Some("provider"))
    );
    let (_, policies) = json(app.get(&token, "/v1/tenants/acme/freshness-policies").await).await;
    assert_eq!(policies[0]["provider"], "okta");
}

async fn component_input_is_validated(app: TestApp) {
    let token = app.token(&["admin#tenant/acme"]).await;
    let cases = [
        (json!({"kind": "connector"}), "provider"),
        (json!({"kind": "toaster"}), "kind"),
        (json!({"kind": "service", "colour": "red"}), "colour"),
        (
            json!({"kind": "connector", "provider": "okta", "freshness": {"green_under_seconds": 100, "yellow_under_seconds": 10}}),
            "freshness.yellow_under_seconds",
        ),
    ];
    for (body, field) in cases {
        let err =
            error(app.put_json(&token, "/v1/tenants/acme/components/c1", &body).await, 422, "invalid_field").await;
        assert_eq!(err["field"], field, "{body}");
    }
    let err = error(
        app.put_json(&token, "/v1/tenants/acme/components/bad%20id", &json!({"kind": "service"})).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(err["field"], "id");
    let response = app
        .client
        .put(app.url("/v1/tenants/acme/components/c1"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    error(response, 400, "malformed_body").await;
    let err = error(
        app.put_json(
            &token,
            "/v1/tenants/acme/freshness-policies/okta",
            &json!({"green_under_seconds": 0, "yellow_under_seconds": 5}),
        )
        .await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(err["field"], "green_under_seconds");
}
