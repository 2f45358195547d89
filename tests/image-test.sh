#!/bin/sh
# tests/image-test.sh - tests the gradserve image with podman: its configuration, the health check, smoke.sh, a SIGTERM drain under a burst of requests, then tests/scale-test.sh with 3 replicas behind the nginx image.
#
# Usage: tests/image-test.sh [IMAGE]     (default gradserve:latest; make image-test builds it first)
#
# Containers run with host networking and listen on 127.0.0.1 only (the
# image's 0.0.0.0 default is overridden: tests bind loopback). podman here
# needs runc, cgroupfs and explicit ulimits (../shared/CONTAINERS.md); there is
# no systemd to run HEALTHCHECK on a timer, so the script runs the check
# itself with `podman healthcheck run`. Every container it starts, and the
# load balancer image it builds, is removed on exit; IMAGE is kept.
# The last line is "N passed, M failed".
set -eu
cd "$(dirname "$0")/.."
image=${1:-gradserve:latest}
lb_image=gradserve-lb:test-$$
name=gs-image-test-$$
podman_cmd() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }
run_flags="--network=host --ulimit nofile=20000:20000 --ulimit nproc=4096:4096"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
say() { echo "image-test: $*" >&2; }

tmp=$(mktemp -d)
lb_built=
cleanup() {
    podman_cmd rm -f -t 0 "$name" >/dev/null 2>&1 || true
    [ -n "$lb_built" ] && podman_cmd rmi -f "$lb_image" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
command -v podman >/dev/null 2>&1 || { say "podman is missing (make image installs it)"; exit 1; }
podman image exists "$image" || { say "no image $image (make image)"; exit 1; }
command -v curl >/dev/null 2>&1 || { say "curl is missing"; exit 1; }

# ---- the image's configuration --------------------------------------------------------------
inspect() { podman image inspect --format "$1" "$image"; }
size=$(inspect '{{.Size}}' | awk '{ printf "%.1f MB", $1 / 1e6 }')
echo "== $image: $size"
[ "$(inspect '{{.Config.User}}')" = "10001:10001" ] && ok "runs as user 10001:10001 (non-root)" ||
    bad "user is '$(inspect '{{.Config.User}}')'"
entry=$(inspect '{{json .Config.Entrypoint}}')
[ "$entry" = '["/usr/local/bin/gradserve"]' ] && ok "exec-form entrypoint $entry: SIGTERM reaches gradserve as PID 1" ||
    bad "entrypoint is $entry"
case $(inspect '{{json .Config.Healthcheck}}') in
*healthcheck*) ok "HEALTHCHECK: $(inspect '{{json .Config.Healthcheck.Test}}')" ;;
*) bad "no HEALTHCHECK (built in OCI format?)" ;;
esac
envs=$(inspect '{{json .Config.Env}}')
for want in GRADSERVE_HOST=0.0.0.0 GRADSERVE_PORT=8080 GRADSERVE_INSECURE=1; do
    case $envs in *"\"$want\""*) ok "default $want" ;; *) bad "no $want in $envs" ;; esac
done
# Only the runtime libraries: no compiler, no headers, no package lists.
if podman_cmd run --rm $run_flags --entrypoint sh "$image" -c \
    'test ! -e /usr/bin/gcc && test ! -e /usr/include/jansson.h && test -z "$(ls /var/lib/apt/lists)"' \
    2>"$tmp/err"; then
    ok "no build tools, headers or apt lists in the image"
else
    bad "the runtime stage carries build leftovers: $(cat "$tmp/err")"
fi

# ---- run it: health check, smoke tests ------------------------------------------------------
# A free port below the kernel's ephemeral range, used by no socket.
port=$(
    while :; do
        p=$(($(od -An -N2 -tu2 /dev/urandom) % 10000 + 20000))
        [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && { echo "$p"; break; }
    done
)
url=http://127.0.0.1:$port
podman_cmd run -d --name "$name" $run_flags -e GRADSERVE_HOST=127.0.0.1 -e GRADSERVE_PORT="$port" \
    "$image" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; bad "podman run"; echo "$passed passed, $failed failed"; exit 1; }
start=$(date +%s)
health=starting
i=0
while [ $i -lt 60 ]; do
    podman_cmd healthcheck run "$name" >/dev/null 2>&1 || true
    health=$(podman_cmd inspect --format '{{.State.Health.Status}}' "$name" 2>/dev/null || echo gone)
    [ "$health" = healthy ] && break
    sleep 0.5
    i=$((i + 1))
done
if [ "$health" = healthy ]; then
    ok "the health check reports healthy after $(($(date +%s) - start)) s"
else
    bad "health is '$health' after 30 s"
    podman_cmd logs "$name" >&2 || true
fi
if podman_cmd exec "$name" sh -c 'test "$(id -u)" = 10001'; then
    ok "the server runs as uid 10001"
else
    bad "the server does not run as uid 10001"
fi
echo "== tests/smoke.sh $url"
if sh tests/smoke.sh "$url"; then ok "smoke.sh against the container"; else bad "smoke.sh against the container"; fi

