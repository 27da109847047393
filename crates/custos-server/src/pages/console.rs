//! The operator console's HTML: login, tenant choice, health, the rule-run audit log
//! and their drill-downs. Every state is written out as well as coloured.

use custos_model::records::{Delivery, QueueSnapshot, RuleRun};
use custos_model::{FreshnessState, TenantId, Timestamp};
use custos_store::Stored;
use maud::{Markup, html};

use super::layout;
use super::status::when;
use crate::console::ConsoleUser;
use crate::console::health::{ConnectorRow, DestinationRow, HealthView, HourPoint, QueueRow, RatePoint, RuleStat};
use custos_model::console::{AuditFilter, TimelineFilter, WINDOWS};

use crate::console::timeline::{ProofView, Row};

/// How often `/admin/health` reloads itself.
pub(crate) const HEALTH_REFRESH_SECONDS: u32 = 30;

fn url(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    format!("{path}?{}", query.finish())
}

/// The console's frame: navigation, the tenant shown, who is logged in, logout.
fn shell(title: &str, user: &ConsoleUser, tenant: Option<&TenantId>, refresh: Option<u32>, body: &Markup) -> Markup {
    let tenant_q: Vec<(&str, &str)> = tenant.map(|t| vec![("tenant", t.as_str())]).unwrap_or_default();
    let framed = html! {
        nav class="console-nav" {
            strong { "custos console" }
            a href=(url("/admin/health", &tenant_q)) { "Health" }
            a href=(url("/admin/audit/rules", &tenant_q)) { "Rule audit" }
            a href=(url("/admin/timeline", &tenant_q)) { "Timeline" }
            a href="/status" { "Status page" }
            span class="spacer" {}
            @if let Some(t) = tenant { span class="muted" { "tenant " strong { (t.as_str()) } } }
            span class="muted" { "token " (user.caller.token.name) }
            @if let Some(csrf) = &user.csrf {
                form method="post" action="/admin/logout" class="inline" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Log out" }
                }
            }
        }
        h1 { (title) }
        (body)
    };
    layout(&format!("{title} · custos console"), refresh, &framed)
}

pub(crate) fn login(next: &str, nonce: &str, error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "custos console" }
        @if let Some(message) = error { p class="alert" role="alert" { (message) } }
        form method="post" action="/admin/login" class="login" {
            label for="token" { "API token" }
            input id="token" name="token" type="password" autocomplete="off" required placeholder="cst_…";
            input type="hidden" name="csrf" value=(nonce);
            input type="hidden" name="next" value=(next);
            button type="submit" { "Log in" }
        }
        p class="muted" {
            "Log in with a token holding " code { "admin" } " (health and rule audit) or " code { "obs:read" }
            " (rule audit) on a tenant. The token is exchanged for a session cookie and not kept by the browser."
        }
    };
    layout("Log in · custos console", None, &body)
}

pub(crate) fn pick_tenant(path: &str, choices: &[TenantId], user: &ConsoleUser) -> Markup {
    let body = html! {
        p { "This token reads several tenants. Pick one:" }
        ul class="choices" {
            @for t in choices { li { a href=(url(path, &[("tenant", t.as_str())])) { (t.as_str()) } } }
        }
    };
    shell("Choose a tenant", user, None, None, &body)
}

/// `3 min ago`, `2 h 5 min ago`, `4 d ago`.
fn ago(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.micros_since(then) / 1_000_000;
    match seconds {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h {} min ago", s / 3600, (s % 3600) / 60),
        s => format!("{} d ago", s / 86_400),
    }
}

/// `850 ms`, `2.4 s`, `3.5 min`.
fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{:.1} min", ms / 60_000.0)
    }
}

