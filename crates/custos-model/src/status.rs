//! The status page's rules, as pure functions: the Statuspage vocabulary of component
//! states and the overall indicator; a component's state from what was observed of it
//! (failures, latency, freshness); daily uptime from state intervals; the hysteresis
//! that opens and resolves automatic incidents without flapping; maintenance windows,
//! one-off and recurring; and the validation of incidents and windows as clients post
//! them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{FieldError, check};
use crate::jobs::{CompiledSchedule, JobSchedule};
use crate::timestamp::Timestamp;

const MICROS: i64 = 1_000_000;
/// Longest incident title, maintenance title and component name.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest incident update message.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Most components one incident or window names.
pub const MAX_COMPONENTS: usize = 64;
/// Longest maintenance window, one-off or each occurrence of a recurring one.
pub const MAX_WINDOW_SECONDS: i64 = 7 * 24 * 3600;
/// How long resolved incidents stay listed.
pub const RESOLVED_INCIDENTS_KEPT_DAYS: i64 = 90;
/// Days of uptime bars.
pub const UPTIME_DAYS: i64 = 90;

/// The earliest resolution time of the resolved incidents still listed at `now`.
pub fn resolved_listed_since(now: Timestamp) -> Timestamp {
    now.saturating_add_micros(-RESOLVED_INCIDENTS_KEPT_DAYS * 86_400 * MICROS)
}
/// Weight of a partial outage in uptime: a minute of partial outage counts as this
/// fraction of a minute down (Statuspage's convention; a major outage counts fully).
pub const PARTIAL_OUTAGE_WEIGHT: f64 = 0.3;

/// The platform-wide page's components: (id, name). Their states come from what every
/// tenant's platform reports, and from custos itself; none names a tenant.
pub const PLATFORM_COMPONENTS: [(&str, &str); 5] = [
    ("api", "API"),
    ("ingestion", "Ingestion"),
    ("delivery", "Delivery dispatcher"),
    ("workers", "Workers"),
    ("console", "Web console"),
];

/// The ids of [`PLATFORM_COMPONENTS`].
pub fn platform_component_ids() -> Vec<&'static str> {
    PLATFORM_COMPONENTS.iter().map(|(id, _)| *id).collect()
}

/// A component's state, in Statuspage's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Operational,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
    UnderMaintenance,
}

impl ComponentStatus {
    pub const ALL: [ComponentStatus; 5] = [
        ComponentStatus::Operational,
        ComponentStatus::DegradedPerformance,
        ComponentStatus::PartialOutage,
        ComponentStatus::MajorOutage,
        ComponentStatus::UnderMaintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
            ComponentStatus::UnderMaintenance => "under_maintenance",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Words for people (and for readers who do not see colour).
    pub fn label(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "Operational",
            ComponentStatus::DegradedPerformance => "Degraded performance",
            ComponentStatus::PartialOutage => "Partial outage",
            ComponentStatus::MajorOutage => "Major outage",
            ComponentStatus::UnderMaintenance => "Under maintenance",
        }
    }

    /// How bad it is: maintenance ranks with operational (planned, not a failure).
    pub fn severity(self) -> u8 {
        match self {
            ComponentStatus::Operational | ComponentStatus::UnderMaintenance => 0,
            ComponentStatus::DegradedPerformance => 1,
            ComponentStatus::PartialOutage => 2,
            ComponentStatus::MajorOutage => 3,
        }
    }

    /// Which state colours a day's bar: the most severe, and maintenance over a day
    /// that was otherwise only operational.
    fn bar_rank(self) -> u8 {
        2 * self.severity() + u8::from(self == ComponentStatus::UnderMaintenance)
    }
}

/// The page's one-line summary, in Statuspage's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    None,
    Minor,
    Major,
    Critical,
    Maintenance,
}

