#!/bin/sh
# tests/k8s-validate.sh - validates the Kubernetes manifests in docker/k8s/ (schemas, unknown fields, shared numbers) with kubernetes-models from npm, installed into a cache outside the repo when missing.
#
# Usage: tests/k8s-validate.sh        (make test runs it)
#
# kubernetes-models (the Kubernetes API's OpenAPI schemas compiled into
# validators) and js-yaml, at pinned versions, go under
# $GRADSERVE_NPM_CACHE/k8s (default ${XDG_CACHE_HOME:-$HOME/.cache}/gradserve-npm/k8s),
# the cache tests/openapi-lint.sh uses. Without node or npm, it installs
# Debian's with apt-get when run as root, else prints the command to run.
# tests/k8s-validate.mjs does the checks. Exits non-zero when a manifest is
# invalid or the validator cannot be set up; the last line is "N passed, M failed".
set -u

KUBERNETES_MODELS_VERSION=5.1.0 # schemas of the Kubernetes 1.3x API; runs on node 18 and later
JS_YAML_VERSION=4.1.0

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${GRADSERVE_NPM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/gradserve-npm}/k8s

say() { echo "k8s-validate: $*" >&2; }
fail() {
    say "$*"
    echo "0 passed, 1 failed"
    exit 1
}

# ---- node and npm ----------------------------------------------------------------
missing=""
command -v node >/dev/null 2>&1 || missing="nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing$missing with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >&2 ||
            fail "apt-get could not install$missing"
    else
        fail "needs node and npm; install them with: sudo apt-get install -y nodejs npm"
    fi
fi

# ---- the validator, in the cache ------------------------------------------------------
mkdir -p "$cache" || fail "cannot make $cache"
if command -v flock >/dev/null 2>&1; then # one install at a time
    exec 9>"$cache/.lock" && flock 9
fi
version() { node -p 'require(process.argv[1]).version' "$cache/node_modules/$1/package.json" 2>/dev/null; }
if [ "$(version kubernetes-models)" != "$KUBERNETES_MODELS_VERSION" ] ||
    [ "$(version js-yaml)" != "$JS_YAML_VERSION" ]; then
    say "installing kubernetes-models@$KUBERNETES_MODELS_VERSION js-yaml@$JS_YAML_VERSION into $cache"
    # --engine-strict=false: the package asks for node 22, but the compiled
    # validators are plain ES2022 and run on Debian 12's node 18.
    npm install --prefix "$cache" --cache "$cache/npm-cache" --no-audit --no-fund \
        --loglevel=error --engine-strict=false \
        "kubernetes-models@$KUBERNETES_MODELS_VERSION" "js-yaml@$JS_YAML_VERSION" >&2 ||
        fail "npm could not install kubernetes-models@$KUBERNETES_MODELS_VERSION"
fi

exec node "$here/k8s-validate.mjs" "$cache/node_modules" "$repo"
