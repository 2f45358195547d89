#!/bin/sh
# tests/scale-test.sh - 3 gradserve replicas behind the nginx load balancer on loopback: throughput with 1, 2 and 3 replicas, then wrk for 20 s with one replica SIGKILLed half-way; passes only with zero client-visible errors.
#
# Usage: tests/scale-test.sh containers IMAGE LB_IMAGE   (podman, host network: make image-test)
#        tests/scale-test.sh processes                   (build/gradserve and the host's nginx)
#        tests/scale-test.sh                             (containers when podman and both images
#                                                         exist, else processes)
# Environment: SCALE_SECONDS (20) the failover run, SCALE_PHASE_SECONDS (6) each throughput
# run, SCALE_CONNECTIONS (16) wrk's connections: fewer than one replica admits
# (workers + GRADSERVE_QUEUE_LIMIT = 2 + 16), so no run is ever overloaded and
# any 503 is a failure to fail over, not backpressure.
#
# Everything listens on 127.0.0.1 and all load stays on this machine; every
# run is bounded in time, and whatever the script started is removed on exit.
# Throughput is reported, not asserted: on a 2-core machine the replicas,
# nginx and wrk share the same two cores. The last line is "N passed, M failed".
set -eu
cd "$(dirname "$0")/.."

mode=${1:-}
image=${2:-gradserve:latest}
lb_image=${3:-gradserve-lb:test}
seconds=${SCALE_SECONDS:-20}
phase=${SCALE_PHASE_SECONDS:-6}
conns=${SCALE_CONNECTIONS:-16}
podman_cmd() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }
if [ -z "$mode" ]; then
    mode=processes
    if command -v podman >/dev/null 2>&1 && podman image exists "$image" 2>/dev/null &&
        podman image exists "$lb_image" 2>/dev/null; then
        mode=containers
    fi
fi
case $mode in containers | processes) ;; *) echo "usage: $0 [containers IMAGE LB_IMAGE | processes]" >&2; exit 2 ;; esac

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
say() { echo "scale-test: $*" >&2; }

tmp=$(mktemp -d)
tag=gs-scale-$$
started="" # containers or process ids, removed on exit
lb=""
cleanup() {
    for s in $started; do
        case $s in
        pid:*) kill -9 "${s#pid:}" 2>/dev/null || true ;;
        ctr:*) podman_cmd rm -f -t 0 "${s#ctr:}" >/dev/null 2>&1 || true ;;
        esac
    done
    rm -rf "$tmp" /tmp/gradserve-lb-"$tag"-* # nginx's temporary paths (processes mode)
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# ---- tools ------------------------------------------------------------------------------
need=""
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v ss >/dev/null 2>&1 || need="$need iproute2"
if [ "$mode" = processes ]; then
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx"
    [ -x build/gradserve ] || { say "build/gradserve is not built (make)"; exit 1; }
fi
if [ -n "$need" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "missing:$need; install them with: sudo apt-get install -y$need"
        exit 1
    fi
    say "installing$need"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's nginx package starts its service on install: a policy-rc.d
    # that says no keeps it from taking port 80 (only while installing).
    policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1
    fi
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $need; } >&2 || {
        [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
        say "apt-get could not install$need"
        exit 1
    }
    [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
fi
PATH=$PATH:/usr/sbin

# A free loopback port, below the kernel's ephemeral range (where client
# sockets take theirs) and used by no socket in any state.
free_port() {
    while :; do
        p=$(($(od -An -N2 -tu2 /dev/urandom) % 10000 + 20000))
        [ -z "$(ss -Htan "sport = :$p")" ] && break
    done
    echo "$p"
}

wait_http() { # URL SECONDS: until URL answers 200
    i=0
    until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt $(($2 * 10)) ] || return 1
        sleep 0.1
    done
}

# ---- replicas and the balancer ------------------------------------------------------------
start_replica() { # N: replica N on a free port; sets port_N and id_N
    port=$(free_port)
    if [ "$mode" = containers ]; then
        podman_cmd run -d --name "$tag-$1" --network=host \
            --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
            -e GRADSERVE_HOST=127.0.0.1 -e GRADSERVE_PORT="$port" "$image" >/dev/null 2>"$tmp/podman.err" ||
            { cat "$tmp/podman.err" >&2; return 1; }
        id="ctr:$tag-$1"
    else
        build/gradserve --host 127.0.0.1 --port "$port" 2>"$tmp/replica-$1.log" &
        id="pid:$!"
    fi
    started="$started $id"
    eval "port_$1=$port id_$1=$id"
    wait_http "http://127.0.0.1:$port/readyz" 30 || {
        say "replica $1 (port $port) never became ready:"
        case $id in
        ctr:*) podman_cmd ps -a --filter "name=${id#ctr:}" --format '{{.Names}} {{.Status}}' >&2
            podman_cmd logs "${id#ctr:}" 2>&1 | grep -v systemd | tail -5 >&2 ;;
        pid:*) tail -5 "$tmp/replica-$1.log" >&2 ;;
        esac
        return 1
    }
}

