"""fusedmlp.Perceptron against scikit-learn's Perceptron: API and estimator checks, the same
models (coef_, intercept_, n_iter_, t_) with and without shuffling, the same errors, warnings
and messages; and the native loop's fast path against its reference, bit for bit."""

import pickle
import re
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import linear_model as sk
from sklearn.datasets import load_digits, load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.estimator_checks import parametrize_with_checks

import fusedmlp as fm
from fusedmlp import _cpu
from tests import test_bad_input as bad_input
from tests.conftest import sigint_after

RTOL = 1e-8

# ---- data --------------------------------------------------------------------------------------


def iris():
    return load_iris(return_X_y=True)


def digits():
    return load_digits(return_X_y=True)


def text(n_docs=240, seed=0):
    """A small corpus whose three topics use words at different rates, as tf-idf (CSR)."""
    rng = np.random.RandomState(seed)
    vocab = [f"w{i}" for i in range(150)]
    y = np.arange(n_docs) % 3
    docs = []
    for label in y:
        p = np.ones(len(vocab))
        p[label * 40:(label + 1) * 40] += 4.0
        words = rng.choice(vocab, size=rng.randint(5, 30), p=p / p.sum())
        docs.append(" ".join(words))
    X = TfidfVectorizer().fit_transform(docs)
    return sp.csr_matrix(X), np.array(["sports", "politics", "science"])[y]


def dense_binary(n=600, d=48, seed=0):
    X, y = make_classification(n_samples=n, n_features=d, n_informative=12, random_state=seed)
    return X, y


DATASETS = {
    "iris": iris,
    "iris-float32": lambda: (iris()[0].astype(np.float32), iris()[1]),
    "digits": digits,
    "text": text,
    "dense-binary": dense_binary,
    "dense-binary-float32": lambda: (dense_binary()[0].astype(np.float32), dense_binary()[1]),
}

CONFIGS = {
    "default": {},
    "no-intercept": dict(fit_intercept=False),
    "l2": dict(penalty="l2", alpha=1e-3),
    "l1": dict(penalty="l1", alpha=1e-3),
    "elasticnet": dict(penalty="elasticnet", alpha=1e-3, l1_ratio=0.4),
    "balanced": dict(class_weight="balanced"),
    "eta0-tol-none": dict(eta0=0.3, tol=None, max_iter=12),
    "early-stopping": dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3),
    "early-stopping-l2": dict(early_stopping=True, penalty="l2", alpha=1e-2),
    "n-iter-no-change": dict(n_iter_no_change=2, tol=1e-2),
}


def class_weight_dict(y):
    classes = np.unique(y)
    return {c: 1.0 + 0.5 * i for i, c in enumerate(classes)}


def sample_weight_for(y):
    return np.random.RandomState(7).uniform(0.2, 2.0, len(y))


def quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", ConvergenceWarning)
    return ctx


def fit_pair(X, y, fit_kw=None, **params):
    # each gets its own copies: scikit-learn trains coef_init and intercept_init in place
    fit_kw = fit_kw or {}
    copy = lambda: {k: np.copy(v) for k, v in fit_kw.items()}  # noqa: E731
    ref = sk.Perceptron(**params)
    got = fm.Perceptron(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X, y, **copy())
        got.fit(X, y, **copy())
    return ref, got


def assert_same_model(ref, got):
    np.testing.assert_array_equal(got.classes_, ref.classes_)
    for name in ("coef_", "intercept_"):
        a, b = getattr(got, name), getattr(ref, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=0, err_msg=name)
    assert got.n_iter_ == ref.n_iter_
    assert type(got.n_iter_) is type(ref.n_iter_)
    assert got.t_ == ref.t_
    assert got.n_features_in_ == ref.n_features_in_


# ---- scikit-learn's estimator checks ----------------------------------------------------------

# scikit-learn marks these for its own Perceptron (sklearn/utils/_test_common/instance_generator.py)
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample_weight is not equivalent to removing/repeating samples."
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "sample_weight is not equivalent to removing/repeating samples."
    ),
}


