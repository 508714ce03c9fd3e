"""Bytes the CUDA engine moves between host and device per epoch, counted by the simulator.

    FUSEDMLP_CUDA_SIMULATOR=1 python bench/device_transfers.py --data ../shared/data

Fits MLPClassifier((300, 100)) on the first 1,000 Fashion-MNIST training rows for one and for two
epochs (with and without early stopping) and prints what the second epoch added: copies and bytes
each way, device allocations, graphs instantiated. Counts, not times: no GPU is needed.
"""

import argparse
import os
import warnings

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="directory of fashion_mnist.npz")
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    os.environ["FUSEDMLP_CUDA_SIMULATOR"] = "1"
    import fusedmlp as fm
    import fusedmlp._cuda_sim as sim

    data = np.load(os.path.join(args.data, "fashion_mnist.npz"))
    X = (data["X_train"][: args.rows] / 255.0).astype(np.float32)
    y = data["y_train"][: args.rows]

    def counted_fit(epochs, **params):
        before = sim.runtime_counts()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fm.MLPClassifier((300, 100), device="cuda", max_iter=epochs, random_state=0, tol=0,
                             n_iter_no_change=99, **params).fit(X, y)
        after = sim.runtime_counts()
        return {key: after[key] - before[key] for key in before}

    for params in ({}, {"early_stopping": True}):
        one, two = counted_fit(1, **params), counted_fit(2, **params)
        print(f"{params or 'no early stopping'}")
        print("  fit of one epoch:", one)
        print("  each further epoch:", {key: two[key] - one[key] for key in one})


if __name__ == "__main__":
    main()
