#!/usr/bin/env bash
# Builds (once) and caches the real S3 server used by the S3 test tier and the restore/upload benches:
#   versitygw  github.com/versity/versitygw, `go install` from the Go module proxy; serves a POSIX directory over
#              the S3 API with AWS SigV4 auth, strict checksums and real multipart semantics (stricter than moto)
# Prints the cache directory on stdout (last line). Idempotent: a warm cache costs nothing.
# Measured cold: 534 s on 2 cores shared with other builds (docs/benchmarks.md).
set -euo pipefail

VERSITYGW_VERSION=${VERSITYGW_VERSION:-1.8.0}
CACHE=${NODETASK_S3_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetask-agent/s3-versitygw-v$VERSITYGW_VERSION}
mkdir -p "$CACHE"
log() { printf '[s3-tools] %s\n' "$*" >&2; }

if [ ! -x "$CACHE/versitygw" ]; then
  log "building versitygw v$VERSITYGW_VERSION into $CACHE (cold build: ~7 min on 2 cores)"
  start=$(date +%s)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # Built into a scratch GOBIN and moved into place so an interrupted build never leaves a half-written binary.
  GOBIN="$work" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "github.com/versity/versitygw/cmd/versitygw@v$VERSITYGW_VERSION"
  mv "$work/versitygw" "$CACHE/versitygw"
  log "versitygw built in $(( $(date +%s) - start ))s"
fi

echo "$CACHE"