fn seconds_span(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn rate(value: Option<f64>) -> String {
    super::percent(value)
}

fn freshness(state: FreshnessState) -> Markup {
    let (class, label) = match state {
        FreshnessState::Green => ("ok", "fresh"),
        FreshnessState::Yellow => ("warn", "stale"),
        FreshnessState::Red => ("bad", "overdue"),
        FreshnessState::Unknown => ("none", "no success yet"),
    };
    html! { span class={ "light l-" (class) } { (label) } }
}

/// A bar per hour: height the mean sync duration, colour the worst outcome. The bars of
/// one colour are one path (`M x,bottom v-height h3 v height z` each), a few hundred bytes
/// a row where a rectangle per bar took two kilobytes: the page has a row per connector.
fn sync_sparkline(hours: &[HourPoint]) -> Markup {
    use std::fmt::Write as _;
    let max = hours.iter().filter_map(|h| h.mean_ms).fold(0.0f64, f64::max);
    let (w, h) = (4.0, 22.0);
    let total: i64 = hours.iter().map(|p| p.total).sum();
    let failed: i64 = hours.iter().map(|p| p.failed).sum();
    let label = format!("{total} syncs in the last {} hours, {failed} failed", hours.len());
    let mut bars =
        [("s-none", String::new()), ("s-ok", String::new()), ("s-warn", String::new()), ("s-bad", String::new())];
    for (i, point) in hours.iter().enumerate() {
        let (colour, height) = if point.total == 0 {
            (0, 1.0)
        } else {
            let height = point.mean_ms.filter(|_| max > 0.0).map_or(3.0, |m| (m / max * (h - 2.0)).max(3.0));
            (
                if point.failed > 0 {
                    3
                } else if point.partial > 0 {
                    2
                } else {
                    1
                },
                height,
            )
        };
        let _ = write!(bars[colour].1, "M{x} {h}v-{height:.0}h{bar}v{height:.0}z", x = i as f64 * w, bar = w - 1.0);
    }
    html! {
        svg class="spark" width=(hours.len() as f64 * w) height=(h) viewBox={ "0 0 " (hours.len() as f64 * w) " " (h) } role="img" aria-label=(label) {
            title { (label) }
            @for (class, path) in &bars {
                @if !path.is_empty() { path class=(class) d=(path) {} }
            }
        }
    }
}

/// A line of the processing rate.
fn rate_sparkline(rates: &[RatePoint]) -> Markup {
    if rates.len() < 2 {
        return html! { span class="muted" { "not enough snapshots" } };
    }
    let (w, h) = (120.0, 22.0);
    let max = rates.iter().map(|r| r.per_second).fold(0.0f64, f64::max).max(f64::EPSILON);
    let step = w / (rates.len() - 1) as f64;
    let points: Vec<String> = rates
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{:.1},{:.1}", i as f64 * step, h - 1.0 - r.per_second / max * (h - 2.0)))
        .collect();
    let last = rates.last().map_or(0.0, |r| r.per_second);
    let label = format!("processing rate, latest {last:.1} items/s, peak {max:.1} items/s");
    html! {
        svg class="spark" width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) {
            title { (label) }
            polyline class="s-line" points=(points.join(" ")) {}
        }
        " " span class="muted" { (format!("{last:.1}/s")) }
    }
}

fn connectors_panel(view: &HealthView, now: Timestamp) -> Markup {
    let problems = view.connectors.iter().filter(|c| c.freshness != FreshnessState::Green).count();
    html! {
        section id="connectors" {
            h2 { "Connectors " span class="muted" { (view.connectors.len()) " · " (problems) " not fresh" } }
            @if view.connectors.is_empty() {
                p class="muted" { "No connectors registered." }
            } @else {
                div class="table" { table {
                    thead { tr { th { "Connector" } th { "Provider" } th { "Freshness" } th { "Last success" } th { "Last " (view.window_hours) " h" } th { "Error rate" } th { "Last error" } } }
                    tbody { @for c in &view.connectors { (connector_row(c, now)) } }
                } }
            }
        }
    }
}

