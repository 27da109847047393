//! The status page's HTML and the badge.

use custos_model::Timestamp;
use custos_model::status::{ComponentStatus, DayBar};
use custos_store::IncidentRecord;
use maud::{Markup, html};

use super::{layout, percent, state};
use crate::routes::status_page::{ComponentView, GroupView, MaintenanceView, StatusPage};

/// `2026-11-20 12:00 UTC`.
pub(crate) fn when(t: Timestamp) -> String {
    let text = t.to_string();
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// The state a day's bar shows, as a class suffix and a tooltip.
fn day(bar: &DayBar) -> (String, String) {
    let class = bar.worst.map_or("none", ComponentStatus::as_str).to_owned();
    let tip = match bar.uptime {
        Some(uptime) => format!(
            "{}: {} uptime, worst {}",
            bar.date,
            percent(Some(uptime)),
            bar.worst.map_or("no data", ComponentStatus::label)
        ),
        None if bar.under_maintenance_seconds > 0 => format!("{}: under maintenance", bar.date),
        None => format!("{}: no data", bar.date),
    };
    (class, tip)
}

fn bars(days: &[DayBar]) -> Markup {
    html! {
        div class="bars" role="img" aria-label={ "Daily state over the last " (days.len()) " days" } {
            @for bar in days {
                @let (class, tip) = day(bar);
                span class={ "b-" (class) } title=(tip) {}
            }
        }
        div class="axis muted" { span { (days.len()) " days ago" } span { "today" } }
    }
}

fn component(view: &ComponentView) -> Markup {
    html! {
        section class="panel" id={ "component-" (view.id) } {
            div class="row" {
                h3 { (view.name) }
                (state(view.status))
            }
            (bars(&view.days))
            div class="muted" { (uptime(view.uptime_90d)) }
        }
    }
}

fn uptime(ratio: Option<f64>) -> String {
    match ratio {
        Some(_) => format!("{} uptime over 90 days", percent(ratio)),
        None => "No uptime measured yet".to_owned(),
    }
}

fn group(view: &GroupView) -> Markup {
    html! {
        section class="panel" id={ "group-" (view.id) } {
            div class="row" {
                h3 { (view.name) " (" (view.components.len()) ")" }
                (state(view.status))
            }
            (bars(&view.days))
            div class="muted" { (uptime(view.uptime_90d)) }
            ul class="members" {
                @for member in &view.components {
                    li {
                        span { (member.name) @if member.name != member.id { " " span class="muted" { "(" (member.id) ")" } } }
                        span { (state(member.status)) " " span class="muted" { (percent(member.uptime_90d)) } }
                    }
                }
            }
        }
    }
}

fn incident(incident: &IncidentRecord) -> Markup {
    html! {
        article class="panel" id={ "incident-" (incident.id) } {
            div class="row" {
                h3 { (incident.title) }
                span class="muted" { "impact: " (incident.impact.as_str()) }
            }
            div class="muted" {
                (incident.status.as_str()) " · opened " (when(incident.created_at))
                @if let Some(resolved) = incident.resolved_at { " · resolved " (when(resolved)) }
                @if !incident.components.is_empty() { " · affects " (incident.components.join(", ")) }
            }
            ol class="updates" reversed {
                @for update in incident.updates.iter().rev() {
                    li { strong { (update.status.as_str()) } " — " (update.message) " " span class="muted" { (when(update.at)) } }
                }
            }
        }
    }
}

fn maintenance(window: &MaintenanceView) -> Markup {
    html! {
        div class="panel" {
            div class="row" {
                h3 { (window.title) }
                span class="state c-under_maintenance" { @if window.state == "in_progress" { "In progress" } @else { "Scheduled" } }
            }
            div class="muted" {
                (when(window.starts_at)) " – " (when(window.ends_at))
                @if let Some(cron) = &window.cron { " · recurring (" (cron) ", " (window.timezone.as_deref().unwrap_or("UTC")) ")" }
                " · " @if window.components.is_empty() { "all components" } @else { (window.components.join(", ")) }
            }
        }
    }
}

fn incidents_section(incidents: &[IncidentRecord]) -> Markup {
    let (open, resolved): (Vec<_>, Vec<_>) = incidents.iter().partition(|i| i.resolved_at.is_none());
    html! {
        h2 { "Incidents" }
        @if open.is_empty() { p class="muted" { "No open incidents." } }
        @for i in &open { (incident(i)) }
        @if !resolved.is_empty() {
            h2 { "Resolved in the last 90 days" }
            @for i in &resolved { (incident(i)) }
        }
    }
}

/// The whole page.
pub(crate) fn render(page: &StatusPage) -> Markup {
    let indicator = page.status.indicator;
    let banner_class = match indicator {
        custos_model::status::Indicator::None => "operational",
        custos_model::status::Indicator::Minor => "degraded_performance",
        custos_model::status::Indicator::Major => "partial_outage",
        custos_model::status::Indicator::Critical => "major_outage",
        custos_model::status::Indicator::Maintenance => "under_maintenance",
    };
    let features: Vec<&str> = page.page.features.iter().filter(|(_, on)| **on).map(|(name, _)| name.as_str()).collect();
    layout(
        &page.page.title,
        Some(60),
        &html! {
            h1 { (page.page.title) }
            div class={ "banner b-" (banner_class) } id="indicator" data-indicator=(indicator.as_str()) { (page.status.description) }
            @if !page.maintenances.is_empty() {
                h2 { "Maintenance" }
                @for window in &page.maintenances { (maintenance(window)) }
            }
            h2 { "Components" }
            @for view in &page.components { (component(view)) }
            (incidents_section(&page.incidents))
            @if let Some(tenant) = &page.tenant {
                h2 id="tenant" { "Tenant " (tenant.tenant) ": " (tenant.status.description) }
                @if tenant.groups.is_empty() { p class="muted" { "This tenant has registered no connectors or destinations." } }
                @for g in &tenant.groups { (group(g)) }
                @if !tenant.maintenances.is_empty() {
                    h2 { "Tenant maintenance" }
                    @for window in &tenant.maintenances { (maintenance(window)) }
                }
                @if !tenant.incidents.is_empty() {
                    h2 { "Tenant incidents" }
                    @for i in &tenant.incidents { (incident(i)) }
                }
            }
            footer class="muted" {
                "custos " (page.page.version) " (" (page.page.commit) ") · updated " (when(page.page.updated_at))
                @if !features.is_empty() { " · features: " (features.join(", ")) }
                " · " a href="status.json" { "JSON" }
            }
        },
    )
}

/// A badge in the common flat style: `label | state`, the state in its colour.
pub(crate) fn badge_svg(label: &str, status: ComponentStatus) -> String {
    let message = status.label().to_lowercase();
    let colour = match status {
        ComponentStatus::Operational => "#1e7b34",
        ComponentStatus::DegradedPerformance => "#b58100",
        ComponentStatus::PartialOutage => "#c45a00",
        ComponentStatus::MajorOutage => "#b3261e",
        ComponentStatus::UnderMaintenance => "#1b5fab",
    };
    // Verdana 11px averages about 7 px a character; 10 px of padding each side.
    let width = |text: &str| text.chars().count() as u32 * 7 + 10;
    let (left, right) = (width(label), width(&message));
    let total = left + right;
    let markup = html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(total) height="20" role="img" aria-label={ (label) ": " (message) } {
            title { (label) ": " (message) }
            rect width=(left) height="20" fill="#555" {}
            rect x=(left) width=(right) height="20" fill=(colour) {}
            g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11" {
                text x=(left / 2) y="14" { (label) }
                text x=(left + right / 2) y="14" { (message) }
            }
        }
    };
    markup.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_escapes_its_label_and_says_the_state_in_words() {
        let svg = badge_svg("a<b", ComponentStatus::MajorOutage);
        assert!(svg.contains("a&lt;b: major outage"));
        assert!(svg.contains("#b3261e"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn times_read_in_utc_to_the_minute() {
        let t = Timestamp::parse("t", "2026-11-20T12:34:56.789Z").unwrap();
        assert_eq!(when(t), "2026-11-20 12:34 UTC");
    }
}
