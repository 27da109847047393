use proptest::prelude::*;

use super::*;

fn utc(value: &str) -> Timestamp {
    Timestamp::parse("t", value).unwrap()
}

fn cron(expression: &str, timezone: &str, grace_seconds: i64) -> CompiledSchedule {
    JobSchedule {
        cron: Some(expression.into()),
        timezone: Some(timezone.into()),
        period_seconds: None,
        grace_seconds: Some(grace_seconds),
    }
    .validate("schedule")
    .unwrap()
    .compile()
    .unwrap()
}

fn period(seconds: i64, grace_seconds: i64) -> CompiledSchedule {
    JobSchedule { cron: None, timezone: None, period_seconds: Some(seconds), grace_seconds: Some(grace_seconds) }
        .validate("schedule")
        .unwrap()
        .compile()
        .unwrap()
}

fn ping(kind: PingKind) -> JobEvent {
    JobEvent::Ping(PingInput::new(kind, None, None, None, None).unwrap())
}

fn ping_run(kind: PingKind, run_id: &str) -> JobEvent {
    JobEvent::Ping(PingInput::new(kind, Some(run_id.into()), None, None, None).unwrap())
}

fn plus(t: Timestamp, seconds: i64) -> Timestamp {
    t.saturating_add_micros(seconds * 1_000_000)
}

fn next(schedule: &CompiledSchedule, after: &str) -> Timestamp {
    schedule.next_after(utc(after)).unwrap()
}

// Daylight-saving transitions used below (from the tz database):
// Europe/Paris       2026-03-29 02:00 CET  -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z)
// America/New_York   2026-03-08 02:00 EST  -> 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z)

#[test]
fn cron_follows_the_time_zone() {
    let daily = cron("30 2 * * *", "Europe/Paris", 60);
    // 02:30 CET is 01:30Z in winter, 02:30 CEST is 00:30Z in summer.
    assert_eq!(next(&daily, "2026-01-10T12:00:00Z"), utc("2026-01-11T01:30:00Z"));
    assert_eq!(next(&daily, "2026-07-10T12:00:00Z"), utc("2026-07-11T00:30:00Z"));
    let utc_daily = cron("30 2 * * *", "UTC", 60);
    assert_eq!(next(&utc_daily, "2026-07-10T12:00:00Z"), utc("2026-07-11T02:30:00Z"));
}

#[test]
fn fixed_time_in_a_spring_forward_gap_is_expected_right_after_the_gap() {
    // 02:30 does not exist in Paris on 2026-03-29: Vixie cron runs the job at 03:00 CEST.
    let daily = cron("30 2 * * *", "Europe/Paris", 60);
    assert_eq!(next(&daily, "2026-03-28T01:30:05Z"), utc("2026-03-29T01:00:00Z"));
    // And the day after, 02:30 CEST again.
    assert_eq!(next(&daily, "2026-03-29T01:00:05Z"), utc("2026-03-30T00:30:00Z"));
    let new_york = cron("30 2 * * *", "America/New_York", 60);
    assert_eq!(next(&new_york, "2026-03-07T07:30:05Z"), utc("2026-03-08T07:00:00Z"));
}

#[test]
fn wildcard_jobs_skip_the_gap() {
    // `*` in the minute field: every minute of 02:xx, which does not exist that day.
    let during_two = cron("*/15 2 * * *", "America/New_York", 60);
    assert_eq!(next(&during_two, "2026-03-07T07:45:05Z"), utc("2026-03-09T06:00:00Z"));
    let hourly = cron("0 * * * *", "America/New_York", 60);
    // 01:00 EST (06:00Z), then 03:00 EDT (07:00Z): no 02:00.
    assert_eq!(next(&hourly, "2026-03-08T06:00:05Z"), utc("2026-03-08T07:00:00Z"));
}

#[test]
fn fixed_time_in_a_fall_back_overlap_is_expected_once() {
    // 02:30 happens twice in Paris on 2026-10-25 (00:30Z CEST, 01:30Z CET): one run.
    let daily = cron("30 2 * * *", "Europe/Paris", 60);
    assert_eq!(next(&daily, "2026-10-24T12:00:00Z"), utc("2026-10-25T00:30:00Z"));
    assert_eq!(next(&daily, "2026-10-25T00:30:05Z"), utc("2026-10-26T01:30:00Z"));
    let new_york = cron("30 1 * * *", "America/New_York", 60);
    assert_eq!(next(&new_york, "2026-11-01T05:30:05Z"), utc("2026-11-02T06:30:00Z"));
}

