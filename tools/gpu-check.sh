#!/usr/bin/env bash
# shellcheck disable=SC2317  # the step functions run through run_step, summary through a trap
# The CUDA engine's first run on a real GPU, in one command (docs/cuda.md, "On a real GPU").
#
#   bash tools/gpu-check.sh                 # in a virtual environment of its own (the default)
#   bash tools/gpu-check.sh --current-env   # install into the running Python's environment
#
# Steps: build fusedmlp with nvcc (FUSEDMLP_CUDA=ON) for this machine's GPU architecture; check
# that the module sees the device; the ptxas stack-frame check for that architecture; the tests
# marked gpu; the same tests under compute-sanitizer memcheck; a kernel-level selection under
# racecheck, synccheck and initcheck; MLPClassifier epochs on the GPU beside the CPU. Prints one
# table (step, status, seconds) and exits nonzero when any step fails. Aims at 10 minutes on an
# H100-class machine.
#
# The environment: by default a virtual environment in $FUSEDMLP_GPU_CHECK_DIR/venv (made on
# the first run from $PYTHON, default python3, then reused; numpy, scipy, scikit-learn and
# pytest come from PyPI), so the check tests exactly this checkout's build and leaves any
# fusedmlp already installed (an editable one included, whose import hook would shadow a new
# install in an environment that shares its site-packages) alone. --current-env installs into
# $PYTHON's environment instead, replacing its fusedmlp, and fetches nothing: for machines
# without PyPI access; that environment needs fusedmlp's build requirements (scikit-build-core,
# pybind11, cmake) and numpy, scipy, scikit-learn and pytest.
#
# Environment variables:
#   FUSEDMLP_GPU_CHECK_DIR  work directory: venv, build tree (kept: a rerun rebuilds what changed),
#                           logs (default ${TMPDIR:-/tmp}/fusedmlp-gpu-check)
#   PYTHON                  the interpreter (default python3)
#   CUDAARCHS               architectures to build (default: the GPUs' own, from nvidia-smi)
#   FUSEDMLP_DATA           directory with fashion_mnist.npz (default ../shared/data beside the
#                           checkout; random data of the same shape when absent)
#   SANITIZER_TIMEOUT       seconds per compute-sanitizer run before it counts as failed (default 900)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${FUSEDMLP_GPU_CHECK_DIR:-${TMPDIR:-/tmp}/fusedmlp-gpu-check}"
PYTHON="${PYTHON:-python3}"
SANITIZER_TIMEOUT="${SANITIZER_TIMEOUT:-900}"
CURRENT_ENV=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

for arg in "$@"; do
  case "$arg" in
    --current-env) CURRENT_ENV=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

# ---- the summary --------------------------------------------------------------------------------

STEPS=(preflight build device ptxas gpu-tests memcheck racecheck synccheck initcheck benchmark)
declare -A STATUS SECONDS_TAKEN
for s in "${STEPS[@]}"; do STATUS[$s]="not run"; SECONDS_TAKEN[$s]=""; done

summary() {
  echo
  printf '%-10s  %-8s  %8s\n' step status seconds
  printf '%-10s  %-8s  %8s\n' ---------- -------- --------
  for s in "${STEPS[@]}"; do
    printf '%-10s  %-8s  %8s\n' "$s" "${STATUS[$s]}" "${SECONDS_TAKEN[$s]}"
  done
  if [[ -d "$WORK/logs" ]]; then echo "logs: $WORK/logs"; fi
}
trap summary EXIT

FAILED=0

now() { date +%s.%N; }

# run_step NAME FUNCTION: runs FUNCTION in a subshell with errexit in force, its output also in
# logs/NAME.log, and records the outcome. Never call it from an `if`, `||` or `&&`: bash ignores
# errexit in everything such a call runs, the subshell's own `set -e` included.
run_step() {
  local name="$1" fn="$2" start rc
  echo
  echo "==> $name"
  start="$(now)"
  set +e
  (set -euo pipefail; "$fn") 2>&1 | tee "$WORK/logs/$name.log"
  rc="${PIPESTATUS[0]}"
  set -e
  SECONDS_TAKEN[$name]="$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
  if [[ "$rc" == 0 ]]; then
    STATUS[$name]=ok
  else
    STATUS[$name]=FAILED
    FAILED=1
  fi
}

# ---- preflight: fail fast on a machine without a GPU or without the toolkit --------------------

fail_preflight() {
  echo "gpu-check: $*" >&2
  STATUS[preflight]=FAILED
  exit 1
}

