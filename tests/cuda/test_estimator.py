"""The estimators with device='cuda', on the simulator (and on a real device when one
exists): the same fits as the CPU engine, device arrays in and out, clear errors."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression

import fusedmlp as fm
from fusedmlp import _engine


def data(target, n=240):
    if target == "regression":
        X, y = make_regression(n_samples=n, n_features=9, noise=3.0, random_state=0)
        return X, y / np.std(y)
    if target == "poisson":
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, 9))
        return X, rng.poisson(np.exp(0.4 * X[:, 0]))
    if target == "multilabel":
        return make_multilabel_classification(n_samples=n, n_features=9, n_classes=3, random_state=0)
    if target == "multioutput":
        X, y = make_regression(n_samples=n, n_features=9, n_targets=2, noise=3.0, random_state=0)
        return X, y / np.std(y, axis=0)
    n_classes = 2 if target == "binary" else 4
    return make_classification(n_samples=n, n_features=9, n_informative=6, n_classes=n_classes, random_state=0)


def fit_both(target, **params):
    X, y = data(target)
    cls = fm.MLPRegressor if target in ("regression", "poisson") else fm.MLPClassifier
    kw = dict(random_state=0, max_iter=6, batch_size=50, hidden_layer_sizes=(24,))
    kw.update(params)
    if target == "poisson":
        kw["loss"] = "poisson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu = cls(device="cuda", **kw).fit(X, y)
        cpu = cls(device="cpu", **kw).fit(X, y)
    return gpu, cpu, X, y


def assert_same_fit(gpu, cpu, dtype="float32"):
    rtol = 1e-4 if dtype == "float32" else 1e-10
    if hasattr(cpu, "loss_curve_"):
        np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=rtol)
    assert gpu.loss_ == pytest.approx(cpu.loss_, rel=rtol)
    assert gpu.n_iter_ == cpu.n_iter_ and gpu.t_ == cpu.t_
    for a, b in zip(gpu.coefs_ + gpu.intercepts_, cpu.coefs_ + cpu.intercepts_):
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol * 10, atol=rtol)


@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel", "regression", "poisson"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_fit_matches_cpu_engine(cuda_engine, target, solver):
    gpu, cpu, X, y = fit_both(target, solver=solver)
    assert_same_fit(gpu, cpu)
    if target in ("regression", "poisson"):
        np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))


@pytest.mark.parametrize("hidden", [(24,), (150, 20)], ids=["fused-narrow", "gemm-wide"])
def test_float64_early_stopping_and_weights(cuda_engine, hidden):
    X, y = data("multiclass")
    sw = np.random.default_rng(1).uniform(0.2, 3, len(y))
    kw = dict(random_state=0, max_iter=8, hidden_layer_sizes=hidden, dtype="float64", early_stopping=True,
              validation_fraction=0.2, n_iter_no_change=3, batch_size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu = fm.MLPClassifier(device="cuda", **kw).fit(X, y, sample_weight=sw)
        cpu = fm.MLPClassifier(device="cpu", **kw).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(gpu.validation_scores_, cpu.validation_scores_, rtol=1e-10)
    assert_same_fit(gpu, cpu, "float64")


def test_partial_fit_and_warm_start(cuda_engine):
    X, y = data("multiclass")
    models = []
    for device in ("cuda", "cpu"):
        est = fm.MLPClassifier(device=device, random_state=0, hidden_layer_sizes=(20,))
        for _ in range(3):
            est.partial_fit(X, y, classes=np.unique(y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.set_params(warm_start=True, max_iter=3).fit(X, y)
        models.append(est)
    assert_same_fit(*models)


@pytest.mark.parametrize("target",
                         ["binary", "multiclass", "multilabel", "regression", "multioutput"])
def test_device_arrays_in_and_out(device_lib, target):
    # X on the device (CuPy, or a PyTorch CUDA tensor): fit reads it in place; predict,
    # predict_proba and predict_log_proba return arrays of its kind on its device
    X, y = data(target)
    regression = target in ("regression", "multioutput")
    cls = fm.MLPRegressor if regression else fm.MLPClassifier
    kw = dict(random_state=0, max_iter=4, hidden_layer_sizes=(16,), device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_device = cls(**kw).fit(device_lib.to_device(X.astype(np.float32)), y)
        on_host = cls(**kw).fit(X.astype(np.float32), y)
    X_device = device_lib.to_device(X)
    pred = on_device.predict(X_device)
    if target == "multilabel":  # decoded by the LabelBinarizer, on the host
        assert isinstance(pred, np.ndarray)
    else:
        assert device_lib.is_device_array(pred)
        pred = device_lib.to_host(pred)
    assert pred.shape == y.shape
    np.testing.assert_array_equal(pred, on_host.predict(X))
    if not regression:
        proba = on_device.predict_proba(X_device)
        log_proba = on_device.predict_log_proba(X_device)
        assert device_lib.is_device_array(proba) and device_lib.is_device_array(log_proba)
        np.testing.assert_allclose(device_lib.to_host(proba), on_host.predict_proba(X), rtol=1e-12)
        np.testing.assert_allclose(device_lib.to_host(log_proba), on_host.predict_log_proba(X),
                                   rtol=1e-12)
    assert on_device.score(X_device, y) == pytest.approx(on_host.score(X, y))


def test_labels_that_are_not_numbers_come_back_on_the_host(device_lib):
    X, y = data("multiclass")
    labels = np.array(["ant", "bee", "cat", "dog"])[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="cuda", max_iter=3, random_state=0).fit(X, labels)
    pred = est.predict(device_lib.to_device(X))
    assert isinstance(pred, np.ndarray)
    np.testing.assert_array_equal(pred, est.predict(X))


@pytest.mark.parametrize("target", ["multiclass", "regression"])
def test_early_stopping_and_partial_fit_on_device_arrays(device_lib, target):
    # the validation split is taken from the device array, and scored there
    X, y = data(target)
    cls = fm.MLPRegressor if target == "regression" else fm.MLPClassifier
    kw = dict(random_state=0, max_iter=8, hidden_layer_sizes=(16,), batch_size=40,
              early_stopping=True, validation_fraction=0.2, n_iter_no_change=3, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_device = cls(**kw).fit(device_lib.to_device(X), y)
        on_host = cls(**kw).fit(X, y)
    assert on_device.n_iter_ == on_host.n_iter_
    np.testing.assert_allclose(on_device.validation_scores_, on_host.validation_scores_, rtol=1e-12)
    np.testing.assert_array_equal(on_device.coefs_[0], on_host.coefs_[0])
    # a validation set of the user's own, on the device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_device = cls(**kw).fit(device_lib.to_device(X[:200]), y[:200],
                                  X_val=device_lib.to_device(X[200:]), y_val=y[200:])
        on_host = cls(**kw).fit(X[:200], y[:200], X_val=X[200:], y_val=y[200:])
    np.testing.assert_allclose(on_device.validation_scores_, on_host.validation_scores_, rtol=1e-12)

    kw.update(early_stopping=False)
    classes = {} if target == "regression" else dict(classes=np.unique(y))
    incremental, reference = cls(**kw), cls(**kw)
    for _ in range(2):
        incremental.partial_fit(device_lib.to_device(X), y, **classes)
        reference.partial_fit(X, y, **classes)
    np.testing.assert_array_equal(incremental.coefs_[0], reference.coefs_[0])
    pred = incremental.predict(device_lib.to_device(X))
    np.testing.assert_array_equal(device_lib.to_host(pred), reference.predict(X))


def test_device_array_errors(device_lib):
    X, y = data("binary")
    est = fm.MLPClassifier(device="cuda", max_iter=2)
    with pytest.raises(ValueError, match="NaN or infinity"):
        bad = X.copy()
        bad[3, 3] = np.nan
        est.fit(device_lib.to_device(bad), y)
    with pytest.raises(TypeError, match="float32 or float64"):
        est.fit(device_lib.to_device(X.astype(np.int32)), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    with pytest.raises(ValueError, match="expecting 9 features"):
        est.predict(device_lib.to_device(X[:, :4]))
    with pytest.raises(TypeError, match="device='cuda'"):
        fm.MLPClassifier(device="cpu").fit(device_lib.to_device(X), y)
    # the Perceptron trains on the CPU: the library refuses the implicit copy to the host
    with pytest.raises(TypeError, match="NumPy|numpy"):
        fm.Perceptron().fit(device_lib.to_device(X), y)


def test_the_standins_are_the_libraries_where_fusedmlp_meets_them(cupy, torch_cuda):
    # what the real libraries do, that a kinder stand-in would hide
    compat = fm._engine.array_api_compat()
    a = cupy.asarray(np.ones((3, 2)))
    assert not hasattr(a, "__array_namespace__")  # no CuPy release has one
    assert compat.get_namespace(a).__name__ == compat.__name__ + ".cupy"
    assert compat.device(a) == cupy.cuda.Device(0) and a.device.id == 0
    assert a.__cuda_array_interface__["version"] == 3 and a.__cuda_array_interface__["stream"] == 1
    with pytest.raises(TypeError, match="device"):
        cupy.empty((3, 2), dtype=cupy.float64, device=a.device)
    with pytest.raises(TypeError, match="device"):
        cupy.asarray(np.ones(3), device=a.device)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Unsupported type"):
        a - np.ones((3, 2))

    torch = torch_cuda
    t = torch.asarray(np.ones((3, 2)), device="cuda")
    assert not hasattr(t, "__array_namespace__")
    assert compat.get_namespace(t).__name__ == compat.__name__ + ".torch"
    assert compat.device(t) == torch.device("cuda", 0)
    assert t.__cuda_array_interface__["version"] == 2 and "stream" not in t.__cuda_array_interface__
    assert not hasattr(torch.ones(2), "__cuda_array_interface__")  # CPU tensors have none
    with pytest.raises(TypeError, match="cuda:0 device type tensor to numpy"):
        np.asarray(t)
    with pytest.raises(RuntimeError, match="same device"):
        t - torch.ones((3, 2))
    assert t.cpu().device.type == "cpu" and torch.empty(2, device=t.device).device == t.device


def test_sparse_input_is_a_clear_error_on_cuda(simulator):
    X, y = data("binary")
    with pytest.raises(TypeError, match="dense"):
        fm.MLPClassifier(device="cuda", max_iter=2).fit(sp.csr_matrix(X), y)


def test_auto_without_a_device_uses_the_cpu(monkeypatch):
    monkeypatch.delenv("FUSEDMLP_CUDA_SIMULATOR", raising=False)
    if fm.cuda_available():
        pytest.skip("a CUDA device is present")
    X, y = data("binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="auto", max_iter=2).fit(X, y)
    assert est.predict(X).shape == (len(y),)


class _InterfaceOnly:
    """A device array with __cuda_array_interface__ and nothing else (like a Numba array)."""

    def __init__(self, a):
        self._a = np.ascontiguousarray(a)
        self.__cuda_array_interface__ = {"shape": self._a.shape, "typestr": self._a.dtype.str, "version": 3,
                                         "data": (self._a.ctypes.data, False), "strides": None, "stream": None}

    @property
    def shape(self):
        return self._a.shape


@pytest.mark.parametrize("with_cupy", [False, True], ids=["numpy-results", "cupy-results"])
def test_device_arrays_without_a_namespace(simulator, request, with_cupy):
    # finiteness is checked on the device; the predictions come back as CuPy arrays when
    # CuPy is installed, else as numpy arrays
    cupy = request.getfixturevalue("cupy") if with_cupy else None
    X, y = data("multiclass")
    Xf = X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="cuda", max_iter=3, random_state=0).fit(_InterfaceOnly(Xf), y)
        ref = fm.MLPClassifier(device="cuda", max_iter=3, random_state=0).fit(Xf, y)
    pred = est.predict(_InterfaceOnly(Xf))
    proba = est.predict_proba(_InterfaceOnly(Xf))
    if cupy is not None:
        assert isinstance(pred, cupy.ndarray) and isinstance(proba, cupy.ndarray)
        pred, proba = cupy.asnumpy(pred), cupy.asnumpy(proba)
    assert isinstance(pred, np.ndarray) and isinstance(proba, np.ndarray)
    np.testing.assert_array_equal(pred, ref.predict(Xf))
    np.testing.assert_allclose(proba, ref.predict_proba(Xf), rtol=1e-12)
    bad = Xf.copy()
    bad[7, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        est.predict(_InterfaceOnly(bad))


def test_more_rows_than_one_grid_covers(cuda_engine):
    # per-row kernels loop over rows: prediction and the full-batch loss on 2,500 rows
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((2500, 6)), rng.standard_normal(2500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu = fm.MLPRegressor(device="cuda", solver="lbfgs", max_iter=3, random_state=0,
                              hidden_layer_sizes=(5,)).fit(X, y)
        cpu = fm.MLPRegressor(device="cpu", solver="lbfgs", max_iter=3, random_state=0,
                              hidden_layer_sizes=(5,)).fit(X, y)
    assert gpu.loss_ == pytest.approx(cpu.loss_, rel=1e-4)
    np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), rtol=1e-4, atol=1e-5)


def test_auto_weighs_the_work_of_a_training_call(simulator, monkeypatch):
    """'auto' trains on the GPU only above _engine.AUTO_GPU_MIN_MACS multiply-adds (rows x
    weights x 3 x max_iter; one epoch for partial_fit), validates and predicts where it trained,
    and keeps device arrays on the GPU whatever their size."""
    from fusedmlp import _cuda_sim

    X, y = data("binary")  # 240 rows, 9 features; (24,) hidden: 9 x 24 + 24 x 1 = 240 weights
    kw = dict(random_state=0, max_iter=3, batch_size=50, hidden_layer_sizes=(24,))
    macs = _engine.training_macs(240, [9, 24, 1], 3)
    assert macs == 3 * 240 * 240 * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_cpu = fm.MLPClassifier(device="cpu", **kw).fit(X, y)
        on_gpu = fm.MLPClassifier(device="cuda", **kw).fit(X, y)
        assert not np.array_equal(on_cpu.coefs_[0], on_gpu.coefs_[0])  # (the engines round apart)

        def copies_up(f):
            before = _cuda_sim.runtime_counts()["host_to_device"]
            f()
            return _cuda_sim.runtime_counts()["host_to_device"] - before

        # below the threshold: the CPU engine, for the fit, its early stopping and predictions
        monkeypatch.setattr(_engine, "AUTO_GPU_MIN_MACS", macs + 1)
        small = fm.MLPClassifier(device="auto", **kw)
        assert copies_up(lambda: small.fit(X, y)) == 0
        np.testing.assert_array_equal(small.coefs_[0], on_cpu.coefs_[0])
        assert copies_up(lambda: small.predict(X)) == 0
        stopping = fm.MLPClassifier(device="auto", early_stopping=True, **kw)
        assert copies_up(lambda: stopping.fit(X, y)) == 0
        # at the threshold: the GPU, and predictions stay there
        monkeypatch.setattr(_engine, "AUTO_GPU_MIN_MACS", macs)
        large = fm.MLPClassifier(device="auto", **kw)
        assert copies_up(lambda: large.fit(X, y)) > 0
        np.testing.assert_array_equal(large.coefs_[0], on_gpu.coefs_[0])
        assert copies_up(lambda: large.predict(X)) > 0
        # a refit below the threshold moves the model back, predictions with it
        large.set_params(max_iter=1)
        assert copies_up(lambda: large.fit(X, y)) == 0
        assert copies_up(lambda: large.predict(X)) == 0
        # partial_fit weighs one epoch: 3 epochs' threshold keeps it on the CPU
        monkeypatch.setattr(_engine, "AUTO_GPU_MIN_MACS", macs)
        incremental = fm.MLPClassifier(device="auto", **kw)
        assert copies_up(lambda: incremental.partial_fit(X, y, classes=[0, 1])) == 0
        # ... and later calls keep the first call's device, whatever their size
        monkeypatch.setattr(_engine, "AUTO_GPU_MIN_MACS", 0)
        assert copies_up(lambda: incremental.partial_fit(X, y)) == 0
        # device arrays stay on the GPU below the threshold, and host predictions follow them
        monkeypatch.setattr(_engine, "AUTO_GPU_MIN_MACS", 1e30)
        on_device = fm.MLPClassifier(device="auto", **kw).fit(X, y)  # (on the CPU first)
        on_device.fit(_InterfaceOnly(X), y)
        np.testing.assert_array_equal(on_device.coefs_[0], on_gpu.coefs_[0])
        assert copies_up(lambda: on_device.predict(X)) > 0
        # FUSEDMLP_AUTO_GPU_MIN_MACS replaces the threshold (a value measured on the machine)
        monkeypatch.setenv("FUSEDMLP_AUTO_GPU_MIN_MACS", f"{macs:.0f}")
        assert copies_up(lambda: fm.MLPClassifier(device="auto", **kw).fit(X, y)) > 0
        monkeypatch.setenv("FUSEDMLP_AUTO_GPU_MIN_MACS", f"{macs + 1:.0f}")
        assert copies_up(lambda: fm.MLPClassifier(device="auto", **kw).fit(X, y)) == 0
        fitted = fm.MLPClassifier(device="auto", **kw).fit(X, y)
        weights = [c.copy() for c in fitted.coefs_]
        for bad in ("many", "-1", "nan"):
            monkeypatch.setenv("FUSEDMLP_AUTO_GPU_MIN_MACS", bad)
            with pytest.raises(ValueError, match="FUSEDMLP_AUTO_GPU_MIN_MACS"):
                fitted.fit(X, y)
            with pytest.raises(ValueError, match="FUSEDMLP_AUTO_GPU_MIN_MACS"):
                fitted.partial_fit(X, y)
            # (raised before the model changed)
            assert fitted.n_iter_ == 3
            for a, b in zip(weights, fitted.coefs_):
                np.testing.assert_array_equal(a, b)


def test_auto_keeps_sparse_and_deep_networks_on_the_cpu(simulator):
    X, y = data("binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = fm.MLPClassifier(device="auto", max_iter=2, random_state=0).fit(sp.csr_matrix(X), y)
        cpu = fm.MLPClassifier(device="cpu", max_iter=2, random_state=0).fit(sp.csr_matrix(X), y)
        np.testing.assert_array_equal(auto.coefs_[0], cpu.coefs_[0])
        deep = fm.MLPClassifier(device="auto", max_iter=1, hidden_layer_sizes=(3,) * 33).fit(X, y)
        assert deep.predict(X).shape == y.shape
        with pytest.raises(ValueError, match="at most 32 layers"):
            fm.MLPClassifier(device="cuda", max_iter=1, hidden_layer_sizes=(3,) * 33).fit(X, y)
        # a model trained on the device predicts sparse input (on the CPU engine)
        dense = fm.MLPClassifier(device="cuda", max_iter=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(dense.predict(sp.csr_matrix(X)), dense.predict(X))


def test_negative_strides_on_the_device(simulator):
    X, y = data("regression")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flipped = fm.MLPRegressor(device="cuda", max_iter=2, random_state=0).fit(X[::-1], y[::-1])
        copied = fm.MLPRegressor(device="cuda", max_iter=2, random_state=0).fit(X[::-1].copy(), y[::-1])
    np.testing.assert_array_equal(flipped.coefs_[0], copied.coefs_[0])
    np.testing.assert_allclose(flipped.predict(X[::-1]), copied.predict(X[::-1].copy()))


@pytest.mark.parametrize("fit_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["multiclass", "regression"])
def test_prediction_dtypes_as_on_the_cpu(device_lib, target, fit_dtype):
    # scikit-learn's dtype (X's values times the dtype it trains in), for host and device X
    X, y = data(target)
    cls = fm.MLPRegressor if target == "regression" else fm.MLPClassifier
    method = "predict" if target == "regression" else "predict_proba"
    kw = dict(random_state=0, max_iter=2, hidden_layer_sizes=(16,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu = cls(device="cuda", **kw).fit(X.astype(fit_dtype), y)
        cpu = cls(device="cpu", **kw).fit(X.astype(fit_dtype), y)
    for predict_dtype in (np.float32, np.float64):
        Xp = X[:20].astype(predict_dtype)
        expected = getattr(cpu, method)(Xp)
        on_host = getattr(gpu, method)(Xp)
        on_device = device_lib.to_host(getattr(gpu, method)(device_lib.to_device(Xp)))
        assert on_host.dtype == expected.dtype == on_device.dtype
        np.testing.assert_allclose(on_host, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_and_partial_fit_identical_on_the_device(simulator, dtype):
    X, y = data("regression")
    kw = dict(solver="adam", random_state=1, batch_size=X.shape[0], dtype=dtype,
              hidden_layer_sizes=(16,), device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fm.MLPRegressor(max_iter=5, **kw).fit(X, y)
    b = fm.MLPRegressor(**kw)
    for _ in range(5):
        b.partial_fit(X, y)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(wa, wb)


def test_ctrl_c_stops_device_predict_and_lbfgs(simulator):
    # the simulator is slow enough for 40,000 rows to take seconds, polled between chunks of
    # 4,096 rows
    import time

    from tests.conftest import sigint_after

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40_000, 64)).astype(np.float32)
    y = rng.integers(0, 3, X.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=1, device="cuda",
                               random_state=0).fit(X[:300], y[:300])
    with sigint_after(0.5) as fired:
        with pytest.raises(KeyboardInterrupt):
            est.predict_proba(X)
        stopped = time.perf_counter()
    assert stopped - fired[0] < 1.0
    lbfgs = fm.MLPClassifier(hidden_layer_sizes=(64, 64), solver="lbfgs", max_iter=50,
                             device="cuda", random_state=0)
    with sigint_after(1.0) as fired:
        with pytest.warns(UserWarning, match="Training interrupted by user"):
            lbfgs.fit(X, y)
        stopped = time.perf_counter()
    assert stopped - fired[0] < 1.0
    assert lbfgs.predict(X[:3]).shape == (3,)


@pytest.mark.parametrize("params", [dict(loss="huber", huber_delta=0.5),
                                    dict(loss="quantile", quantile=0.3, out_activation="softplus"),
                                    dict(loss="absolute_error", activation="softplus", solver="lbfgs"),
                                    dict(out_activation="tanh", dtype="float64")])
def test_regression_heads_match_cpu_engine(cuda_engine, params):
    gpu, cpu, X, y = fit_both("regression", **params)
    assert_same_fit(gpu, cpu, params.get("dtype", "float32"))
    np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target,params", [
    ("multiclass", dict(activation="gelu", dropout=0.3, label_smoothing=0.1,
                        class_weight="balanced")),
    ("binary", dict(activation="leaky_relu", negative_slope=0.2, dropout=[0.2, 0.4],
                    hidden_layer_sizes=(24, 140), early_stopping=True)),
    ("regression", dict(activation="silu", solver="lbfgs")),
])
def test_beyond_sklearn_features_match_cpu_engine(cuda_engine, target, params):
    """Activations with stored pre-activations or a parameter, dropout (the same masks),
    label smoothing and class weights: the device trains the CPU engine's model."""
    gpu, cpu, X, y = fit_both(target, dtype="float64", **params)
    assert_same_fit(gpu, cpu, "float64")
    if params.get("early_stopping"):
        np.testing.assert_allclose(gpu.validation_loss_curve_, cpu.validation_loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("host_input", [True, False])
def test_predict_allocates_nothing_after_its_first_call(simulator, host_input, request):
    # The engine is kept across predictions and its buffers grow to one chunk (4096 rows),
    # never to the data: once a call has used a whole chunk, calls of any size allocate no
    # device memory, and copy, per chunk, X's rows (host input), the chunk's state, and the
    # outputs back. The parameters cross only when they differ from the last call's: a model
    # changed in place is seen (and predicts as changed).
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9000, 12)).astype(np.float32)  # three chunks
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="cuda", hidden_layer_sizes=(16, 8), max_iter=2,
                               random_state=0).fit(X, y)
    expected = copy.deepcopy(est).set_params(device="cpu")  # the same model on the CPU engine
    if host_input:
        X_in = X
    else:
        X_in = request.getfixturevalue("cupy").asarray(X)
    est.predict_proba(X_in[:5000])  # builds the engine, with buffers for a whole chunk
    before = simulator.runtime_counts()
    for rows in (1, 100, 9000, 4097, 3):
        proba = _engine.to_host(est.predict_proba(X_in[:rows]))
        np.testing.assert_allclose(proba, expected.predict_proba(X[:rows]), rtol=1e-5, atol=1e-6)
    after = simulator.runtime_counts()
    assert after["allocations"] == before["allocations"]
    chunks = 1 + 1 + 3 + 2 + 1
    # per chunk: the chunk's state (and the host X's rows); the parameters not at all
    per_chunk_up = 2 if host_input else 1
    assert after["host_to_device"] - before["host_to_device"] == per_chunk_up * chunks
    # per chunk: the outputs come back (host input); device input keeps them on the device
    # (the proba's copy back happens in the test's own to_host)
    if host_input:
        assert after["device_to_host"] - before["device_to_host"] == chunks
    # a weight changed in place: the parameters cross once, and the predictions follow
    params_bytes = sum(a.nbytes for a in est.coefs_ + est.intercepts_)
    for change in (lambda: est.coefs_[0].__setitem__((0, 0), est.coefs_[0][0, 0] + 1.0),
                   lambda: est.intercepts_[-1].__setitem__(0, -3.0)):
        change()
        expected = copy.deepcopy(est).set_params(device="cpu")
        sent = []
        for _ in range(2):
            before = simulator.runtime_counts()
            proba = _engine.to_host(est.predict_proba(X_in[:100]))
            sent.append(simulator.runtime_counts()["host_to_device_bytes"] - before["host_to_device_bytes"])
            np.testing.assert_allclose(proba, expected.predict_proba(X[:100]), rtol=1e-5, atol=1e-6)
        assert sent[0] - sent[1] == params_bytes


