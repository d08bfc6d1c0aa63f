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

. "$(dirname "$0")/debian-package.sh"
status=0
install_debian_package ensure-postgres postgresql "the PostgreSQL tests fail without it" || status=$?
[ "$status" = 2 ] && exit 0
[ "$status" = 0 ] || exit 1
if ! dir=$(find_server); then
    echo "ensure-postgres: installed Debian's postgresql package, but still no initdb/pg_ctl in pg_config --bindir or /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
echo "ensure-postgres: installed Debian's postgresql package ($dir)"
