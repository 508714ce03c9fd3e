#!/usr/bin/env bash
# The CPU engine under AddressSanitizer + UndefinedBehaviorSanitizer: builds fusedmlp._cpu
# (CUDA off) with -fsanitize=address,undefined, and runs the GEMM, parity, bad-input, gradient
# and hardening tests (but those that start other processes) against that build. Any sanitizer report ends the run with a non-zero status.
#
#   tests/sanitizers/run.sh [extra pytest arguments]
#
# Environment:
#   PYTHON                     interpreter to test with (default: python3)
#   CXX                        GNU C++ compiler whose libasan/libubsan are used (default: g++)
#   FUSEDMLP_SANITIZER_BUILD   build directory, kept between runs so a rerun rebuilds only what
#                              changed (default: ${TMPDIR:-/tmp}/fusedmlp-sanitizers-build)
#
# Python itself is not sanitized, so the ASan runtime is LD_PRELOADed into it. The tests import
# a temporary copy of python/fusedmlp with the sanitized _cpu beside it, never the installed
# package (sanitized_import.py checks fusedmlp._cpu.__file__ before any test runs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
CXX="${CXX:-g++}"
# one build directory per checkout: CMake refuses a build directory made for another source tree
BUILD="${FUSEDMLP_SANITIZER_BUILD:-${TMPDIR:-/tmp}/fusedmlp-sanitizers-build-$(printf %s "$ROOT" | cksum | cut -d' ' -f1)}"
SANITIZE="-fsanitize=address,undefined"

runtime() {  # the compiler's copy of a sanitizer runtime, or nothing
  local path
  path="$("$CXX" -print-file-name="$1")"
  [[ "$path" == /* && -e "$path" ]] && echo "$path"
}
# ASan must be the first library loaded. It also resolves the C++ functions it intercepts
# (__cxa_throw) when it starts, so libstdc++ is preloaded too: Python does not link it, and
# without it the first C++ exception aborts with "CHECK failed ... real___cxa_throw". The UBSan
# runtime needs no preloading; it comes in as the sanitized module's dependency.
LIBASAN="$(runtime libasan.so)" || { echo "run.sh: $CXX has no libasan.so" >&2; exit 2; }
LIBSTDCXX="$(runtime libstdc++.so.6)" || { echo "run.sh: $CXX has no libstdc++.so.6" >&2; exit 2; }
command -v cmake >/dev/null || { echo "run.sh: cmake is not installed" >&2; exit 2; }

GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
# A build directory made by another generator, or for another source tree, cannot be
# reconfigured for this one.
if [[ -f "$BUILD/CMakeCache.txt" ]] && { ! grep -q "^CMAKE_GENERATOR:INTERNAL=${GENERATOR[1]:-Unix Makefiles}$" "$BUILD/CMakeCache.txt" ||
    ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT" "$BUILD/CMakeCache.txt"; }; then
  rm -rf "$BUILD"
fi

echo "== configure and build fusedmlp._cpu with $SANITIZE in $BUILD"
build_start=$(date +%s.%N)
# No -O here: the engine's own -O3 (FUSEDMLP_OPT_FLAGS) comes last on the compile line and wins.
# The sanitizers are exact at -O3, and a build forced to -O1 was measured no faster.
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" "${GENERATOR[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$CXX" \
  -DFUSEDMLP_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$SANITIZE -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g" \
  -DCMAKE_MODULE_LINKER_FLAGS="$SANITIZE" \
  -DPython_EXECUTABLE="$("$PYTHON" -c 'import sys; print(sys.executable)')" \
  -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)" \
  >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log" >&2; exit 2; }
nice -n 10 cmake --build "$BUILD" --target _cpu -j 2
build_end=$(date +%s.%N)

PKG="$(mktemp -d "${TMPDIR:-/tmp}/fusedmlp-sanitized.XXXXXX")"
trap 'rm -rf "$PKG"' EXIT
mkdir "$PKG/fusedmlp"
cp "$ROOT"/python/fusedmlp/*.py "$PKG/fusedmlp/"
cp "$BUILD"/_cpu*.so "$PKG/fusedmlp/"
cp "$ROOT/tests/sanitizers/sanitized_import.py" "$PKG/"

echo "== pytest on the sanitized engine ($PKG)"
test_start=$(date +%s.%N)
status=0
(
  cd "$ROOT"
  export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}"
  export FUSEDMLP_SANITIZED_PKG="$PKG"
  export LD_PRELOAD="$LIBASAN $LIBSTDCXX${LD_PRELOAD:+ $LD_PRELOAD}"
  # Python's allocations live until exit by design: leak reports would be noise.
  export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  # --capture=sys: a sanitizer writes its report to file descriptor 2 and ends the process,
  # which would lose the report in pytest's default (fd) capture. -v names each test before it
  # runs, so the line above a report is the test that provoked it.
  exec "$PYTHON" -m pytest -p sanitized_import -p no:cacheprovider --capture=sys -v \
    tests/test_gemm.py tests/test_parity.py tests/test_bad_input.py tests/test_gradients.py \
    tests/test_hardening.py -k "not fork and not ctrl_c" "$@"
) || status=$?
test_end=$(date +%s.%N)

awk -v b0="$build_start" -v b1="$build_end" -v t0="$test_start" -v t1="$test_end" \
  'BEGIN { printf "== sanitized build %.0f s, sanitized tests %.0f s\n", b1 - b0, t1 - t0 }'
exit "$status"