@pytest.mark.parametrize("params", [
    dict(solver="adam"),
    dict(solver="adam", early_stopping=True),
    dict(solver="sgd", dropout=0.2),
    dict(solver="lbfgs"),
    dict(solver="adam", dtype="float64"),
])
def test_the_fit_engine_goes_on_to_predict(simulator, params):
    # A fit's engine becomes the estimator's prediction engine: the first prediction builds no
    # engine (it allocates only prediction's staging, where a new engine allocates its whole
    # set) and uploads no parameter (the device already holds the fitted ones): it sends what
    # the second sends and a chunk's identity order, once. The predictions are the CPU
    # engine's for the same model.
    X, y = data("multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="cuda", hidden_layer_sizes=(64,), max_iter=5, batch_size=50,
                               random_state=0, **params).fit(X, y)
    fresh = copy.deepcopy(est)  # the same model, with no engine yet
    expected = copy.deepcopy(est).set_params(device="cpu")

    def predict(model):
        before = simulator.runtime_counts()
        proba = model.predict_proba(X[:40])
        after = simulator.runtime_counts()
        np.testing.assert_allclose(proba, expected.predict_proba(X[:40]), rtol=1e-5, atol=1e-6)
        return (after["allocations"] - before["allocations"],
                after["host_to_device_bytes"] - before["host_to_device_bytes"])

    allocated, sent = predict(est)
    allocated_fresh, sent_fresh = predict(fresh)
    params_bytes = sum(a.nbytes for a in est.coefs_ + est.intercepts_)
    assert sent_fresh - sent == params_bytes
    assert predict(est) == (0, sent - 40 * 8)
    assert allocated < allocated_fresh