@parametrize_with_checks(
    [fm.Perceptron(max_iter=5)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_expected_failures_are_scikit_learns():
    instance_generator = pytest.importorskip("sklearn.utils._test_common.instance_generator")
    assert instance_generator.PER_ESTIMATOR_XFAIL_CHECKS[sk.Perceptron] == EXPECTED_FAILED_CHECKS


def test_same_parameters_defaults_and_signature():
    import inspect

    ref = inspect.signature(sk.Perceptron)
    got = inspect.signature(fm.Perceptron)
    assert list(got.parameters) == list(ref.parameters)
    for name, p in ref.parameters.items():
        q = got.parameters[name]
        assert (q.default, q.kind) == (p.default, p.kind), name
    assert fm.Perceptron().get_params() == sk.Perceptron().get_params()
    for attr in ("loss", "learning_rate", "power_t", "epsilon", "average"):
        assert getattr(fm.Perceptron(), attr) == getattr(sk.Perceptron(), attr)


@pytest.mark.parametrize("data", ["iris", "binary"])
def test_same_fitted_attributes(data):
    X, y = iris()
    if data == "binary":
        y = y == 0
    ref, got = fit_pair(X, y)
    public = lambda est: {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}  # noqa: E731
    assert public(got) == public(ref)


# ---- the same models ---------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("data", list(DATASETS))
def test_same_model_as_sklearn(data, config, shuffle):
    X, y = DATASETS[data]()
    ref, got = fit_pair(X, y, shuffle=shuffle, random_state=3, **CONFIGS[config])
    assert_same_model(ref, got)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("data", list(DATASETS))
def test_same_model_with_weights(data, shuffle):
    X, y = DATASETS[data]()
    sw = sample_weight_for(y)
    ref, got = fit_pair(X, y, dict(sample_weight=sw), shuffle=shuffle)
    assert_same_model(ref, got)
    ref, got = fit_pair(X, y, dict(sample_weight=sw), shuffle=shuffle,
                        class_weight=class_weight_dict(y))
    assert_same_model(ref, got)
    ref, got = fit_pair(X, y, dict(sample_weight=sw), shuffle=shuffle, early_stopping=True,
                        n_iter_no_change=2)
    assert_same_model(ref, got)


@pytest.mark.parametrize("fmt", ["csr", "csc", "fortran", "int"])
def test_same_model_for_every_input_form(fmt):
    X, y = digits()
    Xf = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "fortran": np.asfortranarray,
          "int": lambda a: a.astype(np.int64)}[fmt](X)
    ref, got = fit_pair(Xf, y)
    assert_same_model(ref, got)


@pytest.mark.parametrize("data", ["iris", "digits", "text", "dense-binary"])
def test_same_model_from_coef_init(data):
    X, y = DATASETS[data]()
    n_classes = len(np.unique(y))
    rows = 1 if n_classes == 2 else n_classes
    rng = np.random.RandomState(1)
    coef_init = rng.standard_normal((rows, X.shape[1]))
    intercept_init = rng.standard_normal(rows)
    kw = dict(coef_init=coef_init, intercept_init=intercept_init)
    ref, got = fit_pair(X, y, kw, penalty="l2", alpha=1e-3)
    assert_same_model(ref, got)


@pytest.mark.parametrize("data", ["iris", "digits", "text", "dense-binary"])
def test_same_model_with_warm_start(data):
    X, y = DATASETS[data]()
    ref = sk.Perceptron(warm_start=True, max_iter=3, tol=None)
    got = fm.Perceptron(warm_start=True, max_iter=3, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for max_iter in (3, 4, 2):
            ref.set_params(max_iter=max_iter).fit(X, y)
            got.set_params(max_iter=max_iter).fit(X, y)
            assert_same_model(ref, got)


@pytest.mark.parametrize("data", ["iris", "iris-float32", "digits", "text", "dense-binary"])
def test_same_model_with_partial_fit(data):
    X, y = DATASETS[data]()
    classes = np.unique(y)
    ref = sk.Perceptron(random_state=5, class_weight=class_weight_dict(y))
    got = fm.Perceptron(random_state=5, class_weight=class_weight_dict(y))
    half = X.shape[0] // 2
    for rows in (slice(0, half), slice(half, None), slice(None)):
        ref.partial_fit(X[rows], y[rows], classes=classes)
        got.partial_fit(X[rows], y[rows], classes=classes)
        assert_same_model(ref, got)


def test_same_model_with_a_random_state_instance():
    # the instance is drawn from as scikit-learn draws from it, fit after fit
    for X, y in (digits(), dense_binary()):
        for es in (False, True):
            ref = sk.Perceptron(random_state=np.random.RandomState(4), early_stopping=es)
            got = fm.Perceptron(random_state=np.random.RandomState(4), early_stopping=es)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                for _ in range(2):
                    assert_same_model(ref.fit(X, y), got.fit(X, y))


def test_textbook_example():
    # scikit-learn's user guide: the iris setosa against the rest, from petal length and width
    iris_data = load_iris()
    X = iris_data.data[:, (2, 3)]
    y = (iris_data.target == 0).astype(int) == 1
    per_clf = fm.Perceptron(random_state=42)
    per_clf.fit(X, y)
    np.testing.assert_array_equal(per_clf.predict([[2, 0.5], [3, 1]]), [True, False])


def test_docstring_example_score():
    X, y = load_digits(return_X_y=True)
    clf = fm.Perceptron(tol=1e-3, random_state=0).fit(X, y)
    assert clf.score(X, y) == sk.Perceptron(tol=1e-3, random_state=0).fit(X, y).score(X, y)
    assert round(clf.score(X, y), 3) == 0.939


def test_predictions_and_sparsify_as_sklearn():
    X, y = digits()
    ref, got = fit_pair(X, y)
    np.testing.assert_array_equal(got.predict(X), ref.predict(X))
    np.testing.assert_allclose(got.decision_function(X), ref.decision_function(X), rtol=1e-12)
    assert got.score(X, y) == ref.score(X, y)
    got.sparsify()
    assert sp.issparse(got.coef_)
    np.testing.assert_array_equal(got.predict(X), ref.predict(X))
    with pytest.raises(TypeError, match="call densify"):  # scikit-learn: a TypeError too
        got.partial_fit(X, y)
    got.densify()
    assert isinstance(got.coef_, np.ndarray)
    got.partial_fit(X, y)


# ---- the native loop ---------------------------------------------------------------------------


def test_generator_and_shuffle_are_scikit_learns():
    from sklearn.utils._random import _our_rand_r_py
    from sklearn.utils._seq_dataset import ArrayDataset64

    for seed in (0, 1, 5, 12345, 2**31 - 2):
        np.testing.assert_array_equal(
            _cpu.our_rand_r(seed, 1), [_our_rand_r_py(seed)]
        )
    n = 37
    X = np.zeros((n, 1))
    ds = ArrayDataset64(X, np.zeros(n), np.ones(n), seed=1)
    index = np.arange(n, dtype=np.int32)
    for epoch in range(3):  # the shuffles compound, epoch after epoch
        ds._shuffle_py(777)
        index = _cpu.sequential_dataset_shuffle(index, 777)
        np.testing.assert_array_equal(index, [ds._next_py()[3] for _ in range(n)])


def test_numpy_sum_is_numpys():
    rng = np.random.RandomState(0)
    for n in list(range(0, 300)) + [1000, 4097, 20000]:
        a = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)
        assert _cpu.numpy_sum(a) == a.sum()


def native_fit(X, y, reference, max_iter=6, n_threads=1, **options):
    """One solver run at the binding level: every class against the rest. Dense X is read in
    place, with its strides."""
    dtype = X.dtype
    classes = np.unique(y)
    y_class = np.searchsorted(classes, y).astype(np.int32)
    n_tasks = len(classes)
    coef = np.zeros((n_tasks, X.shape[1]), dtype=dtype)
    sw = options.pop("sample_weight", None)
    opts = dict(penalty="none", alpha=1e-4, l1_ratio=0.15, eta0=1.0, fit_intercept=True,
                intercept_decay=1.0, max_iter=max_iter, tol=-np.inf, n_iter_no_change=5,
                shuffle=True, early_stopping=False, verbose=False)
    opts.update(options)
    tasks = dict(positive=np.arange(n_tasks, dtype=np.int64), intercept=np.zeros(n_tasks),
                 weight_pos=np.linspace(1.0, 2.0, n_tasks), weight_neg=np.ones(n_tasks),
                 seed=np.arange(1, n_tasks + 1, dtype=np.int64) * 7919)
    cls = _cpu.PerceptronSolverF32 if dtype == np.float32 else _cpu.PerceptronSolverF64
    Xe = fm._engine.as_engine_input(sp.csr_matrix(X) if sp.issparse(X) else X)
    solver = cls(Xe, y_class, sw, None, 0.0, coef, tasks, opts, reference)
    solver.run(None, max_iter, n_threads)
    status = [solver.status(k) for k in range(n_tasks)]
    return coef, [s["intercept"] for s in status], [s["n_iter"] for s in status]


def hard_data(kind, dtype, seed=0):
    """Data on which the screen is often unsure: integer features (exact ties at p = 0), a
    wide range of magnitudes within rows, tiny and huge values, exact zeros."""
    rng = np.random.RandomState(seed)
    n, d = 400, 40
    if kind == "integers":
        X = rng.randint(-2, 3, size=(n, d)).astype(float)
    elif kind == "magnitudes":
        X = rng.standard_normal((n, d)) * 10.0 ** rng.randint(-8, 8, size=(n, d))
    elif kind == "tiny":
        X = rng.standard_normal((n, d)) * 1e-30
    else:  # sparse-ish dense rows, some all zero
        X = rng.standard_normal((n, d)) * (rng.rand(n, d) < 0.1)
        X[::17] = 0.0
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int) + (X[:, 2] > 0)
    return X.astype(dtype), y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["integers", "magnitudes", "tiny", "zeros"])
