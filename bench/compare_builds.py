"""Two builds of fusedmlp side by side: did a change make anything slower?

    python bench/compare_builds.py OLD_DIR NEW_DIR [--rounds 3] [--data ../shared/data] [--busy]
                                   [--cases california,fashion32,fashion64,fashion_dtype64,
                                            mnist32,predict,predict_short,rows]

Each directory holds an installed fusedmlp package (e.g. `pip install --no-deps --target DIR .`
on each commit, with `-Ccmake.define.FUSEDMLP_CUDA=OFF` to save time). The builds run in turns
(old, new; new, old; ...) in fresh processes, each timing the cases below in process; the medians
over rounds and the new/old ratios are printed. --busy adds one busy process per core for the
whole run (contention). An editable install of fusedmlp in the running Python is bypassed.

Cases: seconds per epoch (the difference of fits of two lengths) and the once-per-fit cost for
California housing 8-50-50-50-1 and Fashion-MNIST 784-300-100-10 with float32 and float64 data
(batch 200, Adam, float32 model), the Fashion-MNIST network with `dtype="float64"`
(`fashion_dtype64`: float64 products), the same network on MNIST with float32 data (`mnist32`: its
pixels are zeros four times in five, Fashion-MNIST's one in two; needs mnist.npz, and is among the
default cases); predict_proba and predict on
10,000 Fashion-MNIST rows, predict on one; `predict_short`: predict_proba of 10,000 rows by an
`n_threads=1` model and of 700 rows by a two-thread one (too short for slices: layer by layer, on
the team or on one thread as the model's timings chose), predict of California housing's 20,640
rows by an `n_threads=1` 8-50-50-50-1 model (rows without zero steps);
`rows`: one-row predict calls for 5 s straight on a model just fitted on 3,000 Fashion-MNIST rows
(its first calls included, as a user's loop has them): the median and slowest call, the calls
made, and those that ran on a thread team. Printed: the medians over rounds, new/old, and in how
many rounds the new build's figure was the higher.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASES = ("california", "fashion32", "fashion64", "fashion_dtype64", "mnist32", "predict",
         "predict_short", "rows")

CHILD = r"""
import json, os, sys, time, warnings
sys.meta_path[:] = [m for m in sys.meta_path if "Redirecting" not in type(m).__name__]
sys.path.insert(0, os.environ["FUSEDMLP_PKG"])
import numpy as np
import fusedmlp
assert fusedmlp.__file__.startswith(os.environ["FUSEDMLP_PKG"]), fusedmlp.__file__
from fusedmlp import MLPClassifier, MLPRegressor
warnings.simplefilter("ignore")
data = os.environ["FUSEDMLP_DATA"]
d = np.load(os.path.join(data, "california_housing.npz"))
Xc = (d["X"] - d["X"].mean(0)) / d["X"].std(0)
yc = d["y"]
f = np.load(os.path.join(data, "fashion_mnist.npz"))
Xf64 = f["X_train"] / 255.0
Xf = Xf64.astype(np.float32)
yf = f["y_train"]

def per_epoch(make, X, y, n1, n2):
    runs = []
    for _ in range(3):
        t = time.perf_counter(); make(n1).fit(X, y); a = time.perf_counter() - t
        t = time.perf_counter(); make(n2).fit(X, y); b = time.perf_counter() - t
        epoch = (b - a) / (n2 - n1)
        runs.append((epoch, a - n1 * epoch))
    return sorted(runs)[1]

never_stop = dict(tol=0, n_iter_no_change=10**9, random_state=0)
cases = os.environ["FUSEDMLP_CASES"].split(",")
out = {}
if "california" in cases:
    out["california epoch (ms)"], out["california per fit (ms)"] = (1e3 * v for v in per_epoch(
        lambda n: MLPRegressor(hidden_layer_sizes=(50, 50, 50), max_iter=n, **never_stop),
        Xc, yc, 5, 45))
if "fashion32" in cases:
    out["fashion float32 epoch (s)"], out["fashion float32 per fit (s)"] = per_epoch(
        lambda n: MLPClassifier((300, 100), max_iter=n, **never_stop), Xf, yf, 1, 3)
if "fashion64" in cases:
    out["fashion float64 data epoch (s)"], out["fashion float64 data per fit (s)"] = per_epoch(
        lambda n: MLPClassifier((300, 100), max_iter=n, **never_stop), Xf64, yf, 1, 3)
if "fashion_dtype64" in cases:
    out["fashion dtype=float64 epoch (s)"], out["fashion dtype=float64 per fit (s)"] = per_epoch(
        lambda n: MLPClassifier((300, 100), max_iter=n, dtype="float64", **never_stop),
        Xf64, yf, 1, 3)
if "mnist32" in cases:
    mnist = np.load(os.path.join(data, "mnist.npz"))
    Xm = (mnist["X_train"] / 255.0).astype(np.float32)
    out["mnist float32 epoch (s)"], out["mnist float32 per fit (s)"] = per_epoch(
        lambda n: MLPClassifier((300, 100), max_iter=n, **never_stop), Xm, mnist["y_train"], 1, 3)
