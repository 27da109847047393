#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod canonical;
pub mod capsule;
pub mod component;
pub mod console;
pub mod cursor;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod ledger;
pub mod parse;
pub mod records;
pub mod scope;
pub mod status;
pub mod timestamp;
pub mod token;

pub use component::{
    Component, ComponentInput, ComponentKind, FreshnessPolicy, FreshnessState, FreshnessThresholds, ThresholdSource,
};
pub use cursor::Cursor;
pub use error::{FieldError, check};
pub use ids::{TenantId, TraceId};
pub use parse::{BodyFormat, ParseError, parse_records};
pub use records::{
    ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RecordKind, RuleRun, Validate, ValidationContext,
};
pub use scope::{Permission, Scope, TenantSelector};
pub use timestamp::Timestamp;
