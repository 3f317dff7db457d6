#!/usr/bin/env bash
# Builds (once) and caches the real chain binaries used by the chain tier (tests/chain_real):
#   cometbft  github.com/cometbft/cometbft v0.38.x, `go install` from the Go module proxy
#   simd      github.com/cosmos/cosmos-sdk v0.45.x (the SDK line Sei's fork descends from); its go.mod has replace
#             directives, which `go install pkg@version` refuses, so the module is downloaded, copied to a temporary
#             directory and built there with `go build ./simapp/simd`
# Prints the cache directory on stdout (last line). Idempotent: a warm cache costs nothing.
# Measured on 2 cores, cold: cometbft ~160 s, simd ~120 s (docs/chain-fidelity.md).
set -euo pipefail

COMETBFT_VERSION=${COMETBFT_VERSION:-0.38.26}
SDK_VERSION=${SDK_VERSION:-0.45.16}
CACHE=${NODETASK_CHAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetask-agent/chain-cometbft-v$COMETBFT_VERSION-sdk-v$SDK_VERSION}
mkdir -p "$CACHE"
log() { printf '[chain-tools] %s\n' "$*" >&2; }

if [ ! -x "$CACHE/cometbft" ]; then
  log "building cometbft v$COMETBFT_VERSION into $CACHE (cold build: ~3 min on 2 cores)"
  start=$(date +%s)
  GOBIN="$CACHE" CGO_ENABLED=0 go install -trimpath "github.com/cometbft/cometbft/cmd/cometbft@v$COMETBFT_VERSION"
  log "cometbft built in $(( $(date +%s) - start ))s"
fi

if [ ! -x "$CACHE/simd" ]; then
  log "building simd from cosmos-sdk v$SDK_VERSION into $CACHE (cold build: ~2 min on 2 cores)"
  start=$(date +%s)
  dir=$(go mod download -json "github.com/cosmos/cosmos-sdk@v$SDK_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  cp -r "$dir/." "$work/"
  chmod -R u+w "$work"
  (cd "$work" && CGO_ENABLED=0 go build -mod=mod -trimpath -o "$CACHE/simd.tmp" ./simapp/simd)
  mv "$CACHE/simd.tmp" "$CACHE/simd"
  log "simd built in $(( $(date +%s) - start ))s"
fi

echo "$CACHE"
