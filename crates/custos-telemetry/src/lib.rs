#![doc = include_str!("../README.md")]

pub mod logging;
pub mod metrics;
pub mod scrub;
pub mod trace_context;

pub use logging::{CaptureWriter, LogFormat, LogSettings, init_logging, json_layer};
pub use metrics::{ExpositionFormat, HttpLabels, Metrics};
pub use trace_context::TraceContext;
