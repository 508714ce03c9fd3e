"""The epoch driver: the loop between native calls.

One native call trains one epoch (stochastic solvers) or evaluates the loss and gradient
(L-BFGS); what happens between those calls lives here, in scikit-learn's order: the shuffle,
early stopping's split and scores, the stopping rules, the schedules, and the hooks that the
history and callbacks read. The estimators (``_multilayer_perceptron.py``) validate the input,
build the engine and call ``fit_lbfgs`` or ``StochasticTraining(...).run()``.
"""

import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from . import _engine
from ._params import AdamOptimizer, Schedule, SGDOptimizer

try:  # scikit-learn >= 1.9: the callback protocol (sklearn.callback)
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # pragma: no cover - exercised with older scikit-learn
    CallbackSupportMixin = None

try:  # scipy >= 1.15 deprecates iprint; scikit-learn hides the difference
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # pragma: no cover

    def _get_additional_lbfgs_options_dict(key, value):
        return {key: value}


try:
    from sklearn.utils.optimize import _check_optimize_result
except ImportError:  # pragma: no cover

    def _check_optimize_result(solver, result, max_iter=None, extra_warning_msg=None):
        n_iter = min(result.nit, max_iter) if max_iter is not None else result.nit
        if result.status != 0:
            warnings.warn(
                f"{solver} failed to converge after {n_iter} iteration(s) "
                f"(status={result.status}):\n{result.message}\n",
                ConvergenceWarning,
            )
        return n_iter


STOCHASTIC_SOLVERS = ("sgd", "adam")


class CallbackSupportUnavailable:
    """scikit-learn before 1.9 has no callback protocol: set_callbacks says so."""

    def set_callbacks(self, *callbacks):
        import sklearn

        raise RuntimeError(
            "set_callbacks needs scikit-learn's callback API (sklearn.callback), new in "
            f"scikit-learn 1.9; this is scikit-learn {sklearn.__version__}. Upgrade "
            "scikit-learn (pip install 'scikit-learn>=1.9') to use callbacks; everything "
            "else works without them."
        )


CallbackSupport = (CallbackSupportMixin if CallbackSupportMixin is not None
                   else CallbackSupportUnavailable)


class FitHooks:
    """scikit-learn's callback protocol around one fit: the root task, then one subtask per
    epoch (per iteration with L-BFGS). Without callbacks nothing per epoch is built; the
    reconstruction attributes (a ready-to-predict copy of the model) only when a callback's
    hook asks for ``fitted_estimator``."""

    def __init__(self, est, X, y, sample_weight, max_subtasks):
        self.est, self.X, self.y = est, X, y
        self.metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        self.ctx = None
        if CallbackSupportMixin is not None:
            self.ctx = est._init_callback_context(max_subtasks=max_subtasks)
            self.ctx.call_on_fit_task_begin(estimator=est, X=X, y=y, metadata=self.metadata)
        self.active = self.ctx is not None and bool(getattr(est, "_skl_callbacks", None))
        self.task = None

    def _call(self, task, hook):
        return getattr(task, hook)(
            estimator=self.est, X=self.X, y=self.y, metadata=self.metadata,
            reconstruction_attributes=self.est._reconstruction_attributes,
        )

    def begin(self, name):
        if self.active:
            self.task = self.ctx.subcontext(task_name=name)
            self._call(self.task, "call_on_fit_task_begin")

    def end(self):
        """End the current subtask; whether a callback asks to stop."""
        if not self.active or self.task is None:
            return False
        task, self.task = self.task, None
        return bool(self._call(task, "call_on_fit_task_end"))

    def close(self):
        """End the fit's root task (and a subtask that never ran to its end)."""
        if self.task is not None:
            self.task.call_on_fit_task_end(estimator=self.est)
            self.task = None
        if self.ctx is not None:
            self.ctx.call_on_fit_task_end(
                estimator=self.est, X=self.X, y=self.y, metadata=self.metadata,
                reconstruction_attributes={},
            )


def history_append(est, row):
    """One epoch's row of history_, kept rectangular (NaN where a value is missing)."""
    history = est.history_
    n = len(next(iter(history.values()))) if history else 0
    for key in row:
        if key not in history:
            history[key] = [np.nan] * n
    for key, values in history.items():
        values.append(float(row.get(key, np.nan)))


