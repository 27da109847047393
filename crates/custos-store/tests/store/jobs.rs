//! Scheduled jobs in the store, run unchanged against SQLite and PostgreSQL: schedules
//! on components, pings applied in order in one transaction, flips recorded once,
//! the monitor's pass, history pages, and concurrent writers.

use std::sync::Arc;

use custos_model::jobs::{FlipCause, JobEvent, JobSchedule, JobStatus, PingInput, PingKind};
use custos_model::{Component, ComponentInput, ComponentKind, TenantId, Timestamp};
use custos_store::{JobEventOutcome, JobEventRequest, PutOutcome, RecordQuery, Store, Tenant};

use crate::support::{postgres, sqlite};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { let f = super::sqlite().await; super::suite::$name(f.store.clone()).await })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { let f = super::postgres().await; super::suite::$name(f.store.clone()).await })*
        }
    };
}

both_backends!(
    schedules_round_trip_on_components,
    pings_apply_in_order_and_flip_once,
    pings_for_unknown_or_other_components_change_nothing,
    the_monitor_flips_late_then_down_once,
    pause_holds_and_resume_restarts,
    concurrent_pings_lose_no_update,
    tenants_never_see_each_other_jobs,
);

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn t0() -> Timestamp {
    Timestamp::parse("t", "2026-11-22T12:00:00Z").unwrap()
}

fn at(seconds: i64) -> Timestamp {
    t0().saturating_add_micros(seconds * 1_000_000)
}

async fn setup(store: &dyn Store, tenant_id: &str) -> TenantId {
    let id = tenant(tenant_id);
    store.create_tenant(&Tenant { id: id.clone(), name: None, retention_days: 30, created_at: t0() }).await.unwrap();
    id
}

fn component(id: &str, kind: ComponentKind, schedule: Option<JobSchedule>) -> Component {
    ComponentInput {
        kind,
        name: None,
        provider: (kind == ComponentKind::Connector).then(|| "okta".to_owned()),
        freshness: None,
        schedule,
    }
    .validate(id, t0())
    .unwrap()
}

fn period(seconds: i64, grace: i64) -> Option<JobSchedule> {
    Some(JobSchedule { cron: None, timezone: None, period_seconds: Some(seconds), grace_seconds: Some(grace) })
}

async fn put_job(store: &dyn Store, tenant: &TenantId, id: &str, schedule: Option<JobSchedule>) {
    store.put_component(tenant, &component(id, ComponentKind::ScheduledJob, schedule)).await.unwrap();
}

fn ping(job: &str, kind: PingKind, seconds: i64) -> JobEventRequest {
    event(job, JobEvent::Ping(PingInput::new(kind, None, None, None, None).unwrap()), seconds)
}

fn event(job: &str, event: JobEvent, seconds: i64) -> JobEventRequest {
    JobEventRequest { job_id: job.into(), event, received_at: at(seconds), trace_id: None }
}

fn statuses(outcomes: &[JobEventOutcome]) -> Vec<Option<JobStatus>> {
    outcomes
        .iter()
        .map(|o| match o {
            JobEventOutcome::Applied { status, .. } => Some(*status),
            _ => None,
        })
        .collect()
}

fn query(limit: usize) -> RecordQuery {
    RecordQuery { limit, ..RecordQuery::default() }
}

mod suite {
    use super::*;

