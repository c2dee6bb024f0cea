#!/usr/bin/env bash
# One command per benchmark: set up what is missing, then run it. Each
# writes docs/benchmarks/<name>-<device>.json and re-renders
# docs/BENCHMARKS.md and docs/benchmarks-<device>.png.
#
#   scripts/bench.sh compare [flags]               (a)-(d) side by side: scripts/bench_compare.py
#                                                  (--workload long: a page of text out per image)
#   scripts/bench.sh perf-analyzer [flags]         perf_analyzer on the ensemble: scripts/bench_perf_analyzer.py
#   scripts/bench.sh preprocess-instances [flags]  images/s vs preprocess instances: scripts/bench_preprocess_instances.py
#   scripts/bench.sh preprocess [flags]            our preprocessing vs vLLM's processor: scripts/bench_preprocess.py
#   scripts/bench.sh batching [flags]              N requests at once vs one: scripts/bench_batching.py
#   scripts/bench.sh all                           all of them, one after another, with their defaults
#
# `scripts/bench.sh NAME --help` lists a benchmark's flags.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 1 ]] || usage
name="$1"; shift
"$ROOT/scripts/setup.sh"
case "$name" in
  compare) exec "$PYTHON" "$ROOT/scripts/bench_compare.py" "$@" ;;
  perf-analyzer)
    "$ROOT/scripts/install_perf_analyzer.sh"
    exec "$PYTHON" "$ROOT/scripts/bench_perf_analyzer.py" "$@" ;;
  preprocess-instances) exec "$PYTHON" "$ROOT/scripts/bench_preprocess_instances.py" "$@" ;;
  preprocess) exec "$PYTHON" "$ROOT/scripts/bench_preprocess.py" "$@" ;;
  batching) exec "$PYTHON" "$ROOT/scripts/bench_batching.py" "$@" ;;
  all)
    "$PYTHON" "$ROOT/scripts/bench_preprocess.py"
    "$PYTHON" "$ROOT/scripts/bench_preprocess_instances.py"
    "$PYTHON" "$ROOT/scripts/bench_batching.py"
    "$PYTHON" "$ROOT/scripts/bench_perf_analyzer.py"
    "$PYTHON" "$ROOT/scripts/bench_compare.py"
    exec "$PYTHON" "$ROOT/scripts/bench_compare.py" --workload long ;;
  *) usage ;;
esac
