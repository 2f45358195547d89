#!/bin/sh
# bench-service.sh - load-tests gradserve over HTTP against a Flask + PyTorch service and a bare libmicrohttpd server (the ceiling).
#
# Usage: sh bench/bench-service.sh BUILD/gradserve BUILD/bench/bare_mhd      (make bench-service)
#
# Everything runs on this machine, on 127.0.0.1 only: the three servers on free ports this
# script picks, and wrk as the load generator (so wrk shares the cores with the server under
# test, equally for all three). Every wrk run is bounded in time. Whatever this script
# starts, it stops on exit (trap).
#
# Environment knobs (defaults in brackets):
#   BENCH_SECONDS [10]      seconds of load per gradserve point and for the ceiling
#   BENCH_PY_SECONDS [10]   seconds per Python point at B <= 32
#   BENCH_PY_SLOW [6]       seconds per Python point at B >= 256 (a few requests/s there)
#   BENCH_WARMUP [1]        seconds of unrecorded load before each point
#   BENCH_THREADS [2]       wrk threads;  BENCH_CONNS [16] wrk connections
#   BENCH_CORES [nproc]     gradserve --threads/--workers and gunicorn workers
#   BENCH_OUT [dir of BARE/bench-service.txt]  where the table is also written
# Word splitting of $need, $GUNICORN_ARGS and the result lines is intended.
# shellcheck disable=SC2046,SC2086
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 GRADSERVE BARE_MHD" >&2
    exit 2
fi
SERVER=$1
BARE=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
PY=/usr/bin/python3 # Debian's: python3-torch and python3-flask live there, not in pyenv's
SECS=${BENCH_SECONDS:-10}
PY_SECS=${BENCH_PY_SECONDS:-10}
PY_SLOW=${BENCH_PY_SLOW:-6}
WARM=${BENCH_WARMUP:-1}
WRK_T=${BENCH_THREADS:-2}
WRK_C=${BENCH_CONNS:-16}
CORES=${BENCH_CORES:-$(nproc)}
OUT=${BENCH_OUT:-$(dirname "$BARE")/bench-service.txt}
START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# ==== dependencies ==========================================================
# Debian packages, installed as root when missing (else: the command to run).
need=""
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v curl >/dev/null 2>&1 || need="$need curl"
[ -x "$PY" ] || need="$need python3"
if [ -x "$PY" ]; then
    "$PY" -c "import numpy" 2>/dev/null || need="$need python3-numpy"
    "$PY" -c "import torch" 2>/dev/null || need="$need python3-torch"
    "$PY" -c "import flask" 2>/dev/null || need="$need python3-flask"
    "$PY" -c "import gunicorn" 2>/dev/null || need="$need gunicorn"
else
    need="$need python3-numpy python3-torch python3-flask gunicorn"