@pytest.mark.parametrize("penalty", ["none", "l2", "elasticnet"])
@pytest.mark.parametrize("max_iter", [1, 5])
def test_fast_path_is_bit_exact(kind, dtype, penalty, max_iter):
    X, y = hard_data(kind, dtype)
    sw = np.random.RandomState(1).uniform(0.5, 1.5, len(y)).astype(dtype)
    for sample_weight in (None, sw):
        ref = native_fit(X, y, True, max_iter=max_iter, penalty=penalty,
                         sample_weight=sample_weight)
        got = native_fit(X, y, False, max_iter=max_iter, penalty=penalty,
                         sample_weight=sample_weight)
        np.testing.assert_array_equal(got[0], ref[0])
        assert got[1] == ref[1] and got[2] == ref[2]


def test_fast_path_is_bit_exact_on_real_data():
    for X, y in (digits(), dense_binary(2000, 120)):
        for dtype in (np.float64, np.float32):
            ref = native_fit(X.astype(dtype), y, True, max_iter=8)
            got = native_fit(X.astype(dtype), y, False, max_iter=8)
            np.testing.assert_array_equal(got[0], ref[0])
            assert got[1] == ref[1]
            # rows with a column stride are gathered, the same numbers
            for strided in (np.asfortranarray(X.astype(dtype)),
                            np.repeat(X.astype(dtype), 2, axis=1)[:, ::2]):
                again = native_fit(strided, y, False, max_iter=8, n_threads=2)
                np.testing.assert_array_equal(again[0], ref[0])
                assert again[1] == ref[1]


