"""Conversion of fitted MLPs between fusedmlp and scikit-learn.

``to_sklearn`` gives the scikit-learn estimator that predicts what a fusedmlp one predicts,
with its hyper-parameters and training record; ``from_sklearn`` goes the other way. Both
copy the arrays: the two estimators share nothing afterwards.
"""

import copy

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor

# What scikit-learn's MLPs compute: their hidden activations, and each regression loss with
# the output activation scikit-learn gives it.
_SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
_SKLEARN_REGRESSION_OUTPUTS = {"squared_error": "identity", "poisson": "exp"}

# The training record both libraries keep, copied as it is when present.
_TRAINING_ATTRIBUTES = (
    "n_iter_",
    "t_",
    "loss_",
    "loss_curve_",
    "best_loss_",
    "validation_scores_",
    "best_validation_score_",
)


def to_sklearn(estimator, *, strict=True):
    """The scikit-learn MLPClassifier or MLPRegressor equivalent to a fitted fusedmlp one.

    The result has scikit-learn's hyper-parameters as the fusedmlp estimator has them, its
    weights (copied, in their dtype) and its fitted attributes: ``coefs_``, ``intercepts_``,
    ``n_layers_``, ``n_outputs_``, ``out_activation_``, ``classes_`` and
    ``_label_binarizer`` (classifier), ``n_features_in_``, ``feature_names_in_``, and the
    training record ``n_iter_``, ``t_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
    ``validation_scores_``, ``best_validation_score_`` when present. It predicts what the
    fusedmlp estimator predicts, to the rounding of its dtype, and ``partial_fit`` or
    ``warm_start`` continue from these weights.

    Parameters
    ----------
    estimator : fusedmlp.MLPClassifier or fusedmlp.MLPRegressor
        A fitted estimator (by ``fit``, ``partial_fit`` or ``set_weights``).

    strict : bool, default=True
        Refuse a network trained with what scikit-learn lacks but predicting as it would
        (``dropout``, ``label_smoothing``, ``class_weight``, the absolute error, Huber or
        quantile loss with an identity output). With ``strict=False`` those convert: the
        scikit-learn estimator predicts the same, but fitting it again trains without them
        (with the squared error in place of another regression loss).

    Returns
    -------
    sklearn_estimator : sklearn.neural_network.MLPClassifier or MLPRegressor
        A fitted scikit-learn estimator.

    Raises
    ------
    TypeError
        If `estimator` is not a fusedmlp MLPClassifier or MLPRegressor.
    sklearn.exceptions.NotFittedError
        If `estimator` is not fitted.
    ValueError
        If scikit-learn cannot compute this network: a hidden activation other than
        'identity', 'logistic', 'tanh' or 'relu', or a regression output other than
        scikit-learn's (identity for the squared error, exp for the Poisson loss); and,
        with ``strict=True``, for the training options above.

    Examples
    --------
    >>> from fusedmlp import MLPRegressor
    >>> from fusedmlp._convert import to_sklearn
    >>> from sklearn.datasets import make_regression
    >>> X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    >>> est = MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=50).fit(X, y)
    >>> type(to_sklearn(est)).__name__
    'MLPRegressor'
    """
    from ._multilayer_perceptron import MLPClassifier, MLPRegressor

    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError(
            f"to_sklearn converts fusedmlp's MLPClassifier and MLPRegressor; got "
            f"{type(estimator).__module__}.{type(estimator).__name__}."
        )
    _check_fitted(estimator)
    classifier = isinstance(estimator, MLPClassifier)
    sk_class = SkMLPClassifier if classifier else SkMLPRegressor
    name = type(estimator).__name__
    params = estimator.get_params(deep=False)

    if estimator.activation not in _SKLEARN_ACTIVATIONS:
        raise ValueError(
            f"scikit-learn's {name} has no activation {estimator.activation!r} (it has "
            f"{', '.join(_SKLEARN_ACTIVATIONS)}): this network cannot be converted. Export "
            "it to ONNX instead (fusedmlp._onnx.register_onnx_converters), or train with "
            "one of those activations."
        )
    training_only = []  # what only training sees: refused when strict
    if not classifier:
        loss, out = params["loss"], estimator.out_activation_
        sk_losses = _sklearn_losses()
        if loss in _SKLEARN_REGRESSION_OUTPUTS and loss in sk_losses:
            if out != _SKLEARN_REGRESSION_OUTPUTS[loss]:
                raise ValueError(
                    f"scikit-learn's MLPRegressor with loss={loss!r} has the output "
                    f"activation {_SKLEARN_REGRESSION_OUTPUTS[loss]!r}; this network's is "
                    f"{out!r}, so it cannot be converted. Export it to ONNX instead, or "
                    "train with out_activation=None."
                )
        elif out == "identity":
            training_only.append(f"loss={loss!r}")
            params["loss"] = "squared_error"
        else:
            raise ValueError(
                f"scikit-learn's MLPRegressor has no loss {loss!r} with the output "
                f"activation {out!r} (it has {sorted(sk_losses)} with "
                f"{_SKLEARN_REGRESSION_OUTPUTS}): this network cannot be converted. Export "
                "it to ONNX instead."
            )
    if np.any(np.asarray(params.get("dropout", 0.0), dtype=float) > 0):
        training_only.append(f"dropout={params['dropout']!r}")
    if classifier and params.get("label_smoothing", 0.0):
        training_only.append(f"label_smoothing={params['label_smoothing']!r}")
    if classifier and params.get("class_weight") is not None:
        training_only.append(f"class_weight={params['class_weight']!r}")
    if strict and training_only:
        raise ValueError(
            f"This {name} was trained with {', '.join(training_only)}, which scikit-learn's "
            f"{name} lacks. Its predictions convert exactly: pass strict=False to convert "
            "it anyway (fitting the scikit-learn estimator again would train without "
            "them)."
        )

    sk_names = sk_class().get_params(deep=False)
    sk_est = sk_class(**{k: copy.deepcopy(v) for k, v in params.items() if k in sk_names})
    sk_est.coefs_ = [np.array(c) for c in estimator.coefs_]
    sk_est.intercepts_ = [np.array(b) for b in estimator.intercepts_]
    sk_est.n_layers_ = len(sk_est.coefs_) + 1
    sk_est.n_outputs_ = int(estimator.n_outputs_)
    sk_est.out_activation_ = estimator.out_activation_
    sk_est.n_features_in_ = int(estimator.n_features_in_)
    if hasattr(estimator, "feature_names_in_"):
        sk_est.feature_names_in_ = np.array(estimator.feature_names_in_, dtype=object)
    if classifier:
        sk_est._label_binarizer = copy.deepcopy(estimator._label_binarizer)
        sk_est.classes_ = sk_est._label_binarizer.classes_
    _copy_training_record(estimator, sk_est)
    # what scikit-learn's _initialize sets and its stochastic loop reads when it continues
    # (warm_start, partial_fit); fusedmlp restores the best weights when it stops early
    sk_est._best_coefs = [c.copy() for c in sk_est.coefs_]
    sk_est._best_intercepts = [b.copy() for b in sk_est.intercepts_]
    sk_est._no_improvement_count = int(getattr(estimator, "_no_improvement_count", 0))
    return sk_est