def test_the_fit_engine_follows_the_model(simulator):
    # The engine kept from the fit serves predictions while the model is the one it holds:
    # weights changed in place go up before the next prediction, a refit with another
    # configuration predicts with its own engine.
    X, y = data("multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="cuda", hidden_layer_sizes=(16,), max_iter=3,
                               random_state=0).fit(X, y)
        est.coefs_[0][0, 0] += 1.0
        np.testing.assert_allclose(
            est.predict_proba(X), copy.deepcopy(est).set_params(device="cpu").predict_proba(X),
            rtol=1e-5, atol=1e-6,
        )
        est.set_params(activation="tanh", hidden_layer_sizes=(7, 5)).fit(X, y)
        np.testing.assert_allclose(
            est.predict_proba(X), copy.deepcopy(est).set_params(device="cpu").predict_proba(X),
            rtol=1e-5, atol=1e-6,
        )


def test_column_ordered_host_x_goes_to_the_device_once(simulator):
    # A chunk of rows of a column-ordered X (a DataFrame's array) spans nearly all of X: it is
    # made C-ordered on the host first, so X crosses to the device once, not once per chunk.
    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.standard_normal((9000, 12)).astype(np.float32))
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="cuda", hidden_layer_sizes=(8,), max_iter=1,
                               random_state=0).fit(X[:500], y[:500])
    est.predict(X)
    before = simulator.runtime_counts()
    pred = est.predict(X)
    sent = simulator.runtime_counts()["host_to_device_bytes"] - before["host_to_device_bytes"]
    assert X.nbytes <= sent < X.nbytes + 4096
    np.testing.assert_array_equal(pred, est.predict(np.ascontiguousarray(X)))