fn connector_row(c: &ConnectorRow, now: Timestamp) -> Markup {
    let thresholds = format!(
        "fresh under {}, stale under {} ({} thresholds)",
        seconds_span(c.green_under_seconds),
        seconds_span(c.yellow_under_seconds),
        match c.threshold_source {
            custos_model::ThresholdSource::Component => "connector",
            custos_model::ThresholdSource::Provider => "provider",
            custos_model::ThresholdSource::Default => "default",
        }
    );
    html! {
        tr {
            td { strong { (c.id) } @if let Some(name) = &c.name { br; span class="muted" { (name) } } }
            td { (c.provider.as_deref().unwrap_or("—")) }
            td title=(thresholds) { (freshness(c.freshness)) }
            td { @match c.last_success_at { Some(t) => span title=(when(t)) { (ago(now, t)) }, None => span class="muted" { "never" } } }
            td { (sync_sparkline(&c.hours)) br; span class="muted" { (c.syncs) " syncs" } }
            td { (rate(c.error_rate)) @if c.failed > 0 { br; span class="muted" { (c.failed) " failed" } } }
            td class="error" { @match &c.last_error { Some(e) => { span title=(when(e.at)) { (e.message) } br; span class="muted" { (ago(now, e.at)) } }, None => span class="muted" { "—" } } }
        }
    }
}

fn destinations_panel(
    title: &str,
    anchor: &str,
    rows: &[DestinationRow],
    tenant: &str,
    now: Timestamp,
    window: i64,
) -> Markup {
    html! {
        section id=(anchor) {
            h2 { (title) " " span class="muted" { (rows.len()) } }
            @if rows.is_empty() {
                p class="muted" { "None registered." }
            } @else {
                div class="table" { table {
                    thead { tr { th { "Destination" } th { "Success (" (window) " h)" } th { "Queue" } th { "Retrying" } th { "Dead-lettered" } th { "Last delivery" } th { "Last error" } } }
                    tbody { @for d in rows {
                        tr {
                            td { strong { (d.id) } @if let Some(name) = &d.name { br; span class="muted" { (name) } } }
                            td {
                                @let class = match d.success_rate { Some(r) if r < 0.95 => "bad", Some(r) if r < 0.99 => "warn", Some(_) => "ok", None => "none" };
                                span class={ "light l-" (class) } { (rate(d.success_rate)) }
                                br; span class="muted" { (d.succeeded) " of " (d.attempts) " attempts" }
                            }
                            td { @match &d.queue { Some(q) => { (q.depth.pending + q.depth.in_flight) br; span class="muted" { "as of " (ago(now, q.observed_at)) } }, None => span class="muted" { "no snapshot" } } }
                            td { @match &d.queue { Some(q) => (q.depth.retrying), None => "—" } }
                            td {
                                @let dead = d.queue.as_ref().map(|q| q.depth.dead_lettered);
                                @match dead { Some(n) if n > 0 => strong class="c-bad" { (n) }, Some(n) => (n), None => "—" }
                                br; a href=(url("/admin/health/deliveries", &[("tenant", tenant), ("destination", &d.id), ("status", "dead_lettered")])) { "dead letters" }
                            }
                            td { @match d.last_delivery_at { Some(t) => span title=(when(t)) { (ago(now, t)) }, None => span class="muted" { "never" } } }
                            td class="error" { @match &d.last_error { Some(e) => { span title=(when(e.at)) { (e.message) } br; span class="muted" { (ago(now, e.at)) } }, None => span class="muted" { "—" } } }
                        }
                    } }
                } }
            }
        }
    }
}

fn ingestion_panel(rows: &[QueueRow], tenant: &str, now: Timestamp) -> Markup {
    html! {
        section id="ingestion" {
            h2 { "Ingestion " span class="muted" { (rows.len()) } }
            @if rows.is_empty() {
                p class="muted" { "No ingestion queues registered." }
            } @else {
                div class="table" { table {
                    thead { tr { th { "Queue" } th { "Depth" } th { "Oldest item" } th { "Processing rate" } th { "Dead-lettered" } th { "Snapshot" } } }
                    tbody { @for q in rows {
                        tr {
                            td { strong { (q.id) } @if let Some(name) = &q.name { br; span class="muted" { (name) } } }
                            @match &q.latest {
                                Some(l) => {
                                    td { (l.depth.pending + l.depth.in_flight + l.depth.retrying) br; span class="muted" { (l.depth.pending) " pending · " (l.depth.in_flight) " in flight · " (l.depth.retrying) " retrying" } }
                                    td { @match l.oldest_item_age_ms { Some(ms) => (millis(ms as f64)), None => "—" } }
                                    td { (rate_sparkline(&q.rates)) }
                                    td {
                                        @if l.depth.dead_lettered > 0 { strong class="c-bad" { (l.depth.dead_lettered) } } @else { (l.depth.dead_lettered) }
                                        br; a href=(url(&format!("/admin/health/queues/{}", q.id), &[("tenant", tenant)])) { "history" }
                                    }
                                    td { span title=(when(l.observed_at)) { (ago(now, l.observed_at)) } }
                                },
                                None => { td colspan="5" class="muted" { "No snapshot reported yet." } }
                            }
                        }
                    } }
                } }
            }
        }
    }
}

