#!/usr/bin/env bash
# Creates the project virtualenv (.venv) and installs the agent into it. Idempotent and quick when nothing changed.
#   scripts/setup.sh          runtime only (what `nodetask-agent local` needs)
#   scripts/setup.sh test     runtime + the test extra (pytest, moto's server, ruff, mypy, import-linter, kubectl)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)${extra:+-$extra}"
if [ ! -f "$stamp" ]; then
  if [ -n "$extra" ]; then spec=".[$extra]"; else spec="."; fi
  .venv/bin/pip install --quiet --disable-pip-version-check -e "$spec"
  touch "$stamp"
fi
