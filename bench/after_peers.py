"""A fusedmlp fit right after other libraries' thread pools ran in the same process.

    python bench/after_peers.py [--data DIR] [--rounds N] [--epochs E] [--alone]

Each round fits PyTorch's MLP for one epoch of California housing (its OpenMP pool), multiplies two
1000 x 1000 matrices with numpy (OpenBLAS's pool, which spins for about 0.1 s after the call), then
times a fusedmlp fit of E epochs (8-50-50-50-1, batch 200, adam, default threads). Prints the
median seconds per epoch, each round's, and how many epoch segments ran on one thread and on the
full team (fusedmlp._cpu.team_segments()). Beside it, the same fit with nothing run before
(`--alone`) is the idle reference.
"""

import argparse
import time
import warnings

import numpy as np

from fusedmlp import MLPRegressor, _cpu
from fusedmlp.bench import TorchMLP, california, find_data_dir, mlp_params, torch_or_none


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--alone", action="store_true", help="no peer before each fit")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    X, y, _ = california(find_data_dir(args.data))
    units = [8, 50, 50, 50, 1]
    torch = None if args.alone else torch_or_none()
    peer = TorchMLP(torch, units, False, 2) if torch is not None else None
    A = np.random.default_rng(0).random((1000, 1000))
    solo0, full0 = _cpu.team_segments()
    seconds = []
    for _ in range(args.rounds):
        if not args.alone:
            if peer is not None:
                peer.fit(X, y, epochs=1)
            A @ A
        t = time.perf_counter()
        MLPRegressor(**mlp_params(units, max_iter=args.epochs)).fit(X, y)
        seconds.append((time.perf_counter() - t) / args.epochs)
    solo1, full1 = _cpu.team_segments()
    print(f"{'alone' if args.alone else 'after PyTorch and numpy'}: median {np.median(seconds) * 1e3:.2f} ms "
          f"per epoch; rounds: {' '.join(f'{s * 1e3:.1f}' for s in seconds)}; segments on one thread "
          f"{solo1 - solo0}, on the team {full1 - full0}"
          + ("" if args.alone or peer is not None else " (PyTorch absent: numpy only)"))


if __name__ == "__main__":
    main()
