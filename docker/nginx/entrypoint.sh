#!/bin/sh
# docker/nginx/entrypoint.sh - writes the load balancer's nginx configuration from docker/nginx/nginx.conf and the environment, then runs nginx in the foreground.
#
# Environment:
#   GRADSERVE_UPSTREAMS  the replicas, host:port separated by spaces (default
#                        gradserve:8080: with compose, a service name that
#                        resolves to every replica when nginx starts)
#   LB_LISTEN            address:port or port to listen on (default 8080)
#   LB_WORKERS           nginx worker processes (default auto: one per CPU)
#   LB_MAX_FAILS, LB_FAIL_TIMEOUT  passive health: failures that take a
#                        replica out of rotation, and for how long (3, 5s)
#   LB_TEMPLATE, LB_CONF the template (default /etc/nginx/gradserve.conf.template)
#                        and the file written (default /tmp/gradserve-lb.conf)
set -eu
upstreams=${GRADSERVE_UPSTREAMS:-gradserve:8080}
listen=${LB_LISTEN:-8080}
workers=${LB_WORKERS:-auto}
template=${LB_TEMPLATE:-/etc/nginx/gradserve.conf.template}
conf=${LB_CONF:-/tmp/gradserve-lb.conf}
tag=${LB_TAG:-$$}

servers=$(mktemp)
trap 'rm -f "$servers"' EXIT
for u in $upstreams; do
    echo "        server $u max_fails=${LB_MAX_FAILS:-3} fail_timeout=${LB_FAIL_TIMEOUT:-5s};" >>"$servers"
done
[ -s "$servers" ] || { echo "gradserve-lb: GRADSERVE_UPSTREAMS is empty" >&2; exit 2; }
sed -e "s|@LISTEN@|$listen|" -e "s|@WORKERS@|$workers|" -e "s|@PID_TAG@|$tag|g" \
    -e "/^[[:space:]]*@UPSTREAMS@$/{r $servers" -e "d}" "$template" >"$conf"
rm -f "$servers"
trap - EXIT
nginx -t -q -e stderr -c "$conf"
echo "gradserve-lb: listening on $listen, upstreams: $upstreams" >&2
exec nginx -e stderr -c "$conf" -g 'daemon off;'