#[test]
fn wildcard_jobs_run_through_both_passes_of_an_overlap() {
    let hourly = cron("0 * * * *", "America/New_York", 60);
    // 01:00 EDT (05:00Z) and 01:00 EST (06:00Z) are both runs.
    assert_eq!(next(&hourly, "2026-11-01T05:00:05Z"), utc("2026-11-01T06:00:00Z"));
    assert_eq!(next(&hourly, "2026-11-01T06:00:05Z"), utc("2026-11-01T07:00:00Z"));
    let quarter = cron("*/15 * * * *", "Europe/Paris", 60);
    assert_eq!(next(&quarter, "2026-10-25T00:45:05Z"), utc("2026-10-25T01:00:00Z"));
}

#[test]
fn a_late_job_across_the_gap_is_judged_from_the_shifted_time() {
    // The daily 02:30 job pinged on the 28th. On the 29th it is expected at 03:00 CEST
    // (01:00Z): late from then, down after the grace.
    let daily = cron("30 2 * * *", "Europe/Paris", 600);
    let mut state = JobState::default();
    state.apply(&ping(PingKind::Success), utc("2026-03-28T01:30:05Z"));
    assert_eq!(state.evaluate(Some(&daily), utc("2026-03-29T00:59:59Z")).status, JobStatus::Up);
    let late = state.evaluate(Some(&daily), utc("2026-03-29T01:00:00Z"));
    assert_eq!((late.status, late.next_expected_at), (JobStatus::Late, Some(utc("2026-03-29T01:00:00Z"))));
    assert_eq!(late.down_at, Some(utc("2026-03-29T01:10:00Z")));
    assert_eq!(state.evaluate(Some(&daily), utc("2026-03-29T01:10:00Z")).status, JobStatus::Down);
}

#[test]
fn period_schedule_up_late_down() {
    let schedule = period(3600, 300);
    let t0 = utc("2026-05-01T00:00:00Z");
    let mut state = JobState::default();
    assert_eq!(state.evaluate(Some(&schedule), t0).status, JobStatus::New);
    state.apply(&ping(PingKind::Success), t0);
    let up = state.evaluate(Some(&schedule), plus(t0, 3599));
    assert_eq!(up.status, JobStatus::Up);
    assert_eq!(up.next_expected_at, Some(plus(t0, 3600)));
    assert_eq!(up.down_at, Some(plus(t0, 3900)));
    assert_eq!(state.evaluate(Some(&schedule), plus(t0, 3600)).status, JobStatus::Late);
    let down = state.evaluate(Some(&schedule), plus(t0, 3900));
    assert_eq!((down.status, down.cause), (JobStatus::Down, Some(FlipCause::ExpectedRunMissing)));
    // Without a schedule, nothing is ever late.
    assert_eq!(state.evaluate(None, plus(t0, 1_000_000)).status, JobStatus::Up);
}

#[test]
fn a_run_that_never_finishes_goes_down_after_grace() {
    let schedule = period(86_400, 600);
    let t0 = utc("2026-05-01T00:00:00Z");
    let mut state = JobState::default();
    state.apply(&ping(PingKind::Success), t0);
    state.apply(&ping(PingKind::Start), plus(t0, 100));
    let running = state.evaluate(Some(&schedule), plus(t0, 699));
    assert_eq!((running.status, running.down_at), (JobStatus::Up, Some(plus(t0, 700))));
    let stuck = state.evaluate(Some(&schedule), plus(t0, 700));
    assert_eq!((stuck.status, stuck.cause), (JobStatus::Down, Some(FlipCause::RunExceededGrace)));
    // Even a job that never finished a run (new) goes down when its first run hangs.
    let mut fresh = JobState::default();
    fresh.apply(&ping(PingKind::Start), t0);
    assert_eq!(fresh.evaluate(Some(&schedule), plus(t0, 599)).status, JobStatus::New);
    assert_eq!(fresh.evaluate(Some(&schedule), plus(t0, 600)).status, JobStatus::Down);
}

