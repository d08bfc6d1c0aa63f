# Sourced by the ensure-*.sh scripts: install one Debian package with apt-get, as root or through
# sudo. `install_debian_package SCRIPT PACKAGE WHY` returns 0 when installed, 2 when it cannot be
# (no apt-get, not root and no sudo: said on stderr, for the person to install it), 1 on failure.
install_debian_package() {
    script=$1 package=$2 why=$3
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$script: no apt-get: install $package yourself, $why" >&2
        return 2
    fi
    if [ "$(id -u)" = 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1; then
        as_root="sudo"
    else
        echo "$script: not root and no sudo to run apt-get: install Debian's $package package yourself, $why" >&2
        return 2
    fi
    log=$(mktemp)
    if ! { $as_root env DEBIAN_FRONTEND=noninteractive apt-get update \
           && $as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends "$package"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "$script: installing Debian's $package package failed (apt-get output above)" >&2
        return 1
    fi
    rm -f "$log"
}