start_lb() { # UPSTREAMS: the balancer in front of them, on $lb_port
    lb_port=$(free_port)
    if [ "$mode" = containers ]; then
        podman_cmd run -d --name "$tag-lb" --network=host \
            --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
            -e LB_LISTEN="127.0.0.1:$lb_port" -e GRADSERVE_UPSTREAMS="$1" "$lb_image" \
            >/dev/null 2>"$tmp/podman.err" || { cat "$tmp/podman.err" >&2; return 1; }
        lb="ctr:$tag-lb"
    else
        LB_TEMPLATE=docker/nginx/nginx.conf LB_CONF="$tmp/lb.conf" LB_LISTEN="127.0.0.1:$lb_port" \
            GRADSERVE_UPSTREAMS="$1" LB_TAG="$tag" sh docker/nginx/entrypoint.sh 2>"$tmp/lb.log" &
        lb="pid:$!"
    fi
    started="$started $lb"
    wait_http "http://127.0.0.1:$lb_port/lb-healthz" 30 || { say "nginx never answered"; lb_log >&2; return 1; }
}

lb_log() {
    case $lb in
    ctr:*) podman_cmd logs "${lb#ctr:}" 2>&1 ;;
    pid:*) cat "$tmp/lb.log" ;;
    esac
}

stop_lb() {
    case $lb in
    ctr:*) podman_cmd rm -f -t 0 "${lb#ctr:}" >/dev/null 2>&1 || true ;;
    pid:*) kill -QUIT "${lb#pid:}" 2>/dev/null || true; wait "${lb#pid:}" 2>/dev/null || true ;;
    esac
    rest=""
    for s in $started; do [ "$s" = "$lb" ] || rest="$rest $s"; done
    started=$rest
    lb=""
}

kill_replica() { # N: SIGKILL, no drain
    eval "id=\$id_$1"
    case $id in
    ctr:*) podman_cmd kill --signal KILL "${id#ctr:}" >/dev/null 2>&1 ;;
    pid:*) kill -KILL "${id#pid:}" ;;
    esac
}

# wrk SECONDS OUT: wrk against the balancer; the SUMMARY line goes to OUT.
run_wrk() {
    SCALE_BODY=$tmp/body.json wrk -t2 -c"$conns" -d"$1"s --timeout 10s -s tests/scale-post.lua \
        "http://127.0.0.1:$lb_port/v1/entropy" >"$2.full" 2>&1 || true
    grep '^SUMMARY' "$2.full" >"$2" || { cat "$2.full" >&2; echo "SUMMARY requests=0" >"$2"; }
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$2"; }
errors() { # the client-visible errors of a SUMMARY file
    echo $(($(field connect "$1") + $(field read "$1") + $(field write "$1") + $(field status "$1") + $(field timeout "$1")))
}

# The request: the exact entropy of 16 categoricals over 32 classes and its
# gradient (about 1 ms of work, an 11 kB answer).
awk 'BEGIN {
    printf "{\"distribution\": {\"type\": \"categorical\", \"logits\": ["
    for (r = 0; r < 16; r++) {
        printf "%s[", r ? ", " : ""
        for (c = 0; c < 32; c++) printf "%s%.3f", c ? ", " : "", 0.01 * r * c - 0.2
        printf "]"
    }
    printf "]}}\n"
}' >"$tmp/body.json"

