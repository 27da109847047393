//! Scheduled jobs: did it actually run?
//!
//! A scheduled-job component may carry a [`JobSchedule`] (a cron expression in a time
//! zone, or a period) and a grace period. The platform pings custos when a run starts,
//! succeeds or fails, and [`JobState`] keeps what those pings said. [`JobState::evaluate`]
//! turns that state, the schedule and the time into a [`JobStatus`]: the semantics of
//! healthchecks.io, written out in `docs/jobs.md`:
//!
//! - `new` until the first success or failure ping; `paused` until resumed or pinged;
//! - `down` after a failure ping, or once `grace` has passed since the run was expected
//!   (the next cron time after the last ping, or the last ping plus the period), or
//!   once `grace` has passed since a start ping with no finish;
//! - `late` from the expected time until it is `down`; `up` otherwise.
//!
//! Cron expressions have five fields and follow Vixie/Debian cron, daylight-saving time
//! included: a fixed-time job whose time falls in a spring-forward gap is expected right
//! after the gap, and once (not twice) in a fall-back overlap; a job with `*` or a step
//! in its minute or hour field follows the wall clock (skipping the gap, running through
//! both passes of the overlap).
//!
//! Everything here is pure: the time is always a parameter.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::timestamp::Timestamp;

/// Longest period or grace period: a year and a day.
pub const MAX_INTERVAL_SECONDS: i64 = 366 * 86_400;
/// Grace period when a schedule gives none: an hour, as healthchecks.io.
pub const DEFAULT_GRACE_SECONDS: i64 = 3600;
/// Longest cron expression or time-zone name, in characters.
const MAX_CRON_CHARS: usize = 200;
/// Longest run id, in bytes.
pub const MAX_RUN_ID_BYTES: usize = 128;
/// Largest ping body kept, in bytes (a tail of the job's output, say).
pub const MAX_PING_BODY_BYTES: usize = 10_000;

const MICROS: i64 = 1_000_000;

/// When a job is expected to run: `cron` (with `timezone`, UTC by default) or
/// `period_seconds`, and how long past that custos waits before calling it down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSchedule {
    /// A five-field cron expression (`minute hour day-of-month month day-of-week`),
    /// names (`MON`, `JAN`), `L`, `#` and `W`, or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA time zone the cron expression is read in (`Europe/Paris`); UTC when
    /// absent. Cron schedules only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Instead of `cron`: a run is expected this many seconds after the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
    /// How long after the expected time (or after a start ping) before the job is
    /// down; 3600 when absent.
    #[serde(default)]
    #[schema(default = 3600)]
    pub grace_seconds: Option<i64>,
}

/// A validated schedule, ready to answer "when is the next run expected?".
#[derive(Debug, Clone)]
pub struct CompiledSchedule {
    expected: Expected,
    grace_micros: i64,
}

#[derive(Debug, Clone)]
enum Expected {
    Cron(Box<Cron>, jiff::tz::TimeZone),
    Period(i64),
}

fn cron_parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build()
}

fn interval(field: &str, value: i64) -> Result<i64, FieldError> {
    if (1..=MAX_INTERVAL_SECONDS).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(field, format!("must be between 1 and {MAX_INTERVAL_SECONDS} seconds")))
    }
}

impl JobSchedule {
    /// Checks the schedule (fields named `{field}.cron` and so on) and fills in the
    /// defaults, so that what is stored is what is shown.
    pub fn validate(self, field: &str) -> Result<JobSchedule, FieldError> {
        let grace = interval(&format!("{field}.grace_seconds"), self.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS))?;
        match (self.cron, self.period_seconds) {
            (Some(cron), None) => {
                let cron_field = format!("{field}.cron");
                crate::error::check::text(&cron_field, &cron, MAX_CRON_CHARS)?;
                if cron.trim_start().starts_with("@reboot") {
                    return Err(FieldError::new(cron_field, "@reboot has no expected time"));
                }
                cron_parser()
                    .parse(&cron)
                    .map_err(|e| FieldError::new(&cron_field, format!("is not a five-field cron expression: {e}")))?;
                let timezone = self.timezone.unwrap_or_else(|| "UTC".to_owned());
                time_zone(&format!("{field}.timezone"), &timezone)?;
                Ok(JobSchedule {
                    cron: Some(cron.trim().to_owned()),
                    timezone: Some(timezone),
                    period_seconds: None,
                    grace_seconds: Some(grace),
                })
            }
            (None, Some(period)) => {
                if self.timezone.is_some() {
                    return Err(FieldError::new(format!("{field}.timezone"), "applies to cron schedules only"));
                }
                let period = interval(&format!("{field}.period_seconds"), period)?;
                Ok(JobSchedule { cron: None, timezone: None, period_seconds: Some(period), grace_seconds: Some(grace) })
            }
            (Some(_), Some(_)) => Err(FieldError::new(field, "give either cron or period_seconds, not both")),
            (None, None) => Err(FieldError::new(field, "give either cron or period_seconds")),
        }
    }

    /// The grace period in seconds (the default when absent).
    pub fn grace_seconds(&self) -> i64 {
        self.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS)
    }

    /// Compiles a validated schedule. A schedule read back from storage that no longer
    /// compiles (a time zone removed from the system database) is an error naming it.
    pub fn compile(&self) -> Result<CompiledSchedule, FieldError> {
        let grace_micros = self.grace_seconds().saturating_mul(MICROS);
        let expected = match (&self.cron, self.period_seconds) {
            (Some(cron), _) => {
                let parsed = cron_parser()
                    .parse(cron)
                    .map_err(|e| FieldError::new("schedule.cron", format!("is not a cron expression: {e}")))?;
                let tz = time_zone("schedule.timezone", self.timezone.as_deref().unwrap_or("UTC"))?;
                Expected::Cron(Box::new(parsed), tz)
            }
            (None, Some(period)) => Expected::Period(period.saturating_mul(MICROS)),
            (None, None) => return Err(FieldError::new("schedule", "has neither cron nor period_seconds")),
        };
        Ok(CompiledSchedule { expected, grace_micros })
    }
}

