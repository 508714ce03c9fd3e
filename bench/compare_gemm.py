"""Two builds of fusedmlp's CPU GEMM side by side, product by product.

    python bench/compare_gemm.py OLD_DIR[:ISA] NEW_DIR[:ISA] [--isa avx512|avx2|generic]
                                 [--rounds 8] [--dtype float32|float64] [--busy]
                                 [--epilogue none|identity|relu|tanh|relu_grad]
                                 [--a-layout row|column]
                                 [--shapes 2048x784x300x1,200x784x300x2,...]

Each directory holds an installed fusedmlp package (as for bench/compare_builds.py); a `:ISA`
suffix runs that side on other kernels (the same build on both kernels: `DIR:avx2 DIR:avx512`).
The builds run in turns (old, new; new, old; ...) in fresh processes (bench/compare_builds.py's
run_alternated; --busy: one busy process per core for the whole run); each times `_cpu.gemm_f32`
(`gemm_f64` with --dtype float64) of every shape m x k x n on t threads (`mxkxnxt`), A row-major
(or column-major, as a weight gradient's A is: --a-layout column), B row-major,
without an epilogue, with a bias and the activation --epilogue names, or relu's backward pass
against stored activations (relu_grad), C written in place, the median of calls worth 2 GFLOP
(5 to 400 calls) after three warm-up calls. Printed per shape: the medians over rounds, new/old, the median of the
rounds' ratios, in how many rounds the new build was the faster, and the new build's GFLOP/s.
With the AVX2 kernels numpy is imported with `OPENBLAS_CORETYPE=Haswell` (the proxy of an AVX2
machine on an AVX-512 one).
"""

import argparse
import os

import numpy as np

from compare_builds import run_alternated

SHAPES = ("200x784x300x1,784x200x300x1,200x300x100x1,2048x784x300x1,2048x300x100x1,"
          "200x784x300x2,4096x784x300x2")

CHILD = r"""
import json, os, sys, time
sys.meta_path[:] = [m for m in sys.meta_path if "Redirecting" not in type(m).__name__]
sys.path.insert(0, os.environ["FUSEDMLP_PKG"])
import numpy as np
from fusedmlp import _cpu
assert _cpu.__file__.startswith(os.environ["FUSEDMLP_PKG"]), _cpu.__file__
_cpu.set_isa(os.environ["FUSEDMLP_GEMM_ISA"])
dtype = np.dtype(os.environ["FUSEDMLP_GEMM_DTYPE"])
gemm = _cpu.gemm_f32 if dtype == np.float32 else _cpu.gemm_f64
act = os.environ["FUSEDMLP_GEMM_EPILOGUE"]
rng = np.random.default_rng(0)
out = {}
for spec in os.environ["FUSEDMLP_SHAPES"].split(","):
    m, k, n, threads = map(int, spec.split("x"))
    a = rng.standard_normal((m, k)).astype(dtype)
    if os.environ["FUSEDMLP_GEMM_A_LAYOUT"] == "column":
        a = np.asfortranarray(a)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.empty((m, n), dtype)
    if act == "none":
        kw = {}
    elif act == "relu_grad":
        kw = dict(epilogue="activation_grad", activation="relu",
                  aux=np.maximum(rng.standard_normal((m, n)), 0).astype(dtype))
    else:
        kw = dict(epilogue="bias_activation", activation=act,
                  bias=rng.standard_normal(n).astype(dtype))
    calls = min(400, max(5, int(2e9 / (2 * m * n * k))))
    for _ in range(3):
        gemm(a, b, n_threads=threads, out=c, **kw)
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        gemm(a, b, n_threads=threads, out=c, **kw)
        ts.append(time.perf_counter() - t)
    out[spec] = float(np.median(ts))
print(json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--isa", default="avx512", help="the kernels of a side without :ISA")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--shapes", default=SHAPES, help="comma-separated m x k x n x threads")
    parser.add_argument("--busy", action="store_true", help="one busy process per core")
    parser.add_argument("--epilogue", default="none",
                        choices=("none", "identity", "relu", "tanh", "relu_grad"),
                        help="a bias and this activation after the product, or relu's gradient")
    parser.add_argument("--a-layout", default="row", choices=("row", "column"))
    args = parser.parse_args()
    sides, envs = {}, {}
    for name in ("old", "new"):
        path, _, isa = getattr(args, name).partition(":")
        sides[name] = (os.path.abspath(path), isa or args.isa)
        envs[name] = dict(FUSEDMLP_PKG=sides[name][0], FUSEDMLP_GEMM_ISA=sides[name][1],
                          FUSEDMLP_SHAPES=args.shapes, FUSEDMLP_GEMM_DTYPE=args.dtype,
                          FUSEDMLP_GEMM_EPILOGUE=args.epilogue,
                          FUSEDMLP_GEMM_A_LAYOUT=args.a_layout)
        if sides[name][1] == "avx2":
            envs[name]["OPENBLAS_CORETYPE"] = "Haswell"
    results = run_alternated(CHILD, envs, args.rounds, args.busy)
    print(f"old: {':'.join(sides['old'])}\nnew: {':'.join(sides['new'])}\n{args.dtype}, "
          f"epilogue: {args.epilogue}, A {args.a_layout}-major")
    print(f"{'m x k x n x threads':>20} {'old (us)':>10} {'new (us)':>10} {'new/old':>8} "
          f"{'per round':>9} {'new faster':>10} {'GFLOP/s':>8}   (medians of {args.rounds} rounds"
          f"{', busy cores' if args.busy else ''})")
    for spec in args.shapes.split(","):
        old = np.array([r[spec] for r in results["old"]])
        new = np.array([r[spec] for r in results["new"]])
        m, k, n, _ = map(int, spec.split("x"))
        print(f"{spec:>20} {1e6 * np.median(old):10.1f} {1e6 * np.median(new):10.1f} "
              f"{np.median(new) / np.median(old):8.3f} {np.median(new / old):9.3f} "
              f"{int(np.sum(new < old)):>5d} of {args.rounds} {2 * m * n * k / np.median(new) / 1e9:8.1f}")


if __name__ == "__main__":
    main()
