#!/usr/bin/env bash
# Run every molecule scenario (molecule/<name>/molecule.yml) with the podman
# driver, one after the other, and print the time each took.
#
# Called by `make molecule` after `make install`, from the repository root.
# Environment:
#   VENV                 the virtualenv (default: ./.venv)
#   COLLECTIONS          where `make install` put crdb.tls (default: ./build/collections)
#   CRDB_TLS_TEST_IMAGE  image for the scenarios (default localhost/crdb-tls-debian:bookworm-3);
#                        scenarios read it as ${CRDB_TLS_TEST_IMAGE}.
set -euo pipefail

cd "$(dirname "$0")/../.."
VENV="${VENV:-$PWD/.venv}"
COLLECTIONS="${COLLECTIONS:-$PWD/build/collections}"
export CRDB_TLS_TEST_IMAGE="${CRDB_TLS_TEST_IMAGE:-localhost/crdb-tls-debian:bookworm-3}"

log() { printf '[run-molecule] %s\n' "$*"; }

scenarios=()
for f in molecule/*/molecule.yml; do
    [ -f "$f" ] || continue
    scenarios+=("$(basename "$(dirname "$f")")")
done
if [ "${#scenarios[@]}" -eq 0 ]; then
    log "no molecule scenarios under molecule/ yet, nothing to run"
    exit 0
fi

bash tests/scripts/prepare-podman.sh

# Molecule 25+ no longer sets ANSIBLE_COLLECTIONS_PATH: crdb.tls comes from
# the installed tarball, containers.podman from the venv's `ansible` package.
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS:$site"
export PATH="$VENV/bin:$PATH"
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-false}"

rc=0
results=()
for s in "${scenarios[@]}"; do
    log "scenario $s"
    start=$SECONDS
    if molecule test -s "$s"; then
        results+=("$(printf '%-24s ok     %4d s' "$s" $((SECONDS - start)))")
    else
        rc=1
        results+=("$(printf '%-24s FAILED %4d s' "$s" $((SECONDS - start)))")
    fi
done

log "summary:"
printf '  %s\n' "${results[@]}"
exit "$rc"