impl Indicator {
    pub fn as_str(self) -> &'static str {
        match self {
            Indicator::None => "none",
            Indicator::Minor => "minor",
            Indicator::Major => "major",
            Indicator::Critical => "critical",
            Indicator::Maintenance => "maintenance",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Indicator::None => "All Systems Operational",
            Indicator::Minor => "Degraded Performance",
            Indicator::Major => "Partial System Outage",
            Indicator::Critical => "Major System Outage",
            Indicator::Maintenance => "Service Under Maintenance",
        }
    }

    /// The worst component decides; maintenance shows only when nothing is failing.
    pub fn overall(statuses: impl IntoIterator<Item = ComponentStatus>) -> Indicator {
        let (mut worst, mut maintenance) = (0, false);
        for status in statuses {
            worst = worst.max(status.severity());
            maintenance |= status == ComponentStatus::UnderMaintenance;
        }
        match (worst, maintenance) {
            (0, true) => Indicator::Maintenance,
            (0, false) => Indicator::None,
            (1, _) => Indicator::Minor,
            (2, _) => Indicator::Major,
            _ => Indicator::Critical,
        }
    }
}

/// What was observed of a component over the evaluation window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Observation {
    /// Attempts (requests, runs, syncs, deliveries) in the window.
    pub total: u64,
    /// Those that failed.
    pub failed: u64,
    /// The 95th percentile of their durations, when measured.
    pub p95_ms: Option<f64>,
    /// Parts of the component that are stale or down (connectors past their freshness
    /// threshold, jobs down), out of `parts`.
    pub parts_down: u64,
    pub parts: u64,
}

/// Where a state changes. Failure ratios are fractions of attempts; a component is
/// judged on failures only with at least `min_attempts` in the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub degraded_failure_ratio: f64,
    pub partial_failure_ratio: f64,
    pub major_failure_ratio: f64,
    /// p95 beyond which the component is degraded (slow but working).
    pub slow_p95_ms: Option<f64>,
    pub min_attempts: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            degraded_failure_ratio: 0.02,
            partial_failure_ratio: 0.10,
            major_failure_ratio: 0.50,
            slow_p95_ms: None,
            min_attempts: 10,
        }
    }
}

/// A component's state from what was observed: the worst of what its failure ratio,
/// the share of its parts that are down, and its latency say. Too few attempts to judge
/// says nothing (operational), so a quiet night is not an outage.
pub fn derive_status(observation: &Observation, thresholds: &Thresholds) -> ComponentStatus {
    let by_ratio = |ratio: f64| {
        if ratio >= thresholds.major_failure_ratio {
            ComponentStatus::MajorOutage
        } else if ratio >= thresholds.partial_failure_ratio {
            ComponentStatus::PartialOutage
        } else if ratio >= thresholds.degraded_failure_ratio {
            ComponentStatus::DegradedPerformance
        } else {
            ComponentStatus::Operational
        }
    };
    let mut status = ComponentStatus::Operational;
    if observation.total >= thresholds.min_attempts.max(1) {
        status = worst(status, by_ratio(observation.failed as f64 / observation.total as f64));
    }
    if observation.parts > 0 && observation.parts_down > 0 {
        // One stale connector of many is partial; all of them down is major.
        let share = observation.parts_down as f64 / observation.parts as f64;
        let by_parts = if share >= 1.0 {
            ComponentStatus::MajorOutage
        } else if share >= thresholds.partial_failure_ratio {
            ComponentStatus::PartialOutage
        } else {
            ComponentStatus::DegradedPerformance
        };
        status = worst(status, by_parts);
    }
    if let (Some(p95), Some(slow)) = (observation.p95_ms, thresholds.slow_p95_ms)
        && observation.total > 0
        && p95 > slow
    {
        status = worst(status, ComponentStatus::DegradedPerformance);
    }
    status
}

/// The worse of two states (maintenance counts as operational).
pub fn worst(a: ComponentStatus, b: ComponentStatus) -> ComponentStatus {
    if b.severity() > a.severity() { b } else { a }
}

/// A stretch of time a component spent in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: Timestamp,
    pub end: Timestamp,
    pub status: ComponentStatus,
}

/// One day's bar: seconds in each state, and the uptime they make.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayBar {
    /// The day (UTC), `YYYY-MM-DD`.
    pub date: String,
    pub operational_seconds: i64,
    pub degraded_performance_seconds: i64,
    pub partial_outage_seconds: i64,
    pub major_outage_seconds: i64,
    pub under_maintenance_seconds: i64,
    /// Seconds nothing was recorded (before the component existed, or custos was down).
    pub no_data_seconds: i64,
    /// 1 minus (major + 0.3 × partial) over the observed time outside maintenance;
    /// `null` when nothing was observed that day.
    pub uptime: Option<f64>,
    /// The worst state of the day, for the bar's colour.
    pub worst: Option<ComponentStatus>,
}

