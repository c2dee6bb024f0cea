#!/usr/bin/env bash
# Run the checks and the tests: set up what is missing, then lint (ruff),
# formatting (ruff format), types (mypy), and pytest (arguments pass through,
# e.g. scripts/test.sh tests/unit -k tiles).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
echo "[test] ruff check, ruff format --check, mypy" >&2
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
exec "$ROOT/.venv/bin/python" -m pytest "$@"
