//! The binary as operators use it: admin commands against the configured store, and
//! `custos serve` processes talking real HTTP while the CLI changes the same store.

use std::time::Duration;

use crate::common::{Server, Store, create_token, post_rule_run};

fn tenants_and_tokens_lifecycle(store: &Store) {
    assert_eq!(store.ok(&["tenants", "create", "acme", "--retention-days", "30", "--name", "Acme"]).trim(), "acme");
    let err = store.fails(&["tenants", "create", "acme"]);
    assert!(err.contains("already exists"), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&store.ok(&["tenants", "list", "--format", "json"])).unwrap();
    assert_eq!((listed[0]["id"].as_str(), listed[0]["retention_days"].as_i64()), (Some("acme"), Some(30)));
    assert!(store.ok(&["tenants", "list"]).contains("acme"));

    let secret = create_token(
        store,
        &["--tenant", "acme", "--scope", "obs:read", "--scope", "ingest:write", "--name", "ci", "--expires-in", "30d"],
    );
    let listed = store.ok(&["tokens", "list", "--format", "json"]);
    assert!(!listed.contains(&secret), "the secret is never shown again");
    let tokens: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(tokens[0]["scopes"], serde_json::json!(["obs:read#tenant/acme", "ingest:write#tenant/acme"]));
    assert_eq!(tokens[0]["active"], true);
    assert!(tokens[0]["expires_at"].is_string());
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    assert!(store.ok(&["tokens", "revoke", &id]).contains("revoked"));
    let tokens: serde_json::Value = serde_json::from_str(&store.ok(&["tokens", "list", "--format", "json"])).unwrap();
    assert_eq!(tokens[0]["active"], false);
    assert!(store.ok(&["tokens", "list"]).contains("revoked"));
    assert!(store.fails(&["tokens", "revoke", "tok_nope"]).contains("not found"));
}

