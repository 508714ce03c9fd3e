"""Where a one-row prediction's time goes: the estimator, its engine, numpy, ONNX Runtime.

    python bench/one_row.py [--data DIR] [--calls N]

A Fashion-MNIST 784-300-100-10 classifier (1 epoch on 5,000 rows, float32, default threads) predicts
one row again and again: `est.predict(row)`, its kept engine's call alone (`predict_checked`, the
engine's pass with its value check, plus the label decoding), the same with n_threads=1, numpy's
`row @ coefs_[0]` (the first layer's product alone, on numpy's thread count), and ONNX Runtime's
session (2 intra-op threads) when installed. Microseconds per call, the best of 5 loops of N
calls; then how many calls ran on one thread and on the team (fusedmlp._cpu.team_predictions()).
"""

import argparse
import timeit
import warnings

import numpy as np

from fusedmlp import MLPClassifier, _cpu
from fusedmlp.bench import OnnxPredictor, fashion_mnist, find_data_dir, mlp_params


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--calls", type=int, default=5000)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    X, y, X_test, _, _ = fashion_mnist(find_data_dir(args.data), np.float32)
    units = [784, 300, 100, 10]
    row = X_test[:1].copy()
    timings = {}
    for threads in (None, 1):
        est = MLPClassifier(n_threads=threads, **mlp_params(units, max_iter=1)).fit(X[:5000], y[:5000])
        engine, params, lease = est._prediction_engine("cpu", 1)
        lease.release()
        classes = est.classes_

        def bare(engine=engine, params=params, classes=classes):
            out, _ = engine.predict_checked(row, params)
            return classes.take(out.argmax(axis=1))

        name = "default threads" if threads is None else "n_threads=1"
        timings[f"est.predict, {name}"] = lambda est=est: est.predict(row)
        timings[f"engine call + labels, {name}"] = bare
        if threads is None:
            W0 = est.coefs_[0]
            timings["numpy row @ coefs_[0]"] = lambda: row @ W0
            try:
                import onnxruntime
                from skl2onnx import to_onnx
            except ImportError:
                pass
            else:
                session = OnnxPredictor(onnxruntime, to_onnx, est, X_test[:10], 2)
                timings["ONNX Runtime session.run"] = lambda: session.predict(row)
    solo0, full0 = _cpu.team_predictions()
    for name, f in timings.items():
        f()
        best = min(timeit.repeat(f, number=args.calls, repeat=5)) / args.calls
        print(f"{name:<40} {best * 1e6:7.1f} us")
    solo1, full1 = _cpu.team_predictions()
    print(f"calls on one thread {solo1 - solo0}, on the team {full1 - full0}")


if __name__ == "__main__":
    main()
