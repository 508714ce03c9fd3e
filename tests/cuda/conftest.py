import numpy as np
import pytest

from fusedmlp import _cuda_sim


def pytest_collection_modifyitems(config, items):
    # tests marked gpu need a real CUDA device
    try:
        from fusedmlp import _cuda

        have_gpu = _cuda.device_count() > 0
    except ImportError:
        have_gpu = False
    if not have_gpu:
        skip = pytest.mark.skip(reason="no CUDA device (the same checks run on the simulator)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def simulator(monkeypatch):
    """device='cuda' runs on the CUDA engine compiled for the CPU simulator."""
    monkeypatch.setenv("FUSEDMLP_CUDA_SIMULATOR", "1")
    return _cuda_sim


@pytest.fixture(params=["simulator", pytest.param("gpu", marks=pytest.mark.gpu)])
def cuda_engine(request, monkeypatch):
    """The CUDA engine on the simulator, and on a real device when one exists."""
    if request.param == "simulator":
        monkeypatch.setenv("FUSEDMLP_CUDA_SIMULATOR", "1")
        return _cuda_sim
    monkeypatch.delenv("FUSEDMLP_CUDA_SIMULATOR", raising=False)
    from fusedmlp import _cuda

    return _cuda


class _SimNamespace:
    """numpy, with arrays presented as device arrays (see SimDeviceArray)."""

    float32, float64, int64, bool = np.float32, np.float64, np.int64, np.bool_

    def __getattr__(self, name):
        f = getattr(np, name)

        def call(*args, **kwargs):
            args = [a._a if isinstance(a, SimDeviceArray) else a for a in args]
            kwargs = {k: (v._a if isinstance(v, SimDeviceArray) else v) for k, v in kwargs.items()}
            kwargs.pop("device", None)
            out = f(*args, **kwargs)
            return SimDeviceArray(out) if isinstance(out, np.ndarray) else out

        return call


class SimDeviceArray:
    """A numpy array presented as device memory through __cuda_array_interface__: on the
    simulator, device memory is host memory, so the engine reads and writes it in place."""

    def __init__(self, a):
        self._a = np.ascontiguousarray(a)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self._a.shape, "typestr": self._a.dtype.str, "version": 3,
                "data": (self._a.ctypes.data, False), "strides": None, "stream": None}

    def __array_namespace__(self, api_version=None):
        return _SimNamespace()

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)

    def __getitem__(self, index):
        return SimDeviceArray(self._a[index])

    def __bool__(self):
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __rsub__(self, other):
        return SimDeviceArray(other - self._a)

    def __sub__(self, other):
        return SimDeviceArray(self._a - other)

    def __gt__(self, other):
        return SimDeviceArray(self._a > other)

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    device = "sim"