fn rule_link(tenant: &str, key: &str) -> Markup {
    html! { a href=(url("/admin/audit/rules", &[("tenant", tenant), ("rule_key", key), ("window", "24h")])) { (key) } }
}

fn rule_table(stats: &[RuleStat], tenant: &str, empty: &str) -> Markup {
    html! {
        @if stats.is_empty() { p class="muted" { (empty) } } @else {
            div class="table" { table {
                thead { tr { th { "Rule" } th { "p95" } th { "Runs" } th { "Failed" } th { "Findings/h" } } }
                tbody { @for s in stats {
                    tr {
                        td { (rule_link(tenant, &s.rule_key)) }
                        td { @match s.p95_ms { Some(ms) => (millis(ms)), None => "—" } }
                        td { (s.runs) }
                        td { @if s.failed > 0 { strong class="c-bad" { (s.failed) } } @else { "0" } }
                        td { (format!("{:.1}", s.findings_per_hour)) }
                    }
                } }
            } }
        }
    }
}

fn rules_panel(view: &HealthView, now: Timestamp) -> Markup {
    let rules = &view.rules;
    let tenant = view.tenant.as_str();
    html! {
        section id="rules" {
            h2 { "Detection rules " span class="muted" { (rules.active) " ran in the last " (view.window_hours) " h" } }
            div class="grid2" {
                div { h3 { "Slowest by p95" } (rule_table(&rules.slowest, tenant, "No timed runs in the window.")) }
                div { h3 { "Noisiest by findings per hour" } (rule_table(&rules.noisiest, tenant, "No findings in the window.")) }
            }
            h3 { "Not run in " (view.window_hours) " h " span class="muted" { (rules.silent_total) } }
            @if rules.silent.is_empty() {
                p class="muted" { "Every rule seen has run in the window." }
            } @else {
                ul class="silent" { @for s in &rules.silent {
                    li { (rule_link(tenant, &s.rule_key)) " " span class="muted" { "last run " @match s.last_run_at { Some(t) => (ago(now, t)), None => "unknown" } } }
                } }
                @if rules.silent_total > rules.silent.len() { p class="muted" { "and " (rules.silent_total - rules.silent.len()) " more" } }
            }
            @if rules.folded_runs > 0 {
                p class="muted" { (rules.folded_runs) " runs of rules beyond the series cap are counted together and not listed." }
            }
        }
    }
}

pub(crate) fn health(view: &HealthView, user: &ConsoleUser) -> Markup {
    let now = view.generated_at;
    let tenant = TenantId::parse(&view.tenant).ok();
    let body = html! {
        p class="muted" {
            "Generated " (when(now)) "; reloads every " (HEALTH_REFRESH_SECONDS) " s. "
            a href=(url("/admin/health.json", &[("tenant", &view.tenant)])) { "JSON" }
        }
        nav class="jump" { a href="#connectors" { "Connectors" } a href="#siem" { "SIEM" } a href="#workflow" { "Workflow" } a href="#ingestion" { "Ingestion" } a href="#rules" { "Rules" } }
        (connectors_panel(view, now))
        (destinations_panel("SIEM destinations", "siem", &view.siem_destinations, &view.tenant, now, view.window_hours))
        (destinations_panel("Workflow destinations", "workflow", &view.workflow_destinations, &view.tenant, now, view.window_hours))
        (ingestion_panel(&view.ingestion, &view.tenant, now))
        (rules_panel(view, now))
    };
    shell("Health", user, tenant.as_ref(), Some(HEALTH_REFRESH_SECONDS), &body)
}