/// Start of the UTC day holding `t`, in microseconds.
pub fn day_start(t: Timestamp) -> Timestamp {
    let day = 86_400 * MICROS;
    Timestamp::from_micros(t.as_micros().div_euclid(day) * day)
}

/// The bars of the `days` UTC days ending with the day of `now` (oldest first), from
/// `intervals` in any order (overlaps are not expected; the part of a day after `now`
/// is not counted at all).
pub fn daily_bars(intervals: &[Interval], now: Timestamp, days: i64) -> Vec<DayBar> {
    let day = 86_400 * MICROS;
    let today = day_start(now);
    (0..days)
        .rev()
        .map(|back| {
            let start = today.saturating_add_micros(-back * day);
            let end = start.saturating_add_micros(day).as_micros().min(now.as_micros());
            let mut seconds = [0i64; 5];
            let mut worst_status: Option<ComponentStatus> = None;
            for interval in intervals {
                let from = interval.start.as_micros().max(start.as_micros());
                let to = interval.end.as_micros().min(end);
                if to <= from {
                    continue;
                }
                let index = ComponentStatus::ALL.iter().position(|s| *s == interval.status).unwrap_or(0);
                seconds[index] += (to - from) / MICROS;
                if worst_status.is_none_or(|w| interval.status.bar_rank() > w.bar_rank()) {
                    worst_status = Some(interval.status);
                }
            }
            let observed: i64 = seconds.iter().sum();
            let [operational, degraded, partial, major, maintenance] = seconds;
            let counted = observed - maintenance;
            let uptime = (counted > 0).then(|| {
                (1.0 - (major as f64 + PARTIAL_OUTAGE_WEIGHT * partial as f64) / counted as f64).clamp(0.0, 1.0)
            });
            DayBar {
                date: start.to_string()[..10].to_owned(),
                operational_seconds: operational,
                degraded_performance_seconds: degraded,
                partial_outage_seconds: partial,
                major_outage_seconds: major,
                under_maintenance_seconds: maintenance,
                no_data_seconds: ((end - start.as_micros()) / MICROS - observed).max(0),
                uptime,
                worst: worst_status,
            }
        })
        .collect()
}

/// The intervals of one component from its changes (time order): each state lasts
/// until the next change, the last until `now`.
pub fn intervals(changes: &[(Timestamp, ComponentStatus)], now: Timestamp) -> Vec<Interval> {
    changes
        .iter()
        .enumerate()
        .map(|(i, &(start, status))| {
            let end = changes.get(i + 1).map_or(now, |next| next.0);
            Interval { start, end, status }
        })
        .filter(|interval| interval.end > interval.start)
        .collect()
}

/// A component's intervals from its recorded changes, each stretch raised to at least
/// the floors covering it: `(start, end, status)`, an incident's impact from its opening
/// to its resolution. A floor over a stretch with nothing recorded counts on its own.
pub fn raised_intervals(
    changes: &[(Timestamp, ComponentStatus)],
    floors: &[(Timestamp, Timestamp, ComponentStatus)],
    now: Timestamp,
) -> Vec<Interval> {
    let mut points: Vec<Timestamp> =
        changes.iter().map(|c| c.0).chain(floors.iter().flat_map(|f| [f.0, f.1])).filter(|at| *at < now).collect();
    points.sort();
    points.dedup();
    let mut out: Vec<Interval> = Vec::new();
    for (i, &start) in points.iter().enumerate() {
        let end = points.get(i + 1).copied().unwrap_or(now);
        let recorded = changes.partition_point(|(at, _)| *at <= start).checked_sub(1).map(|i| changes[i].1);
        let floor = floors.iter().filter(|(from, to, _)| *from <= start && start < *to).map(|f| f.2).reduce(worst);
        let status = match (recorded, floor) {
            (Some(r), Some(f)) => worst(r, f),
            (r, f) => match r.or(f) {
                Some(status) => status,
                None => continue,
            },
        };
        match out.last_mut() {
            Some(last) if last.status == status && last.end == start => last.end = end,
            _ => out.push(Interval { start, end, status }),
        }
    }
    out
}

