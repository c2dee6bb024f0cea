#!/usr/bin/env bash
# One command per benchmark: set up what is missing, then run it. Each
# writes docs/benchmarks/<name>-<device>.json and re-renders
# docs/BENCHMARKS.md and docs/benchmarks-<device>.png.
#
#   benchmarks/bench.sh compare [flags]               (a)-(d) side by side: benchmarks/compare.py
#                                                     (--workload long: a page of text out per image)
#   benchmarks/bench.sh perf-analyzer [flags]         perf_analyzer on the ensemble: benchmarks/perf_analyzer.py
#   benchmarks/bench.sh preprocess-instances [flags]  images/s vs preprocess instances: benchmarks/preprocess_instances.py
#   benchmarks/bench.sh preprocess [flags]            our preprocessing vs vLLM's processor: benchmarks/preprocess.py
#   benchmarks/bench.sh batching [flags]              N requests at once vs one: benchmarks/batching.py
#   benchmarks/bench.sh documents [flags]             a PDF through /v1/ocr vs the offline floor: benchmarks/documents.py
#   benchmarks/bench.sh batch [flags]                 dsocr ocr on a 20-page corpus vs a page at a time: benchmarks/batch.py
#   benchmarks/bench.sh host-cost [flags]             both stacks at once, host CPU per token and page: benchmarks/host_cost.py
#   benchmarks/bench.sh soak --minutes N [flags]      the stack under mixed traffic for N minutes: benchmarks/soak.py
#   benchmarks/bench.sh all                           all of them, one after another, with their defaults
#
# `benchmarks/bench.sh NAME --help` lists a benchmark's flags.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 1 ]] || usage
name="$1"; shift
"$ROOT/scripts/setup.sh"
cd "$ROOT"
bench() { "$PYTHON" -m "benchmarks.$1" "${@:2}"; }
case "$name" in
  compare) bench compare "$@" ;;
  perf-analyzer)
    "$ROOT/scripts/install_perf_analyzer.sh"
    bench perf_analyzer "$@" ;;
  preprocess-instances) bench preprocess_instances "$@" ;;
  preprocess) bench preprocess "$@" ;;
  batching) bench batching "$@" ;;
  documents) bench documents "$@" ;;
  batch) bench batch "$@" ;;
  host-cost) bench host_cost "$@" ;;
  soak) bench soak "$@" ;;
  all)
    bench preprocess
    bench preprocess_instances
    bench batching
    bench documents
    bench batch
    bench host_cost
    bench host_cost --workload page
    bench perf_analyzer
    bench compare
    bench compare --workload long ;;
  *) usage ;;
esac
