# need.sh - sourced by the test scripts: need TOOL PACKAGE puts TOOL on PATH, installing Debian's
# PACKAGE with apt-get when it is missing and we are root; otherwise it says what to install and
# returns 1. NEED_WHO (the calling script's name) prefixes its messages.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "${NEED_WHO:-need}: installing $2 for $1" >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -qq --no-install-recommends "$2" ||
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$2"; }; } >&2
    fi
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "${NEED_WHO:-need}: needs $1; install it with: sudo apt-get install -y $2" >&2
    return 1
}
