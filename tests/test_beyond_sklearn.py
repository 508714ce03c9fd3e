"""What fusedmlp's estimators have beyond scikit-learn's: hidden activations with and without a
parameter, threshold units with hand-set weights, dropout, label smoothing, class weights and a
validation set of one's own. Each against a reference: PyTorch's definitions, scikit-learn's
readings of the same parameters, or the computation written out in numpy."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.class_weight import compute_class_weight

from fusedmlp import MLPClassifier, MLPRegressor, _cpu

REGISTRY = {a["name"]: a for a in _cpu.activations()}
NEW_HIDDEN = [n for n, a in REGISTRY.items()
              if a["hidden"] and not a["in_sklearn"] and a["derivative"] != "none"]


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=240, n_features=8, noise=5.0, random_state=0)
    return X / X.std(0), y / y.std()


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(n_samples=300, n_features=10, n_informative=6, n_classes=3,
                               random_state=0)
    return X, y


# ---- hidden activations -----------------------------------------------------------------------

@pytest.mark.parametrize("activation", NEW_HIDDEN)
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_new_activations_train_every_way(regression, activation, solver):
    """Each activation trains with both kinds of solver, dense and sparse, float32 and float64,
    and partial_fit continues the same model as fit."""
    X, y = regression
    kw = dict(hidden_layer_sizes=(16, 8), activation=activation, solver=solver, max_iter=30,
              random_state=0, dtype="float64", tol=0)
    dense = MLPRegressor(**kw).fit(X, y)
    assert dense.score(X, y) > 0.5
    sparse = MLPRegressor(**kw).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.predict(X), dense.predict(X), rtol=1e-8, atol=1e-10)
    f32 = MLPRegressor(**{**kw, "dtype": "float32"}).fit(X, y)
    if solver == "lbfgs":
        # L-BFGS's line search reads the loss in float32: over 30 iterations its steps can part
        # from float64's (selu on the AVX2 kernels: predictions up to 0.06 apart, R^2 0.9969
        # against 0.9968); the fit must be as good, and close
        assert abs(f32.score(X, y) - dense.score(X, y)) < 5e-3
        np.testing.assert_allclose(f32.predict(X), dense.predict(X), rtol=0.1, atol=0.1)
    else:
        np.testing.assert_allclose(f32.predict(X), dense.predict(X), rtol=2e-2, atol=2e-2)
    if solver == "adam":
        steps = MLPRegressor(**{**kw, "max_iter": 3, "shuffle": False})
        for _ in range(3):
            steps.partial_fit(X, y)
        at_once = MLPRegressor(**{**kw, "max_iter": 3, "shuffle": False}).fit(X, y)
        np.testing.assert_array_equal(steps.predict(X), at_once.predict(X))


def test_leaky_relu_without_slope_is_relu(regression):
    X, y = regression
    kw = dict(hidden_layer_sizes=(12,), max_iter=20, random_state=1, dtype="float64")
    relu = MLPRegressor(activation="relu", **kw).fit(X, y)
    leaky = MLPRegressor(activation="leaky_relu", negative_slope=0.0, **kw).fit(X, y)
    np.testing.assert_allclose(leaky.predict(X), relu.predict(X), rtol=1e-12)
    sloped = MLPRegressor(activation="leaky_relu", negative_slope=0.3, **kw).fit(X, y)
    assert not np.allclose(sloped.predict(X), relu.predict(X))


@pytest.mark.parametrize("activation,param", [("leaky_relu", "negative_slope"), ("elu", "elu_alpha")])
def test_activation_parameters_reach_the_engine(regression, activation, param):
    """Hand-set weights through the estimator: predictions equal PyTorch's formula with the
    estimator's parameter (a parameter of the other activation is ignored, as unused ones are)."""
    torch = pytest.importorskip("torch")
    X, _ = regression
    rng = np.random.default_rng(0)
    coefs = [rng.normal(size=(8, 5)), rng.normal(size=(5, 1))]
    intercepts = [rng.normal(size=5), rng.normal(size=1)]
    value = 0.37
    est = MLPRegressor(activation=activation, dtype="float64", **{param: value})
    est.set_weights(coefs, intercepts)
    z = torch.tensor(X @ coefs[0] + intercepts[0])
    h = (torch.nn.functional.leaky_relu(z, value) if activation == "leaky_relu"
         else torch.nn.functional.elu(z, value)).numpy()
    np.testing.assert_allclose(est.predict(X), (h @ coefs[1] + intercepts[1]).ravel(), rtol=1e-12)


