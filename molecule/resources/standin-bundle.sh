#!/usr/bin/env bash
# Print, base64-encoded, a tar.gz of the stand-in `cockroach` (a TEST FIXTURE,
# tests/fixtures/standin, not CockroachDB) laid out as the nodes get it:
#   usr/local/bin/cockroach                                             0755
#   opt/crdb-standin/ansible_collections/crdb/tls/plugins/module_utils/
#       rules.py, errors.py (the collection's own rules)                 0644
# prepare.yml unpacks it with one `raw` command per node: with the podman
# connection every module task costs several `podman exec` calls.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
utils="$stage/opt/crdb-standin/ansible_collections/crdb/tls/plugins/module_utils"
install -D -m 0755 "$repo/tests/fixtures/standin/cockroach" "$stage/usr/local/bin/cockroach"
install -D -m 0644 "$repo/plugins/module_utils/rules.py" "$utils/rules.py"
install -D -m 0644 "$repo/plugins/module_utils/errors.py" "$utils/errors.py"
find "$stage" -type d -exec chmod 0755 {} +
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf - usr opt | base64 -w0