pub(crate) fn deliveries(
    tenant: &TenantId,
    destination: &str,
    status: &str,
    items: &[Stored<Delivery>],
    user: &ConsoleUser,
) -> Markup {
    let now = Timestamp::now();
    let body = html! {
        p { a href=(url("/admin/health", &[("tenant", tenant.as_str())])) { "← Health" } }
        p class="muted" { "The latest " (items.len()) " " (status.replace('_', " ")) " attempts to " strong { (destination) } ", newest first." }
        div class="table" { table {
            thead { tr { th { "Attempted" } th { "Item" } th { "Attempt" } th { "Latency" } th { "Error" } th { "Trace" } } }
            tbody { @for d in items {
                tr {
                    td { span title=(when(d.record.attempted_at)) { (ago(now, d.record.attempted_at)) } }
                    td { code { (d.record.item_id.as_deref().unwrap_or("—")) } }
                    td { (d.record.attempt) }
                    td { @match d.record.latency_ms { Some(ms) => (millis(ms as f64)), None => "—" } }
                    td class="error" { (d.record.error_message.as_deref().unwrap_or("—")) }
                    td { code { (d.record.trace_id.as_deref().unwrap_or("—")) } }
                }
            } }
        } }
        @if items.is_empty() { p class="muted" { "None." } }
    };
    shell(&format!("Deliveries to {destination}"), user, Some(tenant), None, &body)
}

pub(crate) fn queue(tenant: &TenantId, queue: &str, items: &[Stored<QueueSnapshot>], user: &ConsoleUser) -> Markup {
    let body = html! {
        p { a href=(url("/admin/health", &[("tenant", tenant.as_str())])) { "← Health" } }
        p class="muted" { "The latest " (items.len()) " snapshots of " strong { (queue) } ", newest first." }
        div class="table" { table {
            thead { tr { th { "Observed" } th { "Pending" } th { "In flight" } th { "Retrying" } th { "Dead-lettered" } th { "Oldest item" } th { "Processed" } th { "Failed" } } }
            tbody { @for s in items {
                tr {
                    td { (when(s.record.observed_at)) }
                    td { (s.record.depth.pending) } td { (s.record.depth.in_flight) } td { (s.record.depth.retrying) }
                    td { (s.record.depth.dead_lettered) }
                    td { @match s.record.oldest_item_age_ms { Some(ms) => (millis(ms as f64)), None => "—" } }
                    td { @match s.record.processed_total { Some(n) => (n), None => "—" } }
                    td { @match s.record.failed_total { Some(n) => (n), None => "—" } }
                }
            } }
        } }
        @if items.is_empty() { p class="muted" { "None." } }
    };
    shell(&format!("Queue {queue}"), user, Some(tenant), None, &body)
}

fn status_label(status: &str) -> Markup {
    let class = match status {
        "succeeded" => "ok",
        "failed" => "bad",
        "skipped" => "none",
        _ => "warn",
    };
    html! { span class={ "light l-" (class) } { (status) } }
}

fn duration_of(run: &RuleRun) -> Option<f64> {
    run.duration_ms
        .map(|ms| ms as f64)
        .or_else(|| run.finished_at.map(|f| f.micros_since(run.started_at) as f64 / 1000.0))
}