# ---- threshold units --------------------------------------------------------------------------

def test_xor_threshold_network_set_by_hand():
    """The textbook's XOR network of threshold units: AND and OR in the hidden layer, 'OR but
    not AND' at the output (its logistic output is above 0.5 exactly when its input is > 0)."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    hidden = (np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([-1.5, -0.5]))
    # heaviside units are 0/1: OR - 2 AND - 0.5; sign units are -1/+1: OR - AND - 1
    output = {"heaviside": (np.array([[-2.0], [1.0]]), np.array([-0.5])),
              "sign": (np.array([[-1.0], [1.0]]), np.array([-1.0]))}
    for activation in ("heaviside", "sign"):
        clf = MLPClassifier(activation=activation, dtype="float64")
        coefs = [hidden[0], output[activation][0]]
        intercepts = [hidden[1], output[activation][1]]
        clf.set_weights(coefs, intercepts, classes=["different", "same"])
        # (classes_ sorted, as scikit-learn sorts them: the output unit says "same")
        coefs[1], intercepts[1] = -coefs[1], -intercepts[1]
        clf.set_weights(coefs, intercepts, classes=["same", "different"])
        assert list(clf.classes_) == ["different", "same"]
        assert list(clf.predict(X)) == ["same", "different", "different", "same"]
        assert clf.predict_proba(X).shape == (4, 2)
        with pytest.raises(ValueError, match="step function"):
            MLPClassifier(activation=activation).fit(X, [0, 1, 1, 0])
        with pytest.raises(ValueError, match="step function"):
            MLPClassifier(activation=activation).partial_fit(X, [0, 1, 1, 0], classes=[0, 1])


def test_set_weights_checks_shapes_and_continues_with_warm_start(regression):
    X, y = regression
    est = MLPRegressor(hidden_layer_sizes=(4,), dtype="float64")
    with pytest.raises(ValueError, match="intercepts\\[0\\] has 3 values"):
        est.set_weights([np.ones((8, 4)), np.ones((4, 1))], [np.ones(3), np.ones(1)])
    with pytest.raises(ValueError, match="coefs\\[1\\] has 5 rows"):
        est.set_weights([np.ones((8, 4)), np.ones((5, 1))], [np.ones(4), np.ones(1)])
    with pytest.raises(ValueError, match="these classes need 3"):
        MLPClassifier().set_weights([np.ones((8, 2))], [np.ones(2)], classes=[0, 1, 2])
    rng = np.random.default_rng(0)
    coefs, intercepts = [rng.normal(size=(8, 4)) * 0.3, rng.normal(size=(4, 1))], [np.zeros(4), np.zeros(1)]
    given = [c.copy() for c in coefs]
    est.set_weights(coefs, intercepts)
    assert all(np.array_equal(a, b) for a, b in zip(coefs, given))  # not modified
    before = est.score(X, y)
    est.set_params(warm_start=True, max_iter=50, tol=0).fit(X, y)
    assert est.score(X, y) > before and est.n_iter_ == 50 and len(est.loss_curve_) == 50


# ---- dropout ----------------------------------------------------------------------------------

def test_dropout_mask_drops_at_the_rate():
    """The generator behind every mask: per layer, the dropped fraction matches the rate
    (within 5 standard deviations), masks differ between epochs, batches and layers, and
    rows and units are independent (no stripes)."""
    rows, units = 400, 250
    for rate in (0.1, 0.5, 0.9):
        masks = [_cpu.dropout_mask(7, e, b, layer, rows, units, rate)
                 for e in range(2) for b in range(2) for layer in range(2)]
        for kept in masks:
            dropped = 1.0 - kept.mean()
            assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / kept.size)
            for axis in (0, 1):  # per row and per unit rates stay near the rate
                per = 1.0 - kept.mean(axis=axis)
                n = kept.shape[axis]
                assert np.abs(per - rate).max() < 6 * np.sqrt(rate * (1 - rate) / n)
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                agree = (masks[i] == masks[j]).mean()
                assert abs(agree - (rate ** 2 + (1 - rate) ** 2)) < 0.01
    assert _cpu.dropout_mask(1, 0, 0, 0, 3, 4, 0.0).all()


def one_batch_step_in_numpy(X, y, coefs, intercepts, masks, rate, lr):
    """One full-batch SGD step (no momentum, no L2) of a relu network with inverted dropout on
    its hidden layers, scikit-learn's squared-error loss: the engines' computation, spelled out."""
    acts, pres = [X], []
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        z = acts[-1] @ W + b
        if i < len(coefs) - 1:
            pres.append(z)
            acts.append(np.maximum(z, 0) * masks[i] / (1 - rate))
        else:
            acts.append(z)
    n = X.shape[0]
    delta = acts[-1] - y
    new_c, new_b = [None] * len(coefs), [None] * len(coefs)
    for i in range(len(coefs) - 1, -1, -1):
        new_c[i] = coefs[i] - lr * acts[i].T @ delta / n
        new_b[i] = intercepts[i] - lr * delta.sum(0) / n
        if i > 0:
            delta = (delta @ coefs[i].T) * masks[i - 1] / (1 - rate) * (pres[i - 1] > 0)
    return new_c, new_b


# row blocks (small networks: 6,419 parameters the larger), and layer by layer with a first layer
# of 600 inputs computed in two halves of its depth (dense_forward_halves: its mask applied after
# the halves' sum)
@pytest.mark.parametrize("width, d", [(16, 6), (400, 6), (200, 600)])
def test_dropout_is_the_mask_applied_inside_the_kernels(width, d):
    """One SGD step of the engine equals the numpy step with the masks of _cpu.dropout_mask,
    so the kernels apply exactly that mask, scaled by 1 / (1 - rate), forward and backward."""
    rng = np.random.default_rng(0)
    n = 130
    X = rng.normal(size=(n, d))
    y = rng.normal(size=(n, 1))
    rate = 0.4
    est = MLPRegressor(hidden_layer_sizes=(width, 9), solver="sgd", momentum=0.0,
                       learning_rate_init=0.05, alpha=0.0, batch_size=n, max_iter=1,
                       shuffle=False, dropout=rate, dtype="float64", random_state=3)
    coefs = [rng.normal(size=(d, width)) * 0.3, rng.normal(size=(width, 9)) * 0.3,
             rng.normal(size=(9, 1)) * 0.3]
    intercepts = [rng.normal(size=width) * 0.1, rng.normal(size=9) * 0.1, np.zeros(1)]
    est.set_weights(coefs, intercepts)
    est.set_params(warm_start=True)
    import warnings

    halves_before = _cpu._halves_epochs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    assert _cpu._halves_epochs() - halves_before == (1 if d >= 512 else 0)
    seed = est._dropout_seed
    masks = [_cpu.dropout_mask(seed, 0, 0, layer, n, units, rate)
             for layer, units in enumerate((width, 9))]
    new_c, new_b = one_batch_step_in_numpy(X, y, coefs, intercepts, masks, rate, 0.05)
    for got, want in zip(est.coefs_ + est.intercepts_, new_c + new_b):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "leaky_relu"])
def test_a_wide_first_layers_step_is_the_full_batch_gradients(activation):
    """An epoch's first layer of 600 inputs is computed in two halves of its depth
    (dense_forward_halves), its activation and stored pre-activations (gelu's derivative reads
    them) written after the halves' sum: one full-batch SGD step moves the weights by exactly
    the learning rate times the whole-data gradient of the engine's objective, which computes
    the layer in one product."""
    rng = np.random.default_rng(1)
    n, d, width = 90, 600, 120
    X = rng.normal(size=(n, d))
    y = rng.normal(size=(n, 2))
    lr = 0.01
    est = MLPRegressor(hidden_layer_sizes=(width,), activation=activation, solver="sgd",
                       momentum=0.0, learning_rate_init=lr, alpha=0.0, batch_size=n, max_iter=1,
                       shuffle=False, dtype="float64", random_state=0, warm_start=True)
    coefs = [rng.normal(size=(d, width)) * 0.05, rng.normal(size=(width, 2)) * 0.1]
    intercepts = [rng.normal(size=width) * 0.1, rng.normal(size=2) * 0.1]
    est.set_weights(coefs, intercepts)
    halves_before = _cpu._halves_epochs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    assert _cpu._halves_epochs() == halves_before + 1
    flat = np.concatenate([coefs[0].ravel(), intercepts[0], coefs[1].ravel(), intercepts[1]])
    options = {"negative_slope": 0.01} if activation == "leaky_relu" else {}
    engine = _cpu.TrainerF64([d, width, 2], activation, "squared_error", 1, "identity", options)
    grad = np.empty_like(flat)
    engine.loss_grad(X, np.ascontiguousarray(y), None, flat, 0.0, grad)
    got = np.concatenate([c.ravel() for pair in zip(est.coefs_, est.intercepts_) for c in pair])
    np.testing.assert_allclose(got, flat - lr * grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("hidden", [(20, 10), (300, 200)])
def test_dropout_models_do_not_depend_on_threads(classification, hidden):
    X, y = classification
    kw = dict(hidden_layer_sizes=hidden, dropout=[0.3, 0.1], max_iter=3, random_state=0,
              dtype="float32", batch_size=64)
    one = MLPClassifier(n_threads=1, **kw).fit(X, y)
    two = MLPClassifier(n_threads=2, **kw).fit(X, y)
    for a, b in zip(one.coefs_ + one.intercepts_, two.coefs_ + two.intercepts_):
        np.testing.assert_array_equal(a, b)
    # dropout is off in prediction: deterministic, and the weights' own network
    np.testing.assert_array_equal(one.predict_proba(X), one.predict_proba(X))
    plain = MLPClassifier(hidden_layer_sizes=hidden, dtype="float32").set_weights(
        one.coefs_, one.intercepts_, classes=one.classes_)
    np.testing.assert_array_equal(one.predict_proba(X), plain.predict_proba(X))


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_dropout_on_sparse_input_and_partial_fit(classification, solver):
    """The CSR first layer draws the same masks as the dense GEMM; partial_fit continues the
    epochs' masks as fit does (and fit equals the same number of partial_fit calls)."""
    X, y = classification
    kw = dict(hidden_layer_sizes=(30, 12), dropout=[0.4, 0.2], max_iter=3, random_state=0,
              dtype="float64", solver=solver, shuffle=False, batch_size=50)
    dense = MLPClassifier(**kw).fit(X, y)
    sparse = MLPClassifier(**kw).fit(sp.csr_matrix(X), y)
    for a, b in zip(dense.coefs_, sparse.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    steps = MLPClassifier(**kw)
    for _ in range(3):
        steps.partial_fit(X, y, classes=np.unique(y))
    for a, b in zip(dense.coefs_, steps.coefs_):
        np.testing.assert_array_equal(a, b)


def test_dropout_regularises(classification):
    X, y = classification
    kw = dict(hidden_layer_sizes=(64,), max_iter=150, random_state=0, dtype="float64", tol=0)
    with_dropout = MLPClassifier(dropout=0.5, **kw).fit(X, y)
    without = MLPClassifier(**kw).fit(X, y)
    # a dropped-out network's training loss stays above the full network's; it still learns
    assert with_dropout.loss_curve_[-1] > 1.3 * without.loss_curve_[-1]
    assert with_dropout.score(X, y) > 0.75


def test_dropout_errors(classification):
    X, y = classification
    with pytest.raises(ValueError, match="not supported by solver='lbfgs'"):
        MLPClassifier(solver="lbfgs", dropout=0.2).fit(X, y)
    MLPClassifier(solver="lbfgs", dropout=0.0, max_iter=5).fit(X, y)  # off: allowed
    with pytest.raises(ValueError, match="one rate per hidden layer \\(2\\)"):
        MLPClassifier(hidden_layer_sizes=(5, 5), dropout=[0.1, 0.2, 0.3]).fit(X, y)
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        MLPClassifier(hidden_layer_sizes=(5, 5), dropout=[0.1, 1.0]).fit(X, y)
    with pytest.raises(InvalidParameterError, match="dropout"):
        MLPClassifier(dropout=1.0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="dropout"):
        MLPClassifier(dropout=-0.1).fit(X, y)


# ---- label smoothing --------------------------------------------------------------------------

@pytest.mark.parametrize("n_classes", [2, 3])
def test_label_smoothing_is_pytorchs(n_classes):
    """The first epoch's loss (one full batch, from hand-set weights, no L2) equals PyTorch's
    cross-entropy with label_smoothing (softmax), or the binary cross-entropy of targets
    smoothed toward 1/2 (logistic), as Keras defines it."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    X, y = make_classification(n_samples=90, n_features=5, n_informative=4, n_redundant=0,
                               n_classes=n_classes, random_state=2)
    rng = np.random.default_rng(0)
    n_out = 1 if n_classes == 2 else n_classes
    coefs = [rng.normal(size=(5, 7)), rng.normal(size=(7, n_out))]
    intercepts = [rng.normal(size=7), rng.normal(size=n_out)]
    e = 0.2
    clf = MLPClassifier(hidden_layer_sizes=(7,), activation="tanh", alpha=0.0, batch_size=90,
                        max_iter=1, shuffle=False, label_smoothing=e, dtype="float64",
                        warm_start=True)
    clf.set_weights(coefs, intercepts, classes=np.unique(y))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    logits = torch.tensor(np.tanh(X @ coefs[0] + intercepts[0]) @ coefs[1] + intercepts[1])
    if n_classes == 2:
        target = torch.tensor(y, dtype=torch.float64)[:, None] * (1 - e) + e / 2
        want = F.binary_cross_entropy_with_logits(logits, target).item()
    else:
        want = F.cross_entropy(logits, torch.tensor(y), label_smoothing=e).item()
    assert clf.loss_curve_[0] == pytest.approx(want, rel=1e-12)


def test_label_smoothing_keeps_predictions_and_bounds(classification):
    X, y = classification
    kw = dict(hidden_layer_sizes=(20,), max_iter=200, random_state=0)
    smoothed = MLPClassifier(label_smoothing=0.1, **kw).fit(X, y)
    plain = MLPClassifier(**kw).fit(X, y)
    assert smoothed.score(X, y) > 0.8
    # less confident than without smoothing
    assert smoothed.predict_proba(X).max() < plain.predict_proba(X).max()
    with pytest.raises(InvalidParameterError, match="label_smoothing"):
        MLPClassifier(label_smoothing=1.5).fit(X, y)


# ---- class weights ----------------------------------------------------------------------------

def test_class_weight_reads_as_scikit_learns(classification):
    """A dict or 'balanced' weighs each sample by its class, exactly as the same sample weights
    would (scikit-learn's compute_class_weight), combined with sample_weight by product."""
    X, y = classification
    kw = dict(hidden_layer_sizes=(10,), max_iter=5, random_state=0, dtype="float64")
    sw = np.random.default_rng(0).uniform(0.5, 2, len(y))
    for class_weight in ({0: 3.0, 2: 0.5}, "balanced"):
        weights = compute_class_weight(class_weight, classes=np.unique(y), y=y)
        weighted = MLPClassifier(class_weight=class_weight, **kw).fit(X, y, sample_weight=sw)
        explicit = MLPClassifier(**kw).fit(X, y, sample_weight=sw * weights[y])
        for a, b in zip(weighted.coefs_, explicit.coefs_):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    for solver in ("lbfgs", "sgd"):
        weighted = MLPClassifier(class_weight={1: 2.0}, solver=solver, **kw).fit(X, y)
        explicit = MLPClassifier(solver=solver, **kw).fit(X, y, sample_weight=np.where(y == 1, 2.0, 1.0))
        np.testing.assert_allclose(weighted.coefs_[0], explicit.coefs_[0], rtol=1e-12)


def test_class_weight_errors(classification):
    X, y = classification
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    MLPClassifier(class_weight={0: 2.0}, max_iter=2).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not in class_weight|classes"):
        MLPClassifier(class_weight={7: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(class_weight={0: 2.0}).fit(X, np.eye(3)[y].astype(int))
    with pytest.raises(InvalidParameterError, match="class_weight"):
        MLPClassifier(class_weight="even").fit(X, y)


def test_class_weight_balanced_helps_the_minority():
    X, y = make_classification(n_samples=1000, n_features=8, weights=[0.93], random_state=4,
                               flip_y=0.02)
    kw = dict(hidden_layer_sizes=(16,), max_iter=60, random_state=0)
    plain = MLPClassifier(**kw).fit(X, y)
    balanced = MLPClassifier(class_weight="balanced", **kw).fit(X, y)
    recall = lambda m: (m.predict(X)[y == 1] == 1).mean()  # noqa: E731
    assert recall(balanced) > recall(plain)


# ---- a validation set of one's own ------------------------------------------------------------

def test_validation_set_replaces_the_split(regression):
    X, y = regression
    X_val, y_val = X[:60] + 0.05, y[:60]
    kw = dict(hidden_layer_sizes=(16,), early_stopping=True, max_iter=40, random_state=0,
              dtype="float64", alpha=1e-3, n_iter_no_change=5)
    est = MLPRegressor(**kw).fit(X, y, X_val=X_val, y_val=y_val)
    # every row of X trains
    assert est.t_ == est.n_iter_ * X.shape[0]
    assert len(est.validation_scores_) == len(est.validation_loss_curve_) == est.n_iter_
    # the best epoch's weights are restored: its score and loss are the model's on X_val
    best = int(np.argmax(est.validation_scores_))
    assert est.best_validation_score_ == est.validation_scores_[best]
    assert est.score(X_val, y_val) == pytest.approx(est.best_validation_score_, rel=1e-12)
    pred = est.predict(X_val)
    l2 = sum((c ** 2).sum() for c in est.coefs_)
    loss = 0.5 * np.mean((y_val - pred) ** 2) + 0.5 * 1e-3 * l2 / len(y_val)
    assert est.validation_loss_curve_[best] == pytest.approx(loss, rel=1e-10)
    # with sample weights: the weighted score
    sw_val = np.linspace(0.5, 2, 60)
    weighted = MLPRegressor(**kw).fit(X, y, X_val=X_val, y_val=y_val, sample_weight_val=sw_val)
    assert weighted.score(X_val, y_val, sample_weight=sw_val) == pytest.approx(
        weighted.best_validation_score_, rel=1e-12)


def test_validation_set_for_classifiers(classification):
    X, y = classification
    clf = MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, max_iter=30,
                        random_state=0, label_smoothing=0.1)
    clf.fit(X[:200], y[:200], X_val=X[200:], y_val=y[200:])
    assert clf.score(X[200:], y[200:]) == pytest.approx(clf.best_validation_score_)
    assert np.all(np.isfinite(clf.validation_loss_curve_))
    # the internal split records the validation loss too
    split = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, max_iter=5).fit(X, y)
    assert len(split.validation_loss_curve_) == split.n_iter_


def test_validation_set_errors(regression, classification):
    X, y = regression
    with pytest.raises(ValueError, match="y_val was not provided"):
        MLPRegressor(early_stopping=True).fit(X, y, X_val=X)
    with pytest.raises(ValueError, match="X_val was not provided"):
        MLPRegressor(early_stopping=True).fit(X, y, y_val=y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor().fit(X, y, X_val=X, y_val=y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(solver="lbfgs", early_stopping=True).fit(X, y, X_val=X, y_val=y)
    with pytest.raises(ValueError, match="8 features"):
        MLPRegressor(early_stopping=True).fit(X, y, X_val=X[:, :3], y_val=y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPRegressor(early_stopping=True).fit(X, y, X_val=X, y_val=y[:5])
    Xc, yc = classification
    with pytest.raises(ValueError, match="classes not in the training data"):
        MLPClassifier(early_stopping=True).fit(Xc, yc, X_val=Xc[:5], y_val=[0, 1, 2, 5, 0])


def test_bad_parameters_are_invalid_parameter_errors(regression):
    X, y = regression
    for params in ({"negative_slope": -0.1}, {"elu_alpha": 0.0}, {"dropout": "half"}):
        with pytest.raises(InvalidParameterError):
            MLPRegressor(**params).fit(X, y)
    for output in ("leaky_relu", "heaviside", "gelu_x"):
        with pytest.raises(InvalidParameterError, match="out_activation"):
            MLPRegressor(out_activation=output).fit(X, y)


def test_summary_lists_the_layers_as_keras_does():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier((20, 10), activation="gelu", dropout=[0.2, 0.0], max_iter=2,
                            random_state=0).fit(X, y)
    lines = []
    est.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "MLPClassifier"'
    assert "hidden_1 (Dense, gelu, dropout 0.2)" in text and "(None, 20)" in text
    assert "hidden_2 (Dense, gelu)" in text and "output (Dense, softmax)" in text
    n_params = sum(c.size + b.size for c, b in zip(est.coefs_, est.intercepts_))
    assert n_params == 4 * 20 + 20 + 20 * 10 + 10 + 10 * 3 + 3
    assert f"Total params: {n_params:,} ({n_params * 4:,} bytes, float32)" in text
    with pytest.raises(NotFittedError):
        MLPClassifier().summary()
