"""Drop-in fidelity under stress, side by side with scikit-learn: diverging fits, prediction
dtypes, fit against partial_fit, labels in messages, forked processes, Ctrl-C in every native
call, malformed sparse matrices and out-of-range parameters."""

import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import neural_network as sk
from sklearn.datasets import load_digits, make_regression

import fusedmlp as fm
from tests.conftest import python_sigint_handler, sigint_after

X_digits, y_digits = load_digits(return_X_y=True)
X_digits = X_digits / 16.0
X_reg, y_reg = make_regression(n_samples=300, n_features=12, noise=1.0, random_state=0)
y_reg = y_reg / y_reg.std()


def outcome(fit):
    """("ok", n_iter_, finite weights) or (exception type, message) of a fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = fit()
        except (ValueError, TypeError) as e:
            return type(e), str(e).split(" The model computes in float32")[0]
    finite = all(np.isfinite(w).all() for w in est.coefs_ + est.intercepts_)
    return "ok", est.n_iter_, finite


# ---- divergence --------------------------------------------------------------------------

DIVERGING = [
    # (estimator, data, learning_rate_init): sgd with a step far too large
    ("MLPClassifier", "digits", 1e3),
    ("MLPClassifier", "digits", 1e6),
    ("MLPRegressor", "regression", 10.0),
    ("MLPRegressor", "regression", 1e3),
]


def _diverging_data(data):
    return (X_digits, y_digits) if data == "digits" else (X_reg, y_reg * 100)


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,data,lr", DIVERGING)
def test_diverging_fit_ends_as_in_sklearn(cls, data, lr, dtype, early_stopping):
    # scikit-learn trains in X's dtype: fusedmlp with the same dtype must end the same way
    # (the same error, or a model after the same number of epochs with finite weights: with
    # early stopping the best validated ones).
    X, y = _diverging_data(data)
    X = X.astype(dtype)
    kw = dict(solver="sgd", learning_rate_init=lr, random_state=0, max_iter=30,
              hidden_layer_sizes=(20,), early_stopping=early_stopping)
    ref = outcome(lambda: getattr(sk, cls)(**kw).fit(X, y))
    got = outcome(lambda: getattr(fm, cls)(dtype=dtype, **kw).fit(X, y))
    assert got == ref


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_early_stopping_restores_weights_before_checking_them(dtype):
    # The weights diverge to NaN; the model keeps the best validated ones and predicts.
    X, y = _diverging_data("regression")
    kw = dict(solver="sgd", learning_rate_init=10.0, random_state=0, max_iter=30,
              hidden_layer_sizes=(20,), early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk.MLPRegressor(**kw).fit(X.astype(dtype), y)
        est = fm.MLPRegressor(dtype=dtype, **kw).fit(X.astype(dtype), y)
    assert np.isnan(est.loss_curve_[-1]) and np.isnan(ref.loss_curve_[-1])
    assert est.n_iter_ == ref.n_iter_ == 30
    assert np.isfinite(est.predict(X)).all()
    best = int(np.nanargmax(est.validation_scores_))
    assert est.best_validation_score_ == est.validation_scores_[best]
    # (float32: a diverging fit's scores, about -5e30, agree to about 10 float32 ulps, 1.03e-6 on
    # the AVX2 kernels; float64 to 1e-6)
    rtol = 1e-5 if dtype == "float32" else 1e-6
    np.testing.assert_allclose(est.best_validation_score_, ref.best_validation_score_, rtol=rtol)


def test_float32_overflow_error_names_the_wider_dtype():
    # Weights past float32's range: scikit-learn in float64 finishes, a float32 model cannot.
    kw = dict(solver="sgd", learning_rate_init=1e5, random_state=0, max_iter=30,
              hidden_layer_sizes=(20,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm.MLPClassifier(dtype="float64", **kw).fit(X_digits, y_digits)
        with pytest.raises(ValueError, match="non-finite parameter weights.*dtype='float64'"):
            fm.MLPClassifier(**kw).fit(X_digits, y_digits)


@pytest.mark.parametrize("what", ["X", "y", "sample_weight", "alpha", "learning_rate_init",
                                  "epsilon"])
def test_values_beyond_float32_are_a_clear_error_for_float32_models(what):
    X, y, sw = X_reg.copy(), y_reg.copy(), np.ones(len(y_reg))
    params = dict(max_iter=2)
    if what == "X":
        X[3, 2] = 1e300
    elif what == "y":
        y[5] = -1e300
    elif what == "sample_weight":
        sw[0] = 1e300
    elif what == "epsilon":
        params[what] = 1e-300  # rounds to zero in float32: 0 / 0 for parameters without a gradient
    else:
        params[what] = 1e300
    with pytest.raises(ValueError, match=f"{what}.*float32.*dtype='float64'"):
        fm.MLPRegressor(**params).fit(X, y, sample_weight=sw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fm.MLPRegressor(dtype="float64", **params).fit(X, y, sample_weight=sw)
        except ValueError as e:  # float64 may still diverge, but not for want of range
            assert "non-finite parameter weights" in str(e)


# ---- dtypes of predictions ---------------------------------------------------------------

@pytest.mark.parametrize("predict_dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("fit_dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("cls", ["MLPRegressor", "MLPClassifier"])
def test_prediction_dtypes_match_sklearn(cls, fit_dtype, predict_dtype):
    if cls == "MLPRegressor":
        X, y = X_reg, y_reg
    else:
        X, y = X_digits * 16, y_digits
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(sk, cls)(**kw).fit(X.astype(fit_dtype), y)
        methods = ["predict"] if cls == "MLPRegressor" else ["predict_proba", "predict_log_proba"]
        for compute in ("float32", "float64"):
            est = getattr(fm, cls)(dtype=compute, **kw).fit(X.astype(fit_dtype), y)
            for method in methods:
                Xp = X[:7].astype(predict_dtype)
                assert getattr(est, method)(Xp).dtype == getattr(ref, method)(Xp).dtype, (
                    method, compute)
            # sparse input too
            Xs = sp.csr_matrix(X[:7].astype(predict_dtype))
            assert getattr(est, methods[0])(Xs).dtype == getattr(ref, methods[0])(Xs).dtype


def test_prediction_dtype_of_a_dataframe_as_sklearn():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame({"a": X_reg[:, 0].astype(np.float32), "b": (X_reg[:, 1] > 0).astype(np.int8),
                      "c": X_reg[:, 2].astype(np.float32)})
    kw = dict(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk.MLPRegressor(**kw).fit(X, y_reg)
        est = fm.MLPRegressor(**kw).fit(X, y_reg)
    assert est.predict(X).dtype == ref.predict(X).dtype == np.float32


def test_regressor_predicts_float32_for_float32_data_as_sklearn_tests_require():
    X = X_digits.astype(np.float32)
    est = fm.MLPRegressor(hidden_layer_sizes=(5, 3), random_state=1, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:300], y_digits[:300])
    assert est.predict(X[300:]).dtype == np.float32
    assert est.score(X[300:], y_digits[300:]) > -10  # the scoring path takes it too


# ---- fit against partial_fit -------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("cls", ["MLPRegressor", "MLPClassifier"])
def test_fit_and_partial_fit_give_identical_weights(cls, solver, dtype):
    # scikit-learn's test_partial_fit_regression/classification, bit for bit: full batches,
    # shuffled differently by the two paths
    X, y = (X_reg, y_reg) if cls == "MLPRegressor" else (X_digits[:300], y_digits[:300])
    kw = dict(solver=solver, learning_rate_init=0.001, random_state=1, batch_size=X.shape[0],
              momentum=0.9, dtype=dtype, hidden_layer_sizes=(16,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = getattr(fm, cls)(max_iter=40, **kw).fit(X, y)
    b = getattr(fm, cls)(**kw)
    for _ in range(40):
        if cls == "MLPClassifier":
            b.partial_fit(X, y, classes=np.unique(y))
        else:
            b.partial_fit(X, y)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)


# ---- messages ----------------------------------------------------------------------------

@pytest.mark.parametrize("labels", ["strings", "ints", "bools"])
def test_single_member_class_message_names_the_label_as_sklearn(labels):
    rng = np.random.RandomState(0)
    X = rng.randn(30, 3)
    y = np.array(["a"] * 29 + ["b"])
    y = {"strings": y, "ints": (y == "b").astype(int), "bools": y == "b"}[labels]
    messages = []
    for est in (sk.MLPClassifier(early_stopping=True, max_iter=3),
                fm.MLPClassifier(early_stopping=True, max_iter=3)):
        with pytest.raises(ValueError) as info:
            est.fit(X, y)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "['True']" in messages[1]


# ---- inputs scikit-learn rejects, parameters the engine cannot take ----------------------

@pytest.mark.parametrize("dtype", ["M8[D]", "m8[s]"])
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_datetime_features_at_prediction_are_rejected_as_in_sklearn(dtype, method):
    X = X_digits[:50]
    y = y_digits[:50]
    Xd = np.zeros((3, X.shape[1]), dtype=dtype)
    for cls in (sk.MLPClassifier, fm.MLPClassifier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = cls(max_iter=2).fit(X, y)
        with pytest.raises(TypeError):
            getattr(est, method)(Xd)


@pytest.mark.parametrize("kind", ["U", "S"])
def test_string_regression_targets_are_rejected_as_in_sklearn(kind):
    y = y_reg.astype(kind)
    for cls in (sk.MLPRegressor, fm.MLPRegressor):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(TypeError):
                cls(max_iter=2).fit(X_reg, y)


@pytest.mark.parametrize("n_threads", [2**31, 2**63, 10**30])
def test_huge_thread_counts_are_accepted_and_capped(n_threads):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPRegressor(max_iter=2, n_threads=n_threads).fit(X_reg, y_reg)
    assert est.predict(X_reg[:3]).shape == (3,)


# ---- malformed sparse matrices -----------------------------------------------------------

def _corrupt(fmt, defect):
    S = sp.random(20, 6, density=0.4, format=fmt, random_state=0, dtype=np.float64)
    if fmt == "coo":
        target = {"negative": ("row", -1), "beyond": ("col", 6)}[defect]
        getattr(S, target[0])[2] = target[1]
        return S
    if defect == "negative":
        S.indices[2] = -3
    elif defect == "beyond":
        S.indices[2] = 10**6
    elif defect == "decreasing":
        S.indptr[3], S.indptr[4] = S.indptr[4], S.indptr[3] - 1
    elif defect == "overrun":
        S.indptr[-1] = len(S.indices) + 5
    elif defect == "short_indptr":
        S.indptr = S.indptr[:-2]
    elif defect == "float_indices":
        S.indices = S.indices.astype(np.float64)
    return S


SPARSE_DEFECTS = [("csr", d) for d in ("negative", "beyond", "decreasing", "overrun",
                                       "short_indptr", "float_indices")]
SPARSE_DEFECTS += [("csc", d) for d in ("negative", "beyond", "decreasing", "overrun")]
SPARSE_DEFECTS += [("bsr", "beyond"), ("coo", "negative"), ("coo", "beyond")]


@pytest.mark.parametrize("fmt,defect", SPARSE_DEFECTS)
@pytest.mark.parametrize("call", ["fit", "partial_fit", "predict", "perceptron_fit",
                                  "perceptron_predict", "regressor_fit"])
def test_malformed_sparse_input_is_a_clear_error(fmt, defect, call):
    # Validated before any conversion: scipy's own tocsr() on these corrupts the heap.
    S = _corrupt(fmt, defect)
    before = [np.array(getattr(S, a), copy=True) for a in ("data", "indices", "indptr", "row",
                                                           "col") if hasattr(S, a)]
    y = np.arange(20) % 2
    dense = np.random.RandomState(0).rand(20, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = fm.MLPClassifier(max_iter=2).fit(dense, y)
        perceptron = fm.Perceptron(max_iter=2).fit(dense, y)
    calls = {
        "fit": lambda: fm.MLPClassifier(max_iter=2).fit(S, y),
        "partial_fit": lambda: fm.MLPClassifier().partial_fit(S, y, classes=[0, 1]),
        "predict": lambda: fitted.predict_proba(S),
        "perceptron_fit": lambda: fm.Perceptron(max_iter=2).fit(S, y),
        "perceptron_predict": lambda: perceptron.predict(S),
        "regressor_fit": lambda: fm.MLPRegressor(max_iter=2).fit(S, y.astype(float)),
    }
    with pytest.raises(ValueError, match="not a valid sparse matrix"):
        calls[call]()
    after = [getattr(S, a) for a in ("data", "indices", "indptr", "row", "col") if hasattr(S, a)]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(b, a)


def test_malformed_sparse_targets_are_a_clear_error():
    Y = sp.csr_matrix((np.arange(20)[:, None] % 2 == np.arange(3)).astype(float))
    Y.indices[1] = 7
    with pytest.raises(ValueError, match="y is not a valid sparse matrix"):
        fm.MLPClassifier(max_iter=2).fit(X_digits[:20], Y)
    with pytest.raises(ValueError, match="y is not a valid sparse matrix"):
        fm.MLPClassifier().partial_fit(X_digits[:20], Y, classes=[0, 1, 2])


# ---- Ctrl-C ------------------------------------------------------------------------------

def test_ctrl_c_stops_lbfgs_within_a_second_and_keeps_an_accepted_iterate():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60_000, 200)).astype(np.float32)
    y = rng.integers(0, 5, X.shape[0])
    est = fm.MLPClassifier(hidden_layer_sizes=(256,), solver="lbfgs", max_iter=500,
                           random_state=0, n_threads=1)
    with sigint_after(2.0) as fired:
        with pytest.warns(UserWarning, match="Training interrupted by user"):
            est.fit(X, y)
        stopped = time.perf_counter()
    assert stopped - fired[0] < 1.0
    assert 0 <= est.n_iter_ < 500
    assert np.isfinite(est.coefs_[0]).all() and np.isfinite(est.loss_)
    assert est.predict(X[:10]).shape == (10,)


def test_ctrl_c_stops_a_large_predict_within_a_second():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400_000, 300)).astype(np.float32)
    y = rng.integers(0, 10, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.MLPClassifier(hidden_layer_sizes=(1024, 512), max_iter=1, n_threads=1,
                               random_state=0).fit(X[:1000], y)
    with sigint_after(0.5) as fired:
        with pytest.raises(KeyboardInterrupt):
            est.predict_proba(X)
        stopped = time.perf_counter()
    assert stopped - fired[0] < 1.0
    assert est.predict(X[:5]).shape == (5,)


LBFGS_SCRIPT = """
import os, signal, threading, time, warnings
import numpy as np
import fusedmlp as fm
rng = np.random.default_rng(0)
X = rng.standard_normal((60_000, 200)).astype(np.float32)
y = rng.integers(0, 5, X.shape[0])
est = fm.MLPClassifier(hidden_layer_sizes=(256,), solver="lbfgs", max_iter=500, n_threads=1)
fired = []
def interrupt():
    fired.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