/// A group's state from its members': the worst of them (maintenance counting as
/// operational), and under maintenance only when every member is. `None` without
/// members.
pub fn group_status(members: impl IntoIterator<Item = ComponentStatus>) -> Option<ComponentStatus> {
    let mut out: Option<ComponentStatus> = None;
    let mut all_maintenance = true;
    for status in members {
        all_maintenance &= status == ComponentStatus::UnderMaintenance;
        let counted = if status == ComponentStatus::UnderMaintenance { ComponentStatus::Operational } else { status };
        out = Some(out.map_or(counted, |o| worst(o, counted)));
    }
    if all_maintenance && out.is_some() { Some(ComponentStatus::UnderMaintenance) } else { out }
}

/// A group's intervals from its members' changes: at every instant, the
/// [`group_status`] of the members that had a state then.
pub fn group_intervals(members: &[Vec<(Timestamp, ComponentStatus)>], now: Timestamp) -> Vec<Interval> {
    let mut points: Vec<Timestamp> = members.iter().flatten().map(|(at, _)| *at).filter(|at| *at < now).collect();
    points.sort();
    points.dedup();
    let mut out: Vec<Interval> = Vec::new();
    for (i, &start) in points.iter().enumerate() {
        let end = points.get(i + 1).copied().unwrap_or(now);
        let at_start = members.iter().filter_map(|changes| {
            // The member's latest change at or before `start`.
            let index = changes.partition_point(|(at, _)| *at <= start);
            index.checked_sub(1).map(|i| changes[i].1)
        });
        let Some(status) = group_status(at_start) else { continue };
        match out.last_mut() {
            Some(last) if last.status == status && last.end == start => last.end = end,
            _ => out.push(Interval { start, end, status }),
        }
    }
    out
}

/// Uptime over several bars, weighted by the time each observed.
pub fn overall_uptime(bars: &[DayBar]) -> Option<f64> {
    let (mut down, mut counted) = (0.0, 0i64);
    for bar in bars {
        let observed = bar.operational_seconds
            + bar.degraded_performance_seconds
            + bar.partial_outage_seconds
            + bar.major_outage_seconds;
        counted += observed;
        down += bar.major_outage_seconds as f64 + PARTIAL_OUTAGE_WEIGHT * bar.partial_outage_seconds as f64;
    }
    (counted > 0).then(|| 1.0 - down / counted as f64)
}

/// When the incident detector opens and resolves: a signal must be bad (failure ratio
/// at or above `open_ratio`, or stale) for `open_after` evaluations in a row to open,
/// and good (below `resolve_ratio`, not stale) for `resolve_after` in a row to resolve.
/// Between the two ratios neither streak grows: the two thresholds and the streaks are
/// the hysteresis that keeps an incident from flapping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    pub open_ratio: f64,
    pub resolve_ratio: f64,
    pub open_after: u32,
    pub resolve_after: u32,
    /// Fewer attempts than this in a window judge nothing by ratio (staleness still counts).
    pub min_attempts: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig { open_ratio: 0.25, resolve_ratio: 0.05, open_after: 3, resolve_after: 5, min_attempts: 10 }
    }
}

/// Where the detector stands for one signal (a tenant's rule runs, a connector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DetectorState {
    pub open: bool,
    pub bad_streak: u32,
    pub good_streak: u32,
}

/// What one evaluation saw of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DetectorInput {
    pub total: u64,
    pub failed: u64,
    /// Past its freshness threshold (a connector that stopped syncing).
    pub stale: bool,
    /// A maintenance window covers it: nothing opens, streaks restart.
    pub in_maintenance: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorAction {
    Open,
    Resolve,
}

