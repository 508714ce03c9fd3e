"""Bad input gets scikit-learn's error (same exception type, same message), never a crash;
and nothing a user passes in is modified."""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import neural_network as sk
from sklearn.exceptions import NotFittedError

import fusedmlp as fm
from fusedmlp import _cpu
from fusedmlp._params import SKLEARN_SCHEDULES, STEP_SCHEDULES

rng = np.random.default_rng(0)
X = rng.standard_normal((40, 4))
y_cls = np.arange(40) % 3
y_reg = rng.standard_normal(40)


def with_nan(a):
    a = a.copy()
    a[3, 1] = np.nan
    return a


def with_inf(a):
    a = a.copy()
    a[5, 2] = np.inf
    return a


BAD_FIT = {
    "nan": (with_nan(X), y_cls, {}),
    "inf": (with_inf(X), y_cls, {}),
    "1d-X": (X[:, 0], y_cls, {}),
    "3d-X": (X.reshape(40, 2, 2), y_cls, {}),
    "empty": (X[:0], y_cls[:0], {}),
    "no-features": (X[:, :0], y_cls, {}),
    "strings": (np.array([["a", "b"]] * 40), y_cls, {}),
    "object-none": (np.array([[None, 1.0]] * 40, dtype=object), y_cls, {}),
    "complex": (X.astype(complex), y_cls, {}),
    "short-y": (X, y_cls[:-1], {}),
    "y-2d-bad": (X, np.ones((40, 2, 2)), {}),
    "weight-length": (X, y_cls, {"sample_weight": np.ones(39)}),
    "weight-2d": (X, y_cls, {"sample_weight": np.ones((40, 2))}),
    "weight-nan": (X, y_cls, {"sample_weight": np.r_[np.nan, np.ones(39)]}),
    "weight-string": (X, y_cls, {"sample_weight": "heavy"}),
}

BAD_PARAMS = [
    dict(hidden_layer_sizes=0),
    dict(hidden_layer_sizes=(10, -1)),
    dict(hidden_layer_sizes="big"),
    dict(activation="softmax"),
    dict(solver="newton"),
    dict(alpha=-1.0),
    dict(batch_size=0),
    dict(learning_rate="cyclic"),
    dict(learning_rate_init=0.0),
    dict(max_iter=0),
    dict(momentum=1.5),
    dict(validation_fraction=1.0),
    dict(beta_1=1.0),
    dict(epsilon=0.0),
    dict(n_iter_no_change=0),
    dict(tol=-1.0),
]


