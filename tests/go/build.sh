#!/usr/bin/env bash
# Build the test-only Go programs of tests/go (standard library only):
#   crdb-peer   the Go peer: `crdb-peer verdict --certs-dir D ...` (README.md)
#   cockroach   the stand-in `cockroach` (tests/fixtures/standin/README.md)
# into OUT (default: <repo>/build/go/bin), statically (CGO_ENABLED=0), with
# Go's caches under <repo>/build/go and no module proxy (GOPROXY=off).
# Needs Debian's golang-go (Go 1.19; tests/scripts/prepare-host.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/build/go/bin}"
work="$repo/build/go"
command -v go >/dev/null || { echo "build.sh: no go on PATH (apt-get install golang-go)" >&2; exit 1; }
mkdir -p "$out" "$work/cache" "$work/path"
export GOCACHE="$work/cache" GOPATH="$work/path" GOPROXY=off GOFLAGS=-mod=mod CGO_ENABLED=0 GO111MODULE=on
cd "$here"
built=()
for dir in cmd/*/; do
    cmd="$(basename "$dir")"
    ls "$dir"*.go >/dev/null 2>&1 || continue
    go build -trimpath -o "$out/$cmd.tmp.$$" "./cmd/$cmd"
    mv -f "$out/$cmd.tmp.$$" "$out/$cmd"
    built+=("$out/$cmd")
done
echo "built ${built[*]}"
