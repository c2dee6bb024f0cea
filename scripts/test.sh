#!/usr/bin/env bash
# Run the tests: set up what is missing, then pytest (arguments pass through,
# e.g. scripts/test.sh tests/unit -k tiles).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
