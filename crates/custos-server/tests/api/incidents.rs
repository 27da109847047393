//! Incidents on the public status page: only an all-tenants admin opens and updates
//! them, every update is kept in order, resolving sets the time, and bad input names
//! its field.

use serde_json::json;

use crate::on_both_backends;
use crate::support::{TestApp, error, json};

on_both_backends!(an_incident_is_opened_updated_and_resolved, only_platform_admins_post_incidents);

async fn an_incident_is_opened_updated_and_resolved(app: TestApp) {
    let admin = app.token(&["admin#tenant/*"]).await;
    let opened = app
        .post(
            &admin,
            "/v1/incidents",
            "application/json",
            json!({"title": "Delayed ingestion", "impact": "major", "components": ["ingestion"],
                   "message": "Rule runs are accepted but stored late."})
            .to_string(),
        )
        .await;
    let (status, incident) = json(opened).await;
    assert_eq!(status, 201, "{incident}");
    assert_eq!((incident["status"].as_str(), incident["impact"].as_str()), (Some("investigating"), Some("major")));
    assert_eq!(incident["source"], "manual");
    assert_eq!(incident["resolved_at"], serde_json::Value::Null);
    let id = incident["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("inc_"), "{id}");

    for (status, message) in [("identified", "A slow disk on the database."), ("resolved", "Replaced; caught up.")] {
        let body = json!({"status": status, "message": message}).to_string();
        let (code, updated) =
            json(app.post(&admin, &format!("/v1/incidents/{id}/updates"), "application/json", body).await).await;
        assert_eq!((code, updated["status"].as_str()), (200, Some(status)), "{updated}");
        assert_eq!(updated["impact"], "major", "the impact stays unless an update changes it");
    }
    let (_, stored) = json(app.get(&admin, &format!("/v1/incidents/{id}")).await).await;
    let updates = stored["updates"].as_array().unwrap();
    let statuses: Vec<_> = updates.iter().map(|u| u["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["investigating", "identified", "resolved"]);
    assert_eq!(updates.iter().map(|u| u["seq"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(stored["resolved_at"], updates[2]["at"], "resolved when the resolving update was posted");
    let (_, listed) = json(app.get(&admin, "/v1/incidents").await).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "resolved incidents stay listed for 90 days");

    let err = error(
        app.post(
            &admin,
            "/v1/incidents/inc_nope/updates",
            "application/json",
            json!({"status": "resolved", "message": "x"}).to_string(),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("incident"), "{err}");
}

async fn only_platform_admins_post_incidents(app: TestApp) {
    let tenant_admin = app.token(&["admin#tenant/acme"]).await;
    let body = json!({"title": "x", "message": "y"}).to_string();
    let err =
        error(app.post(&tenant_admin, "/v1/incidents", "application/json", body.clone()).await, 403, "forbidden").await;
    assert_eq!(err["message"], "missing scope admin#tenant/*");
    let reader = app.token(&["obs:read#tenant/*"]).await;
    error(app.post(&reader, "/v1/incidents", "application/json", body.clone()).await, 403, "forbidden").await;
    let (code, listed) = json(app.get(&reader, "/v1/incidents").await).await;
    assert_eq!((code, listed), (200, json!([])), "an all-tenants reader lists them");
    error(app.get(&tenant_admin, "/v1/incidents").await, 403, "forbidden").await;
    let unauthenticated = app.client.post(app.url("/v1/incidents")).body(body).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);

    // Bad input names its field, and nothing is stored.
    let admin = app.token(&["admin#tenant/*"]).await;
    for (body, field) in [
        (json!({"title": "", "message": "y"}), "title"),
        (json!({"title": "x", "message": "y", "components": ["database"]}), "components[0]"),
        (json!({"title": "x", "message": "y", "impact": "apocalyptic"}), "impact"),
        (json!({"title": "x"}), "message"),
    ] {
        let err =
            error(app.post(&admin, "/v1/incidents", "application/json", body.to_string()).await, 422, "invalid_field")
                .await;
        assert_eq!(err["field"], field, "{err}");
    }
    let (_, listed) = json(app.get(&admin, "/v1/incidents").await).await;
    assert_eq!(listed, json!([]));
}