start="$(now)"
if command -v nvidia-smi >/dev/null 2>&1; then
  if ! gpus="$(nvidia-smi -L 2>&1)" || ! grep -q '^GPU ' <<<"$gpus"; then
    fail_preflight "no CUDA device: nvidia-smi lists no GPU (${gpus//$'\n'/ })"
  fi
elif [[ ! -e /dev/nvidia0 ]]; then
  fail_preflight "no CUDA device: no NVIDIA driver here (nvidia-smi is not on the PATH, /dev/nvidia0 does not exist)"
else
  gpus="(nvidia-smi not on the PATH; /dev/nvidia0 exists)"
fi
NVCC="${CUDACXX:-$(command -v nvcc || true)}"
[[ -n "$NVCC" && -x "$NVCC" ]] || fail_preflight "no CUDA compiler: put nvcc on the PATH or set CUDACXX"
NVCC_DIR="$(dirname "$(readlink -f "$NVCC")")"
SANITIZER="$(command -v compute-sanitizer || true)"
for candidate in "$NVCC_DIR/compute-sanitizer" "$NVCC_DIR/../compute-sanitizer/compute-sanitizer"; do
  if [[ -z "$SANITIZER" && -x "$candidate" ]]; then SANITIZER="$candidate"; fi
done
[[ -n "$SANITIZER" ]] || fail_preflight "compute-sanitizer not found (on the PATH or beside $NVCC)"
command -v "$PYTHON" >/dev/null 2>&1 || fail_preflight "no Python interpreter '$PYTHON' (set PYTHON)"
if [[ -z "${CUDAARCHS:-}" ]] && command -v nvidia-smi >/dev/null 2>&1; then
  # "9.0" -> "90", one entry per distinct GPU model
  CUDAARCHS="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
    tr -d ' .' | sort -u | paste -sd ';' || true)"
fi
# the ptxas check's architecture: the first one built ("90" of "90;120", "90-real"), else sm_80
PTXAS_ARCH="${CUDAARCHS:-}"
PTXAS_ARCH="${PTXAS_ARCH%%;*}"
PTXAS_ARCH="${PTXAS_ARCH%%-*}"
if [[ ! "$PTXAS_ARCH" =~ ^[0-9]+[a-z]?$ ]]; then PTXAS_ARCH=80; fi
mkdir -p "$WORK/logs"
echo "GPUs: $gpus"
echo "nvcc: $NVCC ($("$NVCC" --version | grep -o 'release [0-9.]*'))"
echo "compute-sanitizer: $SANITIZER"
echo "architectures: ${CUDAARCHS:-the default list of the toolkit, as nvidia-smi gave none}"
echo "work directory: $WORK"
STATUS[preflight]=ok
SECONDS_TAKEN[preflight]="$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"

if [[ "$CURRENT_ENV" == 1 ]]; then
  PY="$PYTHON"
else
  PY="$WORK/venv/bin/python"
fi
export CUDACXX="$NVCC"

# ---- the steps ----------------------------------------------------------------------------------

step_build() {
  local options=(--force-reinstall --no-deps -Ccmake.define.FUSEDMLP_CUDA=ON "-Cbuild-dir=$WORK/build")
  if [[ -n "${CUDAARCHS:-}" ]]; then options+=("-Ccmake.define.CMAKE_CUDA_ARCHITECTURES=$CUDAARCHS"); fi
  if [[ "$CURRENT_ENV" == 1 ]]; then
    # nothing from PyPI: the environment has the build and test requirements
    options+=(--no-build-isolation)
  else
    if [[ ! -x "$PY" ]]; then "$PYTHON" -m venv "$WORK/venv"; fi
    "$PY" -m pip install --upgrade --quiet pip
    "$PY" -m pip install --quiet numpy scipy scikit-learn pytest threadpoolctl
  fi
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" "$PY" -m pip install "${options[@]}" "$ROOT"
}

step_device() {
  "$PY" - <<'EOF'
import sysconfig
from pathlib import Path

import fusedmlp
from fusedmlp import _cuda

# the build just installed, not a source tree an editable install points to
where = Path(fusedmlp.__file__).resolve().parent.parent
print("fusedmlp:", where / "fusedmlp")
assert where in {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}, \
    f"imported fusedmlp from {where}, not from this environment's site-packages"
status = _cuda.device_status()
print("device status:", status)
assert _cuda.simulated is False
assert status["count"] > 0, f"the CUDA engine sees no device: {status}"
assert fusedmlp.cuda_available(), "fusedmlp.cuda_available() is False"
EOF
}

