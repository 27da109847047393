//! The HTTP API over real HTTP, against a real store: every test runs once on SQLite
//! and once on the PostgreSQL that `scripts/test.sh` starts. Modules mirror the routes.

mod support;

mod attestations;
mod auth;
mod browser;
mod components;
mod console;
mod deploy;
mod evidence;
mod health;
mod incidents;
mod jobs;
mod ledger;
mod logging;
mod metrics;
mod platform;
mod platform_metrics;
mod records;
mod status_page;
