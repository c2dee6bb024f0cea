#!/usr/bin/env bash
# Start the service: set up what is missing, then tritonserver + the OpenAI
# frontend (python -m dsocr.serve --help for the flags). Ctrl-C stops both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/python" -m dsocr.serve "$@"
