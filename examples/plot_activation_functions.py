"""
Activation functions and their derivatives
==========================================

This example reproduces the chapter's Figure 9-8, the activation functions of the
multilayer perceptron (the Heaviside step, the logistic sigmoid, the hyperbolic tangent
and ReLU) and their derivatives, in the section on backpropagation; a second figure adds
the activations fusedmlp offers beyond scikit-learn (leaky ReLU, ELU, SELU, GELU, SiLU
and softplus).

Nothing here is a numpy formula: every curve is computed by fusedmlp's own kernels,
through its public API.

* **The function** f(z) is the prediction of a network with one input, one hidden unit
  (weight 1, bias 0, the activation under study) and an identity output (weight 1, bias
  0), built with :meth:`~fusedmlp.MLPRegressor.set_weights`, on a grid of inputs z.
* **The derivative** f'(z) comes from the engine's backward pass: a second network has one
  hidden unit per grid point, unit k with input weight 0 and bias z_k (so its
  pre-activation is z_k), all output weights 1. One plain SGD step (learning rate 1, no
  momentum, no L2 term) on one sample whose prediction error is 1 moves each bias by
  exactly -f'(z_k), since the loss gradient with respect to bias k is
  error x output weight x f'(z_k). The derivative is the change of the biases.
  Central differences of the first network's predictions check it.

The example has a fast mode (environment variable ``FUSEDMLP_EXAMPLES_FAST=1``, used by
the documentation build) that uses a coarser grid; the figures look the same.
"""

# %%
# The function and its derivative, from the network
# -------------------------------------------------

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from fusedmlp import MLPRegressor

FAST = os.environ.get("FUSEDMLP_EXAMPLES_FAST") == "1"
print(f"mode: {'fast' if FAST else 'full'}")

z = np.linspace(-5, 5, 201 if FAST else 1001)


def activation_values(activation, z, **params):
    """f(z): a 1-1-1 network, weights 1, biases 0, identity output, evaluated at z."""
    net = MLPRegressor(hidden_layer_sizes=(1,), activation=activation, dtype="float64",
                       **params)
    net.set_weights([[[1.0]], [[1.0]]], [[0.0], [0.0]])
    return net.predict(z.reshape(-1, 1))


def activation_derivative(activation, z, **params):
    """f'(z) from the engine's gradient: one SGD step on a network with one hidden unit per
    grid point (pre-activation z_k), all output weights 1, and a prediction error of 1."""
    net = MLPRegressor(hidden_layer_sizes=(len(z),), activation=activation, solver="sgd",
                       learning_rate_init=1.0, momentum=0.0, alpha=0.0, batch_size=1,
                       max_iter=1, shuffle=False, warm_start=True, dtype="float64",
                       **params)
    net.set_weights([np.zeros((1, len(z))), np.ones((len(z), 1))], [z, [0.0]])
    x = np.ones((1, 1))
    error = 1.0
    target = net.predict(x) - error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch, on purpose
        net.fit(x, target)
    return (z - net.intercepts_[0]) / error


def central_difference(activation, z, h=1e-5, **params):
    return (activation_values(activation, z + h, **params)
            - activation_values(activation, z - h, **params)) / (2 * h)


# %%
# The chapter's four activations
# ------------------------------
# The step function cannot be trained: fusedmlp refuses to fit it, so its derivative is
# the finite difference of its predictions, which is 0 everywhere except at the jump
# (where the derivative does not exist; the difference quotient there is 1 / (2h)).

chapter = {
    "heaviside": ("Heaviside step", "tab:red", "-"),
    "logistic": ("Sigmoid (logistic)", "tab:green", "--"),
    "tanh": ("Tanh", "tab:blue", "-"),
    "relu": ("ReLU", "tab:purple", "-."),
}
beyond = {
    "leaky_relu": ("Leaky ReLU (negative_slope=0.1)", "tab:olive", "-",
                   {"negative_slope": 0.1}),
    "elu": ("ELU (elu_alpha=1)", "tab:brown", "--", {}),
    "selu": ("SELU", "tab:red", "-", {}),
    "gelu": ("GELU", "tab:blue", "-.", {}),
    "silu": ("SiLU (swish)", "tab:green", ":", {}),
    "softplus": ("Softplus", "tab:purple", "-", {}),
}