@pytest.mark.parametrize("isa", ["generic", "best"])
def test_instruction_sets_give_the_same_model(isa):
    X, y = digits()
    before = _cpu.active_isa()
    try:
        _cpu.set_isa(_cpu.best_isa() if isa == "best" else "generic")
        got = fm.Perceptron().fit(X, y)
    finally:
        _cpu.set_isa(before)
    ref = sk.Perceptron().fit(X, y)
    assert_same_model(ref, got)


def test_threads_do_not_change_the_model():
    X, y = digits()
    models = [fm.Perceptron(n_jobs=n, random_state=2).fit(X, y) for n in (1, 2, -1, None)]
    for m in models[1:]:
        np.testing.assert_array_equal(m.coef_, models[0].coef_)
        np.testing.assert_array_equal(m.intercept_, models[0].intercept_)
        assert m.n_iter_ == models[0].n_iter_


def test_inputs_are_not_modified():
    X, y = digits()
    for Xi in (X.copy(), sp.csr_matrix(X), X.astype(np.float32)):
        yi = y.copy()
        sw = np.linspace(0.5, 2, len(y))
        coef_init = np.random.RandomState(0).standard_normal((10, 64)).astype(Xi.dtype)
        intercept_init = np.arange(10, dtype=Xi.dtype)
        before = [a.copy() for a in (Xi, yi, sw, coef_init, intercept_init)]
        est = fm.Perceptron(max_iter=3, early_stopping=True, warm_start=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(Xi, yi, coef_init=coef_init, intercept_init=intercept_init, sample_weight=sw)
            est.fit(Xi, yi)
        est.predict(Xi)
        est.partial_fit(Xi, yi)
        for a, b in zip((Xi, yi, sw, coef_init, intercept_init), before):
            if sp.issparse(a):
                assert (a != b).nnz == 0
            else:
                np.testing.assert_array_equal(a, b)


def test_pickle_round_trip():
    X, y = digits()
    est = fm.Perceptron(max_iter=4, tol=None).fit(X, y)
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.predict(X), est.predict(X))
    clone.partial_fit(X, y)
    est.partial_fit(X, y)
    np.testing.assert_array_equal(clone.coef_, est.coef_)


