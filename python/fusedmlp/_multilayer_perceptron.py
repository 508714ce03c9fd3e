"""MLPClassifier and MLPRegressor: scikit-learn's estimators on fusedmlp's engines.

The control flow (validation, initialisation, the epoch loop with its stopping rules,
schedules, callbacks-to-come and verbose output) follows scikit-learn's
``sklearn/neural_network/_multilayer_perceptron.py`` step by step, so that behaviour and,
with ``dtype=float64``, numbers match it. What scikit-learn does per mini-batch in numpy
happens here in one native call per epoch (``_engine.py``).
"""

import functools
import math
import os
import threading
import weakref
from abc import ABC, abstractmethod
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    is_classifier,
)
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from . import _convert, _cpu, _engine, _persist
from ._driver import STOCHASTIC_SOLVERS as _STOCHASTIC_SOLVERS
from ._driver import (
    CallbackSupport, FitHooks, StochasticTraining, TrainingSet, batch_size_for, fit_lbfgs,
)
from ._params import SKLEARN_SCHEDULES, STEP_SCHEDULES, FlatParameters, Layout, layer_units
from ._validation import FLOAT32_MAX, check_float32_range, check_sparse_structure

_NOT_NUMERIC = "USVMm"  # numpy kinds of strings, bytes, void, datetimes and timedeltas
# The engines' registries (csrc/include/fusedmlp/activation.h, loss.h), read from the compiled
# module: no list of names is written twice.
ACTIVATIONS = {a["name"]: a for a in _engine.activations()}
HIDDEN_ACTIVATIONS = sorted(name for name, a in ACTIVATIONS.items() if a["hidden"])
# a regression output: element-wise, with a gradient and without a parameter of its own
OUTPUT_ACTIVATIONS = sorted(
    name for name in HIDDEN_ACTIVATIONS
    if ACTIVATIONS[name]["param"] is None and ACTIVATIONS[name]["derivative"] != "none"
)
LOSSES = {loss["name"]: loss for loss in _engine.losses()}
REGRESSION_LOSSES = sorted(name for name, loss in LOSSES.items() if loss["regression"])
_CUDA_MAX_LAYERS = 32  # the CUDA engine's layer table (csrc/cuda/kernels.cuh, kMaxLayers)
_DTYPES = {"float32": np.float32, "float64": np.float64}
# (dtype instances: comparing an array's dtype with them costs a third to a half of comparing it
# with the scalar types: 68 against 144-206 ns, a few times per one-row prediction)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_FLOAT_DTYPES = (_F32, _F64)
# The prediction engine kept for each estimator, and the largest call that uses it (see
# _prediction_engine): the buffers it keeps grow with the rows of the calls it serves.
_KEPT_ENGINES = weakref.WeakKeyDictionary()
_KEPT_ENGINE_ROWS = 256
# The CUDA training engine kept for each estimator across partial_fit calls (its device
# buffers and captured graph).
_KEPT_TRAINING_ENGINES = weakref.WeakKeyDictionary()
# A child process starts without them: a lease held by another thread at the fork would stay
# held in the child, and a CUDA engine does not survive a fork.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_KEPT_ENGINES.clear)
    os.register_at_fork(after_in_child=_KEPT_TRAINING_ENGINES.clear)


