"""ONNX export (fusedmlp._onnx) and conversion to and from scikit-learn (fusedmlp._convert):
ONNX Runtime and scikit-learn predict what fusedmlp predicts, for every activation, every
regression output, every kind of target and both dtypes."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fusedmlp as fm
from fusedmlp import _cpu
from fusedmlp._convert import from_sklearn, to_sklearn
from fusedmlp._multilayer_perceptron import OUTPUT_ACTIVATIONS

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)
X_REG, Y_REG = make_regression(n_samples=120, n_features=5, n_targets=2, noise=1.0,
                               random_state=0)
X_REG = StandardScaler().fit_transform(X_REG)
Y_REG = (Y_REG - Y_REG.mean(axis=0)) / Y_REG.std(axis=0)

REGISTRY = {a["name"]: a for a in _cpu.activations()}
HIDDEN = sorted(name for name, a in REGISTRY.items() if a["hidden"])
STEPS = sorted(name for name in HIDDEN if REGISTRY[name]["derivative"] == "none")
DTYPES = [np.float32, np.float64]
# (rtol, atol): float graphs against the float32 engine, double graphs against float64
TOLERANCE = {np.float32: (1e-4, 1e-5), np.float64: (1e-10, 1e-12)}


# ---- helpers --------------------------------------------------------------------------------


def fitted(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def hand_set(est, n_in, n_out, classes=None, seed=0):
    """Weights set by hand (the step activations cannot train): random, of unit scale."""
    rng = np.random.default_rng(seed)
    units = [n_in, 6, 5, n_out]
    coefs = [rng.standard_normal((a, b)) for a, b in zip(units[:-1], units[1:])]
    intercepts = [rng.standard_normal(b) * 0.5 for b in units[1:]]
    if classes is None:
        return est.set_weights(coefs, intercepts)
    return est.set_weights(coefs, intercepts, classes=classes)


def classifier(activation, dtype, X=X_IRIS, y=Y_IRIS, **params):
    est = fm.MLPClassifier((6, 5), activation=activation, solver="lbfgs", max_iter=10,
                           random_state=0, dtype=dtype.__name__, **params)
    if activation in STEPS:
        classes = np.unique(y)
        return hand_set(est, X.shape[1], 1 if len(classes) == 2 else len(classes), classes)
    return fitted(est, X, y)


def regressor(activation, dtype, X=X_REG, y=Y_REG, **params):
    est = fm.MLPRegressor(hidden_layer_sizes=(6, 5), activation=activation, solver="lbfgs",
                          max_iter=10, random_state=0, dtype=dtype.__name__, **params)
    if activation in STEPS:
        return hand_set(est, X.shape[1], 1 if y.ndim == 1 else y.shape[1])
    return fitted(est, X, y)


@pytest.fixture(scope="module")
def onnx_run():
    """run(estimator, X, **to_onnx_options): ONNX Runtime's outputs for X."""
    ort = pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from fusedmlp._onnx import register_onnx_converters

    register_onnx_converters()
    single_thread = ort.SessionOptions()  # (a thread pool per session costs more than the run)
    single_thread.intra_op_num_threads = single_thread.inter_op_num_threads = 1

    def run(est, X, options=None, **kwargs):
        onx = skl2onnx.to_onnx(est, X[:1], options=options, **kwargs)
        session = ort.InferenceSession(onx.SerializeToString(), single_thread,
                                       providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: X})

    return run


