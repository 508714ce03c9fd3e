import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

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
def sigint_after(seconds):
    """Sends this process SIGINT (Ctrl-C) after `seconds`; yields a list that receives the
    time.perf_counter() of the sending."""
    fired = []

    def interrupt():
        fired.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(seconds, interrupt)
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
        timer.join()
