"""Train the same MLPClassifier with fusedmlp and with scikit-learn, side by side.

    python -m fusedmlp.demo                       # digits, which ships with scikit-learn
    python -m fusedmlp.demo --npz fashion_mnist.npz   # X_train/y_train/X_test/y_test arrays

Prints each library's test accuracy and training time, and the speed-up.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

import fusedmlp
from fusedmlp import MLPClassifier


def load(npz):
    if npz is None:
        X, y = load_digits(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(
            X / 16.0, y, test_size=0.25, random_state=0, stratify=y
        )
        return "digits (scikit-learn)", X_train, X_test, y_train, y_test
    d = np.load(npz)
    scale = 255.0 if d["X_train"].dtype == np.uint8 else 1.0
    return npz, d["X_train"] / scale, d["X_test"] / scale, d["y_train"], d["y_test"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", help="a .npz file with X_train, y_train, X_test, y_test")
    parser.add_argument("--hidden", default="256,128", help="hidden layer sizes (default 256,128)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs (default 50)")
    args = parser.parse_args(argv)

    name, X_train, X_test, y_train, y_test = load(args.npz)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    params = dict(hidden_layer_sizes=hidden, max_iter=args.epochs, random_state=0)
    print(f"data: {name}, {X_train.shape[0]} training rows x {X_train.shape[1]} features, "
          f"{len(np.unique(y_train))} classes")
    print(f"model: MLPClassifier(hidden_layer_sizes={hidden}, max_iter={args.epochs}, solver='adam')")
    print(f"fusedmlp {fusedmlp.__version__}, CPU kernels: {fusedmlp.cpu_isa()}\n")

    rows = []
    for label, est in (
        ("scikit-learn", SklearnMLPClassifier(**params)),
        ("fusedmlp float32", MLPClassifier(**params)),
        ("fusedmlp float64", MLPClassifier(dtype="float64", **params)),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            est.fit(X_train, y_train)
            seconds = time.perf_counter() - start
        rows.append((label, est.score(X_test, y_test), seconds))

    print(f"{'library':<18} {'test accuracy':>13} {'fit seconds':>12} {'speed-up':>9}")
    for label, acc, seconds in rows:
        print(f"{label:<18} {acc:>13.4f} {seconds:>12.3f} {rows[0][2] / seconds:>8.1f}x")


if __name__ == "__main__":
    main()
