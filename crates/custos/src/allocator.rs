//! The allocator's one setting, made in `main` before any thread starts.
//!
//! custos allocates through mimalloc. Freed memory stays resident for mimalloc's purge
//! delay (1,000 ms built in) so it can be reused; under a fast stream of large requests
//! (an evidence upload, an ingest burst) a second of freed pages adds up. custos sets
//! the delay to [`PURGE_DELAY_MS`] unless `MIMALLOC_PURGE_DELAY` is set: measured with
//! `custos bench evidence` on a 1 GiB bundle, the server's peak RSS fell from 74 – 78 MiB
//! to 51 – 58 MiB, and with `custos bench ingest` of 5 M rule runs from 218 to 186 MiB,
//! throughput unchanged.
//!
//! This is the workspace's only `unsafe` code: two mimalloc functions declared by hand,
//! because the `mimalloc` crate exposes no option setter.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_long};
use std::sync::OnceLock;

// Links the crate that builds mimalloc, whose symbols are declared below.
use mimalloc as _;

/// How long freed memory stays resident, in milliseconds, unless the environment says.
pub const PURGE_DELAY_MS: i64 = 50;

/// `mi_option_purge_delay` in the `mi_option_t` enum of the bundled mimalloc v3
/// (`libmimalloc-sys`'s `c_src/mimalloc/v3/include/mimalloc.h`). A test and a check at
/// start-up guard it: see [`configure`].
const MI_OPTION_PURGE_DELAY: c_int = 15;
/// mimalloc's built-in purge delay, which tells custos the index above is still right.
const MIMALLOC_PURGE_DELAY_MS: c_long = 1000;
/// The variable mimalloc reads the purge delay from when the process starts.
pub const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

// SAFETY: the signatures are mimalloc's (`long mi_option_get(mi_option_t)`,
// `void mi_option_set(mi_option_t, long)`; `mi_option_t` is a C enum, an `int`). Both
// bounds-check the option and touch only mimalloc's option table, so any argument is
// sound; `configure` calls the setter before any other thread exists, so no read races
// with the write.
unsafe extern "C" {
    safe fn mi_option_get(option: c_int) -> c_long;
    safe fn mi_option_set(option: c_int, value: c_long);
}

/// What [`configure`] found and did, for the server to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeDelay {
    /// custos set [`PURGE_DELAY_MS`].
    Set(i64),
    /// `MIMALLOC_PURGE_DELAY` chose it.
    FromEnvironment(i64),
    /// The option did not hold mimalloc's built-in value: the bundled mimalloc changed,
    /// so custos left it alone (a test catches this first).
    Unrecognised(i64),
}

static CONFIGURED: OnceLock<PurgeDelay> = OnceLock::new();

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`] unless `MIMALLOC_PURGE_DELAY` is
/// set. Call it first thing in `main`, before any thread starts.
#[allow(clippy::useless_conversion, reason = "`c_long` is `i64` here but `i32` on Windows")]
pub fn configure() -> PurgeDelay {
    *CONFIGURED.get_or_init(|| {
        let current = i64::from(mi_option_get(MI_OPTION_PURGE_DELAY));
        if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
            PurgeDelay::FromEnvironment(current)
        } else if current == i64::from(MIMALLOC_PURGE_DELAY_MS) {
            mi_option_set(MI_OPTION_PURGE_DELAY, c_long::try_from(PURGE_DELAY_MS).unwrap_or(c_long::MAX));
            PurgeDelay::Set(i64::from(mi_option_get(MI_OPTION_PURGE_DELAY)))
        } else {
            PurgeDelay::Unrecognised(current)
        }
    })
}

/// What [`configure`] did, if it ran.
pub fn purge_delay() -> Option<PurgeDelay> {
    CONFIGURED.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the enum index: in a process without `MIMALLOC_PURGE_DELAY`, the option at
    /// that index holds mimalloc's built-in 1,000 ms. (The e2e suite checks the other
    /// way: a server started with the variable reports its value.)
    #[test]
    fn the_purge_delay_option_is_where_custos_looks() {
        if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
            assert!(matches!(configure(), PurgeDelay::FromEnvironment(_)));
            return;
        }
        assert_eq!(mi_option_get(MI_OPTION_PURGE_DELAY), MIMALLOC_PURGE_DELAY_MS);
        assert_eq!(configure(), PurgeDelay::Set(PURGE_DELAY_MS));
        assert_eq!(purge_delay(), Some(PurgeDelay::Set(PURGE_DELAY_MS)));
    }
}
