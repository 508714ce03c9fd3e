"""Saving and loading estimators (``est.save``, ``fusedmlp.load``: _persist.py over the container
of _archive.py).

- Round trips for every solver, dtype and estimator, with the features that carry state (early
  stopping, dropout, per-step schedules, class weights, label smoothing, feature names, every
  form of hidden_layer_sizes, random_state and dtype): the copy holds the same state, predicts
  bit for bit, and partial_fit and warm-started fits continue exactly as the original does.
- Unfitted estimators; paths (atomic writes), path-like objects and file objects.
- Files edited by hand or crafted: classes off the whitelist, unknown tags, arrays of the wrong
  shape or dtype, parameters and fitted attributes that disagree. Each must raise
  FileFormatError and nothing else; the edits go through read_archive and write_archive, so the
  checksums are valid and only the semantic checks can catch them. Damaged files: truncations
  and bit flips, and once in a child interpreter, to show that no file crashes it.
- pickle, joblib and skops.io keep working; files of a newer format version ask to upgrade.
"""

import hashlib
import io
import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import zipfile
from functools import lru_cache

import joblib
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import fusedmlp
from fusedmlp import FileFormatError, MLPClassifier, MLPRegressor, Perceptron
from fusedmlp import _archive
from fusedmlp._archive import FORMAT_VERSION, read_archive, write_archive
from fusedmlp._persist import _TRANSIENT

N_SAMPLES, N_FEATURES = 96, 6
RANDOM_STATE_INSTANCE = "RandomState(3)"  # made anew for each estimator


# ---- data and estimators --------------------------------------------------------------------


@lru_cache(maxsize=None)
def _base(n=N_SAMPLES):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, N_FEATURES))
    noise = 0.3 * rng.standard_normal((n, 3))
    return X, noise


def data(target, dtype=np.float64):
    """(X, y) for a target kind; X of `dtype`, a DataFrame for 'strings'."""
    X, noise = _base()
    X = X.astype(dtype)
    score = X[:, 0] + 0.5 * X[:, 1] + noise[:, 0]
    if target == "binary":
        return X, (score > 0).astype(int)
    if target == "multiclass":
        return X, np.digitize(score, [-0.6, 0.6])
    if target == "multilabel":
        return X, (X[:, :3] + noise > 0).astype(int)
    if target == "strings":
        pd = pytest.importorskip("pandas")
        frame = pd.DataFrame(X, columns=[f"feature_{i}" for i in range(N_FEATURES)])
        labels = np.array(["cat", "dog", "emu"], dtype=object)[np.digitize(score, [-0.6, 0.6])]
        return frame, pd.Series(labels, dtype=object)
    if target == "regression":
        return X, np.log1p(np.exp(2 * X[:, 0])) + 0.1 * noise[:, 0]
    if target == "regression2":
        return X, np.c_[X[:, 0] - X[:, 1], X[:, 2] ** 2] + 0.1 * noise[:, :2]
    raise ValueError(target)


MLP_CASES = {
    "binary-class-weight": (MLPClassifier, "binary", dict(
        hidden_layer_sizes=(8,), class_weight={0: 1.0, 1: 2.5})),
    "multiclass-early-stopping": (MLPClassifier, "multiclass", dict(
        hidden_layer_sizes=[8, 6], early_stopping=True, validation_fraction=0.25,
        label_smoothing=0.1)),
    "multilabel-unseeded": (MLPClassifier, "multilabel", dict(
        hidden_layer_sizes=7, label_smoothing=0.05, random_state=None)),
    "strings-pandas-dropout-cosine": (MLPClassifier, "strings", dict(
        hidden_layer_sizes=(8,), dropout=0.25, learning_rate="cosine", learning_rate_warmup=3,
        class_weight={"cat": 2.0, "dog": 1.0, "emu": 0.5}, random_state=RANDOM_STATE_INSTANCE)),
    "regression-huber-softplus": (MLPRegressor, "regression", dict(
        loss="huber", out_activation="softplus", hidden_layer_sizes=(8,),
        random_state=RANDOM_STATE_INSTANCE)),
    "regression-2-outputs": (MLPRegressor, "regression2", dict(
        hidden_layer_sizes=(6, 5), dropout=[0.1, 0.2], learning_rate="cosine",
        learning_rate_warmup=2, early_stopping=True, validation_fraction=0.25)),
}
# 'float32' as a string, float64 as numpy's type, float32 as numpy's type
MLP_DTYPES = ["float32", np.float64, np.float32]

PERCEPTRON_CASES = {
    "binary-l2": ("binary", dict(penalty="l2", alpha=1e-3)),
    "multiclass-l2-class-weight": ("multiclass", dict(
        penalty="l2", class_weight={0: 1.0, 1: 2.0, 2: 1.0}, random_state=RANDOM_STATE_INSTANCE)),
    "multiclass-early-stopping-unseeded": ("multiclass", dict(
        early_stopping=True, validation_fraction=0.25, random_state=None)),
    "strings-pandas": ("strings", dict(penalty="elasticnet")),
}


def _random_state(kwargs):
    if kwargs.get("random_state", 0) == RANDOM_STATE_INSTANCE:
        return {**kwargs, "random_state": np.random.RandomState(3)}
    return kwargs


