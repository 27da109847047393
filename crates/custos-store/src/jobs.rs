//! Scheduled jobs in the store, shared by both backends: applying a batch of pings to
//! the jobs' states (the rules are custos-model's [`custos_model::jobs`]), and the
//! rows and SQL that keep states, pings and flips.
//!
//! A batch is applied in one transaction, in the order received, so that many pings
//! cost one commit: the ping endpoint's throughput comes from here.

use std::collections::{HashMap, HashSet};

use custos_model::jobs::{CompiledSchedule, FlipCause, JobEvent, JobFlip, JobSchedule, JobState, JobStatus, PingKind};
use custos_model::{Component, ComponentKind, Cursor, Timestamp};
use serde::Serialize;

use crate::error::{StoreError, StoreResult};
use crate::table::{Dialect, RowReader, Value};
use crate::{Page, RecordQuery};

/// A scheduled-job component and what its pings said (the default state before any).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub component: Component,
    pub state: JobState,
}

impl JobRecord {
    /// The compiled schedule, if the job has one that still compiles (a time zone can
    /// disappear from the system database; the job is then judged by pings alone).
    pub fn compiled_schedule(&self) -> Option<CompiledSchedule> {
        compile(&self.component.id, self.component.schedule.as_ref())
    }
}

fn compile(job_id: &str, schedule: Option<&JobSchedule>) -> Option<CompiledSchedule> {
    let schedule = schedule?;
    match schedule.compile() {
        Ok(compiled) => Some(compiled),
        Err(e) => {
            tracing::warn!(job_id, error = %e.message, field = %e.field, "a stored job schedule does not compile");
            None
        }
    }
}

/// One event for one job, as the server received it.
#[derive(Debug, Clone)]
pub struct JobEventRequest {
    pub job_id: String,
    pub event: JobEvent,
    pub received_at: Timestamp,
    /// The trace the ping arrived in, kept with the ping.
    pub trace_id: Option<String>,
}

/// What became of one event of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEventOutcome {
    Applied {
        /// The stored ping's id (pings only).
        ping_id: Option<String>,
        /// The job's status after the event.
        status: JobStatus,
        flip: Option<JobFlip>,
        duration_ms: Option<i64>,
    },
    UnknownJob,
    /// The component exists but is not a scheduled job.
    NotAJob(ComponentKind),
}

/// A stored ping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredPing {
    pub id: String,
    pub job_id: String,
    pub kind: PingKind,
    pub run_id: Option<String>,
    pub exit_code: Option<i32>,
    /// Given by the job, or measured from the matching start ping.
    pub duration_ms: Option<i64>,
    pub body: Option<String>,
    pub trace_id: Option<String>,
    pub received_at: Timestamp,
}

/// A stored flip: a change of a job's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredFlip {
    pub id: String,
    #[serde(flatten)]
    pub flip: JobFlip,
}

/// What a batch writes.
#[derive(Debug, Default)]
pub(crate) struct JobWrites {
    /// Every touched job's new state.
    pub states: Vec<(String, JobState)>,
    pub pings: Vec<StoredPing>,
    pub flips: Vec<StoredFlip>,
}

/// What a batch needs to know of each job it names: its kind and schedule.
pub(crate) type Targets = HashMap<String, (ComponentKind, Option<JobSchedule>)>;

