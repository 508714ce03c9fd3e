"""
Saving, loading, ONNX export and conversion to scikit-learn
===========================================================

The chapter's section on saving and restoring a model, for fusedmlp's ``MLPClassifier``:
``est.save(path)`` writes a portable file (arrays and JSON, no pickle, so it is safe to load
from an untrusted source) and ``fusedmlp.load(path)`` restores the model exactly, optimizer
state included, so that ``partial_fit`` continues where it stopped; ``est.summary()`` prints the
layers as Keras's ``model.summary()`` does. For serving without fusedmlp, ``skl2onnx``
exports the network to ONNX (run here with ONNX Runtime) and ``est.to_sklearn()`` gives the
equivalent scikit-learn estimator. All files go to a temporary directory that is removed at
the end.

Set ``FUSEDMLP_EXAMPLES_FAST=1`` to train on fewer rows and epochs (the documentation's build
does); the figures quoted in the text come from the full run.
"""

# %%
# A model to save
# ---------------
# The chapter's 784-300-100-10 network on Fashion-MNIST (pixels scaled to [0, 1]), trained for a
# few epochs on the first 50,000 training images (10,000 in fast mode); the last 10,000
# training images are kept to continue training later.
import os
import pickle
import tempfile
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
import skl2onnx
from sklearn.datasets import fetch_openml
from sklearn.exceptions import ConvergenceWarning

import fusedmlp
from fusedmlp import MLPClassifier

FAST = os.environ.get("FUSEDMLP_EXAMPLES_FAST") == "1"
print("mode:", "fast (a subset, fewer epochs)" if FAST else "full")

X, y = fetch_openml("Fashion-MNIST", version=1, as_frame=False, parser="pandas",
                    return_X_y=True)
X = X / 255.0
y = y.astype(np.int64)
X_train, y_train = X[:10000 if FAST else 50000], y[:10000 if FAST else 50000]
X_more, y_more = X[50000:60000], y[50000:60000]
X_test, y_test = X[60000:], y[60000:]

clf = MLPClassifier(hidden_layer_sizes=[300, 100], max_iter=5 if FAST else 10,
                    random_state=42)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of epochs
    clf.fit(X_train, y_train)
print(f"trained {clf.n_iter_} epochs on {len(X_train):,} images; "
      f"test accuracy {clf.score(X_test, y_test):.4f}")
clf.summary()

# %%
# Saving and loading
# ------------------
# ``save`` writes the parameters, the weights, Adam's moment estimates and step count, and the
# training history; ``fusedmlp.load`` reads them back into a new estimator, which predicts
# exactly as the original: the probabilities are equal bit for bit.
workdir = tempfile.TemporaryDirectory()
model_path = os.path.join(workdir.name, "model.fmlp")
start = time.perf_counter()
clf.save(model_path)
save_time = time.perf_counter() - start
start = time.perf_counter()
loaded = fusedmlp.load(model_path)
load_time = time.perf_counter() - start
print(f"saved {os.path.getsize(model_path) / 1024:.0f} KiB in {1000 * save_time:.0f} ms, "
      f"loaded in {1000 * load_time:.0f} ms: {loaded!r}")
proba = clf.predict_proba(X_test)
print("predict_proba identical after loading:",
      np.array_equal(loaded.predict_proba(X_test), proba))
print("history kept:", loaded.history_["loss"] == clf.history_["loss"])

# %%
# Training goes on where it stopped: ``partial_fit`` on new data, called on the original and on
# the reloaded model, takes the same optimizer steps and leaves the same weights (Adam's state
# was saved with them). Each call is one more epoch, recorded in ``history_``.
for _ in range(3):
    clf.partial_fit(X_more, y_more)
    loaded.partial_fit(X_more, y_more)
same_weights = all(np.array_equal(a, b) for a, b in zip(clf.coefs_ + clf.intercepts_,
                                                         loaded.coefs_ + loaded.intercepts_))