def make_mlp(case, solver, dtype):
    cls, target, kwargs = MLP_CASES[case]
    kwargs = {"random_state": 0, **_random_state(kwargs)}
    if solver == "lbfgs":
        kwargs.pop("dropout", None)  # (refused by L-BFGS)
    est = cls(solver=solver, dtype=dtype, max_iter=4, batch_size=32, **kwargs)
    return est, *data(target)


def make_perceptron(case, x_dtype):
    target, kwargs = PERCEPTRON_CASES[case]
    return Perceptron(max_iter=5, **_random_state(kwargs)), *data(target, x_dtype)


# ---- comparisons ----------------------------------------------------------------------------


def state(est):
    return {k: v for k, v in vars(est).items() if k not in _TRANSIENT}


def without_times(values):
    """State without history_'s wall-clock column, which differs between two runs."""
    values = dict(values)
    if "history_" in values:
        values["history_"] = {k: v for k, v in values["history_"].items() if k != "epoch_time"}
    return values


def assert_same(a, b, where="state"):
    """a and b are equal values of the same types: arrays bit for bit with their dtypes,
    floats bit for bit (NaN and -0.0 included), random states in the same state, objects
    attribute by attribute."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {sorted(set(a) ^ set(b), key=str)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape}"
        if a.dtype == object:
            assert a.tolist() == b.tolist(), where
        else:
            assert a.tobytes() == b.tobytes(), f"{where}: values differ"
    elif isinstance(a, np.random.RandomState):
        assert_same(a.get_state(), b.get_state(), f"{where}.get_state()")
    elif isinstance(a, (float, np.floating)):
        assert np.array(a).tobytes() == np.array(b).tobytes(), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, type) or a is None:
        assert a is b, where
    elif hasattr(a, "__dict__") and not callable(a):
        assert_same(vars(a), vars(b), f"{where}.__dict__")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_predictions(a, b, X):
    for method in ("predict", "predict_proba", "decision_function"):
        if not hasattr(a, method):
            continue
        expected, got = getattr(a, method)(X), getattr(b, method)(X)
        assert_same(expected, got, f"{method}(X)")


def weights(est):
    if isinstance(est, Perceptron):
        return [est.coef_, est.intercept_]
    return est.coefs_ + est.intercepts_


def saved_bytes(est):
    buf = io.BytesIO()
    est.save(buf)
    return buf.getvalue()


def load_bytes(data, **kwargs):
    return fusedmlp.load(io.BytesIO(data), **kwargs)


def round_trip(est):
    return load_bytes(saved_bytes(est))


def continue_both(original, loaded, call):
    """Run `call` on each, from the same global random state (random_state=None draws from
    numpy's global generator)."""
    for est in (original, loaded):
        np.random.seed(12345)
        call(est)


# ---- 1. round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", MLP_DTYPES, ids=["float32-str", "float64-type", "float32-type"])
@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
@pytest.mark.parametrize("case", list(MLP_CASES))
def test_mlp_round_trip_predicts_and_continues_identically(case, solver, dtype):
    est, X, y = make_mlp(case, solver, dtype)
    est.fit(X, y)
    loaded = round_trip(est)

    assert type(loaded) is type(est)
    assert_same(state(est), state(loaded))
    assert_same(est.get_params(), loaded.get_params(), "get_params()")
    assert_same(est.history_, loaded.history_, "history_")
    assert_same_predictions(est, loaded, X)
    if solver != "lbfgs":
        assert loaded._optimizer is not est._optimizer
        assert_same(vars(est._optimizer.schedule), vars(loaded._optimizer.schedule))

    if solver != "lbfgs" and not est.early_stopping:  # (partial_fit refuses early stopping)
        continue_both(est, loaded, lambda e: e.partial_fit(X, y))
        assert_same(weights(est), weights(loaded), "weights after partial_fit")
        assert_same(without_times(state(est)), without_times(state(loaded)))

    continue_both(est, loaded, lambda e: e.set_params(warm_start=True).fit(X, y))
    assert_same(weights(est), weights(loaded), "weights after a warm-started fit")
    assert_same(without_times(state(est)), without_times(state(loaded)))
    assert_same_predictions(est, loaded, X)

    # a loaded model saves and loads again, unchanged
    assert_same(state(loaded), state(round_trip(loaded)))


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(PERCEPTRON_CASES))
def test_perceptron_round_trip_predicts_and_continues_identically(case, x_dtype):
    est, X, y = make_perceptron(case, x_dtype)
    est.fit(X, y)
    loaded = round_trip(est)

    assert_same(state(est), state(loaded))
    assert_same(est.get_params(), loaded.get_params(), "get_params()")
    assert_same_predictions(est, loaded, X)
    assert loaded.coef_.dtype == x_dtype

    if not est.early_stopping:
        continue_both(est, loaded, lambda e: e.partial_fit(X, y))
        assert_same(state(est), state(loaded))
    continue_both(est, loaded, lambda e: e.set_params(warm_start=True).fit(X, y))
    assert_same(state(est), state(loaded))
    assert_same_predictions(est, loaded, X)


