#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod families;
pub mod logging;
pub mod metrics;
pub mod otel;
pub mod scrub;
pub mod trace_context;

pub use families::{ConstFamilies, ConstFamily, FamilyKind, SampleValue};
pub use logging::{CaptureWriter, LogFormat, LogGuard, LogSettings, init_subscriber, json_layer};
pub use metrics::{ExpositionFormat, Exposure, HttpLabels, Metrics};
pub use trace_context::TraceContext;