#[test]
fn run_ids_pair_starts_with_finishes() {
    let t0 = utc("2026-05-01T00:00:00Z");
    let mut state = JobState::default();
    state.apply(&ping_run(PingKind::Start, "a"), t0);
    // A finish of another run leaves run "a" going.
    assert_eq!(state.apply(&ping_run(PingKind::Success, "b"), plus(t0, 2)), None);
    assert_eq!(state.last_start_at, Some(t0));
    assert_eq!(state.apply(&ping_run(PingKind::Success, "a"), plus(t0, 5)), Some(5000));
    assert_eq!(state.last_start_at, None);
    // A failure ends any run; a finish without a run id ends one without a run id.
    state.apply(&ping_run(PingKind::Start, "c"), plus(t0, 10));
    assert_eq!(state.apply(&ping_run(PingKind::Fail, "d"), plus(t0, 11)), None);
    assert_eq!(state.last_start_at, None);
    state.apply(&ping(PingKind::Start), plus(t0, 20));
    assert_eq!(state.apply(&ping(PingKind::Success), plus(t0, 23)), Some(3000));
    // A duration the job measured wins.
    let given = JobEvent::Ping(PingInput::new(PingKind::Success, None, Some(0), Some(42), None).unwrap());
    assert_eq!(state.apply(&given, plus(t0, 30)), Some(42));
    assert_eq!((state.pings_total, state.last_exit_code, state.last_duration_ms), (8, Some(0), Some(42)));
}

#[test]
fn flips_record_every_change_once() {
    let schedule = period(60, 30);
    let t0 = utc("2026-05-01T00:00:00Z");
    let mut state = JobState::default();
    let mut flips = Vec::new();
    let mut step = |state: &mut JobState, event: Option<JobEvent>, at: i64| {
        let flip = match event {
            Some(event) => state.apply_and_flip("nightly", &event, Some(&schedule), plus(t0, at)).0,
            None => state.reevaluate("nightly", Some(&schedule), plus(t0, at)),
        };
        if let Some(flip) = flip {
            flips.push((flip.from, flip.to, flip.cause, at));
        }
    };
    step(&mut state, Some(ping(PingKind::Start)), 0);
    step(&mut state, Some(ping(PingKind::Success)), 1);
    step(&mut state, None, 30);
    step(&mut state, None, 61);
    step(&mut state, None, 62);
    step(&mut state, None, 91);
    step(&mut state, None, 500);
    step(&mut state, Some(ping(PingKind::Start)), 501);
    step(&mut state, Some(ping(PingKind::Success)), 502);
    step(&mut state, Some(ping(PingKind::Fail)), 503);
    step(&mut state, Some(JobEvent::Pause), 504);
    step(&mut state, None, 10_000);
    step(&mut state, Some(JobEvent::Resume), 10_001);
    step(&mut state, Some(ping(PingKind::Success)), 10_002);
    use FlipCause::{ExpectedRunMissing, FailPing, Resumed, SuccessPing};
    use JobStatus::{Down, Late, New, Paused, Up};
    assert_eq!(
        flips,
        vec![
            (New, Up, SuccessPing, 1),
            (Up, Late, ExpectedRunMissing, 61),
            (Late, Down, ExpectedRunMissing, 91),
            (Down, Up, SuccessPing, 502),
            (Up, Down, FailPing, 503),
            (Down, Paused, FlipCause::Paused, 504),
            (Paused, New, Resumed, 10_001),
            (New, Up, SuccessPing, 10_002),
        ]
    );
    // The monitor held the job down: a start ping alone does not bring it back.
    let mut held = JobState::default();
    held.apply_and_flip("j", &ping(PingKind::Success), Some(&schedule), t0);
    held.reevaluate("j", Some(&schedule), plus(t0, 1000));
    assert_eq!(held.base_status, Down);
    let (flip, _) = held.apply_and_flip("j", &ping(PingKind::Start), Some(&schedule), plus(t0, 1001));
    assert_eq!(flip, None);
}

