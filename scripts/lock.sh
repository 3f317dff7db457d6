#!/usr/bin/env bash
# Refreshes constraints.txt: the exact version of every package the agent and each of its extras install (test
# included), resolved by pip from pyproject.toml's ranges in a throw-away Python 3.11 virtualenv, wheels only (no
# package may need a compiler: the image builds without one). scripts/setup.sh, the Dockerfile and CI install with
# `-c constraints.txt`; tests/deploy/test_lock.py checks the file against pyproject.toml and the installed versions.
#   scripts/lock.sh            re-resolve everything to the newest versions pyproject.toml allows
# Review the diff, run the tests, commit pyproject.toml and constraints.txt together.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: "$PWD[kubeconfig,test]"
{
  echo "# Every package nodetask-agent and its extras (kubeconfig, test) install, and pip: scripts/lock.sh writes this"
  echo "# file from pyproject.toml's ranges (Python $("$work/venv/bin/python" -c 'import platform; print(platform.python_version())'), wheels only). Install with -c constraints.txt."
  "$work/venv/bin/pip" freeze --all --exclude nodetask-agent | LC_ALL=C sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) packages pinned" >&2