def from_sklearn(sklearn_estimator, *, dtype=None):
    """The fusedmlp MLPClassifier or MLPRegressor equivalent to a fitted scikit-learn one.

    The result has the scikit-learn estimator's hyper-parameters (fusedmlp's own at their
    defaults, but `dtype`), its weights (copied) and its fitted attributes (as
    :func:`to_sklearn` lists them), so that it predicts what the scikit-learn estimator
    predicts and ``partial_fit`` or ``warm_start`` continue from its weights.
    scikit-learn keeps no validation losses: with ``early_stopping=True``,
    ``validation_loss_curve_`` holds NaN for the iterations scikit-learn ran.

    Parameters
    ----------
    sklearn_estimator : sklearn.neural_network.MLPClassifier or MLPRegressor
        A fitted scikit-learn estimator.

    dtype : {'float32', 'float64'}, default=None
        The fusedmlp estimator's compute dtype. None: that of the scikit-learn weights
        (float64 when trained on float64 data), whose predictions it then reproduces to
        the last digits.

    Returns
    -------
    estimator : fusedmlp.MLPClassifier or fusedmlp.MLPRegressor
        A fitted fusedmlp estimator.

    Raises
    ------
    TypeError
        If `sklearn_estimator` is not a scikit-learn MLPClassifier or MLPRegressor.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    ValueError
        If its weights are of another dtype than float32 and float64 and `dtype` is None.

    Examples
    --------
    >>> from sklearn.neural_network import MLPClassifier
    >>> from fusedmlp._convert import from_sklearn
    >>> clf = MLPClassifier((4,), solver="lbfgs").fit([[0.0], [1.0]], [0, 1])
    >>> from_sklearn(clf).predict([[1.0]])
    array([1])
    """
    from ._multilayer_perceptron import MLPClassifier, MLPRegressor

    if isinstance(sklearn_estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError(
            "from_sklearn converts scikit-learn's MLPs; this is already fusedmlp's "
            f"{type(sklearn_estimator).__name__}."
        )
    if not isinstance(sklearn_estimator, (SkMLPClassifier, SkMLPRegressor)):
        raise TypeError(
            f"from_sklearn converts sklearn.neural_network.MLPClassifier and MLPRegressor; "
            f"got {type(sklearn_estimator).__module__}.{type(sklearn_estimator).__name__}."
        )
    _check_fitted(sklearn_estimator)
    sk = sklearn_estimator
    classifier = isinstance(sk, SkMLPClassifier)
    fm_class = MLPClassifier if classifier else MLPRegressor
    if dtype is None:
        dtype = np.dtype(sk.coefs_[0].dtype).name
        if dtype not in ("float32", "float64"):
            raise ValueError(
                f"The scikit-learn weights are {dtype}; fusedmlp computes in float32 or "
                "float64. Pass dtype='float32' or 'float64'."
            )
    fm_names = fm_class().get_params(deep=False)
    params = {k: copy.deepcopy(v) for k, v in sk.get_params(deep=False).items()
              if k in fm_names}
    est = fm_class(**params, dtype=dtype)
    coefs = [np.asarray(c) for c in sk.coefs_]
    intercepts = [np.asarray(b) for b in sk.intercepts_]

    if not classifier:
        est.set_weights(coefs, intercepts)
        if est.out_activation_ != sk.out_activation_:
            raise ValueError(
                f"scikit-learn's MLPRegressor has the output activation "
                f"{sk.out_activation_!r} with loss={params.get('loss')!r}, fusedmlp's "
                f"{est.out_activation_!r}: this estimator cannot be converted."
            )
    elif sk._label_binarizer.y_type_ in ("binary", "multiclass") and len(sk.classes_) >= 2:
        est.set_weights(coefs, intercepts, classes=sk.classes_)
    else:
        # multilabel targets (one logistic unit per label) or a single class: shapes that
        # set_weights' classes= does not describe; its shared part takes any output width
        est._set_weights(coefs, intercepts)
        est.out_activation_ = sk.out_activation_
    if classifier:
        est._label_binarizer = copy.deepcopy(sk._label_binarizer)
        est.classes_ = est._label_binarizer.classes_

    est.n_features_in_ = int(sk.n_features_in_)
    if hasattr(sk, "feature_names_in_"):
        est.feature_names_in_ = np.array(sk.feature_names_in_, dtype=object)
    _copy_training_record(sk, est)
    if hasattr(sk, "_no_improvement_count"):
        est._no_improvement_count = int(sk._no_improvement_count)
    if isinstance(getattr(est, "validation_scores_", None), list):
        est.validation_loss_curve_ = [float("nan")] * len(est.validation_scores_)
    if hasattr(est, "_output_dtype"):
        # scikit-learn's predictions are of the dtype its weights were trained in
        est._output_dtype = np.dtype(sk.coefs_[0].dtype).type
    return est


def _check_fitted(estimator):
    if not hasattr(estimator, "coefs_"):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet: call fit (or, for "
            "fusedmlp's estimators, set_weights) before converting it."
        )


def _sklearn_losses():
    """The regression losses this scikit-learn's MLPRegressor has."""
    if "loss" not in SkMLPRegressor().get_params():
        return {"squared_error"}  # scikit-learn before 1.7
    return {"squared_error", "poisson"}


def _copy_training_record(source, target):
    """The training record, copied as it is: lists as new lists, numbers as numbers."""
    for attr in _TRAINING_ATTRIBUTES:
        if not hasattr(source, attr):
            continue
        value = getattr(source, attr)
        if isinstance(value, list):
            value = list(value)
        setattr(target, attr, value)