if "predict" in cases:
    m = MLPClassifier((300, 100), max_iter=1, random_state=0).fit(Xf64[:2000], yf[:2000])
    ts = []
    for _ in range(15):
        t = time.perf_counter(); m.predict_proba(Xf[:10000]); ts.append(time.perf_counter() - t)
    out["predict_proba 10k rows (ms)"] = 1e3 * float(np.median(ts))
    ts = []
    for _ in range(15):
        t = time.perf_counter(); m.predict(Xf[:10000]); ts.append(time.perf_counter() - t)
    out["predict 10k rows (ms)"] = 1e3 * float(np.median(ts))
    ts = []
    for _ in range(3000):
        t = time.perf_counter(); m.predict(Xf64[:1]); ts.append(time.perf_counter() - t)
    out["predict 1 row (us)"] = 1e6 * float(np.median(ts))
if "predict_short" in cases:
    # (calls whose products pack the weights themselves: one thread, and a call too short for
    # slices, layer by layer on the team; California housing's rows have no zero steps)
    m = MLPClassifier((300, 100), max_iter=1, random_state=0).fit(Xf64[:2000], yf[:2000])
    alone = MLPClassifier((300, 100), max_iter=1, random_state=0, n_threads=1).fit(
        Xf64[:2000], yf[:2000])
    reg = MLPRegressor(hidden_layer_sizes=(50, 50, 50), max_iter=2, random_state=0,
                       n_threads=1).fit(Xc, yc)
    Xc32 = Xc.astype(np.float32)
    for name, call, calls in (
            ("n_threads=1 predict_proba 10k rows (ms)", lambda: alone.predict_proba(Xf[:10000]),
             15),
            ("predict_proba 700 rows (ms)", lambda: m.predict_proba(Xf[:700]), 200),
            ("n_threads=1 California predict 20k rows (ms)", lambda: reg.predict(Xc32), 40)):
        ts = []
        for _ in range(calls):
            t = time.perf_counter(); call(); ts.append(time.perf_counter() - t)
        out[name] = 1e3 * float(np.median(ts))
if "rows" in cases:
    from fusedmlp import _cpu
    m = MLPClassifier((300, 100), max_iter=2, random_state=0).fit(Xf[:3000], yf[:3000])
    row = Xf[:1]
    teams = getattr(_cpu, "team_predictions", lambda: (0, 0))
    team0 = teams()[1]
    ts = []
    end = time.perf_counter() + 5.0
    while time.perf_counter() < end:
        t = time.perf_counter(); m.predict(row); ts.append(time.perf_counter() - t)
    out["rows: median call (us)"] = 1e6 * float(np.median(ts))
    out["rows: slowest call (ms)"] = 1e3 * max(ts)
    out["rows: calls in 5 s"] = len(ts)
    out["rows: calls on a team"] = teams()[1] - team0
print(json.dumps(out))
"""


def run_alternated(child, envs, rounds, busy=False):
    """The child program's JSON output per round for each side, the sides run in turns in fresh
    processes (old, new; new, old; ...: envs' order, then reversed), each with its environment
    (envs: a side's name, e.g. "old"/"new" -> the variables added to os.environ); busy: one busy
    process per core for the whole run."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)] if busy else []
    results = {name: [] for name in envs}
    try:
        for round_ in range(rounds):
            for name in list(envs) if round_ % 2 == 0 else list(envs)[::-1]:
                run = subprocess.run([sys.executable, "-c", child], env=dict(os.environ, **envs[name]),
                                     capture_output=True, text=True, check=True)
                results[name].append(json.loads(run.stdout))
    finally:
        for p in hogs:
            p.kill()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=os.environ.get("FUSEDMLP_DATA", "../shared/data"))
    parser.add_argument("--busy", action="store_true", help="one busy process per core")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    args = parser.parse_args()
    envs = {name: dict(FUSEDMLP_PKG=str(Path(getattr(args, name)).resolve()),
                       FUSEDMLP_DATA=str(Path(args.data).resolve()), FUSEDMLP_CASES=args.cases)
            for name in ("old", "new")}
    results = run_alternated(CHILD, envs, args.rounds, args.busy)
    print(f"{'case':44s} {'old':>10s} {'new':>10s} {'new/old':>8s} {'new higher':>10s}"
          f"   (medians of {args.rounds} rounds{', busy cores' if args.busy else ''})")
    for key in results["old"][0]:
        old = statistics.median(r[key] for r in results["old"])
        new = statistics.median(r[key] for r in results["new"])
        higher = sum(n[key] > o[key] for o, n in zip(results["old"], results["new"]))
        ratio = f"{new / old:8.3f}" if old else f"{'-':>8s}"
        print(f"{key:44s} {old:10.4f} {new:10.4f} {ratio} {higher:>4d} of {args.rounds}")


if __name__ == "__main__":
    main()
