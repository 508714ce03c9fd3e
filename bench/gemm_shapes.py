"""The CPU GEMM alone against numpy's matmul, on the products of a Fashion-MNIST epoch and of
prediction, in one process, interleaved.

    python bench/gemm_shapes.py [--isa avx2|avx512|generic] [--threads N] [--repeats R] [--short]
                                [--dtype float32|float64]

Shapes (m x k x n): the forward products of a 784-300-100-10 network at batch 200, the weight
gradients' shapes (m = fan_in, k = batch), the data gradient of the first hidden layer, and the
two big products of a 4,096-row prediction chunk; with --short, the first layer's product for
1 to 11 rows (one-row and small-batch prediction: fewer rows than a micro-tile). Both sides compute C = A B into a preallocated C
(fusedmlp's `_cpu.gemm_f32(out=)` or `gemm_f64(out=)` binding, numpy `matmul(out=)`), float32
unless --dtype float64, row-major operands, medians
of R calls after a warm-up. numpy's BLAS gets the same thread count through threadpoolctl. For the
AVX2 proxy on an AVX-512 machine run it as `OPENBLAS_CORETYPE=Haswell python bench/gemm_shapes.py
--isa avx2` (OpenBLAS reads its kernel choice when numpy is imported).
"""

import argparse

import numpy as np
import threadpoolctl

from fusedmlp import _cpu
from fusedmlp.bench import median_seconds

SHAPES = [(200, 784, 300), (200, 300, 100), (200, 100, 10), (784, 200, 300), (300, 200, 100),
          (200, 300, 784), (4096, 784, 300), (4096, 300, 100)]
SHORT_SHAPES = [(m, 784, 300) for m in (1, 2, 3, 4, 5, 8, 11)] + [(1, 300, 100)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", default=None, help="fusedmlp's kernels (default: the best the CPU runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--short", action="store_true", help="the short products (1 to 11 rows)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = ap.parse_args()
    if args.isa:
        _cpu.set_isa(args.isa)
    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    gemm = _cpu.gemm_f32 if dtype == np.float32 else _cpu.gemm_f64
    print(f"fusedmlp {_cpu.active_isa()} kernels, {dtype}, {args.threads} thread(s); "
          f"numpy {np.__version__} on the same thread count")
    print(f"{'m x k x n':<16} {'fusedmlp GFLOP/s':>16} {'numpy GFLOP/s':>14} {'numpy / fusedmlp time':>22}")
    with threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas"):
        for m, k, n in SHORT_SHAPES if args.short else SHAPES:
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            c = np.empty((m, n), dtype)
            t_fm = median_seconds(lambda: gemm(a, b, n_threads=args.threads, out=c), args.repeats)
            t_np = median_seconds(lambda: np.matmul(a, b, out=c), args.repeats)
            flops = 2.0 * m * n * k
            print(f"{f'{m}x{k}x{n}':<16} {flops / t_fm / 1e9:16.1f} {flops / t_np / 1e9:14.1f} {t_np / t_fm:22.2f}")


if __name__ == "__main__":
    main()
