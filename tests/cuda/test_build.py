"""The real CUDA build: compiled and linked whenever nvcc is present (pip's build uses
FUSEDMLP_CUDA=AUTO); on a machine without a GPU it loads and reports no device."""

import importlib
import shutil

import numpy as np
import pytest

import fusedmlp


def test_nvcc_build_exists_when_nvcc_does():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on the PATH: the CUDA engine is not built here")
    cuda = importlib.import_module("fusedmlp._cuda")
    assert cuda.simulated is False
    assert cuda.device_count() >= 0
    # the same API as the simulated build that the tests exercise
    sim = importlib.import_module("fusedmlp._cuda_sim")
    for name in ("TrainerF32", "TrainerF64", "gemm_f32", "gemm_f64", "device_count"):
        assert hasattr(cuda, name) and hasattr(sim, name)
    assert sorted(n for n in dir(cuda.TrainerF32) if not n.startswith("_")) == sorted(
        n for n in dir(sim.TrainerF32) if not n.startswith("_"))


def test_cuda_available_reports_real_devices_only(monkeypatch):
    monkeypatch.setenv("FUSEDMLP_CUDA_SIMULATOR", "1")  # the simulator is not a device
    try:
        from fusedmlp import _cuda
    except ImportError:
        assert fusedmlp.cuda_available() is False
        return
    assert fusedmlp.cuda_available() == (_cuda.device_count() > 0)


@pytest.mark.gpu
def test_gemm_on_the_device():
    from fusedmlp import _cuda

    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 200)).astype(np.float32)
    b = rng.standard_normal((200, 100)).astype(np.float32)
    np.testing.assert_allclose(_cuda.gemm_f32(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