# ---- SIGTERM during a burst --------------------------------------------------------------
# 6 clients, each one curl on one keep-alive connection, send requests of
# 16M normal score terms each (about 0.1 s of work on this machine: 64 rows,
# an eighth of that, let all 480 finish before the signal once the kernels
# got faster) back to back. SIGTERM arrives 2 s in. Every request
# the server had received must come back complete (200); after the signal a
# request on a kept-alive connection is refused with 503 shutting_down, and
# new connections are refused (curl exit 7). Anything else (a reset, an
# empty or cut answer, a timeout) fails the test, as does an exit status
# other than 0.
awk 'BEGIN {
    printf "{\"distribution\": {\"type\": \"normal\", \"loc\": ["
    for (r = 0; r < 512; r++) {
        printf "%s[", r ? ", " : ""
        for (c = 0; c < 16; c++) printf "%s%.2f", c ? ", " : "", 0.1 * c
        printf "]"
    }
    printf "], \"log_scale\": ["
    for (r = 0; r < 512; r++) {
        printf "%s[", r ? ", " : ""
        for (c = 0; c < 16; c++) printf "%s-0.5", c ? ", " : ""
        printf "]"
    }
    printf "]}, \"estimator\": \"score\", \"samples\": 2048, \"seed\": 7}\n"
}' >"$tmp/slow.json"
{
    echo "data-binary = \"@$tmp/slow.json\""
    echo 'header = "Content-Type: application/json"'
    echo 'silent'
    echo 'max-time = 30'
    echo 'write-out = "%{http_code} %{exitcode}\n"'
    n=0
    while [ $n -lt 80 ]; do
        echo "url = \"$url/v1/entropy\""
        echo "output = \"/dev/null\""
        n=$((n + 1))
    done
} >"$tmp/burst.cfg"
pids=""
for c in 1 2 3 4 5 6; do
    curl --config "$tmp/burst.cfg" >"$tmp/client-$c" 2>/dev/null &
    pids="$pids $!"
done
sleep 2
podman_cmd kill --signal TERM "$name" >/dev/null
for p in $pids; do wait "$p" || true; done
status=$(timeout 60 podman --runtime runc --cgroup-manager=cgroupfs wait "$name" 2>/dev/null || echo timeout)
podman_cmd logs "$name" >"$tmp/server.log" 2>&1 || true
cat "$tmp"/client-* >"$tmp/answers"
done200=$(grep -c '^200 0$' "$tmp/answers" || true)
shed=$(grep -c '^503 0$' "$tmp/answers" || true)
refused=$(grep -c '^000 7$' "$tmp/answers" || true)
other=$(grep -v -c -E '^(200 0|503 0|000 7)$' "$tmp/answers" || true)
draining=$(sed -n 's/.*draining \([0-9]*\) request.*/\1/p' "$tmp/server.log" | head -1)
echo "   burst: $done200 complete (200), $shed refused while draining (503), $refused connections refused," \
    "$other other; the server was draining ${draining:-?} in-flight request(s) at SIGTERM"
if [ "$other" -eq 0 ] && [ "$done200" -gt 0 ]; then
    ok "SIGTERM under load: every request the server received completed"
else
    bad "SIGTERM under load: $other answers were neither complete nor cleanly refused: $(grep -v -E '^(200 0|503 0|000 7)$' "$tmp/answers" | sort | uniq -c | tr '\n' ' ')"
fi
if [ "${draining:-0}" -gt 0 ] && ! grep -q 'cut short' "$tmp/server.log"; then
    ok "the drain let ${draining} in-flight request(s) finish"
else
    bad "no in-flight request at SIGTERM, or some were cut short: $(grep -E 'draining|cut short' "$tmp/server.log" | tr '\n' ' ')"
fi
if [ "$status" = 0 ]; then
    ok "the container exited 0 after SIGTERM"
else
    bad "the container's exit status is $status"
    tail -20 "$tmp/server.log" >&2
fi
podman_cmd rm -f -t 0 "$name" >/dev/null 2>&1 || true

# ---- scale-out behind nginx ---------------------------------------------------------------
echo "== the load balancer image (docker/nginx/Dockerfile)"
lb_start=$(date +%s)
if podman build --pull=never --network=host --isolation=chroot --format docker --layers=false \
    -q -t "$lb_image" -f docker/nginx/Dockerfile . >"$tmp/lb-build.log" 2>&1; then
    lb_built=1
    ok "built $lb_image in $(($(date +%s) - lb_start)) s: $(podman image inspect --format '{{.Size}}' "$lb_image" |
        awk '{ printf "%.1f MB", $1 / 1e6 }')"
else
    lb_built=1
    cat "$tmp/lb-build.log" >&2
    bad "building docker/nginx/Dockerfile"
fi
echo "== tests/scale-test.sh containers $image $lb_image"
if sh tests/scale-test.sh containers "$image" "$lb_image"; then
    ok "scale-out: 3 replicas behind nginx, one SIGKILLed under load"
else
    bad "scale-out (tests/scale-test.sh)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