fi
if [ -n "$need" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "bench-service: installing$need"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
    else
        echo "bench-service: missing packages; run: sudo apt-get install$need" >&2
        exit 1
    fi
fi
for f in "$SERVER" "$BARE"; do
    [ -x "$f" ] || { echo "bench-service: $f is not built (make bench-service builds it)" >&2; exit 1; }
done

# ==== setup and teardown ====================================================
TMP=$(mktemp -d /tmp/bench-service.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_up NAME PID URL: until URL answers (any status), or fail after 60 s.
wait_up() {
    i=0
    while ! curl -s -o /dev/null --max-time 2 "$3"; do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "bench-service: $1 exited at start; its log:" >&2
            cat "$TMP/$1.log" >&2
            exit 1
        fi
        i=$((i + 1))
        if [ $i -gt 600 ]; then echo "bench-service: $1 did not come up" >&2; exit 1; fi
        sleep 0.1
    done
}

# The bodies: deterministic (fixed numpy seed), regenerated each run, kept beside the
# table for bench/profile-service.sh.
BODIES=$(dirname "$OUT")/service-bodies
"$PY" "$BENCH/gen_bodies.py" "$BODIES"

GS_PORT=$(free_port)
"$SERVER" --host 127.0.0.1 --port "$GS_PORT" --threads "$CORES" --workers "$CORES" \
    >"$TMP/gradserve.log" 2>&1 &
GS_PID=$!
PIDS="$PIDS $GS_PID"

PY_PORT=$(free_port)
# One sync worker per core, one torch thread per worker (pyservice.py sets it); a 120 s
# worker timeout so that a B = 4096 request queued behind 15 others is not killed.
GUNICORN_ARGS="-w $CORES -k sync --timeout 120 --log-level warning"
"$PY" -m gunicorn --chdir "$BENCH" $GUNICORN_ARGS -b "127.0.0.1:$PY_PORT" pyservice:app \
    >"$TMP/python.log" 2>&1 &
PY_PID=$!
PIDS="$PIDS $PY_PID"

BARE_PORT=$(free_port)
"$BARE" --port "$BARE_PORT" --threads "$CORES" >"$TMP/bare.log" 2>&1 &
BARE_PID=$!
PIDS="$PIDS $BARE_PID"

wait_up gradserve "$GS_PID" "http://127.0.0.1:$GS_PORT/healthz"
wait_up python "$PY_PID" "http://127.0.0.1:$PY_PORT/healthz"
wait_up bare "$BARE_PID" "http://127.0.0.1:$BARE_PORT/"

# The processes whose memory is counted: gradserve and the bare server are one process
# each; the Python service is gunicorn's master plus its workers.
procs() {
    case $1 in
    python) echo "$PY_PID $(pgrep -P "$PY_PID" | tr '\n' ' ')" ;;
    gradserve) echo "$GS_PID" ;;
    bare) echo "$BARE_PID" ;;
    esac
}
# Peak RSS is VmHWM; writing 5 to clear_refs resets it, so each point reports its own peak.
reset_peak() {
    for p in $(procs "$1"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
}
peak_kb() {
    t=0
    for p in $(procs "$1"); do
        k=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        t=$((t + ${k:-0}))
    done
    echo $t
}
# settle SERVER: waits (at most 30 s) until the server's processes use under 5% of a core
# over 0.2 s, so that requests still queued when wrk stopped (gunicorn's sync workers keep
# working through their accept backlog) do not spill into the next measurement.
cpu_ticks() {
    t=0
    for p in $(procs "$1"); do
        k=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        t=$((t + ${k:-0}))
    done
    echo $t
}
settle() {
    i=0
    a=$(cpu_ticks "$1")
    while [ $i -lt 150 ]; do
        sleep 0.2
        b=$(cpu_ticks "$1")
        [ $((b - a)) -le 1 ] && return 0
        a=$b
        i=$((i + 1))
    done
}
port_of() {
    case $1 in gradserve) echo "$GS_PORT" ;; python) echo "$PY_PORT" ;; bare) echo "$BARE_PORT" ;; esac
}
path_of() {
    case $1 in actor) echo /v1/sac/discrete/actor ;; entropy) echo /v1/entropy ;; esac
}

# ==== configuration =========================================================
{
    echo "== bench-service: gradserve vs Python (Flask + PyTorch) vs bare libmicrohttpd, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine:   $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "gradserve: $SERVER --host 127.0.0.1 --port $GS_PORT --threads $CORES --workers $CORES"
    echo "python:    gunicorn $("$PY" -c 'import gunicorn; print(gunicorn.__version__)') $GUNICORN_ARGS (sync workers = cores), Flask $("$PY" -c 'import flask; print(flask.__version__)'), torch $("$PY" -c 'import torch; print(torch.__version__)') float64 autograd, torch.set_num_threads(1) per worker, Python $("$PY" -c 'import platform; print(platform.python_version())')"
    echo "ceiling:   $BARE --port $BARE_PORT --threads $CORES (libmicrohttpd $(pkg-config --modversion libmicrohttpd 2>/dev/null || echo '?'), one epoll daemon per thread, the port shared with SO_REUSEPORT as in gradserve; reads the body, answers a fixed 15-byte JSON)"
    echo "load:      wrk -t$WRK_T -c$WRK_C --latency --timeout 30s, POST application/json, keep-alive (gunicorn's sync workers close each connection); ${SECS}s per gradserve point, ${PY_SECS}s per Python point at B <= 32, ${PY_SLOW}s at B >= 256, ${WARM}s warm-up each; wrk shares the $(nproc) cores with the server"
    echo "load avg:  $LOAD0 at start (1, 5, 15 min; other work on the machine skews every ratio below)"
    echo "bodies:    actor = /v1/sac/discrete/actor exact, K = 18; entropy = /v1/entropy tanh_normal reparam, D = 6, M = 16, seed 12345; json = nested arrays; base64 = tensors in and \"output\": \"base64\""
} | tee "$TMP/head.txt"