def outcome(est, fn):
    """(exception type, message) of fn(est), or (None, None); the options listed in a
    message's {...} are sorted, since set order may differ between two estimators."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn(est)
        except Exception as e:  # noqa: BLE001 - the outcome itself is under test
            return type(e), re.sub(r"\{([^{}]*)\}", lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", str(e))
    return None, None


@pytest.mark.parametrize("name", list(BAD_FIT))
@pytest.mark.parametrize("cls", ["MLPClassifier", "MLPRegressor"])
def test_bad_fit_input_same_error_as_sklearn(cls, name):
    Xb, yb, kw = BAD_FIT[name]
    yb = yb if cls == "MLPClassifier" or name in ("short-y", "y-2d-bad", "empty") else y_reg[: len(yb)]
    kwargs = dict(max_iter=5, hidden_layer_sizes=(5,))
    ref = outcome(getattr(sk, cls)(**kwargs), lambda e: e.fit(Xb, yb, **kw))
    got = outcome(getattr(fm, cls)(**kwargs), lambda e: e.fit(Xb, yb, **kw))
    assert ref[0] is not None, "scikit-learn accepted this input; the case is wrong"
    assert got == ref


@pytest.mark.parametrize("params", BAD_PARAMS, ids=str)
@pytest.mark.parametrize("cls", ["MLPClassifier", "MLPRegressor"])
def test_invalid_parameters_same_error_as_sklearn(cls, params):
    ref = outcome(getattr(sk, cls)(**params), lambda e: e.fit(X, y_cls))
    got = outcome(getattr(fm, cls)(**params), lambda e: e.fit(X, y_cls))
    assert ref[0] is not None
    if "activation" in params or "learning_rate" in params:
        # fusedmlp offers more activations (its registry's) and schedules: the same error,
        # with its options
        options = (sorted(a["name"] for a in _cpu.activations() if a["hidden"])
                   if "activation" in params else sorted(SKLEARN_SCHEDULES + STEP_SCHEDULES))
        ref = (ref[0], re.sub(r"\{[^{}]*\}", "{" + ", ".join(repr(o) for o in options) + "}", ref[1]))
    assert got == ref


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(dtype="float16"), "'dtype' parameter"),
        (dict(dtype=int), "'dtype' parameter"),
        (dict(n_threads=0), "'n_threads' parameter"),
        (dict(device="tpu"), "'device' parameter"),
    ],
)
def test_invalid_own_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        fm.MLPClassifier(**params).fit(X, y_cls)


def test_cuda_without_a_device_is_a_clear_error():
    if fm.cuda_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="no usable CUDA device"):
        fm.MLPClassifier(device="cuda", max_iter=2).fit(X, y_cls)


@pytest.mark.parametrize("cls", ["MLPClassifier", "MLPRegressor"])
def test_prediction_errors_same_as_sklearn(cls):
    y = y_cls if cls == "MLPClassifier" else y_reg
    kwargs = dict(max_iter=5, hidden_layer_sizes=(5,))
    for fn in (lambda e: e.predict(X),):
        assert outcome(getattr(fm, cls)(**kwargs), fn)[0] is NotFittedError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(sk, cls)(**kwargs).fit(X, y)
        got = getattr(fm, cls)(**kwargs).fit(X, y)
    for bad in (X[:, :3], with_nan(X), X[:, 0], X[:0], np.array([["x"] * 4])):
        assert outcome(got, lambda e: e.predict(bad)) == outcome(ref, lambda e: e.predict(bad))


def test_partial_fit_errors_same_as_sklearn():
    for fn in (
        lambda e: e.partial_fit(X, y_cls),  # classes missing on the first call
        lambda e: e.partial_fit(X, y_cls, classes=[0, 1, 2]).partial_fit(X, y_cls + 5),
        lambda e: e.set_params(early_stopping=True).partial_fit(X, y_cls, classes=[0, 1, 2]),
        lambda e: e.partial_fit(X, y_cls, classes=[0, 1, 2]).partial_fit(X[:, :2], y_cls),
    ):
        ref = outcome(sk.MLPClassifier(hidden_layer_sizes=(5,)), fn)
        got = outcome(fm.MLPClassifier(hidden_layer_sizes=(5,)), fn)
        assert ref[0] is not None and got == ref
    for cls in ("MLPClassifier", "MLPRegressor"):
        with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
            getattr(fm, cls)(solver="lbfgs").partial_fit


def test_too_small_validation_set_same_error_as_sklearn():
    fn = lambda e: e.fit(X[:12], y_cls[:12])  # noqa: E731
    kw = dict(early_stopping=True, validation_fraction=0.05, hidden_layer_sizes=(3,))
    assert outcome(fm.MLPClassifier(**kw), fn) == outcome(sk.MLPClassifier(**kw), fn)


def test_changed_architecture_on_warm_start_is_a_clear_error():
    est = fm.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y_cls)
        est.set_params(hidden_layer_sizes=(6,))
        with pytest.raises(ValueError, match="layer sizes"):
            est.fit(X, y_cls)


def test_poisson_rejects_negative_targets():
    with pytest.raises(ValueError, match="negative"):
        fm.MLPRegressor(loss="poisson").fit(X, y_reg)


@pytest.mark.parametrize("solver", ["sgd"])
def test_divergence_is_a_clear_error(solver):
    Xh = X * 1e10
    yh = y_reg * 1e10
    kw = dict(solver=solver, learning_rate_init=10.0, max_iter=20, hidden_layer_sizes=(5,))
    ref = outcome(sk.MLPRegressor(**kw), lambda e: e.fit(Xh, yh))
    got = outcome(fm.MLPRegressor(dtype="float64", **kw), lambda e: e.fit(Xh, yh))
    assert got[0] is ValueError and "non-finite parameter weights" in got[1]
    assert ref == got


@pytest.mark.parametrize("cls", ["MLPClassifier", "Perceptron"])
def test_malformed_sparse_matrix_is_a_clear_error(cls):
    S = sp.csr_matrix(X)
    S.indices[3] = 99  # a column that does not exist
    with pytest.raises(ValueError, match="column index is out of range"):
        getattr(fm, cls)(max_iter=2).fit(S, y_cls)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_inputs_are_not_modified(sparse, early_stopping):
    Xi = sp.csr_matrix(X) if sparse else X.astype(np.float64)
    yi = y_cls.copy()
    sw = np.linspace(0.5, 2, 40)
    before = (Xi.copy(), yi.copy(), sw.copy())
    est = fm.MLPClassifier(max_iter=3, early_stopping=early_stopping, validation_fraction=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(Xi, yi, sample_weight=sw)
        est.predict(Xi)
        est.predict_proba(Xi)
    if sparse:
        assert (Xi != before[0]).nnz == 0
    else:
        np.testing.assert_array_equal(Xi, before[0])
    np.testing.assert_array_equal(yi, before[1])
    np.testing.assert_array_equal(sw, before[2])


@pytest.mark.parametrize("defect", ["column", "decreasing", "beyond"])
def test_engine_rejects_malformed_csr_itself(defect):
    # The engine's own argument check, behind the Python one: nothing out of range reaches C++.
    from fusedmlp import _cpu

    class CSR:
        format = "csr"

    m = CSR()
    m.shape = (3, 4)
    m.data = np.ones(4, np.float64)
    m.indices = np.array([0, 1, 2, 3], np.int32)
    m.indptr = np.array([0, 1, 3, 4], np.int64)
    if defect == "column":
        m.indices[2] = 4
    elif defect == "decreasing":
        m.indptr = np.array([0, 3, 1, 4], np.int64)
    else:
        m.indptr = np.array([0, 1, 3, 9], np.int64)
    engine = _cpu.TrainerF64([4, 3, 1], "relu", "squared_error", 1)
    params = np.zeros(engine.n_params)
    with pytest.raises(ValueError, match="sparse X"):
        engine.predict(m, params)


def test_engine_rejects_a_negative_sparse_shape():
    from fusedmlp import _cpu

    class CSR:
        format = "csr"
        shape = (-1, 4)
        data = np.ones(0)
        indices = np.zeros(0, np.int32)
        indptr = np.zeros(0, np.int64)

    engine = _cpu.TrainerF64([4, 3, 1], "relu", "squared_error", 1)
    with pytest.raises(ValueError, match="negative shape"):
        engine.predict(CSR(), np.zeros(engine.n_params))


@pytest.mark.parametrize("fit_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
def test_nan_and_infinity_anywhere_in_x_are_scikit_learns_errors(fit_dtype, x_dtype):
    # The CPU engine checks the values of a float ndarray during its own pass (no separate
    # scan: its first layer's product checks the blocks it reads, tests/test_gemm.py): a NaN or
    # an infinity in any row of any chunk, in any layout, gives scikit-learn's error for every
    # prediction method, and a finite X the same predictions as ever.
    rng = np.random.default_rng(0)
    X_fit = rng.standard_normal((300, 6))
    y_fit = (X_fit[:, 0] > 0).astype(int)
    # (64 hidden units: chunks of 4096 rows are enough work for the engine's two threads, each
    # checking its own rows)
    kw = dict(max_iter=3, hidden_layer_sizes=(64,), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk.MLPClassifier(**kw).fit(X_fit.astype(fit_dtype), y_fit)
        got = fm.MLPClassifier(**kw).fit(X_fit.astype(fit_dtype), y_fit)
    big = rng.standard_normal((9000, 6)).astype(x_dtype)  # three chunks of the engine's pass
    expected = got.predict_proba(big)
    for rows in (1, 700, 9000):
        for row in sorted({0, rows // 2, rows - 1}):
            for value in (np.nan, np.inf, -np.inf):
                for layout in (np.ascontiguousarray, np.asfortranarray):
                    bad = layout(big[:rows].copy())
                    bad[row, row % 6] = value
                    kept = bad.copy()
                    for method in ("predict", "predict_proba"):
                        fn = lambda e, m=method: getattr(e, m)(bad)  # noqa: E731
                        assert outcome(got, fn) == outcome(ref, fn), (rows, row, value, method)
                    np.testing.assert_array_equal(bad, kept)  # X untouched
        np.testing.assert_array_equal(got.predict_proba(big[:rows]), expected[:rows])


@pytest.mark.parametrize(
    "features,hidden", [(1, (5,)), (6, (3,)), (1, (2,)), (40, (1,)), (1, (2, 256)), (3, (1, 256))]
)
def test_nan_and_infinity_reach_the_error_through_every_first_layer(features, hidden):
    # The first layer's product checks the input, and takes other paths for one input feature
    # (depth one), a few units (narrow products) and short inputs: each still finds a NaN or an
    # infinity in any row, on one row, a call on one thread, and (behind a wide second layer,
    # enough work for the team) calls on the team and in slices (the first layer's product there
    # on one thread: its split between threads is tests/test_gemm.py's).
    rng = np.random.default_rng(5)
    X_fit = rng.standard_normal((200, features))
    y_fit = (X_fit[:, 0] > 0).astype(int)
    kw = dict(max_iter=2, hidden_layer_sizes=hidden, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk.MLPClassifier(**kw).fit(X_fit, y_fit)
        got = fm.MLPClassifier(**kw).fit(X_fit, y_fit)
    for rows in (1, 11, 300, 6000):
        X = rng.standard_normal((rows, features))
        for row, value in ((rows - 1, np.nan), (rows // 2, np.inf), (0, -np.inf)):
            bad = X.copy()
            bad[row, (row * 7) % features] = value
            fn = lambda e: e.predict_proba(bad)  # noqa: E731
            assert outcome(got, fn) == outcome(ref, fn), (rows, row, value)
            assert outcome(got, fn)[0] is ValueError
