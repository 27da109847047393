#!/usr/bin/env bash
# The whole custos test suite, as CI runs it: installs and starts what the tests need
# (a throwaway PostgreSQL cluster and S3-compatible server), then checks formatting and lints and runs every test.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -- <filters>    # pass nextest filters, e.g. -- conformance
#   CUSTOS_TEST_SKIP_LINT=1 scripts/test.sh   # skip fmt/clippy/doc (local iteration only)
#   CUSTOS_TEST_FUZZ_SECONDS=0 scripts/test.sh  # skip the fuzz pass (default: 20 s per target)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
source scripts/lib/s3.sh

# A fresh clone builds once: incremental state and full debug info would only cost disk
# (gigabytes of it, on machines that share theirs); line tables keep backtraces readable.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
    export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
fi
# A full disk fails tests in confusing ways (PostgreSQL restarts mid-run, SQLite errors):
# say up front how much there is.
echo "test.sh: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free on the disk of $(pwd)" >&2

trap 'stop_s3; stop_postgres' EXIT
start_postgres
start_s3

# promtool validates the metrics exposition (Debian's prometheus package ships it).
if ! command -v promtool >/dev/null 2>&1; then
    echo "test.sh: installing prometheus (for promtool) from Debian's packages" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

# Pages are tested in headless Chromium over WebDriver (Debian's chromium and its driver).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    echo "test.sh: installing chromium and chromium-driver from Debian's packages" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# Go's golang.org/x/mod/sumdb/note and tlog independently verify our checkpoints and
# Merkle proofs (Debian's golang-go, and the module's sources for GOPATH mode).
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ]; then
    echo "test.sh: installing golang-go and golang-golang-x-mod-dev from Debian's packages" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-golang-x-mod-dev >/dev/null
fi

# OpenSSL's `openssl ts` is the real time-stamping authority the RFC 3161 tests run.
if ! command -v openssl >/dev/null 2>&1; then
    echo "test.sh: installing openssl from Debian's packages" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# Independent readers of our formats (the OpenMetrics parser of prometheus_client, DSSE
# and in-toto verifiers, moto's S3 emulator), from PyPI: installed unless every pin of
# scripts/requirements-test.txt is installed at its version.
if ! python3 scripts/lib/requirements_met.py scripts/requirements-test.txt; then
    echo "test.sh: installing the Python test readers (scripts/requirements-test.txt)" >&2
    pip_install=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/requirements-test.txt)
    # Debian's own python3 refuses system-wide installs (PEP 668); this is a throwaway machine.
    "${pip_install[@]}" 2>/dev/null || "${pip_install[@]}" --break-system-packages
fi
# moto's S3 emulator, for Object Lock (scripts/lib/s3.sh says why not s3s-fs).
start_s3_lock

if [ "${CUSTOS_TEST_SKIP_LINT:-0}" != 1 ]; then
    echo "test.sh: cargo fmt --check" >&2
    cargo fmt --all -- --check
    echo "test.sh: cargo clippy" >&2
    cargo clippy --workspace --all-targets --locked -- -D warnings
    echo "test.sh: cargo doc" >&2
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
fi

# A short pass of every fuzz target over its seeds: catches a parser that panics on
# inputs the property tests did not think of. Longer runs: see docs/development.md.
fuzz_seconds=${CUSTOS_TEST_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" -gt 0 ]; then
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
        echo "test.sh: installing cargo-fuzz" >&2
        cargo install cargo-fuzz --locked --quiet
    fi
    # Every target cargo fuzz knows, so a new one cannot be left out.
    targets=$(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list)
    [ -n "$targets" ] || { echo "test.sh: cargo fuzz list found no fuzz target" >&2; exit 1; }
    for target in $targets; do
        echo "test.sh: fuzzing $target for ${fuzz_seconds}s" >&2
        corpus=$(mktemp -d)
        log=$(mktemp)
        if [ -d "fuzz/seeds/$target" ]; then cp fuzz/seeds/"$target"/* "$corpus"/; fi
        if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$corpus" -- \
                -max_total_time="$fuzz_seconds" >"$log" 2>&1); then
            tail -n 60 "$log" >&2
            echo "test.sh: fuzz target $target failed; the crashing input is under fuzz/artifacts/$target" >&2
            exit 1
        fi
        grep -E '^Done [0-9]+ runs' "$log" >&2 || true
        rm -rf "$corpus" "$log"
    done
    # The sanitizer build is not needed again in this run; on CI its disk is.
    if [ -n "${CI:-}" ]; then rm -rf fuzz/target; fi
else
    echo "test.sh: fuzz pass skipped (CUSTOS_TEST_FUZZ_SECONDS=0)" >&2
fi

[ "${1:-}" = "--" ] && shift
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest" >&2
    cargo install cargo-nextest --locked --quiet
fi
echo "test.sh: cargo nextest run" >&2
status=0
cargo nextest run --workspace --locked --no-fail-fast --failure-output final "$@" || status=$?
if [ "$status" != 0 ]; then
    # What the machine looked like when tests failed: a full disk or a PostgreSQL crash
    # shows here rather than as dozens of unrelated-looking test failures.
    echo "test.sh: tests failed (exit $status); disk: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free" >&2
    echo "test.sh: the last lines of the PostgreSQL server log:" >&2
    tail -n 30 "$PG_DIR/server.log" >&2 || true
fi
exit "$status"
