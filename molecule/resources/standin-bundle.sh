#!/usr/bin/env bash
# Build the stand-in `cockroach` (a TEST FIXTURE, not CockroachDB: tests/go,
# Go's crypto/tls, static) with tests/go/build.sh and print the path of the
# binary, which prepare.yml copies to the nodes as /usr/local/bin/cockroach.
# go build is incremental: a rebuild with nothing changed takes a moment.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$repo/tests/go/build.sh" "$repo/build/go/bin" >&2
test -x "$repo/build/go/bin/cockroach"
printf '%s\n' "$repo/build/go/bin/cockroach"
