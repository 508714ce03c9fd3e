"""fusedmlp on Dask: searches on a LocalCluster, threads in the workers, dask-ml's Incremental,
and fusedmlp.fit_stream over Dask arrays and memory-mapped .npy files."""

import hashlib
import os
import sys
import threading

import numpy as np
import pytest

pytest.importorskip(
    "distributed", reason="the Dask tests need distributed (pip install 'fusedmlp[dask]')"
)
da = pytest.importorskip("dask.array", reason="the Dask tests need dask.array")
import cloudpickle  # noqa: E402  (a dependency of distributed)
import dask  # noqa: E402
import joblib  # noqa: E402
import psutil  # noqa: E402  (a dependency of distributed)
import scipy.sparse as sp  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402
from scipy.stats import loguniform  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin, clone  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits  # noqa: E402
from sklearn.decomposition import IncrementalPCA  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import SGDRegressor  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, train_test_split  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

import fusedmlp  # noqa: E402
from fusedmlp import MLPClassifier, MLPRegressor, Perceptron, fit_stream  # noqa: E402

N_WORKERS = 2
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@pytest.fixture(scope="module")
def client():
    saved_environ = dict(os.environ)
    # The nanny gives each worker distributed.nanny.pre-spawn-environ (OMP_NUM_THREADS=1, ...),
    # except for variables this process already sets, which it passes through: start from
    # Dask's defaults. It also writes them into this process's os.environ, restored below so
    # that later tests' subprocesses do not inherit them.
    for name in _THREAD_VARIABLES:
        os.environ.pop(name, None)
    # (the workers need not import this test module to run the functions sent to them)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        # (dashboard on a free port: None would mean the default, 8787, which another cluster on
        # the machine may hold)
        with LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            yield client
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        os.environ.clear()
        os.environ.update(saved_environ)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=0)


def _mlp(**params):
    # n_threads=1 here; the workers choose their own. The thread count never changes the model.
    defaults = dict(hidden_layer_sizes=(64,), learning_rate_init=0.01, random_state=0,
                    n_threads=1)
    return MLPClassifier(**{**defaults, **params})


# -- searches on the cluster --------------------------------------------------------------


def _fit_on_cluster(client, search, X, y):
    with get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        search.fit(X, y)
    assert tasks.data, "the search ran no task on the cluster"
    return search


def _search(kind, estimator, **kwargs):
    if kind == "grid":
        grid = {"alpha": [1e-4, 1.0], "hidden_layer_sizes": [(8,), (32,)]}
        return GridSearchCV(estimator, grid, cv=3, **kwargs)
    distributions = {"alpha": loguniform(1e-5, 1.0),
                     "learning_rate_init": loguniform(1e-3, 1e-1)}
    return RandomizedSearchCV(estimator, distributions, n_iter=4, cv=3, random_state=0,
                              **kwargs)


@pytest.mark.parametrize("kind", ["grid", "randomized"])
def test_search_on_cluster_matches_n_jobs_1(client, digits, kind):
    X_train, _, y_train, _ = digits
    estimator = _mlp(hidden_layer_sizes=(16,), max_iter=8)
    serial = _search(kind, estimator, n_jobs=1).fit(X_train, y_train)
    # on the cluster the fits use the workers' threads (n_threads=None)
    search = _fit_on_cluster(client, _search(kind, clone(estimator).set_params(n_threads=None)),
                             X_train, y_train)

    assert search.best_params_ == serial.best_params_
    for key in serial.cv_results_:
        if key.startswith(("split", "mean_test", "std_test", "rank_test")):
            np.testing.assert_array_equal(search.cv_results_[key], serial.cv_results_[key],
                                          err_msg=key)
    assert len(set(serial.cv_results_["mean_test_score"])) > 1  # the candidates differ


# -- threads in the workers ---------------------------------------------------------------


