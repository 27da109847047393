use custos_model::Timestamp;

use crate::on_both_backends;
use crate::support::{JSON, TestApp, error, rule_run};

on_both_backends!(
    missing_or_bad_tokens_are_401,
    revoked_and_expired_tokens_are_refused_at_once,
    a_403_names_the_missing_scope_and_nothing_else,
    unknown_tenants_are_404_only_to_callers_allowed_to_ask,
    admin_and_wildcard_scopes_grant_across_tenants,
);

async fn missing_or_bad_tokens_are_401(app: TestApp) {
    let url = app.url("/v1/tenants/acme/rule-runs");
    error(app.client.get(&url).send().await.unwrap(), 401, "unauthorized").await;
    error(
        app.client.get(&url).header("authorization", "Basic dXNlcjpwYXNz").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    error(app.client.get(&url).bearer_auth("cst_not-a-real-token").send().await.unwrap(), 401, "unauthorized").await;
    error(app.client.get(&url).header("authorization", "Bearer ").send().await.unwrap(), 401, "unauthorized").await;
}

/// A token revoked in the store (by the CLI, or another replica) is refused once the
/// server's token cache (2 s) has let it go; an expired token at once.
async fn revoked_and_expired_tokens_are_refused_at_once(app: TestApp) {
    let token = app.token(&["obs:read#tenant/acme"]).await;
    assert_eq!(app.get(&token, "/v1/tenants/acme/rule-runs").await.status(), 200);
    let id = app.store.tokens().await.unwrap().into_iter().last().unwrap().id;
    app.store.revoke_token(&id, Timestamp::now()).await.unwrap();
    let revoked_at = std::time::Instant::now();
    while app.get(&token, "/v1/tenants/acme/rule-runs").await.status() == 200 {
        assert!(revoked_at.elapsed() < std::time::Duration::from_secs(3), "a revoked token still works after 3 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let err = error(app.get(&token, "/v1/tenants/acme/rule-runs").await, 401, "unauthorized").await;
    assert_eq!(err["message"], "token revoked");

    let expired =
        app.token_with(&["obs:read#tenant/acme"], Some(Timestamp::from_micros(Timestamp::now().as_micros() - 1))).await;
    let err = error(app.get(&expired, "/v1/tenants/acme/rule-runs").await, 401, "unauthorized").await;
    assert_eq!(err["message"], "token expired");
}

async fn a_403_names_the_missing_scope_and_nothing_else(app: TestApp) {
    let reader = app.token(&["obs:read#tenant/acme"]).await;
    let err = error(
        app.post(&reader, "/v1/tenants/acme/rule-runs", JSON, rule_run("r1", 1).to_string()).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(err["message"], "missing scope ingest:write#tenant/acme");
    // Another tenant, existing or not, gets the same answer: no tenant enumeration.
    let err = error(app.get(&reader, "/v1/tenants/globex/rule-runs").await, 403, "forbidden").await;
    assert_eq!(err["message"], "missing scope obs:read#tenant/globex");
    let err = error(app.get(&reader, "/v1/tenants/initech/rule-runs").await, 403, "forbidden").await;
    assert_eq!(err["message"], "missing scope obs:read#tenant/initech");
    let writer = app.token(&["ingest:write#tenant/acme"]).await;
    let body = serde_json::json!({"green_under_seconds": 60, "yellow_under_seconds": 120});
    let err = error(
        app.client
            .put(app.url("/v1/tenants/acme/freshness-policies/okta"))
            .bearer_auth(&writer)
            .json(&body)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(err["message"], "missing scope admin#tenant/acme");
}

async fn unknown_tenants_are_404_only_to_callers_allowed_to_ask(app: TestApp) {
    let operator = app.token(&["obs:read#tenant/*"]).await;
    error(app.get(&operator, "/v1/tenants/initech/rule-runs").await, 404, "not_found").await;
    error(app.get(&operator, "/v1/tenants/Not_A_Tenant/rule-runs").await, 404, "not_found").await;
    assert_eq!(app.get(&operator, "/v1/tenants/globex/rule-runs").await.status(), 200);
}

async fn admin_and_wildcard_scopes_grant_across_tenants(app: TestApp) {
    let admin = app.token(&["admin#tenant/*"]).await;
    for tenant in ["acme", "globex"] {
        let response =
            app.post(&admin, &format!("/v1/tenants/{tenant}/rule-runs"), JSON, rule_run("r1", 1).to_string()).await;
        assert_eq!(response.status(), 201);
        assert_eq!(app.get(&admin, &format!("/v1/tenants/{tenant}/rule-runs")).await.status(), 200);
    }
    let acme_admin = app.token(&["admin#tenant/acme"]).await;
    assert_eq!(app.get(&acme_admin, "/v1/tenants/acme/components").await.status(), 200);
    assert_eq!(app.get(&acme_admin, "/v1/tenants/globex/components").await.status(), 403);
}
