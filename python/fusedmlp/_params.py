"""The model's parameters: the flat buffer and its layout, the optimizer state, and the
fitted state as portable arrays and values.

The per-step arithmetic runs in the engines over one flat parameter buffer
(``csrc/include/fusedmlp/optimizer.h``, ``network.h``); what lives here is the layout of that
buffer (``coefs_`` and ``intercepts_`` are views of it), the optimizer state arrays, and what
scikit-learn's ``_stochastic_optimizers`` does between epochs (its schedules and adaptive rule),
kept as numpy arrays so that a fitted estimator pickles, saves, and ``partial_fit`` continues
where it stopped.
"""

import operator

import numpy as np


def layer_units(coefs):
    """The network's layer sizes, inputs to outputs, from its weight matrices."""
    return [int(coefs[0].shape[0])] + [int(c.shape[1]) for c in coefs]


class Layout:
    """Where each layer's weights and biases sit in the flat parameter buffer.

    The buffer holds W0, b0, W1, b1, ... in layer order (the engines' layout); scikit-learn's
    L-BFGS vector holds W0, W1, ..., b0, b1, ...: ``flat[to_sklearn_order]`` is that vector.
    """

    def __init__(self, units):
        self.units = [int(u) for u in units]
        self.coef_slices, self.intercept_slices, self.shapes = [], [], []
        start = 0
        for fan_in, fan_out in zip(self.units[:-1], self.units[1:]):
            self.coef_slices.append(slice(start, start + fan_in * fan_out))
            self.shapes.append((fan_in, fan_out))
            start += fan_in * fan_out
            self.intercept_slices.append(slice(start, start + fan_out))
            start += fan_out
        self.n_params = start
        flat = np.arange(self.n_params)
        self.to_sklearn_order = np.concatenate(
            [flat[s] for s in self.coef_slices] + [flat[s] for s in self.intercept_slices]
        )

    def views(self, params):
        coefs = [params[s].reshape(shape) for s, shape in zip(self.coef_slices, self.shapes)]
        intercepts = [params[s] for s in self.intercept_slices]
        return coefs, intercepts

    def pack(self, coefs, intercepts, dtype):
        """A new flat buffer holding these weight matrices and bias vectors."""
        params = np.empty(self.n_params, dtype=dtype)
        for c, s in zip(coefs, self.coef_slices):
            params[s] = np.asarray(c).ravel()
        for b, s in zip(intercepts, self.intercept_slices):
            params[s] = np.asarray(b).ravel()
        return params


class FlatParameters:
    """The estimators' side of the flat buffer: ``coefs_`` and ``intercepts_`` are views of
    ``_params``, which the engines read and update in place."""

    def _bind_params(self, params, layout=None):
        """Make ``params`` the model's buffer; coefs_ and intercepts_ become views of it."""
        if layout is not None:
            self._layout = layout
        self._params = params
        self.coefs_, self.intercepts_ = self._layout.views(params)
        self._param_views = (list(self.coefs_), list(self.intercepts_))

    def _layer_units(self):
        return layer_units(self.coefs_)

    def _current_params(self, dtype):
        """The flat buffer, rebuilt from coefs_/intercepts_ when they are no longer its views
        (assigned by the user, or unpickled) or are of another dtype. Never modifies self."""
        state = self.__dict__  # (read once: this runs in every prediction)
        params = state.get("_params")
        views = state.get("_param_views")
        if params is not None and views is not None and params.dtype == dtype:
            coefs, intercepts = self.coefs_, self.intercepts_
            if (len(coefs) == len(views[0]) and len(intercepts) == len(views[1])
                    and all(map(operator.is_, coefs, views[0]))
                    and all(map(operator.is_, intercepts, views[1]))):
                return params
        return Layout(self._layer_units()).pack(self.coefs_, self.intercepts_, dtype)

    def _adopt_params(self, dtype):
        """Before training: make sure the buffer and its views are the model's state."""
        params = self._current_params(dtype)
        if params is not getattr(self, "_params", None):
            self._bind_params(params, Layout(self._layer_units()))

    def __getstate__(self):
        # (a copy: object.__getstate__ returns the instance's own __dict__, which pickling,
        # copy.copy and the callbacks' model snapshots must not change)
        state = dict(super().__getstate__())
        # coefs_ and intercepts_ are pickled as arrays; the flat buffer they view is rebuilt
        # from them on the next use, so it is not pickled twice.
        for key in ("_params", "_param_views", "_layout"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "coefs_" in state:
            self._bind_params(self._current_params(self.coefs_[0].dtype.type),
                              Layout(self._layer_units()))

# scikit-learn's learning_rate values (applied by 'sgd' only, as in scikit-learn), and the
# schedules beyond them (applied by 'sgd' and 'adam', per optimizer step)
SKLEARN_SCHEDULES = ("constant", "invscaling", "adaptive")
STEP_SCHEDULES = ("cosine", "exponential", "onecycle", "plateau")


def _annealing_cos(start, end, pct):
    """PyTorch's cosine interpolation from start (pct 0) to end (pct 1)."""
    return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1.0)


