#!/usr/bin/env bash
# Sets up the agent and runs the quickstart NodeTasks in local mode against a throw-away node home:
# generate node keys, patch config.toml/app.toml, validate the config, open the readiness gate.
#   scripts/quickstart.sh [HOME]      (default HOME: a fresh directory under /tmp)
# Run it twice with the same HOME to see idempotency: the second run reports every task as already done.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
home=${1:-$(mktemp -d /tmp/nodetask-quickstart.XXXXXX)}
mkdir -p "$home"  # local mode refuses a home that does not exist (a typo must not create a new one)
.venv/bin/nodetask-agent local examples/quickstart --home "$home"
echo
echo "node home: $home   (see $home/config; run '$0 $home' again, or '.venv/bin/nodetask-agent tasks list --home $home')"