def test_numpy_scalars_and_types_in_parameters_keep_their_types():
    # numpy.float64 is a float and numpy.str_ a str: both must come back as numpy's
    X, y = data("multiclass")
    est = MLPClassifier(
        hidden_layer_sizes=(np.int64(6), 5), activation=np.str_("tanh"), alpha=np.float64(1e-3),
        learning_rate_init=np.float32(0.01), shuffle=np.True_, dtype=np.dtype("float64"),
        max_iter=3, random_state=np.int32(1),
    ).fit(X, y)
    loaded = round_trip(est)
    assert_same(state(est), state(loaded))
    assert type(loaded.alpha) is np.float64 and type(loaded.activation) is np.str_
    assert_same_predictions(est, loaded, X)


def test_sparse_multilabel_targets_round_trip():
    sp = pytest.importorskip("scipy.sparse")
    X, Y = data("multilabel")
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0)
    est.fit(X, sp.csr_matrix(Y))
    loaded = round_trip(est)
    assert_same(state(est), state(loaded))
    assert (est.predict(X) != loaded.predict(X)).nnz == 0


def test_models_built_without_fit_round_trip():
    import sklearn.neural_network as sk

    X, y = data("multiclass")
    X_ml, Y_ml = data("multilabel")
    built = [
        MLPClassifier(activation="heaviside").set_weights(
            [np.ones((N_FEATURES, 2)), np.ones((2, 1))], [np.zeros(2), np.zeros(1)],
            classes=["no", "yes"]),
        MLPRegressor(activation="sign", solver="sgd").set_weights(
            [np.ones((N_FEATURES, 2)), np.ones((2, 2))], [np.zeros(2), np.zeros(2)]),
        fusedmlp.from_sklearn(sk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3,
                                               random_state=0).fit(X_ml, Y_ml)),
        fusedmlp.from_sklearn(sk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3,
                                               early_stopping=True, random_state=0).fit(X, y)),
    ]
    for est in built:
        loaded = round_trip(est)
        assert_same(state(est), state(loaded))
        assert_same_predictions(est, loaded, X)


def test_metadata_requests_round_trip():
    import sklearn

    with sklearn.config_context(enable_metadata_routing=True):
        mlp = MLPClassifier(max_iter=3).set_fit_request(sample_weight=True, X_val="validation")
        perceptron = Perceptron().set_fit_request(sample_weight=False)
    for est in (mlp, perceptron):
        loaded = round_trip(est)  # (metadata routing is off again)
        requests = est._metadata_request._serialize()
        assert loaded._metadata_request._serialize() == requests
        without_requests = [{k: v for k, v in state(e).items() if k != "_metadata_request"}
                            for e in (est, loaded)]
        assert_same(*without_requests)
        with sklearn.config_context(enable_metadata_routing=True):
            assert loaded.get_metadata_routing()._serialize() == requests


def test_cuda_engine_on_the_simulator_round_trips_and_continues(monkeypatch):
    pytest.importorskip("fusedmlp._cuda_sim", reason="the CUDA simulator is not built")
    monkeypatch.setenv("FUSEDMLP_CUDA_SIMULATOR", "1")
    X, y = data("multiclass")
    est = MLPClassifier(hidden_layer_sizes=(8,), device="cuda", solver="adam", max_iter=3,
                        batch_size=32, random_state=0, dropout=0.2).fit(X, y)
    loaded = round_trip(est)
    assert loaded.device == "cuda"
    assert_same(state(est), state(loaded))
    assert_same_predictions(est, loaded, X)
    continue_both(est, loaded, lambda e: e.partial_fit(X, y))
    assert_same(weights(est), weights(loaded), "weights after partial_fit on the simulator")
    assert_same(without_times(state(est)), without_times(state(loaded)))


def test_every_checkpoint_of_a_fit_loads(tmp_path):
    pytest.importorskip("sklearn.callback")
    from fusedmlp.callbacks import ModelCheckpoint

    X, y = data("multiclass")
    checkpoint = ModelCheckpoint(tmp_path / "epoch{epoch}.fmlp")  # (saved from inside the fit)
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=4, early_stopping=True,
                        random_state=0)
    est.set_callbacks(checkpoint)
    est.fit(X, y)
    assert len(checkpoint.saved_paths_) == 4
    for path in checkpoint.saved_paths_:
        fusedmlp.load(path).predict(X)


# ---- 2. unfitted estimators, paths and file objects -----------------------------------------


UNFITTED = {
    "classifier": lambda: MLPClassifier(hidden_layer_sizes=[5, 4], dtype=np.float32,
                                        class_weight={0: 2.0, 1: 1.0}, dropout=(0.1, 0.2),
                                        random_state=np.random.RandomState(5), max_iter=3),
    "regressor": lambda: MLPRegressor(hidden_layer_sizes=6, loss="quantile", quantile=0.3,
                                      learning_rate="onecycle", max_iter=3, random_state=2),
    "perceptron": lambda: Perceptron(penalty="l1", class_weight="balanced", random_state=None,
                                     max_iter=5),
}


@pytest.mark.parametrize("name", list(UNFITTED))
def test_unfitted_estimator_round_trips_and_stays_unfitted(name):
    est = UNFITTED[name]()
    loaded = round_trip(est)
    assert_same(state(est), state(loaded))
    assert_same(est.get_params(), loaded.get_params(), "get_params()")
    with pytest.raises(NotFittedError):
        check_is_fitted(loaded)
    # and fits as the original does
    X, y = data("regression" if name == "regressor" else "binary")
    continue_both(est, loaded, lambda e: e.fit(X, y))
    assert_same(without_times(state(est)), without_times(state(loaded)))


