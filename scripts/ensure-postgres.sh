#!/bin/sh
# Make sure PostgreSQL's server binaries (initdb, pg_ctl) are on this machine: the tests start a
# throwaway server with them (tests/postgres.py). Installs Debian's `postgresql` package when they
# are missing, else does nothing. Idempotent; prints one line saying what it did.
set -eu

find_server() {
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if dir=$(find_server); then
    echo "ensure-postgres: PostgreSQL server binaries already installed ($dir), nothing to do"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-postgres: no PostgreSQL server binaries (initdb, pg_ctl) and no apt-get: install PostgreSQL yourself, the PostgreSQL tests fail without it" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "ensure-postgres: no PostgreSQL server binaries, and not root and no sudo to run apt-get: install Debian's postgresql package yourself, the PostgreSQL tests fail without it" >&2
    exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $as_root env DEBIAN_FRONTEND=noninteractive apt-get update \
       && $as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends postgresql; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure-postgres: installing Debian's postgresql package failed (apt-get output above)" >&2
    exit 1
fi
if ! dir=$(find_server); then
    cat "$log" >&2
    echo "ensure-postgres: installed Debian's postgresql package, but still no initdb/pg_ctl in pg_config --bindir or /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
echo "ensure-postgres: installed Debian's postgresql package ($dir)"