# ==== correctness first =====================================================
echo
echo "== checks"
POINTS="actor:1:json actor:32:json actor:256:json actor:4096:json entropy:1:json entropy:32:json entropy:256:json entropy:4096:json actor:4096:base64 entropy:4096:base64"
body_of() { # endpoint B format
    f=json
    [ "$3" = base64 ] && f=b64
    echo "$BODIES/$1_${f}_$2.json"
}
for pt in $POINTS; do
    IFS=: read -r ep B fmt <<EOF
$pt
EOF
    body=$(body_of "$ep" "$B" "$fmt")
    for srv in gradserve python bare; do
        code=$(curl -s -o "$TMP/ans.$srv.$ep.$B.$fmt" -w '%{http_code}' --max-time 120 \
            -H 'Content-Type: application/json' --data-binary "@$body" \
            "http://127.0.0.1:$(port_of $srv)$(path_of "$ep")")
        if [ "$code" != 200 ]; then
            echo "bench-service: $srv answered $code to $ep B=$B $fmt:" >&2
            head -c 600 "$TMP/ans.$srv.$ep.$B.$fmt" >&2
            echo >&2
            exit 1
        fi
    done
done
echo "every server answers 200 to every body ($(echo $POINTS | wc -w) bodies x 3 servers)"
for pt in actor:32:json actor:4096:base64 entropy:32:json entropy:4096:base64; do
    IFS=: read -r ep B fmt <<EOF
$pt
EOF
    "$PY" "$BENCH/check_answers.py" "$ep" "$(body_of "$ep" "$B" "$fmt")" \
        "$TMP/ans.gradserve.$ep.$B.$fmt" "$TMP/ans.python.$ep.$B.$fmt"
done