try:
    activation_derivative("heaviside", z)
except ValueError as error:
    print(f"engine gradient of 'heaviside': ValueError: {error}")

curves = {}
for name, spec in {**chapter, **beyond}.items():
    params = spec[3] if len(spec) > 3 else {}
    values = activation_values(name, z, **params)
    numeric = central_difference(name, z, **params)
    if name == "heaviside":
        derivative = numeric
    else:
        derivative = activation_derivative(name, z, **params)
        # the finite difference is not a derivative within h of a kink (relu and
        # leaky_relu at 0): compare away from it
        away = np.abs(z) > 1e-3
        gap = np.max(np.abs(derivative - numeric)[away])
        print(f"{name:>10}: engine gradient vs central difference of predict, "
              f"max |difference| = {gap:.1e}")
    curves[name] = values, derivative

# %%
# Figure 9-8: the step function, sigmoid, tanh and ReLU
# -----------------------------------------------------
# Left the functions, right their derivatives. The step function's derivative is zero
# wherever it exists: gradient descent gets no signal from it, which is why
# backpropagation needs the other three. The sigmoid's derivative is at most 0.25, tanh's
# at most 1; ReLU's is 0 or 1.


def plot_family(family, title):
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    for name, spec in family.items():
        label, color, style = spec[:3]
        values, derivative = curves[name]
        ax_f.plot(z, values, style, color=color, linewidth=2, label=label)
        if name == "heaviside":
            # draw the derivative where it exists: 0, with the jump at z = 0 marked
            finite = np.abs(z) > 1e-3
            ax_d.plot(z[finite & (z < 0)], derivative[finite & (z < 0)], style,
                      color=color, linewidth=2, label=label + " (undefined at 0)")
            ax_d.plot(z[finite & (z > 0)], derivative[finite & (z > 0)], style,
                      color=color, linewidth=2)
            ax_d.plot(0, 0, "o", color=color, markerfacecolor="white", markersize=7)
        else:
            ax_d.plot(z, derivative, style, color=color, linewidth=2, label=label)
    for ax, what in [(ax_f, "f(z)"), (ax_d, "f'(z)")]:
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("z (the unit's input, w · x + b)")
        ax.set_ylabel(what)
        ax.set_xlim(z[0], z[-1])
    ax_f.set_title("Activation functions")
    ax_d.set_title("Derivatives (engine gradient)")
    fig.legend(*ax_d.get_legend_handles_labels(), loc="outside lower center",
               ncols=min(len(family), 4))
    fig.suptitle(title)
    return fig, ax_f, ax_d


fig, ax_f, ax_d = plot_family(chapter, "The chapter's activation functions, computed by fusedmlp")
ax_f.set_ylim(-1.65, 2.4)  # the chapter's axes
ax_d.set_ylim(-0.2, 1.2)
plt.show()

# %%
# Beyond scikit-learn: leaky ReLU, ELU, SELU, GELU, SiLU, softplus
# ----------------------------------------------------------------
# These activations, which the textbook discusses in the next chapter, are parameters of
# fusedmlp's ``MLPClassifier`` and ``MLPRegressor`` (``activation="gelu"``, ...), computed
# as ``torch.nn.functional`` computes them. Leaky ReLU is drawn with
# ``negative_slope=0.1`` (the default, 0.01, is hard to tell from ReLU at this scale).
# Unlike ReLU, all of them let some gradient through for negative inputs; SELU's
# derivative jumps at 0 (from about 1.76 to its scale, about 1.05), and GELU and SiLU dip
# slightly below zero before rising.

fig, ax_f, ax_d = plot_family(beyond, "Activations beyond scikit-learn, computed by fusedmlp")
ax_f.set_ylim(-2, 5)
ax_d.set_ylim(-0.3, 2)
plt.show()
