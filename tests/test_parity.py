"""float64 parity with scikit-learn: same random_state, same initial weights, and after 10
epochs the same loss_curve_ and coefs_ to a relative tolerance of 1e-6."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import neural_network as sk
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression
from sklearn.preprocessing import LabelBinarizer, StandardScaler
from sklearn.utils import check_random_state

import fusedmlp as fm
from fusedmlp import _cpu
from tests.conftest import CPU_ISAS

RTOL = 1e-6
SOLVERS = {
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05, nesterovs_momentum=True),
    "sgd-momentum": dict(solver="sgd", learning_rate_init=0.05, nesterovs_momentum=False),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2, momentum=0.5),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, tol=0.5,
                         n_iter_no_change=1),
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "lbfgs": dict(solver="lbfgs"),
}
ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
TARGETS = ["regression", "multioutput-regression", "binary", "multiclass", "multilabel"]


def make_data(target, n=157, d=9):
    if target in ("regression", "multioutput-regression"):
        X, y = make_regression(n_samples=n, n_features=d, n_targets=1 if target == "regression" else 3,
                               noise=5.0, random_state=0)
        y = y / np.std(y)
    elif target == "binary":
        X, y = make_classification(n_samples=n, n_features=d, n_informative=5, random_state=0)
    elif target == "multiclass":
        X, y = make_classification(n_samples=n, n_features=d, n_informative=6, n_classes=4, random_state=0)
        y = np.array(["ant", "bee", "cat", "dog"])[y]
    else:
        X, y = make_multilabel_classification(n_samples=n, n_features=d, n_classes=3, random_state=0)
    return StandardScaler().fit_transform(X), y


def fit_pair(target, params, sample_weight=None, X=None, y=None, **fit_kw):
    if X is None:
        X, y = make_data(target)
    cls = ("MLPRegressor" if "regression" in target else "MLPClassifier")
    kw = dict(hidden_layer_sizes=(11, 7), random_state=3, max_iter=10, batch_size=32, n_iter_no_change=100)
    kw.update(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(sk, cls)(**kw).fit(X, y, sample_weight=sample_weight, **fit_kw)
        got = getattr(fm, cls)(dtype="float64", **kw).fit(X, y, sample_weight=sample_weight, **fit_kw)
    return ref, got


def assert_same_model(ref, got):
    assert got.n_iter_ == ref.n_iter_
    assert got.t_ == ref.t_
    assert got.out_activation_ == ref.out_activation_
    assert got.n_layers_ == ref.n_layers_ and got.n_outputs_ == ref.n_outputs_
    np.testing.assert_allclose(got.loss_, ref.loss_, rtol=RTOL)
    if hasattr(ref, "loss_curve_"):
        np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=RTOL)
        assert got.best_loss_ == pytest.approx(ref.best_loss_, rel=RTOL) if ref.best_loss_ is not None else got.best_loss_ is None
        if ref.validation_scores_ is not None:
            np.testing.assert_allclose(got.validation_scores_, ref.validation_scores_, rtol=RTOL)
            assert got.best_validation_score_ == pytest.approx(ref.best_validation_score_, rel=RTOL)
        else:
            assert got.validation_scores_ is None and got.best_validation_score_ is None
    for a, b in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.dtype == np.float64 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_parity(solver, activation, target):
    ref, got = fit_pair(target, dict(SOLVERS[solver], activation=activation))
    assert_same_model(ref, got)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_parity_sample_weight(solver, target):
    X, y = make_data(target)
    sw = check_random_state(7).uniform(0.1, 3.0, X.shape[0])
    ref, got = fit_pair(target, dict(SOLVERS[solver], activation="tanh"), sample_weight=sw, X=X, y=y)
    assert_same_model(ref, got)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
@pytest.mark.parametrize("weighted", [False, True])
def test_parity_early_stopping(solver, target, weighted):
    X, y = make_data(target, n=300)
    sw = check_random_state(7).uniform(0.1, 3.0, X.shape[0]) if weighted else None
    params = dict(SOLVERS[solver], activation="relu", early_stopping=True, validation_fraction=0.2,
                  n_iter_no_change=3, tol=1e-2, max_iter=30)
    ref, got = fit_pair(target, params, sample_weight=sw, X=X, y=y)
    assert_same_model(ref, got)


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam", "lbfgs"])
def test_parity_poisson(solver):
    rng = check_random_state(0)
    X = rng.standard_normal((200, 6))
    y = rng.poisson(np.exp(X[:, 0] * 0.5 + 0.2))
    ref, got = fit_pair("regression", dict(SOLVERS[solver], loss="poisson", activation="tanh"), X=X, y=y)
    assert_same_model(ref, got)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_parity_sparse(fmt, solver):
    X, y = make_data("multiclass")
    X[np.abs(X) < 0.8] = 0
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    ref, got = fit_pair("multiclass", dict(SOLVERS[solver], activation="relu"), X=Xs, y=y)
    assert_same_model(ref, got)
    _, dense = fit_pair("multiclass", dict(SOLVERS[solver], activation="relu"), X=X, y=y)
    assert_same_model(ref, dense)


@pytest.mark.parametrize("shuffle", [True, False])
def test_parity_partial_fit_and_warm_start(shuffle):
    X, y = make_data("multiclass")
    kw = dict(hidden_layer_sizes=(11, 7), random_state=3, batch_size=25, shuffle=shuffle, learning_rate_init=0.01)
    ref = sk.MLPClassifier(**kw)
    got = fm.MLPClassifier(dtype="float64", **kw)
    classes = np.unique(y)
    for _ in range(4):
        ref.partial_fit(X, y, classes=classes)
        got.partial_fit(X, y, classes=classes)
    assert_same_model(ref, got)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.set_params(warm_start=True, max_iter=5).fit(X, y)
        got.set_params(warm_start=True, max_iter=5).fit(X, y)
    assert_same_model(ref, got)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_initial_weights_identical(target, activation):
    X, y = make_data(target)
    y2 = np.asarray(y)
    est_cls = (sk.MLPRegressor, fm.MLPRegressor) if "regression" in target else (sk.MLPClassifier, fm.MLPClassifier)
    models = []
    for est in (est_cls[0](activation=activation, random_state=11, hidden_layer_sizes=(13, 5)),
                est_cls[1](activation=activation, random_state=11, hidden_layer_sizes=(13, 5), dtype="float64")):
        yb = y2
        if "regression" not in target:
            est._label_binarizer = LabelBinarizer().fit(y2)
            yb = est._label_binarizer.transform(y2)
        yb = yb.reshape(len(yb), -1)
        est._random_state = check_random_state(11)
        est._initialize(yb, [X.shape[1], 13, 5, yb.shape[1]], np.float64)
        models.append(est)
    for a, b in zip(models[0].coefs_ + models[0].intercepts_, models[1].coefs_ + models[1].intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("target", ["regression", "multiclass", "multilabel"])
@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
@pytest.mark.parametrize("batch_size", [200, 333])
def test_parity_full_size_batches(solver, target, batch_size):
    # Batches of several row blocks (small networks split a batch into blocks of ~60 rows and
    # sum their gradients) and of one block per layer-split GEMM.
    X, y = make_data(target, n=1000)
    ref, got = fit_pair(target, dict(SOLVERS[solver], activation="relu", batch_size=batch_size), X=X, y=y)
    assert_same_model(ref, got)
    ref, got = fit_pair(target, dict(SOLVERS[solver], activation="tanh", batch_size=batch_size,
                                     hidden_layer_sizes=(300, 300)), X=X, y=y)
    assert_same_model(ref, got)


@pytest.mark.parametrize("target", ["regression", "multiclass"])
@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
@pytest.mark.parametrize("d", [511, 600, 785])
def test_parity_wide_first_layer(solver, target, d):
    # From 512 inputs, an epoch's first layer (layer by layer: more than 2^16 parameters) sums
    # its forward products in two halves of its depth (dense_forward_halves: 600 inputs split at
    # 300, 785 at 396): the same model to rounding as without the halves (511 inputs).
    X, y = make_data(target, n=300, d=d)
    for activation in ("relu", "tanh"):
        halves_before = _cpu._halves_epochs()
        ref, got = fit_pair(target, dict(SOLVERS[solver], activation=activation, batch_size=64,
                                         hidden_layer_sizes=(130,), max_iter=4,
                                         learning_rate_init=0.002), X=X, y=y)
        assert _cpu._halves_epochs() - halves_before == (got.n_iter_ if d >= 512 else 0)
        assert_same_model(ref, got)


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
@pytest.mark.parametrize("batch_size", [32, 200])
def test_parity_on_every_instruction_set(isa, solver, batch_size):
    # Every instruction set's kernels this CPU runs, not only the best one: layers of 50 and 36
    # units leave weight gradients whose last column panel is two or four columns wide (computed
    # by row vectors on AVX2 and AVX-512 where it is at most a quarter of a panel), through the
    # weight updates fused into the products (batches of 32: one block, layer by layer) and
    # through the blocks' own gradients (batches of 200: row blocks); alpha large enough that
    # every weight's square counts in the loss.
    X, y = make_data("multiclass", n=400, d=9)
    params = dict(SOLVERS[solver], hidden_layer_sizes=(50, 36), batch_size=batch_size, alpha=0.5,
                  max_iter=4)
    assert_same_model(*fit_pair_on_isa(isa, params, X, y))


def fit_pair_on_isa(isa, params, X, y):
    """fit_pair of a multiclass model with the kernels of instruction set `isa`."""
    before = _cpu.active_isa()
    _cpu.set_isa(isa)
    try:
        return fit_pair("multiclass", params, X=X, y=y)
    finally:
        _cpu.set_isa(before)


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
@pytest.mark.parametrize("batch_size", [32, 200])
def test_parity_with_runs_of_zero_inputs(isa, solver, batch_size):
    # Inputs zero outside a run of features in each row (an image's background): the weight
    # gradients' packed panels of X^T leave out their all-zero steps (compact_zero_steps, on AVX2
    # and AVX-512) in the weight updates fused into the products (both batch sizes; 120 hidden
    # units: no row blocks), and so do the panels of X in the first layer's forward products in
    # two halves of its depth (600 inputs) when the batch's rows are more than B_IN_PLACE_PANELS
    # panels (batches of 200, not 32). The same model to rounding as scikit-learn's.
    X, y = make_data("multiclass", n=400, d=600)
    rng = np.random.default_rng(4)
    for row in X:
        lo, hi = np.sort(rng.integers(0, 601, 2))
        row[:lo] = 0.0
        row[hi:] = 0.0
    params = dict(SOLVERS[solver], hidden_layer_sizes=(120, 36), batch_size=batch_size, max_iter=4,
                  learning_rate_init=0.002)
    halves_before, skipped_before = _cpu._halves_epochs(), _cpu._skipped_zero_steps()
    assert_same_model(*fit_pair_on_isa(isa, params, X, y))
    assert _cpu._halves_epochs() > halves_before
    columns, rows = (after - before
                     for before, after in zip(skipped_before, _cpu._skipped_zero_steps()))
    if isa in ("avx2", "avx512"):
        assert columns > 0 and (rows > 0) == (batch_size == 200), (columns, rows)
    else:
        assert columns == rows == 0


@pytest.mark.parametrize("n", [0, 1, 2, 199, 623, 624, 625, 1249, 16512, 70000])
@pytest.mark.parametrize("generator", ["mt19937", "pcg64", "mt19937, layout unconfirmed"])
def test_shuffle_draws_are_scikit_learns(n, generator, monkeypatch):
    # The epoch's shuffle skips sklearn.utils.shuffle's validation and draws in the engine: the
    # same permutations from the same RandomState, epoch after epoch, and the state left where
    # scikit-learn leaves it (sizes about the MT19937's blocks of 624 words). numpy's MT19937 is
    # drawn inline, any other bit generator (or an MT19937 whose state the engine would not read
    # as numpy lays it out) through numpy's function pointers.
    from sklearn.utils import shuffle

    from fusedmlp import _engine
    from fusedmlp._driver import shuffled

    if generator == "pcg64":
        ours, theirs = (np.random.RandomState(np.random.PCG64(3)) for _ in range(2))
    else:
        ours, theirs = check_random_state(3), check_random_state(3)
    if generator == "mt19937, layout unconfirmed":
        monkeypatch.setattr(_engine, "_MT19937_LAYOUT", [False])
    a = b = np.arange(n, dtype=np.int64) * 3 + 1
    for _ in range(3):
        a, b = shuffled(a, ours), shuffle(b, random_state=theirs)
        np.testing.assert_array_equal(a, b)
    assert ours.randint(1 << 30) == theirs.randint(1 << 30)
    assert ours.standard_normal() == theirs.standard_normal()
    if generator == "mt19937":
        assert _engine._MT19937_LAYOUT == [True]  # (the inline draws ran)


def test_shuffle_leaves_its_input_and_takes_any_index_array():
    from fusedmlp._driver import shuffled

    for indices in (np.arange(50, dtype=np.int64)[::2], np.arange(25, dtype=np.int32)):
        before = indices.copy()
        ours, theirs = check_random_state(0), check_random_state(0)
        permutation = np.arange(indices.shape[0])
        theirs.shuffle(permutation)
        np.testing.assert_array_equal(shuffled(indices, ours), indices[permutation])
        np.testing.assert_array_equal(indices, before)
    with pytest.raises(ValueError, match="1-D"):
        from fusedmlp import _engine

        _engine.shuffled_indices(np.zeros((2, 2), dtype=np.int64),
                                 np.random.RandomState(0)._bit_generator)