/// One evaluation: the new state, and whether to open or resolve an incident.
pub fn detect(
    state: DetectorState,
    input: &DetectorInput,
    config: &DetectorConfig,
) -> (DetectorState, Option<DetectorAction>) {
    if input.in_maintenance {
        // Quiet during maintenance; an incident already open stays open.
        return (DetectorState { open: state.open, bad_streak: 0, good_streak: 0 }, None);
    }
    let judged = input.total >= config.min_attempts.max(1);
    let ratio = if judged { input.failed as f64 / input.total as f64 } else { 0.0 };
    let bad = input.stale || (judged && ratio >= config.open_ratio);
    let good = !input.stale && (!judged || ratio < config.resolve_ratio);
    let mut next = state;
    if bad {
        next.bad_streak = next.bad_streak.saturating_add(1);
        next.good_streak = 0;
    } else if good {
        next.good_streak = next.good_streak.saturating_add(1);
        next.bad_streak = 0;
    }
    if !next.open && next.bad_streak >= config.open_after.max(1) {
        next.open = true;
        next.good_streak = 0;
        return (next, Some(DetectorAction::Open));
    }
    if next.open && next.good_streak >= config.resolve_after.max(1) {
        next.open = false;
        next.bad_streak = 0;
        return (next, Some(DetectorAction::Resolve));
    }
    (next, None)
}

/// An incident's progress, in Statuspage's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 4] = [
        IncidentStatus::Investigating,
        IncidentStatus::Identified,
        IncidentStatus::Monitoring,
        IncidentStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// How much of the service an incident affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    None,
    Minor,
    Major,
    Critical,
}

impl Impact {
    pub const ALL: [Impact; 4] = [Impact::None, Impact::Minor, Impact::Major, Impact::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Impact::None => "none",
            Impact::Minor => "minor",
            Impact::Major => "major",
            Impact::Critical => "critical",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The state an affected component shows while the incident is open.
    pub fn component_status(self) -> ComponentStatus {
        match self {
            Impact::None => ComponentStatus::Operational,
            Impact::Minor => ComponentStatus::DegradedPerformance,
            Impact::Major => ComponentStatus::PartialOutage,
            Impact::Critical => ComponentStatus::MajorOutage,
        }
    }
}

/// A new incident, as posted by an operator.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentInput {
    pub title: String,
    /// `investigating` when absent.
    #[serde(default)]
    pub status: Option<IncidentStatus>,
    /// `minor` when absent.
    #[serde(default)]
    pub impact: Option<Impact>,
    /// The components it affects (`api`, `ingestion`, …).
    #[serde(default)]
    pub components: Vec<String>,
    /// The first update's text.
    pub message: String,
}

/// An update to an incident: a new status and what is known.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentUpdateInput {
    pub status: IncidentStatus,
    pub message: String,
    /// A changed impact, when it changed.
    #[serde(default)]
    pub impact: Option<Impact>,
}

fn components(field: &str, names: &[String], known: &[&str]) -> Result<(), FieldError> {
    if names.len() > MAX_COMPONENTS {
        return Err(FieldError::new(field, format!("must name at most {MAX_COMPONENTS} components")));
    }
    for (i, name) in names.iter().enumerate() {
        let item = format!("{field}[{i}]");
        check::identifier(&item, name, 128)?;
        if !known.contains(&name.as_str()) {
            return Err(FieldError::new(item, format!("unknown component {name:?}; known: {}", known.join(", "))));
        }
    }
    Ok(())
}

impl IncidentInput {
    /// Checks the input against the components the page shows (`known`).
    pub fn validate(&self, known: &[&str]) -> Result<(), FieldError> {
        check::text("title", &self.title, MAX_TITLE_CHARS)?;
        check::text("message", &self.message, MAX_MESSAGE_CHARS)?;
        check::bounded_text("message", &self.message, MAX_MESSAGE_CHARS)?;
        components("components", &self.components, known)
    }
}

impl IncidentUpdateInput {
    pub fn validate(&self) -> Result<(), FieldError> {
        check::text("message", &self.message, MAX_MESSAGE_CHARS)
    }
}

/// A maintenance window as posted: one-off (`starts_at` and `ends_at`) or recurring
/// (`cron` with `timezone`, each occurrence lasting `duration_minutes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceInput {
    pub title: String,
    /// The components it covers; every component when empty.
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    /// Five-field cron expression of each occurrence's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of `cron`; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<i64>,
}