#[test]
fn a_paused_job_is_never_late_and_resumes_on_a_ping() {
    let schedule = period(60, 30);
    let t0 = utc("2026-05-01T00:00:00Z");
    let mut state = JobState::default();
    state.apply(&ping(PingKind::Success), t0);
    state.apply(&JobEvent::Pause, plus(t0, 1));
    assert_eq!(state.evaluate(Some(&schedule), plus(t0, 100_000)).status, JobStatus::Paused);
    let (flip, _) = state.apply_and_flip("j", &ping(PingKind::Success), Some(&schedule), plus(t0, 100_001));
    assert_eq!(flip.map(|f| (f.to, f.cause)), Some((JobStatus::Up, FlipCause::SuccessPing)));
    assert_eq!(state.evaluate(Some(&schedule), plus(t0, 100_002)).status, JobStatus::Up);
}

#[test]
fn new_cron_jobs_show_their_next_run() {
    let daily = cron("0 6 * * *", "UTC", 60);
    let evaluation = JobState::default().evaluate(Some(&daily), utc("2026-05-01T07:00:00Z"));
    assert_eq!(evaluation.status, JobStatus::New);
    assert_eq!(evaluation.next_expected_at, Some(utc("2026-05-02T06:00:00Z")));
}

#[test]
fn validation_names_the_field_at_fault() {
    let field = |s: JobSchedule| s.validate("schedule").unwrap_err().field;
    let base = || JobSchedule { cron: None, timezone: None, period_seconds: None, grace_seconds: None };
    assert_eq!(field(base()), "schedule");
    assert_eq!(field(JobSchedule { cron: Some("* * *".into()), ..base() }), "schedule.cron");
    assert_eq!(field(JobSchedule { cron: Some("0 0 * * * *".into()), ..base() }), "schedule.cron");
    assert_eq!(field(JobSchedule { cron: Some("@reboot".into()), ..base() }), "schedule.cron");
    assert_eq!(
        field(JobSchedule { cron: Some("0 * * * *".into()), timezone: Some("Mars/Olympus".into()), ..base() }),
        "schedule.timezone"
    );
    assert_eq!(
        field(JobSchedule { period_seconds: Some(60), timezone: Some("UTC".into()), ..base() }),
        "schedule.timezone"
    );
    assert_eq!(field(JobSchedule { period_seconds: Some(0), ..base() }), "schedule.period_seconds");
    assert_eq!(
        field(JobSchedule { period_seconds: Some(60), grace_seconds: Some(-1), ..base() }),
        "schedule.grace_seconds"
    );
    assert_eq!(field(JobSchedule { period_seconds: Some(60), cron: Some("0 * * * *".into()), ..base() }), "schedule");
    let defaults = JobSchedule { cron: Some(" @daily ".into()), ..base() }.validate("schedule").unwrap();
    assert_eq!(
        (defaults.cron.as_deref(), defaults.timezone.as_deref(), defaults.grace_seconds),
        (Some("@daily"), Some("UTC"), Some(DEFAULT_GRACE_SECONDS))
    );
    assert_eq!(PingInput::new(PingKind::Start, Some("a b".into()), None, None, None).unwrap_err().field, "run_id");
    assert_eq!(PingInput::new(PingKind::Start, None, None, Some(-1), None).unwrap_err().field, "duration_ms");
    let long = "x".repeat(MAX_PING_BODY_BYTES + 1);
    assert_eq!(PingInput::new(PingKind::Start, None, None, None, Some(long)).unwrap_err().field, "body");
}

const EXPRESSIONS: &[&str] =
    &["* * * * *", "*/7 * * * *", "30 2 * * *", "0 */3 * * *", "15 1,2,3 * * 1-5", "0 0 L * *", "0 12 * * MON#2"];
const ZONES: &[&str] = &["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"];

proptest! {
    /// The next expected run is always strictly later, on a minute boundary, and
    /// never moves backwards as the reference time advances.
    #[test]
    fn next_after_is_later_and_monotone(
        expression in proptest::sample::select(EXPRESSIONS),
        zone in proptest::sample::select(ZONES),
        micros in 1_700_000_000_000_000i64..1_900_000_000_000_000,
        step in 0i64..10_000_000_000,
    ) {
        let schedule = cron(expression, zone, 60);
        let t = Timestamp::from_micros(micros);
        let a = schedule.next_after(t).unwrap();
        prop_assert!(a > t);
        prop_assert_eq!(a.as_micros() % 60_000_000, 0);
        let b = schedule.next_after(Timestamp::from_micros(micros + step)).unwrap();
        prop_assert!(b >= a);
    }
}