    pub async fn schedules_round_trip_on_components(store: Arc<dyn Store>) {
        let t = setup(&*store, "acme").await;
        let cron = Some(JobSchedule {
            cron: Some("30 2 * * *".into()),
            timezone: Some("Europe/Paris".into()),
            period_seconds: None,
            grace_seconds: None,
        });
        let job = component("nightly-backup", ComponentKind::ScheduledJob, cron);
        assert_eq!(store.put_component(&t, &job).await.unwrap().0, PutOutcome::Created);
        let stored = store.component(&t, "nightly-backup").await.unwrap().unwrap();
        assert_eq!(stored.schedule, job.schedule);
        assert_eq!(stored.schedule.as_ref().unwrap().grace_seconds, Some(3600));
        assert_eq!(store.put_component(&t, &job).await.unwrap().0, PutOutcome::Unchanged);
        let changed = component("nightly-backup", ComponentKind::ScheduledJob, period(3600, 60));
        assert_eq!(store.put_component(&t, &changed).await.unwrap().0, PutOutcome::Updated);
        let listed = store.jobs(&t).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].component.schedule, changed.schedule);
        assert_eq!(listed[0].state, Default::default());
        assert_eq!(store.job(&t, "nightly-backup").await.unwrap().as_ref(), Some(&listed[0]));
        assert_eq!(store.job(&t, "nope").await.unwrap(), None);
    }

    pub async fn pings_apply_in_order_and_flip_once(store: Arc<dyn Store>) {
        let t = setup(&*store, "acme").await;
        put_job(&*store, &t, "etl", period(60, 30)).await;
        let fail =
            JobEvent::Ping(PingInput::new(PingKind::Fail, None, Some(3), None, Some("disk full".into())).unwrap());
        let outcomes = store
            .apply_job_events(
                &t,
                vec![
                    ping("etl", PingKind::Start, 0),
                    ping("etl", PingKind::Success, 5),
                    event("etl", fail, 10),
                    ping("etl", PingKind::Success, 20),
                ],
            )
            .await
            .unwrap();
        use JobStatus::{Down, New, Up};
        assert_eq!(statuses(&outcomes), vec![Some(New), Some(Up), Some(Down), Some(Up)]);
        let JobEventOutcome::Applied { duration_ms, .. } = &outcomes[1] else { panic!() };
        assert_eq!(*duration_ms, Some(5000), "measured from the start ping");
        // A second batch continues from the stored state.
        store.apply_job_events(&t, vec![ping("etl", PingKind::Start, 30)]).await.unwrap();
        let job = store.jobs(&t).await.unwrap().remove(0);
        assert_eq!(job.state.pings_total, 5);
        assert_eq!(job.state.last_start_at, Some(at(30)));
        assert_eq!((job.state.last_success_at, job.state.last_failure_at), (Some(at(20)), Some(at(10))));
        assert_eq!(job.state.reported_status, Up);

        let flips = store.job_flips_page(&t, Some("etl"), &query(10)).await.unwrap().items;
        let seen: Vec<_> = flips.iter().map(|f| (f.flip.from, f.flip.to, f.flip.cause, f.flip.at)).collect();
        assert_eq!(
            seen,
            vec![
                (Down, Up, FlipCause::SuccessPing, at(20)),
                (Up, Down, FlipCause::FailPing, at(10)),
                (New, Up, FlipCause::SuccessPing, at(5)),
            ]
        );
        // Pings, newest first, across pages with no gap or overlap.
        let first = store.job_pings_page(&t, "etl", &query(3)).await.unwrap();
        assert_eq!(first.items.iter().map(|p| p.received_at).collect::<Vec<_>>(), vec![at(30), at(20), at(10)]);
        assert_eq!(first.items[2].body.as_deref(), Some("disk full"));
        assert_eq!(first.items[2].exit_code, Some(3));
        let rest = store
            .job_pings_page(&t, "etl", &RecordQuery { after: first.next_cursor.clone(), ..query(3) })
            .await
            .unwrap();
        assert_eq!(rest.items.iter().map(|p| p.received_at).collect::<Vec<_>>(), vec![at(5), at(0)]);
        assert!(rest.next_cursor.is_none());
        // A window selects by receipt time.
        let window = RecordQuery { from: Some(at(5)), to: Some(at(20)), ..query(10) };
        assert_eq!(store.job_pings_page(&t, "etl", &window).await.unwrap().items.len(), 2);
    }

    pub async fn pings_for_unknown_or_other_components_change_nothing(store: Arc<dyn Store>) {
        let t = setup(&*store, "acme").await;
        store.put_component(&t, &component("okta-prod", ComponentKind::Connector, None)).await.unwrap();
        put_job(&*store, &t, "etl", None).await;
        let outcomes = store
            .apply_job_events(
                &t,
                vec![
                    ping("nope", PingKind::Success, 0),
                    ping("okta-prod", PingKind::Success, 1),
                    ping("etl", PingKind::Success, 2),
                ],
            )
            .await
            .unwrap();
        assert_eq!(outcomes[0], JobEventOutcome::UnknownJob);
        assert_eq!(outcomes[1], JobEventOutcome::NotAJob(ComponentKind::Connector));
        assert_eq!(statuses(&outcomes)[2], Some(JobStatus::Up));
        assert!(store.job_pings_page(&t, "okta-prod", &query(10)).await.unwrap().items.is_empty());
        assert!(store.job_pings_page(&t, "nope", &query(10)).await.unwrap().items.is_empty());
        assert_eq!(store.jobs(&t).await.unwrap().len(), 1);
    }

    pub async fn the_monitor_flips_late_then_down_once(store: Arc<dyn Store>) {
        let t = setup(&*store, "acme").await;
        put_job(&*store, &t, "etl", period(60, 30)).await;
        put_job(&*store, &t, "never-pinged", period(60, 30)).await;
        store.apply_job_events(&t, vec![ping("etl", PingKind::Success, 0)]).await.unwrap();
        assert!(store.reevaluate_jobs(&t, at(59)).await.unwrap().is_empty());
        let late = store.reevaluate_jobs(&t, at(61)).await.unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!((late[0].flip.from, late[0].flip.to), (JobStatus::Up, JobStatus::Late));
        assert!(store.reevaluate_jobs(&t, at(62)).await.unwrap().is_empty(), "a flip is recorded once");
        let down = store.reevaluate_jobs(&t, at(95)).await.unwrap();
        assert_eq!((down[0].flip.to, down[0].flip.cause), (JobStatus::Down, FlipCause::ExpectedRunMissing));
        let job = store.jobs(&t).await.unwrap().into_iter().find(|j| j.component.id == "etl").unwrap();
        assert_eq!((job.state.base_status, job.state.reported_status), (JobStatus::Down, JobStatus::Down));
        // A success brings it back up.
        let outcomes = store.apply_job_events(&t, vec![ping("etl", PingKind::Success, 100)]).await.unwrap();
        assert_eq!(statuses(&outcomes), vec![Some(JobStatus::Up)]);
        let all = store.job_flips_page(&t, None, &query(10)).await.unwrap().items;
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|f| f.flip.job_id == "etl"));
    }

    pub async fn pause_holds_and_resume_restarts(store: Arc<dyn Store>) {
        let t = setup(&*store, "acme").await;
        put_job(&*store, &t, "etl", period(60, 30)).await;
        store
            .apply_job_events(&t, vec![ping("etl", PingKind::Success, 0), event("etl", JobEvent::Pause, 1)])
            .await
            .unwrap();
        assert!(store.reevaluate_jobs(&t, at(10_000)).await.unwrap().is_empty());
        let outcomes = store.apply_job_events(&t, vec![event("etl", JobEvent::Resume, 10_001)]).await.unwrap();
        assert_eq!(statuses(&outcomes), vec![Some(JobStatus::New)]);
        let flips = store.job_flips_page(&t, Some("etl"), &query(10)).await.unwrap().items;
        let causes: Vec<_> = flips.iter().map(|f| f.flip.cause).collect();
        assert_eq!(causes, vec![FlipCause::Resumed, FlipCause::Paused, FlipCause::SuccessPing]);
        assert!(store.job_pings_page(&t, "etl", &query(10)).await.unwrap().items.len() == 1, "pause is no ping");
    }

    pub async fn concurrent_pings_lose_no_update(store: Arc<dyn Store>) {
        let t = setup(&*store, "acme").await;
        put_job(&*store, &t, "etl", None).await;
        let writers = (0..8).map(|w| {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move {
                for i in 0..25 {
                    let batch = (0..2).map(|j| ping("etl", PingKind::Success, w * 1000 + i * 2 + j)).collect();
                    store.apply_job_events(&t, batch).await.unwrap();
                }
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap();
        }
        let job = store.jobs(&t).await.unwrap().remove(0);
        assert_eq!(job.state.pings_total, 400);
        assert_eq!(job.state.revision, 400);
        assert_eq!(store.job_pings_page(&t, "etl", &query(1000)).await.unwrap().items.len(), 400);
        // Only the very first ping flipped the job.
        assert_eq!(store.job_flips_page(&t, Some("etl"), &query(10)).await.unwrap().items.len(), 1);
    }

    pub async fn tenants_never_see_each_other_jobs(store: Arc<dyn Store>) {
        let a = setup(&*store, "acme").await;
        let b = setup(&*store, "globex").await;
        put_job(&*store, &a, "etl", None).await;
        store.apply_job_events(&a, vec![ping("etl", PingKind::Success, 0)]).await.unwrap();
        let outcomes = store.apply_job_events(&b, vec![ping("etl", PingKind::Success, 1)]).await.unwrap();
        assert_eq!(outcomes, vec![JobEventOutcome::UnknownJob]);
        assert!(store.jobs(&b).await.unwrap().is_empty());
        assert!(store.job_pings_page(&b, "etl", &query(10)).await.unwrap().items.is_empty());
        assert!(store.job_flips_page(&b, None, &query(10)).await.unwrap().items.is_empty());
        assert!(store.reevaluate_jobs(&b, at(1_000_000)).await.unwrap().is_empty());
        assert_eq!(store.jobs(&a).await.unwrap()[0].state.pings_total, 1);
    }
}
