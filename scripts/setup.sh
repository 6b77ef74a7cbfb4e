#!/usr/bin/env bash
# Create the project's virtual environment and install kosmos-fl with its test tools.
# Idempotent: safe to run again; pip only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] not in [(3, 11), (3, 12)])'; then
  echo "error: kosmos-fl needs Python 3.11 or 3.12; '$PYTHON' is $("$PYTHON" --version 2>&1). Pass PYTHON=python3.11 to make." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch is pinned to the CPU wheel (2.13.0); installing it first keeps pip from pulling a CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,simulation]"
echo "kosmos-fl installed in .venv"
