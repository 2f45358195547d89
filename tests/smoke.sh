#!/bin/sh
# smoke.sh - a curl-only smoke test of a running gradserve: probes, info, spec, errors, and one call per endpoint (SMOKE_ENDPOINTS=0 skips them).
# Usage: tests/smoke.sh [BASE_URL] (default http://127.0.0.1:8080). Exits 1 if any check fails.
set -eu
url=${1:-http://127.0.0.1:8080}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# call METHOD PATH [BODY]: sets $status and $ctype, the body in $tmp/body,
# the headers in $tmp/headers.
call() {
    if [ $# -ge 3 ]; then
        out=$(curl -sS -X "$1" -o "$tmp/body" -D "$tmp/headers" -w '%{http_code} %{content_type}' \
            -H 'Content-Type: application/json' --data-binary "$3" "$url$2") || out="000 none"
    else
        out=$(curl -sS -X "$1" -o "$tmp/body" -D "$tmp/headers" -w '%{http_code} %{content_type}' \
            "$url$2") || out="000 none"
    fi
    status=${out%% *}
    ctype=${out#* }
}

ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $* (status $status, $ctype): $(head -c 300 "$tmp/body" 2>/dev/null)"; }

# expect WHAT STATUS CTYPE [GREP]: checks the last call.
expect() {
    if [ "$status" = "$2" ] && [ "$ctype" = "$3" ] && { [ $# -lt 4 ] || grep -q -- "$4" "$tmp/body"; }; then
        ok "$1"
    else
        bad "$1"
    fi
}

call GET /healthz;       expect "GET /healthz" 200 application/json '"status":"ok"'
call GET /readyz;        expect "GET /readyz" 200 application/json '"status":"ready"'
call GET /v1/info;       expect "GET /v1/info" 200 application/json '"name":"gradserve"'
call GET /openapi.yaml;  expect "GET /openapi.yaml" 200 application/yaml 'openapi'
call GET /nope;          expect "GET /nope is 404" 404 application/json '"code":"not_found"'
call POST /v1/nope '{}'; expect "POST /v1/nope is 404" 404 application/json '"code":"not_found"'
call GET /v1/entropy;    expect "GET /v1/entropy is 405" 405 application/json '"code":"method_not_allowed"'
if grep -qi '^allow: POST' "$tmp/headers"; then ok "405 carries Allow: POST"; else bad "405 carries Allow: POST"; fi
call POST /healthz '{}'; expect "POST /healthz is 405" 405 application/json '"code":"method_not_allowed"'
if grep -qi '^allow: GET, HEAD' "$tmp/headers"; then ok "405 carries Allow: GET, HEAD"; else bad "405 carries Allow: GET, HEAD"; fi

# One request per computing endpoint, from the examples of API.md; only the
# status and the media type are checked here.
if [ "${SMOKE_ENDPOINTS:-1}" = 1 ]; then
    cat_logits='{"type": "categorical", "logits": [[0.1, 2.0, -1.0]]}'
    normal='{"type": "normal", "loc": [[0.0, 1.0]], "log_scale": [[-1.0, 0.5]]}'
    tanh='{"type": "tanh_normal", "loc": [[0.0, 1.0]], "scale": [[0.3, 1.2]], "low": [-2, -1], "high": [2, 1]}'
    while IFS='|' read -r op body; do
        [ -n "$op" ] || continue
        call POST "/v1/$op" "$body"
        expect "POST /v1/$op" 200 application/json
    done <<END
entropy|{"distribution": $cat_logits}
entropy|{"distribution": $normal, "estimator": "score", "samples": 16, "seed": 7}
entropy|{"distribution": $tanh, "samples": 64, "seed": 7}
sample|{"distribution": $normal, "samples": 4, "seed": 7}
log_prob|{"distribution": $cat_logits, "x": [[0, 1, 1]]}
reparam|{"distribution": $tanh, "seed": 7, "samples": 2, "grad_x": [[[1.0, 0.0], [0.0, 1.0]]]}
score|{"distribution": $normal, "seed": 7, "samples": 4, "f": [[1.0, 2.0, 3.0, 4.0]]}
sac/discrete/actor|{"logits": [[0.1, 2.0, -1.0]], "q": [[1.0, 2.0, 3.0]], "alpha": 0.2}
sac/discrete/policy|{"q": [[1.0, 2.0, 3.0]], "alpha": 0.5, "samples": 3, "seed": 7}
sac/continuous/actor|{"distribution": $tanh, "alpha": 0.2, "seed": 7, "samples": 2, "dq_da": [[[1.0, 0.0], [0.0, 1.0]]], "q": [[1.0, 2.0]]}
entropy|{"distribution": {"type": "categorical", "head": {"features": [[1.0, -0.5]], "weight": [[0.1, 0.2], [0.3, -0.1], [0.0, 0.5]], "bias": [0.0, 0.1, -0.1]}}}
batch|{"requests": [{"op": "entropy", "body": {"distribution": $cat_logits}}, {"op": "sac/discrete/actor", "body": {"logits": [[0.1, 2.0, -1.0]], "q": [[1.0, 2.0, 3.0]], "alpha": 0.2}}]}
END
else
    echo "skip computing endpoints (SMOKE_ENDPOINTS=0)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
