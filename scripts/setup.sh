#!/usr/bin/env bash
# Creates the project virtualenv (.venv) and installs the agent into it. Idempotent and quick when nothing changed.
#   scripts/setup.sh          runtime only (what `nodetask-agent local` needs)
#   scripts/setup.sh test     runtime + the test extra (pytest, moto's server, ruff, mypy, import-linter, kubectl)
#   scripts/setup.sh kubeconfig  runtime + the kubernetes package, to run the agent from a kubeconfig
# Every package is installed at the version constraints.txt pins (the Dockerfile and CI use the same file;
# scripts/lock.sh refreshes it).
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check --only-binary=:all: -c constraints.txt pip
fi
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)${extra:+-$extra}"
if [ ! -f "$stamp" ]; then
  if [ -n "$extra" ]; then spec=".[$extra]"; else spec="."; fi
  .venv/bin/pip install --quiet --disable-pip-version-check --only-binary=:all: -c constraints.txt -e "$spec"
  touch "$stamp"
fi