/// A validated maintenance window, ready to answer "is it on now?".
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    pub input: MaintenanceInput,
    schedule: Option<CompiledSchedule>,
}

impl MaintenanceInput {
    /// Checks the window (recurring: `cron.*` fields named like a job schedule's) and
    /// fills in defaults.
    pub fn validate(mut self, known: &[&str]) -> Result<MaintenanceWindow, FieldError> {
        check::text("title", &self.title, MAX_TITLE_CHARS)?;
        components("components", &self.components, known)?;
        match (self.starts_at, self.ends_at, &self.cron) {
            (Some(start), Some(end), None) => {
                if self.timezone.is_some() || self.duration_minutes.is_some() {
                    return Err(FieldError::new(
                        "timezone",
                        "timezone and duration_minutes apply to recurring windows only",
                    ));
                }
                if end <= start {
                    return Err(FieldError::new("ends_at", "must be after starts_at"));
                }
                if end.micros_since(start) > MAX_WINDOW_SECONDS * MICROS {
                    return Err(FieldError::new("ends_at", "a window lasts at most 7 days"));
                }
                Ok(MaintenanceWindow { input: self, schedule: None })
            }
            (None, None, Some(cron)) => {
                let minutes = self
                    .duration_minutes
                    .ok_or_else(|| FieldError::new("duration_minutes", "a recurring window needs duration_minutes"))?;
                if !(1..=MAX_WINDOW_SECONDS / 60).contains(&minutes) {
                    return Err(FieldError::new("duration_minutes", "must be between 1 and 10080 (7 days)"));
                }
                let schedule = JobSchedule {
                    cron: Some(cron.clone()),
                    timezone: self.timezone.clone(),
                    period_seconds: None,
                    grace_seconds: None,
                }
                .validate("window")
                .map_err(|e| FieldError::new(e.field.trim_start_matches("window."), e.message))?;
                self.cron = schedule.cron.clone();
                self.timezone = schedule.timezone.clone();
                let compiled = schedule.compile()?;
                Ok(MaintenanceWindow { input: self, schedule: Some(compiled) })
            }
            (Some(_), None, None) => Err(FieldError::new("ends_at", "a one-off window needs ends_at")),
            (None, Some(_), None) => Err(FieldError::new("starts_at", "a one-off window needs starts_at")),
            (_, _, Some(_)) => Err(FieldError::new("cron", "give either cron or starts_at and ends_at, not both")),
            (None, None, None) => Err(FieldError::new("starts_at", "give starts_at and ends_at, or cron")),
        }
    }
}

impl MaintenanceWindow {
    fn duration_micros(&self) -> i64 {
        self.input.duration_minutes.unwrap_or(0).saturating_mul(60 * MICROS)
    }

    /// The occurrence in progress at `at` (start inclusive, end exclusive), if any.
    pub fn active_at(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        match &self.schedule {
            None => {
                let (start, end) = (self.input.starts_at?, self.input.ends_at?);
                (start <= at && at < end).then_some((start, end))
            }
            Some(schedule) => {
                // In progress means `at - duration < start <= at`: the first start
                // after `at - duration` is the one, if it has begun.
                let duration = self.duration_micros();
                let start = schedule.next_after(at.saturating_add_micros(-duration))?;
                (start <= at).then(|| (start, start.saturating_add_micros(duration)))
            }
        }
    }

    /// The next occurrence starting after `at` (for "scheduled maintenance").
    pub fn next_after(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        match &self.schedule {
            None => {
                let (start, end) = (self.input.starts_at?, self.input.ends_at?);
                (start > at).then_some((start, end))
            }
            Some(schedule) => {
                let start = schedule.next_after(at)?;
                Some((start, start.saturating_add_micros(self.duration_micros())))
            }
        }
    }

    /// Whether the window covers `component` (an empty list covers every component).
    pub fn covers(&self, component: &str) -> bool {
        self.input.components.is_empty() || self.input.components.iter().any(|c| c == component)
    }

    /// A one-off window that has ended: kept for history, never active again.
    pub fn is_over(&self, at: Timestamp) -> bool {
        self.schedule.is_none() && self.input.ends_at.is_some_and(|end| end <= at)
    }
}

#[cfg(test)]
mod tests;
