#!/usr/bin/env bash
# Builds what bench/backup_bench.py --remote needs, from the Go module proxy, into a cache folder (never the
# repository): restic at the version the suite pins for its image (components/core/versions.py, the one
# place), and SeaweedFS (an S3-compatible object store to run on loopback).
#   bench/build-tools.sh [CACHE]      (default /work/cache/bench-tools; binaries in CACHE/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${1:-/work/cache/bench-tools}
restic_version=$(python3 -c 'import sys; sys.path.insert(0, "."); from components.core.versions import IMAGES; print(IMAGES["restic"].tag)')
# SeaweedFS has no releases as Go module versions; this pseudo-version is what the proxy served.
seaweedfs_version=v0.0.0-20261109003541-7506e5f91cd6
export GOPATH="$cache/gopath" GOMODCACHE="$cache/gopath/pkg/mod" GOCACHE="$cache/gocache" GOBIN="$cache/bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$GOBIN"
nice -n 10 go install "github.com/restic/restic/cmd/restic@v${restic_version}"
# `go install module@version` refuses a module whose go.mod has replace directives (SeaweedFS has one):
# build it as the main module, from the proxy's copy of its source.
src=$(go mod download -json "github.com/seaweedfs/seaweedfs@${seaweedfs_version}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
rm -rf "$cache/seaweedfs-src"
cp -r "$src" "$cache/seaweedfs-src"
chmod -R u+w "$cache/seaweedfs-src"
(cd "$cache/seaweedfs-src" && nice -n 10 go build -o "$GOBIN/weed" ./weed)
"$GOBIN/restic" version
"$GOBIN/weed" version