pub(crate) fn audit(
    tenant: &TenantId,
    filter: &AuditFilter,
    items: &[Stored<RuleRun>],
    next: Option<&str>,
    user: &ConsoleUser,
) -> Markup {
    let now = Timestamp::now();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let query = filter.href(tenant, None);
    let body = html! {
        form method="get" action="/admin/audit/rules" class="filters" {
            input type="hidden" name="tenant" value=(tenant.as_str());
            label { "Rule key" input name="rule_key" value=(text(&filter.rule_key)) placeholder="any"; }
            label { "Integration" input name="integration_id" value=(text(&filter.integration_id)) placeholder="any"; }
            label { "Status" select name="status" {
                option value="" selected[filter.status.is_none()] { "any" }
                @for s in ["succeeded", "failed", "skipped", "started"] { option value=(s) selected[filter.status.as_deref() == Some(s)] { (s) } }
            } }
            label { "Window" select name="window" {
                @for (value, label, _) in WINDOWS { option value=(value) selected[filter.window.as_deref().unwrap_or("all") == value] { (label) } }
            } }
            label { "From (UTC)" input type="datetime-local" name="from" value=(text(&filter.from).trim_end_matches('Z')); }
            label { "To (UTC)" input type="datetime-local" name="to" value=(text(&filter.to).trim_end_matches('Z')); }
            div class="actions" {
                button type="submit" { "Apply" }
                a href=(url("/admin/audit/rules", &[("tenant", tenant.as_str())])) { "Clear" }
                a class="export" href={ "/admin/audit/rules.csv?" (query) } download { "Export CSV" }
                a class="export" href={ "/admin/audit/rules.ndjson?" (query) } download { "Export JSON" }
            }
        }
        p class="muted" { (items.len()) " runs shown, newest first" @if next.is_some() { "; more follow" } "." }
        div class="table" { table class="runs" {
            thead { tr { th { "Started (UTC)" } th { "Rule" } th { "Integration" } th { "Status" } th { "Duration" } th { "Events" } th { "Findings" } th { "Error" } } }
            tbody { @for r in items {
                @let run = &r.record;
                tr {
                    td { a href={ "/admin/audit/rules/" (form_urlencoded::byte_serialize(run.id.as_bytes()).collect::<String>()) "?" (query) } title=(ago(now, run.started_at)) { (when(run.started_at)) } }
                    td { (run.rule_key) @if let Some(v) = &run.rule_version { span class="muted" { " v" (v) } } }
                    td { (run.integration_id.as_deref().unwrap_or("—")) }
                    td { (status_label(run.status.as_str())) }
                    td { @match duration_of(run) { Some(ms) => (millis(ms)), None => "—" } }
                    td { (run.events_evaluated) }
                    td { (run.findings_created) " new · " (run.findings_reopened) " reopened · " (run.findings_resolved) " resolved" }
                    td class="error" { (run.error_message.as_deref().unwrap_or("")) }
                }
            } }
        } }
        @if items.is_empty() { p class="muted" { "No rule runs match this filter." } }
        @if let Some(cursor) = next { p { a rel="next" href={ "/admin/audit/rules?" (filter.href(tenant, Some(cursor))) } { "Older runs →" } } }
    };
    shell("Rule-run audit log", user, Some(tenant), None, &body)
}

pub(crate) fn run(tenant: &TenantId, stored: &Stored<RuleRun>, filter: &AuditFilter, user: &ConsoleUser) -> Markup {
    let run = &stored.record;
    let context = run.context.as_ref();
    let trigger = context.and_then(|c| c.get("trigger_event").or_else(|| c.get("trigger")));
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let body = html! {
        p { a href={ "/admin/audit/rules?" (filter.href(tenant, None)) } { "← Rule-run audit log" } }
        h2 { "Result" }
        dl class="facts" {
            dt { "Status" } dd { (status_label(run.status.as_str())) }
            dt { "Rule" } dd { (run.rule_key) @if let Some(v) = &run.rule_version { " (version " (v) ")" } }
            dt { "Integration" } dd { (run.integration_id.as_deref().unwrap_or("—")) }
            dt { "Started" } dd { (run.started_at.to_string()) }
            dt { "Finished" } dd { @match run.finished_at { Some(t) => (t.to_string()), None => "—" } }
            dt { "Duration" } dd { @match duration_of(run) { Some(ms) => (millis(ms)), None => "—" } }
            dt { "Events evaluated" } dd { (run.events_evaluated) }
            dt { "Findings" } dd { (run.findings_created) " created · " (run.findings_reopened) " reopened · " (run.findings_resolved) " resolved" }
            dt { "Error" } dd class="error" { (run.error_message.as_deref().unwrap_or("—")) }
            dt { "Trace id" } dd { code { (run.trace_id.as_deref().unwrap_or("—")) } }
            dt { "Received" } dd { (stored.received_at.to_string()) }
        }
        h2 { "Trigger event" }
        @match trigger { Some(t) => pre { (pretty(t)) }, None => p class="muted" { "The run's context names no trigger event (key " code { "trigger_event" } " or " code { "trigger" } ")." } }
        h2 { "Evaluation context" }
        @match context { Some(c) => pre { (pretty(c)) }, None => p class="muted" { "No context was reported." } }
    };
    shell(&format!("Rule run {}", run.id), user, Some(tenant), None, &body)
}

