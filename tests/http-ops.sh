#!/bin/sh
# http-ops.sh - operations checks with outside tools: promtool on /metrics, and HTTPS on a self-signed certificate with curl --cacert.
# Usage: tests/http-ops.sh BASE_URL (tests/run-http.sh passes it, and the
# binary in GRADSERVE_TEST_BIN). Installs Debian's prometheus (for
# promtool) and openssl when missing and run as root. Exits 1 if a check
# fails; the last line is "N passed, M failed".
set -u
url=${1:-http://127.0.0.1:8080}
BIN=${GRADSERVE_TEST_BIN:-build/gradserve}
tmp=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

NEED_WHO=http-ops.sh
. "$(dirname "$0")/need.sh"

# ---- /metrics passes promtool's checks -------------------------------------------
if need promtool prometheus; then
    # Requests of every kind first, so that every family has samples.
    curl -s -o /dev/null "$url/v1/entropy" -d '{"distribution": {"type": "categorical", "logits": [[0.1, 2.0, -1.0]]}}'
    curl -s -o /dev/null "$url/v1/entropy" -d '{"nope": 1}'
    curl -s -o /dev/null "$url/no/such/path"
    curl -s -o "$tmp/metrics" -D "$tmp/headers" "$url/metrics"
    if grep -qi '^content-type: text/plain; version=0.0.4' "$tmp/headers"; then
        ok "/metrics is text/plain; version=0.0.4"
    else
        bad "/metrics content type: $(grep -i '^content-type' "$tmp/headers")"
    fi
    if promtool check metrics <"$tmp/metrics" >"$tmp/promtool" 2>&1; then
        ok "promtool check metrics"
    else
        bad "promtool check metrics: $(cat "$tmp/promtool")"
    fi
    for family in gradserve_requests_total gradserve_request_duration_seconds \
        gradserve_requests_in_flight gradserve_rows_total gradserve_samples_total \
        gradserve_received_bytes_total gradserve_sent_bytes_total \
        gradserve_rejected_requests_total gradserve_queue_depth gradserve_build_info; do
        if grep -q "^# TYPE $family " "$tmp/metrics" && grep -q "^# HELP $family " "$tmp/metrics"; then
            ok "$family has HELP and TYPE"
        else
            bad "$family lacks HELP or TYPE"
        fi
    done
else
    bad "promtool is not available"
fi

# ---- HTTPS -------------------------------------------------------------------------
if need openssl openssl; then
    # A self-signed certificate for 127.0.0.1, valid for a day.
    if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >"$tmp/openssl.log" 2>&1; then
        ok "openssl made a self-signed certificate"
    else
        bad "openssl: $(cat "$tmp/openssl.log")"
        summary
    fi
    "$BIN" --host 127.0.0.1 --port 0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" \
        2>"$tmp/tls.log" &
    pid=$!
    port=
    i=0
    while [ $i -lt 200 ] && [ -z "$port" ]; do
        port=$(sed -n 's|.*listening on https://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/tls.log")
        [ -n "$port" ] || sleep 0.1
        i=$((i + 1))
    done
    if [ -z "$port" ]; then
        bad "the HTTPS server did not start: $(cat "$tmp/tls.log")"
        summary
    fi
    tls=https://127.0.0.1:$port
    code=$(curl -sS --cacert "$tmp/cert.pem" -o "$tmp/body" -w '%{http_code}' "$tls/healthz" 2>&1)
    if [ "$code" = 200 ] && grep -q '"status":"ok"' "$tmp/body"; then
        ok "GET /healthz over HTTPS with --cacert"
    else
        bad "GET /healthz over HTTPS: $code $(cat "$tmp/body" 2>/dev/null)"
    fi
    code=$(curl -sS --cacert "$tmp/cert.pem" -o "$tmp/body" -w '%{http_code}' "$tls/v1/entropy" \
        -d '{"distribution": {"type": "categorical", "logits": [[0.1, 2.0, -1.0]]}}' 2>&1)
    if [ "$code" = 200 ] && grep -q '"entropy":\[0.5432632246423977\]' "$tmp/body"; then
        ok "POST /v1/entropy over HTTPS"
    else
        bad "POST /v1/entropy over HTTPS: $code $(head -c 300 "$tmp/body" 2>/dev/null)"
    fi
    if curl -sS -o /dev/null "$tls/healthz" 2>/dev/null; then
        bad "curl trusted the self-signed certificate without --cacert"
    else
        ok "without --cacert the certificate is not trusted"
    fi
    if curl -sS -m 5 -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
        bad "plain HTTP was answered on the HTTPS port"
    else
        ok "plain HTTP is not answered on the HTTPS port"
    fi
    kill -TERM "$pid"
    status=0
    wait "$pid" || status=$?
    pid=
    if [ $status -eq 0 ]; then ok "the HTTPS server stopped with status 0"; else bad "HTTPS server exit status $status: $(cat "$tmp/tls.log")"; fi

    # A key that is not the certificate's, and a file that is not PEM.
    openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:prime256v1 -out "$tmp/other.pem" 2>/dev/null
    status=0
    "$BIN" --host 127.0.0.1 --port 0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/other.pem" \
        2>"$tmp/mismatch.log" || status=$?
    if [ $status -eq 2 ] && grep -q -- '--tls-key: .*do not match' "$tmp/mismatch.log"; then
        ok "a key that is not the certificate's is refused with status 2"
    else
        bad "mismatched key: status $status, log: $(cat "$tmp/mismatch.log")"
    fi
    status=0
    "$BIN" --tls-cert /etc/hostname --tls-key "$tmp/key.pem" 2>"$tmp/notpem.log" || status=$?
    if [ $status -eq 2 ] && grep -q -- '--tls-cert' "$tmp/notpem.log"; then
        ok "a certificate file that is not PEM is refused with status 2"
    else
        bad "not PEM: status $status, log: $(cat "$tmp/notpem.log")"
    fi
else
    bad "openssl is not available"
fi

# ==== a port in use ==========================================================
# The HTTP threads share the port with SO_REUSEPORT; a second server on the same port must still
# be refused rather than silently share the first one's connections.
port=$(echo "$url" | sed -n 's|.*:\([0-9][0-9]*\)/*$|\1|p')
status=0
timeout 10 "$BIN" --host 127.0.0.1 --port "$port" --threads 2 2>"$tmp/inuse.log" || status=$?
if [ $status -ne 0 ] && [ $status -ne 124 ] && grep -q 'Address already in use' "$tmp/inuse.log" &&
    curl -sf -m 5 -o /dev/null "$url/healthz"; then
    ok "a second server on port $port is refused (status $status), the first one still answers"
else
    bad "second server on port $port: status $status, log: $(cat "$tmp/inuse.log")"
fi
summary
