"""
Training on the GPU
===================

fusedmlp trains on an NVIDIA GPU with ``device="cuda"``: the same estimator, the same
parameters and fitted attributes (numpy arrays), the epochs run by fusedmlp's CUDA kernels.
This example trains the chapter's 784-300-100-10 network on Fashion-MNIST on the CPU and, where
``fusedmlp.cuda_available()`` says a GPU is usable, on the GPU, and compares fit times and
accuracies; with CuPy installed it also trains from CuPy arrays, read in place on the device,
and gets predictions back as CuPy arrays. Without a GPU, the GPU part prints what it would do
and the CPU part still runs.

The example is short in both modes; ``FUSEDMLP_EXAMPLES_FAST=1`` (the documentation's CI build)
uses fewer rows and epochs.
"""

# %%
# Loading the data
# ----------------
# Fashion-MNIST's official split, pixels scaled to [0, 1] and stored as float32, the type
# both engines compute in (``dtype="float32"``, the default), and in row-major order:
# ``fetch_openml`` returns a column-major array, from which the rows of each mini-batch are
# gathered more slowly (on the CPU an epoch takes about 1.5 times as long, in scikit-learn
# too).
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.datasets import fetch_openml
from sklearn.exceptions import ConvergenceWarning

import fusedmlp
from fusedmlp import MLPClassifier

FAST = os.environ.get("FUSEDMLP_EXAMPLES_FAST") == "1"
print("mode:", "fast (a subset, fewer epochs)" if FAST else "full")

X, y = fetch_openml("Fashion-MNIST", version=1, as_frame=False, parser="pandas",
                    return_X_y=True)
X = (X / 255.0).astype(np.float32, order="C")
y = y.astype(np.int64)
X_train, y_train = X[:60000], y[:60000]
X_test, y_test = X[60000:], y[60000:]
if FAST:
    X_train, y_train = X_train[:10000], y_train[:10000]
max_iter = 5 if FAST else 10
print(f"training set {X_train.shape}, test set {X_test.shape}, {max_iter} epochs")


def timed_fit(model, X, y):
    """Fit for the fixed budget of max_iter epochs (hence no ConvergenceWarning); seconds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, y)
        return time.perf_counter() - start


# %%
# On the CPU
# ----------
params = dict(hidden_layer_sizes=[300, 100], max_iter=max_iter, random_state=42)
cpu = MLPClassifier(**params, device="cpu")
cpu_time = timed_fit(cpu, X_train, y_train)
cpu_accuracy = cpu.score(X_test, y_test)
print(f"CPU ({fusedmlp.cpu_isa()} kernels, {os.cpu_count()} logical cores): "
      f"{cpu_time:.2f} s, {np.median(cpu.history_['epoch_time']):.3f} s per epoch, "
      f"test accuracy {cpu_accuracy:.4f}")

# %%
# On the GPU
# ----------
# The same estimator with ``device="cuda"``. The training set is copied to the device once per
# ``fit``; each epoch then runs on the device, and the fitted weights come back as numpy
# arrays. The GPU computes the same float32 model, with its own order of floating-point
# additions: the two runs are not bit-identical, but their losses and accuracies agree
# closely. The first fit also pays for the CUDA context and the kernels' loading, so a small
# warm-up fit runs first.
gpu = None
if fusedmlp.cuda_available():
    timed_fit(MLPClassifier(hidden_layer_sizes=[300, 100], max_iter=1, device="cuda"),
              X_train[:1000], y_train[:1000])
    gpu = MLPClassifier(**params, device="cuda")
    gpu_time = timed_fit(gpu, X_train, y_train)
    gpu_accuracy = gpu.score(X_test, y_test)
    print(f"GPU: {gpu_time:.2f} s, {np.median(gpu.history_['epoch_time']):.3f} s per epoch, "
          f"test accuracy {gpu_accuracy:.4f}")
    print(f"speed-up over the CPU: {cpu_time / gpu_time:.1f}x; accuracy difference "
          f"{abs(gpu_accuracy - cpu_accuracy):.4f}; largest difference of the training losses "
          f"{np.max(np.abs(np.subtract(gpu.loss_curve_, cpu.loss_curve_))):.2e}")
    print("fitted weights are numpy arrays:", type(gpu.coefs_[0]).__name__)
else:
    print("No usable CUDA GPU was found (fusedmlp.cuda_available() is False), so the GPU part "
          "is skipped. With a GPU, this cell trains the same network with device='cuda', "
          "prints its fit time, the speed-up over the CPU and its test accuracy (close to the "
          "CPU's: the same float32 model, with another order of additions), and plots both "
          "runs below.")

# %%
# CuPy arrays in and out
# ----------------------
# With CuPy installed, data that already live on the GPU are not copied back to the host:
# ``fit`` reads any array with ``__cuda_array_interface__`` in place, and ``predict`` and
# ``predict_proba`` return CuPy arrays for CuPy input.
try:
    import cupy
except ImportError:
    cupy = None
if gpu is not None and cupy is not None:
    X_train_gpu, X_test_gpu = cupy.asarray(X_train), cupy.asarray(X_test)
    on_device = MLPClassifier(**params, device="cuda")
    print(f"fit from CuPy arrays: {timed_fit(on_device, X_train_gpu, y_train):.2f} s")
    y_pred_gpu = on_device.predict(X_test_gpu)
    print(f"predict on CuPy input returns {type(y_pred_gpu).__module__}."
          f"{type(y_pred_gpu).__name__}; test accuracy "
          f"{float((y_pred_gpu == cupy.asarray(y_test)).mean()):.4f}")
elif gpu is not None:
    print("CuPy is not installed (pip install cupy-cuda13x): the CuPy part is skipped.")
else:
    print("No GPU: the CuPy part is skipped. With a GPU and CuPy, it would train from "
          "cupy.asarray(X_train) in place and predict CuPy arrays from CuPy input.")

# %%
# Time per epoch and training loss
# --------------------------------
# ``history_["epoch_time"]`` gives the seconds of each epoch, ``history_["loss"]`` its
# training loss: the two devices train the same model (the curves overlap), at their own
# speed.
runs = {"CPU": cpu} if gpu is None else {"CPU": cpu, "GPU": gpu}
fig, (ax_time, ax_loss) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for (name, model), style in zip(runs.items(), ["C0o-", "C2x--"]):
    epochs = np.arange(1, model.n_iter_ + 1)
    ax_time.plot(epochs, model.history_["epoch_time"], style, label=name)
    ax_loss.plot(epochs, model.history_["loss"], style, label=name)
ax_time.set_ylabel("epoch time (s)")
ax_time.set_ylim(bottom=0)
ax_time.set_title("Time per epoch")
ax_loss.set_ylabel("training loss (cross-entropy, nats per image)")
ax_loss.set_title("Training loss")
for ax in (ax_time, ax_loss):
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()
title = f"Fashion-MNIST, 784-300-100-10 MLP, {len(X_train):,} images"
if gpu is None:
    title += " (no GPU found: CPU only)"
fig.suptitle(title)
plt.show()