def fit_lbfgs(est, X, Y, sample_weight, engine, hooks):
    """scikit-learn's L-BFGS fit: scipy drives, each evaluation is one native call; each
    iteration is a callback subtask and a row of history_."""
    layout = est._layout
    params = est._params
    grad = np.empty_like(params)
    # the last iterate scipy accepted, and its loss: what Ctrl-C leaves the model at
    accepted = {"x": params[layout.to_sklearn_order].astype(np.float64), "loss": None,
                "n_iter": 0}
    evaluated = {}

    def loss_grad(packed):
        params[layout.to_sklearn_order] = packed
        loss = engine.loss_grad(X, Y, sample_weight, params, float(est.alpha), grad)
        evaluated["x"], evaluated["loss"] = packed, loss
        if accepted["loss"] is None and accepted["n_iter"] == 0:
            accepted["loss"] = loss  # scipy evaluates the starting point first
        return loss, grad[layout.to_sklearn_order].astype(np.float64)

    clock = {"start": time.perf_counter()}

    def iteration_ends(xk):
        accepted["x"] = np.array(xk, dtype=np.float64)
        same = evaluated.get("x") is not None and np.array_equal(evaluated["x"], xk)
        accepted["loss"] = evaluated["loss"] if same else None
        accepted["n_iter"] += 1
        now = time.perf_counter()
        history_append(est, {
            "loss": np.nan if accepted["loss"] is None else accepted["loss"],
            "epoch_time": now - clock["start"],
        })
        clock["start"] = now
        if hooks.active:
            params[layout.to_sklearn_order] = xk  # what the callbacks see: this iterate
            est.n_iter_ = accepted["n_iter"]
            stop = hooks.end()
            hooks.begin("iteration")
            if stop:
                accepted["stopped"] = True
                raise StopIteration  # scipy ends the minimization at this iterate

    hooks.begin("iteration")

    iprint = 1 if (est.verbose is True or est.verbose >= 1) else -1
    try:
        opt_res = scipy.optimize.minimize(
            loss_grad,
            accepted["x"].copy(),
            method="L-BFGS-B",
            jac=True,
            callback=iteration_ends,
            options={
                "maxfun": est.max_fun,
                "maxiter": est.max_iter,
                "gtol": est.tol,
                **_get_additional_lbfgs_options_dict("iprint", iprint),
            },
        )
    except KeyboardInterrupt:
        # As the stochastic solvers (and scikit-learn's) do: keep what was learned
        warnings.warn("Training interrupted by user.")
        params[layout.to_sklearn_order] = accepted["x"]
        est.n_iter_ = accepted["n_iter"]
        # (unknown only when interrupted during the very first evaluation: no pass over
        # the data is started after Ctrl-C)
        est.loss_ = np.nan if accepted["loss"] is None else float(accepted["loss"])
        return
    if accepted.get("stopped"):  # a callback's request: not a failure to converge
        est.n_iter_ = accepted["n_iter"]
        if est.verbose:
            print("A callback asked to stop at iteration %d." % est.n_iter_)
    else:
        est.n_iter_ = _check_optimize_result("lbfgs", opt_res, est.max_iter)
    est.loss_ = float(opt_res.fun)
    params[layout.to_sklearn_order] = opt_res.x


def make_optimizer(est, n_params, dtype):
    if est.solver == "sgd":
        optimizer = SGDOptimizer(
            n_params, dtype, est.learning_rate_init, est.learning_rate, est.momentum,
            est.nesterovs_momentum, est.power_t,
        )
    else:
        optimizer = AdamOptimizer(
            n_params, dtype, est.learning_rate_init, est.beta_1, est.beta_2, est.epsilon
        )
    optimizer.schedule = Schedule(
        est.learning_rate, est.learning_rate_warmup, est.learning_rate_min,
        est.learning_rate_gamma, est.learning_rate_factor, est.learning_rate_patience, est.tol,
    )
    return optimizer


