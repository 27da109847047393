//! `custos demo`: the server plus a simulated security platform that reports through
//! the public API, so every page and endpoint has life.
//!
//! The simulation is seeded (`--seed`) and paced (`--rate` records per second). It
//! registers a few tenants' connectors, destinations, queues and jobs, backfills some
//! hours of history, then keeps reporting: mostly healthy traffic, with connectors that
//! go stale or fail, rules that are slow or failing, and a destination that
//! dead-letters.

use std::time::Duration;

use anyhow::Context;
use custos_model::{Scope, TenantId, TenantSelector, Timestamp, token};
use custos_store::{Store, Tenant, TokenRecord};
use rand::seq::{IndexedMutRandom, IndexedRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::cli::{DemoArgs, GlobalArgs};
use crate::commands::serve;
use crate::settings;

const TENANTS: [(&str, &str); 3] = [("acme", "Acme Corp"), ("globex", "Globex"), ("initech", "Initech")];
const PROVIDERS: [&str; 12] = [
    "okta",
    "azure-ad",
    "google-workspace",
    "crowdstrike",
    "sentinelone",
    "aws-cloudtrail",
    "gcp-audit",
    "github",
    "slack",
    "m365",
    "zscaler",
    "cloudflare",
];
const TECHNIQUES: [&str; 16] = [
    "impossible_travel",
    "mfa_fatigue",
    "new_admin_grant",
    "brute_force",
    "dormant_account_login",
    "suspicious_oauth_grant",
    "mass_download",
    "privilege_escalation",
    "disabled_logging",
    "public_bucket",
    "token_theft",
    "unusual_geo",
    "malware_detected",
    "lateral_movement",
    "data_exfiltration",
    "policy_change",
];
const SYNC_ERRORS: [&str; 4] = [
    "provider API returned 429 Too Many Requests",
    "timeout after 30s waiting for the provider",
    "invalid credentials (401): rotate the API key",
    "pagination cursor expired mid-sync",
];
const RULE_ERRORS: [&str; 3] =
    ["query exceeded 10000 events limit", "lookup table assets_v2 not found", "evaluation timed out after 30s"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Healthy,
    /// Stopped syncing this many hours ago.
    Stale(u32),
    Flaky,
    /// Fails most of the time (rules) or dead-letters (destinations).
    Failing,
    Slow,
}

#[derive(Debug, Clone)]
struct Connector {
    id: String,
    provider: &'static str,
    health: Health,
}

#[derive(Debug, Clone)]
struct Rule {
    key: String,
    integration_id: String,
    health: Health,
}

#[derive(Debug, Clone)]
struct Destination {
    id: String,
    kind: &'static str,
    health: Health,
    /// Deliveries dead-lettered so far (what its queue snapshots report).
    dead_letters: i64,
}

impl Destination {
    fn new(id: &str, kind: &'static str, health: Health) -> Self {
        Destination { id: id.to_owned(), kind, health, dead_letters: 0 }
    }
}

#[derive(Debug, Clone)]
struct TenantWorld {
    id: &'static str,
    connectors: Vec<Connector>,
    rules: Vec<Rule>,
    destinations: Vec<Destination>,
    queue_depth: i64,
}

impl TenantWorld {
    /// Deliveries dead-lettered so far, over all destinations (the delivery queue's).
    fn dead_letters(&self) -> i64 {
        self.destinations.iter().map(|d| d.dead_letters).sum()
    }
}

fn build_world(rng: &mut ChaCha8Rng) -> Vec<TenantWorld> {
    TENANTS
        .iter()
        .enumerate()
        .map(|(t, (id, _))| {
            let mut connectors = Vec::new();
            for (i, provider) in PROVIDERS.iter().enumerate() {
                for env in ["prod", "staging"] {
                    if env == "staging" && rng.random_bool(0.6) {
                        continue;
                    }
                    // A few connectors in every tenant are unhealthy, differently per tenant.
                    let health = match (i + t * 5) % 13 {
                        0 => Health::Stale(3),
                        1 => Health::Stale(9),
                        2 => Health::Flaky,
                        _ => Health::Healthy,
                    };
                    connectors.push(Connector { id: format!("{provider}-{env}"), provider, health });
                }
            }
            let mut rules = Vec::new();
            for connector in &connectors {
                for technique in TECHNIQUES.choose_multiple(rng, 6) {
                    let health = match rng.random_range(0..100) {
                        0..=3 => Health::Failing,
                        4..=9 => Health::Slow,
                        _ => Health::Healthy,
                    };
                    let key = format!("{}.{technique}", connector.provider.replace('-', "_"));
                    if !rules.iter().any(|r: &Rule| r.key == key) {
                        rules.push(Rule { key, integration_id: connector.id.clone(), health });
                    }
                }
            }
            let sentinel = if t == 1 { Health::Failing } else { Health::Flaky };
            let destinations = vec![
                Destination::new("splunk", "siem_destination", Health::Healthy),
                Destination::new("sentinel", "siem_destination", sentinel),
                Destination::new("jira", "workflow_destination", Health::Healthy),
                Destination::new("pagerduty", "workflow_destination", Health::Healthy),
            ];
            TenantWorld { id, connectors, rules, destinations, queue_depth: 40 }
        })
        .collect()
}

fn rfc3339(ts: Timestamp) -> String {
    ts.to_string()
}

/// A queue's processed-items counter at `at`: it grows at `per_second` forever, so
/// consecutive snapshots give the console its processing rate.
fn processed_total(at: Timestamp, per_second: i64) -> i64 {
    at.as_micros() / 1_000_000 % 100_000_000 * per_second
}

/// How fast the demo's queues process items.
fn queue_rate(queue: &str) -> i64 {
    if queue == "ingest-queue" { 40 } else { 6 }
}

fn minutes_ago(now: Timestamp, minutes: f64) -> Timestamp {
    now.saturating_add_micros(-(minutes * 60_000_000.0) as i64)
}

fn trace_id(rng: &mut ChaCha8Rng) -> String {
    let bytes: [u8; 16] = rng.random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rule_run(rng: &mut ChaCha8Rng, rule: &Rule, started: Timestamp) -> Value {
    let (status, duration_ms, error) = match rule.health {
        Health::Failing if rng.random_bool(0.6) => {
            ("failed", rng.random_range(50..400), Some(*RULE_ERRORS.choose(rng).unwrap()))
        }
        Health::Slow => ("succeeded", rng.random_range(2_000..9_000), None),
        _ if rng.random_bool(0.01) => ("failed", rng.random_range(10..300), Some(*RULE_ERRORS.choose(rng).unwrap())),
        _ if rng.random_bool(0.03) => ("skipped", 1, None),
        _ => ("succeeded", rng.random_range(15..350), None),
    };
    let events = if status == "skipped" { 0 } else { rng.random_range(0..5_000) };
    let findings = if status == "succeeded" && rng.random_bool(0.08) { rng.random_range(1..4) } else { 0 };
    json!({
        "rule_key": rule.key, "rule_version": format!("{}", 1 + rule.key.len() % 4), "integration_id": rule.integration_id,
        "status": status, "events_evaluated": events, "findings_created": findings,
        "findings_reopened": i32::from(findings > 0 && rng.random_bool(0.2)), "findings_resolved": rng.random_range(0..2),
        "duration_ms": duration_ms, "error_message": error,
        "started_at": rfc3339(started), "finished_at": rfc3339(started.saturating_add_micros(duration_ms * 1000)),
        "trace_id": trace_id(rng),
        "context": {"trigger": {"kind": "schedule", "window_minutes": 5}, "engine": "custos-demo/1"}
    })
}

fn connector_sync(rng: &mut ChaCha8Rng, connector: &Connector, started: Timestamp) -> Value {
    let failed = match connector.health {
        Health::Flaky => rng.random_bool(0.35),
        _ => rng.random_bool(0.02),
    };
    let duration_ms: i64 = rng.random_range(800..25_000);
    let (status, error) = if failed {
        (if rng.random_bool(0.5) { "failed" } else { "partial" }, Some(*SYNC_ERRORS.choose(rng).unwrap()))
    } else {
        ("succeeded", None)
    };
    json!({
        "integration_id": connector.id, "triggered_by": if rng.random_bool(0.9) { "scheduled" } else { "webhook" },
        "status": status, "events_ingested": if status == "failed" { 0 } else { rng.random_range(10..20_000) },
        "new_assets_observed": rng.random_range(0..25), "api_calls_made": rng.random_range(1..400),
        "duration_ms": duration_ms, "error_message": error,
        "started_at": rfc3339(started), "finished_at": rfc3339(started.saturating_add_micros(duration_ms * 1000)),
        "trace_id": trace_id(rng),
    })
}

fn delivery(rng: &mut ChaCha8Rng, destination: &Destination, at: Timestamp) -> Value {
    let (status, attempt, error) = match destination.health {
        Health::Failing if rng.random_bool(0.5) => {
            ("dead_lettered", 5, Some("HTTP 503 from the collector after 5 attempts"))
        }
        Health::Failing | Health::Flaky if rng.random_bool(0.2) => {
            ("retrying", rng.random_range(2..5), Some("HTTP 429 Too Many Requests"))
        }
        _ => ("succeeded", 1, None),
    };
    json!({
        "destination_id": destination.id, "item_id": format!("finding-{}", rng.random_range(10_000..99_999)),
        "status": status, "attempt": attempt, "latency_ms": rng.random_range(20..1_500), "error_message": error,
        "attempted_at": rfc3339(at), "trace_id": trace_id(rng),
    })
}

/// A destination's delivery queue at `at`: a failing one backs up and retries.
fn destination_snapshot(rng: &mut ChaCha8Rng, destination: &Destination, at: Timestamp) -> Value {
    let (pending, retrying) = match destination.health {
        Health::Failing => (rng.random_range(150..400), rng.random_range(5..20)),
        Health::Flaky => (rng.random_range(5..60), rng.random_range(0..6)),
        _ => (rng.random_range(0..10), 0),
    };
    json!({
        "observed_at": rfc3339(at),
        "depth": {"pending": pending, "retrying": retrying, "dead_lettered": destination.dead_letters},
        "oldest_item_age_ms": pending * 400,
        "processed_total": processed_total(at, 3),
    })
}

/// Posts `records` as one NDJSON batch; logs and drops a failed batch.
async fn send(client: &reqwest::Client, base: &str, token: &str, path: &str, records: &[Value]) -> bool {
    if records.is_empty() {
        return true;
    }
    let body: String = records.iter().map(|r| format!("{r}\n")).collect();
    let url = format!("{base}{path}");
    let (request, span) = crate::commands::traced(
        client.post(&url).bearer_auth(token).header("content-type", "application/x-ndjson").body(body),
        "POST",
        &url,
    );
    let result = request.send().instrument(span.clone()).await;
    if let Ok(response) = &result {
        span.record("http.response.status_code", response.status().as_u16());
    }
    match result {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            tracing::warn!(status, path, error_message = text.as_str(), "demo batch refused");
            false
        }
        Err(error) => {
            tracing::warn!(error = &error as &dyn std::error::Error, path, "demo batch failed");
            false
        }
    }
}

async fn put(client: &reqwest::Client, base: &str, token: &str, path: &str, body: Value) -> anyhow::Result<()> {
    let url = format!("{base}{path}");
    let (request, span) = crate::commands::traced(client.put(&url).bearer_auth(token).json(&body), "PUT", &url);
    let response = request.send().instrument(span.clone()).await?;
    span.record("http.response.status_code", response.status().as_u16());
    anyhow::ensure!(response.status().is_success(), "PUT {path}: {}", response.text().await.unwrap_or_default());
    Ok(())
}

/// A new token: its secret and its id.
async fn new_token(store: &dyn Store, name: &str, scope: &str) -> anyhow::Result<(String, String)> {
    let generated = token::generate();
    let scope: Scope = scope.parse().map_err(|e: custos_model::FieldError| anyhow::anyhow!(e.message))?;
    let record = TokenRecord {
        id: generated.id,
        name: name.into(),
        secret_hash: generated.secret_hash,
        scopes: vec![scope],
        created_at: Timestamp::now(),
        expires_at: None,
        revoked_at: None,
    };
    store.create_token(&record).await?;
    let details = crate::commands::admin::created_details(&record);
    crate::commands::admin::record_token_action(store, &record, "custos.token.created", details).await?;
    Ok((generated.secret, record.id))
}

/// Registers the world's components and backfills a few hours of history.
async fn seed(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    world: &mut [TenantWorld],
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let now = Timestamp::now();
    for tenant in world.iter_mut() {
        let t = tenant.id;
        for c in &tenant.connectors {
            let name = format!("{} ({})", c.provider, c.id.rsplit('-').next().unwrap_or(""));
            put(
                client,
                base,
                token,
                &format!("/v1/tenants/{t}/components/{}", c.id),
                json!({"kind": "connector", "provider": c.provider, "name": name}),
            )
            .await?;
        }
        for d in &tenant.destinations {
            put(client, base, token, &format!("/v1/tenants/{t}/components/{}", d.id), json!({"kind": d.kind})).await?;
        }
        put(
            client,
            base,
            token,
            &format!("/v1/tenants/{t}/components/ingest-queue"),
            json!({"kind": "ingestion_queue", "name": "Event ingestion queue"}),
        )
        .await?;
        put(
            client,
            base,
            token,
            &format!("/v1/tenants/{t}/components/delivery-queue"),
            json!({"kind": "ingestion_queue", "name": "Finding delivery queue"}),
        )
        .await?;
        for (job, schedule) in JOBS {
            let body = json!({"kind": "scheduled_job", "schedule": serde_json::from_str::<Value>(schedule)?});
            put(client, base, token, &format!("/v1/tenants/{t}/components/{job}"), body).await?;
        }
        // The jobs' last runs: the scheduled ones succeeded (one took 42 s), the
        // compliance report failed; the export pings once and then falls silent, so
        // the monitor turns it late, then down, while you watch.
        for (job, path, body) in [
            ("hourly-asset-sync", "start?run_id=seed", ""),
            ("hourly-asset-sync", "success?run_id=seed&duration_ms=42000", "synced 1,204 assets"),
            ("nightly-rule-backtest", "success", ""),
            ("daily-compliance-report", "exit/2", "upload failed: 503 from the evidence store"),
            ("event-heartbeat", "success", ""),
            ("legacy-export", "success", ""),
        ] {
            ping(client, base, token, &format!("/v1/tenants/{t}/jobs/{job}/{path}"), body).await;
        }
        put(client, base, token, &format!("/v1/tenants/{t}/components/api-gateway"), json!({"kind": "service"}))
            .await?;
        put(
            client,
            base,
            token,
            &format!("/v1/tenants/{t}/freshness-policies/aws-cloudtrail"),
            json!({"green_under_seconds": 900, "yellow_under_seconds": 3600}),
        )
        .await?;

        // Twelve hours of syncs every 20 minutes; stale connectors stop when they went stale.
        let mut syncs = Vec::new();
        for c in &tenant.connectors {
            let stopped_hours = match c.health {
                Health::Stale(hours) => f64::from(hours),
                _ => 0.0,
            };
            let mut minutes = 12.0 * 60.0;
            while minutes > stopped_hours * 60.0 + 1.0 {
                syncs.push(connector_sync(rng, c, minutes_ago(now, minutes)));
                minutes -= 20.0;
            }
        }
        send(client, base, token, &format!("/v1/tenants/{t}/connector-syncs"), &syncs).await;
        // Three hours of rule runs.
        let runs: Vec<Value> = (0..3000)
            .map(|_| {
                let rule = tenant.rules.choose(rng).expect("every tenant has rules");
                let started = minutes_ago(now, rng.random_range(1.0..180.0));
                rule_run(rng, rule, started)
            })
            .collect();
        send(client, base, token, &format!("/v1/tenants/{t}/rule-runs"), &runs).await;
        // Three hours of deliveries, and the queues' state every five minutes.
        let deliveries: Vec<Value> = (0..600)
            .map(|_| {
                let destination = tenant.destinations.choose(rng).expect("every tenant has destinations");
                let at = minutes_ago(now, rng.random_range(1.0..180.0));
                delivery(rng, destination, at)
            })
            .collect();
        send(client, base, token, &format!("/v1/tenants/{t}/deliveries"), &deliveries).await;
        // Each destination's own queue, every fifteen minutes.
        for destination in &mut tenant.destinations {
            destination.dead_letters = deliveries
                .iter()
                .filter(|d| d["destination_id"] == destination.id.as_str() && d["status"] == "dead_lettered")
                .count() as i64;
            let snapshots: Vec<Value> = (0..12)
                .map(|i| destination_snapshot(rng, destination, minutes_ago(now, f64::from(165 - i * 15))))
                .collect();
            let id = &destination.id;
            send(client, base, token, &format!("/v1/tenants/{t}/components/{id}/snapshots"), &snapshots).await;
        }
        let dead = tenant.dead_letters();
        for queue in ["ingest-queue", "delivery-queue"] {
            let snapshots: Vec<Value> = (0..36)
                .map(|i| {
                    let observed = minutes_ago(now, f64::from(180 - i * 5));
                    let pending: i64 = rng.random_range(0..200);
                    let dead_lettered = if queue == "delivery-queue" { dead * i64::from(i) / 36 } else { 0 };
                    json!({
                        "observed_at": rfc3339(observed),
                        "depth": {"pending": pending, "in_flight": rng.random_range(0..20), "retrying": rng.random_range(0..6), "dead_lettered": dead_lettered},
                        "oldest_item_age_ms": pending * 150,
                        "processed_total": processed_total(observed, queue_rate(queue)),
                    })
                })
                .collect();
            send(client, base, token, &format!("/v1/tenants/{t}/components/{queue}/snapshots"), &snapshots).await;
        }
    }
    Ok(())
}

/// The demo's scheduled jobs and their schedules.
const JOBS: [(&str, &str); 5] = [
    ("hourly-asset-sync", r#"{"cron": "0 * * * *", "grace_seconds": 900}"#),
    ("nightly-rule-backtest", r#"{"cron": "30 2 * * *", "timezone": "Europe/Paris"}"#),
    ("daily-compliance-report", r#"{"cron": "0 6 * * 1-5", "timezone": "America/New_York"}"#),
    ("event-heartbeat", r#"{"period_seconds": 30, "grace_seconds": 15}"#),
    ("legacy-export", r#"{"period_seconds": 60, "grace_seconds": 30}"#),
];

/// Pings a job (`path` under `/v1/tenants/{t}/jobs/{job}/`); failures are logged.
async fn ping(client: &reqwest::Client, base: &str, token: &str, path: &str, body: &str) -> bool {
    let url = format!("{base}{path}");
    let (request, span) =
        crate::commands::traced(client.post(&url).bearer_auth(token).body(body.to_owned()), "POST", &url);
    match request.send().instrument(span.clone()).await {
        Ok(response) => {
            span.record("http.response.status_code", response.status().as_u16());
            let ok = response.status().is_success();
            if !ok {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                tracing::warn!(status, path, error_message = text.as_str(), "demo ping refused");
            }
            ok
        }
        Err(error) => {
            tracing::warn!(error = &error as &dyn std::error::Error, path, "demo ping failed");
            false
        }
    }
}

/// One second of traffic: `budget` records spread over tenants and kinds.
async fn tick(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    world: &mut [TenantWorld],
    rng: &mut ChaCha8Rng,
    budget: u32,
) -> usize {
    let now = Timestamp::now();
    let mut sent = 0;
    let tenants = world.len();
    for tenant in world.iter_mut() {
        let share = (budget as usize).div_ceil(tenants);
        let (mut runs, mut syncs, mut deliveries, mut snapshots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..share {
            match rng.random_range(0..100) {
                0..=71 => {
                    let rule = tenant.rules.choose(rng).expect("rules");
                    let started = minutes_ago(now, rng.random_range(0.0..0.5));
                    runs.push(rule_run(rng, rule, started));
                }
                72..=83 => {
                    let live: Vec<&Connector> =
                        tenant.connectors.iter().filter(|c| !matches!(c.health, Health::Stale(_))).collect();
                    if let Some(c) = live.choose(rng) {
                        syncs.push(connector_sync(rng, c, minutes_ago(now, 0.5)));
                    }
                }
                84..=97 => {
                    let d = tenant.destinations.choose_mut(rng).expect("destinations");
                    let record = delivery(rng, d, now);
                    if record["status"] == "dead_lettered" {
                        d.dead_letters += 1;
                    }
                    deliveries.push(record);
                }
                _ => {
                    tenant.queue_depth = (tenant.queue_depth + rng.random_range(-15..=16)).clamp(0, 5_000);
                    snapshots.push(("ingest-queue".to_owned(), json!({
                        "depth": {"pending": tenant.queue_depth, "in_flight": rng.random_range(0..40), "retrying": rng.random_range(0..5)},
                        "oldest_item_age_ms": tenant.queue_depth * 150,
                        "processed_total": processed_total(now, queue_rate("ingest-queue")),
                    })));
                    snapshots.push(("delivery-queue".to_owned(), json!({
                        "depth": {"pending": rng.random_range(0..30), "retrying": rng.random_range(0..8), "dead_lettered": tenant.dead_letters()},
                        "oldest_item_age_ms": rng.random_range(100..90_000),
                        "processed_total": processed_total(now, queue_rate("delivery-queue")),
                    })));
                    for d in &tenant.destinations {
                        snapshots.push((d.id.clone(), destination_snapshot(rng, d, now)));
                    }
                }
            }
        }
        let t = tenant.id;
        // The heartbeat job pings every 20 seconds or so; one ping in ten is a failure.
        if rng.random_range(0..20) == 0 {
            let outcome = if rng.random_range(0..10) == 0 { "fail" } else { "success" };
            if ping(client, base, token, &format!("/v1/tenants/{t}/jobs/event-heartbeat/{outcome}"), "").await {
                sent += 1;
            }
        }
        // Now and then, the platform's own timeline events and audit records: policy
        // changes (some in the trace of a rule run sent alongside), logins, exports.
        let (mut events, mut audits) = (Vec::new(), Vec::new());
        if rng.random_range(0..8) == 0 {
            let rule = tenant.rules.choose(rng).expect("rules");
            let trace = runs.first().and_then(|r| r["trace_id"].as_str());
            events.push(platform_event(rng, now, &rule.key, trace));
        }
        if rng.random_range(0..6) == 0 {
            audits.push(platform_audit(rng, now));
        }
        for (path, batch) in [("timeline/events", &events), ("audit/events", &audits)] {
            if !batch.is_empty() && send(client, base, token, &format!("/v1/tenants/{t}/{path}"), batch).await {
                sent += batch.len();
            }
        }
        for (path, batch) in [("rule-runs", &runs), ("connector-syncs", &syncs), ("deliveries", &deliveries)] {
            if send(client, base, token, &format!("/v1/tenants/{t}/{path}"), batch).await {
                sent += batch.len();
            }
        }
        for (component, snapshot) in snapshots {
            if send(client, base, token, &format!("/v1/tenants/{t}/components/{component}/snapshots"), &[snapshot])
                .await
            {
                sent += 1;
            }
        }
    }
    sent
}

const PEOPLE: [&str; 5] =
    ["alice@example.com", "bob@example.com", "carol@example.com", "dan@example.com", "svc-deploy"];

fn random_id(rng: &mut ChaCha8Rng, prefix: &str) -> String {
    let bytes: [u8; 8] = rng.random();
    format!("{prefix}-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A change someone made on the platform, for its timeline.
fn platform_event(rng: &mut ChaCha8Rng, now: Timestamp, rule: &str, trace: Option<&str>) -> Value {
    let (kind, resource_type, resource_id, details) = match rng.random_range(0..3) {
        0 => (
            "platform.policy.changed",
            "rule",
            rule.to_owned(),
            json!({"field": "threshold", "from": 5, "to": rng.random_range(3..12)}),
        ),
        1 => ("platform.rule.disabled", "rule", rule.to_owned(), json!({"reason": "noisy during migration"})),
        _ => (
            "platform.integration.credentials_rotated",
            "integration",
            "okta-prod".to_owned(),
            json!({"method": "api"}),
        ),
    };
    json!({"event_id": random_id(rng, "evt"), "ts": rfc3339(now), "kind": kind, "actor": PEOPLE.choose(rng),
           "resource_type": resource_type, "resource_id": resource_id, "trace_id": trace, "details": details})
}

/// A security-relevant action on the platform, for its audit log.
fn platform_audit(rng: &mut ChaCha8Rng, now: Timestamp) -> Value {
    let who = *PEOPLE.choose(rng).expect("people");
    let ip = format!("203.0.113.{}", rng.random_range(1..255));
    let (action, outcome, resource_type) = match rng.random_range(0..20) {
        0..=11 => ("platform.user.login", "success", "session"),
        12..=15 => ("platform.user.login", "failure", "session"),
        16 => ("platform.user.login", "denied", "session"),
        17 | 18 => ("platform.report.exported", "success", "report"),
        _ => ("platform.api_key.created", "success", "api_key"),
    };
    json!({"event_id": random_id(rng, "aud"), "ts": rfc3339(now), "actor": {"id": who, "name": who}, "actor_ip": ip,
           "action": action, "outcome": outcome, "resource_type": resource_type,
           "resource_id": random_id(rng, resource_type), "request_id": random_id(rng, "req")})
}

/// The simulated platform's worker name (spans, heartbeats, metrics).
const SIMULATOR: &str = "demo_simulator";

pub async fn run(global: &GlobalArgs, args: &DemoArgs) -> anyhow::Result<()> {
    let store = settings::open_store(global).await?;
    let privileged = settings::check_database_role(&*store, args.serve.allow_privileged_database_role).await?;
    for (id, name) in TENANTS {
        let id = TenantId::parse(id).expect("demo tenant ids are valid");
        if store.tenant(&id).await?.is_none() {
            store
                .create_tenant(&Tenant {
                    id,
                    name: Some(name.into()),
                    retention_days: 180,
                    created_at: Timestamp::now(),
                })
                .await?;
        }
    }
    let (admin, _) =
        new_token(&*store, "demo-admin", &Scope::new(custos_model::Permission::Admin, TenantSelector::All).to_string())
            .await?;
    let (simulator, simulator_id) = new_token(&*store, "demo-simulator", "admin#tenant/*").await?;

    let listener = serve::bind(&args.serve).await?;
    let address = listener.local_addr().context("reading the bound address")?;
    let base = format!("http://{address}");
    let objects = settings::open_objects(global, &args.serve).await?;
    let key_path = global.signing_key_path();
    custos_server::keys::load_or_create(&*store, &key_path)
        .await
        .with_context(|| format!("setting up the checkpoint signing key {}", key_path.display()))?;
    let mut config = demo_config(global, &args.serve)?;
    config.privileged_database_role = privileged;
    // The simulator's requests are logged at debug: at info they would scroll the banner
    // and the admin token off a newcomer's terminal.
    config.quiet_token_ids.push(simulator_id);
    let state = custos_server::AppState::new(store.clone(), config).with_objects(objects);
    let workers = state.workers.clone();
    custos_server::ledger::spawn_checkpointer(state.clone(), args.serve.checkpoint_period);
    custos_server::ledger::spawn_retention(state.clone(), args.serve.retention_period);
    workers.register(SIMULATOR, Duration::from_secs(1));
    custos_server::jobs::spawn_monitor(state.clone(), args.serve.job_monitor_period);
    custos_server::health::spawn_object_probe(state.clone(), args.serve.object_store_probe_period);
    custos_server::status::spawn_evaluator(state.clone(), args.serve.status_period);
    let server = serve::serve_until_signal(listener, &args.serve, state);

    println!("custos demo is running at {base}");
    println!("admin token (every tenant; shown once): {admin}");
    println!("try: curl -s -H 'Authorization: Bearer {admin}' {base}/v1/tenants/acme/components");
    println!("stop with Ctrl-C; data stays under {}", global.data_dir.display());

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let rate = args.rate;
    let simulate = async move {
        let client = reqwest::Client::new();
        let mut world = build_world(&mut rng);
        let seeding = custos_telemetry::trace_context::worker_span(SIMULATOR, "seed");
        if let Err(error) = seed(&client, &base, &simulator, &mut world, &mut rng).instrument(seeding).await {
            tracing::error!(error = %format!("{error:#}"), "demo seeding failed");
        }
        tracing::info!(tenants = world.len(), rate, "demo simulation started");
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        let mut total = 0usize;
        loop {
            interval.tick().await;
            // Each second of traffic is one iteration of the simulator, a worker like
            // any other: timed, and the root of the traces of the requests it makes.
            let span = custos_telemetry::trace_context::worker_span(SIMULATOR, "iteration");
            let started = std::time::Instant::now();
            let sent = tick(&client, &base, &simulator, &mut world, &mut rng, rate).instrument(span.clone()).await;
            span.record("records", sent);
            workers.finished_iteration(SIMULATOR, started.elapsed());
            total += sent;
            if total % 1000 < rate as usize {
                tracing::info!(records_sent = total, "demo traffic");
            }
        }
    };
    tokio::select! {
        result = server => result,
        () = simulate => Ok(()),
    }
}

/// The server's configuration, marked as a demo on the status page.
fn demo_config(
    global: &crate::cli::GlobalArgs,
    serve: &crate::cli::ServeArgs,
) -> anyhow::Result<custos_server::ServerConfig> {
    let mut config = settings::server_config(global, serve)?;
    config.features.insert("demo".into(), true);
    Ok(config)
}
