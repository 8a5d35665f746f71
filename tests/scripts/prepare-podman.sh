#!/usr/bin/env bash
# Make podman usable for the molecule scenarios on a Debian 12 machine with no
# container registry (see docs: tests/scripts/README or the Makefile).
#
#  1. apt-get install podman runc debootstrap dpkg-dev (only the missing ones;
#     dpkg-dev's dpkg-scanpackages indexes the local package repository of 3.).
#  2. /etc/containers/containers.conf: runc runtime (crun fails with "cgroups in
#     hybrid mode not supported") and no default ulimits ("setrlimit ...
#     Operation not permitted"). Written only if its content differs.
#  3. The test image: built from Debian packages with debootstrap and imported
#     with `podman import`, only if `podman image exists` says it is missing.
#     Like the hosts the roles promise to serve, it has python3 but not
#     python3-cryptography. Beside it, a local package repository
#     ($CRDB_TLS_DEB_DIR: python3-cryptography and what it needs that the
#     image lacks, with its Packages index) for the scenarios that need the
#     package on their hosts: the containers have no network, so their
#     prepare step copies it in and points apt at it (molecule/resources/
#     local-apt.yml), and the role installs the package from there as it would
#     from a mirror.
#  4. Check: python3 runs and cryptography does NOT import inside a container
#     of the image; the repository holds python3-cryptography.
#  5. The minimal SSH image of the ssh scenario (molecule/ssh): python3,
#     openssh-server and sudo only, and what they pull in (no
#     python3-cryptography, no openssl), sshd as its command, a login user `deploy` with passwordless
#     sudo whose authorized key is $CRDB_TLS_SSH_KEY (made here, kept on this
#     machine). Built only if missing (or if the key is missing).
#
# Idempotent; safe to run as often as you like. Must run as root.
#
# Environment:
#   CRDB_TLS_TEST_IMAGE    image the scenarios use
#                          (default localhost/crdb-tls-debian:bookworm-3). A
#                          localhost/ name is built offline with debootstrap;
#                          any other name (e.g. docker.io/library/debian:bookworm
#                          on a machine with a registry) is pulled instead.
#   CRDB_TLS_SSH_IMAGE     the ssh scenario's image
#                          (default localhost/crdb-tls-debian-ssh:bookworm-1);
#                          any other name is pulled and must already carry
#                          sshd, sudo and the deploy user with that key.
#   CRDB_TLS_DEB_DIR       the local package repository made with the image
#                          (default /var/lib/crdb-tls-test/debs/<image tag>).
#   CRDB_TLS_SSH_KEY       private key of the deploy user
#                          (default /var/lib/crdb-tls-test/ssh/id_ed25519).
#   CRDB_TLS_DEBIAN_MIRROR Debian mirror for debootstrap (default: the first
#                          non-security mirror in apt's sources).
#   CRDB_TLS_DEBIAN_SUITE  Debian suite (default: bookworm).
set -euo pipefail

IMAGE="${CRDB_TLS_TEST_IMAGE:-localhost/crdb-tls-debian:bookworm-3}"
DEB_DIR="${CRDB_TLS_DEB_DIR:-/var/lib/crdb-tls-test/debs/${IMAGE##*:}}"
# What the local repository offers (with what it needs that the image lacks):
# python3-cryptography, and python3-apt, which Ansible's apt module needs.
DEB_PACKAGES="python3-cryptography python3-apt"
SSH_IMAGE="${CRDB_TLS_SSH_IMAGE:-localhost/crdb-tls-debian-ssh:bookworm-1}"
SSH_KEY="${CRDB_TLS_SSH_KEY:-/var/lib/crdb-tls-test/ssh/id_ed25519}"
# The minimal host: what a fresh Debian server has, Python 3 for Ansible, sshd
# and sudo to be reached the way real hosts are.
SSH_INCLUDE="python3,openssh-server,sudo"
SUITE="${CRDB_TLS_DEBIAN_SUITE:-bookworm}"
# python3: Ansible modules (no python3-cryptography: see 3.); procps (kill/ps:
# SIGHUP reloads, testinfra process checks), sudo and acl (become to an
# unprivileged user needs setfacl), openssl (the verifiers' openssl CLI checks
# and the OCSP responder role's service), iproute2 (testinfra socket/interface
# checks), ca-certificates.
INCLUDE="python3,python-is-python3,procps,sudo,acl,openssl,iproute2,ca-certificates"