fn time_zone(field: &str, name: &str) -> Result<jiff::tz::TimeZone, FieldError> {
    crate::error::check::text(field, name, MAX_CRON_CHARS)?;
    jiff::tz::TimeZone::get(name).map_err(|_| {
        FieldError::new(field, format!("unknown time zone {name:?}; use an IANA name such as Europe/Paris or UTC"))
    })
}

impl CompiledSchedule {
    pub fn grace_micros(&self) -> i64 {
        self.grace_micros
    }

    /// The first expected run strictly after `after`: the next cron time (whole
    /// minutes, in the schedule's time zone), or `after` plus the period. `None` only
    /// when a cron expression never matches again (`0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.expected {
            Expected::Period(micros) => Some(after.saturating_add_micros(*micros)),
            Expected::Cron(cron, tz) => {
                let start = jiff::Timestamp::from_microsecond(after.as_micros()).ok()?.to_zoned(tz.clone());
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(Timestamp::from_micros(next.timestamp().as_microsecond()))
            }
        }
    }
}

/// What a job is, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// No success or failure ping yet.
    New,
    Up,
    /// Past its expected time, within the grace period.
    Late,
    Down,
    /// Paused by an operator: never late or down until resumed or pinged.
    Paused,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] =
        [JobStatus::New, JobStatus::Up, JobStatus::Late, JobStatus::Down, JobStatus::Paused];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "new",
            JobStatus::Up => "up",
            JobStatus::Late => "late",
            JobStatus::Down => "down",
            JobStatus::Paused => "paused",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// The kinds of ping a job sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PingKind {
    Start,
    Success,
    Fail,
}

impl PingKind {
    pub const ALL: [PingKind; 3] = [PingKind::Start, PingKind::Success, PingKind::Fail];

    pub fn as_str(self) -> &'static str {
        match self {
            PingKind::Start => "start",
            PingKind::Success => "success",
            PingKind::Fail => "fail",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        PingKind::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// A validated ping, as the platform sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingInput {
    pub kind: PingKind,
    /// Pairs a start ping with its finish, so overlapping runs time correctly.
    pub run_id: Option<String>,
    pub exit_code: Option<i32>,
    /// The run's duration as the job measured it; else custos measures it from the
    /// matching start ping.
    pub duration_ms: Option<i64>,
    /// A short text: the tail of the job's output, say.
    pub body: Option<String>,
}

impl PingInput {
    /// Validates the optional parts of a ping; errors name the query parameter.
    pub fn new(
        kind: PingKind,
        run_id: Option<String>,
        exit_code: Option<i32>,
        duration_ms: Option<i64>,
        body: Option<String>,
    ) -> Result<Self, FieldError> {
        if let Some(run_id) = &run_id {
            crate::error::check::identifier("run_id", run_id, MAX_RUN_ID_BYTES)?;
        }
        if let Some(duration) = duration_ms {
            crate::error::check::non_negative("duration_ms", duration)?;
            if duration > MAX_INTERVAL_SECONDS * 1000 {
                return Err(FieldError::new("duration_ms", "is longer than a year"));
            }
        }
        if let Some(body) = &body
            && body.len() > MAX_PING_BODY_BYTES
        {
            return Err(FieldError::new("body", format!("must be at most {MAX_PING_BODY_BYTES} bytes")));
        }
        let body = body.filter(|b| !b.is_empty());
        Ok(Self { kind, run_id, exit_code, duration_ms, body })
    }
}

/// Something that changes a job's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    Ping(PingInput),
    Pause,
    Resume,
}