class _ClassIndex:
    """_forward_pass_fast's labels of a softmax head from the CPU engine: each row's index in
    classes_ (numpy's argmax of the outputs), without the outputs."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


def _resolve_dtype(dtype):
    """The compute type `dtype` names; a clear error for anything else (also when set after
    fit, which scikit-learn's parameter validation does not see)."""
    resolved = None
    if isinstance(dtype, (str, type, np.dtype)):
        try:
            resolved = np.dtype(_DTYPES.get(dtype, dtype)).type
        except TypeError:
            pass
    if resolved not in (np.float32, np.float64):
        raise ValueError(
            f"The 'dtype' parameter must be 'float32' or 'float64' (or the numpy types); got "
            f"{dtype!r}."
        )
    return resolved


class BaseMultilayerPerceptron(CallbackSupport, FlatParameters, BaseEstimator, ABC):
    """Base class for MLP classification and regression (use the derived classes)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate": [StrOptions(set(SKLEARN_SCHEDULES + STEP_SCHEDULES))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        # fusedmlp's own parameters
        "dtype": [
            StrOptions(set(_DTYPES)),
            Options(type, {np.float32, np.float64}),
            Options(np.dtype, {np.dtype(np.float32), np.dtype(np.float64)}),
        ],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "device": [StrOptions(set(_engine.DEVICES))],
        "learning_rate_warmup": [Interval(Integral, 0, None, closed="left")],
        "learning_rate_min": [Interval(Real, 0, None, closed="left")],
        "learning_rate_gamma": [Interval(Real, 0, 1, closed="right")],
        "learning_rate_factor": [Interval(Real, 0, 1, closed="neither")],
        "learning_rate_patience": [Interval(Integral, 0, None, closed="left")],
        "negative_slope": [Interval(Real, 0, None, closed="left")],
        "elu_alpha": [Interval(Real, 0, None, closed="neither")],
        "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
    }

    @abstractmethod
    def __init__(
        self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
        learning_rate_init, power_t, max_iter, loss, shuffle, random_state, tol, verbose,
        warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
        beta_1, beta_2, epsilon, n_iter_no_change, max_fun, dtype, n_threads, device,
    ):
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads
        self.device = device

    def _compute_dtype(self):
        return _resolve_dtype(self.dtype)

    def _device_for(self, X, layer_units, macs=None):
        """The device this call runs on: 'auto' takes the GPU only for what it supports and,
        for host data, only when the training call's work (`macs`, its multiply-adds) is large
        enough to pay for it (_engine.auto_gpu_min_macs()). A training call (`macs` given)
        records where it runs; validation and predictions (`macs` None) follow it."""
        device = _engine.resolve_device(self.device)
        too_deep = len(layer_units) - 1 > _CUDA_MAX_LAYERS
        if device == "cuda" and self.device == "auto":
            if sp.issparse(X) or too_deep:
                device = "cpu"
            elif not _engine.is_device_array(X):
                if macs is not None:
                    device = "cuda" if macs >= _engine.auto_gpu_min_macs() else "cpu"
                elif getattr(self, "_auto_device", "cuda") == "cpu":
                    device = "cpu"
        elif device == "cuda":
            if sp.issparse(X):
                raise TypeError(
                    "device='cuda' trains on dense input; X is a sparse matrix. Pass a dense "
                    "array (X.toarray()) or use device='cpu' (or 'auto'), which trains on CSR."
                )
            if too_deep:
                raise ValueError(
                    f"device='cuda' supports networks of at most {_CUDA_MAX_LAYERS} layers; this "
                    f"one has {len(layer_units) - 1}. Use device='cpu' or 'auto'."
                )
        if self.device == "auto" and macs is not None:
            self._auto_device = device
        return device

    def _engine_for(self, layer_units, device, dtype, training=False):
        loss, out_activation, options = self._engine_head()
        param = ACTIVATIONS[self.activation]["param"]
        if param is not None:
            options[param] = float(getattr(self, param))
        if training:
            rates = self._dropout_rates(len(layer_units) - 2)
            if rates is not None:
                options["dropout"] = rates
        return _engine.make_engine(
            device, dtype, layer_units, self.activation, self.n_threads, loss, out_activation,
            options,
        )

    def _dropout_rates(self, n_hidden):
        """dropout as one rate per hidden layer, or None when no unit is dropped."""
        if isinstance(self.dropout, Real) and self.dropout == 0:
            return None  # (the default, without numpy's overhead)
        rates = np.asarray(self.dropout, dtype=np.float64)
        if rates.ndim > 1 or (rates.ndim == 1 and rates.shape[0] != n_hidden):
            raise ValueError(
                f"dropout must be one rate, or one rate per hidden layer ({n_hidden}); got "
                f"{self.dropout!r}."
            )
        if not np.all((rates >= 0) & (rates < 1)):
            raise ValueError(f"dropout rates must be in [0, 1); got {self.dropout!r}.")
        rates = np.broadcast_to(rates, (n_hidden,))
        if not np.any(rates > 0):
            return None
        return [float(r) for r in rates]

    def _check_trainable(self, n_hidden):
        """What gradient training cannot do: say so before anything is changed."""
        if ACTIVATIONS[self.activation]["derivative"] == "none":
            raise ValueError(
                f"activation={self.activation!r} is a step function: its gradient is zero "
                "almost everywhere, so no solver can train it. Use it to predict with "
                "weights set by hand (set_weights), or train with a differentiable "
                "activation."
            )
        if self.solver == "lbfgs" and self._dropout_rates(n_hidden) is not None:
            raise ValueError(
                "dropout is not supported by solver='lbfgs': L-BFGS needs one fixed "
                "objective, and dropout draws a new network every mini-batch. Use "
                "solver='adam' or 'sgd', or dropout=0."
            )

    def _engine_head(self):
        """The engine's head: the loss, the output activation and the loss's parameters."""
        if isinstance(self, ClassifierMixin):  # (is_classifier reads the tags: slow per predict)
            loss = "log_loss" if self.out_activation_ == "softmax" else "binary_log_loss"
            return loss, self.out_activation_, {}
        params = {"huber_delta": float(getattr(self, "huber_delta", 1.0)),
                  "quantile": float(getattr(self, "quantile", 0.5))}
        return self.loss, self.out_activation_, params

    # ---- weights set by hand -------------------------------------------------------------

    def _set_weights(self, coefs, intercepts, n_outputs_expected=None):
        """Shared part of set_weights: checks the shapes and makes coefs_/intercepts_ the
        model's parameters, in the compute dtype."""
        if len(coefs) == 0 or len(coefs) != len(intercepts):
            raise ValueError(
                f"set_weights needs one coefficient matrix and one intercept vector per "
                f"layer; got {len(coefs)} and {len(intercepts)}."
            )
        dtype = self._compute_dtype()
        coefs = [check_array(c, dtype=np.float64, input_name=f"coefs[{i}]")
                 for i, c in enumerate(coefs)]
        intercepts = [column_or_1d(check_array(b, ensure_2d=False, dtype=np.float64,
                                               input_name=f"intercepts[{i}]"))
                      for i, b in enumerate(intercepts)]
        for i, (c, b) in enumerate(zip(coefs, intercepts)):
            if i > 0 and c.shape[0] != coefs[i - 1].shape[1]:
                raise ValueError(
                    f"coefs[{i}] has {c.shape[0]} rows but layer {i - 1} has "
                    f"{coefs[i - 1].shape[1]} units."
                )
            if b.shape[0] != c.shape[1]:
                raise ValueError(
                    f"intercepts[{i}] has {b.shape[0]} values but coefs[{i}] has "
                    f"{c.shape[1]} columns."
                )
        units = layer_units(coefs)
        if n_outputs_expected is not None and units[-1] != n_outputs_expected:
            raise ValueError(
                f"The last layer has {units[-1]} unit(s); these classes need "
                f"{n_outputs_expected}."
            )
        if dtype == np.float32:
            for i, c in enumerate(coefs):
                check_float32_range(c, f"coefs[{i}]")
        layout = Layout(units)
        self._bind_params(layout.pack(coefs, intercepts, dtype), layout)
        self.n_features_in_ = units[0]
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_outputs_ = units[-1]
        self.n_layers_ = len(units)
        self.n_iter_ = 0
        self.t_ = 0
        self._output_dtype = np.float64
        self._best_params = None
        self._dropout_seed = None
        self._epochs_run = 0
        for attr in ("_optimizer", "loss_", "loss_curve_", "validation_scores_",
                     "validation_loss_curve_", "best_validation_score_", "best_loss_"):
            if hasattr(self, attr):
                delattr(self, attr)
        self._reset_training_state()  # (fit with warm_start=True continues from here)

    # ---- fitting ------------------------------------------------------------------------

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)

        if not is_classifier(self):
            self.out_activation_ = self._regression_output()
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"

        # Same random draws, in the same order, as scikit-learn: per layer, coef then intercept.
        layout = Layout(layer_units)
        params = np.empty(layout.n_params, dtype=dtype)
        for i in range(self.n_layers_ - 1):
            coef_init, intercept_init = self._init_coef(layer_units[i], layer_units[i + 1])
            params[layout.coef_slices[i]] = coef_init.ravel()
            params[layout.intercept_slices[i]] = intercept_init
        self._bind_params(params, layout)
        self._best_params = None  # the early-stopping snapshot, taken when first needed
        # dropout's masks are keyed by (seed, epoch, batch, layer, row, unit); the seed is
        # drawn when dropout is first used, so a model without dropout draws what
        # scikit-learn draws
        self._dropout_seed = None
        self._epochs_run = 0

        self._reset_training_state()

    def _reset_training_state(self):
        """The training history and stopping state of a model about to be trained anew."""
        self.history_ = {}
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    def _init_coef(self, fan_in, fan_out):
        # Glorot et al.'s uniform initialisation, drawn in float64 as scikit-learn does
        factor = ACTIVATIONS[self.activation]["glorot_factor"]
        init_bound = np.sqrt(factor / (fan_in + fan_out))
        coef_init = self._random_state.uniform(-init_bound, init_bound, (fan_in, fan_out))
        intercept_init = self._random_state.uniform(-init_bound, init_bound, fan_out)
        return coef_init, intercept_init

    def _fit(self, X, y, sample_weight=None, incremental=False, validation=None):
        data = self._training_set(X, y, sample_weight, incremental, validation)
        if self.solver in _STOCHASTIC_SOLVERS:
            max_subtasks = 1 if incremental else self.max_iter
        else:  # one subtask per L-BFGS iteration, and the one scipy never starts
            max_subtasks = self.max_iter + 1
        try:
            hooks = FitHooks(self, data.X, data.y_given, data.sample_weight, max_subtasks)
            if self.solver in _STOCHASTIC_SOLVERS:
                StochasticTraining(self, data, incremental, hooks).run()
            elif self.solver == "lbfgs":
                fit_lbfgs(self, data.X_engine, data.Y_train, data.train_weight, data.engine, hooks)
                if not np.isfinite(self.loss_):
                    self._check_float32_input(data.X)
        finally:
            if data.lease is not None:
                data.engine.release_data()  # (the kept engine keeps its buffers, not the arrays)
                data.lease.release()

        self._check_finite_params(data.X)
        hooks.close()
        if data.lease is None and hasattr(data.engine, "end_training"):
            self._keep_for_prediction(data.engine)
        return self

    def _training_set(self, X, y, sample_weight, incremental, validation=None, steps=None):
        """Everything before the first epoch: the input validated and handed to an engine,
        the model initialised (or checked for continuation). `steps`: the call's optimizer
        steps when it runs a number of batches rather than of epochs (the learning-rate
        finder), which device='auto' weighs."""
        if self.device == "auto":
            _engine.auto_gpu_min_macs()  # (a bad FUSEDMLP_AUTO_GPU_MIN_MACS: before any change)
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)

        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(
                "hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes
            )
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        y_given = y  # (what callbacks score against: the labels as given)

        check_sparse_structure(X)
        check_sparse_structure(y, "y")
        output_dtype = _engine.sklearn_float_dtype(X)
        dtype = self._compute_dtype()
        if _engine.is_device_array(X):
            X = _engine.validate_device_X(self, X, reset=first_pass)
            y = check_array(
                _engine.to_host(y), ensure_2d=False, dtype=None, ensure_all_finite=True,
                input_name="y",
            )
            check_consistent_length(X, y)
            y = self._validate_targets(y, incremental)
        else:
            X_given = X
            try:
                X, y = self._validate_input(X, y, incremental, reset=first_pass)
            except ValueError as e:
                if dtype == np.float32 and "infinity" in str(e):
                    _explain_float32_overflow(X_given, e)
                raise
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                _engine.to_host(sample_weight), np.empty((n_samples, 0))
            )
        if not is_classifier(self) and y.dtype.kind in _NOT_NUMERIC:
            # (after the sample weights, in scikit-learn's order: its loss on such targets
            # fails, a numpy TypeError; numbers held as strings are not converted silently)
            raise TypeError(
                f"y has dtype {y.dtype}; MLPRegressor needs numeric targets. Convert them "
                "first, e.g. y.astype(float)."
            )

        if y.ndim == 1:
            y = y.reshape((-1, 1))
        if dtype == np.float32:
            self._check_float32_range(y, sample_weight)
        if first_pass:
            # the dtype scikit-learn would train in (X's, when float32, else float64), which
            # with X's decides the dtype of predictions, as in scikit-learn
            self._output_dtype = output_dtype

        self.n_outputs_ = y.shape[1]

        layer_units = [n_features] + hidden_layer_sizes + [self.n_outputs_]

        self._random_state = check_random_state(self.random_state)
        self._check_trainable(len(layer_units) - 2)

        if first_pass:
            self._initialize(y, layer_units, dtype)
        else:
            self._check_continuation(layer_units, dtype)

        if validation is not None:
            validation = self._validation_set(*validation, dtype)
        macs = None  # (partial_fit keeps the device its first call chose)
        if not (incremental and not first_pass and hasattr(self, "_auto_device")):
            n = X.shape[0]
            if steps is not None:
                rows = steps * batch_size_for(self, n, warn=False)
            else:
                rows = n * (1 if incremental else self.max_iter)
            macs = _engine.training_macs(rows, layer_units, 1)
        device = self._device_for(X, layer_units, macs)
        X_engine = _engine.as_engine_input(X, device, gathered=True)
        Y = np.ascontiguousarray(y, dtype=dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
        # what the engine trains on: the targets and weights after label smoothing and class
        # weights (classifiers); validation scores use the user's own
        Y_train, train_weight = self._training_targets(Y, sample_weight, incremental)
        if train_weight is not None:
            train_weight = np.ascontiguousarray(train_weight, dtype=dtype)
        lease = None
        if incremental and device == "cuda":  # (its buffers and graph serve the next call)
            engine, lease = self._kept_engine(
                _KEPT_TRAINING_ENGINES, layer_units, device, dtype, training=True
            )
        else:
            engine = self._engine_for(layer_units, device, dtype, training=True)
        if not hasattr(self, "history_"):
            self.history_ = {}  # (a model from set_weights or an older pickle)
        return TrainingSet(
            X=X, X_engine=X_engine, y=y, y_given=y_given, Y_train=Y_train,
            sample_weight=sample_weight, train_weight=train_weight, engine=engine,
            validation=validation, lease=lease,
        )

    def _reconstruction_attributes(self):
        """What makes a copy of this estimator the model as it is now (scikit-learn's
        callback protocol): the weights, copied, and the counters."""
        attributes = {
            "coefs_": [c.copy() for c in self.coefs_],
            "intercepts_": [b.copy() for b in self.intercepts_],
            "n_iter_": self.n_iter_,
            "history_": {key: list(values) for key, values in self.history_.items()},
        }
        if hasattr(self, "loss_"):
            attributes["loss_"] = self.loss_
        return attributes

    def _check_finite_params(self, X):
        """scikit-learn's error for non-finite weights, with the float32 range named when
        the model computes in float32."""
        if np.isfinite(self._params).all():
            return
        self._check_float32_input(X)
        msg = (
            "Solver produced non-finite parameter weights. The input data may"
            " contain large values and need to be preprocessed."
        )
        if self._params.dtype == np.float32:
            msg += (
                " The model computes in float32 (dtype='float32'), whose range ends at"
                " 3.4e+38; dtype='float64' reaches 1.8e+308."
            )
        raise ValueError(msg)

    def _check_float32_input(self, X):
        """Once training met a non-finite value: whether X holds values a float32 model
        cannot represent (then a clear error). Checked only then, as a pass over a large X
        costs as much as scikit-learn's own validation."""
        if self._params.dtype == np.float32 and not _engine.is_device_array(X):
            check_float32_range(X, "X")

    def _check_float32_range(self, y, sample_weight):
        """A float32 model cannot hold values beyond float32's range: a clear error now
        instead of non-finite weights later (X: when training meets a non-finite value)."""
        if not is_classifier(self):
            check_float32_range(y, "y")
        check_float32_range(sample_weight, "sample_weight")
        limits = {"alpha": self.alpha}
        if self.solver in _STOCHASTIC_SOLVERS:
            limits["learning_rate_init"] = self.learning_rate_init
        if self.solver == "adam":
            limits["epsilon"] = self.epsilon
        finfo = np.finfo(np.float32)
        for name, value in limits.items():
            value = float(value)
            if value > float(finfo.max) or (name == "epsilon" and value < float(finfo.tiny)):
                raise ValueError(
                    f"{name}={value!r} is not representable in float32 (normal numbers from "
                    f"{finfo.tiny:.4g} to {finfo.max:.4g}), the model's compute dtype. Fit "
                    "with dtype='float64'."
                )

    def _check_continuation(self, layer_units, dtype):
        """warm_start and partial_fit continue the model they have: it must fit the data."""
        current = self._layer_units()
        if list(current) != list(layer_units):
            raise ValueError(
                "The network has layer sizes %s but this call needs %s: "
                "hidden_layer_sizes, the number of features or the number of outputs "
                "changed since the last fit. Refit from scratch (warm_start=False)."
                % (current, list(layer_units))
            )
        self.n_layers_ = len(layer_units)
        self._layout = Layout(layer_units)
        self._adopt_params(dtype)
        optimizer = getattr(self, "_optimizer", None)
        if optimizer is not None and optimizer.arrays()[
            "velocity" if optimizer.solver == "sgd" else "m"
        ].dtype != dtype:
            optimizer.astype(dtype)
        best = getattr(self, "_best_params", None)
        if best is not None and best.dtype != dtype:
            self._best_params = best.astype(dtype)  # (the engines write it in place)

    def _training_targets(self, Y, sample_weight, incremental):
        """The targets and sample weights the engine trains on (regressors: as given)."""
        return Y, sample_weight





    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in
            regression).

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        X_val : {array-like, sparse matrix} of shape (n_val_samples, n_features), default=None
            A validation set of your own for early stopping (``early_stopping=True``): it
            replaces the split of ``validation_fraction`` of X, and every row of X trains.
            As scikit-learn's ``HistGradientBoosting*`` take it.

        y_val : array-like of shape (n_val_samples,) or (n_val_samples, n_outputs), default=None
            The validation set's targets (required with X_val).

        sample_weight_val : array-like of shape (n_val_samples,), default=None
            The validation set's sample weights.

        Returns
        -------
        self : object
            Returns a trained MLP model.
        """
        validation = None
        if X_val is not None or y_val is not None:
            if y_val is None:
                raise ValueError("X_val is provided, but y_val was not provided.")
            if X_val is None:
                raise ValueError("y_val is provided, but X_val was not provided.")
            if not self.early_stopping or self.solver not in _STOCHASTIC_SOLVERS:
                raise ValueError(
                    "X_val and y_val are passed to fit while early_stopping is False or the "
                    f"solver ({self.solver!r}) does not stop early. A validation set is used "
                    "by early stopping: set early_stopping=True with solver='adam' or 'sgd'."
                )
            validation = (X_val, y_val, sample_weight_val)
        elif sample_weight_val is not None:
            raise ValueError("sample_weight_val is provided, but X_val and y_val were not.")
        return self._fit(X, y, sample_weight=sample_weight, incremental=False,
                         validation=validation)

    def _validation_set(self, X_val, y_val, sample_weight_val, dtype):
        """The user's validation set, checked as X and y are: (X_val, what the score
        compares with, its weights, the targets the loss compares with)."""
        if _engine.is_device_array(X_val):
            X_val = _engine.validate_device_X(self, X_val, reset=False)
        else:
            check_sparse_structure(X_val, "X_val")
            X_val = validate_data(
                self, X_val, accept_sparse=["csr", "csc"], dtype=_input_dtypes(dtype), reset=False
            )
        y_val = check_array(_engine.to_host(y_val), ensure_2d=False, dtype=None, input_name="y_val")
        check_consistent_length(X_val, y_val)
        if sample_weight_val is not None:
            sample_weight_val = _check_sample_weight(
                _engine.to_host(sample_weight_val), np.empty((X_val.shape[0], 0)), dtype=dtype
            )
        y_score, Y_val = self._validation_targets(y_val, dtype)
        return X_val, y_score, sample_weight_val, Y_val

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True

    # ---- saving, inspecting, converting ---------------------------------------------------

    def save(self, file):
        """Save this estimator, fitted or not, to a portable file: read it back with
        ``fusedmlp.load``.

        The file holds arrays and JSON (no pickle: safe to load from an untrusted source):
        the parameters, the weights, the optimizer state and the histories. The estimator
        it restores predicts bit for bit as this one, and ``partial_fit`` continues exactly
        where this one stopped. See ``docs/architecture.md`` for the format.

        Parameters
        ----------
        file : str, path-like or binary file object
            Where to write; a path is written atomically (a temporary file, then renamed).
        """
        _persist.save(self, file)

    def summary(self, print_fn=print):
        """Print the network's layers, output shapes, activations and parameter counts, as
        Keras's ``Model.summary`` does.

        Parameters
        ----------
        print_fn : callable, default=print
            Called with each line.
        """
        check_is_fitted(self)
        units = self._layer_units()
        rates = self._dropout_rates(len(units) - 2) or [0.0] * (len(units) - 2)
        rows = [("input (Input)", f"(None, {units[0]})", "0")]
        for i, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:])):
            last = i == len(units) - 2
            activation = self.out_activation_ if last else self.activation
            drop = "" if last or rates[i] == 0 else f", dropout {rates[i]:g}"
            name = "output" if last else f"hidden_{i + 1}"
            rows.append((f"{name} (Dense, {activation}{drop})", f"(None, {fan_out})",
                         f"{fan_in * fan_out + fan_out:,}"))
        width = max(64, max(len(r[0]) for r in rows) + 40)
        total = sum(int(r[2].replace(",", "")) for r in rows)
        dtype = np.dtype(self.coefs_[0].dtype).name
        lines = [f'Model: "{type(self).__name__}"', "_" * width,
                 f"{'Layer (type)':<{width - 36}}{'Output Shape':<22}{'Param #':>14}",
                 "=" * width]
        lines += [f"{a:<{width - 36}}{b:<22}{c:>14}" for a, b, c in rows]
        # (threshold units have no gradient: nothing in such a network trains)
        trainable = total if ACTIVATIONS[self.activation]["derivative"] != "none" else 0
        lines += ["=" * width, f"Total params: {total:,} ({total * np.dtype(dtype).itemsize:,} "
                  f"bytes, {dtype})", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", "_" * width]
        for line in lines:
            print_fn(line)

    def to_sklearn(self, *, strict=True):
        """The equivalent fitted scikit-learn estimator (``sklearn.neural_network``); see
        ``fusedmlp.to_sklearn``."""
        return _convert.to_sklearn(self, strict=strict)

    @classmethod
    def from_sklearn(cls, estimator, *, dtype=None):
        """The fusedmlp estimator equivalent to a fitted scikit-learn MLP; see
        ``fusedmlp.from_sklearn``."""
        result = _convert.from_sklearn(estimator, dtype=dtype)
        if not isinstance(result, cls):
            raise TypeError(
                f"{cls.__name__}.from_sklearn takes a scikit-learn "
                f"{cls.__name__}; got {type(estimator).__name__}."
            )
        return result

    # ---- prediction ---------------------------------------------------------------------

    def _forward_pass_fast(self, X, check_input=True, cast=False, labels=False):
        """The network's output for X, output activation applied.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        check_input : bool, default=True
            Perform input data validation or not.

        cast : bool, default=False
            Return the output in the dtype scikit-learn's would have (that of X's values
            times weights of the dtype it trained in) instead of float64.

        labels : bool, default=False
            The output only decides class labels (argmax, a 0.5 threshold), which do not
            change with its float dtype: it is returned in the engine's (no cast). A softmax
            head's labels on the CPU engine's checked path come as a _ClassIndex instead: the
            index numpy's argmax takes on each row of the outputs, from the engine (which runs
            the softmax only on the rows where it could change the order).

        Returns
        -------
        y_pred : ndarray of shape (n_samples, n_outputs), or _ClassIndex
        """
        if check_input and not labels:
            y_pred = self._kept_pass(X)
            if y_pred is not None:
                out_dtype = self._prediction_dtype(X.dtype) if cast else _F64
                return y_pred if out_dtype == y_pred.dtype else y_pred.astype(out_dtype)
        if type(X) is not np.ndarray and _engine.is_device_array(X):
            return _engine.device_forward(self, X, cast)
        # A float ndarray of the fitted width has its values checked by the CPU engine's own
        # pass over them (scikit-learn's separate check reads all of X once more: as long as
        # the products of a small network, or a third of a one-row prediction).
        on_cpu = self.device == "cpu" or (self.device == "auto" and getattr(self, "_auto_device", None) == "cpu")
        deferred = check_input and on_cpu and self._plain_input(X, max_checked=None)
        plain = check_input and not deferred and self._plain_input(X)
        if check_input and not plain and not deferred:
            check_sparse_structure(X)
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        if not deferred and X.dtype.kind not in "biuf":
            # scikit-learn's X @ coefs_ fails here (a numpy TypeError)
            raise TypeError(
                f"X has dtype {X.dtype}, which cannot be multiplied by the network's "
                "weights; pass numeric features."
            )
        if on_cpu:
            device = "cpu"
        else:
            # (a model 'auto' trained on the CPU is on_cpu: where it trained, _device_for)
            device = "cuda" if _engine.resolve_device(self.device) == "cuda" else "cpu"
            if device == "cuda" and (sp.issparse(X) or len(self.coefs_) > _CUDA_MAX_LAYERS):
                device = "cpu"  # the parameters are host arrays: any engine can use them
        if labels:
            out_dtype = None
        else:
            out_dtype = self._prediction_dtype(X.dtype) if cast else _F64
        engine, params, lease = self._prediction_engine(device, X.shape[0])
        # (a softmax head's labels: the class indices from the engine itself)
        class_index = labels and deferred and self.out_activation_ == "softmax"
        try:
            if X.dtype not in _FLOAT_DTYPES:
                X = X.astype(params.dtype)
            if class_index:
                index, nonfinite, outputs_nonfinite = engine.predict_checked(X, params, labels=True)
                y_pred = _ClassIndex(index)
            elif deferred:
                y_pred, nonfinite = engine.predict_checked(X, params)
            else:
                y_pred = engine.predict(_engine.as_engine_input(X, device), params)
        finally:
            if lease is not None:
                lease.release()
        if deferred and nonfinite:
            # scikit-learn's error for NaN and infinities; finite values that only overflow
            # float32 are found by the range check below
            X = validate_data(self, X, reset=False)
        if not plain and params.dtype == _F32 and X.dtype == _F64 and (
                outputs_nonfinite if class_index else not math.isfinite(y_pred.sum())):
            check_float32_range(X, "X")  # values a float32 model cannot hold: say so
        if class_index:
            return y_pred
        if out_dtype is not None and out_dtype != y_pred.dtype:
            y_pred = y_pred.astype(out_dtype)
        return y_pred

    def _prediction_dtype(self, x_dtype):
        """scikit-learn's output dtype: X's values times weights of the dtype it trained in."""
        return _result_type(x_dtype, getattr(self, "_output_dtype", np.float64))

    def _check_fitted(self):
        """check_is_fitted for the prediction methods: a fitted model has coefs_, and the
        full check (which reads the estimator's tags: as long as a one-row prediction) runs
        only when it has not."""
        if "coefs_" not in self.__dict__:
            check_is_fitted(self)

    def _prediction_engine(self, device, n_rows=_KEPT_ENGINE_ROWS):
        """An engine for the fitted layout on `device`, the parameters it reads, and the lock
        to release after use (None: the engine is the caller's alone).

        Building an engine costs as much as predicting one row, so the engine of calls of at
        most _KEPT_ENGINE_ROWS rows is kept for the estimator (with buffers for that many
        rows: about 1 MB for a network of Fashion-MNIST's size), outside its __dict__ (which
        predict must not change, and pickles and copies must not carry), and reused while the
        configuration it was built for (device, the current CUDA device, dtype, layout,
        activation, head, threads) is the estimator's. A CUDA engine is kept whatever the
        rows (its device buffers stop growing at one chunk of 4096 rows; allocating them is
        what costs on a GPU). Engines are not reentrant: a call that finds the kept engine in
        use by another thread, and larger CPU calls, build their own.

        A kept CPU engine also keeps the objects its key was read from (_prediction_stamp):
        while the estimator still holds each of them, a call takes the engine without
        building the key again (see _stamped_engine).
        """
        if device == "cpu" and n_rows <= _KEPT_ENGINE_ROWS:
            stamped = self._stamped_engine()
            if stamped is not None:
                return stamped
        dtype = self.coefs_[0].dtype.type
        if dtype not in (np.float32, np.float64):
            dtype = np.float64
        params = self._current_params(dtype)
        own = params is self.__dict__.get("_params")
        # (the model's own buffer: its layout has the units, no need to read coefs_' shapes)
        units = self._layout.units if own else self._layer_units()
        if n_rows > _KEPT_ENGINE_ROWS and device != "cuda":
            return self._engine_for(units, device, dtype), params, None
        engine, lease = self._kept_engine(_KEPT_ENGINES, units, device, dtype)
        if device == "cpu" and own:
            self._stamp_kept_engine(engine)
        return engine, params, lease

    def _prediction_stamp(self, param):
        """The names of the attributes the key of a kept CPU engine (_engine_key) and the
        parameters it reads are built from: the fitted weights' lists first (their arrays
        count too), the flat buffer, its views, the layout, the activation and `param`, its
        parameter's name or None, the threads, and what the head (_engine_head) reads."""
        names = ("coefs_", "intercepts_", "_params", "_param_views", "_layout", "activation",
                 "n_threads", "out_activation_")
        if param is not None:
            names += (param,)
        if not isinstance(self, ClassifierMixin):
            names += ("loss", "huber_delta", "quantile")
        return names

    def _stamp_kept_engine(self, engine):
        """After a CPU call that built the key of the kept `engine` from the estimator's
        current state, its weights the flat buffer's views: keep that state's objects (they
        stay alive, at most one buffer more, until the next such call or the estimator's
        end), and the thread count n_threads=None stood for. An estimator whose key reads an
        attribute from elsewhere than its __dict__ (a class attribute, a property) is not
        stamped: its calls build the key."""
        try:
            kept = _KEPT_ENGINES.get(self)
        except TypeError:  # an unhashable estimator: no keeping
            return
        if kept is None or kept[1] is not engine:
            return
        state = self.__dict__
        names = self._prediction_stamp(ACTIVATIONS[self.activation]["param"])
        if not all(name in state for name in names):
            return
        coefs, intercepts = state["coefs_"], state["intercepts_"]
        if type(coefs) is not list or type(intercepts) is not list:
            return
        objects = (*(state[name] for name in names), *coefs, *intercepts)
        threads = _engine.default_threads() if self.n_threads is None else None
        stamp = (names, objects, threads)
        _KEPT_ENGINES[self] = kept[:3] + (stamp, self._kept_prediction(engine, kept[2], stamp))

    def _kept_prediction(self, engine, lease, stamp):
        """The kept CPU engine's prediction in one call (_cpu.KeptPredictionF32/F64, see
        _kept_pass) for the stamped state, or None where every call must take the Python
        path: a subclass (its overrides), a model not on the CPU by its device, fitted with
        feature names, whose width is not its layout's. Its stamp adds what the prediction's
        checks and decoding read: the device, the fitted width and, for a classifier, its
        classes and outputs."""
        if type(self) not in (MLPClassifier, MLPRegressor):
            return None  # (a subclass may override what the Python path calls)
        state = self.__dict__
        device = state.get("device")
        extra = ("device", "n_features_in_")
        if device == "auto" and state.get("_auto_device") == "cpu":
            extra += ("_auto_device",)
        elif device != "cpu":
            return None
        labels = 0  # (the classes need the Python path)
        if isinstance(self, ClassifierMixin):
            extra += ("classes_", "n_outputs_")
            if state.get("out_activation_") == "softmax":
                labels = 1  # the largest output's
            elif state.get("n_outputs_") == 1 and len(state.get("classes_", ())) == 2:
                labels = 2  # the one output above 0.5
        names, objects, threads = stamp
        if (not all(name in state for name in extra) or "feature_names_in_" in state
                or state["n_features_in_"] != self._layout.units[0]):
            return None
        cls = _cpu.KeptPredictionF32 if isinstance(engine, _cpu.TrainerF32) else _cpu.KeptPredictionF64
        return cls(type(self), engine, names + extra,
                   (*objects[:len(names)], *(state[name] for name in extra), *objects[len(names):]),
                   2, 0 if threads is None else threads, _engine._usable_cpus(), lease, objects[2],
                   labels, _KEPT_ENGINE_ROWS)

    def _kept_pass(self, X, labels=False):
        """The network's outputs for X (float64), or with labels=True the index in classes_
        of each row's class, from the kept CPU engine in one call while the estimator's class
        and state are the ones it was stamped with and X is a float ndarray of at most
        _KEPT_ENGINE_ROWS rows that needs no conversion (what _forward_pass_fast's checks
        would pass), the outputs all finite; else None, and the caller takes the Python path.
        A one-row prediction of Fashion-MNIST's network spent 4.4 us of 19.7 in Python around
        the pass (bench/RESULTS.md)."""
        try:
            kept = _KEPT_ENGINES.get(self)
        except TypeError:  # an unhashable estimator: no keeping
            return None
        if kept is None or kept[4] is None:
            return None
        return kept[4](self, X, labels)

    def _stamped_engine(self):
        """(engine, params, lease) of the kept CPU engine when the estimator still holds every
        object of its stamp (compared by identity: an attribute set again, even to an equal
        value, goes through the key; so does a weight array replaced in its list), the
        default thread count is the same and no other thread uses the engine; else None.
        A lookup building the key took 2.8-3.0 us, one checking the stamp in Python 2.0-2.5,
        this one, the check in the compiled module (_cpu._same_objects: 0.15 us), 1.1-1.2
        (bench/RESULTS.md)."""
        try:
            kept = _KEPT_ENGINES.get(self)
        except TypeError:  # an unhashable estimator: no keeping
            return None
        if kept is None or kept[3] is None:
            return None
        names, objects, threads = kept[3]
        if not _cpu._same_objects(self.__dict__, names, objects, 2):
            return None
        if threads is not None and _engine.default_threads() != threads:
            return None
        if not kept[2].acquire(blocking=False):
            return None
        return kept[1], objects[2], kept[2]

    def _engine_key(self, units, device, dtype, training=False):
        """What a kept engine was built for: it serves a call while this is the estimator's."""
        loss, out_activation, options = self._engine_head()
        param = ACTIVATIONS[self.activation]["param"]
        # (a CUDA engine belongs to its module, the simulator's or the GPU's, and to the
        # device current when it was built; it runs no CPU threads)
        if device == "cuda":
            module = _engine._cuda_module()
            where = (module.__name__, module.current_device())
            threads = None
        else:
            where = device
            threads = _engine.default_threads() if self.n_threads is None else self.n_threads
        rates = self._dropout_rates(len(units) - 2) if training else None
        return (where, dtype, tuple(units), self.activation,
                None if param is None else getattr(self, param), loss, out_activation,
                tuple(sorted(options.items())), threads,
                None if rates is None else tuple(np.broadcast_to(rates, len(units) - 2)))

    def _keep_for_prediction(self, engine):
        """A fit's CUDA engine becomes the estimator's prediction engine: it frees what only
        training needs and keeps the fitted parameters on the device, so the first prediction
        builds no engine and uploads no parameter (dropout does not act in predictions)."""
        module = _engine._cuda_module()
        if engine.device != module.current_device():
            return  # (kept engines are found by the current device)
        engine.end_training()
        key = self._engine_key(self._layout.units, "cuda", self._params.dtype.type)
        try:
            _KEPT_ENGINES[self] = (key, engine, threading.Lock(), None, None)
        except TypeError:  # an unhashable estimator: no keeping
            pass

    def _kept_engine(self, table, units, device, dtype, training=False):
        """(engine, lease): the engine `table` keeps for this estimator while the
        configuration it was built for is the estimator's, else a new one (kept when the
        table's is not in use), and the lock to release after use (None: not kept)."""
        key = self._engine_key(units, device, dtype, training)
        try:
            kept = table.get(self)
        except TypeError:  # an unhashable estimator (a subclass with __eq__ only): no keeping
            return self._engine_for(units, device, dtype, training), None
        if kept is not None and kept[0] == key and kept[2].acquire(blocking=False):
            return kept[1], kept[2]
        lease = threading.Lock()
        lease.acquire()
        engine = self._engine_for(units, device, dtype, training)
        if kept is None or kept[0] != key or not kept[2].locked():
            table[self] = (key, engine, lease, None, None)
        return engine, lease

    def _plain_input(self, X, max_checked=4096):
        """Whether X needs nothing of scikit-learn's validation: a small 2-D float ndarray of
        the fitted width, all finite and within the model's float range, for a model fitted
        without feature names. Anything else goes through validate_data, with its
        conversions, errors and warnings. max_checked=None: any size, and the values are not
        looked at (the engine checks them)."""
        if not (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype in _FLOAT_DTYPES
            and X.size > 0
            and (max_checked is None or X.size <= max_checked)
            and X.shape[1] == self.n_features_in_
            and not hasattr(self, "feature_names_in_")
        ):
            return False
        if max_checked is None:
            return True
        if X.dtype == _F64 and self.coefs_[0].dtype == _F32:
            return bool(np.abs(X).max() <= FLOAT32_MAX)  # (False for NaN and infinity)
        return bool(np.isfinite(X).all())

    def _score_on_host(self, X, y, sample_weight, metric):
        """metric(y, predict(X)) as scikit-learn's score computes it, with device arrays (X,
        y, the predictions, the weights) brought to the host where its metrics run."""
        to_host = _engine.to_host
        return metric(to_host(y), to_host(self.predict(X)), sample_weight=to_host(sample_weight))

    def _score_with_function(self, X, y, sample_weight, score_function):
        """Private score method without input validation."""
        # Input validation would remove feature names, so we disable it
        return self._score_predictions(
            _engine.to_host(self._predict(X, check_input=False)), y, sample_weight,
            score_function,
        )

    def _score_outputs(self, outputs, x_dtype, y, sample_weight):
        """_score from the network's outputs for an X of `x_dtype`, computed elsewhere (early
        stopping's validation by the training engine)."""
        return self._score_predictions(
            self._outputs_to_predictions(outputs, x_dtype), y, sample_weight,
            self._score_function,
        )

    @staticmethod
    def _score_predictions(y_pred, y, sample_weight, score_function):
        """score_function(y, y_pred), or NaN when the predictions are not all finite."""
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan

        return score_function(y, y_pred, sample_weight=sample_weight)

    # ---- scikit-learn protocol ----------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_COMMON_PARAMS_DOC = """
    hidden_layer_sizes : array-like of shape(n_layers - 2,), default=(100,)
        The ith element represents the number of neurons in the ith hidden layer.

    activation : {'identity', 'logistic', 'tanh', 'relu', 'softplus', 'selu', 'leaky_relu', \
            'elu', 'gelu', 'gelu_tanh', 'silu', 'heaviside', 'sign'}, default='relu'
        Activation function for the hidden layer: 'identity' f(x) = x, 'logistic'
        f(x) = 1 / (1 + exp(-x)), 'tanh' f(x) = tanh(x), 'relu' f(x) = max(0, x), and beyond
        scikit-learn, as PyTorch defines them: 'softplus' f(x) = log(1 + exp(x)), 'selu'
        f(x) = scale * (x if x > 0 else alpha * (exp(x) - 1)), 'leaky_relu' f(x) = x if x > 0
        else negative_slope * x, 'elu' f(x) = x if x > 0 else elu_alpha * (exp(x) - 1), 'gelu'
        f(x) = x * Phi(x) (the exact form), 'gelu_tanh' (its tanh approximation), 'silu'
        f(x) = x / (1 + exp(-x)). The threshold units 'heaviside' (1 for x >= 0, else 0) and
        'sign' (-1, 0, 1) have no useful gradient: they predict with weights set by hand
        (`set_weights`), and fitting them raises.

    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        The solver for weight optimization: 'lbfgs' (quasi-Newton, scipy's L-BFGS-B on the
        full-batch loss and gradient computed by the engine), 'sgd' (stochastic gradient
        descent) or 'adam' (Kingma and Ba's stochastic optimizer).

    alpha : float, default=0.0001
        Strength of the L2 regularization term. The L2 regularization term is divided by the
        sample size when added to the loss.

    batch_size : int, default='auto'
        Size of minibatches for stochastic optimizers. If the solver is 'lbfgs', no
        minibatches are used. When set to "auto", `batch_size=min(200, n_samples)`.

    learning_rate : {'constant', 'invscaling', 'adaptive', 'cosine', 'exponential', \
            'onecycle', 'plateau'}, default='constant'
        Learning rate schedule for weight updates. scikit-learn's three apply to 'sgd' only
        (as in scikit-learn): 'constant' keeps `learning_rate_init`; 'invscaling' uses
        `learning_rate_init / pow(t, power_t)`; 'adaptive' divides the rate by 5 each time
        two consecutive epochs fail to improve the training loss (or the validation score
        with `early_stopping`) by `tol`. Beyond scikit-learn, for 'sgd' and 'adam', per
        optimizer step, as PyTorch's schedulers compute them: 'cosine' anneals from
        `learning_rate_init` to `learning_rate_min` over `max_iter` epochs
        (``CosineAnnealingLR``); 'exponential' multiplies the rate by `learning_rate_gamma`
        every epoch (``ExponentialLR``); 'onecycle' rises from `learning_rate_init` / 25 to
        `learning_rate_init` over the first 30% of `max_iter` epochs and falls to
        `learning_rate_init` / 25e4 (``OneCycleLR`` with its defaults, without its momentum
        cycle); 'plateau' multiplies the rate by `learning_rate_factor` when the validation
        loss (the training loss without `early_stopping`) has not improved by `tol` for
        more than `learning_rate_patience` epochs (``ReduceLROnPlateau``); as with 'adaptive',
        the `n_iter_no_change` rule then stops training only once the rate is at its floor
        (`learning_rate_min`, at least 1e-6). With 'adam' the schedule sets the step's base
        rate and Adam's bias correction applies on top. The rates are computed per epoch and
        handed to the native epoch, one per mini-batch. Every `fit` starts the schedule anew
        (with `warm_start` too, whose optimizer restarts as in scikit-learn); `partial_fit`
        continues it, its horizon being `max_iter` epochs of the batches of each call.

    learning_rate_init : float, default=0.001
        The initial learning rate ('sgd' and 'adam').

    power_t : float, default=0.5
        The exponent for inverse scaling learning rate ('sgd' with 'invscaling').

    learning_rate_warmup : int, default=0
        Number of optimizer steps (mini-batches) of linear warm-up, with any schedule and
        both stochastic solvers: step s (from 0) takes (s + 1) / `learning_rate_warmup` of
        the schedule's rate (fusedmlp's own parameter).

    learning_rate_min : float, default=0.0
        The rate 'cosine' ends at and the floor of 'plateau' (PyTorch's `eta_min`,
        `min_lr`).

    learning_rate_gamma : float, default=0.95
        The per-epoch factor of 'exponential', in (0, 1].

    learning_rate_factor : float, default=0.1
        The factor 'plateau' multiplies the rate by, in (0, 1).

    learning_rate_patience : int, default=10
        The number of epochs without improvement 'plateau' waits before reducing the rate.

    max_iter : int, default=200
        Maximum number of iterations: epochs for the stochastic solvers, iterations for
        'lbfgs'.

    shuffle : bool, default=True
        Whether to shuffle samples in each iteration ('sgd' and 'adam').

    random_state : int, RandomState instance, default=None
        Determines the weight initialisation, the train-validation split of early stopping
        and the batch order. With `dtype=float64` the same value gives scikit-learn's
        numbers.

    tol : float, default=1e-4
        Tolerance for the optimization: training stops (or, with 'adaptive', the rate
        drops) when the loss or score does not improve by at least `tol` for
        `n_iter_no_change` consecutive iterations.

    verbose : bool, default=False
        Whether to print progress messages to stdout.

    warm_start : bool, default=False
        When set to True, reuse the solution of the previous call to fit as initialization.

    momentum : float, default=0.9
        Momentum for gradient descent update, in [0, 1] ('sgd').

    nesterovs_momentum : bool, default=True
        Whether to use Nesterov's momentum ('sgd' with momentum > 0).

    early_stopping : bool, default=False
        Whether to set aside `validation_fraction` of the training data (stratified for
        single-output classification) and stop when the validation score does not improve
        by `tol` for `n_iter_no_change` epochs; the best weights are restored.

    validation_fraction : float, default=0.1
        The proportion of training data to set aside as validation set for early stopping.

    beta_1 : float, default=0.9
        Exponential decay rate for the first moment estimates in adam, in [0, 1).

    beta_2 : float, default=0.999
        Exponential decay rate for the second moment estimates in adam, in [0, 1).

    epsilon : float, default=1e-8
        Value for numerical stability in adam.

    n_iter_no_change : int, default=10
        Maximum number of epochs to not meet `tol` improvement ('sgd' and 'adam').

    max_fun : int, default=15000
        Maximum number of loss function calls ('lbfgs').

    dtype : {'float32', 'float64'} or numpy float type, default='float32'
        Compute precision of training and prediction (fusedmlp's own parameter). float32
        is about twice as fast and trains as well, as in deep-learning libraries; float64
        with the same `random_state` reproduces scikit-learn's numbers. The input is read
        in its own float type and converted batch by batch, not copied as a whole (except,
        for training, an X of at most 64 MiB whose rows are not contiguous, such as a
        column-ordered one: its rows are read in shuffled order).

    n_threads : int, default=None
        Number of CPU threads (fusedmlp's own parameter). None uses OpenMP's current limit,
        which follows `OMP_NUM_THREADS` and threadpoolctl.

    device : {'cpu', 'cuda', 'auto'}, default='cpu'
        Where training and prediction run (fusedmlp's own parameter). 'auto' picks 'cuda'
        when `fusedmlp.cuda_available()` and the training call is large enough to gain from
        it (an estimated 20 ms of CPU work or more: three times its rows times the network's
        weights times `max_iter`; `partial_fit` decides at its first call, for one epoch);
        validation and predictions run where the model was last trained. Device arrays always stay on the GPU. Fitted attributes are numpy
        arrays either way.

    negative_slope : float, default=0.01
        The slope of 'leaky_relu' below 0 (PyTorch's name); >= 0. Other activations ignore it.

    elu_alpha : float, default=1.0
        The saturation value of 'elu' below 0 (PyTorch's `alpha`; `alpha` here is the L2
        strength); > 0. Other activations ignore it.

    dropout : float or array-like of shape (n_layers - 2,), default=0.0
        The rate at which hidden units are dropped in training, one for every hidden layer or
        one per hidden layer, each in [0, 1) (fusedmlp's own parameter). Inverted dropout:
        the units kept are scaled by 1 / (1 - rate), so prediction uses the network as it is.
        The masks depend on `random_state`, the epoch, the batch, the layer, the row and the
        unit only: not on the thread count or the device. Not with solver='lbfgs'.
"""

_COMMON_ATTRIBUTES_DOC = """
    loss_ : float
        The current loss computed with the loss function.

    best_loss_ : float or None
        The minimum loss reached by the solver throughout fitting; None with
        `early_stopping=True` (see `best_validation_score_`). Stochastic solvers only.

    loss_curve_ : list of shape (`n_iter_`,)
        The loss at the end of each iteration. Stochastic solvers only.

    validation_scores_ : list of shape (`n_iter_`,) or None
        The score on the held-out validation set at each iteration, with
        `early_stopping=True`; otherwise None.

    best_validation_score_ : float or None
        The best validation score, with `early_stopping=True`; otherwise None.

    validation_loss_curve_ : list of shape (`n_iter_`,) or None
        The training objective (loss and L2 term, without dropout) on the validation set
        (`X_val`, or the `validation_fraction` split) at each iteration, with
        `early_stopping=True`; otherwise None.

    history_ : dict of lists
        Per epoch (per iteration with 'lbfgs'), as Keras's ``History.history``: 'loss' (the
        training loss, as `loss_curve_`), 'learning_rate' (the rate of the epoch's last step,
        before Adam's bias correction), 'epoch_time' (seconds), and with early stopping
        'val_loss' and 'val_score'. Reset by `fit`, extended by `partial_fit` and by `fit`
        with `warm_start=True`; ``pandas.DataFrame(history_).plot()`` draws the curves.

    t_ : int
        The number of training samples seen by the solver during fitting.

    coefs_ : list of shape (n_layers - 1,)
        The ith element is the weight matrix of layer i, of shape (fan_in, fan_out), in the
        compute dtype. The arrays are views of one flat parameter buffer; assigning new
        arrays is allowed and takes effect on the next call.

    intercepts_ : list of shape (n_layers - 1,)
        The ith element is the bias vector of layer i + 1.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when `X` has string feature names.

    n_iter_ : int
        The number of iterations the solver has run.

    n_layers_ : int
        Number of layers.

    n_outputs_ : int
        Number of outputs.

    out_activation_ : str
        Name of the output activation function.
"""


class MLPClassifier(ClassifierMixin, BaseMultilayerPerceptron):
    __doc__ = (
        """Multi-layer Perceptron classifier, a drop-in for scikit-learn's MLPClassifier.

    Optimizes the log-loss with L-BFGS, SGD or Adam. Training runs one native call per
    epoch on fusedmlp's fused engines; parameters, attributes and behaviour are
    scikit-learn's, plus the keyword-only `dtype`, `n_threads` and `device`.

    Parameters
    ----------"""
        + _COMMON_PARAMS_DOC
        + """
    label_smoothing : float, default=0.0
        Trains on targets moved toward the uniform distribution, in [0, 1]: PyTorch's
        (1 - e) y + e / n_classes for the softmax output (multiclass), (1 - e) y + e / 2 for
        logistic outputs (binary and multilabel, as Keras). The loss reported is that of the
        smoothed targets; validation scores use the labels as given.

    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, read as scikit-learn's SGDClassifier reads them: {label:
        weight} (other classes 1), or 'balanced', n_samples / (n_classes * count of the class)
        in this fit's y. Multiplied with `sample_weight`; training rows only (early stopping
        scores with the given weights). 'balanced' is not available in `partial_fit`, and no
        class weights for multilabel targets.

    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels for each output.
"""
        + _COMMON_ATTRIBUTES_DOC
        + """
    Examples
    --------
    >>> from fusedmlp import MLPClassifier
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=100, random_state=1)
    >>> clf = MLPClassifier(random_state=1, max_iter=300).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """
    )

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype="float32",
        n_threads=None,
        device="cpu",
        learning_rate_warmup=0,
        learning_rate_min=0.0,
        learning_rate_gamma=0.95,
        learning_rate_factor=0.1,
        learning_rate_patience=10,
        negative_slope=0.01,
        elu_alpha=1.0,
        dropout=0.0,
        label_smoothing=0.0,
        class_weight=None,
    ):
        self.learning_rate_warmup = learning_rate_warmup
        self.learning_rate_min = learning_rate_min
        self.learning_rate_gamma = learning_rate_gamma
        self.learning_rate_factor = learning_rate_factor
        self.learning_rate_patience = learning_rate_patience
        self.negative_slope = negative_slope
        self.elu_alpha = elu_alpha
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss="log_loss",
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            dtype=dtype,
            n_threads=n_threads,
            device=device,
        )

    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "label_smoothing": [Interval(Real, 0, 1, closed="both")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=_input_dtypes(self._compute_dtype()),
            reset=reset,
        )
        return X, self._validate_targets(y, incremental)

    def _smoothed(self, Y):
        """PyTorch's label smoothing for softmax outputs, (1 - e) y + e / K, and its binary
        analogue for logistic outputs (each output a two-class problem, as Keras's
        BinaryCrossentropy): (1 - e) y + e / 2."""
        e = float(self.label_smoothing)
        if e == 0.0:
            return Y
        k = Y.shape[1] if self.out_activation_ == "softmax" else 2
        return (Y * (1.0 - e) + e / k).astype(Y.dtype, copy=False)

    def _training_targets(self, Y, sample_weight, incremental):
        Y_train = self._smoothed(Y)
        if self.class_weight is None:
            return Y_train, sample_weight
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multilabel targets.")
        if incremental and self.class_weight == "balanced":
            # scikit-learn's SGDClassifier.partial_fit says the same
            raise ValueError(
                "class_weight 'balanced' is not supported for partial_fit. In order to use "
                "'balanced' weights, use compute_class_weight('balanced', classes=classes, "
                "y=y). In place of y you can use a large enough sample of the full training "
                "set target to properly estimate the class frequency distributions. Pass the "
                "resulting weights as the class_weight parameter."
            )
        index = Y.argmax(axis=1) if Y.shape[1] > 1 else (Y[:, 0] > 0.5).astype(np.intp)
        if len(self.classes_) == 1:
            index = np.zeros(Y.shape[0], dtype=np.intp)
        labels = self.classes_.take(index)
        weights = compute_class_weight(self.class_weight, classes=self.classes_, y=labels)
        per_sample = weights[index]
        if sample_weight is not None:
            per_sample = per_sample * sample_weight
        return Y_train, per_sample

    def _validation_targets(self, y_val, dtype):
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        unknown = np.setdiff1d(unique_labels(y_val), self.classes_)
        if len(unknown):
            raise ValueError(
                f"y_val has classes not in the training data's classes {self.classes_}: "
                f"{unknown}."
            )
        Y_val = self._label_binarizer.transform(y_val).astype(dtype)
        return y_val, self._smoothed(Y_val)

    def _validate_targets(self, y, incremental):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)

        # incremental warm_start classes_ def  action
        #    0            0         0        define classes_
        #    0            1         0        define classes_
        #    0            0         1        redefine classes_
        #    0            1         1        check compat warm_start
        #    1            1         1        check compat warm_start
        #    1            0         1        check compat last fit
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )

        y = self._label_binarizer.transform(y).astype(bool)
        return y

    def set_weights(self, coefs, intercepts, *, classes):
        """Make this classifier the network with these weights, without training.

        For networks designed by hand, such as the textbook's threshold-unit XOR network
        (``activation="heaviside"``, which gradients cannot train), or weights trained
        elsewhere. As Keras's ``set_weights``; ``fit`` afterwards starts over (or continues
        from these weights with ``warm_start=True``).

        Parameters
        ----------
        coefs : list of array-like, coefs[i] of shape (units i, units i + 1)
            The weight matrices, as ``coefs_`` holds them.

        intercepts : list of array-like, intercepts[i] of shape (units i + 1,)
            The bias vectors, as ``intercepts_`` holds them.

        classes : array-like of shape (n_classes,)
            The class labels, sorted into ``classes_`` as scikit-learn sorts them. Two
            classes: one output unit (logistic; ``classes_[1]`` when its output is above 0.5,
            that is when its input is above 0). More: one softmax unit per class.

        Returns
        -------
        self : object
        """
        classes = np.asarray(classes)
        if classes.ndim != 1 or classes.shape[0] < 2:
            raise ValueError("classes must list at least two class labels.")
        binarizer = LabelBinarizer().fit(classes)
        n_classes = len(binarizer.classes_)
        self._set_weights(coefs, intercepts, 1 if n_classes == 2 else n_classes)
        self._label_binarizer = binarizer
        self.classes_ = binarizer.classes_
        self.out_activation_ = "logistic" if n_classes == 2 else "softmax"
        return self

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray, shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        classes = self._kept_pass(X, labels=True)
        if classes is not None:
            return self.classes_.take(classes)
        self._check_fitted()
        return self._predict(X)

    def _predict(self, X, check_input=True):
        return self._outputs_to_predictions(
            self._forward_pass_fast(X, check_input=check_input, labels=True)
        )

    def _outputs_to_predictions(self, y_pred, x_dtype=None):
        """Class labels for the network's outputs (output activation applied; any float
        dtype: the decisions do not depend on it)."""
        if type(y_pred) is _ClassIndex:
            return self.classes_.take(y_pred.index)
        if type(y_pred) is not np.ndarray and _engine.is_device_array(y_pred):
            return _engine.decode_labels_on_device(self, y_pred)
        # LabelBinarizer.inverse_transform's decisions, without its validation: the most
        # probable class, or the positive class above probability 0.5
        if self.out_activation_ == "softmax":
            return self.classes_.take(y_pred.argmax(axis=1))
        if self.n_outputs_ == 1 and len(self.classes_) == 2:
            return self.classes_.take(y_pred.ravel() > 0.5)  # (False, True: 0, 1)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def score(self, X, y, sample_weight=None):
        """Return the mean accuracy on the given test data and labels.

        scikit-learn's, also for arrays on a CUDA device: the predictions for such an X
        (and such a y) are compared on the host, where scikit-learn's metrics run.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True labels for `X`.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Mean accuracy of ``self.predict(X)`` w.r.t. `y`.
        """
        return self._score_on_host(X, y, sample_weight, accuracy_score)

    _score_function = staticmethod(accuracy_score)

    def _score(self, X, y, sample_weight=None):
        return super()._score_with_function(
            X, y, sample_weight=sample_weight, score_function=self._score_function
        )

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : array-like of shape (n_samples,)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required on the first call.

        Returns
        -------
        self : object
            Trained MLP model.
        """
        check_sparse_structure(X)
        check_sparse_structure(y, "y")
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)

        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """Return the log of probability estimates.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            `log(predict_proba(X))`.
        """
        y_prob = self.predict_proba(X)
        if _engine.is_device_array(y_prob):
            return _engine.namespace(y_prob).log(y_prob)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The predicted probability of each class, in the order of `classes_`.
        """
        self._check_fitted()
        y_pred = self._forward_pass_fast(X, cast=True)
        if type(y_pred) is not np.ndarray and _engine.is_device_array(y_pred):
            xp = _engine.namespace(y_pred)
            if self.n_outputs_ == 1:
                y_pred = xp.reshape(y_pred, (-1,))
                return xp.stack([1 - y_pred, y_pred], axis=1)
            return y_pred

        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()

        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMultilayerPerceptron):
    __doc__ = (
        """Multi-layer Perceptron regressor, a drop-in for scikit-learn's MLPRegressor.

    Optimizes the half squared error, the half Poisson deviance (scikit-learn's losses), or
    the absolute error, Huber's loss or the quantile (pinball) loss, with L-BFGS, SGD or Adam,
    one native call per epoch on fusedmlp's fused engines. The output layer can have an
    activation (`out_activation`), e.g. softplus for a positive target.

    Parameters
    ----------
    loss : {'squared_error', 'poisson', 'absolute_error', 'huber', 'quantile'}, \
            default='squared_error'
        The loss. 'squared_error': half the squared error (scikit-learn's). 'poisson': half
        the Poisson deviance, with an exponential output by default (log link); needs
        `y >= 0`. 'absolute_error': the mean absolute error. 'huber': PyTorch's HuberLoss,
        quadratic within `huber_delta` of the target and linear beyond, robust to outliers.
        'quantile': the pinball loss, whose minimiser is the `quantile` of the target. The
        last three are averaged over samples and outputs (PyTorch's "mean").
"""
        + _COMMON_PARAMS_DOC
        + """
    out_activation : {'identity', 'relu', 'softplus', 'selu', 'logistic', 'tanh', 'gelu', \
            'gelu_tanh', 'silu'}, default=None
        The output layer's activation (fusedmlp's own parameter). None: the loss's own,
        identity, or exp for 'poisson' (scikit-learn's). 'softplus' or 'relu' keep predictions
        non-negative, 'logistic' in (0, 1), 'tanh' in (-1, 1). With 'poisson' the output
        must be positive: exp (None), 'softplus' or 'logistic'.

    huber_delta : float, default=1.0
        Where Huber's loss turns from quadratic to linear (loss='huber'); > 0.

    quantile : float, default=0.5
        The quantile the model predicts (loss='quantile'), in (0, 1).

    Attributes
    ----------"""
        + _COMMON_ATTRIBUTES_DOC
        + """
    Notes
    -----
    `partial_fit` is available for the stochastic solvers only. scikit-learn 1.9 also offers
    it with solver='lbfgs', where it silently runs a whole L-BFGS fit; here, as for
    MLPClassifier, it raises AttributeError.

    Examples
    --------
    >>> from fusedmlp import MLPRegressor
    >>> from sklearn.datasets import make_regression
    >>> X, y = make_regression(n_samples=200, n_features=20, random_state=1)
    >>> regr = MLPRegressor(random_state=1, max_iter=2000, tol=0.1).fit(X, y)
    >>> regr.predict(X[:2]).shape
    (2,)
    """
    )

    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "loss": [StrOptions(set(REGRESSION_LOSSES))],
        "out_activation": [StrOptions(set(OUTPUT_ACTIVATIONS)), None],
        "huber_delta": [Interval(Real, 0, None, closed="neither")],
        "quantile": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype="float32",
        n_threads=None,
        device="cpu",
        out_activation=None,
        huber_delta=1.0,
        quantile=0.5,
        learning_rate_warmup=0,
        learning_rate_min=0.0,
        learning_rate_gamma=0.95,
        learning_rate_factor=0.1,
        learning_rate_patience=10,
        negative_slope=0.01,
        elu_alpha=1.0,
        dropout=0.0,
    ):
        self.learning_rate_warmup = learning_rate_warmup
        self.learning_rate_min = learning_rate_min
        self.learning_rate_gamma = learning_rate_gamma
        self.learning_rate_factor = learning_rate_factor
        self.learning_rate_patience = learning_rate_patience
        self.negative_slope = negative_slope
        self.elu_alpha = elu_alpha
        self.dropout = dropout
        self.out_activation = out_activation
        self.huber_delta = huber_delta
        self.quantile = quantile
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss=loss,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            dtype=dtype,
            n_threads=n_threads,
            device=device,
        )

    def _regression_output(self):
        """The output activation: out_activation, or the loss's own (exp for the Poisson
        loss, scikit-learn's log link; identity otherwise)."""
        out = self.out_activation
        if out is None:
            return LOSSES[self.loss]["canonical_output"]
        if LOSSES[self.loss]["positive"] and not ACTIVATIONS[out]["positive"]:
            positive = sorted(n for n in OUTPUT_ACTIVATIONS if ACTIVATIONS[n]["positive"])
            raise ValueError(
                f"loss={self.loss!r} needs positive outputs: out_activation must be None "
                f"(the exponential) or one of {positive}; got {out!r}."
            )
        return out

    def set_weights(self, coefs, intercepts):
        """Make this regressor the network with these weights, without training.

        As Keras's ``set_weights``: for networks designed by hand (threshold units such as
        ``activation="heaviside"``, which gradients cannot train) or weights trained
        elsewhere. The output activation is ``out_activation`` (or the loss's own).

        Parameters
        ----------
        coefs : list of array-like, coefs[i] of shape (units i, units i + 1)
            The weight matrices, as ``coefs_`` holds them.

        intercepts : list of array-like, intercepts[i] of shape (units i + 1,)
            The bias vectors, as ``intercepts_`` holds them.

        Returns
        -------
        self : object
        """
        out_activation = self._regression_output()
        self._set_weights(coefs, intercepts)
        self.out_activation_ = out_activation
        return self

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        self._check_fitted()
        return self._predict(X)

    def _predict(self, X, check_input=True):
        return self._outputs_to_predictions(
            self._forward_pass_fast(X, check_input=check_input, cast=True)
        )

    def _outputs_to_predictions(self, y_pred, x_dtype=None):
        """Predictions for the network's outputs: in scikit-learn's dtype for an X of
        `x_dtype` (None: already cast), one column as a 1-D array."""
        if x_dtype is not None:
            y_pred = y_pred.astype(self._prediction_dtype(x_dtype), copy=False)
        if y_pred.shape[1] == 1:
            if _engine.is_device_array(y_pred):
                return _engine.namespace(y_pred).reshape(y_pred, (-1,))
            return y_pred.ravel()
        return y_pred

    def score(self, X, y, sample_weight=None):
        """Return the coefficient of determination of the prediction.

        scikit-learn's, also for arrays on a CUDA device: the predictions for such an X
        (and such a y) are compared on the host, where scikit-learn's metrics run.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test samples.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True values for `X`.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            :math:`R^2` of ``self.predict(X)`` w.r.t. `y`.
        """
        return self._score_on_host(X, y, sample_weight, r2_score)

    _score_function = staticmethod(r2_score)

    def _score(self, X, y, sample_weight=None):
        return super()._score_with_function(
            X, y, sample_weight=sample_weight, score_function=self._score_function
        )

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=_input_dtypes(self._compute_dtype()),
            reset=reset,
        )
        return X, self._validate_targets(y, incremental)

    def _validation_targets(self, y_val, dtype):
        y_val = self._validate_targets(y_val, False)
        if y_val.dtype.kind in _NOT_NUMERIC:
            raise TypeError(f"y_val has dtype {y_val.dtype}; MLPRegressor needs numeric targets.")
        Y_val = np.ascontiguousarray(y_val.reshape(len(y_val), -1), dtype=dtype)
        if Y_val.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y_val has {Y_val.shape[1]} output(s), the training targets {self.n_outputs_}."
            )
        return Y_val, Y_val

    def _validate_targets(self, y, incremental):
        y = np.asarray(y)
        if y.dtype.kind in _NOT_NUMERIC:
            return y  # rejected by _fit, after the sample weights are checked
        if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
            y = y.astype(np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                "Some value(s) of y are negative which is not allowed for the "
                "Poisson loss."
            )
        return y

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data.

        Available for the stochastic solvers ('sgd', 'adam') only.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : ndarray of shape (n_samples,)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            Trained MLP model.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)




def _explain_float32_overflow(X, error):
    """Raise the float32-range error when X is finite as float64 but overflowed float32."""
    try:
        X64 = check_array(X, accept_sparse=["csr", "csc"], dtype=np.float64,
                          ensure_all_finite=False, ensure_2d=False, allow_nd=True)
    except (ValueError, TypeError):
        return
    data = X64.data if sp.issparse(X64) else X64
    if np.isfinite(data).all():
        check_float32_range(data, "X")  # raises, naming dtype='float64'
        raise error


@functools.lru_cache(maxsize=64)
def _result_type(x_dtype, weight_dtype):
    return np.result_type(x_dtype, weight_dtype)


def _input_dtypes(compute_dtype):
    """Float inputs are kept in their own type; anything else becomes the compute type."""
    return (compute_dtype, np.float64 if compute_dtype == np.float32 else np.float32)
