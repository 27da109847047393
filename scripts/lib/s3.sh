# Sourced by scripts/test.sh: a throwaway S3-compatible server (s3s-fs, a Rust
# implementation of the S3 API over a directory, from crates.io) on a free loopback port.
# Installs it with cargo when missing. Sets CUSTOS_TEST_S3_ENDPOINT, CUSTOS_TEST_S3_BUCKET
# and the AWS_* credentials it accepts. Needs free_port from postgres.sh.

S3S_VERSION=0.14.1

ensure_s3_installed() {
    if ! command -v s3s-fs >/dev/null 2>&1; then
        echo "test.sh: installing s3s-fs $S3S_VERSION (an S3-compatible server) from crates.io" >&2
        cargo install "s3s-fs@$S3S_VERSION" --features binary --locked --quiet
    fi
}

start_s3() {
    ensure_s3_installed
    S3_DIR=$(mktemp -d /tmp/custos-s3.XXXXXX)
    S3_PORT=$(free_port)
    export CUSTOS_TEST_S3_BUCKET=custos-test
    mkdir -p "$S3_DIR/root/$CUSTOS_TEST_S3_BUCKET"
    export AWS_ACCESS_KEY_ID=custos-test-key AWS_SECRET_ACCESS_KEY=custos-test-secret AWS_REGION=us-east-1
    s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key "$AWS_ACCESS_KEY_ID" \
        --secret-key "$AWS_SECRET_ACCESS_KEY" "$S3_DIR/root" >"$S3_DIR/server.log" 2>&1 &
    S3_PID=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null; then break; fi
        kill -0 "$S3_PID" 2>/dev/null || { cat "$S3_DIR/server.log" >&2; exit 1; }
        sleep 0.1
    done
    export CUSTOS_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
    echo "test.sh: s3s-fs $S3S_VERSION on 127.0.0.1:$S3_PORT ($S3_DIR)" >&2
}

# s3s-fs has no Object Lock. Object Lock is tested against moto's S3 server (PyPI,
# installed with the other Python test tools): an emulator of AWS S3, not S3 itself. It
# records per-object retention, answers GetObjectLockConfiguration and refuses to delete
# a locked version, but it checks no signatures (s3s-fs does) and lets a compliance-mode
# retention be shortened (AWS does not). Two buckets: one created with Object Lock
# enabled, one without. Sets CUSTOS_TEST_S3_LOCK_ENDPOINT, CUSTOS_TEST_S3_LOCK_BUCKET and
# CUSTOS_TEST_S3_NOLOCK_BUCKET.
start_s3_lock() {
    S3_LOCK_PORT=$(free_port)
    S3_LOCK_LOG=$(mktemp /tmp/custos-moto.XXXXXX)
    moto_server -H 127.0.0.1 -p "$S3_LOCK_PORT" >"$S3_LOCK_LOG" 2>&1 &
    S3_LOCK_PID=$!
    export CUSTOS_TEST_S3_LOCK_ENDPOINT="http://127.0.0.1:$S3_LOCK_PORT"
    export CUSTOS_TEST_S3_LOCK_BUCKET=custos-lock CUSTOS_TEST_S3_NOLOCK_BUCKET=custos-nolock
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$S3_LOCK_PORT") 2>/dev/null; then break; fi
        kill -0 "$S3_LOCK_PID" 2>/dev/null || { cat "$S3_LOCK_LOG" >&2; exit 1; }
        sleep 0.1
    done
    python3 - <<'PY' || { cat "$S3_LOCK_LOG" >&2; exit 1; }
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["CUSTOS_TEST_S3_LOCK_ENDPOINT"], region_name="us-east-1")
s3.create_bucket(Bucket=os.environ["CUSTOS_TEST_S3_LOCK_BUCKET"], ObjectLockEnabledForBucket=True)
s3.create_bucket(Bucket=os.environ["CUSTOS_TEST_S3_NOLOCK_BUCKET"])
PY
    echo "test.sh: moto S3 (Object Lock) on 127.0.0.1:$S3_LOCK_PORT" >&2
}

stop_s3() {
    if [ -n "${S3_PID:-}" ]; then kill "$S3_PID" 2>/dev/null || true; fi
    if [ -n "${S3_DIR:-}" ]; then rm -rf "$S3_DIR"; fi
    if [ -n "${S3_LOCK_PID:-}" ]; then kill "$S3_LOCK_PID" 2>/dev/null || true; fi
    if [ -n "${S3_LOCK_LOG:-}" ]; then rm -f "$S3_LOCK_LOG"; fi
}