def assert_close(actual, expected, dtype):
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def assert_labels_match(labels, expected, proba, dtype, multilabel=False):
    """Labels equal wherever the decision is not within rounding of a tie."""
    atol = 10 * TOLERANCE[dtype][1]
    if multilabel:
        clear = np.abs(proba - 0.5) > atol
    else:
        top2 = np.sort(proba, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > atol
        labels = np.asarray(labels).astype(np.asarray(expected).dtype)
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(np.asarray(labels)[clear], np.asarray(expected)[clear])


# ---- ONNX: every activation -----------------------------------------------------------------


def test_every_activation_has_an_onnx_formula():
    from fusedmlp import _onnx

    outputs = set(OUTPUT_ACTIVATIONS) | {loss["canonical_output"] for loss in _cpu.losses()}
    missing = (set(HIDDEN) | outputs) - set(_onnx._ACTIVATIONS) - {"softmax"}
    assert not missing, f"no ONNX formula for {sorted(missing)}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN)
def test_hidden_activation_classifier(onnx_run, activation, dtype):
    est = classifier(activation, dtype)
    X = X_IRIS.astype(dtype)
    labels, proba = onnx_run(est, X, options={"zipmap": False})
    expected = est.predict_proba(X)
    assert proba.shape == (len(X), 3) and proba.dtype == dtype
    assert_close(proba, expected, dtype)
    assert_labels_match(labels, est.predict(X), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN)
def test_hidden_activation_regressor(onnx_run, activation, dtype):
    est = regressor(activation, dtype, negative_slope=0.2, elu_alpha=0.7)
    X = X_REG.astype(dtype)
    (pred,) = onnx_run(est, X)
    assert pred.shape == (len(X), 2) and pred.dtype == dtype
    assert_close(pred, est.predict(X), dtype)


# z over every branch of the formulas: 0 and the signed zeros of the steps, tiny values
# (expm1, log1p), fdlibm's erf intervals (at z / sqrt(2)), softplus's switch at 20, the tails
GRID = np.concatenate([
    np.linspace(-40.0, 40.0, 801),
    [0.0, -0.0, 1e-300, -1e-300, 1e-12, -1e-12, 1e-7, -1e-7, 19.999, 20.0, 20.001, -700.0,
     -800.0, 700.0],
    np.sqrt(2.0) * np.array([0.84375, 1.25, 1 / 0.35, 6.0, -0.84375, -1.25, -1 / 0.35, -6.0]),
])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN)
def test_activation_formula_on_a_grid(onnx_run, activation, dtype):
    """A 1-1-1 network predicts f(z): the ONNX formula against the engine's, point by point."""
    est = fm.MLPRegressor(hidden_layer_sizes=(1,), activation=activation,
                          dtype=dtype.__name__, negative_slope=0.1, elu_alpha=1.3)
    est.set_weights([np.ones((1, 1)), np.ones((1, 1))], [np.zeros(1), np.zeros(1)])
    z = GRID.reshape(-1, 1).astype(dtype)
    (pred,) = onnx_run(est, z)
    # relative to the value, and absolutely to the rounding of the terms it is made of
    # (cancellation in 1 + tanh or 1 + erf leaves values of a few ulp of 1 on both sides)
    rtol, atol = (1e-5, 2e-6) if dtype == np.float32 else (1e-12, 1e-14)
    np.testing.assert_allclose(pred[:, 0], est.predict(z), rtol=rtol, atol=atol)
    if activation in STEPS:
        np.testing.assert_array_equal(pred[:, 0], est.predict(z))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out", OUTPUT_ACTIVATIONS + ["exp"])
def test_regressor_output_activation(onnx_run, out, dtype):
    y = 1.0 / (1.0 + np.exp(-Y_REG))  # in (0, 1): suits every output, and the Poisson loss
    params = {"loss": "poisson"} if out == "exp" else {"out_activation": out}
    est = regressor("tanh", dtype, y=y, **params)
    assert est.out_activation_ == out
    X = X_REG.astype(dtype)
    (pred,) = onnx_run(est, X)
    assert_close(pred, est.predict(X), dtype)


# ---- ONNX: targets, options, inputs ---------------------------------------------------------