/// Why a job's status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlipCause {
    SuccessPing,
    FailPing,
    StartPing,
    /// The expected run's time passed without a success or failure ping.
    ExpectedRunMissing,
    /// A start ping was not followed by a finish within the grace period.
    RunExceededGrace,
    Paused,
    Resumed,
    /// The schedule changed, or the job was re-evaluated after one.
    Reevaluated,
}

impl FlipCause {
    pub const ALL: [FlipCause; 8] = [
        FlipCause::SuccessPing,
        FlipCause::FailPing,
        FlipCause::StartPing,
        FlipCause::ExpectedRunMissing,
        FlipCause::RunExceededGrace,
        FlipCause::Paused,
        FlipCause::Resumed,
        FlipCause::Reevaluated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlipCause::SuccessPing => "success_ping",
            FlipCause::FailPing => "fail_ping",
            FlipCause::StartPing => "start_ping",
            FlipCause::ExpectedRunMissing => "expected_run_missing",
            FlipCause::RunExceededGrace => "run_exceeded_grace",
            FlipCause::Paused => "paused",
            FlipCause::Resumed => "resumed",
            FlipCause::Reevaluated => "reevaluated",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        FlipCause::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// A change of a job's status, kept as history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobFlip {
    pub job_id: String,
    pub at: Timestamp,
    pub from: JobStatus,
    pub to: JobStatus,
    pub cause: FlipCause,
}

/// What the pings of one job have said so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobState {
    /// `new`, `up`, `down` or `paused`: what the last event set. [`JobState::evaluate`]
    /// adds time (`late`, and `down` by a missed run).
    pub base_status: JobStatus,
    /// The status as last recorded in the flip history.
    pub reported_status: JobStatus,
    /// The last success or failure ping.
    pub last_ping_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
    /// A start ping not yet matched by a finish: the job is running.
    pub last_start_at: Option<Timestamp>,
    pub last_start_run_id: Option<String>,
    pub last_exit_code: Option<i32>,
    pub last_duration_ms: Option<i64>,
    pub pings_total: i64,
    /// Bumped by every change, so concurrent writers can detect each other.
    pub revision: i64,
}

impl Default for JobState {
    fn default() -> Self {
        Self {
            base_status: JobStatus::New,
            reported_status: JobStatus::New,
            last_ping_at: None,
            last_success_at: None,
            last_failure_at: None,
            last_start_at: None,
            last_start_run_id: None,
            last_exit_code: None,
            last_duration_ms: None,
            pings_total: 0,
            revision: 0,
        }
    }
}

/// A job's status at an instant, and when it will next change by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub status: JobStatus,
    /// Why the status is what it is, when time (not a ping) decided it.
    pub cause: Option<FlipCause>,
    /// When the next run is expected: after the last ping, or (never pinged) after
    /// `now` for a cron schedule.
    pub next_expected_at: Option<Timestamp>,
    /// When the job turns down unless a ping arrives first.
    pub down_at: Option<Timestamp>,
}

impl JobState {
    /// Applies one event received at `at`. Returns the run's duration for a finish
    /// ping (given, or measured from its start ping).
    pub fn apply(&mut self, event: &JobEvent, at: Timestamp) -> Option<i64> {
        self.revision += 1;
        match event {
            JobEvent::Pause => {
                self.base_status = JobStatus::Paused;
                self.last_start_at = None;
                self.last_start_run_id = None;
                None
            }
            JobEvent::Resume => {
                if self.base_status == JobStatus::Paused {
                    self.base_status = JobStatus::New;
                }
                self.last_start_at = None;
                self.last_start_run_id = None;
                None
            }
            JobEvent::Ping(ping) => {
                self.pings_total += 1;
                match ping.kind {
                    PingKind::Start => {
                        self.last_start_at = Some(at);
                        self.last_start_run_id = ping.run_id.clone();
                        None
                    }
                    PingKind::Success | PingKind::Fail => {
                        let mut measured = None;
                        if let Some(start) = self.last_start_at {
                            if self.last_start_run_id == ping.run_id {
                                measured = Some(at.micros_since(start).max(0) / 1000);
                                self.last_start_at = None;
                                self.last_start_run_id = None;
                            } else if ping.kind == PingKind::Fail || ping.run_id.is_none() {
                                // A failure ends whatever was running; so does a
                                // finish that names no run.
                                self.last_start_at = None;
                                self.last_start_run_id = None;
                            }
                        }
                        let duration = ping.duration_ms.or(measured);
                        self.last_duration_ms = duration;
                        self.last_exit_code = ping.exit_code;
                        self.last_ping_at = Some(at);
                        if ping.kind == PingKind::Success {
                            self.last_success_at = Some(at);
                            self.base_status = JobStatus::Up;
                        } else {
                            self.last_failure_at = Some(at);
                            self.base_status = JobStatus::Down;
                        }
                        duration
                    }
                }
            }
        }
    }

