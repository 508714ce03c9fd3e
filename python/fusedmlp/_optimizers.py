"""Optimizer state and learning-rate schedules.

The per-step arithmetic runs in the engines over one flat parameter buffer
(``csrc/include/fusedmlp/optimizer.h``); what lives here is what scikit-learn's
``_stochastic_optimizers`` does between epochs: the schedule, the adaptive rule, and the
state arrays, kept as numpy arrays so that a fitted estimator pickles and ``partial_fit``
continues where it stopped.
"""

import numpy as np


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
