//! Scheduled jobs in the server: the ping writer and the job monitor.
//!
//! **Ping writer.** A ping is a cheap write, and custos takes them at tens of
//! thousands a second by group commit: each request hands its ping to a writer
//! and waits; the writer takes every ping that queued while the previous commit ran
//! and stores them in one transaction per tenant, then answers each request. A
//! request is answered only once its ping is committed. Pings of one job always go
//! to the same writer, in arrival order. The writer's batch span links to the span of
//! every request in it; and, when spans are exported, each sampled request's trace
//! gets a `job-ping-writer process` child span from the writer, from the moment the
//! writer took the ping up until it was committed, linked to the batch. A trace of a
//! ping thus shows its wait in the queue and leads to the commit that stored it.
//!
//! **Monitor.** Time turns jobs late and down with no ping at all: the monitor
//! re-evaluates every tenant's jobs each period and records those flips (at most once
//! across replicas; see `Store::reevaluate_jobs`).

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use custos_model::TenantId;
use custos_store::{Backend, JobEventOutcome, JobEventRequest, Store};
use custos_telemetry::TraceContext;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::AppState;

/// Most pings in one writer batch (one transaction per tenant in it).
pub const MAX_PING_BATCH: usize = 2048;
/// Pings waiting for a writer before senders wait in turn (back-pressure).
const QUEUE_DEPTH: usize = 16_384;
/// Name of the monitor in the workers registry, logs and `/health`.
pub const MONITOR: &str = "job-monitor";

/// Why a ping could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteFailure {
    /// The database is unreachable or overloaded: retry.
    Unavailable,
    /// Anything else; the writer logged it.
    Internal,
}

struct Pending {
    tenant: TenantId,
    request: JobEventRequest,
    trace: Option<TraceContext>,
    reply: oneshot::Sender<Result<JobEventOutcome, WriteFailure>>,
    /// The writer's span for this ping in the request's trace, while it is stored.
    span: Option<tracing::Span>,
}

/// The handle requests send pings through: one queue per writer.
#[derive(Debug, Clone, Default)]
pub(crate) struct PingWriters {
    queues: Arc<OnceLock<Vec<mpsc::Sender<Pending>>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("tenant", &self.tenant).field("job_id", &self.request.job_id).finish()
    }
}

impl PingWriters {
    /// Stores one event and returns its outcome once committed. Starts the writers on
    /// first use (inside the server's runtime).
    pub(crate) async fn submit(
        &self,
        store: &Arc<dyn Store>,
        tenant: TenantId,
        request: JobEventRequest,
        trace: Option<TraceContext>,
    ) -> Result<JobEventOutcome, WriteFailure> {
        let queues = self.queues.get_or_init(|| start_writers(store));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&tenant, &request.job_id).hash(&mut hasher);
        let queue = &queues[(hasher.finish() % queues.len() as u64) as usize];
        let (reply, answer) = oneshot::channel();
        queue.send(Pending { tenant, request, trace, reply, span: None }).await.map_err(|_| WriteFailure::Internal)?;
        answer.await.map_err(|_| WriteFailure::Internal)?
    }
}

/// One writer for SQLite (it has one writer anyway), on a thread of its own; several
/// tasks for PostgreSQL, where commits of different jobs proceed in parallel.
fn start_writers(store: &Arc<dyn Store>) -> Vec<mpsc::Sender<Pending>> {
    match store.backend() {
        Backend::Sqlite => {
            let (send, receive) = mpsc::channel(QUEUE_DEPTH);
            start_sqlite_writer(store.clone(), receive);
            vec![send]
        }
        Backend::Postgres => (0..4)
            .map(|_| {
                let (send, receive) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(write_loop(store.clone(), receive));
                send
            })
            .collect(),
    }
}

