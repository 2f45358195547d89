#!/bin/sh
# http-docs.sh - the answers shown in api/openapi.yaml and README.md are what the server answers (tests/docs_examples.py).
# Usage: tests/http-docs.sh BASE_URL (tests/run-http.sh passes it). Installs Debian's python3 and
# python3-yaml when missing and run as root. Exits 1 if an example disagrees.
set -u
url=${1:-http://127.0.0.1:8080}
here=$(cd "$(dirname "$0")" && pwd)
NEED_WHO=http-docs.sh
. "$here/need.sh"
need python3 python3 || { echo "FAIL no python3"; exit 1; }
if ! python3 -c 'import yaml' 2>/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "http-docs.sh: installing python3-yaml" >&2
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -qq --no-install-recommends python3-yaml ||
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-yaml; }; } >&2
    fi
    python3 -c 'import yaml' 2>/dev/null ||
        { echo "FAIL http-docs.sh needs PyYAML: sudo apt-get install -y python3-yaml"; exit 1; }
fi
exec python3 "$here/docs_examples.py" "$url"
