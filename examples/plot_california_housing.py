"""
Regression MLPs: California housing
===================================

This example reproduces the chapter's regression MLP, in the section on regression
MLPs: median house values in California districts predicted from eight features by a
pipeline of a ``StandardScaler`` and an ``MLPRegressor`` with three hidden layers of 50
ReLU units, with early stopping. It trains fusedmlp's :class:`~fusedmlp.MLPRegressor`
and scikit-learn's in the same run (test RMSE and fit time), draws the learning curves
from fusedmlp's ``history_`` and the predictions against the targets, then tries two
things scikit-learn's regressor does not offer: the Huber loss (``loss="huber"``), which
is less sensitive to outliers, and a softplus output (``out_activation="softplus"``),
which keeps every predicted price positive.

The example has a fast mode (environment variable ``FUSEDMLP_EXAMPLES_FAST=1``, used by
the documentation build) that trains on a random quarter of the training set; its
numbers are therefore a little worse than the full mode's, which uses the chapter's
whole training set.
"""

# %%
# The data, split as in the chapter
# ---------------------------------
# The chapter splits the 20,640 districts twice with ``train_test_split`` and
# ``random_state=42``: a test set (25 %), then a validation set (25 % of the rest). The
# targets are median house values in units of $100,000 (capped at 5.00001 in the data).

import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FormatStrFormatter
from sklearn.datasets import fetch_california_housing
from sklearn.metrics import mean_absolute_error, root_mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fusedmlp import MLPRegressor

FAST = os.environ.get("FUSEDMLP_EXAMPLES_FAST") == "1"
print(f"mode: {'fast' if FAST else 'full'}")

housing = fetch_california_housing()
X_train_full, X_test, y_train_full, y_test = train_test_split(
    housing.data, housing.target, random_state=42)
X_train, X_valid, y_train, y_valid = train_test_split(
    X_train_full, y_train_full, random_state=42)
