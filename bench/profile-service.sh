#!/bin/sh
# profile-service.sh - where gradserve's time goes for one request body: callgrind's parse/compute/write split and perf under wrk load.
#
# Usage: sh bench/profile-service.sh GRADSERVE ENDPOINT BODY [split|perf|both]
#   ENDPOINT  actor | entropy (the paths of bench-service.sh)
#   BODY      a request body file (bench/gen_bodies.py writes the benchmark's)
#   split     callgrind on one request (after one warm-up request), gradserve with one HTTP
#             thread and one worker so that every instruction of the request runs under
#             api_handle or the HTTP layer: exact instruction counts per phase,
#             independent of whatever else runs on the machine
#   perf      perf record (cpu-clock, DWARF call graphs) on gradserve (--threads/--workers =
#             cores) while wrk -t2 -c16 drives BODY for $PROFILE_SECONDS (6) seconds: the
#             top functions by self time, user and kernel, and inclusive time of each phase
# Loopback only; each server it starts is stopped on exit. Needs valgrind, perf, wrk, curl.
set -eu

[ $# -ge 3 ] || { sed -n '4,16p' "$0" >&2; exit 2; }
SERVER=$1
EP=$2
BODY=$3
MODE=${4:-both}
SECS=${PROFILE_SECONDS:-6}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $EP in
actor) URLPATH=/v1/sac/discrete/actor PARSE=api_sac_actor_parse RUN=api_sac_actor_run KERNEL=gs_sac_discrete ;;
entropy) URLPATH=/v1/entropy PARSE=api_entropy_parse RUN=api_entropy_run KERNEL=gs_entropy ;;
*) echo "profile-service: endpoint is actor or entropy" >&2; exit 2 ;;
esac
for t in valgrind callgrind_annotate callgrind_control perf wrk curl; do
    command -v $t >/dev/null 2>&1 || { echo "profile-service: needs $t (apt-get install valgrind linux-perf wrk curl)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/profile-service.XXXXXX)
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        i=0
        while kill -0 "$PID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_up() {
    i=0
    until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/healthz"; do
        kill -0 "$PID" 2>/dev/null || { echo "profile-service: server exited" >&2; exit 1; }
        i=$((i + 1)); [ $i -lt 600 ] || { echo "profile-service: server did not come up" >&2; exit 1; }
        sleep 0.2
    done
}
post() {
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 600 -H 'Content-Type: application/json' \
        --data-binary "@$BODY" "http://127.0.0.1:$1$URLPATH")
    [ "$code" = 200 ] || { echo "profile-service: answer $code" >&2; exit 1; }
}
stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}

echo "== profile: $EP $(basename "$BODY") ($(wc -c <"$BODY") bytes)"

if [ "$MODE" = split ] || [ "$MODE" = both ]; then
    P=$(port)
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/cg.%p" \
        "$SERVER" --host 127.0.0.1 --port "$P" --threads 1 --workers 1 >"$TMP/vg.log" 2>&1 &
    PID=$!
    wait_up "$P"
    callgrind_control -i on "$PID" >/dev/null 2>&1
    post "$P" # warm-up: first-touch allocations, lazy binding
    callgrind_control -z "$PID" >/dev/null 2>&1
    post "$P"
    callgrind_control -d "$PID" >/dev/null 2>&1
    stop
    f=$(ls -S "$TMP"/cg.* | head -1)
    callgrind_annotate --inclusive=yes "$f" >"$TMP/incl.txt" 2>/dev/null
    callgrind_annotate "$f" >"$TMP/self.txt" 2>/dev/null
    # inclusive instruction count of a function (first matching line; 0 if absent)
    incl() {
        awk -v fn="$1" '
            { name = $0; sub(/^ *[0-9,]+ *(\([ 0-9.]+%\))? */, "", name) }
            name ~ ("(^|:)" fn " ") || name ~ ("(^|:)" fn "$") { gsub(",", "", $1); print $1; found = 1; exit }
            END { if (!found) print 0 }' "$TMP/incl.txt"
    }
    total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$TMP/incl.txt")
    handle=$(incl api_handle)
    [ "$handle" != 0 ] || handle=$(incl handle)
    lex=$(incl json_loadb)
    conv=$(incl "$PARSE")
    comp=$(incl api_run_rows)
    kern=$(incl "$KERNEL")
    run=$(incl "$RUN")
    del=$(incl json_delete)
    ctxfree=$(incl api_ctx_free)
    echo
    echo "-- callgrind, one request, instructions by phase (gradserve --threads 1 --workers 1)"
    awk -v t="$total" -v h="$handle" -v lex="$lex" -v conv="$conv" -v comp="$comp" -v kern="$kern" \
        -v run="$run" -v del="$del" -v cf="$ctxfree" -v parse_fn="$PARSE" -v kernel_fn="$KERNEL" 'BEGIN {
        wr = run - comp; fr = del + cf; other = h - lex - conv - run - fr; http = t - h
        row("parse: JSON text -> jansson tree (json_loadb)", lex)
        row("parse: tree -> arrays, checks (" parse_fn ")", conv)
        row("compute (api_run_rows; " kernel_fn " " sprintf("%.1f%%", 100 * kern / t) ")", comp)
        row("write: response JSON/base64", wr)
        row("free: json_delete + api_ctx_free", fr)
        row("rest of api_handle (dispatch, finish)", other)
        row("HTTP: libmicrohttpd, body buffer, routing", http)
        row("total", t)
    }
    function row(name, v) { printf "  %-58s %14.0f  %5.1f%%\n", name, v, 100 * v / t }'
    echo "-- top functions by self instructions"
    awk '/file:function/ { on = 1; next } on && /^ *[0-9]/ { print; if (++k == 15) exit }' "$TMP/self.txt" |
        sed 's|/work/[^ ]*/||; s|\./[a-z-]*/\./[a-z-]*/||' | cut -c1-140
fi

if [ "$MODE" = perf ] || [ "$MODE" = both ]; then
    P=$(port)
    "$SERVER" --host 127.0.0.1 --port "$P" >"$TMP/srv.log" 2>&1 &
    PID=$!
    wait_up "$P"
    post "$P"
    wrk -t2 -c16 -d"$((SECS + 2))s" --timeout 30s -s "$ROOT/bench/wrk-post.lua" \
        "http://127.0.0.1:$P$URLPATH" -- "$BODY" >"$TMP/wrk.out" 2>&1 &
    WRK=$!
    sleep 1
    perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$PID" -o "$TMP/perf.data" \
        -- sleep "$SECS" >/dev/null 2>&1
    wait "$WRK" || true
    stop
    echo
    echo "-- perf under load (wrk -t2 -c16, $(grep '^WRKRESULT' "$TMP/wrk.out" | sed 's/.*rps=\([0-9.]*\).*/\1/') req/s while sampling)"
    echo "   top functions by self time (% of gradserve's samples, user and kernel):"
    perf report -i "$TMP/perf.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null |
        grep '%' | grep -v '^#' | head -20 | cut -c1-130
    echo "   inclusive time of the phases:"
    perf report -i "$TMP/perf.data" --children --sort sym -g none --stdio 2>/dev/null >"$TMP/children.txt"
    for fn in on_request api_handle json_loadb "$PARSE" "$RUN" api_run_rows "$KERNEL" \
        json_delete entry_SYSCALL_64 __x64_sys_epoll_wait __x64_sys_sendto __x64_sys_recvfrom \
        __x64_sys_read __x64_sys_write; do
        awk -v fn="$fn" '$NF == fn { printf "     %-28s %s\n", fn, $1; exit }' "$TMP/children.txt"
    done
fi