    /// The status at `now` under `schedule` (none: pings alone decide, nothing is
    /// ever late).
    pub fn evaluate(&self, schedule: Option<&CompiledSchedule>, now: Timestamp) -> Evaluation {
        let grace = schedule.map(CompiledSchedule::grace_micros);
        let running_down_at = match (self.last_start_at, grace) {
            (Some(start), Some(grace)) => Some(start.saturating_add_micros(grace)),
            _ => None,
        };
        let held = |status| {
            let next_expected_at = match (status, schedule) {
                (JobStatus::New, Some(s)) if matches!(s.expected, Expected::Cron(..)) => s.next_after(now),
                _ => None,
            };
            Evaluation { status, cause: None, next_expected_at, down_at: None }
        };
        if let Some(down_at) = running_down_at
            && now >= down_at
        {
            return Evaluation {
                status: JobStatus::Down,
                cause: Some(FlipCause::RunExceededGrace),
                next_expected_at: None,
                down_at: None,
            };
        }
        match self.base_status {
            JobStatus::New | JobStatus::Paused => {
                return Evaluation { down_at: running_down_at, ..held(self.base_status) };
            }
            JobStatus::Down | JobStatus::Late => return held(JobStatus::Down),
            JobStatus::Up => {}
        }
        let (Some(schedule), Some(last_ping)) = (schedule, self.last_ping_at) else {
            return held(JobStatus::Up);
        };
        let Some(expected) = schedule.next_after(last_ping) else {
            return Evaluation { down_at: running_down_at, ..held(JobStatus::Up) };
        };
        let missed_at = expected.saturating_add_micros(schedule.grace_micros);
        let down_at = running_down_at.map_or(missed_at, |r| r.min(missed_at));
        let (status, cause) = if now >= missed_at {
            (JobStatus::Down, Some(FlipCause::ExpectedRunMissing))
        } else if now >= expected {
            (JobStatus::Late, Some(FlipCause::ExpectedRunMissing))
        } else {
            (JobStatus::Up, None)
        };
        Evaluation {
            status,
            cause,
            next_expected_at: Some(expected),
            down_at: (status != JobStatus::Down).then_some(down_at),
        }
    }

    /// Applies `event` at `at` and evaluates the result: the flip to record, if the
    /// status differs from the last one recorded, and the run duration.
    pub fn apply_and_flip(
        &mut self,
        job_id: &str,
        event: &JobEvent,
        schedule: Option<&CompiledSchedule>,
        at: Timestamp,
    ) -> (Option<JobFlip>, Option<i64>) {
        let duration = self.apply(event, at);
        let cause = match event {
            JobEvent::Pause => FlipCause::Paused,
            JobEvent::Resume => FlipCause::Resumed,
            JobEvent::Ping(p) => match p.kind {
                PingKind::Start => FlipCause::StartPing,
                PingKind::Success => FlipCause::SuccessPing,
                PingKind::Fail => FlipCause::FailPing,
            },
        };
        let evaluation = self.evaluate(schedule, at);
        (self.flip_to(job_id, evaluation.status, evaluation.cause.unwrap_or(cause), at), duration)
    }

    /// Re-evaluates at `now` with no event (the monitor's pass): the flip to record, if
    /// time changed the status. A job found down is held down until a ping or resume.
    pub fn reevaluate(&mut self, job_id: &str, schedule: Option<&CompiledSchedule>, now: Timestamp) -> Option<JobFlip> {
        let evaluation = self.evaluate(schedule, now);
        let flip = self.flip_to(job_id, evaluation.status, evaluation.cause.unwrap_or(FlipCause::Reevaluated), now)?;
        if flip.to == JobStatus::Down {
            self.base_status = JobStatus::Down;
        }
        self.revision += 1;
        Some(flip)
    }

    fn flip_to(&mut self, job_id: &str, to: JobStatus, cause: FlipCause, at: Timestamp) -> Option<JobFlip> {
        if to == self.reported_status {
            return None;
        }
        let from = std::mem::replace(&mut self.reported_status, to);
        Some(JobFlip { job_id: job_id.to_owned(), at, from, to, cause })
    }
}

#[cfg(test)]
mod tests;
