"""Behaviour a scikit-learn user relies on: messages, warnings, persistence, continuation,
interruption, threads and precision."""

import copy
import itertools
import os
import pickle
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import neural_network as sk
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning

import fusedmlp as fm
from fusedmlp import _cpu
from tests.conftest import sigint_after

X_digits, y_digits = load_digits(return_X_y=True)
X_digits = X_digits / 16.0


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_verbose_output_matches_sklearn(capsys, solver, early_stopping):
    kw = dict(solver=solver, verbose=True, max_iter=15, random_state=0, hidden_layer_sizes=(20,),
              early_stopping=early_stopping, n_iter_no_change=2, tol=0.05, learning_rate="adaptive")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.MLPClassifier(**kw).fit(X_digits, y_digits)
        ref = capsys.readouterr().out
        fm.MLPClassifier(dtype="float64", **kw).fit(X_digits, y_digits)
        got = capsys.readouterr().out
    assert got == ref
    assert "Iteration 1, loss = " in got


def test_convergence_warning_matches_sklearn():
    for est in (sk.MLPClassifier(max_iter=3), fm.MLPClassifier(max_iter=3)):
        with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
            est.fit(X_digits, y_digits)
    for est in (sk.MLPClassifier(max_iter=2, solver="lbfgs"), fm.MLPClassifier(max_iter=2, solver="lbfgs")):
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
            est.fit(X_digits, y_digits)