print(f"after 3 partial_fit epochs on {len(X_more):,} new images: epochs "
      f"{len(loaded.history_['loss'])}, identical weights: {same_weights}, "
      f"test accuracy {loaded.score(X_test, y_test):.4f}")

# %%
# Exporting to ONNX
# -----------------
# ``skl2onnx.to_onnx`` converts fusedmlp's estimators as it converts scikit-learn's (fusedmlp
# registers its converters when skl2onnx is imported). The sample row sets the graph's input
# type: float32. ``zipmap=False`` makes the probabilities a plain (n, 10) tensor. ONNX Runtime
# computes in float32 with its own kernels, so the probabilities agree with fusedmlp's to
# float32 rounding (in the full run: at most 1.5e-6 apart, the same label for every test
# image).
onx = skl2onnx.to_onnx(clf, X_train[:1].astype(np.float32), options={"zipmap": False})
onnx_path = os.path.join(workdir.name, "model.onnx")
with open(onnx_path, "wb") as f:
    f.write(onx.SerializeToString())

session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
print("ONNX outputs:", [(o.name, o.shape) for o in session.get_outputs()])
X_test32 = X_test.astype(np.float32)
onnx_labels, onnx_proba = session.run(None, {input_name: X_test32})
proba = clf.predict_proba(X_test32)
onnx_diff = np.abs(onnx_proba - proba).max()
print(f"ONNX Runtime: largest probability difference {onnx_diff:.2e}, "
      f"same labels for {np.mean(onnx_labels == clf.predict(X_test32)):.2%} of the test images")

# %%
# Converting to scikit-learn
# --------------------------
# For a network scikit-learn can compute (here ReLU hidden layers and a softmax output),
# ``to_sklearn`` returns a fitted ``sklearn.neural_network.MLPClassifier`` with the same
# weights, which predicts the same (scikit-learn computes in the weights' float32 here, with
# its own matrix products).
sk = clf.to_sklearn()
sk_diff = np.abs(sk.predict_proba(X_test32) - proba).max()
print(f"scikit-learn's {type(sk).__name__}: largest probability difference "
      f"{sk_diff:.2e}, same labels for {np.mean(sk.predict(X_test32) == clf.predict(X_test32)):.2%}"
      " of the test images")

# pickle works too, for comparison of the file sizes
pickle_path = os.path.join(workdir.name, "model.pkl")
with open(pickle_path, "wb") as f:
    pickle.dump(clf, f)
sizes = {name: os.path.getsize(path) / 1024 for name, path in
         [("model.fmlp\n(est.save)", model_path), ("model.onnx\n(skl2onnx)", onnx_path),
          ("model.pkl\n(pickle)", pickle_path)]}
workdir.cleanup()

# %%
# File sizes and agreement
# ------------------------
# The ``.fmlp`` file holds Adam's two moment estimates beside the weights (three float32 copies
# of the 266,610 parameters, compressed), the ONNX graph the weights only.
fig, (ax_size, ax_diff) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
bars = ax_size.bar(list(sizes), list(sizes.values()), color=["C0", "C1", "C2"])
ax_size.bar_label(bars, fmt="%.0f KiB")
ax_size.margins(y=0.12)
ax_size.set_ylabel("file size (KiB)")
ax_size.set_title("Saved model files")
diffs = {"fusedmlp.load": 0.0, "ONNX Runtime": onnx_diff, "to_sklearn()": sk_diff}
bars = ax_diff.bar(list(diffs), [max(d, 1e-12) for d in diffs.values()],
                   color=["C0", "C1", "C3"])
ax_diff.bar_label(bars, labels=["0 (identical)" if d == 0 else f"{d:.1e}"
                                for d in diffs.values()])
ax_diff.set_yscale("log")
ax_diff.set_ylim(1e-12, 1e-4)
ax_diff.set_ylabel("largest |probability difference| (log scale)")
ax_diff.set_title("Agreement with fusedmlp on 10,000 test images")
fig.suptitle("Saving, exporting and converting the 784-300-100-10 model")
plt.show()
