#!/usr/bin/env bash
# Make podman usable for the molecule scenarios on a Debian 12 machine with no
# container registry (see docs: tests/scripts/README or the Makefile).
#
#  1. apt-get install podman runc debootstrap (only the missing ones).
#  2. /etc/containers/containers.conf: runc runtime (crun fails with "cgroups in
#     hybrid mode not supported") and no default ulimits ("setrlimit ...
#     Operation not permitted"). Written only if its content differs.
#  3. The test image: built from Debian packages with debootstrap and imported
#     with `podman import`, only if `podman image exists` says it is missing.
#  4. Check: python3 and cryptography import inside a container of the image.
#
# Idempotent; safe to run as often as you like. Must run as root.
#
# Environment:
#   CRDB_TLS_TEST_IMAGE    image the scenarios use
#                          (default localhost/crdb-tls-debian:bookworm-2). A
#                          localhost/ name is built offline with debootstrap;
#                          any other name (e.g. docker.io/library/debian:bookworm
#                          on a machine with a registry) is pulled instead.
#   CRDB_TLS_DEBIAN_MIRROR Debian mirror for debootstrap (default: the first
#                          non-security mirror in apt's sources).
#   CRDB_TLS_DEBIAN_SUITE  Debian suite (default: bookworm).
set -euo pipefail

IMAGE="${CRDB_TLS_TEST_IMAGE:-localhost/crdb-tls-debian:bookworm-2}"
SUITE="${CRDB_TLS_DEBIAN_SUITE:-bookworm}"
# python3 + python3-cryptography: Ansible modules and the collection's engine;
# procps (kill/ps: SIGHUP reloads, testinfra process checks), sudo and acl
# (become to an unprivileged user needs setfacl), openssl (verification with
# the openssl CLI), iproute2 (testinfra socket/interface checks),
# ca-certificates. python3-cffi-backend is named because debootstrap does not
# resolve the virtual python3-cffi-backend-api-* packages python3-cryptography
# depends on.
INCLUDE="python3,python-is-python3,python3-cryptography,python3-cffi-backend,procps,sudo,acl,openssl,iproute2,ca-certificates"

log() { printf '[prepare-podman] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# --- 1. packages -------------------------------------------------------------
missing=()
for pkg in podman runc debootstrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
else
    log "podman, runc and debootstrap already installed"
fi

# --- 2. containers.conf ------------------------------------------------------
conf=/etc/containers/containers.conf
wanted='[containers]
default_ulimits = []

[engine]
runtime = "runc"'
if [ -f "$conf" ] && [ "$(cat "$conf")" = "$wanted" ]; then
    log "$conf already as wanted"
else
    if [ -f "$conf" ]; then
        cp -p "$conf" "$conf.crdb-tls.bak"
        log "saved the previous $conf as $conf.crdb-tls.bak"
    fi
    mkdir -p /etc/containers
    printf '%s\n' "$wanted" >"$conf"
    log "wrote $conf"
fi

# --- 3. image ------------------------------------------------------------------
debian_mirror() {
    if [ -n "${CRDB_TLS_DEBIAN_MIRROR:-}" ]; then
        echo "$CRDB_TLS_DEBIAN_MIRROR"
        return
    fi
    local uri
    # deb822 sources: the first URIs value that is not a security mirror.
    uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' \
        | grep -v -e security -e '^cdrom:' | head -n1 || true)"
    if [ -z "$uri" ]; then
        # one-line sources: "deb [options] URI suite components..."
        uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -e 's/#.*//' -e 's/\[[^]]*\]//' \
            | awk '$1 == "deb" { print $2 }' \
            | grep -v -e security -e '^cdrom:' | head -n1 || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

if podman image exists "$IMAGE"; then
    log "image $IMAGE already exists"
elif [[ "$IMAGE" == localhost/* ]]; then
    mirror="$(debian_mirror)"
    rootfs="$(mktemp -d /var/tmp/crdb-tls-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    log "building $IMAGE: debootstrap $SUITE from $mirror"
    start=$SECONDS
    debootstrap --variant=minbase --include="$INCLUDE" \
        "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -n 20 "$rootfs.log" >&2
        if [ -f "$rootfs/debootstrap/debootstrap.log" ]; then
            log "end of debootstrap.log:" >&2
            tail -n 40 "$rootfs/debootstrap/debootstrap.log" >&2
        fi
        exit 1
    }
    # Smaller image; apt lists and caches are not needed inside.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    log "debootstrap took $((SECONDS - start)) s; importing"
    start=$SECONDS
    tar -C "$rootfs" -c . | podman import --quiet \
        --change 'CMD ["sleep", "infinity"]' - "$IMAGE" >/dev/null
    log "podman import took $((SECONDS - start)) s"
    rm -rf "$rootfs" "$rootfs.log"
    trap - EXIT
else
    log "pulling $IMAGE"
    podman pull "$IMAGE"
fi

# --- 4. check --------------------------------------------------------------------
if podman run --rm "$IMAGE" python3 -c 'import cryptography; print(cryptography.__version__)' \
    >/tmp/crdb-tls-image-check.$$ 2>&1; then
    log "image $IMAGE works: python3 with cryptography $(cat /tmp/crdb-tls-image-check.$$)"
    rm -f /tmp/crdb-tls-image-check.$$
else
    cat /tmp/crdb-tls-image-check.$$ >&2
    rm -f /tmp/crdb-tls-image-check.$$
    if [[ "$IMAGE" == localhost/* ]]; then
        log "image $IMAGE cannot run python3 -c 'import cryptography'" >&2
        exit 1
    fi
    # A stock image (debian:bookworm) has no python3: the scenarios' prepare
    # step must install python3 and python3-cryptography.
    log "WARNING: $IMAGE has no python3 with cryptography; scenarios must install it"
fi
