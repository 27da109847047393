# Sourced by scripts/test.sh: a throwaway PostgreSQL cluster in a temp dir on a free
# loopback port. Installs Debian's postgresql package when no server binaries exist.
# Sets CUSTOS_TEST_DATABASE_URL (a superuser URL on the maintenance database).

pg_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null)
        [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && { echo "$dir"; return; }
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && { echo "$dir"; return; }
    done
}

ensure_postgres_installed() {
    if [ -z "$(pg_bindir)" ]; then
        echo "test.sh: installing PostgreSQL from Debian's packages" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PG_BIN=$(pg_bindir)
    [ -n "$PG_BIN" ] || { echo "test.sh: no PostgreSQL server binaries found after install" >&2; exit 1; }
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# initdb and postgres refuse to run as root; run them as an unprivileged user.
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then
        id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start_postgres() {
    ensure_postgres_installed
    PG_DIR=$(mktemp -d /tmp/custos-pg.XXXXXX)
    chmod 755 "$PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
    PG_PORT=$(free_port)
    as_pg_user "$PG_BIN/initdb" -D "$PG_DIR/data" -U custos --auth=trust --encoding=UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
        -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=256MB -c min_wal_size=32MB" \
        >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 1; }
    export CUSTOS_TEST_DATABASE_URL="postgres://custos@127.0.0.1:$PG_PORT/postgres"
    echo "test.sh: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($PG_DIR)" >&2
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        as_pg_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}