def _fit_and_count_threads(n_threads):
    """A fit in a new thread, whose OpenMP thread pool is therefore new: the threads that
    appear in the process during the fit are its team (less the calling thread). Also
    OpenMP's limits as threadpoolctl reads them in that thread."""
    found = {}

    def run():
        rng = np.random.RandomState(0)
        X = rng.rand(400, 64)
        y = (X[:, 0] > 0.5).astype(int)
        before = {t.id for t in psutil.Process().threads()}
        # (one epoch: partial_fit)
        MLPClassifier(hidden_layer_sizes=(64,), n_threads=n_threads,
                      random_state=0).partial_fit(X, y, classes=[0, 1])
        found["team"] = len({t.id for t in psutil.Process().threads()} - before) + 1
        found["max_threads"] = fusedmlp._cpu.max_threads()
        found["openmp"] = {info["filepath"]: info["num_threads"] for info in threadpool_info()
                           if info["user_api"] == "openmp"}
        found["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return found


def test_workers_do_not_oversubscribe_cores(client):
    workers = sorted(client.scheduler_info()["workers"])
    assert len(workers) == N_WORKERS
    futures = [client.submit(_fit_and_count_threads, None, workers=[w], pure=False)
               for w in workers]
    cores = os.cpu_count()
    for worker, found in zip(workers, client.gather(futures)):
        assert found["openmp"], found  # fusedmlp's OpenMP runtime is loaded in the worker
        for path, n in found["openmp"].items():
            assert n * N_WORKERS <= cores, (worker, path, found)
        assert found["max_threads"] * N_WORKERS <= cores, (worker, found)
        assert found["team"] * N_WORKERS <= cores, (worker, found)

    # the count sees a larger team when there is one: n_threads=2 is not limited
    found = client.submit(_fit_and_count_threads, 2, workers=[workers[0]], pure=False).result()
    assert found["team"] == 2, found


# -- dask-ml's Incremental ----------------------------------------------------------------

EPOCHS = 30


def test_incremental_reaches_in_memory_accuracy(client, digits):
    wrappers = pytest.importorskip("dask_ml.wrappers", reason="needs dask-ml")
    X_train, X_test, y_train, y_test = digits
    dX = da.from_array(X_train, chunks=(300, X_train.shape[1]))  # 5 blocks
    dy = da.from_array(y_train, chunks=300)
    assert dX.numblocks[0] > 1
    in_memory = _mlp(max_iter=EPOCHS).fit(X_train, y_train).score(X_test, y_test)

    incremental = wrappers.Incremental(_mlp(), shuffle_blocks=True, random_state=0)
    for _ in range(EPOCHS):
        incremental.partial_fit(dX, dy, classes=np.unique(y_train))
    assert incremental.estimator_.n_iter_ == 1 and incremental.estimator_.t_ == EPOCHS * len(
        y_train)
    predicted = incremental.predict(da.from_array(X_test, chunks=200)).compute()
    accuracy = np.mean(predicted == y_test)
    assert accuracy >= in_memory - 0.01, (accuracy, in_memory)


# -- fusedmlp.fit_stream --------------------------------------------------------------------


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("source", ["dask", "memmap"])
def test_fit_stream_reaches_in_memory_accuracy(client, digits, tmp_path, source):
    X_train, X_test, y_train, y_test = digits
    in_memory = _mlp(max_iter=EPOCHS).fit(X_train, y_train).score(X_test, y_test)
    if source == "dask":  # blocks computed on the cluster (the client is the scheduler)
        X = da.from_array(X_train, chunks=(300, 32))  # (two column chunks)
        y = da.from_array(y_train, chunks=300)
        kwargs = {}
    else:
        X = tmp_path / "X.npy"
        np.save(X, X_train)
        y = np.load(_save(tmp_path / "y.npy", y_train), mmap_mode="r")
        kwargs = {"block_rows": 300}
        digest = _sha256(X)
    clf = fit_stream(_mlp(), X, y, epochs=EPOCHS, buffer_blocks=2, random_state=0, **kwargs)
    accuracy = clf.score(X_test, y_test)
    assert accuracy >= in_memory - 0.01, (accuracy, in_memory)
    assert clf.t_ == EPOCHS * len(y_train)
    if source == "memmap":
        assert _sha256(X) == digest


def _save(path, array):
    np.save(path, array)
    return path


def test_fit_stream_is_reproducible(digits, tmp_path):
    X_train, _, y_train, _ = digits
    path = _save(tmp_path / "X.npy", X_train)

    def run(seed):
        clf = fit_stream(_mlp(), path, y_train, epochs=3, block_rows=100, random_state=seed)
        return np.concatenate([c.ravel() for c in clf.coefs_])

    first = run(0)
    np.testing.assert_array_equal(first, run(0))
    assert not np.array_equal(first, run(1))


@pytest.mark.parametrize("make, data", [
    (lambda: MLPRegressor(hidden_layer_sizes=(16,), random_state=0, n_threads=1), "diabetes"),
    (lambda: Perceptron(random_state=0), "digits"),
    (lambda: SGDRegressor(random_state=0), "diabetes"),
])
def test_fit_stream_in_order_is_partial_fit(make, data, tmp_path):
    """Without shuffling and with every block in one buffer, an epoch is one partial_fit
    call on the whole data, in file order."""
    if data == "diabetes":
        X, y = load_diabetes(return_X_y=True)
        kwargs = {}
    else:
        X, y = load_digits(return_X_y=True)
        kwargs = {"classes": np.unique(y)}
    expected = make()
    for i in range(3):
        expected.partial_fit(X, y, **(kwargs if i == 0 else {}))
    streamed = fit_stream(make(), _save(tmp_path / "X.npy", X), y, epochs=3, block_rows=50,
                          buffer_blocks=10**6, shuffle=False)
    names = [n for n in ("coefs_", "intercepts_", "coef_", "intercept_") if hasattr(expected, n)]
    assert names
    for name in names:
        a, b = getattr(expected, name), getattr(streamed, name)
        a, b = (a, b) if isinstance(a, list) else ([a], [b])
        for a_layer, b_layer in zip(a, b, strict=True):
            np.testing.assert_array_equal(a_layer, b_layer, err_msg=name)
    assert expected.t_ == streamed.t_


class _Recorder:
    """The partial_fit protocol, recording what each call receives (X[:, 0] holds row ids)."""

    def __init__(self, log=None):
        self.calls = []
        self.log = log

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        self.calls.append({"rows": np.asarray(X[:, 0]).astype(int), "X": np.array(X),
                           "y": np.array(y), "sample_weight": sample_weight,
                           "classes": classes})
        if classes is not None:
            self.classes_ = np.asarray(classes)
        if self.log is not None:
            self.log.append(("fit", len(y)))
        return self


N_ROWS, BLOCK_ROWS, BUFFER_BLOCKS, N_EPOCHS = 95, 10, 3, 2  # 10 blocks, 4 calls per epoch


def _row_data():
    rows = np.arange(N_ROWS)
    X = np.column_stack([rows, rows * 2.0, -rows]).astype(np.float64)
    return X, rows % 3, rows * 0.5 + 1.0


def _check_calls(calls, shuffle):
    X, y, sample_weight = _row_data()
    calls_per_epoch = -(-10 // BUFFER_BLOCKS)
    assert len(calls) == N_EPOCHS * calls_per_epoch
    assert calls[0]["classes"] is not None and np.array_equal(calls[0]["classes"], [0, 1, 2])
    assert all(call["classes"] is None for call in calls[1:])
    epochs = []
    for e in range(N_EPOCHS):
        epoch = calls[e * calls_per_epoch:(e + 1) * calls_per_epoch]
        for call in epoch:
            rows = call["rows"]
            # rows of whole blocks, with their own targets, weights and features
            blocks = np.unique(rows // BLOCK_ROWS)
            assert len(blocks) <= BUFFER_BLOCKS
            assert np.array_equal(np.sort(rows),
                                  np.concatenate([np.arange(b * 10, min(b * 10 + 10, N_ROWS))
                                                  for b in blocks]))
            np.testing.assert_array_equal(call["X"], X[rows])
            np.testing.assert_array_equal(call["y"], y[rows])
            np.testing.assert_array_equal(call["sample_weight"], sample_weight[rows])
        order = np.concatenate([call["rows"] for call in epoch])
        assert np.array_equal(np.sort(order), np.arange(N_ROWS))  # each row once per epoch
        epochs.append(order)
    if shuffle:
        assert not np.array_equal(epochs[0], np.arange(N_ROWS))
        assert not np.all(np.diff(calls[0]["rows"]) > 0)  # rows shuffled inside a buffer
        # a new block order each epoch: other blocks share the first buffer
        first_blocks = [set(calls[e * calls_per_epoch]["rows"] // BLOCK_ROWS)
                        for e in range(N_EPOCHS)]
        assert first_blocks[0] != first_blocks[1]
    else:
        assert all(np.array_equal(order, np.arange(N_ROWS)) for order in epochs)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("source", ["numpy", "memmap", "path"])
def test_fit_stream_order_numpy(tmp_path, source, shuffle):
    X, y, sample_weight = _row_data()
    originals = [a.copy() for a in (X, y, sample_weight)]
    if source != "numpy":
        path = _save(tmp_path / "X.npy", X)
        X = path if source == "path" else np.load(path, mmap_mode="r+")
        digest = _sha256(path)
    recorder = fit_stream(_Recorder(), X, y, epochs=N_EPOCHS, block_rows=BLOCK_ROWS,
                          buffer_blocks=BUFFER_BLOCKS, shuffle=shuffle,
                          sample_weight=sample_weight, random_state=0)
    _check_calls(recorder.calls, shuffle)
    if source == "numpy":
        for a, original in zip((X, y, sample_weight), originals):
            np.testing.assert_array_equal(a, original)
            assert a.flags.writeable
    else:
        assert _sha256(path) == digest


# The synchronous scheduler is chosen on purpose while the module's client is alive; dask
# 2025.1 warns about that (2026.8 does not).
@pytest.mark.filterwarnings("ignore:Running on a single-machine scheduler:UserWarning")
def test_fit_stream_dask_blocks_one_at_a_time():
    """Dask blocks are computed one by one, at most a buffer's worth between partial_fit
    calls, each once per epoch; X and y with different chunks are aligned by rechunking."""
    X, y, sample_weight = _row_data()
    log = []

    def logged(block, block_info=None):
        log.append(("block", block_info[0]["array-location"][0][0] // BLOCK_ROWS))
        return block

    dX = da.from_array(X, chunks=(BLOCK_ROWS, 3)).map_blocks(logged, dtype=X.dtype,
                                                             meta=np.empty((0, 0)))
    dy = da.from_array(y, chunks=15)
    dw = da.from_array(sample_weight, chunks=N_ROWS)
    recorder = _Recorder(log)
    with dask.config.set(scheduler="synchronous"):  # (the log is this process's)
        fit_stream(recorder, dX, dy, epochs=N_EPOCHS, buffer_blocks=BUFFER_BLOCKS,
                   sample_weight=dw, random_state=0)
    _check_calls(recorder.calls, shuffle=True)
    pending, per_epoch = 0, []
    seen = []
    for event, value in log:
        if event == "block":
            pending += 1
            seen.append(value)
        else:
            assert 0 < pending <= BUFFER_BLOCKS
            pending = 0
            if len(seen) == 10:
                per_epoch.append(sorted(seen))
                seen = []
    assert per_epoch == [list(range(10))] * N_EPOCHS


def test_fit_stream_classes(tmp_path):
    X, y, _ = _row_data()
    labels = np.array(["b", "a", "c"])[y]
    for y_in in (labels, da.from_array(labels, chunks=7)):
        recorder = fit_stream(_Recorder(), X, y_in, block_rows=BLOCK_ROWS)
        assert list(recorder.calls[0]["classes"]) == ["a", "b", "c"]
    recorder = fit_stream(_Recorder(), X, labels, classes=["c", "b", "a"])
    assert list(recorder.calls[0]["classes"]) == ["c", "b", "a"]
    # no classes for an estimator that already has them
    recorder = _Recorder()
    recorder.classes_ = np.array(["a", "b", "c"])
    assert fit_stream(recorder, X, labels).calls[0]["classes"] is None
    # multilabel indicators: the columns
    Y = np.eye(3, dtype=int)[y]
    assert list(fit_stream(_Recorder(), X, Y).calls[0]["classes"]) == [0, 1, 2]
    # partial_fit(X, y, **kwargs): classes for a classifier, and sample weights
    recorder = fit_stream(_KeywordsClassifier(), X, labels, sample_weight=np.ones(N_ROWS))
    assert list(recorder.calls[0]["classes"]) == ["a", "b", "c"]
    assert recorder.calls[0]["sample_weight"] is not None


class _KeywordsClassifier(ClassifierMixin, BaseEstimator):
    def partial_fit(self, X, y, **kwargs):
        self.calls = getattr(self, "calls", []) + [kwargs]
        return self


def test_fit_stream_errors(tmp_path):
    X, y, _ = _row_data()
    est = _Recorder()
    with pytest.raises(ValueError, match="different numbers of rows: 95 and 94"):
        fit_stream(est, X, y[:-1])
    with pytest.raises(ValueError, match="different numbers of rows"):
        fit_stream(est, da.from_array(X, chunks=10), y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="X must be 2-D"):
        fit_stream(est, X[:, 0], y)
    with pytest.raises(ValueError, match="X must be 2-D"):
        fit_stream(est, X[:, :, None], y)
    with pytest.raises(ValueError, match="y must be 1-D or 2-D"):
        fit_stream(est, X, y[:, None, None])
    with pytest.raises(ValueError, match="0 rows"):
        fit_stream(est, X[:0], y[:0])
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="epochs must be an int >= 1"):
            fit_stream(est, X, y, epochs=bad)
    with pytest.raises(ValueError, match="buffer_blocks must be an int >= 1"):
        fit_stream(est, X, y, buffer_blocks=0)
    with pytest.raises(ValueError, match="block_rows must be an int >= 1"):
        fit_stream(est, X, y, block_rows=0)
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        fit_stream(est, X, y, shuffle="yes")
    with pytest.raises(TypeError, match="partial_fit.*solver='sgd' or 'adam'"):
        fit_stream(MLPClassifier(solver="lbfgs"), X, y)
    with pytest.raises(TypeError, match="RandomForestClassifier does not have"):
        fit_stream(RandomForestClassifier(), X, y)
    with pytest.raises(TypeError, match="does not take sample_weight"):
        fit_stream(IncrementalPCA(), X, y, sample_weight=np.ones(N_ROWS))
    dX = da.from_array(X, chunks=10)
    with pytest.raises(ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes\(\)"):
        fit_stream(est, dX[dX[:, 0] > 10], y[y > 10])
    with pytest.raises(TypeError, match="sparse"):
        fit_stream(est, sp.csr_matrix(X), y)
    np.savez(tmp_path / "data.npz", X=X)
    with pytest.raises(ValueError, match="expected a .npy file"):
        fit_stream(est, tmp_path / "data.npz", y)
    with pytest.raises(ValueError, match="could not memory-map"):
        fit_stream(est, tmp_path / "missing.npy", y)
    assert est.calls == []