/// A link to the timeline page with `filter`'s tenant and these fields only.
fn timeline_link(tenant: &TenantId, pairs: &[(&str, &str)]) -> String {
    let mut all = vec![("tenant", tenant.as_str())];
    all.extend_from_slice(pairs);
    url("/admin/timeline", &all)
}

/// Canned filters, the questions asked most.
const TIMELINE_PRESETS: [(&str, &str); 4] = [
    ("Policy changes", "*.policy.changed"),
    ("Failures", "*.failed"),
    ("Components changing state", "custos.component.*"),
    ("Recorded by custos", "custos.*"),
];

fn field<'a>(fields: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    fields.get(name).and_then(serde_json::Value::as_str)
}

pub(crate) fn timeline(
    tenant: &TenantId,
    filter: &TimelineFilter,
    rows: &[Row],
    next: Option<&str>,
    trace_template: Option<&str>,
    user: &ConsoleUser,
) -> Markup {
    let now = Timestamp::now();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        p class="muted" {
            "Show: "
            @for (n, (label, kind)) in TIMELINE_PRESETS.iter().enumerate() {
                @if n > 0 { " · " }
                a class="preset" href=(timeline_link(tenant, &[("kind", kind)])) { (label) }
            }
        }
        form method="get" action="/admin/timeline" class="filters" {
            input type="hidden" name="tenant" value=(tenant.as_str());
            label { "Kind" input name="kind" value=(text(&filter.kind)) placeholder="any; or platform.policy.*"; }
            label { "Actor" input name="actor" value=(text(&filter.actor)) placeholder="any"; }
            label { "Resource type" input name="resource_type" value=(text(&filter.resource_type)) placeholder="any"; }
            label { "Resource id" input name="resource_id" value=(text(&filter.resource_id)) placeholder="any"; }
            label { "Trace id" input name="trace_id" value=(text(&filter.trace_id)) placeholder="any"; }
            label { "Window" select name="window" {
                @for (value, label, _) in WINDOWS { option value=(value) selected[filter.window.as_deref().unwrap_or("all") == value] { (label) } }
            } }
            label { "From (UTC)" input type="datetime-local" name="from" value=(text(&filter.from).trim_end_matches('Z')); }
            label { "To (UTC)" input type="datetime-local" name="to" value=(text(&filter.to).trim_end_matches('Z')); }
            div class="actions" {
                button type="submit" { "Apply" }
                a href=(timeline_link(tenant, &[])) { "Clear" }
            }
        }
        p class="muted" { (rows.len()) " events shown, newest first" @if next.is_some() { "; more follow" } "." }
        div class="table" { table class="events" {
            thead { tr { th { "When (UTC)" } th { "Kind" } th { "Actor" } th { "Resource" } th { "Trace" } th { "Details" } } }
            tbody { @for row in rows {
                @let f = &row.fields;
                tr {
                    td { a href={ "/admin/timeline/" (form_urlencoded::byte_serialize(row.entry.event_id.as_bytes()).collect::<String>()) "?tenant=" (tenant.as_str()) } title=(ago(now, row.entry.ts)) { (when(row.entry.ts)) } }
                    td { a href=(timeline_link(tenant, &[("kind", field(f, "kind").unwrap_or(""))])) { (field(f, "kind").unwrap_or("")) } }
                    td { (field(f, "actor").unwrap_or("—")) }
                    td { @match (field(f, "resource_type"), field(f, "resource_id")) {
                        (Some(kind), Some(id)) => a href=(timeline_link(tenant, &[("resource_type", kind), ("resource_id", id)])) { (kind) "/" (id) },
                        (Some(kind), None) => (kind),
                        _ => "—",
                    } }
                    td { @match field(f, "trace_id") {
                        Some(trace) => {
                            a href=(timeline_link(tenant, &[("trace_id", trace)])) title="everything in this trace" { code { (trace.get(..8).unwrap_or(trace)) "…" } }
                            @if let Some(template) = trace_template { " " a href=(template.replace("{trace_id}", trace)) { "↗" } }
                        },
                        None => "—",
                    } }
                    td class="details" { code { (compact(&f["details"])) } }
                }
            } }
        } }
        @if rows.is_empty() { p class="muted" { "No events match this filter." } }
        @if let Some(cursor) = next { p { a rel="next" href={ "/admin/timeline?" (filter.href(tenant, Some(cursor))) } { "Older events →" } } }
    };
    shell("Timeline", user, Some(tenant), None, &body)
}