class Schedule:
    """The learning rate of each optimizer step, beyond scikit-learn's per-epoch rules.

    The rates are computed here, one per mini-batch, and handed to the native epoch as an
    array: the batch loop never returns to Python. The formulas are PyTorch's (the closed
    forms of ``CosineAnnealingLR``, ``ExponentialLR``, ``OneCycleLR`` with its defaults, and
    ``ReduceLROnPlateau``), with a linear warm-up in front:

    - warm-up: step s (counted from 0) of the first ``warmup`` takes (s + 1) / warmup of the
      rate;
    - 'cosine': from the base rate down to ``lr_min`` over the horizon (``max_iter`` epochs);
    - 'exponential': the base rate times ``gamma`` per epoch;
    - 'onecycle': up from base / 25 to the base rate over the first 30% of the horizon, then
      down to base / 25e4, both halves cosine;
    - 'plateau': the rate times ``factor`` (not below ``lr_min``) whenever the monitored loss
      has not improved by ``tol`` for more than ``patience`` epochs.
    """

    def __init__(self, kind="constant", warmup=0, lr_min=0.0, gamma=0.95, factor=0.1,
                 patience=10, tol=1e-4):
        self.kind = kind
        self.warmup = int(warmup)
        self.lr_min = float(lr_min)
        self.gamma = float(gamma)
        self.factor = float(factor)
        self.patience = int(patience)
        self.tol = float(tol)
        self.step = 0  # optimizer steps taken under this schedule
        self.epoch = 0
        self.scale = 1.0  # plateau's reductions so far
        self.best = np.inf
        self.bad_epochs = 0

    @property
    def per_batch(self):
        """Whether the rate changes between the batches of an epoch (then the native epoch
        takes one rate per batch)."""
        return self.kind in STEP_SCHEDULES or self.warmup > 0

    def rates(self, base, n_batches, horizon):
        """The rates of the next epoch's `n_batches` steps, from the base rate (the
        optimizer's: learning_rate_init, or scikit-learn's rule's current rate); `horizon`
        is the schedule's length in steps ('cosine', 'onecycle')."""
        s = self.step + np.arange(n_batches, dtype=np.float64)
        horizon = max(int(horizon), 1)
        if self.kind == "cosine":
            pct = np.minimum(s, horizon) / horizon
            r = _annealing_cos(base, self.lr_min, pct)
        elif self.kind == "exponential":
            r = np.full(n_batches, base * self.gamma**self.epoch)
        elif self.kind == "onecycle":
            initial, final = base / 25.0, base / 25.0 / 1e4
            up_end = 0.3 * horizon - 1.0
            down_end = horizon - 1.0
            s = np.minimum(s, down_end)
            up = s <= up_end
            pct_up = s / up_end if up_end > 0 else np.ones_like(s)
            pct_down = (s - up_end) / max(down_end - up_end, 1e-12)
            r = np.where(up, _annealing_cos(initial, base, pct_up),
                         _annealing_cos(base, final, pct_down))
        elif self.kind == "plateau":
            r = np.full(n_batches, max(base * self.scale, self.lr_min))
        else:
            r = np.full(n_batches, float(base))
        if self.warmup > 0:
            r = r * np.minimum(1.0, (s + 1.0) / self.warmup)
        return np.ascontiguousarray(r, dtype=np.float64)

    def epoch_ends(self, n_steps, monitored):
        """After an epoch of `n_steps` steps whose monitored loss was `monitored`."""
        self.step += int(n_steps)
        self.epoch += 1
        if self.kind != "plateau" or not np.isfinite(monitored):
            return
        if monitored < self.best - self.tol:
            self.best = float(monitored)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.scale *= self.factor
                self.bad_epochs = 0

    def plateau_stops(self, base, msg, verbose):
        """scikit-learn's stopping rule under 'plateau': as with 'adaptive', training goes on
        while the rate can still be lowered (the plateau rule lowers it), and stops once it is
        at its floor (learning_rate_min, or scikit-learn's 1e-6)."""
        rate = max(base * self.scale, self.lr_min)
        # (with a rounding margin: 1e-3 * 0.1**3 is 1.0000000000000002e-06)
        if rate <= max(self.lr_min, 1e-6) * (1 + 1e-9):
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        if verbose:
            print(msg + " Learning rate on plateau is %f; continuing." % rate)
        return False

    def state(self):
        return {"step": self.step, "epoch": self.epoch, "scale": self.scale,
                "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state(self, state):
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.scale = float(state["scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


class SGDOptimizer:
    """Stochastic gradient descent with momentum (and Nesterov's momentum)."""

    solver = "sgd"

    def __init__(
        self, n_params, dtype, learning_rate_init=0.1, lr_schedule="constant",
        momentum=0.9, nesterov=True, power_t=0.5,
    ):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.nesterov = nesterov
        self.power_t = power_t
        self.velocity = np.zeros(n_params, dtype=dtype)

    def arrays(self):
        return {"velocity": self.velocity}

    def hyper(self):
        return {
            "solver": "sgd",
            "learning_rate": self.learning_rate,
            "momentum": float(self.momentum),
            "nesterov": bool(self.nesterov),
        }

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.schedule.kind == "plateau":
            return self.schedule.plateau_stops(self.learning_rate, msg, verbose)
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False

    def astype(self, dtype):
        self.velocity = self.velocity.astype(dtype)
        return self


class AdamOptimizer:
    """Adam with scikit-learn's formulation (bias correction folded into the step size)."""

    solver = "adam"

    def __init__(
        self, n_params, dtype, learning_rate_init=0.001, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8,
    ):
        self.learning_rate_init = learning_rate_init
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.m = np.zeros(n_params, dtype=dtype)
        self.v = np.zeros(n_params, dtype=dtype)
        self._t = np.zeros(1, dtype=np.int64)  # updated in place by the engine, per batch

    @property
    def t(self):
        """Number of optimizer steps taken so far."""
        return int(self._t[0])

    @property
    def learning_rate(self):
        """The bias-corrected step size of the last step (scikit-learn's definition)."""
        t = max(self.t, 1)
        return (
            self.learning_rate_init
            * np.sqrt(1 - self.beta_2**t)
            / (1 - self.beta_1**t)
        )

    def arrays(self):
        return {"m": self.m, "v": self.v, "t": self._t}

    def hyper(self):
        return {
            "solver": "adam",
            "learning_rate": float(self.learning_rate_init),
            "beta_1": float(self.beta_1),
            "beta_2": float(self.beta_2),
            "epsilon": float(self.epsilon),
        }

    def iteration_ends(self, time_step):
        pass

    def trigger_stopping(self, msg, verbose):
        if self.schedule.kind == "plateau":
            return self.schedule.plateau_stops(self.learning_rate_init, msg, verbose)
        if verbose:
            print(msg + " Stopping.")
        return True

    def astype(self, dtype):
        self.m = self.m.astype(dtype)
        self.v = self.v.astype(dtype)
        return self