def dropout_key_seed(est):
    """The seed of dropout's masks (0 and no random draw when nothing is dropped)."""
    if est._dropout_rates(len(est.coefs_) - 1) is None:
        return 0
    if getattr(est, "_dropout_seed", None) is None:
        est._dropout_seed = int(est._random_state.randint(np.iinfo(np.int32).max))
    return est._dropout_seed


def validation_function(est, validation, n_params, dtype):
    """params -> (objective, score) on the validation set: the training objective (loss and
    L2 term, no dropout) and the estimator's score, computed by an engine of its own (which
    keeps the validation data). The CPU engine gives both from one forward pass."""
    X_val, y_val, sample_weight_val, Y_val = validation
    units = est._layer_units()
    device = est._device_for(X_val, units)
    engine = est._engine_for(units, device, dtype)
    X_engine = _engine.as_engine_input(X_val, device)
    Y_val = np.ascontiguousarray(Y_val, dtype=dtype)
    weights = None  # (in the compute dtype for the loss; the score takes them as given)
    if sample_weight_val is not None:
        weights = np.ascontiguousarray(sample_weight_val, dtype=dtype)
    alpha = float(est.alpha)
    if hasattr(engine, "loss_and_outputs"):
        x_dtype = _engine.sklearn_float_dtype(X_val)

        def validate(params):
            loss, outputs = engine.loss_and_outputs(X_engine, Y_val, weights, params, alpha)
            if dtype == np.float32 and not np.isfinite(outputs).all():
                est._check_float32_input(X_val)  # (values a float32 model cannot hold: say so)
            score = est._score_outputs(outputs, x_dtype, y_val, sample_weight_val)
            return float(loss), score

        return validate
    grad = np.empty(n_params, dtype=dtype)

    def validate(params):
        loss = float(engine.loss_grad(X_engine, Y_val, weights, params, alpha, grad))
        return loss, est._score(X_val, y_val, sample_weight=sample_weight_val)

    return validate


def shuffled(indices, random_state):
    """sklearn.utils.shuffle(indices, random_state=random_state) for a 1-D index array: the same
    draws (a permutation of arange(n) shuffled in place by the RandomState, then indexing),
    without its input validation, which costs as much again as the draws (0.3 ms per epoch of
    16,512 rows, 3% of a California housing epoch). A RandomState's draws are made by the
    engine, from its bit generator, in numpy's own loop; any other generator is asked to shuffle."""
    bit_generator = getattr(random_state, "_bit_generator", None)
    if type(random_state) is np.random.RandomState and hasattr(bit_generator, "capsule"):
        with bit_generator.lock:
            return _engine.shuffled_indices(np.asarray(indices, dtype=np.int64), bit_generator)
    permutation = np.arange(indices.shape[0])
    random_state.shuffle(permutation)
    return indices[permutation]


def sorted_batches(order, batch_size):
    """The epoch's row order with each mini-batch's rows in increasing order.

    A batch's gradient is a sum over its rows; summing them in one order whatever the
    shuffle makes the result depend only on which rows form the batch, so that `fit` and the
    same number of `partial_fit` calls (whose shuffles differ) give the same weights bit for
    bit when the batches hold the same rows (e.g. full batches), and rows are read from X in
    memory order.
    """
    order = np.array(order, dtype=np.int64)  # a copy: sorted in place below
    full = order.shape[0] // batch_size * batch_size
    order[:full].reshape(-1, batch_size).sort(axis=1)
    order[full:].sort()
    return order


def batch_size_for(est, n_samples, warn=True):
    """scikit-learn's mini-batch size: 'auto' is min(200, n_samples); larger is clipped (with
    scikit-learn's warning unless warn=False)."""
    batch_size = est.batch_size
    if batch_size == "auto":
        return min(200, n_samples)
    if warn and batch_size > n_samples:
        warnings.warn(
            "Got `batch_size` less than 1 or larger than "
            "sample size. It is going to be clipped"
        )
    return int(np.clip(batch_size, 1, n_samples))


def epoch_options(est, batch_size):
    """Every option of the engines' epoch contract (EpochOptions, csrc/include/fusedmlp/
    training.h) but the optimizer's own values (its solver and rate), which override."""
    return dict(
        batch_size=batch_size, alpha=float(est.alpha), momentum=float(est.momentum),
        nesterov=bool(est.nesterovs_momentum), beta_1=float(est.beta_1),
        beta_2=float(est.beta_2), epsilon=float(est.epsilon),
        dropout_seed=dropout_key_seed(est), epoch=0,
    )