/// A JSON value on one line, cut at 120 characters.
fn compact(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

pub(crate) fn timeline_event(
    tenant: &TenantId,
    row: &Row,
    proof: &ProofView,
    filter: &TimelineFilter,
    trace_template: Option<&str>,
    user: &ConsoleUser,
) -> Markup {
    let f = &row.fields;
    let pretty = serde_json::to_string_pretty(f).unwrap_or_default();
    let body = html! {
        p { a href={ "/admin/timeline?" (filter.href(tenant, None)) } { "← Timeline" } }
        dl class="facts" {
            dt { "Kind" } dd { (field(f, "kind").unwrap_or("")) }
            dt { "When" } dd { (row.entry.ts.to_string()) }
            dt { "Actor" } dd { (field(f, "actor").unwrap_or("—")) }
            dt { "Resource" } dd { @match (field(f, "resource_type"), field(f, "resource_id")) {
                (Some(kind), Some(id)) => a href=(timeline_link(tenant, &[("resource_type", kind), ("resource_id", id)])) { (kind) "/" (id) " — every event about it" },
                _ => "—",
            } }
            dt { "Trace" } dd { @match field(f, "trace_id") {
                Some(trace) => {
                    a href=(timeline_link(tenant, &[("trace_id", trace)])) { "everything in trace " code { (trace) } }
                    @if let Some(template) = trace_template { " · " a href=(template.replace("{trace_id}", trace)) { "open the trace ↗" } }
                },
                None => "—",
            } }
            dt { "Received" } dd { (row.entry.received_at.to_string()) }
        }
        h2 { "Proof" }
        p class=(if proof.verified { "verified" } else { "alert" }) role="status" {
            @if proof.verified {
                "✓ Leaf " (row.entry.leaf_index) " is included in the checkpoint of " (proof.checkpoint.size)
                " leaves signed by key " code { (proof.checkpoint.key_id) } ": its inclusion proof was checked from the record's bytes to the signed root."
            } @else {
                "✗ The inclusion proof does not lead to the checkpoint's root: run custos forensic verify-log."
            }
        }
        dl class="facts" {
            dt { "Leaf index" } dd { (row.entry.leaf_index) }
            dt { "Leaf hash" } dd { code { (proof.leaf_hash) } }
            dt { "Proof" } dd { @for hash in &proof.path { code { (hash) } br; } @if proof.path.is_empty() { "(none: the only leaf)" } }
        }
        h3 { "Signed checkpoint" }
        pre { (proof.checkpoint.note) }
        h2 { "Record" }
        p class="muted" { "Exactly the bytes that were hashed (canonical JSON), shown indented." }
        pre { (pretty) }
    };
    shell(&format!("Timeline event {}", row.entry.event_id), user, Some(tenant), None, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ages_read_naturally() {
        assert_eq!(millis(850.0), "850 ms");
        assert_eq!(millis(2_400.0), "2.4 s");
        assert_eq!(millis(210_000.0), "3.5 min");
        let now = Timestamp::from_micros(10 * 86_400_000_000);
        assert_eq!(ago(now, Timestamp::from_micros(now.as_micros() - 30_000_000)), "30 s ago");
        assert_eq!(ago(now, Timestamp::from_micros(now.as_micros() - 7_500_000_000)), "2 h 5 min ago");
        assert_eq!(ago(now, Timestamp::from_micros(0)), "10 d ago");
        assert_eq!(seconds_span(21_600), "6 h");
    }
}
