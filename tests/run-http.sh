#!/bin/sh
# run-http.sh - start gradserve on a free loopback port, run the HTTP suites and smoke tests against it, stop it.
# Usage: BUILD=build tests/run-http.sh (make test calls it; BUILD=build/san for sanitizer builds).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/gradserve
[ -x "$BIN" ] || { echo "run-http.sh: $BIN is not built (make $BIN)" >&2; exit 1; }

tmp=$(mktemp -d)
log=$tmp/server.log
pid=
# Whatever ends this script, no server outlives it.
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Port 0: the kernel picks a free port, which the server logs; nothing can
# take it between choosing and binding, as it could with a port we chose.
# The log exists before the server starts: the loop below reads it at once.
: >"$log"
"$BIN" --host 127.0.0.1 --port 0 2>"$log" &
pid=$!
port=
i=0
while [ $i -lt 300 ]; do
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "run-http.sh: the server exited at start:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
    i=$((i + 1))
done
[ -n "$port" ] || { echo "run-http.sh: no start-up line in 30 s:" >&2; cat "$log" >&2; exit 1; }
url=http://127.0.0.1:$port

i=0
until curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "run-http.sh: $url/readyz never answered 200" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
done
echo "== gradserve at $url ($BIN)"

export GRADSERVE_TEST_URL="$url" GRADSERVE_TEST_BIN="$BIN" CK_DEFAULT_TIMEOUT=120
failed=0
# run NAME CMD...: runs one suite, its output shown as it comes; when it
# fails, its failure lines (Check's ":F:"/":E:", the scripts' "FAIL") are
# kept for the summary printed last, so that they end the output.
run() {
    name=$1
    shift
    echo "== $name"
    { "$@" 2>&1 || echo "$?" >"$tmp/status"; } | tee "$tmp/out"
    [ -f "$tmp/status" ] || return 0
    rm -f "$tmp/status"
    failed=1
    echo "== $name failed:" >>"$tmp/failures"
    grep -E ':[EF]:|^FAIL' "$tmp/out" >>"$tmp/failures" || tail -5 "$tmp/out" >>"$tmp/failures"
}
for t in "$BUILD"/tests/test_http*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    run "$t" "$t"
done
run tests/smoke.sh sh tests/smoke.sh "$url"
for s in tests/http-*.sh; do
    [ -f "$s" ] && [ -x "$s" ] || continue
    run "$s" "$s" "$url"
done

# The server must stop cleanly: exit 0 (under ASan, also no leaks).
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
if [ $status -ne 0 ]; then
    echo "run-http.sh: the server exited with status $status after SIGTERM:" >&2
    cat "$log" >&2
    exit 1
fi
if [ $failed -ne 0 ]; then
    echo "run-http.sh: some HTTP tests failed; the server log:" >&2
    cat "$log" >&2
    echo "run-http.sh: the failures (the server log is above):" >&2
    cat "$tmp/failures" >&2
    exit 1
fi
echo "== HTTP tests passed; the server stopped cleanly"