threading.Timer(2.0, interrupt).start()
warnings.simplefilter("ignore")
est.fit(X, y)  # not wrapped in try: a script whose author never thought of Ctrl-C
print("stopped after", time.perf_counter() - fired[0])
"""


def test_ctrl_c_in_an_lbfgs_script_that_does_not_catch_it():
    with python_sigint_handler():  # the script starts with Python's own SIGINT handler
        result = subprocess.run([sys.executable, "-c", LBFGS_SCRIPT], capture_output=True,
                                text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split("stopped after")[1]) < 1.0


# ---- fork --------------------------------------------------------------------------------

FORK_PRELUDE = """
import os, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from sklearn.datasets import load_digits
import fusedmlp as fm
from fusedmlp import _cpu
X, y = load_digits(return_X_y=True)
X = X / 16
def fit_in_parent():
    # a model big enough for a team of two threads in the parent
    fm.MLPClassifier((256, 128), max_iter=2, random_state=0, n_threads=2).fit(X, y)
"""

FORK_SCENARIOS = {
    "os_fork": """
fit_in_parent()
pid = os.fork()
if pid == 0:
    est = fm.MLPClassifier((256, 128), max_iter=2, random_state=0).fit(X, y)
    p = fm.Perceptron(max_iter=5).fit(X, y)
    ok = est.score(X, y) > 0.5 and p.score(X, y) > 0.5 and _cpu.single_threaded_after_fork()
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
print("ok")
""",
    "fork_pool": """
