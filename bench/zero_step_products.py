"""The first layer's product of image rows, with and without their all-zero steps, build by build.

    python bench/zero_step_products.py [DIR ...] [--data ../shared/data] [--reps 60] [--threads 1]

Each DIR holds an installed fusedmlp package (as for bench/compare_builds.py, whose
run_alternated runs them); without one, the fusedmlp that Python imports. For each, in a fresh
process (builds in turns, twice), the median
time of `_cpu.gemm_f32(A, W)`, A row-major (2,400 x 784, the kernels read it in place) and W
784 x 300 (Fashion-MNIST's first layer):

- `fashion`: Fashion-MNIST's first 2,400 training images scaled to [0, 1] (about half their pixels
  zero, a fifth of the 6-row panels' steps and a ninth of the 12-row panels' all zeros), and
  `dense`, the same plus 1e-3 (no zero step): their ratio is what leaving out the zero steps gains;
- `cols 0.25`, `cols 0.5`: uniform values in [0.5, 1.5) with a quarter or half of the features zero
  in every row (every panel's steps at those features all zeros), against `cols 0`.

Also printed: the row panels' steps left out per call (`_cpu._skipped_zero_steps()`).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_builds import run_alternated  # noqa: E402

CHILD = r"""
import json, os, sys, time
sys.meta_path[:] = [m for m in sys.meta_path if "Redirecting" not in type(m).__name__]
if os.environ.get("FUSEDMLP_PKG"):
    sys.path.insert(0, os.environ["FUSEDMLP_PKG"])
import numpy as np
from fusedmlp import _cpu
reps, nt = int(os.environ["REPS"]), int(os.environ["THREADS"])
d = np.load(os.path.join(os.environ["FUSEDMLP_DATA"], "fashion_mnist.npz"))
fashion = d["X_train"][:2400].reshape(2400, -1).astype(np.float32) / 255
rng = np.random.default_rng(0)
W = rng.standard_normal((784, 300)).astype(np.float32)
uniform = (rng.random((2400, 784)) + 0.5).astype(np.float32)
cases = {"fashion": fashion, "dense": fashion + np.float32(1e-3)}
for part in (0.0, 0.25, 0.5):
    a = uniform.copy()
    a[:, rng.random(784) < part] = 0
    cases[f"cols {part:g}"] = a
out = {}
for name, a in cases.items():
    _cpu.gemm_f32(a, W, n_threads=nt)
    skipped = _cpu._skipped_zero_steps()[1]
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        _cpu.gemm_f32(a, W, n_threads=nt)
        ts.append(time.perf_counter() - t)
    skipped = (_cpu._skipped_zero_steps()[1] - skipped) / reps
    out[name] = (1e3 * float(np.median(ts)), skipped)
print(json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    pkgs = args.dirs or [None]
    envs = {pkg: dict(FUSEDMLP_DATA=args.data, REPS=str(args.reps), THREADS=str(args.threads),
                      FUSEDMLP_PKG=os.path.abspath(pkg) if pkg else "") for pkg in pkgs}
    results = run_alternated(CHILD, envs, rounds=2)
    for pkg in pkgs:
        runs = results[pkg]
        best = {n: min(r[n][0] for r in runs) for n in runs[0]}
        print(f"{pkg or 'fusedmlp'} (ms, the lower of {len(runs)} runs' medians; steps left out "
              "per call)")
        for n in runs[0]:
            ref = "dense" if n in ("fashion", "dense") else "cols 0"
            print(f"  {n:10s} {best[n]:8.3f}  x{best[n] / best[ref]:.3f} of {ref:6s}  "
                  f"{runs[0][n][1]:8.0f}")


if __name__ == "__main__":
    main()
