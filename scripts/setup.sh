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
# torch is pinned to the CPU wheel (2.13.0) that pip's find-links offer on this kind of machine;
# any other spec would pull a CUDA build of several GB.
# uv installs the same packages as pip about 5x faster (bench/README.md: 51 s against 298 s for a
# new .venv on a loaded 2-core machine), which is most of a fresh clone's set-up. uv does not read
# pip's configuration, so pip's find-links (where the torch wheel lies) are handed over. pip stays
# the fallback where uv cannot be installed.
if [ "${KOSMOS_SETUP_PIP:-}" != "1" ] && .venv/bin/python -m pip install --quiet "uv>=0.5,<1"; then
  links=()
  for dir in ${PIP_FIND_LINKS:-} $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do
    links+=(--find-links "$dir")
  done
  .venv/bin/uv pip install --python .venv/bin/python --quiet "${links[@]}" "torch==2.13.0" -e ".[dev,simulation]"
else
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[dev,simulation]"
fi
echo "kosmos-fl installed in .venv"