def test_batch_size_clipping_warning():
    with pytest.warns(UserWarning, match="It is going to be clipped"):
        fm.MLPClassifier(batch_size=5000, max_iter=1).fit(X_digits[:100], y_digits[:100])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pickle_round_trip_and_continuation(dtype):
    est = fm.MLPClassifier(hidden_layer_sizes=(30,), random_state=0, dtype=dtype)
    est.partial_fit(X_digits, y_digits, classes=np.unique(y_digits))
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.predict_proba(X_digits), est.predict_proba(X_digits))
    # partial_fit continues from the pickled optimizer state exactly as without pickling
    est.partial_fit(X_digits, y_digits)
    clone.partial_fit(X_digits, y_digits)
    for a, b in zip(est.coefs_ + est.intercepts_, clone.coefs_ + clone.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert clone.coefs_[0].dtype == np.dtype(dtype)
    # the flat buffer is not pickled beside the arrays that view it: the parameters once,
    # plus Adam's two moment vectors
    n_bytes = sum(a.nbytes for a in est.coefs_ + est.intercepts_)
    assert len(pickle.dumps(est)) < 3.2 * n_bytes + 20_000


def test_coefs_are_views_and_assignment_takes_effect():
    est = fm.MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    X, y = make_regression(n_samples=60, n_features=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    before = est.predict(X)
    est.coefs_[1] *= 2.0  # in place, through the view
    np.testing.assert_allclose(est.predict(X) - est.intercepts_[1][0], 2 * (before - est.intercepts_[1][0]), rtol=1e-5)
    est.coefs_ = [np.zeros_like(c) for c in est.coefs_]  # replaced by the user
    np.testing.assert_allclose(est.predict(X), est.intercepts_[1][0])


def test_early_stopping_restores_the_best_weights():
    est = fm.MLPClassifier(early_stopping=True, random_state=0, max_iter=200, n_iter_no_change=3,
                           hidden_layer_sizes=(40,), dtype="float64")
    est.fit(X_digits, y_digits)
    assert est.best_loss_ is None and len(est.validation_scores_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.n_iter_ < 200


def test_threads_do_not_change_the_model():
    kw = dict(hidden_layer_sizes=(64, 32), random_state=0, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = fm.MLPClassifier(n_threads=1, **kw).fit(X_digits, y_digits)
        two = fm.MLPClassifier(n_threads=2, **kw).fit(X_digits, y_digits)
    for a, b in zip(one.coefs_ + one.intercepts_, two.coefs_ + two.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.loss_curve_, two.loss_curve_)


@pytest.mark.parametrize("extra", [{}, {"dropout": 0.2, "activation": "tanh"},
                                   {"activation": "gelu"}, {"dtype": "float64", "solver": "sgd"}])
def test_threads_do_not_change_a_wide_first_layer(extra):
    # 600 inputs and more than 2^16 parameters: each batch's first layer is computed in two
    # halves of its depth (dense_forward_halves) by the two halves of an even team, one after
    # the other by an odd one; its sum, bias, stored pre-activations (gelu) and dropout mask are
    # written row by row over the team. One, two, three and four threads: the same bits.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 600))
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 0.5)
    kw = dict(hidden_layer_sizes=(120,), random_state=0, max_iter=3, batch_size=64, **extra)
    halves_before = _cpu._halves_epochs()
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in (1, 2, 3, 4):
            # (each team fit starts on its full team, whatever a busy test before found)
            _cpu._forget_team_choice()
            full_before = _cpu.team_segments()[1]
            try:
                fits.append(fm.MLPClassifier(n_threads=n, **kw).fit(X, y))
            finally:
                _cpu._forget_team_choice()
            if n > 1:
                assert _cpu.team_segments()[1] > full_before
    assert _cpu._halves_epochs() - halves_before == 4 * 3
    for est in fits[1:]:
        for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, est.coefs_ + est.intercepts_):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fits[0].loss_curve_, est.loss_curve_)


LOSS_CASES = {
    # a network small enough for row blocks (the optimizer's squares in fixed chunks)
    "row blocks, adam": dict(hidden_layer_sizes=(50, 50), alpha=1e-3),
    "row blocks, sgd, float64": dict(hidden_layer_sizes=(50, 50), solver="sgd", alpha=1e-2,
                                     dtype="float64"),
    # more than 2^16 parameters: layer by layer (the losses in fixed row chunks, the squares per
    # row of W)
    "layers, adam": dict(hidden_layer_sizes=(600, 100), alpha=1e-3),
    "layers, sgd, float64": dict(hidden_layer_sizes=(1100,), solver="sgd", alpha=1e-2,
                                 dtype="float64"),
    # sparse input (the first layer's squares taken after the update), fewer inputs than a
    # micro-tile's rows (the update on one thread), the whole-data objective of L-BFGS
    "layers, sparse input": dict(hidden_layer_sizes=(1100,), alpha=1e-2, sparse=True),
    "layers, 4 inputs": dict(hidden_layer_sizes=(2000, 30), alpha=1e-2, batch_size=400, columns=4),
    "lbfgs": dict(hidden_layer_sizes=(300,), solver="lbfgs", alpha=1e-2, max_iter=15),
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_threads_do_not_change_the_loss(case):
    # The reported losses are sums over rows and weights that every thread contributes to: each
    # term goes to a fixed slot (a chunk of rows, a row of W, a chunk of weights) and the slots
    # are summed in order, so that loss_curve_ (and the stopping rules that read it) has the
    # same bits on one, two or three threads, and whichever team each part of an epoch ran on.
    kw = dict(LOSS_CASES[case])
    sparse, columns = kw.pop("sparse", False), kw.pop("columns", None)
    X = X_digits[:, :columns] if columns else X_digits
    X = sp.csr_matrix(X) if sparse else X
    kw = {"max_iter": 3, "random_state": 0, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [fm.MLPClassifier(n_threads=n, **kw).fit(X, y_digits) for n in (1, 2, 3)]
    for est in fits[1:]:
        for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, est.coefs_ + est.intercepts_):
            np.testing.assert_array_equal(a, b)
        if kw.get("solver") == "lbfgs":
            assert est.loss_ == fits[0].loss_
        else:
            np.testing.assert_array_equal(est.loss_curve_, fits[0].loss_curve_)


ROW_BLOCK_CASES = {
    # (batch size, threads, rows, columns, classes, dtype): 2, 4, 6 and 8 blocks per batch
    "4 blocks, 2 threads (a half each)": (150, 2, None, None, 10, "float32"),
    "4 blocks, 2 threads": (200, 2, None, None, 10, "float32"),
    "6 blocks, 2 threads (split pair)": (300, 2, None, None, 10, "float32"),
    "8 blocks, 2 threads": (480, 2, None, None, 10, "float32"),
    "4 blocks, 3 threads (split pair)": (150, 3, None, None, 10, "float32"),
    "4 blocks, 3 threads (split pair), 200 rows": (200, 3, None, None, 10, "float32"),
    "8 blocks, 3 threads (split pair), float64": (480, 3, None, None, 10, "float64"),
    "6 blocks, 3 threads": (360, 3, None, None, 10, "float32"),
    # more threads than blocks; a last batch of fewer blocks (1,561 rows: 61 in the last)
    "2 blocks, 3 threads": (100, 3, None, None, 10, "float32"),
    "6 blocks, last batch 2 blocks": (300, 2, 1561, None, 10, "float64"),
    # 4 inputs (the first layer's gradient has fewer rows than a micro-tile) and one output
    # unit (two classes: its gradient column by column): the other products' accumulation
    "4 inputs, one output, 4 blocks": (150, 2, None, 4, 2, "float32"),
    "4 inputs, one output, 4 blocks, float64": (200, 3, None, 4, 2, "float64"),
}


def test_row_blocks_split_a_batch_into_even_halves():
    # A batch's row blocks (small networks): one block up to 60 rows, else an even number of
    # blocks of about 60 rows, half of them in each half of the rows (rows // 2 in the first), so
    # that two threads run the same rows; in each half every block starts a whole number of
    # micro-kernel panels after the half's start, and the blocks' panels differ by at most one.
    for mr in (4, 6, 12):  # every kernel's panel height (csrc/cpu/gemm/blocking.h)
        for rows in range(1, 3001):
            bounds = _cpu._row_blocks(rows, mr)
            n = len(bounds) - 1
            assert bounds[0] == 0 and bounds[-1] == rows
            assert all(b1 > b0 for b0, b1 in zip(bounds, bounds[1:])), (rows, mr, bounds)
            if rows <= 60:
                assert n == 1
                continue
            assert n % 2 == 0 and n in (-(-rows // 60), -(-rows // 60) + 1), (rows, mr, bounds)
            assert bounds[n // 2] == rows // 2, (rows, mr, bounds)
            for half in (bounds[:n // 2 + 1], bounds[n // 2:]):
                assert all((b - half[0]) % mr == 0 for b in half[:-1]), (rows, mr, bounds)
                panels = [-(-(b1 - b0) // mr) for b0, b1 in zip(half, half[1:])]
                assert max(panels) - min(panels) <= 1, (rows, mr, bounds)
    assert _cpu._row_blocks(200, 12) == [0, 48, 100, 148, 200]
    assert _cpu._row_blocks(128, 12) == [0, 36, 64, 100, 128]
    with pytest.raises(ValueError, match="rows >= 1"):
        _cpu._row_blocks(0, 12)


@pytest.mark.parametrize("case", list(ROW_BLOCK_CASES))
def test_threads_do_not_change_a_row_block_model(case):
    # A small network's batch runs in row blocks of ~60 rows, a contiguous run of them per
    # thread. Blocks 2j and 2j + 1 form a pair: a thread that runs both accumulates their
    # gradients in one buffer, a pair split between two threads (6 blocks on two threads, 4 on
    # three) is added by the optimizer pass. The model
    # must have the bits of the one-thread fit, whose thread runs every pair. The team must
    # really run: an earlier fit that found it slower would make this one start alone.
    _assert_row_block_team_keeps_the_model(*ROW_BLOCK_CASES[case])


# The optimizer's step of a row-block batch: each thread steps its own copy of all the parameters
# in networks of up to 8,192 (the 64-50-30-10 network: 5,090), the team splits the parameters in
# larger ones (64-150-40-10: 16,200); either way, with Adam, plain SGD and both momentums.
@pytest.mark.parametrize("hidden", [(50, 30), (150, 40)])
@pytest.mark.parametrize("solver", [{}, {"solver": "sgd", "momentum": 0.0},
                                    {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": False},
                                    {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True}],
                         ids=["adam", "sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("batch_size, n_threads", [(300, 2), (150, 3)])
def test_the_row_block_step_keeps_the_one_thread_model(hidden, solver, batch_size, n_threads):
    _assert_row_block_team_keeps_the_model(batch_size, n_threads, None, None, 10, "float32",
                                           hidden_layer_sizes=hidden, **solver)


def _assert_row_block_team_keeps_the_model(batch_size, n_threads, rows, columns, classes, dtype,
                                           **extra):
    X, y = X_digits[:rows, :columns], y_digits[:rows] % classes
    kw = dict(hidden_layer_sizes=(50, 30), random_state=0, max_iter=2, batch_size=batch_size,
              alpha=1e-3, dtype=dtype)
    kw.update(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = fm.MLPClassifier(n_threads=1, **kw).fit(X, y)
        _cpu._forget_team_choice()
        full_before = _cpu.team_segments()[1]
        try:
            many = fm.MLPClassifier(n_threads=n_threads, **kw).fit(X, y)
        finally:
            _cpu._forget_team_choice()
    assert _cpu.team_segments()[1] > full_before
    for a, b in zip(one.coefs_ + one.intercepts_, many.coefs_ + many.intercepts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.loss_curve_, many.loss_curve_)


def test_threadpoolctl_limits_the_engine():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _cpu.max_threads() == 1
    assert _cpu.max_threads() == os.cpu_count() or "OMP_NUM_THREADS" in os.environ


def test_ctrl_c_interrupts_an_epoch_within_a_second():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120_000, 400)).astype(np.float32)
    y = rng.integers(0, 10, X.shape[0])
    est = fm.MLPClassifier(hidden_layer_sizes=(1024, 1024), max_iter=50, n_threads=1, random_state=0)
    with sigint_after(1.5) as fired:
        with pytest.warns(UserWarning, match="Training interrupted by user"):
            est.fit(X, y)
        stopped = time.perf_counter()
    assert stopped - fired[0] < 1.0
    # the estimator is usable and consistent after the interruption
    assert np.isfinite(est.coefs_[0]).all()
    assert est.predict(X[:10]).shape == (10,)
    est.set_params(max_iter=1, hidden_layer_sizes=(8,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:500], y[:500])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_ctrl_c_interrupts_a_row_block_epoch_within_a_second(n_threads):
    # A small network trains in row blocks, each thread gathering its own blocks' rows: the stop
    # request is read after the blocks, by every thread alike (a disagreement would hang the team)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4_000_000, 8)).astype(np.float32)  # epochs of several seconds
    y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(X.shape[0]).astype(np.float32)
    est = fm.MLPRegressor(hidden_layer_sizes=(50, 50), max_iter=50, n_threads=n_threads, random_state=0)
    with sigint_after(1.5) as fired:
        with pytest.warns(UserWarning, match="Training interrupted by user"):
            est.fit(X, y)
        stopped = time.perf_counter()
    assert stopped - fired[0] < 1.0
    assert all(np.isfinite(c).all() for c in est.coefs_ + est.intercepts_)
    assert np.isfinite(est.predict(X[:10])).all()
    est.set_params(max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:500], y[:500])


def test_dtype_parameter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f32 = fm.MLPClassifier(max_iter=20, random_state=0).fit(X_digits, y_digits)
        f64 = fm.MLPClassifier(max_iter=20, random_state=0, dtype=np.float64).fit(X_digits, y_digits)
    assert f32.coefs_[0].dtype == np.float32 and f64.coefs_[0].dtype == np.float64
    assert f32.predict_proba(X_digits).dtype == np.float64
    assert abs(f32.score(X_digits, y_digits) - f64.score(X_digits, y_digits)) < 0.01
    # warm start in the other precision continues the same model
    f32.set_params(warm_start=True, dtype="float64", max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f32.fit(X_digits, y_digits)
    assert f32.coefs_[0].dtype == np.float64


@pytest.mark.parametrize("X_type", ["float32", "float64", "int", "csr", "csc", "fortran", "strided",
                                    "fortran in place", "strided in place"])
def test_every_input_form_gives_the_same_model(X_type, monkeypatch):
    # (a column-ordered or strided X is copied to rows for training up to ROW_COPY_BYTES; "in
    # place": the engine gathers its rows where they are, as it does for a larger X)
    if X_type.endswith(" in place"):
        monkeypatch.setattr(fm._engine, "ROW_COPY_BYTES", 0)
        X_type = X_type[: -len(" in place")]
    Xb = X_digits
    forms = {
        "float32": lambda: Xb.astype(np.float32),
        "float64": lambda: Xb,
        "int": lambda: (Xb * 16).astype(np.int64),
        "csr": lambda: sp.csr_matrix(Xb),
        "csc": lambda: sp.csc_matrix(Xb),
        "fortran": lambda: np.asfortranarray(Xb),
        "strided": lambda: np.repeat(Xb, 2, axis=1)[:, ::2],
    }
    Xf = forms[X_type]()
    kw = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=3, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fm.MLPClassifier(**kw).fit(Xb * (16 if X_type == "int" else 1), y_digits)
        got = fm.MLPClassifier(**kw).fit(Xf, y_digits)
    rtol = 1e-6 if X_type == "float32" else 1e-12
    for a, b in zip(got.coefs_, ref.coefs_):
        if X_type in ("float64", "fortran", "strided"):  # the same values, copied or read in place
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6 if X_type == "float32" else 1e-13)


def test_feature_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X_digits[:, :5], columns=[f"f{i}" for i in range(5)])
    est = fm.MLPClassifier(max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(df, y_digits)
    np.testing.assert_array_equal(est.feature_names_in_, df.columns)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.predict(X_digits[:, :5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel"])
def test_labels_are_the_probabilities_decisions(target, dtype):
    # predict decides the labels on the engine's outputs in the model's dtype, predict_proba
    # returns them in scikit-learn's dtype (float64 for float64 input to a float32 model): the
    # same decisions, ties and 0.5 thresholds included
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 6)).astype(dtype)
    if target == "binary":
        y = np.where(X[:, 0] + X[:, 1] > 0, "b", "a")
    elif target == "multiclass":
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0) * 2
    else:
        y = (X[:, :3] > 0).astype(int)
    est = fm.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                           dtype=np.dtype(dtype).name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    assert est.coefs_[0].dtype == dtype
    for i, in_dtype in itertools.product((0, 1, 2, 3), (dtype, np.float64)):
        rows = X[i * 100:(i + 1) * 100].astype(in_dtype)
        proba = est.predict_proba(rows)
        assert proba.dtype == np.result_type(in_dtype, dtype)
        labels = est.predict(rows)
        if target == "multilabel":
            np.testing.assert_array_equal(labels, (proba > 0.5).astype(int))
        elif target == "binary":
            np.testing.assert_array_equal(labels, est.classes_[(proba[:, 1] > 0.5).astype(int)])
        else:
            np.testing.assert_array_equal(labels, est.classes_[proba.argmax(axis=1)])
        for r in (0, 1):  # one row at a time
            np.testing.assert_array_equal(est.predict(rows[r:r + 1]), labels[r:r + 1])
    if target == "multilabel":
        return
    # exact ties: zero weights give equal outputs (softmax 1/4 each, logistic 0.5), which both
    # dtypes decide alike (the first class; not above 0.5). (Multilabel models come from fit
    # only: set_weights takes classes, not label columns.)
    n_out = 1 if target == "binary" else 4
    tie = fm.MLPClassifier(hidden_layer_sizes=(3,), dtype=np.dtype(dtype).name)
    tie.set_weights([np.zeros((6, 3)), np.zeros((3, n_out))], [np.zeros(3), np.zeros(n_out)],
                    classes=np.unique(y))
    assert tie.coefs_[0].dtype == dtype
    proba = tie.predict_proba(X[:5])
    np.testing.assert_array_equal(proba, np.full_like(proba, proba[0, 0]))
    np.testing.assert_array_equal(tie.predict(X[:5]), np.repeat(tie.classes_[0], 5))
    np.testing.assert_array_equal(tie.predict(X[:1]), tie.classes_[:1])


@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel", "regression"])
def test_small_and_large_predictions_agree(target):
    # One row, a few rows and the whole set take different paths (validation, kernels):
    # every row gets the same answer whichever path it went through.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 12))
    if target == "regression":
        y, est = X[:, 0] * 2 + X[:, 1], fm.MLPRegressor(max_iter=5, random_state=0)
    elif target == "binary":
        y, est = np.where(X[:, 0] > 0, "yes", "no"), fm.MLPClassifier(max_iter=5, random_state=0)
    elif target == "multiclass":
        y, est = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0) * 2, fm.MLPClassifier(max_iter=5, random_state=0)
    else:
        y, est = (X[:, :3] > 0).astype(int), fm.MLPClassifier(max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    full = est.predict(X)
    for rows in (slice(0, 1), slice(7, 8), slice(10, 40), slice(2999, 3000)):
        np.testing.assert_array_equal(est.predict(X[rows]), full[rows])
        np.testing.assert_array_equal(est.predict(X[rows].tolist()), full[rows])
    if target != "regression":
        proba = est.predict_proba(X)
        np.testing.assert_array_equal(est.predict_proba(X[5:6]), proba[5:6])


def _fashion_like_model(**params):
    rng = np.random.default_rng(0)
    X = rng.random((400, 30)).astype(np.float32)
    y = (X[:, 0] * 3).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fm.MLPClassifier(hidden_layer_sizes=(20, 10), max_iter=3, random_state=0,
                                **params).fit(X, y), X


def test_the_kept_prediction_engine_follows_the_estimator():
    # Small predictions reuse one engine per estimator: it must never outlive what it was
    # built for, change the estimator's __dict__, or travel with copies and pickles.
    from fusedmlp import _multilayer_perceptron as mlp

    est, X = _fashion_like_model()
    before = dict(est.__dict__)
    first = est.predict_proba(X[:3])
    kept = mlp._KEPT_ENGINES[est]
    np.testing.assert_array_equal(est.predict_proba(X[:3]), first)
    assert mlp._KEPT_ENGINES[est][1] is kept[1]  # reused, not rebuilt
    assert est.__dict__.keys() == before.keys()
    # a parameter the engine depends on: the next prediction uses a new engine, and gives what
    # a fresh estimator with that parameter gives
    est.set_params(activation="tanh")
    fresh = pickle.loads(pickle.dumps(est))
    assert fresh not in mlp._KEPT_ENGINES
    np.testing.assert_array_equal(est.predict_proba(X[:3]), fresh.predict_proba(X[:3]))
    assert mlp._KEPT_ENGINES[est][1] is not kept[1]
    assert not np.array_equal(est.predict_proba(X[:3]), first)
    # weights changed in place are read at every call (the engine holds no parameters)
    est.coefs_[0][:] = 0
    fresh.coefs_[0][:] = 0
    np.testing.assert_array_equal(est.predict_proba(X[:3]), fresh.predict_proba(X[:3]))


def test_the_kept_engine_is_taken_again_only_while_nothing_it_reads_changed():
    # After a call that built the kept CPU engine's key, the next calls take the engine by
    # checking that the estimator still holds the same objects (_stamped_engine): every
    # change of what the key or the parameters are read from must lead to what a fresh
    # estimator in that state predicts, and a change the engine depends on to a new engine.
    import threadpoolctl

    from fusedmlp import _multilayer_perceptron as mlp

    def stamped_call(est, X):
        out = est.predict_proba(X[:2])
        assert mlp._KEPT_ENGINES[est][3] is not None  # (the next call takes the stamp)
        return out

    def fresh(est):
        return pickle.loads(pickle.dumps(est))  # (no kept engine: built from its state)

    est, X = _fashion_like_model(activation="leaky_relu")
    stamped_call(est, X)
    engine = mlp._KEPT_ENGINES[est][1]
    np.testing.assert_array_equal(est.predict_proba(X[:2]), fresh(est).predict_proba(X[:2]))
    assert mlp._KEPT_ENGINES[est][1] is engine  # taken again
    changes = [
        lambda e: e.set_params(negative_slope=0.3),  # the activation's parameter
        lambda e: e.set_params(activation="elu"),
        lambda e: e.set_params(elu_alpha=0.5),
        lambda e: e.set_params(n_threads=1),
    ]
    for change in changes:
        stamped_call(est, X)
        engine = mlp._KEPT_ENGINES[est][1]
        change(est)
        np.testing.assert_array_equal(est.predict_proba(X[:2]), fresh(est).predict_proba(X[:2]))
        assert mlp._KEPT_ENGINES[est][1] is not engine
    # the thread count n_threads=None stands for (threadpoolctl's OpenMP limit)
    est.set_params(n_threads=None)
    stamped_call(est, X)
    engine = mlp._KEPT_ENGINES[est][1]
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        if fm._engine.default_threads() != 1:
            pytest.fail("threadpoolctl's OpenMP limit is not the engine's default")
        est.predict_proba(X[:2])
        assert mlp._KEPT_ENGINES[est][1] is not engine
    # the weights: an array replaced in its list, a list replaced, a new fit
    weight_changes = [
        lambda e: e.coefs_.__setitem__(0, e.coefs_[0] * 2),
        lambda e: e.intercepts_.__setitem__(1, e.intercepts_[1] + 1),
        lambda e: setattr(e, "coefs_", [c[::-1].copy() if c.shape[0] == c.shape[1] else -c
                                        for c in e.coefs_]),
        lambda e: e.fit(X[::-1], (X[::-1, 1] * 3).astype(int)),
    ]
    for change in weight_changes:
        before = stamped_call(est, X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            change(est)
        got = est.predict_proba(X[:2])
        assert not np.array_equal(got, before)
        np.testing.assert_array_equal(got, fresh(est).predict_proba(X[:2]))
    # a regressor's head
    rng = np.random.default_rng(1)
    reg = fm.MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0,
                          loss="huber").fit(rng.random((50, 3)), rng.random(50))
    for change in (lambda e: e.set_params(huber_delta=0.5),
                   lambda e: e.set_params(loss="squared_error")):
        reg.predict(X[:1, :3])
        assert mlp._KEPT_ENGINES[reg][3] is not None
        engine = mlp._KEPT_ENGINES[reg][1]
        change(reg)
        reg.predict(X[:1, :3])
        assert mlp._KEPT_ENGINES[reg][1] is not engine


def test_the_kept_prediction_in_one_call_predicts_as_the_python_path():
    # A stamped kept CPU engine also answers small predictions in one call (_kept_pass): for
    # every head, dtype and input it serves, the very values and dtype of the Python path (a
    # fresh copy's first call takes it); for anything else it answers None and the Python path
    # runs, with its conversions and errors.
    from fusedmlp import _multilayer_perceptron as mlp

    def fresh(est):
        return pickle.loads(pickle.dumps(est))

    rng = np.random.default_rng(3)
    X = rng.random((300, 6))
    ys = {"softmax": (X[:, 0] * 3).astype(int), "logistic": np.where(X[:, 1] > 0.5, "b", "a"),
          "multilabel": (X[:, :2] > 0.5).astype(int)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = dict(hidden_layer_sizes=(7,), max_iter=5, random_state=0)
        models = [fm.MLPClassifier(dtype=dt, **params).fit(X, y)
                  for y in ys.values() for dt in ("float32", "float64")]
        models += [fm.MLPRegressor(dtype=dt, **params).fit(X, y)
                   for y in (X[:, 0], X[:, :2]) for dt in ("float32", "float64")]
    for est in models:
        classifier = isinstance(est, fm.MLPClassifier)
        labels = classifier and (est.out_activation_ == "softmax" or est.n_outputs_ == 1)
        for rows, x_dtype in itertools.product((1, 5, 256, 257), (np.float32, np.float64)):
            Xr = X[:rows].astype(x_dtype)
            est.predict(Xr)  # (builds and stamps the kept engine)
            for method in ("predict", "predict_proba") if classifier else ("predict",):
                got, want = getattr(est, method)(Xr), getattr(fresh(est), method)(Xr)
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
            one_call = est._kept_pass(Xr)
            assert (one_call is not None) == (rows <= 256)  # (larger calls: engines of their own)
            if one_call is not None:
                np.testing.assert_array_equal(one_call, est._forward_pass_fast(Xr.tolist()))
                assert (est._kept_pass(Xr, labels=True) is not None) == labels
    est = models[0]
    x = X[:1].astype(np.float32)
    est.predict(x)
    assert est._kept_pass(x) is not None
    # inputs it leaves to the Python path: a list, integers, a subclass of ndarray, a field
    # of a structured array (strides not in whole items), the wrong width, NaN; a strided view
    # and a column-major array it answers
    class Sub(np.ndarray):
        pass

    fields = np.zeros((1, 6), dtype=[("a", np.int8), ("x", np.float32)])
    fields["x"] = x
    for other in (x.tolist(), (x * 10).astype(np.int64), x.view(Sub), fields["x"]):
        assert est._kept_pass(other) is None
        try:
            want = fresh(est).predict(other)
        except ValueError as e:  # (the engine's own error for such strides)
            with pytest.raises(ValueError, match=str(e)):
                est.predict(other)
        else:
            np.testing.assert_array_equal(est.predict(other), want)
    view = np.asfortranarray(X[:5].astype(np.float32))
    assert est._kept_pass(X[:5:2]) is not None
    np.testing.assert_array_equal(est.predict(X[:5:2]), fresh(est).predict(X[:5:2]))
    np.testing.assert_array_equal(est.predict(view), fresh(est).predict(view))
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:1, :5])
    bad = x.copy()
    bad[0, 2] = np.nan
    assert est._kept_pass(bad) is None
    with pytest.raises(ValueError, match="NaN"):
        est.predict(bad)
    # a lease held by another thread: the Python path, on an engine of its own
    kept = mlp._KEPT_ENGINES[est]
    assert kept[2].acquire(blocking=False)
    try:
        assert est._kept_pass(x) is None
        np.testing.assert_array_equal(est.predict(x), fresh(est).predict(x))
    finally:
        kept[2].release()
    # outputs that are not all finite: the Python path's
    est.predict(x)
    big = fresh(est)
    big.coefs_[0][:] = np.nan
    big.predict(x)
    assert mlp._KEPT_ENGINES[big][4] is not None and big._kept_pass(x) is None
    np.testing.assert_array_equal(big.predict(x), fresh(big).predict(x))
    # classes and device changed after the stamp, feature names: the Python path
    est.predict(x)
    est.classes_ = est.classes_ + 10
    assert est._kept_pass(x, labels=True) is None
    np.testing.assert_array_equal(est.predict(x), fresh(est).predict(x))
    est.set_params(device="auto")
    assert est._kept_pass(x) is None
    np.testing.assert_array_equal(est.predict(x), fresh(est).predict(x))
    # a model 'auto' trained on the CPU is served; one trained on a GPU is not
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = fm.MLPClassifier(hidden_layer_sizes=(7,), max_iter=5, random_state=0,
                                device="auto").fit(X, ys["softmax"])
    auto.predict(x)
    assert (auto._kept_pass(x) is not None) == (auto.__dict__.get("_auto_device") == "cpu")
    # a subclass (which may override what the Python path calls): the Python path
    class Tempered(fm.MLPClassifier):
        def _outputs_to_predictions(self, y_pred, x_dtype=None):
            return super()._outputs_to_predictions(y_pred[:, ::-1], x_dtype)

    sub = Tempered(**est.get_params())
    sub.__dict__.update({k: v for k, v in fresh(est).__dict__.items() if k.endswith("_")
                         or k.startswith("_")})
    sub.predict(x)
    assert mlp._KEPT_ENGINES[sub][4] is None
    np.testing.assert_array_equal(sub.predict(x), sub._outputs_to_predictions(sub.predict_proba(x)))
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        named = fm.MLPClassifier(hidden_layer_sizes=(7,), max_iter=5, random_state=0).fit(frame, ys["softmax"])
    named.predict(frame.iloc[:1])
    assert mlp._KEPT_ENGINES[named][4] is None
    with pytest.warns(UserWarning, match="feature names"):
        named.predict(X[:1])
    # the object's own arguments: clear errors, and an estimator of another class answers None
    engine, lock = mlp._KEPT_ENGINES[est][1], mlp._KEPT_ENGINES[est][2]
    args = dict(cls=fm.MLPClassifier, engine=engine, names=("coefs_",), objects=(est.coefs_,),
                n_lists=0, threads=0, usable_cpus=2, lock=lock, params=est._params, labels=1,
                max_rows=4)
    assert _cpu.KeptPredictionF32(**args)([], x, True) is None
    assert _cpu.KeptPredictionF32(**args)(est, x, True) is not None
    assert _cpu.KeptPredictionF32(**{**args, "cls": fm.MLPRegressor})(est, x, True) is None
    for bad_args in (dict(labels=3), dict(labels=2), dict(max_rows=0), dict(n_lists=2),
                     dict(names=["coefs_"]), dict(cls=1)):
        with pytest.raises((ValueError, TypeError)):
            _cpu.KeptPredictionF32(**{**args, **bad_args})
    with pytest.raises(RuntimeError):
        _cpu.KeptPredictionF64(**args)  # (a float32 engine)


def test_a_kept_engine_does_not_keep_its_estimator_alive():
    # The kept engines' table is weak-keyed: nothing it holds (the engine, the stamp's objects,
    # the one-call prediction) may refer back to the estimator, or it would never be freed.
    import gc
    import weakref

    from fusedmlp import _multilayer_perceptron as mlp

    est, X = _fashion_like_model()
    est.predict(X[:1])
    est.predict(X[:1])
    assert mlp._KEPT_ENGINES[est][4] is not None
    ref = weakref.ref(est)
    del est
    gc.collect()
    assert ref() is None


def test_the_stamp_compares_objects_not_values():
    # _cpu._same_objects, the stamp's check: the dict's values under the names, and the items
    # of the first lists, must be the very objects stamped; anything else is a mismatch.
    from fusedmlp import _cpu

    a, b = np.zeros(2), np.zeros(2)
    coefs, names = [a, b], ("coefs_", "other")
    state = {"coefs_": coefs, "other": 1.5}
    objects = (coefs, state["other"], a, b)
    assert _cpu._same_objects(state, names, objects, 1)
    assert _cpu._same_objects(state, names[1:], (state["other"],), 0)
    for change in (
        lambda st: st["coefs_"].__setitem__(0, a.copy()),  # an equal array replaced
        lambda st: st["coefs_"].append(a),  # a list grown
        lambda st: st["coefs_"].pop(),  # shortened
        lambda st: st.__setitem__("coefs_", list(coefs)),  # an equal list replaced
        lambda st: st.__setitem__("other", float("1.5")),  # an equal value, another object
        lambda st: st.pop("other"),  # gone
    ):
        st = {"coefs_": list(coefs), "other": state["other"]}
        stamped = (st["coefs_"], st["other"], a, b)
        assert _cpu._same_objects(st, names, stamped, 1)
        change(st)
        assert not _cpu._same_objects(st, names, stamped, 1)
    # a stamped "list" that is not one, and an object tuple with items left over
    pair = (a, b)
    assert not _cpu._same_objects({"coefs_": pair, "other": 1.5}, names, (pair, 1.5, a, b), 1)
    assert not _cpu._same_objects(state, names, objects + (a,), 1)
    with pytest.raises(TypeError):
        _cpu._same_objects([], names, objects, 1)
    with pytest.raises(TypeError):
        _cpu._same_objects(state, list(names), objects, 1)
    with pytest.raises(ValueError):
        _cpu._same_objects(state, names, objects, 3)
    with pytest.raises(ValueError):
        _cpu._same_objects(state, names, objects[:1], 0)


def test_an_estimator_reading_its_key_from_its_class_is_not_stamped():
    # The stamp holds only what the estimator's __dict__ holds: a subclass whose activation is
    # a class attribute is not stamped (each call builds the key) and predicts as a fresh copy
    # after the class attribute changes.
    from fusedmlp import _multilayer_perceptron as mlp

    class ClassActivation(fm.MLPClassifier):
        activation = "relu"

        def __init__(self, hidden_layer_sizes=(20, 10), max_iter=3, random_state=0):
            super().__init__(hidden_layer_sizes=hidden_layer_sizes, max_iter=max_iter,
                             random_state=random_state)
            del self.activation  # (read from the class)

        def get_params(self, deep=True):
            params = super().get_params(deep)
            params.pop("activation", None)
            return params

    rng = np.random.default_rng(0)
    X = rng.random((400, 30)).astype(np.float32)
    y = (X[:, 0] * 3).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = ClassActivation().fit(X, y)
    first = est.predict_proba(X[:2])
    est.predict_proba(X[:2])
    assert "activation" not in est.__dict__
    assert mlp._KEPT_ENGINES[est][3] is None
    ClassActivation.activation = "tanh"
    try:
        got = est.predict_proba(X[:2])
        fresh = copy.deepcopy(est)  # (no kept engine: built from its state)
        assert fresh not in mlp._KEPT_ENGINES
        np.testing.assert_array_equal(got, fresh.predict_proba(X[:2]))
        assert not np.array_equal(got, first)
    finally:
        ClassActivation.activation = "relu"


def test_concurrent_small_predictions_from_threads_agree():
    # Engines are not reentrant: threads predicting with one estimator at once must each get
    # an engine of their own while the kept one is busy, and the same answers as alone.
    from concurrent.futures import ThreadPoolExecutor

    est, X = _fashion_like_model()
    expected = [est.predict_proba(X[i:i + 7]) for i in range(0, 350, 7)]
    # (a fresh copy's first call takes the Python path)
    expected_labels = [pickle.loads(pickle.dumps(est)).predict(X[i:i + 1]) for i in range(50)]
    assert est._kept_pass(X[:1], labels=True) is not None  # (the threads' first choice)

    def run(i):
        labels = [est.predict(X[j:j + 1]) for j in range(50)]  # (the kept engine in one call)
        return [est.predict_proba(X[j:j + 7]) for j in range(0, 350, 7)][i % 50], labels

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(200)))
    for i, (r, labels) in enumerate(results):
        np.testing.assert_array_equal(r, expected[i % 50])
        for got, want in zip(labels, expected_labels):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("head", [("log_loss", 4), ("binary_log_loss", 1), ("squared_error", 2)])
@pytest.mark.parametrize("activation", ["tanh", "gelu"])  # (gelu: training keeps z, prediction not)
def test_validation_pass_is_loss_grad_and_predict_in_one(dtype, sparse, weighted, head, activation):
    # Early stopping's validation (loss_and_outputs): one forward pass giving loss_grad's
    # objective and predict's outputs, bit for bit, over several chunks and on two threads.
    from fusedmlp import _engine

    loss, n_out = head
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9000, 20)).astype(dtype)
    X[X < 0.5] = 0  # (sparse enough for CSR)
    Y = rng.random((9000, n_out)).astype(dtype)
    if loss != "squared_error":
        Y = (Y > 0.5).astype(dtype) if n_out == 1 else np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, 9000)]
    sw = rng.uniform(0.5, 2, 9000).astype(dtype) if weighted else None
    engine = _engine.make_engine("cpu", dtype, [20, 33, 17, n_out], activation, 2, loss)
    params = (rng.standard_normal(engine.n_params) * 0.3).astype(dtype)
    X_in = _engine.as_engine_input(sp.csr_matrix(X) if sparse else X)
    objective, outputs = engine.loss_and_outputs(X_in, Y, sw, params, 1e-3)
    grad = np.empty_like(params)
    assert objective == engine.loss_grad(X_in, Y, sw, params, 1e-3, grad)
    np.testing.assert_array_equal(outputs, engine.predict(X_in, params))
    with pytest.raises(TypeError, match="sample_weight must be a numpy array"):
        engine.loss_and_outputs(X_in, Y, [1.0] * 9000, params, 1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows, n_threads", [(300, 1), (4000, 2), (5000, 1)])
def test_predicted_labels_are_the_argmax_of_the_outputs(dtype, rows, n_threads):
    # predict of a softmax head takes its labels from the engine, which runs the softmax only
    # where it could change the order (dense.h's output_labels): the labels are still numpy's
    # argmax of the float64 outputs (the first of equal largest values, the first NaN), on logits
    # made to tie exactly, to differ by less than the softmax's rounding, around the engine's
    # 2^-40, by an ulp, and to overflow. The network passes its 4 inputs through a 256-unit
    # identity layer (W = [2I | 0], then [I; 0], no biases): the logits are 2x, and the work is
    # large enough for a team. 300 rows: one chunk; 4,000 rows on two threads: each thread's
    # slices; 5,000 rows on one thread: two chunks (the second's rows at 4,096).
    n, width = 4, 256
    est = fm.MLPClassifier(hidden_layer_sizes=(width,), activation="identity", max_iter=1,
                           random_state=0, dtype=dtype, n_threads=n_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(np.eye(n), np.arange(n))
    ft = np.dtype(dtype).type
    w1, w2 = np.zeros((n, width), ft), np.zeros((width, n), ft)
    w1[:, :n], w2[:n] = 2 * np.eye(n), np.eye(n)
    est.coefs_ = [w1, w2]
    est.intercepts_ = [np.zeros(width, ft), np.zeros(n, ft)]
    eps, big = np.finfo(ft).eps, float(np.finfo(ft).max) / 1.5
    g = 2.0 ** -41  # (the logits' differences are twice the inputs')
    special = [
        [1.0, 1.0, 0.5, 0.0], [0.5, 1.0, 1.0, 1.0],  # exact ties: the first
        [1e-30, 3e-30, 2e-30, 0.0], [-1e-30, 0.0, 1e-30, 0.0],  # ties after the softmax
        [1.0, 1.0 + eps, 0.0, 0.0], [1.0 + eps, 1.0, 1.0 + 2 * eps, 0.0],  # an ulp apart
        [-800.0, -799.0, -1e4, -800.0], [300.0, 300.0 + 300 * eps, -300.0, 0.0],
        [0.0, 0.0, 0.0, 0.0], [-5.0, -5.0, -5.0, -5.0 + 4 * eps],
        [big, big, 0.0, 0.0], [0.0, big, -big, big / 10],  # 2x overflows: NaN outputs
        [-big, 0.0, big, big], [-big, 0.0, 0.5, 0.25],  # -inf alone: finite outputs
    ]
    # an earlier logit just within and just beyond the engine's 2^-40 below the largest
    for d in (0.5 * g, 0.99 * g, g, 1.01 * g, 2 * g):
        special += [[2.0 ** -20 - d, 2.0 ** -20, 0.0, -1.0], [0.25, 0.25 + d, 0.0, 0.0]]
    if dtype == "float64":
        # logits 2^-54 to 2^-50 apart at 1: outputs that tie or not with the sums of the rows
        for k in (54, 53, 52, 51, 50):
            for rest in (0.0, 0.5, 1.0 - 2.0 ** -k):
                special.append([0.5 - 2.0 ** -k, 0.5, rest - 1.0, rest - 2.0])
                special.append([0.5 - 2.0 ** -k, 0.5, rest, rest])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, n))
    X[: len(special)] = special
    # near ties in random rows: an earlier column an ulp (or a few) below the largest
    picks = rng.choice(np.arange(len(special), rows), size=rows // 3, replace=False)
    for i in picks:
        j = rng.integers(1, n)
        k = rng.integers(0, j)
        X[i, j] = X[i].max() + 1.0
        X[i, k] = np.nextafter(ft(X[i, j]), ft(-np.inf)) if rng.random() < 0.5 else X[i, j] * (1 - eps)
    X = X.astype(dtype)
    with np.errstate(all="ignore"):
        outputs = est._forward_pass_fast(X)  # (labels=False: the float64 outputs, as before)
    assert outputs.dtype == np.float64
    want = est.classes_[np.argmax(outputs, axis=1)]
    before = _cpu.team_predictions()
    got = est.predict(X)
    ran = [b - a for a, b in zip(before, _cpu.team_predictions())]
    np.testing.assert_array_equal(got, want)
    if n_threads == 2 and _cpu.max_threads() >= 2:
        assert ran == [0, 1]  # (the team's slices)
    # the rows that do need the softmax are there: NaN outputs, and finite rows whose label is
    # not the first largest logit, one of them (float64) with logits 2^-53 apart
    assert np.isnan(outputs).any(axis=1).sum() >= 3
    with np.errstate(over="ignore"):
        z = 2 * X.astype(np.float64)
    finite = np.isfinite(outputs).all(axis=1)
    moved = finite & (z.argmax(axis=1) != np.argmax(outputs, axis=1))
    assert moved.sum() >= 2
    if dtype == "float64":
        zm = z[moved]
        gaps = zm.max(axis=1) - zm[np.arange(len(zm)), np.argmax(outputs[moved], axis=1)]
        assert (gaps >= 2.0 ** -54).sum() >= 1  # (a gap check below 2^-53 fails this test)
