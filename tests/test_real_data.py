"""Accuracy on real data matches scikit-learn's with the same hyperparameters."""

import warnings

import pytest
from sklearn import neural_network as sk
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import fusedmlp as fm

from .conftest import load_npz


def split(X, y):
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def accuracies(data, **params):
    X_train, X_test, y_train, y_test = data
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores["sklearn"] = sk.MLPClassifier(random_state=0, **params).fit(X_train, y_train).score(X_test, y_test)
        for dtype in ("float32", "float64"):
            est = fm.MLPClassifier(random_state=0, dtype=dtype, **params).fit(X_train, y_train)
            scores[dtype] = est.score(X_test, y_test)
    return scores


@pytest.mark.parametrize("loader", [load_digits, load_breast_cancer], ids=["digits", "breast_cancer"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_accuracy_matches_sklearn(loader, solver):
    scores = accuracies(split(*loader(return_X_y=True)), solver=solver)
    assert scores["float64"] == scores["sklearn"]  # the same model, to rounding
    assert abs(scores["float32"] - scores["sklearn"]) <= 0.02
    assert scores["sklearn"] > 0.9


def test_fashion_mnist_subset_accuracy_matches_sklearn():
    d = load_npz("fashion_mnist.npz")
    X_train = d["X_train"][:6000] / 255.0
    X_test = d["X_test"][:2000] / 255.0
    data = (X_train, X_test, d["y_train"][:6000], d["y_test"][:2000])
    scores = accuracies(data, hidden_layer_sizes=(300, 100), max_iter=5)
    assert abs(scores["float32"] - scores["sklearn"]) <= 0.01
    assert abs(scores["float64"] - scores["sklearn"]) <= 0.002
    assert scores["sklearn"] > 0.8


def test_california_housing_r2_matches_sklearn():
    d = load_npz("california_housing.npz")
    X_train, X_test, y_train, y_test = train_test_split(d["X"], d["y"], random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    params = dict(hidden_layer_sizes=(50, 50, 50), random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sk.MLPRegressor(**params).fit(X_train, y_train).score(X_test, y_test)
        got32 = fm.MLPRegressor(**params).fit(X_train, y_train).score(X_test, y_test)
        got64 = fm.MLPRegressor(dtype="float64", **params).fit(X_train, y_train).score(X_test, y_test)
    assert got64 == pytest.approx(ref, abs=1e-6)
    # float32 follows another trajectory after 20 unconverged epochs: close, not equal
    assert abs(got32 - ref) < 0.03
    assert ref > 0.7