/// A new row id: time-ordered (UUIDv7), so ids sort with arrival within an instant.
pub(crate) fn new_row_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Applies `events` in order to `states` (loaded for the jobs among `targets`; a job
/// without a row starts from the default state).
pub(crate) fn apply_events(
    targets: &Targets,
    mut states: HashMap<String, JobState>,
    events: Vec<JobEventRequest>,
) -> (Vec<JobEventOutcome>, JobWrites) {
    let mut schedules: HashMap<String, Option<CompiledSchedule>> = HashMap::new();
    let mut writes = JobWrites::default();
    // Touched jobs, in first-touch order.
    let mut touched: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut outcomes = Vec::with_capacity(events.len());
    for request in events {
        let Some((kind, schedule)) = targets.get(&request.job_id) else {
            outcomes.push(JobEventOutcome::UnknownJob);
            continue;
        };
        if *kind != ComponentKind::ScheduledJob {
            outcomes.push(JobEventOutcome::NotAJob(*kind));
            continue;
        }
        let job_id = request.job_id.as_str();
        let compiled = schedules.entry(request.job_id.clone()).or_insert_with(|| compile(job_id, schedule.as_ref()));
        if seen.insert(request.job_id.clone()) {
            touched.push(request.job_id.clone());
        }
        let state = states.entry(request.job_id.clone()).or_default();
        let (flip, duration_ms) = state.apply_and_flip(job_id, &request.event, compiled.as_ref(), request.received_at);
        let ping_id = match &request.event {
            JobEvent::Ping(ping) => {
                let id = new_row_id();
                writes.pings.push(StoredPing {
                    id: id.clone(),
                    job_id: request.job_id.clone(),
                    kind: ping.kind,
                    run_id: ping.run_id.clone(),
                    exit_code: ping.exit_code,
                    duration_ms,
                    body: ping.body.clone(),
                    trace_id: request.trace_id.clone(),
                    received_at: request.received_at,
                });
                Some(id)
            }
            JobEvent::Pause | JobEvent::Resume => None,
        };
        if let Some(flip) = &flip {
            writes.flips.push(StoredFlip { id: new_row_id(), flip: flip.clone() });
        }
        outcomes.push(JobEventOutcome::Applied { ping_id, status: state.reported_status, flip, duration_ms });
    }
    writes.states = touched
        .into_iter()
        .filter_map(|id| {
            let state = states.remove(&id)?;
            Some((id, state))
        })
        .collect();
    (outcomes, writes)
}

/// The monitor's pass over a tenant's jobs at `now`: each job whose status time has
/// changed, with its state as read (`revision` included, for the conditional write)
/// and the new state and flip.
pub(crate) fn reevaluate(jobs: Vec<JobRecord>, now: Timestamp) -> Vec<(i64, String, JobState, JobFlip)> {
    jobs.into_iter()
        .filter_map(|job| {
            let schedule = job.compiled_schedule();
            let read_revision = job.state.revision;
            let mut state = job.state;
            let flip = state.reevaluate(&job.component.id, schedule.as_ref(), now)?;
            Some((read_revision, job.component.id, state, flip))
        })
        .collect()
}

/// `job_states` columns after `tenant_id, job_id`, in the order of [`state_values`].
pub(crate) const STATE_COLUMNS: &[&str] = &[
    "base_status",
    "reported_status",
    "last_ping_at_us",
    "last_success_at_us",
    "last_failure_at_us",
    "last_start_at_us",
    "last_start_run_id",
    "last_exit_code",
    "last_duration_ms",
    "pings_total",
    "revision",
];

fn opt_time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::NullInt, |t| Value::Int(t.as_micros()))
}

fn opt_int(v: Option<i64>) -> Value {
    v.map_or(Value::NullInt, Value::Int)
}

fn opt_text(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::Text(s.to_owned()))
}

pub(crate) fn state_values(state: &JobState) -> Vec<Value> {
    vec![
        Value::Text(state.base_status.as_str().to_owned()),
        Value::Text(state.reported_status.as_str().to_owned()),
        opt_time(state.last_ping_at),
        opt_time(state.last_success_at),
        opt_time(state.last_failure_at),
        opt_time(state.last_start_at),
        opt_text(state.last_start_run_id.as_deref()),
        opt_int(state.last_exit_code.map(i64::from)),
        opt_int(state.last_duration_ms),
        Value::Int(state.pings_total),
        Value::Int(state.revision),
    ]
}

fn status(value: &str) -> StoreResult<JobStatus> {
    JobStatus::parse(value)
        .ok_or_else(|| StoreError::Corrupt { what: "job state", detail: format!("unknown status {value:?}") })
}

fn time(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_micros)
}

fn exit_code(v: Option<i64>) -> StoreResult<Option<i32>> {
    v.map(|v| {
        i32::try_from(v)
            .map_err(|_| StoreError::Corrupt { what: "job state", detail: format!("exit code {v} out of range") })
    })
    .transpose()
}

/// Reads [`STATE_COLUMNS`] from `row` starting at column `at`; a row of nulls (a job
/// never pinged, from a left join) is the default state.
pub(crate) fn state_from_row(row: &impl RowReader, at: usize) -> StoreResult<JobState> {
    let Some(base) = row.opt_text(at)? else {
        return Ok(JobState::default());
    };
    Ok(JobState {
        base_status: status(&base)?,
        reported_status: status(&row.text(at + 1)?)?,
        last_ping_at: time(row.opt_int(at + 2)?),
        last_success_at: time(row.opt_int(at + 3)?),
        last_failure_at: time(row.opt_int(at + 4)?),
        last_start_at: time(row.opt_int(at + 5)?),
        last_start_run_id: row.opt_text(at + 6)?,
        last_exit_code: exit_code(row.opt_int(at + 7)?)?,
        last_duration_ms: row.opt_int(at + 8)?,
        pings_total: row.int(at + 9)?,
        revision: row.int(at + 10)?,
    })
}

/// `job_pings` columns after `tenant_id`, in the order of [`ping_values`].
pub(crate) const PING_COLUMNS: &[&str] =
    &["id", "job_id", "kind", "run_id", "exit_code", "duration_ms", "body", "trace_id", "received_at_us"];

pub(crate) fn ping_values(ping: &StoredPing) -> Vec<Value> {
    vec![
        Value::Text(ping.id.clone()),
        Value::Text(ping.job_id.clone()),
        Value::Text(ping.kind.as_str().to_owned()),
        opt_text(ping.run_id.as_deref()),
        opt_int(ping.exit_code.map(i64::from)),
        opt_int(ping.duration_ms),
        opt_text(ping.body.as_deref()),
        opt_text(ping.trace_id.as_deref()),
        Value::Int(ping.received_at.as_micros()),
    ]
}

