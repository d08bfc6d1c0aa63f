#!/bin/sh
# Make sure a headless Chromium is on this machine: the status page's tests render the page in
# it (tests/test_status_page.py). Installs Debian's `chromium` package when no chromium is found,
# else does nothing. Idempotent; prints one line saying what it did.
set -eu

find_chromium() {
    for name in chromium chromium-browser; do
        if path=$(command -v "$name" 2>/dev/null); then
            echo "$path"
            return 0
        fi
    done
    return 1
}

if path=$(find_chromium); then
    echo "ensure-chromium: Chromium already installed ($path), nothing to do"
    exit 0
fi

. "$(dirname "$0")/debian-package.sh"
status=0
install_debian_package ensure-chromium chromium "the status page tests fail without it" || status=$?
[ "$status" = 2 ] && exit 0
[ "$status" = 0 ] || exit 1
if ! path=$(find_chromium); then
    echo "ensure-chromium: installed Debian's chromium package, but still no chromium on PATH" >&2
    exit 1
fi
echo "ensure-chromium: installed Debian's chromium package ($path)"
