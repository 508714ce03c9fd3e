"""fusedmlp's benchmark suite: fusedmlp beside scikit-learn and other libraries, in one run.

    python -m fusedmlp.bench [--data DIR] [--repeats N] [--cases a,b,...] [--markdown]

Every case times the peers on the same data in the same process, interleaved, and reports
medians. Training cases report seconds per epoch, the ratio to each peer, fusedmlp's GFLOP/s
and the "limit": the time numpy's matrix multiply takes for exactly that epoch's products,
measured in a child process with its OpenBLAS left to its native kernel (OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE removed from the child's environment only; under bench/avx2_only.c, below, the
native kernel is an AVX2 one, Haswell's), one child in each round of the fits and the median
taken, so that the limit and the fits share the host's drift. When OPENBLAS_CORETYPE is set (the
AVX2 proxy on an AVX-512 machine: FUSEDMLP_ISA=avx2 OPENBLAS_CORETYPE=Haswell), the limit is
also measured on that kernel and reported beside the native one. That proxy leaves the peers
(PyTorch, JAX, ONNX Runtime) on their AVX-512 code. An AVX2 run with the peers on their AVX2
code too preloads bench/avx2_only.c, built as its header shows, which answers the CPUID of every
library the process loads (and of its child processes) as an AVX2 + FMA CPU's:
LD_PRELOAD=/tmp/avx2_only.so python -m fusedmlp.bench ...; the machine line then says so. Real
data from --data (or $FUSEDMLP_DATA, or ./shared/data, ../shared/data) when present, synthetic
data of the same shapes otherwise. Peak memory is measured in child processes. Each 10,000-row
prediction is timed after a pause of SETTLE_SECONDS, so that no library's call runs beside the
threads the previous library left spinning. A training case's notes list, round by
round, how many epoch segments each fusedmlp fit ran on one thread and on the team: a round the
chooser ran mostly on one thread (the team timed slower, or the machine read as busy) lost the
team's speed-up; and, with more than one thread, the time a cache line took to go from one core to
the other and back before and after each fit (fusedmlp._cpu.core_round_trip), which sets the pace
of a team's epoch on hosts that move virtual CPUs between near and far cores. It is read around
every library's fits: a round in which it moved by more than MOVED_RATIO (the host moved the CPUs
during the round, so some of its fits ran in one placement and some in the other) is dropped and
run again, at most EXTRA_ROUNDS times --repeats extra rounds, and the notes say which. The
inference case reads it before, between and after its measurements (a team's one-row call waits
for the other core: its figure depends on the placement; the libraries alternate call by call, so
all of them see the same one), and counts fusedmlp's timed one-row calls that ran on one thread
and on the team (fusedmlp._cpu.team_predictions). A training case's table gives each
configuration's median epoch over the kept rounds, a round's epoch being its long fit less its
short one (fits of one round are closer in time than fits of different rounds; the medians of the
long and the short fits taken apart can pair fits of different rounds); its notes also give every
kept round's epoch and limits, and limit / fusedmlp and each configuration's epoch / fusedmlp's
round by round, with their medians: how far the rounds lie apart.

Optional peers, each timed where its library is installed and listed as absent otherwise:
PyTorch eager, and with torch.compile (fashion32, california); JAX with each epoch one jitted
lax.scan over the mini-batches, and Keras 3 on its jax backend (fashion32, california); the
fitted fusedmlp model in ONNX Runtime through skl2onnx, and JAX's jitted predict (inference).
Peers that compile do so in a warm-up fit before the timed ones; one that fails there is listed
as failed. JAX's threads are sized before jax's first import (see jax_or_none).
"""

import argparse
import ctypes
import functools
import gc
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

CASES = ("fashion32", "fashion64", "california", "wide", "features", "inference", "perceptron",
         "memory", "contention")


# ---- data ------------------------------------------------------------------------------------

def find_data_dir(explicit=None):
    candidates = [explicit, os.environ.get("FUSEDMLP_DATA"), "shared/data", "../shared/data"]
    for c in candidates:
        if c and Path(c, "fashion_mnist.npz").exists():
            return Path(c)
    return None


def fashion_mnist(data_dir, dtype):
    if data_dir is not None:
        d = np.load(data_dir / "fashion_mnist.npz")
        X_train = (d["X_train"] / 255.0).astype(dtype)
        X_test = (d["X_test"] / 255.0).astype(dtype)
        return X_train, d["y_train"].astype(np.int64), X_test, d["y_test"].astype(np.int64), "Fashion-MNIST"
    rng = np.random.default_rng(0)
    X = rng.random((70000, 784)).astype(dtype)
    y = rng.integers(0, 10, 70000)
    return X[:60000], y[:60000], X[60000:], y[60000:], "synthetic 70000x784"


def california(data_dir):
    if data_dir is not None and (data_dir / "california_housing.npz").exists():
        d = np.load(data_dir / "california_housing.npz")
        X, y, name = d["X"], d["y"], "California housing"
    else:
        rng = np.random.default_rng(0)
        X, y, name = rng.standard_normal((20640, 8)), rng.standard_normal(20640), "synthetic 20640x8"
    X = (X - X.mean(0)) / X.std(0)
    return X, y, name


# ---- arithmetic --------------------------------------------------------------------------------

def gemm_shapes(units, batch):
    """The (m, k, n) of every product of one training batch: X W, A^T dZ, dZ W^T."""
    shapes = []
    for i, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:])):
        shapes.append(("fwd", batch, fan_in, fan_out))
        shapes.append(("dW", fan_in, batch, fan_out))
        if i > 0:
            shapes.append(("dA", batch, fan_out, fan_in))
    return shapes


