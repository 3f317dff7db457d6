#!/usr/bin/env bash
# The test command: sets up everything the tests need, then runs every check and every test tier this machine can
# run. With CI=true the real kube-apiserver, real chain (cometbft, simd), real S3 server (versitygw) and image
# (buildah, podman) tiers are required: a failed build or install fails the run instead of skipping it.
# Extra arguments go to pytest (for example: scripts/test.sh tests/engine -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
if kube_dir=$(scripts/kube-tools.sh); then
  export NODETASK_KUBE_CACHE="$kube_dir"
elif [ "${CI:-}" = "true" ]; then
  echo "scripts/test.sh: building the kube-apiserver tier failed and CI=true requires it" >&2
  exit 1
else
  echo "scripts/test.sh: kube-apiserver tier unavailable on this machine; its tests will be skipped" >&2
fi
if chain_dir=$(scripts/chain-tools.sh); then
  export NODETASK_CHAIN_CACHE="$chain_dir"
elif [ "${CI:-}" = "true" ]; then
  echo "scripts/test.sh: building the real chain tier (cometbft, simd) failed and CI=true requires it" >&2
  exit 1
else
  echo "scripts/test.sh: real chain tier unavailable on this machine; its tests will be skipped" >&2
fi
if s3_dir=$(scripts/s3-tools.sh); then
  export NODETASK_S3_CACHE="$s3_dir"
elif [ "${CI:-}" = "true" ]; then
  echo "scripts/test.sh: building the real S3 server (versitygw) failed and CI=true requires it" >&2
  exit 1
else
  echo "scripts/test.sh: versitygw unavailable on this machine; the S3 tests run on moto only" >&2
fi
if ! scripts/image-tools.sh; then
  if [ "${CI:-}" = "true" ]; then
    echo "scripts/test.sh: the image tier (buildah, podman, mmdebstrap) is unavailable and CI=true requires it" >&2
    exit 1
  fi
  echo "scripts/test.sh: image tier unavailable on this machine; its tests will be skipped" >&2
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "== lint-imports" && lint-imports
echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
# --durations: the 25 slowest tests, so that a test growing slow (and missing its `slow` mark) shows in every CI log.
echo "== pytest" && pytest --durations=25 "$@"
