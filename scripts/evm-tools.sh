#!/usr/bin/env bash
# Builds (once) and caches go-ethereum's geth, the real EVM JSON-RPC (with debug_traceBlockByNumber and the prestate
# tracer) that result-export's comparison Layer 2 is tested against (tests/tasks/test_result_compare_evm.py):
#   geth  github.com/ethereum/go-ethereum/cmd/geth, `go install` from the Go module proxy
# Prints the cache directory on stdout (last line). Idempotent: a warm cache costs nothing.
set -euo pipefail

GETH_VERSION=${GETH_VERSION:-1.17.10}
CACHE=${NODETASK_EVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetask-agent/evm-geth-v$GETH_VERSION}
mkdir -p "$CACHE"
log() { printf '[evm-tools] %s\n' "$*" >&2; }

if [ ! -x "$CACHE/geth" ]; then
  log "building geth v$GETH_VERSION into $CACHE"
  start=$(date +%s)
  GOBIN="$CACHE/.build" CGO_ENABLED=0 go install -trimpath "github.com/ethereum/go-ethereum/cmd/geth@v$GETH_VERSION"
  mv "$CACHE/.build/geth" "$CACHE/geth"
  rmdir "$CACHE/.build" 2>/dev/null || true
  log "geth built in $(( $(date +%s) - start ))s"
fi

echo "$CACHE"
