import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

# A new trainer starts on one thread when the machine looks oversubscribed (csrc/cpu/threads.h):
# tests that need a team to run (the thread-count comparisons, the fork tests) must not depend
# on what else the machine runs, so the check is off here and in the processes the tests start,
# except in the test of the check itself (test_contention.py).
os.environ["FUSEDMLP_CHECK_LOAD"] = "0"

# The suite tests the installed fusedmlp (the README's first command builds and installs it; the
# test command installs only the test group, so the extension is built once).
try:
    import fusedmlp  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.exit(f"fusedmlp is not installed here ({exc}). Install it first: pip install .", returncode=4)

# The CPU kernels' instruction sets this CPU can run (fusedmlp._cpu.set_isa), from the portable
# one up.
from fusedmlp import _cpu  # noqa: E402 (after the check above)

_ISA_ORDER = ("generic", "avx2", "avx512")
CPU_ISAS = [i for i in _ISA_ORDER if _ISA_ORDER.index(i) <= _ISA_ORDER.index(_cpu.best_isa())]

# Real datasets beside the project (../shared/data), or where FUSEDMLP_DATA points.
DATA_DIR = Path(os.environ.get("FUSEDMLP_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_npz(name):
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"dataset {path} is not present")
    return np.load(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@contextmanager
def python_sigint_handler():
    """Ctrl-C as an interactive Python session has it: SIGINT raises KeyboardInterrupt here, and
    processes started inside the block receive SIGINT's default action (Python installs its
    handler at start-up). A test run started with SIGINT ignored (a background job of a
    non-interactive shell, `nohup ... &`) passes the ignore on to Python, which then keeps it:
    the Ctrl-C tests would wait for a signal nothing receives."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def sigint_after(seconds):
    """Sends this process SIGINT (Ctrl-C) after `seconds`, with Python's SIGINT handler in place;
    yields a list that receives the time.perf_counter() of the sending."""
    fired = []

    def interrupt():
        fired.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    with python_sigint_handler():
        timer = threading.Timer(seconds, interrupt)
        timer.start()
        try:
            yield fired
        finally:
            timer.cancel()
            timer.join()


def engine_problem(loss, n, d, n_out, dtype=np.float64, seed=0):
    """Inputs X (n x d) and targets Y (n x n_out) suited to one of the engines' losses."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    if loss in ("squared_error", "absolute_error", "huber", "quantile"):
        Y = rng.standard_normal((n, n_out))
    elif loss == "poisson":
        Y = rng.poisson(1.5, (n, n_out)).astype(float)
    elif loss == "log_loss":
        Y = np.eye(n_out)[rng.integers(0, n_out, n)]
    else:
        Y = (rng.random((n, n_out)) < 0.4).astype(float)
    return X, np.ascontiguousarray(Y, dtype=dtype)