if FAST:
    subset = np.random.default_rng(0).permutation(len(X_train))[: len(X_train) // 4]
    X_train, y_train = X_train[subset], y_train[subset]
print(f"train {X_train.shape}, valid {X_valid.shape}, test {X_test.shape}")

# %%
# The chapter's pipeline, with fusedmlp and with scikit-learn
# ------------------------------------------------------------
# The same pipeline is trained twice, once with each library's ``MLPRegressor``; only
# the import differs. ``early_stopping=True`` sets aside 10 % of the training set
# (``validation_fraction``), stops when its R² score has not improved for 10 epochs and
# restores the best weights. The chapter's ``X_valid`` is not used for training: it is a
# second held-out set, whose RMSE is printed beside the test set's.


def fit_and_time(pipeline):
    start = time.perf_counter()
    pipeline.fit(X_train, y_train)
    return time.perf_counter() - start


def make_model(regressor_class, **params):
    return make_pipeline(
        StandardScaler(),
        regressor_class(hidden_layer_sizes=[50, 50, 50], early_stopping=True,
                        random_state=42, **params),
    )


pipeline = make_model(MLPRegressor)
fused_time = fit_and_time(pipeline)
sk_pipeline = make_model(SkMLPRegressor)
sk_time = fit_and_time(sk_pipeline)

mlp_reg, sk_mlp = pipeline[-1], sk_pipeline[-1]
y_pred = pipeline.predict(X_test)
sk_pred = sk_pipeline.predict(X_test)
print(f"{'':>14} {'test RMSE':>10} {'valid RMSE':>11} {'epochs':>7} {'fit time':>9} "
      f"{'time/epoch':>11}")
for name, model, est, pred, seconds in [
    ("fusedmlp", pipeline, mlp_reg, y_pred, fused_time),
    ("scikit-learn", sk_pipeline, sk_mlp, sk_pred, sk_time),
]:
    rmse = root_mean_squared_error(y_test, pred)
    valid_rmse = root_mean_squared_error(y_valid, model.predict(X_valid))
    print(f"{name:>14} {rmse:10.4f} {valid_rmse:11.4f} {est.n_iter_:7d} {seconds:8.2f}s "
          f"{seconds / est.n_iter_ * 1e3:9.1f}ms")
print(f"speed-up of the whole fit: {sk_time / fused_time:.1f}x "
      f"(per epoch: {(sk_time / sk_mlp.n_iter_) / (fused_time / mlp_reg.n_iter_):.1f}x)")

# %%
# Both models start from the same seed but take different paths: fusedmlp computes in
# float32 by default, scikit-learn in float64, so after a few epochs the weights differ,
# and early stopping can end the two runs at different epochs. With ``dtype="float64"``
# fusedmlp follows scikit-learn's arithmetic; that run is timed too.

pipeline64 = make_model(MLPRegressor, dtype="float64")
fused64_time = fit_and_time(pipeline64)
y_pred64 = pipeline64.predict(X_test)
print(f"fusedmlp dtype='float64': test RMSE {root_mean_squared_error(y_test, y_pred64):.4f}, "
      f"{pipeline64[-1].n_iter_} epochs, fit {fused64_time:.2f}s, speed-up "
      f"{sk_time / fused64_time:.1f}x; largest difference from scikit-learn's test "
      f"predictions: {np.max(np.abs(y_pred64 - sk_pred)):.1e}")

# %%
# The chapter's validation set holds a few unusual districts: their average occupancy
# (people per household) is beyond any training district's. An MLP extrapolates freely
# outside the range of its training data, so these few predictions can be far off and
# move the validation RMSE on their own (in fast mode, trained on fewer districts, they
# do).

occupancy = housing.feature_names.index("AveOccup")
beyond_range = X_valid[:, occupancy] > X_train[:, occupancy].max()
print(f"AveOccup: training max {X_train[:, occupancy].max():.0f}; "
      f"{beyond_range.sum()} validation districts above it:")
for i in np.flatnonzero(beyond_range):
    row = X_valid[i:i + 1]
    print(f"  AveOccup {X_valid[i, occupancy]:7.1f}: true value {y_valid[i]:.2f}, predicted "
          f"{pipeline.predict(row)[0]:.2f} (fusedmlp), {sk_pipeline.predict(row)[0]:.2f} "
          f"(scikit-learn)")
inside = ~beyond_range
print(f"validation RMSE without them: "
      f"{root_mean_squared_error(y_valid[inside], pipeline.predict(X_valid[inside])):.4f} "
      f"(fusedmlp), "
      f"{root_mean_squared_error(y_valid[inside], sk_pipeline.predict(X_valid[inside])):.4f} "
      f"(scikit-learn)")

# %%
# Learning curves
# ---------------
# ``history_`` holds, per epoch, the training loss (for the squared error, half the mean
# squared error plus the L2 term, as scikit-learn's ``loss_curve_``), and, with early
# stopping, the same objective on the validation split (``val_loss``) and its R² score
# (``val_score``). scikit-learn's ``loss_curve_`` and ``validation_scores_`` are drawn
# beside them. The marker shows the epoch whose weights early stopping kept.

history = mlp_reg.history_
print("history_ keys:", sorted(history))
epochs = np.arange(1, len(history["loss"]) + 1)
sk_epochs = np.arange(1, len(sk_mlp.loss_curve_) + 1)
best_epoch = int(np.argmax(history["val_score"])) + 1
print(f"best validation R² {max(history['val_score']):.4f} at epoch {best_epoch} of "
      f"{len(epochs)}")

fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
# scikit-learn's curves are drawn thin and dotted over fusedmlp's: they can coincide
ax_loss.plot(epochs, history["loss"], "-", color="tab:blue", linewidth=3, alpha=0.6,
             label="fusedmlp: loss (train)")
ax_loss.plot(epochs, history["val_loss"], "--", color="tab:blue", linewidth=2,
             label="fusedmlp: val_loss (validation)")
ax_loss.plot(sk_epochs, sk_mlp.loss_curve_, ":", color="tab:orange", linewidth=2,
             label="scikit-learn: loss_curve_ (train)")
ax_loss.set_yscale("log")
ax_loss.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
ax_loss.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
ax_loss.set_xlabel("Epoch")
ax_loss.set_ylabel("½ MSE + L2 term (($100,000)², log scale)")
ax_loss.set_title("Loss")
ax_loss.legend()
ax_score.plot(epochs, history["val_score"], "-", color="tab:blue", linewidth=3, alpha=0.6,
              label="fusedmlp: val_score")
ax_score.plot(sk_epochs, sk_mlp.validation_scores_, ":", color="tab:orange", linewidth=2,
              label="scikit-learn: validation_scores_")
ax_score.plot(best_epoch, history["val_score"][best_epoch - 1], "o", color="tab:blue",
              markersize=8, label="fusedmlp: weights kept")
top = max(max(history["val_score"]), max(sk_mlp.validation_scores_))
ax_score.set_ylim(0.5, top + 0.05)
ax_score.set_xlabel("Epoch")
ax_score.set_ylabel("Validation R² score (first epochs below 0.5)")
ax_score.set_title("Validation score (10 % of the training set)")
ax_score.legend(loc="lower right")
fig.suptitle("California housing, 8-50-50-50-1 ReLU MLP, Adam, early stopping")
plt.show()

# %%
# Predictions against targets
# ---------------------------
# Each test district's predicted value against its true value; a perfect model would put
# every point on the diagonal. The vertical wall on the right is the dataset's cap: every
# district worth more than $500,000 is recorded as 5.00001.

fig, ax = plt.subplots(figsize=(6, 6), layout="constrained")
ax.scatter(y_test, y_pred, s=4, alpha=0.3, color="tab:blue",
           label=f"test districts (RMSE {root_mean_squared_error(y_test, y_pred):.3f})")
lims = [min(y_test.min(), y_pred.min()) - 0.2, max(y_test.max(), y_pred.max()) + 0.2]
ax.plot(lims, lims, "k--", linewidth=1, label="perfect prediction")
ax.set_xlim(lims)
ax.set_ylim(lims)
ax.set_aspect("equal")
ax.set_xlabel("True median house value ($100,000)")
ax.set_ylabel("Predicted median house value ($100,000)")
ax.set_title("fusedmlp MLPRegressor on the test set")
ax.legend(loc="upper left")
plt.show()

# %%
# Beyond scikit-learn: the Huber loss and a softplus output
# ---------------------------------------------------------
# The same pipeline, three more ways (fusedmlp only; scikit-learn's ``MLPRegressor`` has
# neither option):
#
# * ``loss="huber"`` (``huber_delta=1.0``): quadratic for errors below $100,000, linear
#   beyond, so the districts the model cannot fit (many of them at the cap) pull less on
#   the weights. It targets the squared error less directly, so its RMSE need not improve;
#   its MAE may.
# * ``out_activation="softplus"``: the output unit is ``log(1 + exp(z))``, so no
#   predicted value can be negative; the identity output can predict negative prices.
# * both together.
#
# The first row is the model above. Early stopping still scores R² on the validation
# split, whatever the training loss.

variants = {
    "squared error, identity output (above)": None,
    "huber": dict(loss="huber"),
    "squared error, softplus output": dict(out_activation="softplus"),
    "huber, softplus output": dict(loss="huber", out_activation="softplus"),
}
rows = []
for name, params in variants.items():
    if params is None:
        model, seconds, pred = pipeline, fused_time, y_pred
    else:
        model = make_model(MLPRegressor, **params)
        seconds = fit_and_time(model)
        pred = model.predict(X_test)
    rows.append(dict(name=name, rmse=root_mean_squared_error(y_test, pred),
                     mae=mean_absolute_error(y_test, pred), seconds=seconds,
                     epochs=model[-1].n_iter_, negative=int((pred < 0).sum()),
                     lowest=pred.min()))
rows.append(dict(name="scikit-learn (squared error, identity)",
                 rmse=root_mean_squared_error(y_test, sk_pred),
                 mae=mean_absolute_error(y_test, sk_pred), seconds=sk_time,
                 epochs=sk_mlp.n_iter_, negative=int((sk_pred < 0).sum()),
                 lowest=sk_pred.min()))

print(f"{'model':<40} {'RMSE':>7} {'MAE':>7} {'fit time':>9} {'epochs':>7} "
      f"{'lowest pred.':>13} {'# < 0':>6}")
for r in rows:
    print(f"{r['name']:<40} {r['rmse']:7.4f} {r['mae']:7.4f} {r['seconds']:8.2f}s "
          f"{r['epochs']:7d} {r['lowest']:13.3f} {r['negative']:6d}")

# %%
# The same table as a figure: errors on the left (in $100,000), fit times on the right.

fig, (ax_err, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained",
                                      gridspec_kw=dict(width_ratios=[2, 1]))
names = [r["name"].replace(", ", ",\n").replace(" (", "\n(") for r in rows]
positions = np.arange(len(rows))
width = 0.38
colors = ["tab:blue"] * (len(rows) - 1) + ["tab:orange"]
ax_err.bar(positions - width / 2, [r["rmse"] for r in rows], width, color=colors,
           label="RMSE")
ax_err.bar(positions + width / 2, [r["mae"] for r in rows], width, color=colors,
           alpha=0.5, hatch="//", label="MAE")
for x, r in zip(positions, rows):
    ax_err.text(x - width / 2, r["rmse"], f"{r['rmse']:.3f}", ha="center", va="bottom",
                fontsize=8)
    ax_err.text(x + width / 2, r["mae"], f"{r['mae']:.3f}", ha="center", va="bottom",
                fontsize=8)
ax_err.set_xticks(positions, names, fontsize=8)
ax_err.set_ylabel("Test error ($100,000)")
ax_err.set_title("Test RMSE and MAE (blue: fusedmlp, orange: scikit-learn)")
ax_err.set_ylim(0, 1.3 * max(r["rmse"] for r in rows))
ax_err.legend(loc="upper right", ncols=2)
ax_time.barh(positions, [r["seconds"] for r in rows], color=colors)
ax_time.set_yticks(positions, names, fontsize=8)
ax_time.invert_yaxis()
ax_time.set_xlabel("Fit time (s)")
ax_time.set_title("Fit time, early stopping")
for y, r in zip(positions, rows):
    ax_time.text(r["seconds"], y, f" {r['seconds']:.2f} s ({r['epochs']} ep.)",
                 va="center", fontsize=8)
ax_time.set_xlim(0, max(r["seconds"] for r in rows) * 1.45)
fig.suptitle("California housing: losses and output activations")
plt.show()
