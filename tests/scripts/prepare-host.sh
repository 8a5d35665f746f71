#!/usr/bin/env bash
# Install what the tests need on the controller (Debian 12, as root).
# Idempotent: apt runs only for packages dpkg does not report as installed.
#
#   make, git, tar          the Makefile (sanity copies the tree with git + tar)
#   the shellcheck tool     for the sanity test of that name (skipped when missing)
#   python3.11 + venv       only if no python3.11 able to build a venv is on PATH
#   openssl                 the tests cross-check certificates with the CLI
#   postgresql (+client)    tests/peers start their own throwaway cluster with
#                           initdb as the postgres user; the system service is
#                           NOT started (and not enabled by this script).
#   podman, runc,           molecule, through prepare-podman.sh (which also
#   debootstrap             builds the test image)
#   golang-go               Go 1.19 (Debian 12) builds the test-only Go peer and
#                           stand-in `cockroach` in tests/go (stdlib only)
set -euo pipefail

log() { printf '[prepare-host] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

wanted=(make git tar openssl shellcheck postgresql postgresql-client podman runc debootstrap golang-go)
if ! python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    wanted+=(python3.11 python3.11-venv)
fi

missing=()
for pkg in "${wanted[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    # Keep maintainer scripts from starting services (postgresql's cluster):
    # a policy-rc.d that denies every start, only for this install, and only
    # if the machine has none of its own.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
    if [ "$own_policy" -eq 1 ]; then
        rm -f "$policy"
        trap - EXIT
    fi
else
    log "all of ${wanted[*]} already installed"
fi

# initdb and pg_ctl live outside PATH on Debian; the peer tests look there.
ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null

bash "$(dirname "$0")/prepare-podman.sh"