@pytest.fixture
def two_devices(simulator, monkeypatch):
    """The simulator with two devices, device 0 current (again after the test)."""
    monkeypatch.setenv("FUSEDMLP_CUDA_SIM_DEVICES", "2")
    simulator.set_device(0)
    yield simulator
    simulator.set_device(0)


def fit_on_device_0(n_rows, hidden, max_iter):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_rows, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="cuda", hidden_layer_sizes=hidden, max_iter=max_iter,
                               random_state=0).fit(X, y)
    return X, est


def test_engines_belong_to_the_device_they_were_built_on(two_devices):
    # Two simulated devices. An engine records the device current when it was built and runs
    # every call there, whichever device is current; the kept prediction engine is rebuilt when
    # the current device changes; device memory on another device than the engine's is a clear
    # error, not an illegal address.
    simulator = two_devices
    assert simulator.device_count() == 2
    X, est = fit_on_device_0(300, (8,), 2)
    expected = est.predict_proba(X)
    engine0 = est._prediction_engine("cuda", 1)
    engine0[2].release()
    assert engine0[0].device == 0
    simulator.set_device(1)
    np.testing.assert_array_equal(est.predict_proba(X), expected)
    engine1 = est._prediction_engine("cuda", 1)
    engine1[2].release()
    assert engine1[0].device == 1 and engine1[0] is not engine0[0]
    # a device-0 engine called while device 1 is current runs on device 0, then gives the
    # caller back device 1
    np.testing.assert_array_equal(engine0[0].predict(X, engine0[1])[:, 0].astype(np.float32),
                                  expected[:, 1])
    assert simulator.current_device() == 1
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        simulator.set_device(2)


