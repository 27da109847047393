//! The background workers of this process and their heartbeats: every worker registers
//! with the period it promises to keep, and reports each finished iteration, which is
//! timed into `custos_worker_loop_duration_seconds` and read by `GET /health`.
//! [`Workers::spawn_periodic`] runs a worker so, each iteration in its own span.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use custos_telemetry::Metrics;
use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub struct WorkerBeat {
    /// How often the worker promises to finish an iteration.
    pub period: Duration,
    pub registered: Instant,
    pub last_iteration: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Workers {
    beats: Arc<RwLock<BTreeMap<String, WorkerBeat>>>,
    metrics: Arc<Metrics>,
}

impl Workers {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { beats: Arc::default(), metrics }
    }

    /// Announces a worker that will finish an iteration every `period`.
    pub fn register(&self, name: &str, period: Duration) {
        let beat = WorkerBeat { period, registered: Instant::now(), last_iteration: None };
        self.beats.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.to_owned(), beat);
    }

    /// Reports one finished iteration of `name` that took `took`.
    pub fn finished_iteration(&self, name: &str, took: Duration) {
        self.metrics.observe_worker_iteration(name, took.as_secs_f64());
        if let Some(beat) = self.beats.write().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(name) {
            beat.last_iteration = Some(Instant::now());
        }
    }

    /// Registers `name` and runs `iteration` every `period` until the process ends: each
    /// iteration in a worker span (logs and traces carry the worker's name) that records
    /// what it returns as `records`, timed and reported as a heartbeat. A late iteration
    /// delays the next rather than bunching them up.
    pub fn spawn_periodic<F, Fut>(
        &self,
        name: &'static str,
        period: Duration,
        mut iteration: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = usize> + Send,
    {
        self.register(name, period);
        let workers = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let started = Instant::now();
                let span = custos_telemetry::trace_context::worker_span(name, "iteration");
                let records = iteration().instrument(span.clone()).await;
                span.record("records", records);
                workers.finished_iteration(name, started.elapsed());
            }
        })
    }

    /// Every registered worker, by name.
    pub fn snapshot(&self) -> BTreeMap<String, WorkerBeat> {
        self.beats.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}
