"""The model's parameters: the flat buffer and its layout, the optimizer state, and the
fitted state as portable arrays and values.

The per-step arithmetic runs in the engines over one flat parameter buffer
(``csrc/include/fusedmlp/optimizer.h``, ``network.h``); what lives here is the layout of that
buffer (``coefs_`` and ``intercepts_`` are views of it), the optimizer state arrays, and what
scikit-learn's ``_stochastic_optimizers`` does between epochs (its schedules and adaptive rule),
kept as numpy arrays so that a fitted estimator pickles, saves, and ``partial_fit`` continues
where it stopped.
"""

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
        params = getattr(self, "_params", None)
        views = getattr(self, "_param_views", None)
        intact = (
            params is not None
            and views is not None
            and params.dtype == dtype
            and len(self.coefs_) == len(views[0])
            and len(self.intercepts_) == len(views[1])
            and all(a is b for a, b in zip(self.coefs_, views[0]))
            and all(a is b for a, b in zip(self.intercepts_, views[1]))
        )
        if intact:
            return params
        return Layout(self._layer_units()).pack(self.coefs_, self.intercepts_, dtype)

    def _adopt_params(self, dtype):
        """Before training: make sure the buffer and its views are the model's state."""
        params = self._current_params(dtype)
        if params is not getattr(self, "_params", None):
            self._bind_params(params, Layout(self._layer_units()))

    def __getstate__(self):
        state = super().__getstate__()
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
        if verbose:
            print(msg + " Stopping.")
        return True

    def astype(self, dtype):
        self.m = self.m.astype(dtype)
        self.v = self.v.astype(dtype)
        return self
