"""Time est.save for a 784-512-256-10 Adam model (535k parameters): arrays stored vs DEFLATE,
in one run, median of 7 saves each, two rounds.

    python bench/save_speed.py
"""

import io
import statistics
import time
import warnings
import zipfile

import numpy as np

from fusedmlp import MLPClassifier, _archive

warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = rng.random((2000, 784), dtype=np.float32)
y = rng.integers(0, 10, 2000)
m = MLPClassifier((512, 256), max_iter=1, random_state=0).fit(X, y)
stored = _archive._member_info
deflated = lambda name, compress_type=None: stored(name, zipfile.ZIP_DEFLATED)


def timeit(info):
    _archive._member_info = info
    ts, size = [], 0
    for _ in range(7):
        b = io.BytesIO()
        t = time.perf_counter()
        m.save(b)
        ts.append(time.perf_counter() - t)
        size = len(b.getvalue())
    _archive._member_info = stored
    return statistics.median(ts) * 1e3, size / 1e6


for round_ in range(2):
    for name, info in (("deflated", deflated), ("stored", stored)):
        ms, mb = timeit(info)
        print(f"{name:9s} {ms:7.1f} ms  {mb:.2f} MB")