/// SQLite's writer runs its commits on its own thread rather than handing each to the
/// blocking pool and back: with every core busy serving requests, each of those hops
/// waited for a core, and the commits (hence the batches) came less often. The thread
/// ends when the queue's last sender is dropped.
fn start_sqlite_writer(store: Arc<dyn Store>, queue: mpsc::Receiver<Pending>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let started = runtime.map_err(|error| error.to_string()).and_then(|runtime| {
        std::thread::Builder::new()
            .name("custos-ping-writer".into())
            .spawn(move || {
                custos_store::write_on_this_thread();
                runtime.block_on(write_loop(store, queue));
            })
            .map_err(|error| error.to_string())
    });
    if let Err(error) = started {
        // Only when the process is out of threads or memory. The queue is gone with the
        // thread, so pings are answered as failures rather than kept waiting.
        tracing::error!(error, "the ping writer thread could not start; pings fail until a restart");
    }
}

async fn write_loop(store: Arc<dyn Store>, mut queue: mpsc::Receiver<Pending>) {
    // One buffer for the writer's life: a batch's worth of pings is ~0.5 MB, too much to
    // allocate afresh for every commit.
    let mut batch = Vec::with_capacity(MAX_PING_BATCH);
    while queue.recv_many(&mut batch, MAX_PING_BATCH).await > 0 {
        write_batch(&*store, &mut batch).await;
    }
}

/// Stores and answers every ping in `batch`, leaving it empty.
async fn write_batch(store: &dyn Store, batch: &mut Vec<Pending>) {
    let span = custos_telemetry::trace_context::worker_span("job-ping-writer", "batch");
    span.record("records", batch.len());
    for pending in batch.iter_mut() {
        let Some(trace) = &pending.trace else { continue };
        custos_telemetry::trace_context::link_to(&span, trace);
        pending.span = custos_telemetry::trace_context::handed_work_span("job-ping-writer", trace);
        if let Some(process) = &pending.span {
            custos_telemetry::trace_context::link_spans(process, &span);
        }
    }
    // Group by tenant, keeping arrival order within each.
    let mut groups: Vec<(TenantId, Vec<Pending>)> = Vec::new();
    for pending in batch.drain(..) {
        match groups.iter_mut().find(|(tenant, _)| *tenant == pending.tenant) {
            Some((_, group)) => group.push(pending),
            None => groups.push((pending.tenant.clone(), vec![pending])),
        }
    }
    async {
        for (tenant, group) in groups {
            let requests = group.iter().map(|p| p.request.clone()).collect();
            match store.apply_job_events(&tenant, requests).await {
                Ok(outcomes) => {
                    for (pending, outcome) in group.into_iter().zip(outcomes) {
                        let _ = pending.reply.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    let failure =
                        if error.is_unavailable() { WriteFailure::Unavailable } else { WriteFailure::Internal };
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        tenant_id = tenant.as_str(),
                        pings = group.len(),
                        "storing pings failed"
                    );
                    for pending in group {
                        let _ = pending.reply.send(Err(failure));
                    }
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Runs the monitor every `period` until the process ends, reporting each pass to the
/// workers registry (so `/health` sees it stall).
pub fn spawn_monitor(state: AppState, period: Duration) -> tokio::task::JoinHandle<()> {
    let workers = state.workers.clone();
    workers.spawn_periodic(MONITOR, period, move || {
        let state = state.clone();
        async move { monitor_pass(&state).await }
    })
}

/// One pass over every tenant's jobs; returns the flips recorded. A tenant whose
/// pass fails is logged and retried next pass.
pub async fn monitor_pass(state: &AppState) -> usize {
    let tenants = match state.store.tenants().await {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::error!(error = &error as &dyn std::error::Error, "job monitor: listing tenants failed");
            return 0;
        }
    };
    let now = custos_model::Timestamp::now();
    let mut recorded = 0;
    for tenant in tenants {
        match state.store.reevaluate_jobs(&tenant.id, now).await {
            Ok(flips) => {
                for flip in &flips {
                    tracing::info!(
                        tenant_id = tenant.id.as_str(),
                        job_id = flip.flip.job_id.as_str(),
                        from = flip.flip.from.as_str(),
                        to = flip.flip.to.as_str(),
                        cause = flip.flip.cause.as_str(),
                        "job status changed"
                    );
                }
                recorded += flips.len();
            }
            Err(error) => tracing::error!(
                error = &error as &dyn std::error::Error,
                tenant_id = tenant.id.as_str(),
                "job monitor: re-evaluating jobs failed"
            ),
        }
    }
    recorded
}
