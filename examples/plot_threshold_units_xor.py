"""
Threshold logic units, logical gates and XOR
============================================

This example follows the chapter's path from biological to artificial neurons: the
McCulloch-Pitts neuron and the threshold logic unit (TLU) compute logical functions with
weights chosen by hand; a single TLU cannot compute XOR (exclusive or), but a multilayer
perceptron with two hidden threshold units can (the chapter's XOR network, in the section
on the multilayer perceptron and backpropagation); and an MLP with a differentiable
activation *learns* XOR from its four examples.

fusedmlp's :class:`~fusedmlp.MLPClassifier` accepts the step function as a hidden
activation (``activation="heaviside"``: 1 for an input >= 0, else 0). Gradients cannot
train a step function, so such a network gets its weights from
:meth:`~fusedmlp.MLPClassifier.set_weights`, as in Keras.

The example has a fast mode (environment variable ``FUSEDMLP_EXAMPLES_FAST=1``, used by
the documentation build) that tries fewer random seeds and draws a coarser grid; the
networks and truth tables are the same in both modes.
"""

# %%
# Threshold logic units for AND, OR and NOT
# -----------------------------------------
# Each gate is a network with one hidden threshold unit, the TLU, whose weights and bias
# are set by hand: the unit outputs ``heaviside(w · x + b)``. The classifier's output unit
# only reads the TLU: it is scikit-learn's logistic output for two classes, and ``predict``
# answers class 1 when its input is above 0; with weight 2 and bias -1 that input is +1
# when the TLU fires and -1 when it does not, so the prediction is the TLU's output.

import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

from fusedmlp import MLPClassifier

FAST = os.environ.get("FUSEDMLP_EXAMPLES_FAST") == "1"
print(f"mode: {'fast' if FAST else 'full'}")

READ_OUT_WEIGHT, READ_OUT_BIAS = [[2.0]], [-1.0]  # class 1 exactly when the TLU outputs 1


def threshold_unit(weights, bias):
    """A classifier whose single hidden heaviside unit computes heaviside(x @ weights + bias)."""
    weights = np.asarray(weights, dtype=float).reshape(-1, 1)
    return MLPClassifier(hidden_layer_sizes=(1,), activation="heaviside").set_weights(
        [weights, READ_OUT_WEIGHT], [[bias], READ_OUT_BIAS], classes=[0, 1]
    )


def print_truth_table(name, inputs, outputs, input_names=("A", "B")):
    print(name)
    print("  " + "  ".join(input_names[: inputs.shape[1]]) + "  | out")
    for row, out in zip(inputs.astype(int), outputs):
        print("  " + "  ".join(str(v) for v in row) + "  |  " + str(out))


X_two = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
X_one = np.array([[0], [1]], dtype=float)

gates = {
    # name: (inputs, weights, bias)
    "A AND B  (w = [1, 1], b = -1.5)": (X_two, [1, 1], -1.5),
    "A OR B   (w = [1, 1], b = -0.5)": (X_two, [1, 1], -0.5),
    "NOT A    (w = [-1],   b = 0.5)": (X_one, [-1], 0.5),
    "A AND NOT B  (w = [1, -1], b = -0.5)": (X_two, [1, -1], -0.5),
}
expected = {
    "A AND B": [0, 0, 0, 1], "A OR B": [0, 1, 1, 1], "NOT A": [1, 0],
    "A AND NOT B": [0, 0, 1, 0],
}
for name, (inputs, weights, bias) in gates.items():
    outputs = threshold_unit(weights, bias).predict(inputs)
    print_truth_table(name, inputs, outputs)
    gate = name.split("  (")[0].strip()
    assert list(outputs) == expected[gate], (gate, outputs)

# %%
# No single threshold unit computes XOR
# -------------------------------------
# XOR is 1 when exactly one input is 1. Its two classes cannot be separated by a line in
# the input plane, and a TLU's decision boundary is a line: whatever the weights, at least
# one of the four inputs gets the wrong answer. A brute-force search over a grid of weights
# and biases shows it (the best a single unit does is 3 out of 4).

y_xor = np.array([0, 1, 1, 0])
grid = np.linspace(-2, 2, 17)
W1, W2, B = np.meshgrid(grid, grid, grid, indexing="ij")
fires = (X_two[:, 0, None] * W1.ravel() + X_two[:, 1, None] * W2.ravel() + B.ravel()) >= 0
best = (fires == y_xor[:, None]).sum(axis=0).max()
print(f"best single TLU on XOR over {W1.size} weight settings: {best} of 4 correct")

# %%
# The XOR network with hand-set weights
# -------------------------------------
# Stacking threshold units solves it. The chapter's network has two hidden TLUs that both
# see the two inputs with weight 1: the first has bias -1.5 and computes AND, the second
# has bias -0.5 and computes OR. The output unit fires for "OR and not AND", that is with
# weight -1 from the AND unit, +1 from the OR unit and bias -0.5; as above, the output is
# the classifier's logistic unit, whose prediction is 1 exactly when that sum is above 0.

xor_net = MLPClassifier(hidden_layer_sizes=(2,), activation="heaviside").set_weights(
    coefs=[[[1.0, 1.0],     # input A -> (AND unit, OR unit)
            [1.0, 1.0]],    # input B -> (AND unit, OR unit)
           [[-1.0],         # AND unit -> output
            [1.0]]],        # OR unit -> output
    intercepts=[[-1.5, -0.5], [-0.5]],
    classes=[0, 1],
)
xor_net.summary()
print_truth_table("A XOR B, hand-set threshold network", X_two, xor_net.predict(X_two))
assert list(xor_net.predict(X_two)) == list(y_xor)

