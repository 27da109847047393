//! Handlers, by resource.

pub(crate) mod attestations;
pub(crate) mod components;
pub(crate) mod evidence;
pub(crate) mod holds;
pub(crate) mod incidents;
pub(crate) mod jobs;
pub(crate) mod logs;
pub(crate) mod maintenance;
pub(crate) mod platform;
pub(crate) mod records;
pub(crate) mod status_page;
pub(crate) mod traces;
