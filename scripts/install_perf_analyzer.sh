#!/usr/bin/env bash
# Make Triton's `perf_analyzer` (PyPI perf-analyzer, pinned in
# requirements/perf-analyzer.txt) runnable as `.venv/bin/perf_analyzer`.
# Idempotent: a second run only checks that the binary answers.
#
# The wheel's binary needs glibc 2.38 / GLIBCXX_3.4.32. Where the system has
# them (Ubuntu 24.04, the NGC SDK images) the pip entry point is left as it
# is. Where it has not (Debian 12: glibc 2.36), Debian 13's loader, libc and
# libstdc++ are unpacked into a private folder of the virtualenv (their own
# apt lists, so the system stays on its release) and `.venv/bin/perf_analyzer`
# becomes a launcher that runs the binary through that loader.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DSOCR_VENV:-$ROOT/.venv}"
SUITE="trixie"
PACKAGES=(libc6 libstdc++6 libgcc-s1)
GLIBC_DIR="$VENV/perf_analyzer-glibc"
LAUNCHER="$VENV/bin/perf_analyzer"
MARKER="dsocr perf_analyzer launcher"

log() { echo "[perf_analyzer] $*" >&2; }

binary() {
  "$VENV/bin/python" -c 'import perf_analyzer, pathlib; print(pathlib.Path(perf_analyzer.__file__).parent / "bin" / "perf_analyzer")'
}

# The binary's own answer (the pip entry point always exits 0, even when
# the loader refuses the binary).
answers() { "$@" --version 2>&1 | grep -q "^perf_analyzer\|Perf Analyzer\|PerfAnalyzer"; }

BINARY="$(binary)"
if grep -qs "$MARKER" "$LAUNCHER" && answers "$LAUNCHER"; then
  exit 0
fi
if answers "$BINARY"; then
  log "the system's glibc runs $BINARY as it is"
  exit 0
fi

fetch_glibc() {
  local apt_dir="$GLIBC_DIR/apt" unpacked="$GLIBC_DIR/root"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$unpacked"
  cat > "$apt_dir/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main
EOF
  local apt_options=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::State::status=/dev/null" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root"
  )
  log "fetching Debian $SUITE's ${PACKAGES[*]} into $GLIBC_DIR (the system is not changed)"
  apt-get "${apt_options[@]}" update -qq
  (cd "$apt_dir/debs" && apt-get "${apt_options[@]}" download -qq "${PACKAGES[@]}")
  for deb in "$apt_dir/debs"/*.deb; do
    dpkg -x "$deb" "$unpacked"
  done
}

if [[ ! -x "$GLIBC_DIR/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ]]; then
  fetch_glibc
fi

LIBS="$GLIBC_DIR/root/usr/lib/x86_64-linux-gnu"
cat > "$LAUNCHER" <<EOF
#!/usr/bin/env bash
# $MARKER (written by scripts/install_perf_analyzer.sh)
# The binary needs glibc 2.38: run it through Debian $SUITE's loader and libc,
# with the system's libraries (libssl, libz) after them.
exec "$LIBS/ld-linux-x86-64.so.2" --library-path "$LIBS:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "$BINARY" "\$@"
EOF
chmod +x "$LAUNCHER"
if ! answers "$LAUNCHER"; then
  log "$LAUNCHER does not run:"
  "$LAUNCHER" --help | tail -5 >&2 || true
  exit 1
fi
log "ready: $LAUNCHER"