def test_partial_fit_in_the_other_precision_converts_the_data():
    # scikit-learn raises a TypeError from its Cython loop here; fusedmlp trains on
    X, y = iris()
    est = fm.Perceptron().partial_fit(X, y, classes=[0, 1, 2])
    est.partial_fit(X.astype(np.float32), y)
    assert est.coef_.dtype == np.float64
    ref = fm.Perceptron().partial_fit(X, y, classes=[0, 1, 2]).partial_fit(
        X.astype(np.float32).astype(np.float64), y)
    np.testing.assert_array_equal(est.coef_, ref.coef_)


# ---- messages, warnings, errors ----------------------------------------------------------------


def mask_times(text_):
    return re.sub(r"\d+\.\d\d seconds", "T seconds", text_)


@pytest.mark.parametrize("params", [
    dict(), dict(early_stopping=True, n_iter_no_change=2), dict(penalty="elasticnet"),
    dict(tol=None, max_iter=3),
])
@pytest.mark.parametrize("binary", [False, True])
def test_verbose_output_matches_sklearn(capsys, params, binary):
    X, y = iris()
    if binary:
        y = y == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.Perceptron(verbose=1, **params).fit(X, y)
        ref = capsys.readouterr().out
        fm.Perceptron(verbose=1, **params).fit(X, y)
        got = capsys.readouterr().out
    assert mask_times(got) == mask_times(ref)
    assert "-- Epoch 1" in got and "Norm: " in got


