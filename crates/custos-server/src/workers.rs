//! The background workers of this process and their heartbeats: every worker registers
//! with the period it promises to keep, and reports each finished iteration, which is
//! timed into `custos_worker_loop_duration_seconds` and read by `GET /health`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use custos_telemetry::Metrics;

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

    /// Every registered worker, by name.
    pub fn snapshot(&self) -> BTreeMap<String, WorkerBeat> {
        self.beats.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}
