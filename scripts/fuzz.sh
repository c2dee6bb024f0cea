#!/usr/bin/env bash
# API fuzzing of the frontend against its own OpenAPI schema (schemathesis, every route), longer
# than CI's run of the same test (tests/unit/test_api_fuzzing.py):
#
#   scripts/fuzz.sh [--max-examples N] [pytest arguments]     (default: 5000 per route, minutes)
#
# A failure prints the request that reproduces it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
examples=5000
case "${1:-}" in
  --max-examples) examples="$2"; shift 2 ;;
  --max-examples=*) examples="${1#*=}"; shift ;;
esac
DSOCR_FUZZ_MAX_EXAMPLES="$examples" exec .venv/bin/python -m pytest tests/unit/test_api_fuzzing.py "$@"
