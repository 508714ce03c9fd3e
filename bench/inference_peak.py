"""The 10,000-row prediction against the machine's multiply-add peak, beside ONNX Runtime.

    python bench/inference_peak.py [--data DIR] [--rounds R] [--calls N] [--threads T]
                                   [--peak-iters I] [--settle S]

A Fashion-MNIST 784-300-100-10 classifier (1 epoch on 5,000 rows, float32, as in the suite's
inference case) predicts the 10,000 test rows. Round after round, in one process: the machine's
float32 multiply-add peak on T threads (bench/peak_flops.c, compiled here with gcc for the kernels
fusedmlp runs, -mavx512f -mfma or -mavx2 -mfma, and run as a child process), then the median of N
calls (after one more) of each of: fusedmlp's `predict`; its three products alone (`_cpu.gemm_f32`
with the bias and activation epilogue, each product over all the rows on the team, packing its
weights: not predict's schedule, which runs each thread's slices of rows through the whole network
with the weights packed once); and ONNX Runtime's session (T intra-op threads) when installed.
Each round's figures are printed as milliseconds and as a fraction of that round's peak (the
network's 2 x 10,000 x (784 x 300 + 300 x 100 + 100 x 10) multiply-adds per call). The summary
gives each call's median time, its GFLOP/s at that time and the median of its per-round fractions
of the peak (not the median time over the median peak), then the ratio to ONNX Runtime and the
fraction of the peak a speed-up of 1.2x over it would need, round by round. With --settle S each
round also times each library's N calls one by one, each after gc.collect() and S seconds of sleep
("after a pause": the suite's inference case pauses so before each call, though it alternates the
libraries call by call). --peak-iters I: the multiply-add steps of each of the peak program's 7
runs. With `LD_PRELOAD` of
bench/avx2_only.c every library in the process, and the peak's program, run their AVX2 code.
"""

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from fusedmlp import MLPClassifier, _cpu
from fusedmlp.bench import (fashion_mnist, find_data_dir, median_seconds, mlp_params,
                            onnx_runtime_predictor)

UNITS = [784, 300, 100, 10]
PEAK_SOURCE = Path(__file__).with_name("peak_flops.c")
ORT = "ONNX Runtime"
AFTER_PAUSE = ", after a pause"