def epoch_flops(units, n_samples, batch):
    n_batches = -(-n_samples // batch)
    return sum(2 * m * k * n for _, m, k, n in gemm_shapes(units, batch)) * n_batches


_LIMIT_CHILD = r"""
import json, sys, time
import numpy as np
units, batch, n_samples, dtype, repeats = json.loads(sys.argv[1])
dt = np.dtype(dtype)
rng = np.random.default_rng(0)
n_batches = -(-n_samples // batch)
total = 0.0
for i, (fi, fo) in enumerate(zip(units[:-1], units[1:])):
    X = rng.random((batch, fi)).astype(dt); W = rng.random((fi, fo)).astype(dt)
    dZ = rng.random((batch, fo)).astype(dt)
    products = [lambda: X @ W, lambda: X.T @ dZ] + ([lambda: dZ @ W.T] if i > 0 else [])
    for f in products:
        for _ in range(3): f()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        total += float(np.median(ts))
print(json.dumps(total * n_batches))
"""


def openblas_coretype():
    """The OpenBLAS kernel OPENBLAS_CORETYPE forces on the peers ('' when not set)."""
    return os.environ.get("OPENBLAS_CORETYPE", "")


def numpy_limit(units, n_samples, batch, dtype, repeats=30, native=True):
    """Seconds numpy's matmul needs for one epoch's products, OpenBLAS on its native kernel
    (or, with native=False, on the kernel OPENBLAS_CORETYPE names)."""
    env = {k: v for k, v in os.environ.items()
           if not native or k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    arg = json.dumps([list(units), batch, n_samples, np.dtype(dtype).name, repeats])
    out = subprocess.run([sys.executable, "-c", _LIMIT_CHILD, arg], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


# ---- peers -------------------------------------------------------------------------------------

ABSENT = "absent (not installed)"


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


# What the suite did to size JAX's threads, told beside the figures of JAX and Keras (jax backend).
_jax_threads = {}


def jax_or_none(threads):
    """jax, or None. XLA:CPU sizes its thread pool when jax creates its CPU client, from $NPROC
    (else every core it may run on): set here, before jax's first import, when `threads` is not
    every core, with XLA_FLAGS=--xla_cpu_multi_thread_eigen=false for one thread (Eigen's
    products single-threaded). XLA_FLAGS' intra_op_parallelism_threads, often quoted, is a
    TensorFlow session option: XLA's flag parser skips it and the pool keeps every core."""
    if "jax" not in sys.modules and not _jax_threads:
        _jax_threads["requested"] = threads
        if threads != os.cpu_count():
            os.environ["NPROC"] = str(threads)
            if threads == 1:
                flags = os.environ.get("XLA_FLAGS", "")
                os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    try:
        import jax
    except ImportError:
        return None
    return jax


def jax_threads_notes(threads):
    """What JAX's threads are, for a report where `threads` is not every core."""
    if threads == os.cpu_count():
        return []
    if _jax_threads.get("requested") == threads:
        flags = os.environ.get("XLA_FLAGS")
        return [f"JAX (and Keras on jax): XLA:CPU's thread pool sized by NPROC={threads}"
                + (f", XLA_FLAGS={flags}" if flags else "")]
    return [f"JAX (and Keras on jax): jax was imported before the suite could size its pool for {threads} "
            f"threads: the pool has {os.environ.get('NPROC', os.cpu_count())} threads ($NPROC, else every core)"]


def keras_or_none(threads):
    """Keras, on its jax backend unless $KERAS_BACKEND says otherwise (the backend is chosen at
    keras's first import, so only then), with jax's threads sized first."""
    jax = jax_or_none(threads)
    if "keras" not in sys.modules and jax is not None:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        return None
    return keras


class PeerMLP:
    """A peer the suite trains itself, as `fit(X, y, epochs)`. `compiles` says where its
    compilation lands; a peer that compiles is fitted once for one epoch before the timed fits,
    which keeps one-off costs (compilation cached per network shape, a library's first call)
    out of them."""

    compiles = None


class TorchMLP(PeerMLP):
    """The same network and training loop in eager PyTorch: Adam, mini-batches of a random
    permutation, L2 as weight decay (scikit-learn's alpha / batch size)."""

    def __init__(self, torch, units, classifier, threads, alpha=1e-4, batch=200, lr=1e-3,
                 activation="relu", dropout=0.0):
        self.torch, self.units, self.classifier, self.batch, self.lr = torch, units, classifier, batch, lr
        self.alpha, self.activation, self.dropout = alpha, activation, dropout
        torch.set_num_threads(threads)

    def _model(self):
        nn = self.torch.nn
        act = {"relu": nn.ReLU, "gelu": nn.GELU}[self.activation]
        layers = []
        for i, (a, b) in enumerate(zip(self.units[:-1], self.units[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(self.units) - 2:
                layers.append(act())
                if self.dropout:
                    layers.append(nn.Dropout(self.dropout))
        return nn.Sequential(*layers)

    def fit(self, X, y, epochs):
        torch = self.torch
        torch.manual_seed(0)
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        yt = torch.from_numpy(y.astype(np.int64) if self.classifier else y.astype(np.float32).reshape(-1, 1))
        self.model = self._model()
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.alpha / self.batch)
        loss_fn = torch.nn.CrossEntropyLoss() if self.classifier else torch.nn.MSELoss()
        n = Xt.shape[0]
        for _ in range(epochs):
            perm = torch.randperm(n)
            for i in range(0, n, self.batch):
                idx = perm[i:i + self.batch]
                opt.zero_grad()
                loss = loss_fn(self.model(Xt[idx]), yt[idx])
                loss.backward()
                opt.step()
        return self

    def predict(self, X):
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()


# One compiled model per network shape and process: a fit resets its parameters in place, which
# keeps dynamo's guards true, so no fit after the warm-up compiles again.
_torch_compiled = {}


class TorchCompiledMLP(TorchMLP):
    """TorchMLP with its model through torch.compile (inductor): forward and backward compiled,
    Adam's step eager. dynamic=False specialises one graph for the full batches and one for the
    last partial batch, as eager PyTorch computes them."""

    compiles = "once per network shape, in the warm-up fit"

    def _model(self):
        key = (tuple(self.units), self.activation, self.dropout)
        if key not in _torch_compiled:
            with self.torch.random.fork_rng():  # building it must not move fit()'s seeded stream
                _torch_compiled[key] = self.torch.compile(super()._model(), dynamic=False)
        model = _torch_compiled[key]
        for layer in model.modules():
            if isinstance(layer, self.torch.nn.Linear):
                layer.reset_parameters()  # PyTorch's initialisation, from the seed fit() set
        return model


@functools.lru_cache(maxsize=None)
def jax_mlp_functions(units, classifier, batch, lr, alpha):
    """The jitted epoch and predict of one network, built once per process: jax.jit caches what
    it compiles by function and input shapes, so each compiles once per data shape."""
    import jax
    import jax.numpy as jnp

    tree_map = jax.tree_util.tree_map
    beta1, beta2, eps, decay = 0.9, 0.999, 1e-8, alpha / batch

    def forward(params, X):
        for W, b in params[:-1]:
            X = jax.nn.relu(X @ W + b)
        W, b = params[-1]
        return X @ W + b

    def batch_loss(params, X, y, mask):
        out = forward(params, X)
        if classifier:
            row_loss = -jnp.take_along_axis(jax.nn.log_softmax(out), y[:, None], axis=1)[:, 0]
        else:
            row_loss = (out[:, 0] - y) ** 2
        return jnp.sum(row_loss * mask) / jnp.sum(mask)

    def epoch(state, epoch_index, X, y):
        n = X.shape[0]
        n_batches = -(-n // batch)
        # Pad and mask: the permutation is padded to whole batches with row 0 at weight 0, so the
        # last partial batch's gradient is the mean over its real rows and one scanned step body
        # serves every batch (the padding costs part of one batch's products per epoch).
        perm = jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(0), epoch_index), n)
        idx = jnp.concatenate([perm, jnp.zeros(n_batches * batch - n, perm.dtype)]).reshape(n_batches, batch)
        mask = (jnp.arange(n_batches * batch) < n).astype(jnp.float32).reshape(n_batches, batch)

        def step(state, rows):
            params, m, v, t = state
            idx, weight = rows
            grad = jax.grad(batch_loss)(params, X[idx], y[idx], weight)
            grad = tree_map(lambda g, p: g + decay * p, grad, params)  # torch's weight_decay
            t = t + 1
            m = tree_map(lambda m, g: beta1 * m + (1 - beta1) * g, m, grad)
            v = tree_map(lambda v, g: beta2 * v + (1 - beta2) * g * g, v, grad)
            # torch's Adam: eps added to the bias-corrected sqrt(v)
            params = tree_map(lambda p, m, v: p - lr / (1 - beta1**t) * m / (jnp.sqrt(v / (1 - beta2**t)) + eps),
                              params, m, v)
            return (params, m, v, t), None

        return jax.lax.scan(step, state, (idx, mask))[0]

    def predict(params, X):
        out = forward(params, X)
        return jnp.argmax(out, axis=1) if classifier else out[:, 0]

    return jax.jit(epoch), jax.jit(predict)


class JaxMLP(PeerMLP):
    """The same network and training loop in JAX, each epoch one jitted function: lax.scan over
    the mini-batches of a random permutation, Adam written out as torch's (L2 as weight decay of
    alpha / batch size), float32, scikit-learn's Glorot initialisation."""

    compiles = "once per network shape, in the warm-up fit"

    def __init__(self, jax, units, classifier, threads, alpha=1e-4, batch=200, lr=1e-3):
        self.jax, self.units, self.classifier = jax, units, classifier
        # threads: jax_or_none() sized XLA's pool before jax's import
        self._epoch, self._predict = jax_mlp_functions(tuple(units), classifier, batch, lr, alpha)

    def fit(self, X, y, epochs):
        jnp = self.jax.numpy
        rng = np.random.default_rng(0)
        params = []
        for fan_in, fan_out in zip(self.units[:-1], self.units[1:]):
            bound = np.sqrt(6 / (fan_in + fan_out))
            params.append((jnp.asarray(rng.uniform(-bound, bound, (fan_in, fan_out)), jnp.float32),
                           jnp.asarray(rng.uniform(-bound, bound, fan_out), jnp.float32)))
        zeros = self.jax.tree_util.tree_map(jnp.zeros_like, params)
        state = (params, zeros, zeros, jnp.float32(0))
        Xj = jnp.asarray(X, jnp.float32)
        yj = jnp.asarray(y, jnp.int32 if self.classifier else jnp.float32)
        for e in range(epochs):
            state = self._epoch(state, e, Xj, yj)
        # jax dispatches asynchronously: the fit ends when its last epoch has run
        self.params = self.jax.block_until_ready(state[0])
        return self

    def predict(self, X):
        return np.asarray(self._predict(self.params, self.jax.numpy.asarray(X, self.jax.numpy.float32)))


# One Keras model per network shape and process: a fit restores its initial weights and Adam's
# initial state, and model.fit reuses the model's jitted train step, so no fit after the warm-up
# compiles again.
_keras_models = {}


class KerasMLP(PeerMLP):
    """The same network in Keras 3: Sequential Dense layers, Adam (whose eps is added to the
    uncorrected sqrt(v), as scikit-learn's), model.fit shuffling every epoch, L2 as regularizers
    of alpha / (2 batch size) on kernels and biases: the gradient torch's weight_decay adds."""

    compiles = "once per network shape, in the warm-up fit"

    def __init__(self, keras, units, classifier, threads, alpha=1e-4, batch=200, lr=1e-3):
        self.keras, self.units, self.classifier = keras, units, classifier
        self.alpha, self.batch, self.lr = alpha, batch, lr
        # threads: keras_or_none() sized the jax backend's pool before jax's import

    def _build(self):
        """The compiled model, its initial weights and Adam's initial variables."""
        keras = self.keras
        keras.utils.set_random_seed(0)
        l2 = keras.regularizers.L2(self.alpha / (2 * self.batch))
        layers = [keras.Input((self.units[0],))]
        for i, fan_out in enumerate(self.units[1:]):
            activation = "relu" if i < len(self.units) - 2 else None
            layers.append(keras.layers.Dense(fan_out, activation=activation, kernel_regularizer=l2,
                                             bias_regularizer=l2))
        model = keras.Sequential(layers)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) if self.classifier else "mse"
        model.compile(optimizer=keras.optimizers.Adam(self.lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8), loss=loss)
        model.optimizer.build(model.trainable_variables)
        return model, model.get_weights(), [v.numpy() for v in model.optimizer.variables]

    def fit(self, X, y, epochs):
        key = (tuple(self.units), self.classifier, self.alpha, self.batch, self.lr)
        if key not in _keras_models:
            _keras_models[key] = self._build()
        self.keras.utils.set_random_seed(0)  # repeatable shuffles
        self.model, weights, optimizer_state = _keras_models[key]
        self.model.set_weights(weights)
        for variable, value in zip(self.model.optimizer.variables, optimizer_state):
            variable.assign(value)
        target = y.astype(np.int64) if self.classifier else y.astype(np.float32).reshape(-1, 1)
        self.model.fit(np.asarray(X, np.float32), target, batch_size=self.batch, epochs=epochs, shuffle=True,
                       verbose=0)
        return self


def optional_peers(units, classifier, threads, epochs):
    """PyTorch (eager and torch.compile), JAX and Keras peers, those whose library is installed:
    (peers, absent, notes). `epochs`: "PyTorch", "torch.compile", "JAX" and "Keras" -> the epochs
    of that peer's shorter timed fit."""
    peers, absent, notes = {}, {}, []
    torch = torch_or_none()
    for name, key, cls in (("PyTorch", "PyTorch", TorchMLP),
                           ("PyTorch torch.compile", "torch.compile", TorchCompiledMLP)):
        if torch is None:
            absent[name] = ABSENT
        else:
            peers[name] = (lambda cls=cls: cls(torch, units, classifier, threads), epochs[key])
    jax = jax_or_none(threads)
    if jax is None:
        absent["JAX jit epoch (lax.scan)"] = ABSENT
    else:
        peers["JAX jit epoch (lax.scan)"] = (lambda: JaxMLP(jax, units, classifier, threads), epochs["JAX"])
    keras = keras_or_none(threads)
    if keras is None:
        absent["Keras 3"] = ABSENT
    else:
        peers[f"Keras {keras.__version__.split('.')[0]} ({keras.backend.backend()})"] = (
            lambda: KerasMLP(keras, units, classifier, threads), epochs["Keras"])
    if jax is not None:
        notes += jax_threads_notes(threads)
    return peers, absent, notes


class OnnxPredictor:
    """predict() of a fitted fusedmlp classifier converted by skl2onnx (with fusedmlp's
    converters) to a float32 graph, run by ONNX Runtime on the CPU: class labels only."""

    def __init__(self, ort, to_onnx, model, X, threads):
        onx = to_onnx(model, X[:1], options={id(model): {"zipmap": False}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def predict(self, X):
        return self.session.run(["label"], {self.input: X})[0]


def onnx_runtime_predictor(model, X, threads):
    """(OnnxPredictor of a fitted fusedmlp classifier, None), or (None, why not: ONNX Runtime or
    skl2onnx absent, or the conversion's or session's failure, reported instead of raised)."""
    try:
        import onnxruntime
        from skl2onnx import to_onnx  # fusedmlp registers its converters as skl2onnx is imported
    except ImportError:
        return None, ABSENT
    try:
        return OnnxPredictor(onnxruntime, to_onnx, model, X, threads), None
    except Exception as e:
        return None, failure(e)


def median_seconds(fn, calls):
    """The median of `calls` timed calls of fn, after one untimed call."""
    fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def failure(e):
    """The first line of an exception, short enough for a report's row."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"failed: {type(e).__name__}: {first[:200]}"


# ---- timing ------------------------------------------------------------------------------------

# Seconds to wait before a library's timed calls when another library ran just before: numpy's
# BLAS and ONNX Runtime keep their pool threads spinning after a call, and a prediction of 10,000
# Fashion-MNIST rows started within 20 ms of theirs took 48-76 ms instead of 32-42 (its time after
# a pause of 0, 20, 50, 100, 200 and 400 ms, bench/RESULTS.md; right after fusedmlp's, 10-18%
# longer, about 4% after 20 ms). Without the pause the suite timed whichever library came second
# with the first one's threads on its cores.
SETTLE_SECONDS = 0.2
# A training round whose cores' round trips (read before and after every fit, with more than one
# thread) differ by more than this ratio saw the host move its virtual CPUs (50-99 ns near, 330-420
# ns far on the Zen 4 hosts of bench/RESULTS.md; within one placement they stay within about 2x):
# it is dropped and run again, at most EXTRA_ROUNDS times the case's repeats (half the rounds of a
# Fashion-MNIST case saw a move in one run on that host).
MOVED_RATIO = 2.5
EXTRA_ROUNDS = 3


def ns(seconds):
    """A round trip in nanoseconds for the notes ('-': none measured)."""
    return "-" if seconds is None else f"{seconds * 1e9:.0f}"


def interleaved(fns, repeats, self_timed=(), settle=0.0, keep=None, extra=0, rounds=None):
    """Median seconds of each callable, run in turn (A B C A B C ...) so drift hits all alike.
    A callable named in `self_timed` returns its own seconds (a child process's measurement,
    without the child's start-up) instead of being timed around. settle: seconds of sleep
    before each call (SETTLE_SECONDS: the previous library's spinning threads gone idle).
    keep: called after each round; a round it rejects is dropped and run again, at most `extra`
    rounds in all (after those, every round counts). rounds: a dict given here is filled with
    each callable's seconds in the rounds kept, in order."""
    times = {name: [] for name in fns}
    kept = dropped = 0
    while kept < repeats:
        this = {}
        for name, fn in fns.items():
            gc.collect()
            if settle > 0:
                time.sleep(settle)
            t = time.perf_counter()
            out = fn()
            this[name] = out if name in self_timed else time.perf_counter() - t
        if keep is not None and not keep() and dropped < extra:
            dropped += 1
            continue
        kept += 1
        for name, t in this.items():
            times[name].append(t)
    if rounds is not None:
        rounds.update(times)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def interleaved_calls(fns, calls, repeats, seed=0, per_call=False, block=1):
    """Median over `repeats` rounds of each callable's mean seconds per call, the callables
    alternating call by call within a round, each time in a new random order (block: in runs of
    that many calls, the round's `calls` a multiple of it; per_call: the median of all of a
    callable's calls instead of the rounds' means, a call's latency). Under load a call
    of microseconds either runs or waits for a time slice; alternating call by call gives every
    configuration the same share of the slices lost, where a loop of one configuration's calls
    after another's (tens of milliseconds each, a few time slices) compares the scheduler's
    phases. And the random orders give each configuration the same share of following each
    other one: a library whose BLAS threads spin for a while after its call slows whichever call
    comes next (scikit-learn's one-row predict slowed the next call by about 20% under load, so
    that of two identical models the one a fixed or rotating order put after it more often
    measured slower)."""
    if block < 1 or calls < block or calls % block:
        raise ValueError(f"calls ({calls}) must be a positive multiple of block ({block})")
    names = list(fns)
    rng = np.random.default_rng(seed)
    times = {name: [] for name in names}
    for _ in range(repeats):
        gc.collect()
        total = dict.fromkeys(names, 0.0)
        for _ in range(calls // block):
            for i in rng.permutation(len(names)):
                name = names[i]
                for _ in range(block):
                    t = time.perf_counter()
                    fns[name]()
                    elapsed = time.perf_counter() - t
                    total[name] += elapsed
                    if per_call:
                        times[name].append(elapsed)
        if not per_call:
            for name in names:
                times[name].append(total[name] / calls)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def quiet(fn):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    return run


def training_case(title, X, y, units, peers, repeats, limit_dtype, threads, absent=None, notes=(),
                  limit64=False):
    """Seconds per epoch of each configuration in `peers` (name -> (factory, epochs)).

    An epoch's cost is the difference between fits of `epochs` and 2 * `epochs` epochs, divided
    by `epochs`: what each further epoch costs, without the once-per-fit work (validation, label
    encoding, initialisation), which is reported apart. Each round gives one difference (its long
    fit less its short one, run in the same round) and the median of the rounds' differences is
    the epoch, the median of (short less that round's difference) the once-per-fit work; the
    notes give each kept round's epoch, the limits, and limit / fusedmlp and each configuration's
    epoch / fusedmlp's round by round. Peers that compile
    are fitted once before (see PeerMLP); one that fails there is reported as failed, beside
    `absent` (name -> why a peer is not timed).

    The limits (numpy's products in `limit_dtype`, in float64 too with `limit64`, and on the
    kernel OPENBLAS_CORETYPE names when it is set) are measured in the same rounds as the fits,
    one child process per round, and the median of each limit's rounds taken: a limit measured once
    after the fits would be compared with fits timed minutes apart from it, which on a host
    whose speed drifts moves the ratio more than any change of the code. With more than one
    thread, a round whose cores' round trips moved (see `steady`) is run again, at most
    EXTRA_ROUNDS * `repeats` extra rounds.
    """
    from fusedmlp import _cpu
    from fusedmlp._multilayer_perceptron import BaseMultilayerPerceptron

    segments = {}  # name -> [(on one thread, on the team)] of each of its fusedmlp fits
    trips = {}  # name -> [the cores' round trip (before, after) each of its fusedmlp fits]
    this_round = []  # the round trips read around every fit of the round running
    verdicts = []  # each round's readings, and whether it is run again
    extra = EXTRA_ROUNDS * repeats

    def fit(name, make, n_epochs):
        est = make()
        ours = isinstance(est, BaseMultilayerPerceptron)
        trip = _cpu.core_round_trip() if threads > 1 else None
        before = _cpu.team_segments() if ours else None
        if isinstance(est, PeerMLP):
            est.fit(X, y, epochs=n_epochs)
        else:
            est.set_params(max_iter=n_epochs).fit(X, y)
        if ours:
            after = _cpu.team_segments()
            segments.setdefault(name, []).append((after[0] - before[0], after[1] - before[1]))
        if threads > 1:
            pair = (trip, _cpu.core_round_trip())
            this_round.extend(pair)
            if ours:
                trips.setdefault(name, []).append(pair)

    def steady():
        # Whether the cores stayed where they were through the round (its round trips within
        # MOVED_RATIO of each other): a round in which the host moved the virtual CPUs between
        # near and far cores times some fits in one placement and some in the other, and an
        # epoch (a long fit less a short one) can take the whole move (bench/RESULTS.md).
        seen = [v for v in this_round if v is not None]
        this_round.clear()
        again = (bool(seen) and max(seen) > MOVED_RATIO * min(seen)
                 and sum(a for _, a in verdicts) < extra)
        verdicts.append((seen, again))
        return not again

    peers, absent, notes = dict(peers), dict(absent or {}), list(notes)
    for name, (make, _) in list(peers.items()):
        est = make()
        if isinstance(est, PeerMLP) and est.compiles:
            t = time.perf_counter()
            try:
                quiet(lambda: est.fit(X, y, epochs=1))()
            except Exception as e:  # e.g. inductor without a working C++ compiler
                absent[name] = failure(e)
                del peers[name]
                continue
            notes.append(f"{name}: compiles {est.compiles}; warm-up fit of 1 epoch "
                         f"{time.perf_counter() - t:.1f} s")
    # The short fits of all peers in turn, then the long ones: each fit follows another
    # library's, so what a switch costs the next fit (the threads of the library before still
    # spinning, caches and pages of its data gone) falls on both lengths alike and cancels in
    # their difference. With each peer's long fit right after its short one, a cost that only the
    # short fit paid made the epoch look shorter than it is: JAX's Fashion-MNIST epoch, about
    # 0.55 s timed alone, came out at 0.16-0.42 s (bench/RESULTS.md, "The suite's fit order").
    fns = {}
    for length in (1, 2):
        for name, (make, n_epochs) in peers.items():
            fns[(name, length)] = quiet(lambda n=name, m=make, e=length * n_epochs: fit(n, m, e))
    n, limits = X.shape[0], {"limit": (limit_dtype, True)}
    if limit64:
        limits["limit64"] = (np.float64, True)
    coretype = openblas_coretype()
    if coretype:
        limits["limit_coretype"] = (limit_dtype, False)
    for key, (dt, native) in limits.items():
        fns[key] = lambda dt=dt, native=native: numpy_limit(units, n, 200, dt, native=native)
    kept = {}  # each callable's seconds, round by round
    raw = interleaved(fns, repeats, self_timed=limits, keep=steady if threads > 1 else None,
                      extra=extra, rounds=kept)
    # The median of the rounds' own differences, not the difference of the two medians: those
    # can be two rounds' fits, and on a host whose speed moves between rounds their difference
    # can be an outlying round's or no round's (Keras 3's Fashion-MNIST epoch read 0.362 s, its
    # lowest round, against rounds of 0.362, 0.605 and 0.496: bench/RESULTS.md).
    diffs = {name: np.subtract(kept[(name, 2)], kept[(name, 1)]) for name in peers}
    per_epoch = {name: max(float(np.median(d)), 1e-9) / peers[name][1] for name, d in diffs.items()}
    # the median of its rounds' differences not positive (its long fits no slower than its short
    # ones in at least half the rounds): the noise exceeds E epochs, no epoch time
    unmeasured = [name for name, d in diffs.items() if np.median(d) <= 0]
    # each round's short fit less its own epochs: 2 * short - long
    fixed = {name: max(float(np.median(np.subtract(kept[(name, 1)], d))), 0.0)
             for name, d in diffs.items()}
    # What the thread team did in each fit: a round whose fit ran mostly on one thread (the
    # chooser timed the team slower, or read the machine as busy: threads.h) moves that round's
    # time, and the medians with it.
    def by_round(fits):  # (a round's short fit, then its long one)
        return "; ".join(" ".join(fits[i:i + 2]) for i in range(0, len(fits), 2))

    # Each kept round's epochs (its long fit less its short one) and limits: how far the rounds
    # lie apart. On a host whose speed drifts the medians of a few rounds move by more than a
    # change of the code (one run of the suite read limit / fusedmlp 1.75 in the Fashion-MNIST
    # case and 0.75 for the same network in the features case, bench/RESULTS.md). A round whose
    # long fit ran no slower than its short one has no epoch ('-').
    def round_by_round(values, median=None):
        # median: the one to tell (an epoch's: the table's, over every round's difference, '-'
        # when it is none), if not the known values'
        told = " ".join("-" if v is None else f"{v:.4g}" for v in values)
        known = [v for v in values if v is not None]
        if median is None and known:
            median = f"{np.median(known):.4g}"
        return told if median is None else f"{told} (median {median})"

    epochs = {name: [v / peers[name][1] if v > 0 else None for v in d] for name, d in diffs.items()}
    limit_names = {"limit": "numpy limit", "limit64": "float64 limit",
                   "limit_coretype": f"limit on the {coretype} kernel"}
    told = [f"{name} {round_by_round(e, '-' if name in unmeasured else f'{per_epoch[name]:.4g}')}"
            for name, e in epochs.items()]
    told += [f"{limit_names[key]} {round_by_round(kept[key])}" for key in limits]
    notes.append(f"seconds per epoch in each kept round (its long fit less its short one), and the "
                 f"limits: {'; '.join(told)}")
    ratios = [("limit / fusedmlp", "limit", "fusedmlp"),
              ("float64 limit / fusedmlp dtype=float64", "limit64", "fusedmlp dtype=float64"),
              (f"{limit_names['limit_coretype']} / fusedmlp", "limit_coretype", "fusedmlp")]
    told = [f"{label} {round_by_round([None if e is None else l / e for l, e in zip(kept[key], epochs[name])])}"
            for label, key, name in ratios if key in kept and name in epochs]
    # and fusedmlp's speed-up over each other configuration round by round: the table's speed-up
    # is the ratio of two medians, which on a drifting host can lie far from the median of the
    # rounds' ratios (one run: California 10.43x scikit-learn in the table, 8.15x as the rounds'
    # median; rounds 8.11x, 11.37x and 8.15x)
    if "fusedmlp" in epochs:
        told += [f"{name} / fusedmlp "
                 + round_by_round([None if a is None or b is None else a / b
                                   for a, b in zip(e, epochs["fusedmlp"])])
                 for name, e in epochs.items() if name != "fusedmlp"]
    if told:
        notes.append(f"in each kept round: {'; '.join(told)}")
    for name, counts in segments.items():
        if any(team or solo for solo, team in counts):
            told = by_round([f"{solo}/{team}" for solo, team in counts])
            notes.append(f"{name}: epoch segments on one thread / on the team, round by round "
                         f"(short fit, long fit): {told}")
    # How far apart the cores are, before and after each fit: a team's epoch waits on lines the
    # other core wrote, and a host that places two virtual CPUs far apart (330-420 ns a round
    # trip against 50-90) made the same build's Fashion-MNIST epoch 1.5 times as long on two
    # threads, one thread and numpy's products unchanged; the host moves them during a fit too
    # (bench/RESULTS.md). (Measured inside the timed fit, 1-7 ms each: the same in the short and
    # the long fit, so in "once per fit" only.) The same around every library's fits tells which
    # rounds saw the host move the CPUs (`steady`), run again as their epochs are no placement's.
    for name, values in trips.items():
        told = by_round([f"{ns(a)}>{ns(b)}" for a, b in values])
        notes.append(f"{name}: the cores' round trip (ns) before>after each fit, round by round "
                     f"(short fit, long fit; '-': the two threads did not run at once): {told}")
    if threads > 1:
        told = "; ".join((f"{ns(min(seen))}-{ns(max(seen))}" if seen else "-")
                         + (" (run again)" if again else "") for seen, again in verdicts)
        notes.append(f"the cores' round trip (ns) around every fit, lowest-highest, round by round: "
                     f"{told}; {sum(a for _, a in verdicts)} round(s) where it moved more than "
                     f"{MOVED_RATIO}x run again")
    flops = epoch_flops(units, n, 200)
    res = dict(title=title, kind="train", seconds=per_epoch, fixed=fixed, flops=flops,
               limit=raw["limit"], limit_dtype=np.dtype(limit_dtype).name, units=units, n=n,
               threads=threads, absent=absent, notes=notes, unmeasured=unmeasured)
    if limit64:
        res["limit64"] = raw["limit64"]
    if "limit_coretype" in raw:
        res["limit_coretype"] = (coretype, raw["limit_coretype"])
    return res


def mlp_params(units, **kw):
    return dict(hidden_layer_sizes=tuple(units[1:-1]), batch_size=200, tol=0.0,
                n_iter_no_change=10**9, random_state=0, **kw)


# ---- cases -------------------------------------------------------------------------------------

def case_fashion(data_dir, repeats, threads, input_dtype):
    from sklearn.neural_network import MLPClassifier as Sk

    from fusedmlp import MLPClassifier as Fm

    X, y, _, _, name = fashion_mnist(data_dir, input_dtype)
    units = [784, 300, 100, 10]
    p = mlp_params(units)
    peers = {
        "scikit-learn": (lambda: Sk(**p), 1),
        "fusedmlp": (lambda: Fm(n_threads=threads, **p), 3),
    }
    if input_dtype == np.float64:
        peers["fusedmlp dtype=float64"] = (lambda: Fm(n_threads=threads, dtype="float64", **p), 2)
    absent, notes = {}, []
    if input_dtype == np.float32:
        # JAX's jitted epoch is the peer a target names: fits of 2 and 4 epochs, not 1 and 2, as
        # a stall of a few tenths of a second in one fit (seen here: 1-epoch fits of 0.60-1.05 s,
        # one epoch about 0.55 s) moved its epoch time by half
        others, absent, notes = optional_peers(units, True, threads,
                                               {"PyTorch": 1, "torch.compile": 1, "JAX": 2, "Keras": 1})
        peers.update(others)
    return training_case(f"{name} 784-300-100-10, {np.dtype(input_dtype).name} input, batch 200, adam",
                         X, y, units, peers, repeats, np.float32, threads, absent, notes,
                         limit64=input_dtype == np.float64)


def case_california(data_dir, repeats, threads):
    from sklearn.neural_network import MLPRegressor as Sk

    from fusedmlp import MLPRegressor as Fm

    X, y, name = california(data_dir)
    units = [8, 50, 50, 50, 1]
    p = mlp_params(units)
    peers = {
        "scikit-learn": (lambda: Sk(**p), 5),
        "fusedmlp": (lambda: Fm(n_threads=threads, **p), 50),
    }
    others, absent, notes = optional_peers(units, False, threads,
                                           {"PyTorch": 5, "torch.compile": 5, "JAX": 20, "Keras": 5})
    peers.update(others)
    return training_case(f"{name} 8-50-50-50-1, batch 200, adam", X, y, units, peers, repeats,
                         np.float32, threads, absent, notes)


def case_features(data_dir, repeats, threads):
    """What gelu (stored pre-activations) and dropout (masks in the kernels) cost per epoch,
    beside relu without dropout, and the same networks in PyTorch."""
    from fusedmlp import MLPClassifier as Fm

    X, y, _, _, name = fashion_mnist(data_dir, np.float32)
    units = [784, 300, 100, 10]
    p = mlp_params(units)
    peers = {}
    torch = torch_or_none()
    for act, rate in (("relu", 0.0), ("gelu", 0.0), ("relu", 0.2), ("gelu", 0.2)):
        label = act + (f" dropout={rate}" if rate else "")
        # (relu without dropout is the baseline, "fusedmlp", the others' ratios are against)
        peers["fusedmlp" if label == "relu" else f"fusedmlp {label}"] = (
            lambda a=act, r=rate: Fm(n_threads=threads, activation=a, dropout=r, **p), 3)
        if torch is not None:
            peers[f"PyTorch {label}"] = (
                lambda a=act, r=rate: TorchMLP(torch, units, True, threads, activation=a, dropout=r), 1)
    return training_case(f"{name} 784-300-100-10, float32, batch 200, adam: activations and dropout",
                         X, y, units, peers, repeats, np.float32, threads)


def case_wide(data_dir, repeats, threads):
    from sklearn.neural_network import MLPClassifier as Sk

    from fusedmlp import MLPClassifier as Fm

    X, y, _, _, name = fashion_mnist(data_dir, np.float32)
    units = [784, 1024, 1024, 10]
    p = mlp_params(units)
    peers = {
        "scikit-learn": (lambda: Sk(**p), 1),
        "fusedmlp": (lambda: Fm(n_threads=threads, **p), 1),
    }
    torch = torch_or_none()
    if torch is not None:
        peers["PyTorch"] = (lambda: TorchMLP(torch, units, True, threads), 1)
    return training_case(f"{name} 784-1024-1024-10 (wide), float32, batch 200, adam", X, y,
                         units, peers, max(1, repeats // 2), np.float32, threads)


def case_inference(data_dir, repeats, threads):
    from sklearn.neural_network import MLPClassifier as Sk

    from fusedmlp import MLPClassifier as Fm

    X, y, X_test, _, name = fashion_mnist(data_dir, np.float32)
    X_test = X_test[:10000]
    units = [784, 300, 100, 10]
    models = {}  # (library, input dtype) -> (model, the test rows in that dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dt in (np.float32, np.float64):
            Xd, Xt = X[:5000].astype(dt), X_test.astype(dt)
            # scikit-learn computes in the input's dtype; fusedmlp in float32 (its default)
            models[("scikit-learn", np.dtype(dt).name)] = (Sk(**mlp_params(units, max_iter=1)).fit(Xd, y[:5000]), Xt)
            models[("fusedmlp", np.dtype(dt).name)] = (
                Fm(n_threads=threads, **mlp_params(units, max_iter=1)).fit(Xd, y[:5000]), Xt)
    torch = torch_or_none()
    if torch is not None:
        models[("PyTorch", "float32")] = (TorchMLP(torch, units, True, threads).fit(X[:5000], y[:5000], epochs=1), X_test)
    absent, notes = {}, []
    jax = jax_or_none(threads)
    if jax is None:
        absent["JAX jit"] = ABSENT
    else:
        models[("JAX jit", "float32")] = (JaxMLP(jax, units, True, threads).fit(X[:5000], y[:5000], epochs=1), X_test)
        notes += jax_threads_notes(threads)
    ort, why_not = onnx_runtime_predictor(models[("fusedmlp", "float32")][0], X_test, threads)
    if ort is None:
        absent["ONNX Runtime"] = why_not
    else:
        models[("ONNX Runtime", "float32")] = (ort, X_test)
    # first calls (jit compilation for each input shape, a session's first run) outside the timings
    for m, Xt in models.values():
        m.predict(Xt)
        m.predict(Xt[:1])
    # The cores' round trip before and after each measurement: a team's call waits for the other
    # core, one row 14.0 us near against 19.8 us far on the Zen 4 host of bench/RESULTS.md (one
    # thread 20.0 in both; the libraries alternate call by call, so all see the same placement)
    from fusedmlp import _cpu

    trips = []

    def trip():
        if threads > 1:
            trips.append(ns(_cpu.core_round_trip()))

    trip()
    batch = interleaved({k: (lambda m=m, Xt=Xt: m.predict(Xt)) for k, (m, Xt) in models.items()}, repeats * 3,
                        settle=SETTLE_SECONDS)
    trip()
    # one row: the median of 2,000 calls of each, in 10 rounds of 200 consecutive calls of each
    # library in random order (a serving loop's warm calls; this host's speed drifts by a third
    # within seconds, and one loop of each library's calls after another's compared the host's
    # phases more than the libraries; call by call, each call would find the weights of the
    # others' models in the cache: 210-240 us instead of 50-60 for fusedmlp and ONNX Runtime;
    # no pause before a run, as before each 10,000-row call above: after one, the one-row calls
    # measured a core back from idle, fusedmlp 21.8-27.1 us instead of 16.5-21.7, bench/RESULTS.md)
    rows = {k: Xt[:1] for k, (m, Xt) in models.items()}
    for k, (m, Xt) in models.items():
        for _ in range(50):
            m.predict(rows[k])
    # (the team each of fusedmlp's timed one-row calls ran on: its chooser keeps one thread when
    # the team's calls cost more, as after a pause that let its threads sleep)
    teams = _cpu.team_predictions()
    single = interleaved_calls({k: (lambda m=m, row=rows[k]: m.predict(row)) for k, (m, Xt) in models.items()},
                               200, 10, per_call=True, block=200)
    teams = [after - before for before, after in zip(teams, _cpu.team_predictions())]
    trip()
    if trips:
        notes.append(f"the cores' round trip (ns) before the {X_test.shape[0]:,}-row calls, "
                     f"between them and the one-row calls, after those: {'>'.join(trips)}")
    if threads > 1:
        notes.append(f"fusedmlp's timed one-row calls: {teams[0]:,} on one thread, {teams[1]:,} on the "
                     f"team of {threads}")
    return dict(title=f"{name} inference, 784-300-100-10 (predict, class labels)", kind="inference",
                batch=batch, single=single, n=X_test.shape[0], threads=threads, absent=absent, notes=notes)


def case_perceptron(data_dir, repeats, threads):
    from sklearn.linear_model import Perceptron as Sk

    try:
        from fusedmlp import Perceptron as Fm
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100_000, 100))
    w = rng.standard_normal(100)
    y = (X @ w + 0.5 * rng.standard_normal(100_000) > 0).astype(int)
    fns = {
        "scikit-learn": quiet(lambda: Sk(max_iter=5, tol=None, random_state=0).fit(X, y)),
        "fusedmlp": quiet(lambda: Fm(max_iter=5, tol=None, random_state=0).fit(X, y)),
    }
    return dict(title="Perceptron fit, 100000 x 100 dense float64, 5 epochs", kind="fit",
                seconds=interleaved(fns, repeats), threads=threads)


CONTENTION_FIT_ROUNDS = 9


def case_contention(data_dir, repeats, threads):
    """The same fits with one busy process per core, started by the suite: seconds per epoch
    of the default configuration (n_threads=None) beside n_threads=1 and scikit-learn, under
    the same load (whole fits in turn, the median of at least CONTENTION_FIT_ROUNDS each). The
    default must never be the slow choice on a shared machine."""
    from sklearn.neural_network import MLPClassifier as SkC
    from sklearn.neural_network import MLPRegressor as SkR

    from fusedmlp import MLPClassifier as FmC
    from fusedmlp import MLPRegressor as FmR

    X, y, cname = california(data_dir)
    Xf, yf, _, _, fname = fashion_mnist(data_dir, np.float32)
    Xf, yf = Xf[:10000], yf[:10000]
    workloads = [
        # (40 epochs, about 0.5 s a fusedmlp fit: a fit of 10 took 9-18 ms per epoch from fit to
        # fit on either choice, the scheduler's placement of the busy processes lasting about as
        # long as the fit, and the median of 9 such fits moved the ratio between 0.88 and 1.27
        # with both choices running on one thread; bench/RESULTS.md)
        (f"{cname} 8-50-50-50-1", X, y, [8, 50, 50, 50, 1], FmR, SkR, 40),
        (f"{fname} (10,000 rows) 784-300-100-10", Xf, yf, [784, 300, 100, 10], FmC, SkC, 2),
    ]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    results = []
    try:
        time.sleep(0.5)
        for title, Xw, yw, units, Fm, Sk, epochs in workloads:
            p = mlp_params(units, max_iter=epochs)
            fns = {
                "fusedmlp": quiet(lambda Fm=Fm, Xw=Xw, yw=yw, p=p: Fm(**p).fit(Xw, yw)),
                "fusedmlp n_threads=1": quiet(lambda Fm=Fm, Xw=Xw, yw=yw, p=p: Fm(n_threads=1, **p).fit(Xw, yw)),
                "scikit-learn": quiet(lambda Sk=Sk, Xw=Xw, yw=yw, p=p: Sk(**p).fit(Xw, yw)),
            }
            # (at least CONTENTION_FIT_ROUNDS: a fit's time under load spreads up to 2x from fit
            # to fit, so that the median of 3 moved the ratio between 0.9 and 1.5)
            rounds = max(repeats, CONTENTION_FIT_ROUNDS)
            seconds = {k: v / epochs for k, v in interleaved(fns, rounds).items()}
            results.append(dict(title=f"{title}, batch 200, adam, {len(busy)} busy processes (one per core)",
                                kind="contention", seconds=seconds))
        # predictions under the same load: a kept engine's calls (one row) learn their team by
        # timing, longer calls read the machine's load
        p = mlp_params([784, 300, 100, 10], max_iter=1)
        models = {"fusedmlp": quiet(lambda: FmC(**p).fit(Xf[:5000], yf[:5000]))(),
                  "fusedmlp n_threads=1": quiet(lambda: FmC(n_threads=1, **p).fit(Xf[:5000], yf[:5000]))(),
                  "scikit-learn": quiet(lambda: SkC(**p).fit(Xf[:5000], yf[:5000]))()}
        for rows, calls in ((1, 500), (10000, 1)):
            Xr = Xf[:rows]
            for m in models.values():
                m.predict(Xr)

            # (one-row calls in 27 rounds at the default 3 repeats: a call of about 70 us that waits
            # for a time slice adds milliseconds to its round's mean, and with both configurations
            # on one thread in every call the median of 9 rounds read 0.92-1.39, of 27 0.97-1.17;
            # bench/RESULTS.md)
            rounds = repeats * (9 if rows == 1 else 3)
            seconds = interleaved_calls({k: (lambda m=m, Xr=Xr: m.predict(Xr)) for k, m in models.items()},
                                        calls, rounds)
            results.append(dict(title=f"{fname} 784-300-100-10, predict {rows:,} row{'s' if rows > 1 else ''}, "
                                      f"{len(busy)} busy processes (one per core)",
                                kind="contention", seconds=seconds, unit="s / call"))
    finally:
        for b in busy:
            b.kill()
            b.wait()
    return results


_MEMORY_CHILD = r"""
import json, sys, warnings
import numpy as np
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
lib, dtype, data_dir, units = json.loads(sys.argv[1])
if lib == "fusedmlp":
    from fusedmlp import MLPClassifier
else:
    from sklearn.neural_network import MLPClassifier
base = rss("VmRSS:")
d = np.load(data_dir + "/fashion_mnist.npz") if data_dir else None
X = (d["X_train"] / 255.0).astype(dtype) if d is not None else np.random.default_rng(0).random((60000, 784)).astype(dtype)
y = d["y_train"] if d is not None else np.arange(60000) % 10
del d
loaded = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current size
est = MLPClassifier(hidden_layer_sizes=tuple(units[1:-1]), max_iter=2, random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    est.fit(X, y)
peak = rss("VmHWM:")
n_params = sum(c.size + b.size for c, b in zip(est.coefs_, est.intercepts_))
print(json.dumps(dict(base=base, loaded=loaded, peak=peak, data=X.nbytes + y.nbytes,
                      params=n_params, itemsize=est.coefs_[0].itemsize)))
"""


def case_memory(data_dir):
    units = [784, 300, 100, 10]
    out = {}
    for lib in ("fusedmlp", "scikit-learn"):
        for dtype in ("float32", "float64"):
            arg = json.dumps([lib, dtype, str(data_dir) if data_dir else "", units])
            r = json.loads(subprocess.run([sys.executable, "-c", _MEMORY_CHILD, arg], capture_output=True,
                                          text=True, check=True).stdout)
            # the model while training: parameters and Adam's two moment vectors
            model = 3 * r["params"] * r["itemsize"]
            batch_acts = 200 * sum(units[1:]) * r["itemsize"] * 2  # activations and deltas
            budget = r["data"] + model + batch_acts
            r.update(budget=budget, used=r["peak"] - r["base"], ratio=(r["peak"] - r["base"]) / budget)
            out[f"{lib} {dtype} input"] = r
    return dict(title="Peak memory of fit, Fashion-MNIST 784-300-100-10, 2 epochs", kind="memory", runs=out)


# ---- report ------------------------------------------------------------------------------------

def cpuid_masked():
    """Whether bench/avx2_only.c, preloaded, answers this process's CPUID without AVX-512."""
    try:
        return bool(ctypes.CDLL(None).fusedmlp_avx2_only_active())
    except (AttributeError, OSError, TypeError):  # not preloaded; no dlopen(NULL) (Windows)
        return False


def machine():
    import scipy
    import sklearn

    import fusedmlp

    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    torch = torch_or_none()
    # from the installed metadata: importing jax (or keras on it) here would fix jax's threads
    # before a case sizes them
    optional = []
    for dist, label in (("jax", "JAX"), ("keras", "Keras"), ("onnxruntime", "ONNX Runtime")):
        try:
            optional.append(f", {label} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    masked = (", CPUID answered without AVX-512 and AMX (bench/avx2_only.c preloaded)"
              if cpuid_masked() else "")
    return (f"{cpu}{masked}, {os.cpu_count()} cores, fusedmlp {fusedmlp.__version__} ({fusedmlp.cpu_isa()} kernels), "
            f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"scikit-learn {sklearn.__version__}, PyTorch {torch.__version__ if torch else 'not installed'}"
            + "".join(optional))


def report(results, markdown):
    lines = []
    emit = lines.append
    for r in results:
        if r is None:
            continue
        emit(f"\n### {r['title']}" if markdown else f"\n== {r['title']}")
        if r["kind"] == "train":
            fm = r["seconds"]["fusedmlp"]
            gflops = r["flops"] / fm / 1e9
            emit("| configuration | s / epoch | fusedmlp speed-up | once per fit (s) |" if markdown else
                 f"{'configuration':<26} {'s/epoch':>9} {'fusedmlp speed-up':>18} {'once/fit (s)':>13}")
            if markdown:
                emit("|---|---:|---:|---:|")
            for name, s in r["seconds"].items():
                f = r["fixed"][name]
                if name in r.get("unmeasured", ()):
                    why = ("not measured: the median of the kept rounds' 2E-epoch fit less "
                           "their E-epoch fit is not positive")
                    emit(f"| {name} | {why} | | |" if markdown else f"{name:<26} {why}")
                    continue
                emit(f"| {name} | {s:.4f} | {s / fm:.2f}x | {f:.3f} |" if markdown else
                     f"{name:<26} {s:>9.4f} {s / fm:>17.2f}x {f:>13.3f}")
            for name, why in r["absent"].items():
                emit(f"| {name} | {why} | | |" if markdown else f"{name:<26} {why}")
            emit(f"\nepoch = {r['flops'] / 1e9:.2f} GFLOP of matrix products; fusedmlp {gflops:.0f} GFLOP/s; "
                 f"numpy {r['limit_dtype']} matmul on the same products: {r['limit']:.4f} s "
                 f"({r['flops'] / r['limit'] / 1e9:.0f} GFLOP/s); limit / fusedmlp = {r['limit'] / fm:.2f}")
            if "limit_coretype" in r:
                core, lim = r["limit_coretype"]
                emit(f"the same products on OpenBLAS's {core} kernel (OPENBLAS_CORETYPE={core}): {lim:.4f} s "
                     f"({r['flops'] / lim / 1e9:.0f} GFLOP/s); limit / fusedmlp = {lim / fm:.2f}")
            if "limit64" in r and "fusedmlp dtype=float64" in r["seconds"]:
                f64 = r["seconds"]["fusedmlp dtype=float64"]
                emit(f"float64: numpy float64 matmul limit {r['limit64']:.4f} s "
                     f"({r['flops'] / r['limit64'] / 1e9:.0f} GFLOP/s); limit / fusedmlp dtype=float64 = "
                     f"{r['limit64'] / f64:.2f}")
        elif r["kind"] == "inference":
            emit("| library | input | predict 10000 rows (s) | fusedmlp speed-up | one row (us) | fusedmlp speed-up |"
                 if markdown else
                 f"{'library':<14} {'input':<8} {'10k rows (s)':>13} {'speed-up':>9} {'1 row (us)':>11} {'speed-up':>9}")
            if markdown:
                emit("|---|---|---:|---:|---:|---:|")
            for (lib, dt), b in r["batch"].items():
                s1 = r["single"][(lib, dt)]
                fb, fs = r["batch"][("fusedmlp", dt)], r["single"][("fusedmlp", dt)]
                emit(f"| {lib} | {dt} | {b:.4f} | {b / fb:.2f}x | {s1 * 1e6:.1f} | {s1 / fs:.2f}x |" if markdown else
                     f"{lib:<14} {dt:<8} {b:>13.4f} {b / fb:>8.2f}x {s1 * 1e6:>11.1f} {s1 / fs:>8.2f}x")
            for lib, why in r["absent"].items():
                emit(f"| {lib} | | {why} | | | |" if markdown else f"{lib:<14} {'':<8} {why}")
        elif r["kind"] == "fit":
            fm = r["seconds"]["fusedmlp"]
            emit("| library | fit (s) | fusedmlp speed-up |" if markdown else
                 f"{'library':<14} {'fit (s)':>11} {'speed-up':>9}")
            if markdown:
                emit("|---|---:|---:|")
            for k, s in r["seconds"].items():
                emit(f"| {k} | {s:.4f} | {s / fm:.2f}x |" if markdown else f"{k:<14} {s:>9.4f} s {s / fm:>8.2f}x")
        elif r["kind"] == "contention":
            base = r["seconds"]["fusedmlp n_threads=1"]
            unit = r.get("unit", "s / epoch")
            emit(f"| configuration | {unit} | time / n_threads=1 |" if markdown else
                 f"{'configuration':<22} {unit.replace(' ', ''):>9} {'/ n_threads=1':>14}")
            if markdown:
                emit("|---|---:|---:|")
            for k, s in r["seconds"].items():
                emit(f"| {k} | {s:.4g} | {s / base:.2f} |" if markdown else f"{k:<22} {s:>9.4g} {s / base:>14.2f}")
        elif r["kind"] == "memory":
            emit("| fit | data (MB) | peak over baseline (MB) | budget: data + model + batch (MB) | ratio |" if markdown
                 else f"{'fit':<28} {'data MB':>8} {'peak MB':>8} {'budget MB':>10} {'ratio':>6}")
            if markdown:
                emit("|---|---:|---:|---:|---:|")
            for k, v in r["runs"].items():
                mb = 1 / 2**20
                emit(f"| {k} | {v['data'] * mb:.0f} | {v['used'] * mb:.0f} | {v['budget'] * mb:.0f} | {v['ratio']:.2f} |"
                     if markdown else
                     f"{k:<28} {v['data'] * mb:>8.0f} {v['used'] * mb:>8.0f} {v['budget'] * mb:>10.0f} {v['ratio']:>6.2f}")
        if r.get("notes"):
            emit("")
            for note in r["notes"]:
                emit(f"- {note}" if markdown else f"  {note}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="directory with fashion_mnist.npz and california_housing.npz")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per configuration")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every library")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    data_dir = find_data_dir(args.data)
    print(("**Machine:** " if args.markdown else "machine: ") + machine())
    print(("**Data:** " if args.markdown else "data: ") + (str(data_dir) if data_dir else "synthetic (no data directory found)"))
    print(f"threads: {args.threads}; repeats: {args.repeats}; command: python -m fusedmlp.bench {' '.join(argv or sys.argv[1:])}")
    results = []
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for case in cases:
        if case not in CASES:
            parser.error(f"unknown case {case!r}")
        if case == "fashion32":
            r = case_fashion(data_dir, args.repeats, args.threads, np.float32)
        elif case == "fashion64":
            r = case_fashion(data_dir, args.repeats, args.threads, np.float64)
        elif case == "california":
            r = case_california(data_dir, args.repeats, args.threads)
        elif case == "wide":
            r = case_wide(data_dir, args.repeats, args.threads)
        elif case == "features":
            r = case_features(data_dir, args.repeats, args.threads)
        elif case == "inference":
            r = case_inference(data_dir, args.repeats, args.threads)
        elif case == "perceptron":
            r = case_perceptron(data_dir, args.repeats, args.threads)
        elif case == "contention":
            r = case_contention(data_dir, args.repeats, args.threads)
        else:
            r = case_memory(data_dir)
        for one in r if isinstance(r, list) else [r]:
            results.append(one)
            print(report([one], args.markdown), flush=True)


if __name__ == "__main__":
    main()
