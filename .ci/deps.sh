#!/bin/sh
# deps.sh - make sure the build's Debian packages are present; install them as root.
# Usage: .ci/deps.sh [extra-package ...]. Exits non-zero with the exact apt-get
# command when a package is missing and we are not root.
set -e
need="gcc make pkg-config check librandom123-dev libopenblas-dev libjansson-dev
      libmicrohttpd-dev libgnutls28-dev libsleef-dev libdragonbox-dev g++ libcurl4-openssl-dev curl $*"
missing=""
for p in $need; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "gradserve: missing packages:$missing" >&2
    echo "install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "gradserve: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends $missing >&2