TARGETS = {
    "binary": Y_IRIS > 0,
    "binary-strings": np.where(Y_IRIS == 2, "virginica", "other"),
    "multiclass-strings": np.array(["setosa", "versicolor", "virginica"])[Y_IRIS],
    "multiclass-sparse-labels": np.array([-4, 10, 1000])[Y_IRIS],
    "multilabel": np.stack([Y_IRIS == 0, Y_IRIS == 1, X_IRIS[:, 0] > 0], axis=1).astype(int),
    "multilabel-2": np.stack([Y_IRIS == 2, X_IRIS[:, 1] > 0], axis=1).astype(int),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", list(TARGETS))
def test_classifier_targets(onnx_run, target, dtype):
    y = TARGETS[target]
    est = classifier("relu", dtype, y=y)
    X = X_IRIS.astype(dtype)
    labels, proba = onnx_run(est, X, options={"zipmap": False})
    expected = est.predict_proba(X)
    multilabel = target.startswith("multilabel")
    n_columns = y.shape[1] if multilabel else len(np.unique(y))
    assert proba.shape == expected.shape == (len(X), n_columns)
    assert_close(proba, expected, dtype)
    if multilabel:
        assert labels.shape == y.shape and labels.dtype == np.int64
    else:
        assert labels.shape == (len(X),)
        assert labels.dtype == (object if target.endswith("strings") else np.int64)
    assert_labels_match(labels, est.predict(X), expected, dtype, multilabel=multilabel)


def test_binary_step_classifier_with_hand_set_weights(onnx_run):
    """The textbook XOR network of threshold units: exact labels and probabilities."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    est = fm.MLPClassifier((2,), activation="heaviside")
    est.set_weights([[[1, 1], [1, 1]], [[20], [-20]]], [[-0.5, -1.5], [-10]],
                    classes=["even", "odd"])
    labels, proba = onnx_run(est, X, options={"zipmap": False})
    np.testing.assert_array_equal(labels, ["even", "odd", "odd", "even"])
    np.testing.assert_array_equal(labels, est.predict(X))
    assert_close(proba, est.predict_proba(X), np.float32)


def test_single_class(onnx_run):
    """One class seen in training: one logistic unit, two columns of probabilities."""
    est = fitted(fm.MLPClassifier((4,), max_iter=3, random_state=0), X_IRIS,
                 np.full(len(X_IRIS), "only"))
    X = X_IRIS.astype(np.float32)
    labels, proba = onnx_run(est, X, options={"zipmap": False})
    assert (labels == "only").all() and (est.predict(X) == "only").all()
    assert_close(proba, est.predict_proba(X), np.float32)
    sk = to_sklearn(est)
    assert (sk.predict(X) == "only").all()
    assert_close(from_sklearn(sk).predict_proba(X), sk.predict_proba(X), np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_output_regressor_is_n_by_1(onnx_run, dtype):
    est = regressor("relu", dtype, y=Y_REG[:, 0])
    X = X_REG.astype(dtype)
    (pred,) = onnx_run(est, X)
    assert pred.shape == (len(X), 1)
    assert_close(pred[:, 0], est.predict(X), dtype)


def test_zipmap_options(onnx_run):
    y = TARGETS["multiclass-strings"]
    est = classifier("tanh", np.float32, y=y)
    X = X_IRIS.astype(np.float32)
    expected = est.predict_proba(X)
    labels, maps = onnx_run(est, X)  # zipmap=True, scikit-learn's default
    assert list(maps[0]) == list(est.classes_)
    assert_close([[m[c] for c in est.classes_] for m in maps], expected, np.float32)
    columns = onnx_run(est, X, options={"zipmap": "columns"})
    assert_close(np.stack(columns[1:], axis=1), expected, np.float32)


def test_nocl_and_output_class_labels(onnx_run):
    y = TARGETS["multiclass-strings"]
    est = classifier("tanh", np.float32, y=y)
    X = X_IRIS.astype(np.float32)
    indices, _ = onnx_run(est, X, options={"zipmap": False, "nocl": True})
    np.testing.assert_array_equal(est.classes_[indices], est.predict(X))
    outputs = onnx_run(est, X, options={"zipmap": False, "output_class_labels": True})
    np.testing.assert_array_equal(outputs[2], est.classes_)


@pytest.mark.parametrize("model_dtype", DTYPES)
@pytest.mark.parametrize("input_dtype", [np.float32, np.float64, np.int64])
def test_graph_computes_in_the_input_type(onnx_run, model_dtype, input_dtype):
    """As skl2onnx: a double graph for float64 input, a float one otherwise, whatever the
    model's dtype; integers are cast."""
    est = classifier("gelu", model_dtype)
    X = (X_IRIS * 3).astype(input_dtype)
    _, proba = onnx_run(est, X, options={"zipmap": False})
    assert proba.dtype == (np.float64 if input_dtype == np.float64 else np.float32)
    both = np.float64 if model_dtype == input_dtype == np.float64 else np.float32
    assert_close(proba, est.predict_proba(X), both)


@pytest.mark.parametrize("target_opset", [11, 13])
def test_older_opsets(onnx_run, target_opset):
    for dtype in DTYPES:
        est = classifier("gelu", dtype)
        X = X_IRIS.astype(dtype)
        _, proba = onnx_run(est, X, options={"zipmap": False}, target_opset=target_opset)
        assert_close(proba, est.predict_proba(X), dtype)
    with pytest.raises(ValueError, match="target_opset >= 11; got 10"):
        onnx_run(est, X, target_opset=10)


def test_pipeline_and_convert_sklearn(onnx_run):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    pipe = fitted(make_pipeline(StandardScaler(), fm.MLPRegressor(
        hidden_layer_sizes=(8,), activation="silu", solver="lbfgs", max_iter=20,
        random_state=0)), X_REG * 5 + 1, Y_REG)
    X = (X_REG * 5 + 1).astype(np.float32)
    (pred,) = onnx_run(pipe, X)
    assert_close(pred, pipe.predict(X), np.float32)
    onx = convert_sklearn(pipe[-1], initial_types=[("X", FloatTensorType([None, 5]))])
    assert [o.name for o in onx.graph.output] == ["variable"]


def test_unfitted_estimators_do_not_convert(onnx_run):
    with pytest.raises(NotFittedError):
        onnx_run(fm.MLPClassifier(), X_IRIS.astype(np.float32))
    with pytest.raises(NotFittedError):
        onnx_run(fm.MLPRegressor(), X_REG.astype(np.float32))


def test_registration_is_idempotent(onnx_run):
    from skl2onnx._supported_operators import sklearn_operator_name_map

    from fusedmlp._onnx import register_onnx_converters

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_onnx_converters()
        register_onnx_converters()
    assert sklearn_operator_name_map[fm.MLPClassifier] == "FusedmlpMLPClassifier"
    assert sklearn_operator_name_map[fm.MLPRegressor] == "FusedmlpMLPRegressor"


# ---- to_sklearn and from_sklearn ------------------------------------------------------------

SKLEARN_TARGETS = ["multiclass", "binary-strings", "multilabel", "multilabel-2"]


def _target(name):
    return Y_IRIS if name == "multiclass" else TARGETS[name]


def assert_same_fit(a, b):
    """The fitted state the two libraries share."""
    assert len(a.coefs_) == len(b.coefs_) == len(a.intercepts_) == len(b.intercepts_)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(ca, cb)
    for attr in ("n_layers_", "n_outputs_", "out_activation_", "n_features_in_", "n_iter_",
                 "t_", "loss_", "best_loss_", "validation_scores_", "best_validation_score_"):
        assert hasattr(a, attr) == hasattr(b, attr), attr
        if hasattr(a, attr):
            assert getattr(a, attr) == getattr(b, attr), attr
    assert list(getattr(a, "loss_curve_", [])) == list(getattr(b, "loss_curve_", []))
    if hasattr(a, "classes_"):
        np.testing.assert_array_equal(a.classes_, b.classes_)
        assert a._label_binarizer.y_type_ == b._label_binarizer.y_type_


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", SKLEARN_TARGETS)
def test_to_sklearn_classifier(target, dtype):
    y = _target(target)
    est = fitted(fm.MLPClassifier((7,), activation="tanh", max_iter=8, random_state=0,
                                  dtype=dtype.__name__, alpha=0.01), X_IRIS, y)
    sk = to_sklearn(est)
    assert type(sk) is SkMLPClassifier
    assert sk.get_params()["alpha"] == 0.01 and sk.get_params()["hidden_layer_sizes"] == (7,)
    assert_same_fit(sk, est)
    assert sk.coefs_[0].dtype == dtype and sk.coefs_[0] is not est.coefs_[0]
    X = X_IRIS.astype(dtype)
    assert_close(sk.predict_proba(X), est.predict_proba(X), dtype)
    np.testing.assert_array_equal(sk.predict(X), est.predict(X))
    back = from_sklearn(sk)
    assert type(back) is fm.MLPClassifier and back.dtype == dtype.__name__
    assert_same_fit(back, est)
    assert_close(back.predict_proba(X), est.predict_proba(X), dtype)


@pytest.mark.parametrize("params", [{}, {"loss": "poisson"}, {"activation": "logistic"},
                                    {"solver": "sgd", "early_stopping": True}])
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_to_sklearn_regressor(params, n_outputs):
    y = Y_REG[:, :n_outputs].squeeze()
    if params.get("loss") == "poisson":
        y = np.exp(y)
    kw = {"hidden_layer_sizes": (6,), "max_iter": 8, "random_state": 0, "dtype": "float64"}
    est = fitted(fm.MLPRegressor(**{**kw, **params}), X_REG, y)
    sk = to_sklearn(est)
    assert type(sk) is SkMLPRegressor
    assert_same_fit(sk, est)
    assert_close(sk.predict(X_REG), est.predict(X_REG), np.float64)
    assert_close(from_sklearn(sk).predict(X_REG), est.predict(X_REG), np.float64)


@pytest.mark.parametrize("target", SKLEARN_TARGETS + ["regression", "poisson"])
def test_from_sklearn(target):
    if target in ("regression", "poisson"):
        y = np.exp(Y_REG[:, 0]) if target == "poisson" else Y_REG
        sk = fitted(SkMLPRegressor(loss="squared_error" if target == "regression" else target,
                                   hidden_layer_sizes=(6, 4), max_iter=20, random_state=0),
                    X_REG, y)
        X = X_REG
    else:
        sk = fitted(SkMLPClassifier((6, 4), activation="logistic", max_iter=20,
                                    random_state=0), X_IRIS, _target(target))
        X = X_IRIS
    est = from_sklearn(sk)
    assert type(est).__name__ == type(sk).__name__ and est.dtype == "float64"
    assert est.get_params()["hidden_layer_sizes"] == (6, 4)
    assert_same_fit(est, sk)
    if isinstance(sk, SkMLPClassifier):
        np.testing.assert_array_equal(est.predict(X), sk.predict(X))
        assert_close(est.predict_proba(X), sk.predict_proba(X), np.float64)
    else:
        assert_close(est.predict(X), sk.predict(X), np.float64)


def test_float32_sklearn_model_stays_float32():
    sk = fitted(SkMLPClassifier((5,), max_iter=10, random_state=0), X_IRIS.astype(np.float32),
                Y_IRIS)
    est = from_sklearn(sk)
    assert est.dtype == "float32" and est.coefs_[0].dtype == np.float32
    X = X_IRIS.astype(np.float32)
    assert est.predict_proba(X).dtype == sk.predict_proba(X).dtype
    assert_close(est.predict_proba(X), sk.predict_proba(X), np.float32)
    assert from_sklearn(sk, dtype="float64").coefs_[0].dtype == np.float64


def test_feature_names_are_copied():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(X_IRIS, columns=["a", "b", "c", "d"])
    est = fitted(fm.MLPClassifier((5,), max_iter=5, random_state=0), X, Y_IRIS)
    sk = to_sklearn(est)
    np.testing.assert_array_equal(sk.feature_names_in_, est.feature_names_in_)
    np.testing.assert_array_equal(from_sklearn(sk).feature_names_in_, est.feature_names_in_)
    np.testing.assert_array_equal(sk.predict(X), est.predict(X))


def test_training_continues_after_conversion():
    est = fitted(fm.MLPClassifier((5,), max_iter=5, random_state=0, dtype="float64"),
                 X_IRIS, Y_IRIS)
    sk = to_sklearn(est)
    sk.partial_fit(X_IRIS, Y_IRIS)
    assert len(sk.loss_curve_) == len(est.loss_curve_) + 1 and sk.t_ == est.t_ + len(X_IRIS)
    back = from_sklearn(sk)
    back.partial_fit(X_IRIS, Y_IRIS)
    assert len(back.loss_curve_) == len(sk.loss_curve_) + 1 and back.t_ == sk.t_ + len(X_IRIS)
    stopping = fitted(SkMLPRegressor(hidden_layer_sizes=(5,), early_stopping=True, max_iter=5,
                                     random_state=0), X_REG, Y_REG)
    est = from_sklearn(stopping)
    assert len(est.validation_loss_curve_) == len(stopping.validation_scores_) == 5
    fitted(est.set_params(warm_start=True, max_iter=3), X_REG, Y_REG)
    assert len(est.validation_scores_) == len(est.validation_loss_curve_) == 8
    assert np.isfinite(est.validation_loss_curve_[-1])


@pytest.mark.parametrize("estimator,match", [
    (fm.MLPClassifier((3,), activation="gelu"), "no activation 'gelu'"),
    (fm.MLPRegressor(hidden_layer_sizes=(3,), activation="leaky_relu"),
     "no activation 'leaky_relu'"),
    (fm.MLPRegressor(hidden_layer_sizes=(3,), out_activation="softplus"),
     "output activation 'identity'.*'softplus'"),
    (fm.MLPRegressor(hidden_layer_sizes=(3,), loss="poisson", out_activation="softplus"),
     "output activation 'exp'.*'softplus'"),
    (fm.MLPRegressor(hidden_layer_sizes=(3,), loss="huber", out_activation="tanh"),
     "no loss 'huber'"),
])
def test_to_sklearn_refuses_what_sklearn_cannot_compute(estimator, match):
    y = np.abs(Y_REG[:, 0]) if isinstance(estimator, fm.MLPRegressor) else Y_IRIS
    X = X_REG if isinstance(estimator, fm.MLPRegressor) else X_IRIS
    fitted(estimator.set_params(max_iter=2, random_state=0), X, y)
    with pytest.raises(ValueError, match=match):
        to_sklearn(estimator)
    with pytest.raises(ValueError, match=match):
        to_sklearn(estimator, strict=False)


@pytest.mark.parametrize("estimator,match", [
    (fm.MLPClassifier((3,), dropout=0.2), "dropout=0.2"),
    (fm.MLPClassifier((3,), label_smoothing=0.1), "label_smoothing=0.1"),
    (fm.MLPClassifier((3,), class_weight="balanced"), "class_weight='balanced'"),
    (fm.MLPRegressor(hidden_layer_sizes=(3,), loss="quantile", quantile=0.3),
     "loss='quantile'"),
    (fm.MLPRegressor(hidden_layer_sizes=(3, 2), dropout=[0.0, 0.5]), r"dropout=\[0.0, 0.5\]"),
])
def test_to_sklearn_strict_refuses_training_options(estimator, match):
    X, y = (X_REG, Y_REG) if isinstance(estimator, fm.MLPRegressor) else (X_IRIS, Y_IRIS)
    fitted(estimator.set_params(max_iter=3, random_state=0), X, y)
    with pytest.raises(ValueError, match=match + ".*strict=False"):
        to_sklearn(estimator)
    sk = to_sklearn(estimator, strict=False)
    assert_close(sk.predict(X), estimator.predict(X), np.float32)
    if isinstance(sk, SkMLPRegressor):
        assert sk.loss == "squared_error"


def test_step_activation_set_by_hand_is_refused():
    est = hand_set(fm.MLPClassifier(activation="sign"), 4, 3, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="no activation 'sign'"):
        to_sklearn(est)


def test_unfitted_and_wrong_types():
    with pytest.raises(NotFittedError, match="not fitted"):
        to_sklearn(fm.MLPClassifier())
    with pytest.raises(NotFittedError, match="not fitted"):
        from_sklearn(SkMLPRegressor())
    with pytest.raises(TypeError, match="fusedmlp's MLPClassifier and MLPRegressor"):
        to_sklearn(SkMLPClassifier())
    with pytest.raises(TypeError, match="already fusedmlp's MLPRegressor"):
        from_sklearn(fm.MLPRegressor())
    with pytest.raises(TypeError, match="from_sklearn converts"):
        from_sklearn(fm.Perceptron())


def test_skl2onnx_converts_without_an_explicit_registration():
    """Importing fusedmlp registers the converters when skl2onnx is imported, in either
    order: skl2onnx.to_onnx(model, X) just works."""
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys

    script = """
import numpy as np
from sklearn.datasets import load_iris
{imports}
import onnxruntime as ort
X, y = load_iris(return_X_y=True)
m = fusedmlp.MLPClassifier((5,), activation="gelu", max_iter=20, random_state=0).fit(X, y)
onx = skl2onnx.to_onnx(m, X[:1].astype(np.float32), options={{"zipmap": False}})
sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
proba = sess.run(None, {{sess.get_inputs()[0].name: X.astype(np.float32)}})[1]
assert np.allclose(proba, m.predict_proba(X), atol=1e-5), abs(proba - m.predict_proba(X)).max()
print("ok")
"""
    for imports in ("import fusedmlp\nimport skl2onnx", "import skl2onnx\nimport fusedmlp"):
        code = script.format(imports=imports)
        done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_estimator_methods_convert():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = fm.MLPClassifier((6,), max_iter=30, random_state=0, dtype="float64").fit(X, y)
    sk = est.to_sklearn()
    assert isinstance(sk, SkMLPClassifier)
    np.testing.assert_allclose(sk.predict_proba(X), est.predict_proba(X), rtol=1e-12)
    back = fm.MLPClassifier.from_sklearn(sk)
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    with pytest.raises(TypeError, match="MLPRegressor.from_sklearn"):
        fm.MLPRegressor.from_sklearn(sk)