step_ptxas() {
  echo "ptxas -v on trainer.cu for sm_${PTXAS_ARCH}"
  (cd "$ROOT" && FUSEDMLP_PTXAS_ARCH="$PTXAS_ARCH" "$PY" -m pytest -q -p no:cacheprovider tests/cuda/test_ptxas.py)
}

step_gpu_tests() {
  (cd "$ROOT" && "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/cuda)
}

# sanitize TOOL PYTEST_ARGS...: the tests under compute-sanitizer, which wraps the Python process.
sanitize() {
  local tool="$1" rc=0
  shift
  (cd "$ROOT" && timeout "$SANITIZER_TIMEOUT" "$SANITIZER" --tool "$tool" --error-exitcode 1 --print-limit 50 \
    "$PY" -m pytest -q -p no:cacheprovider -m gpu "$@") || rc=$?
  if [[ "$rc" == 124 ]]; then echo "compute-sanitizer --tool $tool: stopped after $SANITIZER_TIMEOUT s (SANITIZER_TIMEOUT)"; fi
  return "$rc"
}

# memcheck on every GPU test. racecheck, synccheck and initcheck slow kernels down far more:
# they run the kernel-level tests only (tests/cuda/test_kernels.py: every kernel of the engine,
# GEMM edges and layouts, every epilogue, fused forward, loss, optimizer, the captured graph),
# not the estimator tests, which launch the same kernels through many more epochs.
KERNEL_TESTS=(tests/cuda/test_kernels.py tests/cuda/test_build.py)
step_memcheck() { sanitize memcheck tests/cuda; }
step_racecheck() { sanitize racecheck "${KERNEL_TESTS[@]}"; }
step_synccheck() { sanitize synccheck "${KERNEL_TESTS[@]}"; }
step_initcheck() { sanitize initcheck "${KERNEL_TESTS[@]}"; }

# fusedmlp.bench has no GPU cases: time MLPClassifier epochs on the GPU and on the CPU here.
step_benchmark() {
  "$PY" - "${FUSEDMLP_DATA:-$ROOT/../shared/data}" <<'EOF'
import os, sys, time, warnings
from pathlib import Path

import numpy as np
from fusedmlp import MLPClassifier

path = Path(sys.argv[1]) / "fashion_mnist.npz"
if path.exists():
    d = np.load(path)
    X, y = d["X_train"].reshape(-1, 784).astype(np.float32) / 255, d["y_train"]
    X_test, y_test = d["X_test"].reshape(-1, 784).astype(np.float32) / 255, d["y_test"]
    print(f"Fashion-MNIST from {path}")
else:
    rng = np.random.default_rng(0)
    X, y = rng.random((60000, 784), dtype=np.float32), rng.integers(0, 10, 60000)
    X_test, y_test = rng.random((10000, 784), dtype=np.float32), rng.integers(0, 10, 10000)
    print(f"{path} is absent: random data of Fashion-MNIST's shape (accuracies are chance)")

print(f"{'network':<16} {'device':<18} {'s/epoch':>8} {'predict s':>9} {'accuracy':>8}")
failures = []
# the GPU with split-k (the default) and without it (FUSEDMLP_CUDA_SPLIT_K=0, read when an engine
# is built), then the CPU
configs = (("cuda", "cuda", None), ("cuda split-k off", "cuda", "0"), ("cpu", "cpu", None))
for hidden, epochs in (((300, 100), 5), ((1024, 1024), 3)):
    name = "784-" + "-".join(map(str, hidden)) + "-10"
    results = {}
    for config, device, split_k in configs:
        if split_k is None:
            os.environ.pop("FUSEDMLP_CUDA_SPLIT_K", None)
        else:
            os.environ["FUSEDMLP_CUDA_SPLIT_K"] = split_k
        kw = dict(hidden_layer_sizes=hidden, batch_size=200, random_state=0, dtype="float32",
                  n_iter_no_change=epochs + 1, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPClassifier(max_iter=1, **kw).fit(X[:2000], y[:2000])  # warm-up: module, graph
            start = time.perf_counter()
            clf = MLPClassifier(max_iter=epochs, **kw).fit(X, y)
            per_epoch = (time.perf_counter() - start) / clf.n_iter_
        start = time.perf_counter()
        accuracy = float(np.mean(clf.predict(X_test) == y_test))
        predict = time.perf_counter() - start
        results[config] = (per_epoch, accuracy)
        print(f"{name:<16} {config:<18} {per_epoch:8.3f} {predict:9.3f} {accuracy:8.4f}")
    os.environ.pop("FUSEDMLP_CUDA_SPLIT_K", None)
    (gpu, _), (cpu, cpu_acc) = results["cuda"], results["cpu"]
    print(f"{name:<16} GPU speed-up {cpu / gpu:.1f}x; split-k speed-up {results['cuda split-k off'][0] / gpu:.2f}x")
    # float32 on both engines, the same epochs: the accuracies agree closely
    for config in ("cuda", "cuda split-k off"):
        if abs(results[config][1] - cpu_acc) > 0.01:
            failures.append(f"{name}: accuracy {results[config][1]:.4f} on the GPU ({config}), "
                            f"{cpu_acc:.4f} on the CPU")
print("docs/cuda.md estimates 12-20 ms per epoch for 784-300-100-10 on an A100 with split-k (30-50 ms without), "
      "60-80 ms for 784-1024-1024-10 (80-120 ms without)")

# device="auto"'s threshold: whole fits of growing work on each device (the median of 3, after
# the warm-up above: the CUDA context's cost in a new process is timed apart), the first work
# at which the GPU is faster, against the threshold 'auto' uses
import subprocess
from fusedmlp import MLPRegressor, _engine

context = subprocess.run(
    [sys.executable, "-c", "import time, fusedmlp; t = time.perf_counter(); fusedmlp.cuda_available(); "
     "from fusedmlp import MLPRegressor; import numpy as np; "
     "MLPRegressor(hidden_layer_sizes=(8,), max_iter=1, device='cuda').fit(np.ones((8, 2)), np.ones(8)); "
     "print(time.perf_counter() - t)"],
    capture_output=True, text=True, check=True,
)
print(f"\ndevice='auto': a new process's first CUDA fit of 8 rows takes {float(context.stdout.split()[-1]):.3f} s "
      "(the CUDA context's creation included)")
rng = np.random.default_rng(0)
print(f"{'network':<16} {'rows':>6} {'epochs':>6} {'multiply-adds':>13} {'cpu s':>7} {'cuda s':>7} {'cpu/cuda':>8}")
for hidden, n_in, sizes in (
    ((50, 50, 50), 8, ((500, 2), (2000, 5), (5000, 10), (20000, 10), (20000, 50), (20000, 200))),
    ((300, 100), 784, ((200, 1), (1000, 2), (2000, 5), (10000, 5), (20000, 10))),
):
    units = [n_in, *hidden, 1]
    name = "-".join(map(str, units))
    crossover = None
    for rows, epochs in sizes:
        Xr = rng.standard_normal((rows, n_in)).astype(np.float32)
        yr = Xr[:, 0] - 0.5 * Xr[:, 1]
        macs = _engine.training_macs(rows, units, epochs)
        times = {}
        for device in ("cpu", "cuda"):
            kw = dict(hidden_layer_sizes=hidden, max_iter=epochs, n_iter_no_change=epochs + 1, tol=0,
                      random_state=0, dtype="float32", device=device)
            runs = []
            for _ in range(3):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    MLPRegressor(**kw).fit(Xr, yr)
                    runs.append(time.perf_counter() - start)
            times[device] = sorted(runs)[1]
        ratio = times["cpu"] / times["cuda"]
        if crossover is None and ratio > 1:
            crossover = macs
        print(f"{name:<16} {rows:>6} {epochs:>6} {macs:>13.2e} {times['cpu']:>7.3f} {times['cuda']:>7.3f} {ratio:>8.2f}")
    where = "never in these sizes" if crossover is None else f"from {crossover:.1e} multiply-adds"
    print(f"{name:<16} the GPU is faster {where}; device='auto' uses {_engine.auto_gpu_min_macs():.1e} "
          "(FUSEDMLP_AUTO_GPU_MIN_MACS sets it)")
if failures:
    sys.exit("\n".join(failures))
EOF
}

# ---- run ----------------------------------------------------------------------------------------

# Nothing can run without a build and a device; the others run whatever the ones before gave.
run_step build step_build
if [[ "${STATUS[build]}" != ok ]]; then exit 1; fi
run_step device step_device
if [[ "${STATUS[device]}" != ok ]]; then exit 1; fi
run_step ptxas step_ptxas
run_step gpu-tests step_gpu_tests
run_step memcheck step_memcheck
run_step racecheck step_racecheck
run_step synccheck step_synccheck
run_step initcheck step_initcheck
run_step benchmark step_benchmark
exit "$FAILED"
