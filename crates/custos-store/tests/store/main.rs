//! The store's behaviour, in one test binary: each suite runs unchanged against SQLite
//! and against the real PostgreSQL that `scripts/test.sh` starts.

mod support;

mod append_only;
mod conformance;
mod evidence;
mod jobs;
mod ledger;
mod objects;
mod pagination_properties;
mod rollups;
mod row_level_security;
mod status;