log() { printf '[prepare-podman] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# --- 1. packages -------------------------------------------------------------
missing=()
for pkg in podman runc debootstrap dpkg-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
else
    log "podman, runc, debootstrap and dpkg-dev already installed"
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

# debootstrap ROOTFS with the packages $1 (comma-separated); logs on failure.
# $3: a function run with ROOTFS before apt's lists and caches are removed.
bootstrap() {
    local include="$1" rootfs="$2" then="${3:-}" mirror start
    mirror="$(debian_mirror)"
    log "debootstrap $SUITE ($include) from $mirror"
    start=$SECONDS
    debootstrap --variant=minbase --include="$include" \
        "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -n 20 "$rootfs.log" >&2
        if [ -f "$rootfs/debootstrap/debootstrap.log" ]; then
            log "end of debootstrap.log:" >&2
            tail -n 40 "$rootfs/debootstrap/debootstrap.log" >&2
        fi
        return 1
    }
    if [ -n "$then" ]; then
        "$then" "$rootfs"
    fi
    # Smaller image; apt lists and caches are not needed inside.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs.log"
    log "debootstrap took $((SECONDS - start)) s"
}

# podman import ROOTFS as IMAGE with the command $3 (JSON array).
import_rootfs() {
    local rootfs="$1" image="$2" cmd="$3" start=$SECONDS
    tar -C "$rootfs" -c . | podman import --quiet --change "CMD $cmd" - "$image" >/dev/null
    log "podman import of $image took $((SECONDS - start)) s"
}