pub(crate) fn ping_from_row(row: &impl RowReader) -> StoreResult<StoredPing> {
    let kind = row.text(2)?;
    Ok(StoredPing {
        id: row.text(0)?,
        job_id: row.text(1)?,
        kind: PingKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt { what: "job ping", detail: format!("unknown kind {kind:?}") })?,
        run_id: row.opt_text(3)?,
        exit_code: exit_code(row.opt_int(4)?)?,
        duration_ms: row.opt_int(5)?,
        body: row.opt_text(6)?,
        trace_id: row.opt_text(7)?,
        received_at: Timestamp::from_micros(row.int(8)?),
    })
}

/// `job_flips` columns after `tenant_id`, in the order of [`flip_values`].
pub(crate) const FLIP_COLUMNS: &[&str] = &["id", "job_id", "at_us", "from_status", "to_status", "cause"];

pub(crate) fn flip_values(flip: &StoredFlip) -> Vec<Value> {
    vec![
        Value::Text(flip.id.clone()),
        Value::Text(flip.flip.job_id.clone()),
        Value::Int(flip.flip.at.as_micros()),
        Value::Text(flip.flip.from.as_str().to_owned()),
        Value::Text(flip.flip.to.as_str().to_owned()),
        Value::Text(flip.flip.cause.as_str().to_owned()),
    ]
}

pub(crate) fn flip_from_row(row: &impl RowReader) -> StoreResult<StoredFlip> {
    let cause = row.text(5)?;
    Ok(StoredFlip {
        id: row.text(0)?,
        flip: JobFlip {
            job_id: row.text(1)?,
            at: Timestamp::from_micros(row.int(2)?),
            from: status(&row.text(3)?)?,
            to: status(&row.text(4)?)?,
            cause: FlipCause::parse(&cause)
                .ok_or_else(|| StoreError::Corrupt { what: "job flip", detail: format!("unknown cause {cause:?}") })?,
        },
    })
}

/// Which history a page reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum History {
    Pings,
    Flips,
}

impl History {
    fn table(self) -> &'static str {
        match self {
            History::Pings => "job_pings",
            History::Flips => "job_flips",
        }
    }

    fn listed_at(self) -> &'static str {
        match self {
            History::Pings => "received_at_us",
            History::Flips => "at_us",
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            History::Pings => PING_COLUMNS,
            History::Flips => FLIP_COLUMNS,
        }
    }
}

/// The newest-first keyset query over one job's pings or flips (every job's when
/// `job_id` is `None`). The tenant is parameter 1; the others are returned.
pub(crate) fn history_page_sql(
    history: History,
    job_id: Option<&str>,
    query: &RecordQuery,
    dialect: Dialect,
) -> (String, Vec<Value>) {
    let listed = history.listed_at();
    let mut sql = format!(
        "SELECT {} FROM {} WHERE tenant_id = {}",
        history.columns().join(", "),
        history.table(),
        dialect.param(1)
    );
    let mut params = Vec::new();
    let mut push = |sql: &mut String, clause: &str, value: Value| {
        params.push(value);
        sql.push_str(&clause.replace('?', &dialect.param(params.len() + 1)));
    };
    if let Some(job_id) = job_id {
        push(&mut sql, " AND job_id = ?", Value::Text(job_id.to_owned()));
    }
    if let Some(from) = query.from {
        push(&mut sql, &format!(" AND {listed} >= ?"), Value::Int(from.as_micros()));
    }
    if let Some(to) = query.to {
        push(&mut sql, &format!(" AND {listed} < ?"), Value::Int(to.as_micros()));
    }
    if let Some(after) = &query.after {
        // As the record pages: the first conjunct bounds the index range.
        let at = after.listed_at.as_micros();
        push(&mut sql, &format!(" AND {listed} <= ?"), Value::Int(at));
        push(&mut sql, &format!(" AND ({listed} < ?"), Value::Int(at));
        push(&mut sql, " OR id < ?)", Value::Text(after.id.clone()));
    }
    push(&mut sql, &format!(" ORDER BY {listed} DESC, id DESC LIMIT ?"), Value::Int(query.limit as i64 + 1));
    (sql, params)
}

/// Cuts the extra row fetched by [`history_page_sql`] and derives the next cursor.
pub(crate) fn into_history_page<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    };
    Page { items, next_cursor }
}

pub(crate) fn ping_cursor(ping: &StoredPing) -> Cursor {
    Cursor { listed_at: ping.received_at, id: ping.id.clone() }
}

pub(crate) fn flip_cursor(flip: &StoredFlip) -> Cursor {
    Cursor { listed_at: flip.flip.at, id: flip.id.clone() }
}