@lru_cache(maxsize=None)
def fitted_bytes(kind):
    """A saved model of each kind the edits below start from."""
    X, y = data("regression" if kind == "regressor" else "multiclass")
    if kind == "adam":
        est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0,
                            early_stopping=True, dropout=0.1)
    elif kind == "sgd":
        est = MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", max_iter=3, random_state=0,
                            dtype="float64", learning_rate="cosine", learning_rate_warmup=2)
    elif kind == "regressor":
        est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    elif kind == "random_state":
        est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3,
                            random_state=np.random.RandomState(0))
    else:
        est = Perceptron(max_iter=3, penalty="l2")
    return saved_bytes(est.fit(X, y))


def test_save_to_a_path_is_atomic_and_keeps_permissions(tmp_path):
    est = load_bytes(fitted_bytes("adam"))
    path = tmp_path / "model.fmlp"
    est.save(path)  # a pathlib.Path
    assert os.listdir(tmp_path) == ["model.fmlp"]
    assert_same(state(est), state(fusedmlp.load(path)))
    os.chmod(path, 0o600)
    est.save(str(path))  # a str, over the old file
    assert os.listdir(tmp_path) == ["model.fmlp"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert_same(state(est), state(fusedmlp.load(str(path))))


def test_a_failed_save_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    est = load_bytes(fitted_bytes("adam"))
    path = tmp_path / "model.fmlp"
    est.save(path)
    before = path.read_bytes()

    def write_half_then_fail(fileobj, header_bytes, payload):
        fileobj.write(b"PK\x03\x04 half a model")
        raise OSError("disk full")

    monkeypatch.setattr(_archive, "_write_zip", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        est.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.fmlp"] and path.read_bytes() == before

    # what a model file cannot hold is refused before anything is written
    X, y = data("binary")
    sparse = Perceptron(max_iter=3).fit(X, y).sparsify()
    with pytest.raises(TypeError, match="densify"):
        sparse.save(path)
    assert os.listdir(tmp_path) == ["model.fmlp"] and path.read_bytes() == before


def test_file_objects_seekable_or_not(tmp_path):
    est = load_bytes(fitted_bytes("sgd"))
    path = tmp_path / "model.fmlp"
    with open(path, "wb") as f:
        est.save(f)
        assert not f.closed
    with open(path, "rb") as f:
        assert_same(state(est), state(fusedmlp.load(f)))

    class Stream(io.RawIOBase):  # a pipe or a socket: no seek, no tell
        def __init__(self, data=b""):
            self.chunks, self.data = [], data

        def writable(self):
            return True

        def readable(self):
            return True

        def write(self, b):
            self.chunks.append(bytes(b))
            return len(b)

        def readinto(self, b):
            n = min(len(b), len(self.data))
            b[:n], self.data = self.data[:n], self.data[n:]
            return n

    out = Stream()
    est.save(out)
    assert_same(state(est), state(fusedmlp.load(io.BufferedReader(Stream(b"".join(out.chunks))))))


def test_max_bytes_bounds_what_a_file_may_decompress_to():
    data_ = fitted_bytes("adam")
    header = _archive.describe(io.BytesIO(data_))
    header_size = len(zipfile.ZipFile(io.BytesIO(data_)).read(_archive.HEADER_MEMBER))
    arrays_size = sum(entry["nbytes"] for entry in header["manifest"].values())
    with pytest.raises(FileFormatError, match="max_bytes") as info:
        load_bytes(data_, max_bytes=header_size + arrays_size // 2)
    assert type(info.value) is FileFormatError
    load_bytes(data_, max_bytes=10 * len(data_) + 100_000)


# ---- 3. files edited by hand or crafted ------------------------------------------------------


def edited(kind, edit):
    """The saved model `kind` after `edit(meta, arrays)`, written back with valid checksums."""
    file_kind, meta, arrays = read_archive(io.BytesIO(fitted_bytes(kind)))
    new_kind = edit(meta, arrays)
    buf = io.BytesIO()
    write_archive(buf, new_kind or file_kind, meta, arrays)
    return buf.getvalue()


def attrs(meta):
    """The estimator's attributes in the file's JSON."""
    return meta["state"]["__dict__"]


def array_of(meta, *path):
    """The name of the array at `path` in the estimator's attributes."""
    node = attrs(meta)
    for key in path:
        node = node[key]
    return node["__array__"]


def opt(meta):
    return attrs(meta)["_optimizer"]["state"]["__dict__"]


def assert_refused(data_, match):
    with pytest.raises(FileFormatError, match=match) as info:
        load_bytes(data_)
    assert type(info.value) is FileFormatError, type(info.value)
    return str(info.value)


def _set(key, value):
    def edit(meta, arrays):
        attrs(meta)[key] = value
    return edit


def _delete(key):
    def edit(meta, arrays):
        del attrs(meta)[key]
    return edit


def _delete_in(getter, key):
    def edit(meta, arrays):
        del getter(meta)[key]
    return edit


def _replace_array(path, make):
    def edit(meta, arrays):
        name = array_of(meta, *path)
        arrays[name] = make(arrays[name])
    return edit


def _optimizer_array(key, make):
    def edit(meta, arrays):
        name = opt(meta)[key]["__array__"]
        arrays[name] = make(arrays[name])
    return edit


def _set_in(getter, key, value):
    def edit(meta, arrays):
        getter(meta)[key] = value
    return edit


def _random_state_field(index, value):
    def edit(meta, arrays):
        attrs(meta)["random_state"]["__random_state__"][index] = value
    return edit


def _both_classes(make):
    def edit(meta, arrays):
        for name in (attrs(meta)["classes_"]["__array__"],
                     attrs(meta)["_label_binarizer"]["state"]["__dict__"]["classes_"]["__array__"]):
            arrays[name] = make(arrays[name])
    return edit


def _meta(key, value):
    def edit(meta, arrays):
        meta[key] = value
    return edit


def _feature_names(names):
    def edit(meta, arrays):
        arrays["names"] = np.array(names)
        attrs(meta)["feature_names_in_"] = {"__array__": "names", "object": True}
    return edit


def _kind(kind):
    return lambda meta, arrays: kind


EMPTY = {"__dict__": {}}
EDITS = {
    # classes off the whitelist, unknown tags: nothing in a file names code
    "object-os-system": ("adam", _set("_optimizer", {"__object__": "os.system", "state": EMPTY}),
                         "os.system"),
    "object-Popen": ("adam", _set("_optimizer", {"__object__": "Popen", "state": {"__dict__": {
        "args": ["sh", "-c", "touch pwned"]}}}), "Popen"),
    "object-subprocess.Popen": ("adam", _set("_label_binarizer", {
        "__object__": "subprocess.Popen", "state": EMPTY}), "subprocess.Popen"),
    "object-an-estimator": ("adam", _set("_optimizer", {"__object__": "MLPClassifier",
                                                         "state": EMPTY}), "MLPClassifier"),
    "type-builtins-eval": ("adam", _set("_output_dtype", {"__type__": "builtins.eval"}),
                           "__type__"),
    "unknown-tag-reduce": ("adam", _set("alpha", {"__reduce__": ["os.system", ["echo pwned"]]}),
                           "unknown tag"),
    "unknown-tag-plain-object": ("adam", _set("alpha", {"value": 1.0}), "unknown tag"),
    "tag-with-extra-key": ("adam", _set("alpha", {"__float__": "nan", "__reduce__": "x"}),
                           "keys"),
    "dtype-object": ("adam", _set("_output_dtype", {"__dtype__": "object"}), "not allowed"),
    "scalar-float16": ("adam", _set("alpha", {"__scalar__": "float16", "value": 1.0}),
                       "not allowed"),
    "scalar-object": ("adam", _set("alpha", {"__scalar__": "object", "value": "x"}),
                      "not allowed"),
    "scalar-out-of-range": ("adam", _set("alpha", {"__scalar__": "int8", "value": 300}),
                            "range"),
    "float-not-non-finite": ("adam", _set("alpha", {"__float__": "1e-3"}), "non-finite"),
    "attribute-hides-a-method": ("adam", _set("predict", "x"), "hide"),
    "attribute-dunder": ("adam", _set("__class__", "x"), "not allowed"),
    "helper-attribute-hides-a-method": ("adam", _set_in(opt, "arrays", 1), "hide"),
    "dict-body-not-an-object": ("adam", _set("history_", {"__dict__": [1, 2]}), "malformed"),
    "items-not-pairs": ("adam", _set("class_weight", {"__items__": [[1, 2, 3]]}), "malformed"),
    "array-not-in-the-file": ("adam", _set("classes_", {"__array__": "nope"}), "does not hold"),
    "array-flagged-object-not-text": ("adam", _set("classes_", {
        "__array__": "a0", "object": True}), "malformed"),
    "state-not-a-dict": ("adam", _meta("state", [1, 2]), "not a dict"),
    "meta-extra-key": ("adam", _meta("extra", 1), "metadata"),
    "metadata-requests-unknown-parameter": ("adam", _meta("metadata_requests", {
        "fit": {"nope": True}}), "metadata requests"),
    "metadata-requests-unknown-method": ("adam", _meta("metadata_requests", {
        "system": {"command": "echo pwned"}}), "metadata requests"),
    "metadata-request-in-the-state": ("adam", _set("_metadata_request", {"__dict__": {}}),
                                      "metadata_requests"),
    "kind-not-an-estimator": ("adam", _kind("LabelBinarizer"), "not a fusedmlp estimator"),
    "kind-a-dotted-name": ("adam", _kind("os.system"), "not a fusedmlp estimator"),
    # arrays that disagree
    "coefs-another-shape": ("adam", _replace_array(
        ("coefs_", 0), lambda a: np.zeros((3, 3), a.dtype)), "shapes"),
    "coefs-int64": ("adam", _replace_array(("coefs_", 1), lambda a: a.astype(np.int64)),
                    "dtype"),
    "coefs-mixed-dtypes": ("adam", _replace_array(("coefs_", 1), lambda a: a.astype(np.float64)),
                           "dtype"),
    "intercepts-too-short": ("adam", _replace_array(("intercepts_", 0), lambda a: a[:-1]),
                             "shapes"),
    "adam-m-wrong-length": ("adam", _optimizer_array("m", lambda a: a[:-1]), "'m'"),
    "adam-v-other-dtype": ("adam", _optimizer_array("v", lambda a: a.astype(np.float64)),
                           "dtypes"),
    "adam-v-2d": ("adam", _optimizer_array("v", lambda a: a.reshape(1, -1)), "'v'"),
    "adam-t-float": ("adam", _optimizer_array("_t", lambda a: a.astype(np.float64)), "'t'"),
    "adam-t-negative": ("adam", _optimizer_array("_t", lambda a: -a - 1), "'t'"),
    "sgd-velocity-wrong-length": ("sgd", _optimizer_array("velocity",
                                                          lambda a: np.append(a, 0.0)),
                                  "'velocity'"),
    "best-params-wrong-length": ("adam", _replace_array(("_best_params",), lambda a: a[1:]),
                                 "snapshot"),
    "n-features-in-disagrees": ("adam", _set("n_features_in_", N_FEATURES + 1), "n_features_in_"),
    "n-outputs-disagrees": ("adam", _set("n_outputs_", 2), "n_outputs_"),
    "n-layers-disagrees": ("adam", _set("n_layers_", 5), "n_layers_"),
    "classes-disagree-with-binarizer": ("adam", _replace_array(("classes_",), lambda a: a[:2]),
                                        "disagree"),
    "classes-do-not-fit-outputs": ("adam", _both_classes(lambda a: a[:2]), "do not fit"),
    "classifier-out-activation": ("adam", _set("out_activation_", "identity"), "classifier"),
    "regressor-out-activation": ("regressor", _set("out_activation_", "softmax"),
                                 "out_activation_"),
    "binarizer-sparse-output": ("adam", _set_in(
        lambda m: attrs(m)["_label_binarizer"]["state"]["__dict__"], "sparse_output", True),
        "sparse_output"),
    "binarizer-y-type": ("adam", _set_in(
        lambda m: attrs(m)["_label_binarizer"]["state"]["__dict__"], "y_type_", "continuous"),
        "y_type_"),
    # random states: numpy indexes its 624 words with the position unchecked
    "random-state-position": ("random_state", _random_state_field(2, 10**8), "random state"),
    "random-state-negative-position": ("random_state", _random_state_field(2, -10**8),
                                       "random state"),
    "random-state-kind": ("random_state", _random_state_field(0, "PCG64"), "random state"),
    "random-state-short-keys": ("random_state", lambda meta, arrays: arrays.__setitem__(
        attrs(meta)["random_state"]["__random_state__"][1]["__array__"], np.zeros(10, np.uint32)),
        "random state"),
    "random-state-not-a-list": ("random_state", _set("random_state", {
        "__random_state__": "MT19937"}), "malformed"),
    # parameters and fitted attributes
    "invalid-activation": ("adam", _set("activation", "nope"), "activation"),
    "invalid-solver-type": ("adam", _set("solver", 3), "solver"),
    "invalid-hidden-layer-sizes": ("adam", _set("hidden_layer_sizes", ["a"]),
                                   "hidden_layer_sizes"),
    "invalid-class-weight-values": ("adam", _set("class_weight", {"__items__": [[0, "x"]]}),
                                    "class_weight"),
    "missing-parameter": ("adam", _delete("alpha"), "alpha"),
    "missing-fitted-attribute": ("adam", _delete("t_"), "t_"),
    "missing-binarizer": ("adam", _delete("_label_binarizer"), "_label_binarizer"),
    "counter-a-string": ("adam", _set("n_iter_", "3"), "n_iter_"),
    "dropout-seed-out-of-range": ("adam", _set("_dropout_seed", 2**40), "_dropout_seed"),
    "history-not-numbers": ("adam", _set("history_", {"__dict__": {"loss": ["x"]}}),
                            "history_"),
    "history-ragged": ("adam", _set("history_", {"__dict__": {"loss": [1.0],
                                                               "val_loss": []}}), "history_"),
    "loss-curve-not-a-list": ("sgd", _set("loss_curve_", 3), "loss_curve_"),
    "optimizer-unknown-attribute": ("adam", _set_in(opt, "extra", 1), "unknown attributes"),
    "optimizer-missing-attribute": ("sgd", _delete_in(opt, "momentum"), "momentum"),
    "optimizer-rate-a-string": ("sgd", _set_in(opt, "learning_rate", "0.1"), "learning_rate"),
    "optimizer-not-an-optimizer": ("adam", _set("_optimizer", {
        "__object__": "Schedule", "state": EMPTY}), "optimizer"),
    "schedule-step-a-string": ("sgd", _set_in(lambda m: opt(m)["schedule"]["state"]["__dict__"],
                                              "step", "3"), "step"),
    "schedule-kind-unknown": ("sgd", _set_in(lambda m: opt(m)["schedule"]["state"]["__dict__"],
                                             "kind", "nope"), "kind"),
    "feature-names-wrong-length": ("adam", _feature_names(["a", "b"]), "feature_names_in_"),
    # the Perceptron
    "perceptron-coef-shape": ("perceptron", _replace_array(("coef_",), lambda a: a[:, :-1]),
                              "shapes"),
    "perceptron-coef-int": ("perceptron", _replace_array(("coef_",), lambda a: a.astype(int)),
                            "dtypes"),
    "perceptron-intercept-length": ("perceptron", _replace_array(("intercept_",),
                                                                 lambda a: a[:1]), "shapes"),
    "perceptron-classes-2d": ("perceptron", _replace_array(("classes_",),
                                                           lambda a: a.reshape(1, -1)),
                              "classes_"),
    "perceptron-invalid-penalty": ("perceptron", _set("penalty", "l3"), "penalty"),
    "perceptron-random-state-position": ("perceptron", _set("random_state", {
        "__random_state__": ["MT19937", {"__array__": "a0"}, 10**8, 0, 0.0]}), "random state"),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_edited_file_raises_file_format_error_only(name):
    kind, edit, match = EDITS[name]
    load_bytes(fitted_bytes(kind))  # (the unedited file loads)
    assert_refused(edited(kind, edit), match)


def _rewrite_zip(data_, header=None, members=None):
    """`data_` with its JSON header changed by `header(dict)` and members replaced by
    `members` ({name: bytes}); written with zipfile, so CRCs are right."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data_)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            raw = zin.read(info)
            if info.filename == _archive.HEADER_MEMBER and header is not None:
                parsed = json.loads(raw)
                header(parsed)
                raw = json.dumps(parsed).encode()
            if members and info.filename in members:
                raw = members[info.filename]
            zout.writestr(info, raw, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _smuggled(array_name, dtype_str, npy_bytes, data_bytes, shape, kind="adam"):
    """A consistent file (manifest, checksums, CRCs) whose array `array_name` has a dtype
    write_archive refuses."""
    def header(h):
        h["manifest"][array_name] = {
            "dtype": dtype_str, "shape": list(shape), "nbytes": len(data_bytes),
            "sha256": hashlib.sha256(data_bytes).hexdigest(),
        }
    return _rewrite_zip(fitted_bytes(kind), header, {f"arrays/{array_name}.npy": npy_bytes})


def _coefs0_name(kind="adam"):
    _, meta, arrays = read_archive(io.BytesIO(fitted_bytes(kind)))
    return array_of(meta, "coefs_", 0), arrays[array_of(meta, "coefs_", 0)]


def test_float16_array_is_refused():
    name, coefs = _coefs0_name()
    half = coefs.astype(np.float16)
    npy = io.BytesIO()
    np.lib.format.write_array(npy, half, allow_pickle=False)
    message = assert_refused(_smuggled(name, "<f2", npy.getvalue(), half.tobytes(), half.shape),
                             "dtype")
    assert "<f2" in message


class _OpensAFile:
    """Unpickling this creates a file: the proof that something was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    name, _ = _coefs0_name()
    objects = np.empty(1, dtype=object)
    objects[0] = _OpensAFile(str(marker))
    npy = io.BytesIO()
    np.lib.format.write_array(npy, objects, allow_pickle=True)
    payload = npy.getvalue()
    data_ = _smuggled(name, "|O", payload, payload[-8:], (1,))
    assert_refused(data_, "object")
    # the same payload as the manifest's own dtype, and as a whole pickled model
    data_ = _smuggled(name, "<f4", payload, b"\0" * 4, (1,))
    assert_refused(data_, ".")
    assert_refused(pickle.dumps(load_bytes(fitted_bytes("adam"))), "pickle")
    assert not marker.exists()


# ---- damaged files --------------------------------------------------------------------------


def _load_or_refuse(data_, reference):
    """Either FileFormatError, or the model `reference` itself, state and predictions."""
    try:
        loaded = load_bytes(data_)
    except FileFormatError as e:
        assert type(e) is FileFormatError
        return "refused"
    assert_same(state(reference), state(loaded))
    X, _ = data("multiclass")
    assert_same_predictions(reference, loaded, X)
    return "loaded"


def test_truncated_and_bit_flipped_files():
    original = fitted_bytes("adam")
    reference = load_bytes(original)
    offsets = np.unique(np.linspace(0, len(original) - 1, 40).astype(int))
    for offset in offsets:
        assert _load_or_refuse(original[:offset], reference) == "refused", offset
    rng = np.random.default_rng(20240601)
    outcomes = {"refused": 0, "loaded": 0}
    for position, bit in zip(rng.integers(0, len(original), 200), rng.integers(0, 8, 200)):
        damaged = bytearray(original)
        damaged[position] ^= 1 << bit
        outcomes[_load_or_refuse(bytes(damaged), reference)] += 1
    assert outcomes["refused"] > 150  # (flips in timestamps and attributes change nothing)


CHILD = textwrap.dedent("""
    import io, random, sys, warnings
    import numpy as np
    import fusedmlp
    from fusedmlp import FileFormatError
    from fusedmlp._archive import read_archive, write_archive

    warnings.simplefilter("ignore")
    original = open(sys.argv[1], "rb").read()
    X = np.load(sys.argv[2])
    rng = random.Random(7)
    kind, meta, arrays = read_archive(io.BytesIO(original))
    VALUES = [None, True, 0, -1, 2**63, 1e308, "", "relu", [], [1], {}, {"__dict__": {}},
              {"__float__": "nan"}, {"__scalar__": "int64", "value": 3}, {"__array__": "a0"},
              {"__type__": "float32"}, {"__object__": "Schedule", "state": {"__dict__": {}}},
              {"__random_state__": ["MT19937", {"__array__": "a0"}, 10**8, 0, 0.0]}]

    def paths(node, path=()):
        if path:
            yield path
        children = node.items() if isinstance(node, dict) else (
            enumerate(node) if isinstance(node, list) else ())
        for key, child in children:
            yield from paths(child, path + (key,))

    def semantic_edit():
        import copy
        m, a = copy.deepcopy(meta), dict(arrays)
        path = rng.choice(list(paths(m["state"])))
        node = m["state"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        if rng.random() < 0.3:
            name = rng.choice(sorted(a))
            a[name] = a[name].astype(rng.choice([np.int64, np.float32, np.float64]))
        out = io.BytesIO()
        write_archive(out, kind, m, a)
        return out.getvalue()

    def damaged():
        choice = rng.random()
        data = bytearray(original)
        if choice < 0.3:
            return bytes(data[:rng.randrange(len(data))])
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)

    counts = {"refused": 0, "loaded": 0}
    for i in range(100):
        data = semantic_edit() if i % 2 else damaged()
        try:
            est = fusedmlp.load(io.BytesIO(data))
        except FileFormatError as e:
            if type(e) is not FileFormatError:
                print("UNEXPECTED", i, type(e).__name__, e)
            counts["refused"] += 1
            continue
        except Exception as e:
            print("UNEXPECTED", i, type(e).__name__, e)
            continue
        counts["loaded"] += 1
        for call in (lambda: est.predict(X), lambda: est.partial_fit(X, est.predict(X)),
                     lambda: est.set_params(warm_start=True).fit(X, est.predict(X))):
            try:  # (an edited parameter may fail with its own error; nothing may crash)
                call()
            except Exception:
                pass
    print("DONE", counts["refused"], counts["loaded"])
""")


def test_fuzzed_files_never_crash_a_child_interpreter(tmp_path):
    model = tmp_path / "model.fmlp"
    model.write_bytes(fitted_bytes("sgd"))
    X, _ = data("multiclass")
    np.save(tmp_path / "X.npy", X)
    script = tmp_path / "fuzz.py"
    script.write_text(CHILD)
    result = subprocess.run(
        [sys.executable, str(script), str(model), str(tmp_path / "X.npy")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, (result.returncode, result.stdout[-2000:],
                                    result.stderr[-2000:])
    assert "UNEXPECTED" not in result.stdout, result.stdout
    done = [line for line in result.stdout.splitlines() if line.startswith("DONE")]
    assert done, result.stdout
    refused, loaded = map(int, done[0].split()[1:])
    assert refused + loaded == 100 and refused > 50


# ---- 4. pickle, joblib, skops.io ------------------------------------------------------------


def _pickle(est):
    return pickle.loads(pickle.dumps(est))


def _joblib(est):
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    return joblib.load(buf)


@pytest.mark.parametrize("copy_", [_pickle, _joblib], ids=["pickle", "joblib"])
@pytest.mark.parametrize("kind", ["adam", "sgd", "perceptron"])
def test_pickle_and_joblib_still_round_trip(copy_, kind):
    if kind == "perceptron":
        est, X, y = make_perceptron("multiclass-l2-class-weight", np.float64)
    else:
        est, X, y = make_mlp("strings-pandas-dropout-cosine", kind, "float32")
    est.fit(X, y)
    copied = copy_(est)
    assert_same(state(est), state(copied))
    assert_same_predictions(est, copied, X)
    continue_both(est, copied, lambda e: e.partial_fit(X, y))
    assert_same(weights(est), weights(copied), "weights after partial_fit")
    assert_same(without_times(state(est)), without_times(state(copied)))


# What skops.io reports as untrusted in a fitted fusedmlp model (LabelBinarizer, RandomState,
# numpy arrays and types are on skops's own list):
#   fusedmlp._multilayer_perceptron.MLPClassifier, fusedmlp._multilayer_perceptron.MLPRegressor,
#   fusedmlp._perceptron.Perceptron,
#   fusedmlp._params.AdamOptimizer, fusedmlp._params.SGDOptimizer, fusedmlp._params.Schedule
SKOPS_UNTRUSTED = {
    "fusedmlp._multilayer_perceptron.MLPClassifier",
    "fusedmlp._multilayer_perceptron.MLPRegressor",
    "fusedmlp._perceptron.Perceptron",
    "fusedmlp._params.AdamOptimizer",
    "fusedmlp._params.SGDOptimizer",
    "fusedmlp._params.Schedule",
}


@pytest.mark.parametrize("kind", ["adam", "sgd", "regressor", "perceptron", "random_state"])
def test_skops_round_trips_with_fusedmlp_types_trusted(kind):
    sio = pytest.importorskip("skops.io")
    est = load_bytes(fitted_bytes(kind))
    X, _ = data("regression" if kind == "regressor" else "multiclass")
    dumped = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=dumped)
    assert untrusted and set(untrusted) <= SKOPS_UNTRUSTED, untrusted
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.loads(dumped)
    copied = sio.loads(dumped, trusted=untrusted)
    assert_same_predictions(est, copied, X)


# ---- 5. format versions ---------------------------------------------------------------------


def test_a_newer_format_version_asks_to_upgrade():
    def newer(header):
        header["format_version"] = FORMAT_VERSION + 1
        header["layers"] = []
    message = assert_refused(_rewrite_zip(fitted_bytes("adam"), newer), "upgrade")
    assert f"version {FORMAT_VERSION + 1}" in message and "layers" in message


def test_a_format_version_that_does_not_exist_is_refused():
    def older(header):
        header["format_version"] = 0
    assert_refused(_rewrite_zip(fitted_bytes("adam"), older), "does not exist")
