#!/bin/sh
# http-examples.sh - the trainers in examples/ learn through a running gradserve: Python (standard library) and JavaScript (Node's fetch).
# Usage: tests/http-examples.sh BASE_URL (tests/run-http.sh passes it). Installs Debian's
# python3 and nodejs when missing and run as root. Each trainer runs with --check, which fails
# unless its policy learned; both are deterministic (fixed seeds). Exits 1 if one fails; the
# last line is "N passed, M failed".
set -u
url=${1:-http://127.0.0.1:8080}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

NEED_WHO=http-examples.sh
. "$here/need.sh"

out=$(mktemp)
trap 'rm -f "$out"' EXIT

if need python3 python3; then
    if python3 examples/python/sac_bandit.py --url "$url" --check >"$out" 2>&1; then
        ok "examples/python/sac_bandit.py learns: $(tail -1 "$out")"
    else
        bad "examples/python/sac_bandit.py: $(cat "$out")"
    fi
else
    bad "examples/python/sac_bandit.py: no python3"
fi

if need node nodejs; then
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$major" -lt 18 ]; then
        bad "examples/node/sac_continuous.mjs: node $(node --version) has no fetch (needs 18 or later)"
    elif node --no-warnings examples/node/sac_continuous.mjs --url "$url" --check >"$out" 2>&1; then
        ok "examples/node/sac_continuous.mjs learns: $(tail -1 "$out")"
    else
        bad "examples/node/sac_continuous.mjs: $(cat "$out")"
    fi
else
    bad "examples/node/sac_continuous.mjs: no node"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