def test_device_memory_of_another_device_is_a_clear_error(two_devices):
    simulator = two_devices
    X, est = fit_on_device_0(200, (4,), 1)
    engine = est._engine_for(est._layer_units(), "cuda", np.float32)  # on device 0
    params = est._current_params(np.float32)
    on_0 = simulator._TestDeviceArray(X)
    np.testing.assert_array_equal(engine.predict(on_0, params), engine.predict(X, params))
    simulator.set_device(1)
    on_1 = simulator._TestDeviceArray(X)  # device memory allocated on device 1
    # device 1 current, as X's device is, but the engine was built on device 0
    with pytest.raises(ValueError, match="X is on CUDA device 1 but this engine was built on device 0"):
        engine.predict(on_1, params)
    # X on device 1 while device 0 is current: the binding's own check
    simulator.set_device(0)
    with pytest.raises(ValueError, match="X is on CUDA device 1 but the current device is 0"):
        engine.predict(on_1, params)


# ---- the model stays on the device through a fit -----------------------------------------

def _counted_fit(simulator, est, X, y, **fit_params):
    before = simulator.runtime_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, **fit_params)
    after = simulator.runtime_counts()
    return {key: after[key] - before[key] for key in before}


@pytest.mark.parametrize("validation", [None, "split", "X_val"])
def test_training_keeps_the_model_on_the_device(simulator, validation):
    # The parameters and the optimizer state go to the device once per fit and come back once:
    # each further epoch moves only the row order and the batch state (and, with early
    # stopping, the validation chunk's state, its outputs and two sums back: the validation
    # set itself is on the device, as rows of X or the user's X_val copied once), and
    # allocates nothing. The model is the CPU engine's.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 30)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    fit_params = {}
    kw = dict(hidden_layer_sizes=(64,), batch_size=50, random_state=0, tol=0.0, n_iter_no_change=100)
    if validation == "split":
        kw.update(early_stopping=True, validation_fraction=0.25)
    elif validation == "X_val":
        kw.update(early_stopping=True)
        fit_params = dict(X_val=X[150:], y_val=y[150:])
        X, y = X[:150], y[:150]
    counts = {}
    for epochs in (2, 6):
        est = fm.MLPClassifier(device="cuda", max_iter=epochs, **kw)
        counts[epochs] = _counted_fit(simulator, est, X, y, **fit_params)
    per_epoch = {key: (counts[6][key] - counts[2][key]) / 4 for key in counts[2]}
    params_bytes = est._params.nbytes
    assert per_epoch["allocations"] == 0
    assert counts[2]["graphs"] == counts[6]["graphs"] == 1
    if validation is None:
        assert per_epoch["host_to_device"] == 2    # the order, the batch state
        assert per_epoch["device_to_host"] == 2    # the batch state, the weights' finiteness
    else:
        assert per_epoch["host_to_device"] == 3    # ... and the validation chunk's state
        assert per_epoch["device_to_host"] == 4    # the state, the outputs, the loss, ||W||^2
        n_val = 50
        assert per_epoch["device_to_host_bytes"] < n_val * 3 * 8 + 1024
    assert per_epoch["host_to_device_bytes"] < X.shape[0] * 8 + 1024 < params_bytes
    assert per_epoch["device_to_host_bytes"] < params_bytes
    # besides its epochs, a fit sends X, the targets (three columns), the parameters and Adam's
    # two moments once, and the validation set once: the rows' indices and targets (placed by
    # row of X, for the split), or the user's X_val and its targets
    once = counts[2]["host_to_device_bytes"] - 2 * per_epoch["host_to_device_bytes"]
    data_bytes = X.nbytes + X.shape[0] * 3 * 4
    if validation == "split":
        data_bytes += 50 * 8 + X.shape[0] * 3 * 4
    elif validation == "X_val":
        data_bytes += 50 * 8 + fit_params["X_val"].nbytes + 50 * 3 * 4
    assert data_bytes + 3 * params_bytes <= once < data_bytes + 3 * params_bytes + 1024
    cpu = fm.MLPClassifier(device="cpu", max_iter=6, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu.fit(X, y, **fit_params)
    assert_same_fit(est, cpu)
    if validation is not None:
        np.testing.assert_allclose(est.validation_scores_, cpu.validation_scores_)
        np.testing.assert_allclose(est.validation_loss_curve_, cpu.validation_loss_curve_, rtol=1e-5)
        assert est.best_validation_score_ == cpu.best_validation_score_


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_early_stopping_on_the_device_restores_the_best_weights(simulator, solver):
    # The best validated weights are kept by a device copy and restored after the last epoch,
    # also across a warm start that never beats them; the optimizer's state comes back as the
    # last epoch left it; sample weights and class weights reach the validation as on the CPU.
    X, y = data("multiclass")
    sw = np.random.default_rng(1).uniform(0.2, 3, len(y))
    kw = dict(random_state=0, max_iter=12, hidden_layer_sizes=(32,), dtype="float64", solver=solver,
              early_stopping=True, validation_fraction=0.3, n_iter_no_change=3, batch_size=30,
              learning_rate_init=0.05, class_weight="balanced")
    models = []
    for device in ("cuda", "cpu"):
        est = fm.MLPClassifier(device=device, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y, sample_weight=sw)
            first_best = est._best_params.copy()
            est.set_params(warm_start=True, max_iter=2, learning_rate_init=5.0).fit(X, y, sample_weight=sw)
        models.append((est, first_best))
    (gpu, gpu_best), (cpu, cpu_best) = models
    np.testing.assert_allclose(gpu.validation_scores_, cpu.validation_scores_, rtol=1e-10)
    np.testing.assert_allclose(gpu_best, cpu_best, rtol=1e-9, atol=1e-10)
    assert_same_fit(gpu, cpu, "float64")
    for name, value in cpu._optimizer.arrays().items():
        np.testing.assert_allclose(gpu._optimizer.arrays()[name], value, rtol=1e-9, atol=1e-12)
    # the fit's engine predicts with the restored weights (its device copy of the snapshot),
    # not the last epoch's, which the warm start at rate 5.0 made worse
    assert gpu.validation_scores_[-1] < gpu.best_validation_score_
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=1e-9, atol=1e-12)


