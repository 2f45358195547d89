#!/bin/sh
# tests/openapi-lint.sh - validates api/openapi.yaml with Redocly CLI (`redocly lint`), installed from npm into a cache outside the repo when missing.
#
# Usage: tests/openapi-lint.sh [spec]        (default: api/openapi.yaml)
#
# The validator is @redocly/cli at a pinned version, installed with npm under
# $GRADSERVE_NPM_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/gradserve-npm).
# Without node or npm, it installs Debian's nodejs and npm with apt-get when
# run as root, else prints the command to run. The lint uses Redocly's
# recommended-strict rules (every warning is an error), which check the
# document's structure, every $ref, and every example against its schema.
#
# Exits non-zero when the spec is invalid (or the validator cannot be set
# up); the last line is "N passed, M failed".
set -u

REDOCLY_VERSION=2.77.0 # officially node >= 20.19; also checked on Debian 12's node 18.20

here=$(cd "$(dirname "$0")" && pwd)
spec=${1:-$(dirname "$here")/api/openapi.yaml}
cache=${GRADSERVE_NPM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/gradserve-npm}
passed=0
failed=0

summary() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}

say() { echo "openapi-lint: $*" >&2; }

if [ ! -r "$spec" ]; then
    say "cannot read $spec"
    failed=1
    summary
fi

# ---- node and npm ----------------------------------------------------------------
missing=""
command -v node >/dev/null 2>&1 || missing="nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing$missing with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >&2; then
            say "apt-get could not install$missing"
            failed=1
            summary
        fi
    else
        say "needs node and npm; install them with: sudo apt-get install -y nodejs npm"
        failed=1
        summary
    fi
fi

# ---- the validator, in the cache ------------------------------------------------------
mkdir -p "$cache" || { failed=1; summary; }
if command -v flock >/dev/null 2>&1; then # one install at a time
    exec 9>"$cache/.lock" && flock 9
fi
pkg=$cache/node_modules/@redocly/cli
have=$(node -p 'require(process.argv[1]).version' "$pkg/package.json" 2>/dev/null || true)
if [ "$have" != "$REDOCLY_VERSION" ]; then
    say "installing @redocly/cli@$REDOCLY_VERSION into $cache"
    if ! npm install --prefix "$cache" --cache "$cache/npm-cache" --no-audit --no-fund \
        --loglevel=error "@redocly/cli@$REDOCLY_VERSION" >&2; then
        say "npm could not install @redocly/cli@$REDOCLY_VERSION"
        failed=1
        summary
    fi
fi

# ---- lint -------------------------------------------------------------------------------
tmp=$(mktemp -d) || { failed=1; summary; }
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/redocly.yaml" <<'EOF'
extends:
  - recommended-strict
rules:
  # The project has not chosen a license yet.
  info-license: off
  # False positive: for a schema reached through another schema's oneOf
  # (Distribution -> Normal), this rule looks for the properties named by
  # `required` in the outermost schema rather than the one that declares them,
  # so it flags the "exactly one of log_scale or scale" branches.
  no-required-schema-properties-undefined: off
  # Also check `example` values inside schemas.
  no-invalid-schema-examples: error
EOF
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_NOTIFICATIONS=true REDOCLY_SUPPRESS_UPDATE_NOTICE=true
if node "$pkg/bin/cli.js" lint --config "$tmp/redocly.yaml" --lint-config error "$spec"; then
    passed=$((passed + 1))
else
    say "$spec is not a valid OpenAPI document (see above)"
    failed=$((failed + 1))
fi
summary
