"""How far the order of a GEMM's sums moves training: the CUDA engine on the simulator with split-k
(the simulator's 108 multiprocessors) against the same training with split-k off
(FUSEDMLP_CUDA_SPLIT_K=0), float64 and float32.

    python bench/split_k_rounding.py [--epochs 6]

A 300-40-3 tanh network, squared error, 450 random rows (seeded), Adam at batch 200 (the first
layer's forward product splits 9 ways, both weight gradients 6 ways). Prints the largest absolute
difference of the weights and the largest relative one among weights above 1e-3: the size of a
rounding perturbation after that many epochs, which docs/cuda.md compares with the tolerances of the
GPU tests (a GPU's fused multiply-adds are a perturbation of the same kind).
"""

import argparse
import os

import numpy as np


def train(dtype, split_k, epochs):
    os.environ["FUSEDMLP_CUDA_SPLIT_K"] = split_k  # read when an engine is built
    from fusedmlp import _cuda_sim

    rng = np.random.default_rng(0)
    units = [300, 40, 3]
    X = rng.standard_normal((450, units[0])).astype(dtype)
    Y = rng.standard_normal((450, units[-1])).astype(dtype)
    order = np.random.default_rng(7).permutation(450).astype(np.int64)
    engine = getattr(_cuda_sim, "TrainerF64" if dtype == np.float64 else "TrainerF32")(
        units, "tanh", "squared_error", "", {})
    p = np.random.default_rng(8).uniform(-0.1, 0.1, engine.n_params).astype(dtype)
    opt = {"m": np.zeros_like(p), "v": np.zeros_like(p), "t": np.zeros(1, np.int64)}
    hyper = dict(solver="adam", batch_size=200, learning_rate=0.01, alpha=1e-3, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, momentum=0.9, nesterov=True, dropout_seed=0, epoch=0)
    for _ in range(epochs):
        engine.run_epoch(X, Y, None, order, p, opt, hyper)
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    for dtype in (np.float64, np.float32):
        split, unsplit = train(dtype, "1", args.epochs), train(dtype, "0", args.epochs)
        diff = np.abs(split - unsplit)
        big = np.abs(unsplit) > 1e-3
        print(f"{np.dtype(dtype).name}: {args.epochs} epochs, weights differ by at most {diff.max():.3g} "
              f"(absolute), {(diff[big] / np.abs(unsplit[big])).max():.3g} (relative, weights above 1e-3)")
    os.environ.pop("FUSEDMLP_CUDA_SPLIT_K", None)


if __name__ == "__main__":
    main()
