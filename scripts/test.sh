#!/usr/bin/env bash
# The whole custos test suite, as CI runs it: installs and starts what the tests need
# (a throwaway PostgreSQL cluster), then checks formatting and lints and runs every test.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -- <filters>    # pass nextest filters, e.g. -- conformance
#   CUSTOS_TEST_SKIP_LINT=1 scripts/test.sh   # skip fmt/clippy (local iteration only)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh

trap stop_postgres EXIT
start_postgres

if [ "${CUSTOS_TEST_SKIP_LINT:-0}" != 1 ]; then
    echo "test.sh: cargo fmt --check" >&2
    cargo fmt --all -- --check
    echo "test.sh: cargo clippy" >&2
    cargo clippy --workspace --all-targets --locked -- -D warnings
    echo "test.sh: cargo doc" >&2
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
fi

[ "${1:-}" = "--" ] && shift
echo "test.sh: cargo nextest run" >&2
cargo nextest run --workspace --locked --no-fail-fast --failure-output final "$@"