def test_a_diverging_fit_on_the_device_ends_as_on_the_cpu(simulator):
    # The finiteness of the weights is checked on the device after every epoch: the first
    # non-finite one brings the weights back and raises scikit-learn's error.
    X, y = data("regression")
    kw = dict(solver="sgd", learning_rate_init=1e3, random_state=0, max_iter=30, hidden_layer_sizes=(20,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for device in ("cuda", "cpu"):
            est = fm.MLPRegressor(device=device, **kw)
            with pytest.raises(ValueError, match="non-finite parameter weights"):
                est.fit(X, y * 100)
            if device == "cuda":
                gpu = est
    assert gpu.n_iter_ == est.n_iter_
    np.testing.assert_array_equal(np.isfinite(gpu._params), np.isfinite(est._params))


def test_callbacks_read_the_weights_of_every_epoch_on_the_device(simulator):
    # A callback reads the estimator after each epoch: the model then crosses every epoch, and
    # what the callback sees is the CPU engine's model of that epoch.
    pytest.importorskip("sklearn.callback")
    from tests.recorder import Recorder

    X, y = data("binary")
    seen = {}
    for device in ("cuda", "cpu"):
        est = fm.MLPClassifier(device=device, max_iter=3, random_state=0, hidden_layer_sizes=(8,))
        seen[device] = Recorder()
        est.set_callbacks(seen[device])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    assert len(seen["cuda"].weights) == len(seen["cpu"].weights) == 3
    for gpu, cpu in zip(seen["cuda"].weights, seen["cpu"].weights):
        for a, b in zip(gpu, cpu):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.array_equal(seen["cuda"].weights[0][0], seen["cuda"].weights[-1][0])


def test_partial_fit_keeps_its_engine_and_reads_new_values(simulator):
    # partial_fit calls after the first reuse the engine (no device allocation, the graph
    # captured by the first) and copy only the call's data and the model, once each; arrays the
    # caller refills in place between calls are read again, as on the CPU.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 10)).astype(np.float32)
    y = rng.standard_normal(120).astype(np.float32)
    models = {}
    for device in ("cuda", "cpu"):
        est = fm.MLPRegressor(device=device, hidden_layer_sizes=(16,), batch_size=40, random_state=0)
        X_buffer, y_buffer = X.copy(), y.copy()
        counts = []
        for step in range(4):
            X_buffer[:] = X + step  # the same arrays, new values
            y_buffer[:] = y * (step + 1)
            before = simulator.runtime_counts()
            est.partial_fit(X_buffer, y_buffer)
            after = simulator.runtime_counts()
            counts.append({key: after[key] - before[key] for key in before})
        models[device] = est
        if device == "cuda":
            assert [c["allocations"] for c in counts[1:]] == [0, 0, 0]
            assert [c["graphs"] for c in counts] == [1, 0, 0, 0]  # captured once
            # X, y, the parameters and Adam's moments, the order and the batch state up
            params_bytes = est._params.nbytes
            for c in counts[1:]:
                assert c["host_to_device"] == 7
                assert X.nbytes + y.nbytes + 3 * params_bytes <= c["host_to_device_bytes"]
                assert c["host_to_device_bytes"] < X.nbytes + y.nbytes + 3 * params_bytes + 2048
    assert_same_fit(models["cuda"], models["cpu"])


def test_every_kernel_is_loaded_before_the_graph_is_captured(simulator, tmp_path):
    # A driver older than CUDA 12.3 loads kernels lazily (the default since 12.2) but cannot
    # load one during a stream capture: the first batch of an epoch that captures the sequence
    # runs uncaptured. The simulator plays such a driver in a fresh process (nothing loaded yet).
    import os
    import subprocess
    import sys

    script = tmp_path / "fit.py"
    script.write_text(
        "import warnings\n"
        "import numpy as np\n"
        "import fusedmlp as fm\n"
        "X = np.random.default_rng(0).standard_normal((100, 5)).astype(np.float32)\n"
        "y = (X[:, 0] > 0).astype(int)\n"
        "for dtype in ('float32', 'float64'):\n"
        "    with warnings.catch_warnings():\n"
        "        warnings.simplefilter('ignore')\n"
        "        est = fm.MLPClassifier((8,), device='cuda', max_iter=3, random_state=0,\n"
        "                               dtype=dtype, early_stopping=True, n_iter_no_change=9)\n"
        "        est.fit(X, y)\n"
        "        fm.MLPClassifier((8,), device='cuda', dtype=dtype).partial_fit(X, y, classes=[0, 1])\n"
        "    print(est.n_iter_, est.score(X, y))\n"
    )
    env = dict(os.environ, FUSEDMLP_CUDA_SIMULATOR="1", FUSEDMLP_CUDA_SIM_LAZY_LOADING="1")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split("\n")) == 3


def test_warm_start_in_another_dtype_keeps_early_stopping_on_the_device(simulator):
    # The best weights of a float32 fit continue in float64, as on the CPU.
    X, y = data("binary")
    models = []
    for device in ("cuda", "cpu"):
        est = fm.MLPClassifier(device=device, hidden_layer_sizes=(12,), max_iter=4, random_state=0,
                               early_stopping=True, n_iter_no_change=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y).set_params(dtype="float64", warm_start=True).fit(X, y)
        assert est._best_params.dtype == est._params.dtype == np.float64
        models.append(est)
    np.testing.assert_allclose(models[0].validation_scores_, models[1].validation_scores_)
    assert_same_fit(*models)


def test_the_resident_calls_refuse_what_is_not_an_array(simulator):
    X, y = data("binary", n=60)
    X = X.astype(np.float32)
    Y = y.reshape(-1, 1).astype(np.float32)
    engine = _engine.make_engine("cuda", np.float32, [9, 4, 1], "relu", None, "binary_log_loss")
    optimizer = {"m": np.zeros(45, np.float32), "v": np.zeros(45, np.float32),
                 "t": np.zeros(1, np.int64)}
    hyper = dict(batch_size=20, alpha=0.0, momentum=0.9, nesterov=True, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, dropout_seed=0, epoch=0, solver="adam", learning_rate=0.001)
    order = np.arange(60, dtype=np.int64)
    with pytest.raises(TypeError, match="params must be a numpy array"):
        engine.run_epoch(X, Y, None, order, [0.0] * 45, optimizer, hyper)
    with pytest.raises(TypeError, match="sample_weight must be a numpy array"):
        engine.run_epoch(X, Y, [1.0] * 60, order, None, optimizer, hyper)
    engine.load_training_data(X, Y, None)
    with pytest.raises(TypeError, match="sample_weight_val must be a numpy array"):
        engine.set_validation(None, order[:10], Y[:10], [1.0] * 10)
    with pytest.raises(RuntimeError, match="no device-resident parameters"):
        engine.run_epoch(X, Y, None, order, None, optimizer, hyper)
    with pytest.raises(ValueError, match="no validation set"):
        engine.evaluate(0.0)
    with pytest.raises(IndexError):
        engine.set_validation(None, np.array([0, 60]), Y[:2], None)
    engine.set_parameters(np.zeros(45, np.float32), optimizer)
    engine.set_validation(None, order[:10], Y[:10], None)
    loss, outputs = engine.evaluate(0.0)
    assert outputs.shape == (10, 1) and np.allclose(outputs, 0.5) and loss == pytest.approx(np.log(2))


def test_work_on_the_default_streams_handles(simulator):
    # The legacy and per-thread default streams' handles (1 and 2: what CuPy and PyTorch give
    # for their default streams) are streams to work on and to wait for.
    X, y = data("binary", n=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(device="cuda", hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    engine = est._engine_for(est._layer_units(), "cuda", np.float32)
    params = est._params
    expected = engine.predict(X, params)
    for stream in (1, 2):
        np.testing.assert_array_equal(engine.predict(X, params, stream=stream), expected)
