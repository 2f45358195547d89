#!/bin/sh
# docker/podman-build.sh - builds docker/Dockerfile with podman on a machine that reaches no container registry (see ../shared/CONTAINERS.md): installs podman, makes the debian:bookworm-slim base locally when missing.
#
# Usage: docker/podman-build.sh [TAG]     (default gradserve:latest; `make image` runs it)
#
# Environment:
#   GRADSERVE_IMAGE_TESTS  all (default) or offline: the Dockerfile's TESTS argument
#   GRADSERVE_IMAGE_CACHE  1 keeps podman's layer cache between builds (faster
#                          rebuilds, but the build stage stays in storage); the
#                          default builds without it and leaves only TAG behind
#
# The base: no registry is reachable here, so debian:bookworm-slim is made with
# debootstrap (minbase) and slimmed as Debian's own slim images are (no docs,
# man pages, locales or apt lists; the same dpkg path excludes), then imported.
# The podman flags below (chroot isolation, host network) are for these
# machines only: docker/Dockerfile itself is a plain Dockerfile.
set -eu
cd "$(dirname "$0")/.."
tag=${1:-gradserve:latest}
base=docker.io/library/debian:bookworm-slim
say() { echo "podman-build: $*" >&2; }

# ---- tools ------------------------------------------------------------------------------
missing=""
for pair in podman:podman buildah:buildah debootstrap:debootstrap runc:runc newuidmap:uidmap; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "missing:$missing; install them with: sudo apt-get install -y$missing"
        exit 1
    fi
    say "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >&2
fi

# ---- the base image -----------------------------------------------------------------------
if ! podman image exists "$base"; then
    [ "$(id -u)" -eq 0 ] || { say "making the base image needs root (debootstrap)"; exit 1; }
    rootfs=$(mktemp -d /tmp/gradserve-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    say "making $base with debootstrap (about 30 s)"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    # What Debian's slim images do: dpkg leaves docs, man pages and locales
    # out of every later install, apt keeps no lists or archives.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    echo 'APT::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
    # The suites Debian's image lists: the release, its updates and security.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs/usr/share/man/"* "$rootfs/usr/share/groff/"* "$rootfs/usr/share/info/"* \
        "$rootfs/usr/share/lintian/"* "$rootfs/usr/share/linda/"* "$rootfs/usr/share/locale/"* \
        "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin \
        "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/log/"*.log "$rootfs/var/log/apt/"*
    tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - docker.io/library/debian:bookworm >/dev/null
    podman tag docker.io/library/debian:bookworm "$base"
    rm -rf "$rootfs"
    trap - EXIT
    say "made $base ($(podman image inspect --format '{{.Size}}' "$base" | awk '{printf "%.0f MB", $1 / 1e6}'))"
fi

# ---- the image ----------------------------------------------------------------------------
# --format docker: the OCI format has no HEALTHCHECK. --pull=never: the base is
# local. --network=host: apt and npm inside RUN. --isolation=chroot: the
# default runtime fails on these machines.
layers=--layers=false
[ "${GRADSERVE_IMAGE_CACHE:-0}" = 1 ] && layers=--layers=true
# The host's CA bundle goes to npm in the build stage as a build secret (it
# never lands in a layer): these machines reach the npm registry through a
# TLS-intercepting proxy whose CA only the host's bundle has.
ca=
for f in "${NODE_EXTRA_CA_CERTS:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$f" ] && [ -s "$f" ]; then ca=$f; break; fi
done
say "building $tag from docker/Dockerfile"
start=$(date +%s)
podman build --pull=never --network=host --isolation=chroot --format docker $layers \
    ${ca:+--secret "id=npm_ca,src=$ca"} \
    --build-arg GIT_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --build-arg TESTS="${GRADSERVE_IMAGE_TESTS:-all}" -t "$tag" -f docker/Dockerfile .
secs=$(($(date +%s) - start))
size=$(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1 / 1e6}')
say "built $tag in ${secs} s: $size"