#[test]
fn tenants_and_tokens_lifecycle_on_sqlite() {
    tenants_and_tokens_lifecycle(&Store::sqlite());
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_and_tokens_lifecycle_on_postgres() {
    tenants_and_tokens_lifecycle(&Store::postgres().await);
}

#[test]
fn token_creation_explains_its_errors() {
    let store = Store::sqlite();
    store.ok(&["tenants", "create", "acme"]);
    assert!(
        store
            .fails(&["tokens", "create", "--tenant", "initech", "--scope", "obs:read"])
            .contains("tenant initech does not exist")
    );
    assert!(
        store.fails(&["tokens", "create", "--tenant", "acme", "--scope", "obs:delete"]).contains("unknown permission")
    );
    assert!(store.fails(&["tokens", "create", "--scope", "obs:read"]).contains("--tenant"));
    assert!(store.fails(&["tenants", "create", "Bad_Id"]).contains("tenant id"));
    // Platform operators: every tenant, and full scope strings.
    create_token(&store, &["--tenant", "*", "--scope", "admin"]);
    create_token(&store, &["--scope", "obs:read#tenant/acme"]);

    // Tokens expire in 90 days unless told otherwise; `never` is allowed, with a warning.
    let tokens: serde_json::Value = serde_json::from_str(&store.ok(&["tokens", "list", "--format", "json"])).unwrap();
    let expires = custos_model::Timestamp::parse("t", tokens[0]["expires_at"].as_str().unwrap()).unwrap();
    let in_days = (expires.as_micros() - custos_model::Timestamp::now().as_micros()) as f64 / 86_400e6;
    assert!((89.9..=90.0).contains(&in_days), "{in_days}");
    let (ok, _, stderr) =
        store.run(&["tokens", "create", "--tenant", "acme", "--scope", "obs:read", "--expires-in", "never"]);
    assert!(ok);
    assert!(stderr.contains("warning: this token never expires"), "{stderr}");
    let tokens: serde_json::Value = serde_json::from_str(&store.ok(&["tokens", "list", "--format", "json"])).unwrap();
    assert!(tokens.as_array().unwrap().iter().any(|t| t["expires_at"].is_null()));
    assert!(
        store
            .fails(&["tokens", "create", "--tenant", "acme", "--scope", "obs:read", "--expires-in", "0s"])
            .contains("longer than 0")
    );
    // Every scope is listed in the help.
    let help = store.ok(&["tokens", "create", "--help"]);
    for permission in custos_model::Permission::ALL {
        assert!(help.contains(permission.as_str()), "{permission} missing from tokens create --help");
    }
    assert!(help.contains("attest:read"));
}

#[test]
fn commands_log_json_with_the_fixed_fields_and_never_the_secret() {
    let store = Store::sqlite();
    store.ok(&["tenants", "create", "acme"]);
    let output =
        store.command().args(["tokens", "create", "--tenant", "acme", "--scope", "obs:read"]).output().unwrap();
    let secret = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains(&secret));
    let lines: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let finished = lines.iter().find(|l| l["message"] == "command finished").expect("a command finished line");
    for field in ["ts", "level", "service", "version", "env", "instance_id", "request_id", "trace_id", "error_code"] {
        assert!(finished.get(field).is_some(), "{field} missing from {finished}");
    }
    assert_eq!(finished["command"], "tokens");
    assert!(finished["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(lines.iter().any(|l| l["message"] == "token created" && l["token_id"].as_str().is_some_and(|id| id.starts_with("tok_"))));
}

#[test]
fn config_print_default_lists_every_setting() {
    let text = Store::sqlite().ok(&["config", "print-default"]);
    insta::assert_snapshot!("config_print_default", text);
    for expected in [
        "CUSTOS_LISTEN=127.0.0.1:8080",
        "CUSTOS_DATA_DIR=./custos-data",
        "# CUSTOS_DATABASE_URL=",
        "CUSTOS_MAX_BODY_BYTES=10485760",
        "CUSTOS_DEMO_RATE=50",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
}

#[test]
fn command_log_lines_carry_a_trace() {
    let store = Store::sqlite();
    let (ok, _, stderr) = store.run(&["migrate"]);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stderr.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let finished = lines.iter().find(|l| l["message"] == "command finished").expect("a finish line");
    let trace_id = finished["trace_id"].as_str().expect("the command's trace id");
    assert_eq!(trace_id.len(), 32);
    assert!(lines.iter().all(|l| l["trace_id"] == trace_id), "every line of the command is in its trace: {stderr}");
}

#[test]
fn migrate_reports_the_backend() {
    let store = Store::sqlite();
    assert_eq!(store.ok(&["migrate"]).trim(), "applied 12 migration(s); sqlite schema up to date");
    assert_eq!(store.ok(&["migrate"]).trim(), "applied 0 migration(s); sqlite schema up to date");
}

async fn serve_and_cli_share_the_store(store: Store) {
    store.ok(&["tenants", "create", "acme"]);
    let server = Server::start(&store);
    // Created by the CLI while the server runs: usable at once.
    let token = create_token(&store, &["--tenant", "acme", "--scope", "ingest:write"]);
    let client = reqwest::Client::new();
    assert_eq!(post_rule_run(&client, &server.base, &token, "r1").await, 201);
    let tokens: serde_json::Value = serde_json::from_str(&store.ok(&["tokens", "list", "--format", "json"])).unwrap();
    store.ok(&["tokens", "revoke", tokens[0]["id"].as_str().unwrap()]);
    // Revocation reaches the running server within its token cache's 2 seconds.
    let revoked = std::time::Instant::now();
    while post_rule_run(&client, &server.base, &token, "r2").await != 401 {
        assert!(revoked.elapsed() < std::time::Duration::from_secs(3), "a revoked token still works after 3 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (clean, lines) = server.stop();
    assert!(clean, "SIGTERM drains and exits 0");
    assert!(lines.iter().any(|l| l.contains("\"stopped\"")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_and_cli_share_the_store_on_sqlite() {
    serve_and_cli_share_the_store(Store::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_and_cli_share_the_store_on_postgres() {
    serve_and_cli_share_the_store(Store::postgres().await).await;
}

/// Several stateless replicas share one PostgreSQL: what one accepts, the other serves.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_one_postgres() {
    let store = Store::postgres().await;
    store.ok(&["tenants", "create", "acme"]);
    let token = create_token(&store, &["--tenant", "acme", "--scope", "admin"]);
    let (a, b) = (Server::start(&store), Server::start(&store));
    let client = reqwest::Client::new();
    assert_eq!(post_rule_run(&client, &a.base, &token, "via-a").await, 201);
    let page: serde_json::Value = client
        .get(format!("{}/v1/tenants/acme/rule-runs", b.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["id"], "via-a");
    // The same record sent to the other replica is recognised as a duplicate.
    assert_eq!(post_rule_run(&client, &b.base, &token, "via-a").await, 200);
    assert!(a.stop().0 && b.stop().0);
}

/// `--metrics-listen` serves /metrics, and only /metrics, on a second port.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_listen_serves_metrics_on_its_own_port() {
    let store = Store::sqlite();
    let mut server =
        Server::start_with(&store, &["--metrics-listen", "127.0.0.1:0", "--metrics-namespace", "acme_custos"]);
    let address = loop {
        let line = server.stderr.recv_timeout(Duration::from_secs(30)).expect("the metrics address is logged");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["message"] == "metrics listening" {
            break json["address"].as_str().unwrap().to_owned();
        }
    };
    let client = reqwest::Client::new();
    let text = client.get(format!("http://{address}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("acme_custos_build_info{version="), "{text}");
    let response = client.get(format!("http://{address}/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 404, "the metrics port serves nothing else");
    assert_eq!(client.get(format!("{}/metrics", server.base)).send().await.unwrap().status(), 200);
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let _ = &mut server;
}

#[tokio::test(flavor = "multi_thread")]
async fn incidents_are_opened_updated_and_resolved_from_the_cli_over_http() {
    let store = Store::sqlite();
    store.ok(&["tenants", "create", "acme"]);
    let server = Server::start(&store);
    let admin = create_token(&store, &["--tenant", "*", "--scope", "admin"]);
    let cli = |args: &[&str]| {
        let mut full = vec!["incidents", "--server", server.base.as_str(), "--token", admin.as_str()];
        full.extend_from_slice(args);
        store.run(&full)
    };
    let (ok, stdout, stderr) =
        cli(&["open", "--title", "API errors", "--message", "Looking", "--impact", "major", "--component", "api"]);
    assert!(ok, "{stderr}");
    let id = stdout.trim().to_owned();
    assert!(id.starts_with("inc_"), "open prints the id alone: {stdout:?}");
    let (ok, stdout, stderr) = cli(&["update", &id, "--status", "identified", "--message", "A bad deploy"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), format!("{id} identified"));
    let page: serde_json::Value =
        reqwest::get(format!("{}/status.json", server.base)).await.unwrap().json().await.unwrap();
    let api = page["components"].as_array().unwrap().iter().find(|c| c["id"] == "api").unwrap();
    assert_eq!(api["status"], "partial_outage", "a major incident shows on its component at once");
    assert_eq!(page["incidents"][0]["status"], "identified");

    let (ok, stdout, _) = cli(&["resolve", &id]);
    assert!(ok);
    assert_eq!(stdout.trim(), format!("{id} resolved"));
    let (ok, stdout, _) = cli(&["list", "--format", "json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let updates = listed[0]["updates"].as_array().unwrap();
    assert_eq!(
        updates.iter().map(|u| u["status"].as_str().unwrap()).collect::<Vec<_>>(),
        ["investigating", "identified", "resolved"]
    );
    let (ok, table, _) = cli(&["list"]);
    assert!(ok && table.contains(&id) && table.contains("API errors"), "{table}");

    // Errors say what the server said, with the field at fault; a missing token is named.
    let (ok, _, stderr) = cli(&["open", "--title", "x", "--message", "y", "--component", "nope"]);
    assert!(!ok && stderr.contains("unknown component") && stderr.contains("field components[0]"), "{stderr}");
    let reader = create_token(&store, &["--tenant", "acme", "--scope", "admin"]);
    let (ok, _, stderr) = store.run(&["incidents", "--server", &server.base, "--token", &reader, "resolve", &id]);
    assert!(!ok && stderr.contains("missing scope admin#tenant/*"), "{stderr}");
    let (ok, _, stderr) = store.run(&["incidents", "--server", &server.base, "list"]);
    assert!(!ok && stderr.contains("no token"), "{stderr}");
    server.stop();
}

/// `serve` refuses a database role that can get around row-level security (here the
/// test cluster's superuser), naming it and the fix; `--allow-privileged-database-role`
/// serves anyway, and `/health` warns for as long as it does. The suite's other
/// PostgreSQL tests serve as a login role that owns nothing, migrating as the owner.
#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_a_database_role_that_bypasses_row_level_security() {
    let store = Store::postgres().await;
    store.ok(&["migrate"]);
    let owner = store.database_url.clone().unwrap();
    let output = store
        .command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CUSTOS_DATABASE_URL", &owner)
        .env_remove("CUSTOS_MIGRATE_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("is a superuser, so it can bypass row-level security"), "{stderr}");
    assert!(stderr.contains("--allow-privileged-database-role"), "{stderr}");

    let operator = crate::common::create_token(&store, &["--tenant", "*", "--scope", "admin"]);
    let server = crate::common::Server::start_with_env(
        &store,
        &["--allow-privileged-database-role"],
        &[("CUSTOS_DATABASE_URL", owner.as_str())],
    );
    let health: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/health", server.base))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "warn", "{health}");
    let role = &health["checks"]["database:role"][0];
    assert_eq!(role["status"], "warn", "{health}");
    assert!(role["output"].as_str().unwrap().contains("is a superuser"), "{role}");
    assert!(server.stop().0);

    // As the login role (the suite's default for PostgreSQL): no warning.
    let server = crate::common::Server::start(&store);
    let health: serde_json::Value =
        reqwest::get(format!("{}/health", server.base)).await.unwrap().json().await.unwrap();
    assert!(health["checks"].get("database:role").is_none(), "{health}");
    server.stop();
}

/// The data directory, the SQLite database (and its WAL) and the signing key are the
/// owner's alone: 0700 and 0600, whatever the umask.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let store = Store::sqlite();
    let data = store.dir.path().join("fresh").join("custos-data");
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let output = store.command().env("CUSTOS_DATA_DIR", &data).args(["tenants", "create", "acme"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = store.command().env("CUSTOS_DATA_DIR", &data).args(["keys", "list"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let server = crate::common::Server::start_with_env(&store, &[], &[("CUSTOS_DATA_DIR", data.to_str().unwrap())]);
    server.stop();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("custos.db")), 0o600);
    if data.join("custos.db-wal").exists() {
        assert_eq!(mode(&data.join("custos.db-wal")), 0o600);
    }
    assert_eq!(mode(&data.join("objects")), 0o700);
    assert_eq!(mode(&data.join("keys")), 0o700);
    assert_eq!(mode(&data.join("keys").join("checkpoint-signing.key")), 0o600);
}
