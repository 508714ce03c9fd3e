"""What a user is told when the GPU cannot be used, through the simulator's stand-ins for the
machines users have: no driver, no device, a driver older than the engine's CUDA runtime."""
import warnings

import numpy as np
import pytest

import fusedmlp
from fusedmlp import _engine
from fusedmlp import MLPClassifier

X = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
y = np.arange(40) % 2


@pytest.fixture
def simulated(monkeypatch):
    monkeypatch.setenv("FUSEDMLP_CUDA_SIMULATOR", "1")
    monkeypatch.setattr(_engine, "_reported", set())

    def machine(driver):
        if driver is None:
            monkeypatch.delenv("FUSEDMLP_CUDA_SIM_DRIVER", raising=False)
        else:
            monkeypatch.setenv("FUSEDMLP_CUDA_SIM_DRIVER", driver)

    return machine


def test_status_of_the_simulated_machines(simulated):
    from fusedmlp import _cuda_sim

    simulated(None)
    assert _cuda_sim.device_status() == {"count": 1, "driver_version": 13000, "runtime_version": 13000,
                                         "error_name": "", "error_text": ""}
    simulated("old")
    status = _cuda_sim.device_status()
    assert (status["count"], status["driver_version"], status["error_name"]) == (0, 12040, "cudaErrorInsufficientDriver")
    assert status["error_text"] == "CUDA driver version is insufficient for CUDA runtime version"
    simulated("absent")
    assert _cuda_sim.device_status()["driver_version"] == 0
    simulated("nodevice")
    assert _cuda_sim.device_status()["error_name"] == "cudaErrorNoDevice"


def test_driver_too_old_is_named_with_the_version_it_needs(simulated):
    simulated("old")
    with pytest.raises(ValueError, match=r"driver supports CUDA 12\.4.*built with CUDA 13\.0.*R580 or newer"):
        MLPClassifier(device="cuda", max_iter=2).fit(X, y)
    # "auto" still trains, on the CPU, and says once why the GPU was not used
    with pytest.warns(RuntimeWarning, match="cudaErrorInsufficientDriver"):
        clf = MLPClassifier(device="auto", max_iter=2).fit(X, y)
    assert clf.predict(X).shape == (40,)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        MLPClassifier(device="auto", max_iter=2).fit(X, y)


@pytest.mark.parametrize("driver, reason", [("absent", "no NVIDIA driver is installed"),
                                            ("nodevice", "reports no CUDA device")])
def test_machine_without_a_gpu_is_quiet_on_auto_and_clear_on_cuda(simulated, driver, reason):
    simulated(driver)
    with pytest.raises(ValueError, match=reason):
        MLPClassifier(device="cuda", max_iter=2).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        MLPClassifier(device="auto", max_iter=2).fit(X, y)


def test_real_module_reports_its_runtime():
    try:
        from fusedmlp import _cuda
    except ImportError:
        pytest.skip("built without the CUDA engine")
    status = _cuda.device_status()
    assert status["runtime_version"] >= 11000
    if status["count"] == 0:
        assert status["error_name"].startswith("cuda")
        count, reason, problem = _engine.cuda_status(_cuda)
        assert count == 0 and reason
        _engine._reported.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert fusedmlp.cuda_available() is False
        assert [str(w.message) for w in caught] == ([f"fusedmlp cannot use the GPU: {reason}."] if problem else [])
