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
# the report test renders report.html in a real browser: Debian's chromium (optional; without
# it that one test is skipped and says why)
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
  if command -v apt-get >/dev/null 2>&1; then
    { $SUDO apt-get install -y -q chromium >/dev/null 2>&1 ||
      { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; }; } ||
      echo "note: could not install chromium (apt-get); the report browser test will be skipped"
  else
    echo "note: no apt-get; install chromium for the report browser test (skipped without it)"
  fi
fi
echo "psmlab is installed in .venv (activate with: . .venv/bin/activate)"
