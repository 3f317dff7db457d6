#!/usr/bin/env bash
# The test command: sets up everything the tests need, then runs every check and every test tier this machine can
# run. With CI=true the real kube-apiserver, real chain (cometbft, simd), real S3 server (versitygw) and image
# (buildah, podman) tiers are required: a failed build or install fails the run instead of skipping it.
# Extra arguments go to pytest (for example: scripts/test.sh tests/engine -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test

# tier NAME SCRIPT [VARIABLE]: run a tier's tools script (which builds or installs once, then costs nothing); export
# the cache directory it prints as VARIABLE. A failure skips the tier's tests locally and fails the run under CI=true.
tier() {
  local name=$1 script=$2 variable=${3:-} dir
  if dir=$("$script"); then
    [ -z "$variable" ] || export "$variable=$dir"
  elif [ "${CI:-}" = "true" ]; then
    echo "scripts/test.sh: the $name tier is unavailable ($script failed) and CI=true requires it" >&2
    exit 1
  else
    echo "scripts/test.sh: the $name tier is unavailable on this machine; its tests will be skipped" >&2
  fi
}
tier "kube-apiserver" scripts/kube-tools.sh NODETASK_KUBE_CACHE
tier "real chain (cometbft, simd)" scripts/chain-tools.sh NODETASK_CHAIN_CACHE
tier "real S3 server (versitygw)" scripts/s3-tools.sh NODETASK_S3_CACHE
tier "image (buildah, podman, mmdebstrap)" scripts/image-tools.sh
tier "real EVM (geth)" scripts/evm-tools.sh NODETASK_EVM_CACHE

export PATH="$PWD/.venv/bin:$PATH"
echo "== lint-imports" && lint-imports
echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
# --durations: the 25 slowest tests, so that a test growing slow (and missing its `slow` mark) shows in every CI log.
echo "== pytest" && pytest --durations=25 "$@"