# --- 5. the minimal SSH image ------------------------------------------------------
# Built in the background while step 3 builds the other image (both are
# mostly downloads); step 6 waits for it.
ssh_image() {
    if [ ! -f "$SSH_KEY" ] && [[ "$SSH_IMAGE" == localhost/* ]] && podman image exists "$SSH_IMAGE"; then
        log "$SSH_KEY is missing: building $SSH_IMAGE again for a new key"
        podman rmi -f "$SSH_IMAGE" >/dev/null
    fi
    if [ ! -f "$SSH_KEY" ]; then
        install -d -m 0700 "$(dirname "$SSH_KEY")"
        ssh-keygen -q -t ed25519 -N '' -C crdb-tls-molecule-deploy -f "$SSH_KEY"
        log "made the deploy user's key $SSH_KEY"
    fi
    if podman image exists "$SSH_IMAGE"; then
        log "image $SSH_IMAGE already exists"
    elif [[ "$SSH_IMAGE" == localhost/* ]]; then
        local rootfs
        rootfs="$(mktemp -d /var/tmp/crdb-tls-rootfs.XXXXXX)"
        trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
        log "building $SSH_IMAGE"
        bootstrap "$SSH_INCLUDE" "$rootfs"
        chroot "$rootfs" ssh-keygen -A >/dev/null
        install -d -m 0755 "$rootfs/run/sshd"
        chroot "$rootfs" useradd --create-home --shell /bin/bash deploy
        install -d -m 0700 "$rootfs/home/deploy/.ssh"
        install -m 0600 "$SSH_KEY.pub" "$rootfs/home/deploy/.ssh/authorized_keys"
        chroot "$rootfs" chown -R deploy:deploy /home/deploy/.ssh
        printf 'deploy ALL=(ALL) NOPASSWD: ALL\n' >"$rootfs/etc/sudoers.d/deploy"
        chmod 0440 "$rootfs/etc/sudoers.d/deploy"
        import_rootfs "$rootfs" "$SSH_IMAGE" '["/usr/sbin/sshd", "-D", "-e"]'
        rm -rf "$rootfs"
        trap - EXIT
    else
        log "pulling $SSH_IMAGE"
        podman pull "$SSH_IMAGE"
    fi
    if podman run --rm "$SSH_IMAGE" python3 -c 'import cryptography' >/dev/null 2>&1; then
        log "image $SSH_IMAGE has python3-cryptography: the ssh scenario wants a host without it" >&2
        exit 1
    fi
    podman run --rm "$SSH_IMAGE" sh -c 'python3 -V && /usr/sbin/sshd -t && sudo -V | head -n1' \
        | while read -r line; do log "image $SSH_IMAGE: $line"; done
}

ssh_log="$(mktemp /tmp/crdb-tls-ssh-image.XXXXXX)"
ssh_image >"$ssh_log" 2>&1 &
ssh_pid=$!

# The packages of $DEB_PACKAGES that ROOTFS lacks, downloaded by its own apt
# (so versions and dependencies are those of the image), as a flat repository
# in $DEB_DIR with its Packages index. Called through bootstrap's $3.
# shellcheck disable=SC2317
local_repository() {
    local rootfs="$1" start=$SECONDS tmp="$DEB_DIR.new"
    chroot "$rootfs" apt-get update -qq </dev/null
    # debootstrap leaves what it installed in apt's cache: only what apt fetches now goes in the repository.
    rm -f "$rootfs"/var/cache/apt/archives/*.deb
    # shellcheck disable=SC2086  # a list of package names
    chroot "$rootfs" apt-get install -qq -y --no-install-recommends --download-only $DEB_PACKAGES </dev/null
    # Built beside it, then swapped in; what a failed build left there is removed first.
    rm -rf "$tmp"
    install -d -m 0755 "$tmp"
    cp "$rootfs"/var/cache/apt/archives/*.deb "$tmp/"
    (cd "$tmp" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null >Packages)
    rm -rf "$DEB_DIR"
    mv "$tmp" "$DEB_DIR"
    log "local repository $DEB_DIR: $(cd "$DEB_DIR" && printf '%s ' ./*.deb)($((SECONDS - start)) s)"
}

if [[ "$IMAGE" == localhost/* ]] && podman image exists "$IMAGE" && [ ! -f "$DEB_DIR/Packages" ]; then
    log "$DEB_DIR is missing: building $IMAGE again with it"
    podman rmi -f "$IMAGE" >/dev/null
fi
if podman image exists "$IMAGE"; then
    log "image $IMAGE already exists"
elif [[ "$IMAGE" == localhost/* ]]; then
    install -d -m 0755 "$(dirname "$DEB_DIR")"
    rootfs="$(mktemp -d /var/tmp/crdb-tls-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    log "building $IMAGE"
    bootstrap "$INCLUDE" "$rootfs" local_repository
    import_rootfs "$rootfs" "$IMAGE" '["sleep", "infinity"]'
    rm -rf "$rootfs"
    trap - EXIT
else
    log "pulling $IMAGE"
    podman pull "$IMAGE"
fi

# --- 4. check --------------------------------------------------------------------
if ! python_version="$(podman run --rm "$IMAGE" python3 -V 2>&1)"; then
    if [[ "$IMAGE" == localhost/* ]]; then
        log "image $IMAGE cannot run python3" >&2
        exit 1
    fi
    # A stock image (debian:bookworm) has no python3: the scenarios' prepare
    # step must install it.
    log "WARNING: $IMAGE has no python3; scenarios must install it"
elif podman run --rm "$IMAGE" python3 -c 'import cryptography' >/dev/null 2>&1; then
    log "image $IMAGE has python3-cryptography: the scenarios want hosts without it (see 3.)" >&2
    exit 1
else
    log "image $IMAGE works: $python_version, no cryptography"
fi
if [[ "$IMAGE" == localhost/* ]] && ! grep -q '^Package: python3-cryptography$' "$DEB_DIR/Packages"; then
    log "$DEB_DIR/Packages does not offer python3-cryptography" >&2
    exit 1
fi


# --- 6. the SSH image's build ----------------------------------------------------
ssh_rc=0
wait "$ssh_pid" || ssh_rc=$?
cat "$ssh_log"
rm -f "$ssh_log"
exit "$ssh_rc"
