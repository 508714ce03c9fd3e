import importlib.util
import sys

import pytest

from fusedmlp import _cuda_sim

from . import standins


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


@pytest.fixture
def cupy(simulator, monkeypatch):
    """`import cupy` gives the CuPy 14 stand-in (standins.py) for one test."""
    if "cupy" in sys.modules or importlib.util.find_spec("cupy") is not None:
        # array_api_compat caches which classes are CuPy's: the stand-in must not shadow it
        pytest.skip("CuPy is installed: the stand-in would shadow it")
    before = set(sys.modules)
    for name, module in standins.cupy_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    yield sys.modules["cupy"]
    # forget the wrapper array_api_compat made of the stand-in (its package: scikit-learn's
    # copy, or the array_api_compat distribution)
    for name in [n for n in sys.modules if n not in before]:
        package, _, leaf = name.rpartition(".")
        if package.endswith("array_api_compat") and leaf == "cupy":
            vars(sys.modules[package]).pop("cupy", None)
        if ".array_api_compat.cupy" in name or name.startswith("array_api_compat.cupy"):
            del sys.modules[name]


@pytest.fixture
def torch_cuda(simulator, monkeypatch):
    """PyTorch with CUDA tensors on the simulator (standins.py): torch calls given a CUDA
    device make tensors that say they are on cuda:0."""
    torch = pytest.importorskip("torch")
    _, cuda_factories, current_stream = standins.torch_standin()
    monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
    with cuda_factories():
        yield torch


class DeviceLibrary:
    """One device-array library as a test uses it: arrays to the device and back the
    library's own way, and whether an object is one of its device arrays."""

    def __init__(self, name, to_device, to_host, is_device_array):
        self.name, self.to_device, self.to_host = name, to_device, to_host
        self.is_device_array = is_device_array

    def __repr__(self):
        return self.name


@pytest.fixture(params=["cupy", "torch"])
def device_lib(request):
    """CuPy arrays and PyTorch CUDA tensors, both on the simulator."""
    if request.param == "cupy":
        cupy = request.getfixturevalue("cupy")
        return DeviceLibrary("cupy", cupy.asarray, cupy.asnumpy,
                             lambda a: isinstance(a, cupy.ndarray))
    torch = request.getfixturevalue("torch_cuda")
    return DeviceLibrary("torch", lambda a: torch.asarray(a, device="cuda"),
                         lambda t: t.cpu().numpy(),
                         lambda t: isinstance(t, torch.Tensor) and t.device.type == "cuda")
