"""The learning-rate finder: train with an exponentially growing rate and watch the loss.

The procedure of the textbook's tuning guidelines (and of fast.ai's and Keras's finders): start
from a tiny rate, multiply it by a constant factor every optimizer step until a large one, record
each step's training loss, stop once the loss explodes, and suggest a rate about ten times below
the one where the smoothed loss was lowest. The steps run natively: one call into the engine per
chunk of mini-batches, with one learning rate per batch, and the loss checked between chunks.
"""

import copy
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone

from ._driver import (
    STOCHASTIC_SOLVERS,
    batch_size_for,
    epoch_options,
    make_optimizer,
    shuffled,
    sorted_batches,
)

_CHUNK = 25  # mini-batches per native call: the loss is checked for divergence between calls


class LearningRateFinderResult:
    """What `find_learning_rate` measured.

    Attributes
    ----------
    learning_rates : ndarray of shape (n_steps_run,)
        The learning rate of each optimizer step (before Adam's bias correction).

    losses : ndarray of shape (n_steps_run,)
        The training loss of each step's mini-batch (with the L2 term), as the engine
        computed it.

    smoothed_losses : ndarray of shape (n_steps_run,)
        The losses smoothed by an exponential moving average (bias-corrected, as fast.ai's
        finder smooths them).

    best_learning_rate : float
        The rate at the lowest smoothed loss.

    suggested_learning_rate : float
        ``best_learning_rate / 10``: the textbook's advice, a rate about ten times lower
        than where the loss turns up.

    diverged : bool
        Whether the run stopped because the loss exploded (before the last rate).
    """

    def __init__(self, learning_rates, losses, smoothed_losses, diverged):
        self.learning_rates = learning_rates
        self.losses = losses
        self.smoothed_losses = smoothed_losses
        self.diverged = diverged
        finite = np.where(np.isfinite(smoothed_losses), smoothed_losses, np.inf)
        best = int(np.argmin(finite))
        self.best_learning_rate = float(learning_rates[best])
        self.suggested_learning_rate = self.best_learning_rate / 10.0

    def __repr__(self):
        return (
            f"LearningRateFinderResult(suggested_learning_rate={self.suggested_learning_rate:.3g}"
            f", best_learning_rate={self.best_learning_rate:.3g}, "
            f"steps={len(self.losses)}, diverged={self.diverged})"
        )

    def plot(self, ax=None):
        """Draw the smoothed loss against the learning rate (log scale), with the suggested
        and the best rates marked. Needs matplotlib.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure's axes when None.

        Returns
        -------
        ax : matplotlib Axes
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError(
                "LearningRateFinderResult.plot needs matplotlib: pip install matplotlib"
            ) from e
        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.plot(self.learning_rates, self.losses, color="0.8", linewidth=0.8,
                label="loss per mini-batch")
        ax.plot(self.learning_rates, self.smoothed_losses, color="C0", label="smoothed loss")
        ax.axvline(self.best_learning_rate, color="C3", linestyle=":",
                   label=f"lowest loss at {self.best_learning_rate:.3g}")
        ax.axvline(self.suggested_learning_rate, color="C2", linestyle="--",
                   label=f"suggested rate {self.suggested_learning_rate:.3g}")
        ax.set_xscale("log")
        finite = self.smoothed_losses[np.isfinite(self.smoothed_losses)]
        if finite.size:
            low, start = float(finite.min()), float(finite[0])
            ax.set_ylim(low - 0.1 * abs(start - low) - 1e-12, start + 0.5 * abs(start - low) + 1e-12)
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        ax.set_title("Learning-rate finder")
        ax.legend(loc="best")
        return ax


def find_learning_rate(estimator, X, y, *, sample_weight=None, min_lr=1e-5, max_lr=10.0,
                       n_steps=500, smoothing=0.98, divergence_factor=4.0):
    """Find a good learning rate: train with an exponentially growing rate and watch the loss.

    Starting from the estimator's weights (its fitted weights, or a fresh initialisation as
    `fit` draws it), each of `n_steps` optimizer steps multiplies the rate by the same factor,
    from `min_lr` to `max_lr`; the run stops early once the smoothed loss exceeds
    `divergence_factor` times its lowest value (or is no longer finite). The estimator
    itself is not modified: the run trains a copy, so its starting weights stay as they were.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        The model to tune, with solver 'sgd' or 'adam' (L-BFGS has no learning rate). Its
        other parameters (architecture, batch size, dtype, device, dropout...) are used as
        they are; early stopping is off for the run.

    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Training data; several epochs are run over it when `n_steps` needs more batches.

    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.

    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights.

    min_lr, max_lr : float, default=1e-5, 10.0
        The first and the last rate.

    n_steps : int, default=500
        The number of optimizer steps (mini-batches) from `min_lr` to `max_lr`.

    smoothing : float, default=0.98
        The exponential moving average's factor for the smoothed loss, in [0, 1).

    divergence_factor : float, default=4.0
        Stop when the smoothed loss exceeds this many times its lowest value.

    Returns
    -------
    result : LearningRateFinderResult
        The rates, the losses, the suggested rate and a ``plot()``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from fusedmlp import MLPClassifier, find_learning_rate
    >>> X, y = load_digits(return_X_y=True)
    >>> result = find_learning_rate(MLPClassifier(solver="sgd", random_state=0), X / 16, y)
    >>> model = MLPClassifier(solver="sgd", learning_rate_init=result.suggested_learning_rate)
    """
    from ._multilayer_perceptron import BaseMultilayerPerceptron

    if not isinstance(estimator, BaseMultilayerPerceptron):
        raise TypeError(
            "find_learning_rate takes a fusedmlp MLPClassifier or MLPRegressor; got "
            f"{type(estimator).__name__}."
        )
    if estimator.solver not in STOCHASTIC_SOLVERS:
        raise ValueError(
            f"find_learning_rate needs a solver with a learning rate ('sgd' or 'adam'); the "
            f"estimator has solver={estimator.solver!r}."
        )
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if not isinstance(value, Real) or isinstance(value, bool) or not (
            np.isfinite(value) and value > 0
        ):
            raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    if not max_lr > min_lr:
        raise ValueError(f"max_lr must exceed min_lr; got min_lr={min_lr}, max_lr={max_lr}.")
    if not isinstance(n_steps, Integral) or isinstance(n_steps, bool) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer >= 2; got {n_steps!r}.")
    if not isinstance(smoothing, Real) or not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1); got {smoothing!r}.")
    if not isinstance(divergence_factor, Real) or not divergence_factor > 1:
        raise ValueError(f"divergence_factor must be > 1; got {divergence_factor!r}.")

    fitted = hasattr(estimator, "coefs_")
    work = copy.deepcopy(estimator) if fitted else clone(estimator)
    work.__dict__.pop("_skl_callbacks", None)  # the finder's steps are not a fit
    work.set_params(early_stopping=False, warm_start=fitted, verbose=False)
    work._validate_params()
    # (device='auto' weighs the finder's own work: n_steps batches, not max_iter epochs)
    data = work._training_set(X, y, sample_weight, incremental=False, steps=n_steps)

    params = work._params
    optimizer = make_optimizer(work, params.shape[0], params.dtype)
    n_samples = data.X.shape[0]
    batch_size = batch_size_for(work, n_samples)
    hyper = {**epoch_options(work, batch_size), **optimizer.hyper()}
    rates = min_lr * (max_lr / min_lr) ** (np.arange(n_steps, dtype=np.float64) / (n_steps - 1))
    losses = np.full(n_steps, np.nan)
    step, call, diverged = 0, 0, False
    average, best = 0.0, np.inf
    smoothed = np.full(n_steps, np.nan)
    while step < n_steps and not diverged:
        order = sorted_batches(
            shuffled(np.arange(n_samples, dtype=np.int64), work._random_state),
            batch_size,
        )
        n_batches = -(-n_samples // batch_size)
        batch = 0
        while batch < n_batches and step < n_steps and not diverged:
            k = min(_CHUNK, n_batches - batch, n_steps - step)
            chunk = order[batch * batch_size: min((batch + k) * batch_size, n_samples)]
            chunk_losses = np.empty(k, dtype=np.float64)
            data.engine.run_epoch(
                data.X_engine, data.Y_train, data.train_weight, chunk, params,
                optimizer.arrays(),
                {**hyper, "epoch": call, "learning_rates": rates[step: step + k],
                 "batch_losses": chunk_losses},
            )
            for loss in chunk_losses:
                losses[step] = loss
                average = smoothing * average + (1.0 - smoothing) * loss
                smoothed[step] = average / (1.0 - smoothing ** (step + 1))
                step += 1
                if not np.isfinite(smoothed[step - 1]) or (
                    step > 1 and smoothed[step - 1] > divergence_factor * best
                ):
                    diverged = True
                    break
                best = min(best, smoothed[step - 1])
            batch += k
            call += 1
    return LearningRateFinderResult(rates[:step], losses[:step], smoothed[:step], diverged)