runtime="podman $(podman --version 2>/dev/null | awk '{print $3}') containers (host network, runc)"
[ "$mode" = processes ] && runtime="processes started directly (build/gradserve, $(nginx -v 2>&1 | sed 's/.*: //'))"
echo "== scale-out: $runtime, $(nproc) CPUs"
for n in 1 2 3; do start_replica $n; done
ok "3 replicas ready on 127.0.0.1:$port_1, :$port_2, :$port_3"

# ---- throughput with 1, 2 and 3 replicas ----------------------------------------------------
ups=""
for n in 1 2 3; do
    eval "ups=\"\$ups 127.0.0.1:\$port_$n\""
    start_lb "$ups"
    run_wrk 1 "$tmp/warm"
    run_wrk "$phase" "$tmp/phase-$n"
    e=$(errors "$tmp/phase-$n")
    rps=$(awk -v r="$(field requests "$tmp/phase-$n")" -v s="$(field seconds "$tmp/phase-$n")" \
        'BEGIN { printf "%.0f", (s > 0 ? r / s : 0) }')
    eval "rps_$n=$rps"
    if [ "$e" -eq 0 ] && [ "$rps" -gt 0 ]; then
        ok "$n replica(s): $rps requests/s, p50 $(field p50_ms "$tmp/phase-$n") ms, p99 $(field p99_ms "$tmp/phase-$n") ms, 0 errors"
    else
        bad "$n replica(s): $rps requests/s, $e errors: $(cat "$tmp/phase-$n")"
    fi
    stop_lb
done
echo "   throughput 1 -> 2 -> 3 replicas: $rps_1 -> $rps_2 -> $rps_3 requests/s" \
    "(x$(awk -v a="$rps_1" -v b="$rps_3" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }') with 3;" \
    "measured, not asserted: $(nproc) CPUs shared by the replicas, nginx and wrk)"

# ---- failover: SIGKILL one replica half-way through ------------------------------------------
start_lb "$ups"
run_wrk 1 "$tmp/warm"
run_wrk "$seconds" "$tmp/failover" &
wrk_pid=$!
sleep $((seconds / 2))
kill_replica 2
if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port_2/healthz"; then
    bad "replica 2 still answers after SIGKILL"
else
    ok "replica 2 (127.0.0.1:$port_2) SIGKILLed after $((seconds / 2)) s of load"
fi
wait "$wrk_pid" || true
f=$tmp/failover
e=$(errors "$f")
reqs=$(field requests "$f")
echo "   failover run: $reqs requests in $(field seconds "$f") s" \
    "($(awk -v r="$reqs" -v s="$(field seconds "$f")" 'BEGIN { printf "%.0f", (s > 0 ? r / s : 0) }') requests/s)," \
    "p50 $(field p50_ms "$f") ms, p99 $(field p99_ms "$f") ms, max $(field max_ms "$f") ms"
# What nginx saw: each failed attempt on the killed replica was re-sent to
# another one; "temporarily disabled" is max_fails taking it out of rotation.
echo "   nginx's log of the failover (attempts re-sent to another replica):"
lb_log | sed -n 's/^[0-9/]* [0-9:]* \[[a-z]*\] [0-9#]*: \(\*[0-9]* \)\{0,1\}\([^,]*\),.*/\2/p' |
    sort | uniq -c | sed 's/^ */     /'
if [ "$e" -eq 0 ] && [ "${reqs:-0}" -gt 0 ]; then
    ok "failover: 0 client-visible errors in $reqs requests"
else
    bad "failover: $e client-visible errors: $(cat "$f")"
    lb_log | tail -20 >&2
fi
# The survivors still serve through the balancer.
if curl -fsS -o /dev/null --max-time 5 -H 'Content-Type: application/json' \
    --data-binary @"$tmp/body.json" "http://127.0.0.1:$lb_port/v1/entropy"; then
    ok "the balancer still answers with 2 replicas"
else
    bad "the balancer no longer answers"
fi
stop_lb

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