def test_convergence_warning_matches_sklearn():
    X, y = digits()
    messages = []
    for cls in (sk.Perceptron, fm.Perceptron):
        with pytest.warns(ConvergenceWarning) as record:
            cls(max_iter=2).fit(X, y)
        messages.append([str(w.message) for w in record if w.category is ConvergenceWarning])
    assert messages[0] == messages[1]
    assert "Maximum number of iteration reached before convergence" in messages[0][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fm.Perceptron(max_iter=2, tol=None).fit(X, y)  # no tolerance, no warning


def outcome(fn):
    """(exception type, message) of fn(), as tests/test_bad_input.py compares them."""
    return bad_input.outcome(None, lambda _: fn())


Xb, yb = bad_input.X, bad_input.y_cls
with_nan, with_inf = bad_input.with_nan, bad_input.with_inf


# test_bad_input.py's cases for the MLPs, and the Perceptron's own
BAD_FIT = {
    **bad_input.BAD_FIT,
    "y-2d": (Xb, np.ones((40, 2)), {}),
    "one-class": (Xb, np.zeros(40), {}),
    "weights-all-zero": (Xb, yb, {"sample_weight": np.zeros(40)}),
    "coef-init-shape": (Xb, yb, {"coef_init": np.zeros((2, 4))}),
    "intercept-init-shape": (Xb, yb, {"intercept_init": np.zeros(2)}),
    "binary-coef-init-shape": (Xb, yb % 2, {"coef_init": np.zeros(5)}),
    "binary-intercept-init-shape": (Xb, yb % 2, {"intercept_init": np.zeros(2)}),
}


@pytest.mark.parametrize("name", list(BAD_FIT))
def test_bad_fit_input_same_error_as_sklearn(name):
    X, y, kw = BAD_FIT[name]
    ref = outcome(lambda: sk.Perceptron(max_iter=5).fit(X, y, **kw))
    got = outcome(lambda: fm.Perceptron(max_iter=5).fit(X, y, **kw))
    assert ref[0] is not None, "scikit-learn accepted this input; the case is wrong"
    assert got == ref


# X's values are checked by the engine's pass over X, after the rest of validate_data: the
# errors must still come in scikit-learn's order, and before any random draw
Xwide = np.random.RandomState(1).standard_normal((40, 36))
NAN_AND_MORE = {
    "short-y": lambda e, X: e.fit(X, yb[:-1]),
    "y-3d": lambda e, X: e.fit(X, np.ones((40, 2, 2))),
    "y-nan": lambda e, X: e.fit(X, np.r_[np.nan, yb[1:]].astype(float)),
    "one-class": lambda e, X: e.fit(X, np.zeros(40)),
    "weight-length": lambda e, X: e.fit(X, yb, sample_weight=np.ones(3)),
    "coef-init-shape": lambda e, X: e.fit(X, yb, coef_init=np.zeros((2, 2))),
    "no-classes": lambda e, X: e.partial_fit(X, yb),
    "features-changed": lambda e, X: e.partial_fit(
        np.nan_to_num(X[:, :-1]), yb, classes=[0, 1, 2]).partial_fit(X, yb),
}


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("case", list(NAN_AND_MORE))
def test_non_finite_X_error_comes_first_as_in_sklearn(case, wide, value):
    X = (Xwide if wide else Xb).copy()
    X[7, 2] = value
    fn = NAN_AND_MORE[case]
    ref_rs, got_rs = np.random.RandomState(0), np.random.RandomState(0)
    ref = outcome(lambda: fn(sk.Perceptron(random_state=ref_rs, max_iter=5), X))
    got = outcome(lambda: fn(fm.Perceptron(random_state=got_rs, max_iter=5), X))
    assert ref[0] is not None
    assert got == ref
    assert ref_rs.randint(1000) == got_rs.randint(1000)  # the same draws were made


def test_non_finite_feature_names_case_same_error_as_sklearn():
    pd = pytest.importorskip("pandas")
    X = Xwide.copy()
    X[3, 3] = np.nan
    first = pd.DataFrame(np.nan_to_num(X), columns=[f"a{i}" for i in range(36)])
    second = pd.DataFrame(X, columns=[f"b{i}" for i in range(36)])
    fn = lambda e: e.partial_fit(first, yb, classes=[0, 1, 2]).partial_fit(second, yb)  # noqa: E731
    assert outcome(lambda: fn(fm.Perceptron())) == outcome(lambda: fn(sk.Perceptron()))


BAD_PARAMS = [
    dict(penalty="l3"), dict(penalty="none"), dict(alpha=-1.0), dict(l1_ratio=1.5),
    dict(l1_ratio=None), dict(fit_intercept="yes"), dict(max_iter=0), dict(max_iter=2.5),
    dict(tol=-1.0), dict(shuffle=1.5), dict(verbose="loud"), dict(eta0=0.0), dict(n_jobs=1.5),
    dict(n_jobs=0), dict(random_state="seed"), dict(early_stopping="yes"),
    dict(validation_fraction=1.0), dict(validation_fraction=0.0), dict(n_iter_no_change=0),
    dict(class_weight="heavy"), dict(class_weight={7: 2.0}), dict(warm_start=2),
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=str)
def test_invalid_parameters_same_error_as_sklearn(params):
    ref = outcome(lambda: sk.Perceptron(**params).fit(Xb, yb))
    got = outcome(lambda: fm.Perceptron(**params).fit(Xb, yb))
    assert ref[0] is not None
    assert got == ref


def test_prediction_errors_same_as_sklearn():
    for fn in ("predict", "decision_function"):
        assert outcome(lambda: getattr(fm.Perceptron(), fn)(Xb))[0] is NotFittedError
        assert outcome(lambda: getattr(fm.Perceptron(), fn)(Xb)) == outcome(
            lambda: getattr(sk.Perceptron(), fn)(Xb))
    ref = sk.Perceptron().fit(Xb, yb)
    got = fm.Perceptron().fit(Xb, yb)
    for bad in (Xb[:, :3], with_nan(Xb), Xb[:, 0], Xb[:0], np.array([["x"] * 4])):
        for fn in ("predict", "decision_function", "score"):
            args = (bad, yb[: len(bad)]) if fn == "score" else (bad,)
            assert outcome(lambda: getattr(got, fn)(*args)) == outcome(
                lambda: getattr(ref, fn)(*args))


PARTIAL_FIT_CASES = [
    lambda e: e.partial_fit(Xb, yb),  # classes missing on the first call
    lambda e: e.partial_fit(Xb, yb, classes=[0, 1, 2]).partial_fit(Xb, yb + 5),
    lambda e: e.partial_fit(Xb, yb, classes=[0, 1, 2]).partial_fit(Xb, yb, classes=[0, 1]),
    lambda e: e.partial_fit(Xb, yb, classes=[0, 1, 2]).partial_fit(Xb[:, :2], yb),
    lambda e: e.partial_fit(Xb, yb, classes=[0, 1]),
    lambda e: e.set_params(early_stopping=True).partial_fit(Xb, yb, classes=[0, 1, 2]),
    lambda e: e.set_params(class_weight="balanced").partial_fit(Xb, yb, classes=[0, 1, 2]),
    lambda e: e.set_params(class_weight={5: 2.0}).partial_fit(Xb, yb, classes=[0, 1, 2]),
    lambda e: e.partial_fit(Xb, yb, classes=[0]),
]


@pytest.mark.parametrize("case", range(len(PARTIAL_FIT_CASES)))
def test_partial_fit_errors_same_as_sklearn(case):
    fn = PARTIAL_FIT_CASES[case]
    ref = outcome(lambda: fn(sk.Perceptron()))
    got = outcome(lambda: fn(fm.Perceptron()))
    assert ref[0] is not None and got == ref


@pytest.mark.parametrize("params, n", [
    (dict(early_stopping=True, validation_fraction=0.01), 40),  # an empty validation set
    (dict(early_stopping=True, validation_fraction=0.5), 5),    # too few of a class
])
def test_validation_split_errors_same_as_sklearn(params, n):
    fn = lambda cls: cls(**params).fit(Xb[:n], yb[:n])  # noqa: E731
    ref = outcome(lambda: fn(sk.Perceptron))
    assert ref[0] is not None
    assert outcome(lambda: fn(fm.Perceptron)) == ref


def test_zero_validation_weights_same_error_as_sklearn():
    sw = np.ones(40)
    sw[::2] = 0.0  # the stratified split draws some of these
    for seed in range(20):
        kw = dict(early_stopping=True, validation_fraction=0.1, random_state=seed)
        ref = outcome(lambda: sk.Perceptron(**kw).fit(Xb, yb, sample_weight=sw * (np.arange(40) % 4 == 0)))
        got = outcome(lambda: fm.Perceptron(**kw).fit(Xb, yb, sample_weight=sw * (np.arange(40) % 4 == 0)))
        assert got == ref


def test_divergence_same_error_as_sklearn():
    X = Xb * 1e300
    for y in (yb, yb % 2):
        ref = outcome(lambda: sk.Perceptron(eta0=1e10, max_iter=3).fit(X, y))
        got = outcome(lambda: fm.Perceptron(eta0=1e10, max_iter=3).fit(X, y))
        assert ref[0] is ValueError and "overflow" in ref[1]
        assert got == ref


def test_bindings_reject_inconsistent_arguments():
    X = np.ascontiguousarray(Xb)
    coef = np.zeros((1, 4))
    tasks = dict(positive=np.ones(1, np.int64), intercept=np.zeros(1), weight_pos=np.ones(1),
                 weight_neg=np.ones(1), seed=np.ones(1, np.int64))
    opts = dict(penalty="none", alpha=1e-4, l1_ratio=0.15, eta0=1.0, fit_intercept=True,
                intercept_decay=1.0, max_iter=2, tol=-np.inf, n_iter_no_change=5, shuffle=True,
                early_stopping=False, verbose=False)
    y = (yb % 2).astype(np.int32)
    ok = _cpu.PerceptronSolverF64(X, y, None, None, 0.0, coef, tasks, opts)
    ok.run(None, 2, 1)
    with pytest.raises(TypeError):
        _cpu.PerceptronSolverF64(X.astype(np.float32), y, None, None, 0.0, coef, tasks, opts)
    with pytest.raises(ValueError):
        _cpu.PerceptronSolverF64(X, y[:-1], None, None, 0.0, coef, tasks, opts)
    with pytest.raises(ValueError):
        _cpu.PerceptronSolverF64(X, y, None, None, 0.0, np.zeros((1, 3)), tasks, opts)
    with pytest.raises(ValueError):
        _cpu.PerceptronSolverF64(X, y, None, None, 0.0, coef, tasks, {**opts, "penalty": "l3"})
    with pytest.raises(ValueError):
        _cpu.PerceptronSolverF64(X, y, None, None, 0.0, coef, {**tasks, "seed": -np.ones(1, np.int64)}, opts)
    with pytest.raises(TypeError):
        _cpu.PerceptronSolverF64(X, y, [1.0] * 40, None, 0.0, coef, tasks, opts)
    with pytest.raises(IndexError):
        ok.run([3], 1, 1)


# ---- interruption ------------------------------------------------------------------------------


def test_ctrl_c_interrupts_a_fit_within_a_second():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200_000, 60))
    y = rng.integers(0, 4, X.shape[0])
    est = fm.Perceptron(max_iter=100_000, tol=None, n_jobs=2)
    with sigint_after(1.0) as fired:
        with pytest.raises(KeyboardInterrupt):
            est.fit(X, y)
        stopped = time.perf_counter()
    assert stopped - fired[0] < 1.0
    # the estimator is usable and consistent after the interruption
    assert est.coef_.shape == (4, 60) and np.isfinite(est.coef_).all()
    assert est.n_iter_ >= 1 and est.t_ == 1.0 + est.n_iter_ * X.shape[0]
    assert est.predict(X[:10]).shape == (10,)
    est.set_params(max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X[:500], y[:500])
