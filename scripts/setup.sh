#!/usr/bin/env bash
# Set up psmlab in ./.venv on a fresh machine: pinned CPU torch first (an unpinned torch would
# pull a multi-GB CUDA build), then the package and its dev tools under constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" -c constraints.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
echo "psmlab is installed in .venv (activate with: . .venv/bin/activate)"