import multiprocessing as mp
def work(seed):
    est = fm.MLPClassifier((128,), max_iter=2, random_state=seed).fit(X, y)
    return est.score(X, y)
fit_in_parent()
with mp.get_context("fork").Pool(2) as pool:
    scores = pool.map(work, [0, 1, 2])
assert min(scores) > 0.5, scores
print("ok")
""",
    "joblib_multiprocessing_grid_search": """
import joblib
from sklearn.model_selection import GridSearchCV
fit_in_parent()
with joblib.parallel_backend("multiprocessing", n_jobs=2):
    search = GridSearchCV(fm.MLPClassifier(max_iter=3, random_state=0),
                          {"hidden_layer_sizes": [(64,), (256, 128)]}, cv=2).fit(X, y)
assert search.best_score_ > 0.5
print("ok")
""",
    "joblib_multiprocessing_cross_val_score": """
import joblib
from sklearn.model_selection import cross_val_score
fit_in_parent()
with joblib.parallel_backend("multiprocessing", n_jobs=2):
    scores = cross_val_score(fm.MLPRegressor(hidden_layer_sizes=(256, 128), max_iter=3), X, y, cv=3)
assert len(scores) == 3
print("ok")
""",
    "fork_without_parent_team": """
pid = os.fork()
if pid == 0:
    # the parent never ran a team: the child keeps its threads
    est = fm.MLPClassifier((256, 128), max_iter=2, random_state=0, n_threads=2).fit(X, y)
    os._exit(0 if not _cpu.single_threaded_after_fork() and est.score(X, y) > 0.5 else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
print("ok")
""",
}


@pytest.mark.parametrize("scenario", sorted(FORK_SCENARIOS))
def test_forked_children_train_after_the_parent_did(scenario):
    code = FORK_PRELUDE + textwrap.dedent(FORK_SCENARIOS[scenario])
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario}: hung (no result in 240 s)")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_forked_child_gives_the_parents_numbers():
    # one thread in the child computes the same model as the parent's team
    code = FORK_PRELUDE + textwrap.dedent("""
        fit_in_parent()
        est = fm.MLPClassifier((256, 128), max_iter=2, random_state=0, n_threads=2).fit(X, y)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            c = fm.MLPClassifier((256, 128), max_iter=2, random_state=0, n_threads=2).fit(X, y)
            same = all((a == b).all() for a, b in zip(c.coefs_, est.coefs_))
            os.write(w, b"same" if same else b"diff")
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(r, 4).decode())
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=240)
    assert result.stdout.strip() == "same", result.stderr[-3000:]