# ==== load ==================================================================
# drive SERVER PATH BODY SECONDS: writes "rps p50_us p99_us peak_kb errors cpu_ms_per_req"
# to $TMP/res
# (a file, not stdout, so that a failure here stops the script under set -e).
drive() {
    url="http://127.0.0.1:$(port_of "$1")$2"
    if [ "$WARM" -gt 0 ]; then
        wrk -t"$WRK_T" -c"$WRK_C" -d"${WARM}s" --timeout 30s -s "$BENCH/wrk-post.lua" "$url" -- "$3" >/dev/null 2>&1 || true
        settle "$1"
    fi
    reset_peak "$1"
    c0=$(cpu_ticks "$1")
    wrk -t"$WRK_T" -c"$WRK_C" -d"${4}s" --timeout 30s --latency -s "$BENCH/wrk-post.lua" "$url" -- "$3" \
        >"$TMP/wrk.out" 2>&1 || { cat "$TMP/wrk.out" >&2; exit 1; }
    c1=$(cpu_ticks "$1")
    settle "$1"
    cat "$TMP/wrk.out" >>"$TMP/wrk.all"
    line=$(grep '^WRKRESULT' "$TMP/wrk.out") || { cat "$TMP/wrk.out" >&2; exit 1; }
    kv() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    errs=$(($(kv err_connect) + $(kv err_read) + $(kv err_write) + $(kv err_status) + $(kv err_timeout)))
    # Server CPU (user + system, all its processes) per completed request, in ms: less
    # sensitive than req/s to other work on the machine and to wrk's own share of the cores.
    cpu=$(awk -v t="$((c1 - c0))" -v n="$(kv requests)" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.4f", (n > 0 ? 1000 * t / hz / n : 0) }')
    echo "$(kv rps) $(kv p50_us) $(kv p99_us) $(peak_kb "$1") $errs $cpu" >"$TMP/res"
}

echo
echo "== load (the table is also written to $OUT)"
drive bare /v1/sac/discrete/actor "$BODIES/small.json" "$SECS"
set -- $(cat "$TMP/res")
CEIL=$1
CEIL_LINE=$(awk -v r="$1" -v p50="$2" -v p99="$3" -v kb="$4" -v err="$5" -v cpu="$6" 'BEGIN {
    printf "%-8s %5d %-6s %-9s %10.0f %11s %9.3f %9.3f %8.3f %8.1f %7s %8s %7s%s\n",
        "ceiling", 1, "json", "bare", r, "-", p50 / 1000, p99 / 1000, cpu, kb / 1024, "-", "1.00", "-",
        (err > 0 ? "  errors=" err : "") }')

HDR=$(printf '%-8s %5s %-6s %-9s %10s %11s %9s %9s %8s %8s %7s %8s %7s' \
    endpoint B format server 'req/s' 'rows/s' 'p50 ms' 'p99 ms' 'CPU ms' 'RSS MiB' 'gs/py' '/ceiling' 'cpu py/gs')
KEY="columns: req/s and latency from wrk; rows/s = req/s x B; CPU ms = the server's user+system CPU per request (all its processes); RSS = peak VmHWM during the point (gunicorn: master + workers, summed); gs/py and /ceiling = req/s ratios; cpu py/gs = Python's CPU per request / gradserve's"
echo "$KEY"
echo "$HDR"
echo "$CEIL_LINE"
: >"$TMP/rows.txt"
: >"$TMP/ratios.txt"
for pt in $POINTS; do
    IFS=: read -r ep B fmt <<EOF
$pt
EOF
    body=$(body_of "$ep" "$B" "$fmt")
    psecs=$PY_SECS
    [ "$B" -ge 256 ] && psecs=$PY_SLOW
    drive python "$(path_of "$ep")" "$body" "$psecs"
    set -- $(cat "$TMP/res")
    p_rps=$1 p_p50=$2 p_p99=$3 p_kb=$4 p_err=$5 p_cpu=$6
    drive gradserve "$(path_of "$ep")" "$body" "$SECS"
    set -- $(cat "$TMP/res")
    g_rps=$1 g_p50=$2 g_p99=$3 g_kb=$4 g_err=$5 g_cpu=$6
    awk -v ep="$ep" -v B="$B" -v fmt="$fmt" -v ceil="$CEIL" \
        -v g="$g_rps $g_p50 $g_p99 $g_kb $g_err $g_cpu" -v p="$p_rps $p_p50 $p_p99 $p_kb $p_err $p_cpu" '
        function line(srv, r, p50, p99, kb, err, cpu, vs, vc, vcpu) {
            printf "%-8s %5d %-6s %-9s %10.1f %11.0f %9.3f %9.3f %8.3f %8.1f %7s %8s %7s%s\n",
                ep, B, fmt, srv, r, r * B, p50 / 1000, p99 / 1000, cpu, kb / 1024, vs, vc, vcpu,
                (err > 0 ? "  errors=" err : "")
        }
        BEGIN {
            split(g, G, " "); split(p, P, " ")
            line("gradserve", G[1], G[2], G[3], G[4], G[5], G[6],
                 sprintf("%.2f", (P[1] > 0 ? G[1] / P[1] : 0)), sprintf("%.2f", G[1] / ceil),
                 sprintf("%.2f", (G[6] > 0 ? P[6] / G[6] : 0)))
            line("python", P[1], P[2], P[3], P[4], P[5], P[6], "-", sprintf("%.2f", P[1] / ceil), "-")
        }' | tee -a "$TMP/rows.txt"
    echo "$ep $B $fmt $g_rps $p_rps $g_cpu $p_cpu" >>"$TMP/ratios.txt"
done

# ==== summary ===============================================================
SUMMARY=$(awk -v ceil="$CEIL" '
    { r = $4 / $5 }
    $3 == "json" && $2 <= 32 { if (min32 == "" || r < min32) min32 = r; d32 = d32 sprintf(" %s/%d %.2f", $1, $2, r) }
    $3 == "json" && $2 == 1 { f = $4 / ceil; if (cf == "" || f < cf) cf = f; dcf = dcf sprintf(" %s %.2f", $1, f) }
    $3 == "base64" && $2 == 4096 { if (b64 == "" || r < b64) b64 = r; db64 = db64 sprintf(" %s %.2f", $1, r) }
    { c = ($6 > 0 ? $7 / $6 : 0) }
    $3 == "json" && $2 <= 32 { if (c32 == "" || c < c32) c32 = c }
    $3 == "base64" { if (cb == "" || c < cb) cb = c }
    END {
        printf "min speedup vs python at B<=32: %.2f   (target >= 10: %s;%s)\n", min32, (min32 >= 10 ? "met" : "MISSED"), d32
        printf "ceiling fraction at B=1: %.2f   (target >= 0.70: %s;%s)\n", cf, (cf >= 0.70 ? "met" : "MISSED"), dcf
        printf "base64 speedup vs python at B=4096: %.2f   (target >= 10: %s;%s)\n", b64, (b64 >= 10 ? "met" : "MISSED"), db64
        printf "(server CPU per request, python / gradserve: min %.2f at B<=32 json, min %.2f with base64 at B=4096)\n", c32, cb
    }' "$TMP/ratios.txt")
# The floor under the JSON points: jansson's json_loadb alone, per body (bench/parse_floor.c, one
# thread, the server's flags and arena). Even if nothing else cost anything, CORES cores could
# parse at most CORES / floor bodies per second.
FLOOR_BIN=$(dirname "$BARE")/parse_floor
FLOOR=""
if [ -x "$FLOOR_BIN" ]; then
    : >"$TMP/floor.txt"
    while read -r ep B fmt g p gc pc; do
        [ "$fmt" = json ] && [ "$B" -le 32 ] || continue
        us=$("$FLOOR_BIN" "$(body_of "$ep" "$B" "$fmt")" | cut -f3)
        echo "$ep $B $us $p" >>"$TMP/floor.txt"
    done <"$TMP/ratios.txt"
    FLOOR=$(awk -v cores="$CORES" '
        { m = cores * 1e6 / $3; printf "%s  %s/%d: json_loadb %.1f us -> at most %.0f req/s on %d cores = %.1fx python\n",
              (NR == 1 ? "parse floor:" : "            "), $1, $2, $3, m, cores, ($4 > 0 ? m / $4 : 0) }' "$TMP/floor.txt")
fi
END=$(date +%s)
LOAD1="load avg:  $(cut -d' ' -f1-3 /proc/loadavg) at the end (this run keeps about 2 busy: server + wrk)"
echo
echo "$SUMMARY"
[ -z "$FLOOR" ] || echo "$FLOOR"
echo "wall time: $((END - START)) s"
echo "$LOAD1"
case $SUMMARY in *MISSED*)
    echo "a target was missed; to see where gradserve's time goes (parse, compute, write):"
    echo "  sh bench/profile-service.sh $SERVER actor $BODIES/actor_json_4096.json split"
    echo "  sh bench/profile-service.sh $SERVER actor $BODIES/actor_json_32.json perf" ;;
esac

mkdir -p "$(dirname "$OUT")"
{
    cat "$TMP/head.txt"
    echo
    echo "$KEY"
    echo "$HDR"
    echo "$CEIL_LINE"
    cat "$TMP/rows.txt"
    echo
    echo "$SUMMARY"
    [ -z "$FLOOR" ] || echo "$FLOOR"
    echo "wall time: $((END - START)) s"
    echo "$LOAD1"
} >"$OUT"
