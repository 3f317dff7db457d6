#!/usr/bin/env bash
# The test command: sets up everything the tests need, then runs every check and every test tier this machine can
# run. With CI=true the real kube-apiserver, real chain (cometbft, simd), real S3 server (versitygw), real EVM (geth)
# and image (buildah, podman) tiers are required: a failed build or install fails the run instead of skipping it.
# Extra arguments go to pytest (for example: scripts/test.sh tests/engine -x).
#
# The tiers' tools are made side by side, in three lanes, while the virtualenv is set up and lint-imports, ruff and
# mypy run:
#   kube   scripts/kube-tools.sh (kube-apiserver, etcd, helm)
#   go     scripts/chain-tools.sh (cometbft, simd), then scripts/s3-tools.sh (versitygw), then scripts/evm-tools.sh (geth)
#   image  scripts/image-tools.sh (buildah, podman, mmdebstrap), then scripts/build-image.sh: the image the image tests
#          run (localhost/nodetask-agent:test-<checkout>), handed to them as NODETASK_IMAGE (they never build it)
# Two Go builds at a time are enough for a 2-core machine; the image lane mostly downloads and unpacks. Warm caches
# make every lane a few seconds. Each step's log is printed when its lane ends, with timestamps and durations.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
stamp() { printf '[test.sh %s +%ds] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - started ))" "$*" >&2; }
set -m  # each lane in its own process group, so that an early exit stops its builds too
lanes=$(mktemp -d)
declare -A lane_pids=()
stop_lanes() {
  for pid in "${lane_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  rm -rf "$lanes"
}
trap stop_lanes EXIT

# lane NAME STEP...: runs the steps (`script [arg]`) one after another in the background, each to the end even when
# an earlier one failed; step N's stdout goes to $lanes/NAME.N.out, its exit code to NAME.N.rc, its log to NAME.log.
lane() {
  local name=$1; shift
  (
    index=0
    for step in "$@"; do
      index=$((index + 1))
      step_start=$(date +%s)
      echo "[$name $(date -u +%H:%M:%S)] $step" >>"$lanes/$name.log"
      rc=0
      # shellcheck disable=SC2086  # a step is a script and its arguments
      $step >"$lanes/$name.$index.out" 2>>"$lanes/$name.log" </dev/null || rc=$?
      echo "$rc" >"$lanes/$name.$index.rc"
      echo "[$name $(date -u +%H:%M:%S)] $step: exit $rc after $(( $(date +%s) - step_start ))s" >>"$lanes/$name.log"
    done
  ) &
  lane_pids[$name]=$!
}

# tier NAME INDEX TIER [VARIABLE]: waits for lane NAME (printing its log once), then takes step INDEX's outcome: its
# output's last line exported as VARIABLE, or on failure the tier skipped locally and the run failed under CI=true.
tier() {
  local name=$1 index=$2 tier=$3 variable=${4:-} rc
  if [ -n "${lane_pids[$name]:-}" ]; then
    wait "${lane_pids[$name]}" || true
    unset "lane_pids[$name]"
    sed 's/^/    /' "$lanes/$name.log" >&2
  fi
  rc=$(cat "$lanes/$name.$index.rc" 2>/dev/null || echo 1)
  if [ "$rc" = 0 ]; then
    [ -z "$variable" ] || export "$variable=$(tail -n 1 "$lanes/$name.$index.out")"
  elif [ "${CI:-}" = "true" ]; then
    echo "scripts/test.sh: the $tier tier is unavailable (see its log above) and CI=true requires it" >&2
    exit 1
  else
    echo "scripts/test.sh: the $tier tier is unavailable on this machine; its tests will be skipped" >&2
  fi
}

lane kube scripts/kube-tools.sh
lane go scripts/chain-tools.sh scripts/s3-tools.sh scripts/evm-tools.sh
# The tag names this checkout, so that two checkouts testing on one machine never run each other's image.
lane image scripts/image-tools.sh "scripts/build-image.sh localhost/nodetask-agent:test-$(pwd | sha256sum | cut -c1-8)"

scripts/setup.sh test  # (the tools scripts need none of it: the lanes start first)
stamp "set-up done"
export PATH="$PWD/.venv/bin:$PATH"
# One command a line: under `set -e` a failure inside an `a && b && c` list (other than its last command) does not
# stop the script, and a ruff finding went unnoticed that way.
echo "== lint-imports"
lint-imports
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
stamp "checks done"

tier kube 1 "kube-apiserver" NODETASK_KUBE_CACHE
tier go 1 "real chain (cometbft, simd)" NODETASK_CHAIN_CACHE
tier go 2 "real S3 server (versitygw)" NODETASK_S3_CACHE
tier go 3 "real EVM (geth)" NODETASK_EVM_CACHE
tier image 1 "image (buildah, podman, mmdebstrap)"
tier image 2 "image (scripts/build-image.sh)" NODETASK_IMAGE
stamp "tools ready"

# --durations: the 25 slowest tests, so that a test growing slow (and missing its `slow` mark) shows in every CI log.
echo "== pytest"
status=0
pytest --durations=25 "$@" || status=$?
stamp "pytest done (exit $status)"
exit "$status"