@dataclass
class TrainingSet:
    """A fit call's data as the driver reads it: X validated (and as the engine reads it),
    the targets (as validated, as given, and as trained on after label smoothing), the
    sample weights (as given, and as trained on after class weights), the engine (and the
    lock of a kept one), and the user's validation set (or None)."""

    X: object
    X_engine: object
    y: np.ndarray
    y_given: object
    Y_train: np.ndarray
    sample_weight: object
    train_weight: object
    engine: object
    validation: object = None
    lease: object = None  # the kept engine's lock, released after the call


class HostModel:
    """The model being trained as the estimator holds it: the parameters and the optimizer
    state are its numpy arrays, which every epoch hands to the engine (the CPU engine trains
    them in place; the CUDA engine copies them to the device and back)."""

    def __init__(self, training):
        self.training = training
        self.est = est = training.est
        if training.early_stopping:
            self._validate = validation_function(
                est, training.validation, est._params.shape[0], training.Y.dtype
            )

    def epoch(self, order, options):
        t, est = self.training, self.est
        return t.engine.run_epoch(
            t.X_engine, t.Y, t.train_weight, order, est._params, est._optimizer.arrays(),
            options,
        )

    def check_finite(self):
        """scikit-learn's error when a weight is not finite."""
        self.est._check_finite_params(self.training.X)

    def validate(self):
        """(objective, score) on the validation set: the training loss with its L2 term, and
        the estimator's score."""
        return self._validate(self.est._params)

    def keep_best(self):
        self.est._best_params = self.est._params.copy()

    def finish(self):
        """The model is the estimator's arrays again (after the last epoch, or an error)."""

    def restore_best(self):
        self.est._params[:] = self.est._best_params


class DeviceModel(HostModel):
    """The model kept on the device through the call (the CUDA engine): the parameters and
    the optimizer state go up once and come back once, after the last epoch (or an error, an
    interruption, a weight that is not finite); each epoch moves only the row order and the
    batch state. Early stopping's validation runs on the training engine with the resident
    weights, over rows of the X already on the device (or the user's X_val, copied once),
    one forward pass giving both the objective and the outputs that are scored; its snapshot
    of the best weights is a device-to-device copy."""

    def __init__(self, training):
        self.training = training
        self.est = est = training.est
        engine = training.engine
        engine.set_parameters(est._params, est._optimizer.arrays())
        self.resident = True
        if training.early_stopping:
            X_val, _, sample_weight_val, Y_val = training.validation
            dtype = training.Y.dtype
            Y_val = np.ascontiguousarray(Y_val, dtype=dtype)
            if sample_weight_val is not None:
                sample_weight_val = np.ascontiguousarray(sample_weight_val, dtype=dtype)
            if training.val_idx is not None:  # rows of the training X, read in place
                rows = np.ascontiguousarray(training.val_idx, dtype=np.int64)
                engine.set_validation(None, rows, Y_val, sample_weight_val)
            else:
                engine.set_validation(
                    _engine.as_engine_input(X_val, "cuda"), None, Y_val, sample_weight_val
                )
            if np.array_equal(est._best_params, est._params):
                engine.keep_best()  # (a new fit's: a device copy)
            else:  # a warm start's best so far
                engine.set_best(est._best_params)
            self.x_dtype = _engine.sklearn_float_dtype(X_val)

    @staticmethod
    def usable(training):
        """Whether the call can keep its model on the device: a CUDA engine, no callbacks
        (they read the estimator after every epoch), and a dense validation set."""
        if not hasattr(training.engine, "set_parameters") or training.hooks.active:
            return False
        return not (training.early_stopping and sp.issparse(training.validation[0]))

    def epoch(self, order, options):
        t = self.training
        return t.engine.run_epoch(
            t.X_engine, t.Y, t.train_weight, order, None, self.est._optimizer.arrays(), options
        )

    def check_finite(self):
        if not self.training.engine.parameters_finite():
            self.finish()
            super().check_finite()

    def validate(self):
        _, y_val, sample_weight_val, _ = self.training.validation
        loss, outputs = self.training.engine.evaluate(float(self.est.alpha))
        return loss, self.est._score_outputs(outputs, self.x_dtype, y_val, sample_weight_val)

    def keep_best(self):
        self.training.engine.keep_best()

    def finish(self):
        if not self.resident:
            return
        self.resident = False
        est, engine = self.est, self.training.engine
        engine.get_parameters(est._params, est._optimizer.arrays())
        if self.training.early_stopping:
            engine.get_best(est._best_params)

    def restore_best(self):
        super().restore_best()
        self.training.engine.restore_best()  # (the device's parameters too: predictions use them)


