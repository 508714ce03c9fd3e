"""
The Perceptron on the iris dataset
==================================

This example reproduces the chapter's first trained model, in the section on the
Perceptron: a single threshold logic unit that looks at a flower's petal length and
width and answers one question, "is it *Iris setosa*?". It trains fusedmlp's
:class:`~fusedmlp.Perceptron` exactly as the chapter trains scikit-learn's
(``Perceptron(random_state=42)``), predicts the chapter's two new flowers, draws the
decision boundary over the data, and shows that fusedmlp learns *the same* weights as
scikit-learn, bit for bit, and how long each takes.

The example has a fast mode (environment variable ``FUSEDMLP_EXAMPLES_FAST=1``, used by
the documentation build) that repeats the timings fewer times; the model and every other
number are the same in both modes.
"""

# %%
# The data and the model
# ----------------------
# As in the chapter: the two petal features, and a boolean target that is ``True`` for
# *Iris setosa* (class 0). The only change from the chapter's code is the import line.

import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import Perceptron as SkPerceptron

from fusedmlp import Perceptron

FAST = os.environ.get("FUSEDMLP_EXAMPLES_FAST") == "1"
print(f"mode: {'fast' if FAST else 'full'}")

iris = load_iris(as_frame=True)
X = iris.data[["petal length (cm)", "petal width (cm)"]].values
y = (iris.target == 0).values  # Iris setosa

per_clf = Perceptron(random_state=42)
per_clf.fit(X, y)

X_new = [[2, 0.5], [3, 1]]
y_pred = per_clf.predict(X_new)
print(f"predictions for {X_new}: {y_pred}")  # the chapter: True, False

# %%
# The same weights as scikit-learn's
# ----------------------------------
# scikit-learn's ``Perceptron`` is trained on the same data with the same parameters. The
# two models are compared attribute by attribute: fusedmlp reproduces scikit-learn's
# arithmetic sample by sample, so the coefficients, the intercept, the number of epochs
# and the number of updates are identical, not merely close.

sk_clf = SkPerceptron(random_state=42).fit(X, y)

print(f"{'':>14} {'fusedmlp':>28} {'scikit-learn':>28}")
print(f"{'coef_':>14} {np.array2string(per_clf.coef_.ravel()):>28} "
      f"{np.array2string(sk_clf.coef_.ravel()):>28}")
print(f"{'intercept_':>14} {np.array2string(per_clf.intercept_):>28} "
      f"{np.array2string(sk_clf.intercept_):>28}")
print(f"{'n_iter_':>14} {per_clf.n_iter_:>28} {sk_clf.n_iter_:>28}")
print(f"{'t_':>14} {per_clf.t_:>28} {sk_clf.t_:>28}")
same = (np.array_equal(per_clf.coef_, sk_clf.coef_)
        and np.array_equal(per_clf.intercept_, sk_clf.intercept_)
        and per_clf.n_iter_ == sk_clf.n_iter_ and per_clf.t_ == sk_clf.t_)
print(f"identical to scikit-learn's (coef_, intercept_, n_iter_, t_): {same}")
print(f"same predictions on the new flowers: "
      f"{np.array_equal(per_clf.predict(X_new), sk_clf.predict(X_new))}")

# %%
# Fit time
# --------
# One fit on 150 flowers takes well under a millisecond, less than the timer's noise on a
# single call, so each fit is repeated and the median is reported. On a problem this small
# the time is mostly each library's Python-side validation, not the training loop itself.
# Times this short also depend on whatever else the machine is running at that moment.


def median_fit_time(make_estimator, repeats):
    times = []
    for _ in range(repeats):
        est = make_estimator()
        start = time.perf_counter()
        est.fit(X, y)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


repeats = 20 if FAST else 200
fused_time = median_fit_time(lambda: Perceptron(random_state=42), repeats)
sk_time = median_fit_time(lambda: SkPerceptron(random_state=42), repeats)
print(f"median fit time over {repeats} fits: fusedmlp {fused_time * 1e3:.3f} ms, "
      f"scikit-learn {sk_time * 1e3:.3f} ms, speed-up {sk_time / fused_time:.2f}x")

# %%
# The decision boundary
# ---------------------
# A threshold logic unit is a linear classifier: it answers ``True`` where
# ``w1 * length + w2 * width + b > 0``. The line where that sum is zero separates the
# two regions; *Iris setosa* is linearly separable from the two other species on these
# two features, so the Perceptron finds a line that classifies every training flower
# correctly.

(w1, w2), b = per_clf.coef_[0], per_clf.intercept_[0]
print(f"training accuracy: {per_clf.score(X, y):.3f}")

x0, x1 = np.meshgrid(np.linspace(0, 7.5, 500), np.linspace(0, 3, 300))
regions = per_clf.predict(np.c_[x0.ravel(), x1.ravel()]).reshape(x0.shape)

fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
ax.contourf(x0, x1, regions, levels=[-0.5, 0.5, 1.5], colors=["#fde0c5", "#cfe3f5"])
ax.plot(X[~y, 0], X[~y, 1], "s", color="tab:orange", label="Not Iris setosa")
ax.plot(X[y, 0], X[y, 1], "o", color="tab:blue", label="Iris setosa")
lengths = np.array([0, 7.5])
ax.plot(lengths, -(w1 * lengths + b) / w2, "k-", linewidth=2,
        label=f"decision boundary: {w1:g}·length {w2:+g}·width {b:+g} = 0")
X_new_arr = np.asarray(X_new, dtype=float)
for (length, width), pred in zip(X_new_arr, y_pred):
    ax.plot(length, width, "*", color="black", markersize=14)
    ax.annotate(f"new flower: {'setosa' if pred else 'not setosa'}", (length, width),
                xytext=(8, 6), textcoords="offset points")
ax.set_xlim(0, 7.5)
ax.set_ylim(0, 3)
ax.set_xlabel("Petal length (cm)")
ax.set_ylabel("Petal width (cm)")
ax.set_title("fusedmlp Perceptron(random_state=42): is it Iris setosa?")
ax.legend(loc="upper left")
plt.show()