# %%
# Training a threshold network is an error
# ----------------------------------------
# The step function's derivative is zero wherever it exists, so backpropagation has no
# signal to follow: this is why the chapter replaces it by differentiable activations.
# fusedmlp says so instead of silently not learning.

try:
    MLPClassifier(hidden_layer_sizes=(2,), activation="heaviside").fit(X_two, y_xor)
except ValueError as error:
    print(f"fit with activation='heaviside': ValueError: {error}")

# %%
# An MLP that learns XOR
# ----------------------
# With a differentiable activation the same architecture can be trained. Four points and
# two hidden units make a small, non-convex problem: depending on the initial weights
# L-BFGS can stall in a poor local minimum. The table below counts, over several random
# seeds, how often each architecture reaches 100 % on the four points (the chapter's
# lesson that some initialisations fail on XOR; a wider hidden layer makes it reliable).
# scikit-learn trains the same networks from the same seeds beside fusedmlp; with
# ``dtype="float64"`` fusedmlp follows scikit-learn's arithmetic, in float32 (the
# default) it can land elsewhere from a borderline start.

seeds = range(10 if FAST else 50)


def solves_xor(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X_two, y_xor)
    return estimator.score(X_two, y_xor) == 1.0


print(f"seeds reaching 100 % on XOR (out of {len(seeds)}), tanh hidden units, lbfgs:")
for hidden in [(2,), (4,)]:
    params = dict(hidden_layer_sizes=hidden, activation="tanh", solver="lbfgs",
                  max_iter=1000)
    fused = sum(solves_xor(MLPClassifier(random_state=s, **params)) for s in seeds)
    fused64 = sum(solves_xor(MLPClassifier(random_state=s, dtype="float64", **params))
                  for s in seeds)
    sk = sum(solves_xor(SkMLPClassifier(random_state=s, **params)) for s in seeds)
    print(f"  hidden {str(hidden):5}: fusedmlp {fused:2d}, fusedmlp float64 {fused64:2d}, "
          f"scikit-learn {sk:2d}")

# %%
# The network used below has four tanh hidden units and a fixed seed. On four points a fit
# takes a few milliseconds in either library, so the times show per-call overhead, not
# training speed.

params = dict(hidden_layer_sizes=(4,), activation="tanh", solver="lbfgs", max_iter=1000,
              random_state=42)
xor_mlp = MLPClassifier(**params)
start = time.perf_counter()
xor_mlp.fit(X_two, y_xor)
fused_time = time.perf_counter() - start
sk_mlp = SkMLPClassifier(**params)
start = time.perf_counter()
sk_mlp.fit(X_two, y_xor)
sk_time = time.perf_counter() - start
print_truth_table("A XOR B, learned (4 tanh units, lbfgs, random_state=42)", X_two,
                  xor_mlp.predict(X_two))
print("P(XOR = 1): " + ", ".join(f"{p:.4f}" for p in xor_mlp.predict_proba(X_two)[:, 1]))
print(f"fusedmlp: accuracy {xor_mlp.score(X_two, y_xor):.2f}, {xor_mlp.n_iter_} iterations, "
      f"fit {fused_time * 1e3:.2f} ms")
print(f"scikit-learn: accuracy {sk_mlp.score(X_two, y_xor):.2f}, {sk_mlp.n_iter_} iterations, "
      f"fit {sk_time * 1e3:.2f} ms (speed-up {sk_time / fused_time:.2f}x)")

# %%
# Decision regions
# ----------------
# Left, the hand-set threshold network: its two hidden units draw two parallel lines,
# ``A + B = 0.5`` and ``A + B = 1.5``, and the class-1 region is the band between them.
# Right, the learned tanh network: a smooth probability, thresholded at 0.5.

n_grid = 101 if FAST else 301
a, b = np.meshgrid(np.linspace(-0.25, 1.25, n_grid), np.linspace(-0.25, 1.25, n_grid))
grid_points = np.c_[a.ravel(), b.ravel()]

fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
panels = [
    (axes[0], xor_net.predict(grid_points), "Hand-set threshold network\n(2 heaviside units)"),
    (axes[1], xor_mlp.predict_proba(grid_points)[:, 1],
     "Learned MLP\n(4 tanh units, lbfgs, random_state=42)"),
]
for ax, values, title in panels:
    filled = ax.contourf(a, b, values.reshape(a.shape), levels=np.linspace(0, 1, 11),
                         cmap="RdBu_r", vmin=0, vmax=1)
    ax.contour(a, b, values.reshape(a.shape), levels=[0.5], colors="black", linewidths=2)
    for label, marker, color in [(0, "o", "white"), (1, "^", "gold")]:
        points = X_two[y_xor == label]
        ax.scatter(points[:, 0], points[:, 1], marker=marker, s=120, c=color,
                   edgecolors="black", label=f"XOR = {label}", zorder=3)
    ax.set_xlabel("Input A (0 = false, 1 = true)")
    ax.set_ylabel("Input B (0 = false, 1 = true)")
    ax.set_title(title)
    ax.set_aspect("equal")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
fig.colorbar(filled, ax=axes, label="predicted class (left), P(XOR = 1) (right)",
             shrink=0.9)
fig.suptitle("XOR: decision regions on the unit square (black line: decision boundary)")
plt.show()
