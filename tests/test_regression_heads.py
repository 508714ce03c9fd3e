"""MLPRegressor beyond scikit-learn: output activations (`out_activation`) and the absolute
error, Huber and quantile losses, through every path (solvers, partial_fit, warm_start, sparse
input, float32 and float64) and on real data."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_regression
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import fusedmlp as fm

from .conftest import load_npz

X, y = make_regression(n_samples=400, n_features=8, noise=5.0, random_state=0)
y = (y - y.mean()) / y.std()


def fit(y=y, **params):
    kw = dict(hidden_layer_sizes=(16,), max_iter=30, random_state=0)
    kw.update(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fm.MLPRegressor(**kw).fit(X, y)


@pytest.mark.parametrize("params,error", [
    ({"huber_delta": 0.0}, InvalidParameterError),
    ({"huber_delta": -1.0}, InvalidParameterError),
    ({"quantile": 0.0}, InvalidParameterError),
    ({"quantile": 1.0}, InvalidParameterError),
    ({"quantile": 1.5}, InvalidParameterError),
    ({"loss": "hinge"}, InvalidParameterError),
    ({"out_activation": "exp"}, InvalidParameterError),
    ({"out_activation": "softmax"}, InvalidParameterError),
    ({"out_activation": "swish"}, InvalidParameterError),
])
def test_bad_parameters_are_scikit_learn_errors(params, error):
    with pytest.raises(error, match=next(iter(params))):
        fit(**params)


def test_poisson_needs_a_positive_output():
    yp = np.abs(y)
    with pytest.raises(ValueError, match="positive outputs.*'identity'"):
        fit(loss="poisson", out_activation="identity", y=yp)
    for out in (None, "softplus", "logistic"):
        est = fit(loss="poisson", out_activation=out, y=yp)
        assert est.out_activation_ == (out or "exp")
        assert (est.predict(X) > 0).all()


def test_defaults_are_scikit_learns():
    est = fit()
    assert est.out_activation_ == "identity" and est.loss == "squared_error"
    assert fm.MLPRegressor().get_params()["out_activation"] is None


@pytest.mark.parametrize("out", ["relu", "softplus", "logistic", "tanh"])
def test_output_activation_bounds_the_predictions(out):
    target = {"relu": np.abs(y), "softplus": np.abs(y), "logistic": (y > 0) * 0.8 + 0.1,
              "tanh": np.tanh(y)}[out]
    est = fit(out_activation=out, y=target, max_iter=100, learning_rate_init=0.01)
    pred = est.predict(X * 3)  # beyond the training range too
    lo, hi = {"relu": (0, np.inf), "softplus": (0, np.inf), "logistic": (0, 1),
              "tanh": (-1, 1)}[out]
    assert (pred >= lo).all() and (pred <= hi).all()
    assert est.score(X, target) > 0.3


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("loss", ["absolute_error", "huber", "quantile"])
def test_new_losses_train_with_every_solver(loss, solver):
    est = fit(loss=loss, solver=solver, learning_rate_init=0.01, max_iter=80)
    assert np.isfinite(est.loss_) and est.score(X, y) > 0.5
    if solver != "lbfgs":
        assert est.loss_curve_[-1] < est.loss_curve_[0]


def test_quantile_loss_predicts_the_quantile():
    rng = np.random.default_rng(0)
    Xq = rng.uniform(-1, 1, (3000, 2))
    yq = Xq[:, 0] + rng.standard_normal(3000)  # noise of a known spread
    for q in (0.2, 0.8):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = fm.MLPRegressor(loss="quantile", quantile=q, hidden_layer_sizes=(16,),
                                  max_iter=60, random_state=0, learning_rate_init=0.01).fit(Xq, yq)
        below = np.mean(yq <= est.predict(Xq))
        assert abs(below - q) < 0.05, (q, below)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_paths_agree_for_a_new_head(dtype):
    kw = dict(loss="huber", huber_delta=0.5, out_activation="tanh", dtype=dtype)
    yt = np.tanh(y)
    Xs = sp.csr_matrix(np.where(np.abs(X) > 0.5, X, 0))
    dense = fit(y=yt, **kw, batch_size=400, max_iter=5, solver="sgd")
    sparse = fm.MLPRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0, batch_size=400,
                             solver="sgd", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse.fit(sp.csr_matrix(X), yt)
        partial = fm.MLPRegressor(hidden_layer_sizes=(16,), random_state=0, batch_size=400,
                                  solver="sgd", **kw)
        for _ in range(5):
            partial.partial_fit(X, yt)
        warm = fm.MLPRegressor(hidden_layer_sizes=(16,), max_iter=2, random_state=0,
                               batch_size=400, solver="sgd", warm_start=True, **kw)
        warm.fit(X, yt).set_params(max_iter=3).fit(X, yt)  # (a new optimizer, as scikit-learn)
        sparse_mostly_zero = fm.MLPRegressor(hidden_layer_sizes=(16,), max_iter=3, **kw).fit(Xs, yt)
    for a, b in zip(dense.coefs_, partial.coefs_):
        np.testing.assert_array_equal(a, b)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for a, b in zip(dense.coefs_, sparse.coefs_):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    for est in (warm, sparse_mostly_zero):
        assert est.out_activation_ == "tanh" and (np.abs(est.predict(X)) <= 1).all()


def test_california_with_outliers_huber_beats_squared_error_and_softplus_stays_positive():
    d = load_npz("california_housing.npz")
    X_all, y_all = d["X"], d["y"]
    X_tr, X_te, y_tr, y_te = train_test_split(X_all, y_all, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    rng = np.random.default_rng(0)
    y_out = y_tr.copy()
    idx = rng.choice(len(y_out), len(y_out) // 20, replace=False)  # 5% of the targets wrong
    y_out[idx] += rng.choice([-1, 1], idx.size) * rng.uniform(5, 20, idx.size)
    kw = dict(hidden_layer_sizes=(50, 50, 50), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mse = fm.MLPRegressor(**kw).fit(X_tr, y_out)
        huber = fm.MLPRegressor(loss="huber", **kw).fit(X_tr, y_out)
        soft = fm.MLPRegressor(out_activation="softplus", **kw).fit(X_tr, y_tr)
    mae_mse = mean_absolute_error(y_te, mse.predict(X_te))
    mae_huber = mean_absolute_error(y_te, huber.predict(X_te))
    print(f"California, 5% outliers: test MAE squared_error {mae_mse:.3f}, huber {mae_huber:.3f}")
    assert mae_huber < mae_mse
    # prices are positive: a softplus output never predicts a negative one, even far outside
    assert (soft.predict(np.vstack([X_te, X_te * 10, -X_te * 10])) >= 0).all()