def build_peak(directory):
    """bench/peak_flops.c compiled for the instruction set fusedmlp runs."""
    if shutil.which("gcc") is None:
        sys.exit("inference_peak: gcc is needed to build bench/peak_flops.c")
    isa = _cpu.active_isa()
    flags = {"avx512": ["-mavx512f", "-mfma"], "avx2": ["-mavx2", "-mfma"]}.get(isa)
    if flags is None:
        sys.exit(f"inference_peak: no multiply-add peak program for fusedmlp's '{isa}' kernels")
    exe = Path(directory) / "peak_flops"
    out = subprocess.run(["gcc", "-O2", *flags, "-fopenmp", str(PEAK_SOURCE), "-o", str(exe)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"inference_peak: gcc could not build {PEAK_SOURCE}:\n{out.stderr}")
    return exe


def peak_gflops(exe, threads, iters):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([str(exe), str(iters)], env=env, capture_output=True, text=True)
    found = re.search(r"([0-9.]+) GFLOP/s", out.stdout)
    if out.returncode != 0 or found is None:
        sys.exit(f"inference_peak: the peak program failed (exit {out.returncode}): "
                 f"{out.stdout}{out.stderr}")
    return float(found.group(1))


def network_products(est, X, threads):
    """A callable computing a fitted float32 network's products alone on X (each hidden layer's
    product with its bias and the estimator's activation, the last with its bias only: the
    output's softmax is not a product), and the list of the layers' output buffers it writes."""
    W, b = est.coefs_, est.intercepts_
    hidden = [np.empty((X.shape[0], w.shape[1]), np.float32) for w in W]

    def products():
        a = X
        for i, (w, bias) in enumerate(zip(W, b)):
            act = est.activation if i < len(W) - 1 else "identity"
            _cpu.gemm_f32(a, w, epilogue="bias_activation", activation=act, bias=bias,
                          n_threads=threads, out=hidden[i])
            a = hidden[i]

    return products, hidden


def of_peak(flops, seconds, peak):
    """The fraction of a peak of `peak` GFLOP/s that `flops` in `seconds` run at."""
    return flops / seconds / 1e9 / peak


def summary(rounds, flops, names):
    """The summary's lines for rounds of {"peak": GFLOP/s, name: seconds of one call}."""
    med = {k: float(np.median([r[k] for r in rounds])) for k in ("peak", *names)}
    lines = [f"median peak {med['peak']:.1f} GFLOP/s"]
    for k in names:
        frac = float(np.median([of_peak(flops, r[k], r["peak"]) for r in rounds]))
        lines.append(f"{k}: {med[k] * 1e3:.2f} ms, {flops / med[k] / 1e9:.1f} GFLOP/s, "
                     f"{frac:.3f} of the round's peak (median of rounds)")
    for suffix in ("", AFTER_PAUSE):
        ort, fm = ORT + suffix, "fusedmlp predict" + suffix
        if ort not in names or fm not in names:
            continue
        ratios = [r[ort] / r[fm] for r in rounds]
        need = [of_peak(1.2 * flops, r[ort], r["peak"]) for r in rounds]
        lines.append(f"{ort} / {fm}: median {np.median(ratios):.3f}x "
                     f"(rounds {min(ratios):.3f}-{max(ratios):.3f})")
        lines.append(f"1.2x {ort} needs the call at {np.median(need):.3f} of the round's peak "
                     f"(rounds {min(need):.3f}-{max(need):.3f})")
    return lines


def median_after_pauses(fn, calls, settle):
    """The median of `calls` calls of fn, each after gc.collect() and `settle` seconds of sleep
    (the suite's inference case pauses so before each call, its libraries' threads gone idle)."""
    times = []
    for _ in range(calls):
        gc.collect()
        time.sleep(settle)
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak-iters", type=int, default=20_000_000,
                    help="multiply-add steps of each of the peak program's 7 runs")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="also time each library's calls one by one after this many seconds of "
                         "pause (the suite's inference case pauses 0.2 s before each call)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_peak(tmp)
        X, y, X_test, _, name = fashion_mnist(find_data_dir(args.data), np.float32)
        X_test = np.ascontiguousarray(X_test[:10000])
        n = X_test.shape[0]
        flops = 2.0 * n * sum(a * b for a, b in zip(UNITS[:-1], UNITS[1:]))
        est = MLPClassifier(n_threads=args.threads, **mlp_params(UNITS, max_iter=1)).fit(X[:5000], y[:5000])
        products, _ = network_products(est, X_test, args.threads)
        calls = {"fusedmlp predict": lambda: est.predict(X_test), "fusedmlp's three products": products}
        ort, why_not = onnx_runtime_predictor(est, X_test, args.threads)
        if ort is None:
            print(f"{ORT}: {why_not}")
        else:
            calls[ORT] = lambda: ort.predict(X_test)
        rounds = []
        for _ in range(args.rounds):
            row = {"peak": peak_gflops(exe, args.threads, args.peak_iters)}
            for k, fn in calls.items():
                row[k] = median_seconds(fn, args.calls)
            if args.settle > 0:
                for k, fn in calls.items():
                    row[k + AFTER_PAUSE] = median_after_pauses(fn, args.calls, args.settle)
            rounds.append(row)

    print(f"{name}, {n:,} rows, {UNITS}, float32; fusedmlp's {_cpu.active_isa()} kernels, "
          f"{args.threads} thread(s); {args.rounds} rounds of {args.calls} calls each")
    names = [k for k in rounds[0] if k != "peak"]
    print(f"{'round':>5} {'peak GFLOP/s':>12} " + " ".join(f"{k + ' ms (of peak)':>34}" for k in names))
    for i, row in enumerate(rounds):
        cells = [f"{row[k] * 1e3:8.2f} ({of_peak(flops, row[k], row['peak']):.3f})" for k in names]
        print(f"{i:>5} {row['peak']:>12.1f} " + " ".join(f"{c:>34}" for c in cells))
    print("\n".join(summary(rounds, flops, names)))


if __name__ == "__main__":
    main()