class StochasticTraining:
    """One fit or partial_fit call with 'sgd' or 'adam': scikit-learn's ``_fit_stochastic``,
    one native epoch per iteration."""

    def __init__(self, est, data, incremental, hooks):
        self.est = est
        self.hooks = hooks
        X, Y = data.X, data.Y_train
        self.X, self.X_engine, self.y, self.Y = X, data.X_engine, data.y, Y
        self.sample_weight, self.train_weight = data.sample_weight, data.train_weight
        self.engine = data.engine
        self.incremental = incremental
        validation = data.validation
        params = est._params
        if not incremental or not hasattr(est, "_optimizer"):
            est._optimizer = make_optimizer(est, params.shape[0], params.dtype)

        # early_stopping in partial_fit doesn't make sense
        if est.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        self.early_stopping = est.early_stopping
        if self.early_stopping and getattr(est, "_best_params", None) is None:
            est._best_params = params.copy()
        self.train_idx = self.val_idx = None
        self.validation = self._validation_split(validation)
        if self.early_stopping and getattr(est, "validation_loss_curve_", None) is None:
            est.validation_loss_curve_ = []
        if hasattr(self.engine, "load_training_data"):
            # (a CUDA engine kept from an earlier call may hold the same arrays with other values)
            self.engine.load_training_data(self.X_engine, self.Y, self.train_weight)
        self.model = DeviceModel(self) if DeviceModel.usable(self) else HostModel(self)

        n_total = X.shape[0]
        self.n_samples = n_total if self.train_idx is None else self.train_idx.shape[0]
        self.batch_size = batch_size_for(est, self.n_samples)
        self.n_batches = -(-self.n_samples // self.batch_size)
        self.hyper = epoch_options(est, self.batch_size)

    def _validation_split(self, validation):
        """(X_val, y_val, sample_weight_val, Y_val): the user's own validation set, or
        scikit-learn's split of validation_fraction of the rows (all None without early
        stopping)."""
        est, X, Y, y = self.est, self.X, self.Y, self.y
        if not self.early_stopping:
            return None, None, None, None
        if validation is not None:
            return validation
        # Split row indices exactly as scikit-learn splits the arrays (same random draws);
        # training then reads X in place through the indices instead of copying it.
        # (stratified on the binarized labels, as scikit-learn does: its messages name them)
        should_stratify = is_classifier(est) and est.n_outputs_ == 1
        stratify = y if should_stratify else None
        self.train_idx, self.val_idx = train_test_split(
            np.arange(X.shape[0]),
            random_state=est._random_state,
            test_size=est.validation_fraction,
            stratify=stratify,
        )
        val_idx = self.val_idx
        if val_idx.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        X_val = X[val_idx]
        Y_val = Y[val_idx]
        if is_classifier(est):
            # (the labels as given: the targets trained on may be smoothed)
            y_val = est._label_binarizer.inverse_transform(y[val_idx].astype(Y.dtype))
        else:
            y_val = Y_val
        sw = self.sample_weight
        return X_val, y_val, None if sw is None else sw[val_idx], Y_val

    def run(self):
        est = self.est
        params = est._params
        sample_idx = np.arange(self.n_samples, dtype=np.int64)
        self.x_range_checked = False
        try:
            est.n_iter_ = 0
            for _ in range(est.max_iter):
                if est.shuffle:
                    # Only the indices are shuffled, as in scikit-learn (same random draws).
                    sample_idx = shuffled(sample_idx, est._random_state)
                order = sample_idx if self.train_idx is None else self.train_idx[sample_idx]
                self.hooks.begin("epoch")
                self._epoch(sorted_batches(order, self.batch_size))
                if self.hooks.end():
                    if est.verbose:
                        print("A callback asked to stop after iteration %d." % est.n_iter_)
                    break
                if self._stop():
                    break
                if self.incremental:
                    break
                if est.n_iter_ == est.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) "
                        "reached and the optimization hasn't converged yet." % est.max_iter,
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            self.model.finish()

        if self.early_stopping:
            # restore best weights
            self.model.restore_best()

    def _epoch(self, order):
        """One native epoch over `order`, then scikit-learn's bookkeeping of its loss."""
        est, hyper = self.est, self.hyper
        started = time.perf_counter()
        optimizer = est._optimizer
        schedule = optimizer.schedule
        options = {**hyper, **optimizer.hyper()}
        rate = options["learning_rate"]
        if schedule.per_batch:
            rates = schedule.rates(rate, self.n_batches, est.max_iter * self.n_batches)
            options["learning_rates"] = rates
            rate = float(rates[-1])
        options["epoch"] = getattr(est, "_epochs_run", 0)
        result = self.model.epoch(order, options)
        est._epochs_run = options["epoch"] + 1
        if not self.early_stopping:
            # Non-finite weights stay non-finite: stop now with the error scikit-learn
            # raises after its last epoch. With early stopping the best validated weights
            # are restored after the loop, as in scikit-learn.
            self.model.check_finite()

        est.n_iter_ += 1
        est.loss_ = result["accumulated_loss"] / self.n_samples
        if self.early_stopping and not np.isfinite(est.loss_) and not self.x_range_checked:
            est._check_float32_input(self.X)  # (the weights are restored, not checked)
            self.x_range_checked = True

        est.t_ += self.n_samples
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))

        row = {"loss": est.loss_, "learning_rate": rate}
        val_score = None
        if self.early_stopping:
            val_loss, val_score = self.model.validate()
            est.validation_loss_curve_.append(val_loss)
            row["val_loss"] = val_loss
        # update no_improvement_count based on training loss or validation score according
        # to early_stopping
        self._update_no_improvement_count(val_score)
        if self.early_stopping:
            row["val_score"] = est.validation_scores_[-1]

        # for learning rate that needs to be updated at iteration end
        optimizer.iteration_ends(est.t_)
        schedule.epoch_ends(self.n_batches, row.get("val_loss", est.loss_))
        row["epoch_time"] = time.perf_counter() - started
        history_append(est, row)

    def _update_no_improvement_count(self, val_score):
        est = self.est
        if self.early_stopping:
            # the validation score (can be NaN) decides
            est.validation_scores_.append(val_score)

            if est.verbose:
                print("Validation score: %f" % est.validation_scores_[-1])
            # update best parameters
            # use validation_scores_, not loss_curve_
            last_valid_score = est.validation_scores_[-1]

            if last_valid_score < (est.best_validation_score_ + est.tol):
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0

            if last_valid_score > est.best_validation_score_:
                est.best_validation_score_ = last_valid_score
                self.model.keep_best()
        else:
            if est.loss_curve_[-1] > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if est.loss_curve_[-1] < est.best_loss_:
                est.best_loss_ = est.loss_curve_[-1]

    def _stop(self):
        """scikit-learn's stopping rule after an epoch: n_iter_no_change epochs without an
        improvement of tol stop training (or divide the 'adaptive' rate by 5)."""
        est = self.est
        if est._no_improvement_count <= est.n_iter_no_change:
            return False
        # not better than last `n_iter_no_change` iterations by tol: stop or decrease the
        # learning rate
        if self.early_stopping:
            msg = (
                "Validation score did not improve more than "
                "tol=%f for %d consecutive epochs." % (est.tol, est.n_iter_no_change)
            )
        else:
            msg = (
                "Training loss did not improve more than tol=%f"
                " for %d consecutive epochs." % (est.tol, est.n_iter_no_change)
            )
        if est._optimizer.trigger_stopping(msg, est.verbose):
            return True
        est._no_improvement_count = 0
        return False
