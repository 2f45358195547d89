#!/bin/bash
# docker/healthcheck.sh - the image's HEALTHCHECK: GET /healthz on the container's own port with bash's /dev/tcp, so the image needs no HTTP client.
# Exits 0 when the server answers 200 within 2 s, 1 otherwise.
port=${GRADSERVE_PORT:-8080}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
auth=
[ -n "${GRADSERVE_TOKEN:-}" ] && auth="Authorization: Bearer $GRADSERVE_TOKEN"$'\r\n'
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n' "$auth" >&3
IFS= read -r -t 2 status <&3 || exit 1
case $status in
"HTTP/1."?" 200 "*) exit 0 ;;
*) echo "healthz: ${status%$'\r'}" >&2; exit 1 ;;
esac
