"""Training on data larger than memory: blocks of rows streamed through ``partial_fit``.

The data stays where it is (a Dask array, a memory-mapped ``.npy`` file, any numpy array);
each epoch reads it once, a few blocks at a time, in a random block order, and hands each
group of blocks to the estimator's ``partial_fit`` with its rows shuffled: the block shuffle
plus shuffle buffer of ``tf.data`` and of PyTorch's buffered shuffling of iterable datasets.
Dask is optional: nothing here imports it unless the caller passes a Dask array.
"""

import inspect
import os
import sys
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.utils import check_random_state

__all__ = ["fit_stream"]

# block_rows=None on numpy input: rows enough for about this many bytes of X per block
_DEFAULT_BLOCK_BYTES = 32 * 2**20


def fit_stream(estimator, X, y, *, epochs=1, block_rows=None, buffer_blocks=4, shuffle=True,
               classes=None, sample_weight=None, random_state=None):
    """Train an estimator with ``partial_fit`` over data read block by block, epoch by epoch.

    Each epoch takes the blocks of rows in a random order (``shuffle=True``), groups them
    ``buffer_blocks`` at a time into a buffer, shuffles the buffer's rows, and calls
    ``estimator.partial_fit`` once per buffer. Only one buffer is in memory at a time, so
    ``X`` may be far larger than memory: a Dask array is computed one block at a time (never
    as a whole), a memory-mapped array is read one slice at a time.

    Works with every estimator that has scikit-learn's ``partial_fit``: fusedmlp's
    `MLPClassifier`, `MLPRegressor` (solvers 'sgd' and 'adam') and `Perceptron`, and
    scikit-learn's (``SGDClassifier``, ``SGDRegressor``, ``MLPClassifier``, ``MultinomialNB``,
    ...). The estimator is trained in place, continuing from its current state if it was
    already fitted; the inputs are never modified.

    Parameters
    ----------
    estimator : estimator object
        An estimator with a ``partial_fit`` method. For fusedmlp's and scikit-learn's MLPs,
        ``solver='lbfgs'`` has none, and ``early_stopping=True`` is refused by
        ``partial_fit``.

    X : {dask array, ndarray, numpy memmap, str, path-like} of shape (n_samples, n_features)
        The training data: a Dask array, a numpy array or memmap (e.g.
        ``np.load("X.npy", mmap_mode="r")``), or the path of a ``.npy`` file, which is
        memory-mapped. Other array-likes are converted with ``numpy.asarray``. Sparse
        matrices are not supported.

    y : {dask array, ndarray, numpy memmap, str, path-like} of shape (n_samples,) or \
(n_samples, n_outputs)
        The targets, in any of the forms ``X`` accepts.

    epochs : int, default=1
        The number of passes over the data.

    block_rows : int, default=None
        The rows of a block. None: a Dask array's own row chunks (those of ``X``, or of
        the first Dask array among ``X``, ``y`` and ``sample_weight``); for numpy input,
        enough rows for about 32 MiB of ``X`` per block. Dask arrays whose row chunks
        differ from the blocks are rechunked (lazily, rows only).

    buffer_blocks : int, default=4
        The blocks in one buffer, i.e. in one ``partial_fit`` call. Larger buffers mix rows
        from more parts of the data in each call and cost more memory.

    shuffle : bool, default=True
        Whether to draw a new block order each epoch and shuffle the rows of each buffer.
        False reads the data in order, in consecutive buffers.

    classes : array-like of shape (n_classes,), default=None
        For estimators whose ``partial_fit`` takes ``classes`` (classifiers): the classes,
        passed on the first call when the estimator has no ``classes_`` yet. None computes
        them with one extra pass over ``y`` (``dask.array.unique`` on a Dask array, block by
        block otherwise); for a 2-D ``y`` (multilabel indicators) they are its column
        indices.

    sample_weight : {dask array, ndarray, numpy memmap, str, path-like} of shape \
(n_samples,), default=None
        Weights of the rows, streamed with them.

    random_state : int, RandomState instance or None, default=None
        Draws the block orders and the row shuffles. An int (and an estimator with its own
        fixed ``random_state``) makes the training reproducible.

    Returns
    -------
    estimator : estimator object
        The estimator passed, trained.

    Notes
    -----
    What ``partial_fit`` does, and so what one call per buffer means:

    - fusedmlp's and scikit-learn's MLPs run one epoch over the rows they are given, in
      mini-batches of ``batch_size`` ('auto': ``min(200, n_rows)``; a larger ``batch_size``
      than a buffer's rows is clipped with a warning), shuffled when the estimator's own
      ``shuffle=True``. Everything the estimator does per epoch it does per call, that is
      per buffer: ``loss_curve_`` and ``history_`` gain one entry per call, ``n_iter_`` is
      1 after every call while ``t_`` counts all rows seen; the ``tol`` /
      ``n_iter_no_change`` rule compares the losses of successive buffers ('adaptive'
      divides the rate by 5 when they stop improving); 'exponential' multiplies the rate by
      ``learning_rate_gamma`` per call; 'invscaling' follows ``t_`` as in ``fit``. The
      per-step schedules 'cosine' and 'onecycle' take ``max_iter`` calls as their horizon:
      to anneal over the whole stream, set ``max_iter`` to ``epochs * n_buffers`` with
      ``n_buffers = ceil(n_blocks / buffer_blocks)``.
    - ``Perceptron`` and scikit-learn's SGD estimators run one epoch per call with a
      constant or ``t_``-based learning rate; ``n_iter_`` is 1 after every call.
    - The estimator's own ``random_state`` decides its initial weights and its shuffles
      inside a call; fix both it and this function's ``random_state`` to reproduce a run.

    Memory: the buffer (``buffer_blocks`` blocks, rows shuffled) plus the one block being
    copied into it, and whatever ``partial_fit`` needs for that many rows. A Dask block is
    computed with the active scheduler (a ``distributed.Client``, when one is set, computes
    it on the cluster and sends it to this process).

    Examples
    --------
    A memory-mapped ``.npy`` file, read 300 rows at a time:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from fusedmlp import MLPClassifier, fit_stream
    >>> X, y = load_digits(return_X_y=True)
    >>> path = os.path.join(tempfile.mkdtemp(), "X.npy")
    >>> np.save(path, X / 16)
    >>> clf = MLPClassifier(random_state=0)
    >>> clf = fit_stream(clf, path, y, epochs=30, block_rows=300, random_state=0)
    >>> bool(clf.score(X / 16, y) > 0.95)
    True

    A Dask array, one chunk of rows per block:

    >>> import dask.array as da
    >>> dX = da.from_array(X / 16, chunks=(300, 64))
    >>> dy = da.from_array(y, chunks=300)
    >>> clf = fit_stream(MLPClassifier(random_state=0), dX, dy, epochs=30, random_state=0)
    >>> bool(clf.score(X / 16, y) > 0.95)
    True
    """
    if not hasattr(estimator, "partial_fit"):
        hint = (" (MLPs have partial_fit with solver='sgd' or 'adam' only)"
                if getattr(estimator, "solver", None) == "lbfgs" else "")
        raise TypeError(
            f"fit_stream trains with partial_fit, which {type(estimator).__name__} does not "
            f"have{hint}."
        )
    epochs = _check_positive_int(epochs, "epochs")
    buffer_blocks = _check_positive_int(buffer_blocks, "buffer_blocks")
    if block_rows is not None:
        block_rows = _check_positive_int(block_rows, "block_rows")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool; got {shuffle!r}.")

    X = _as_source(X, "X")
    y = _as_source(y, "y")
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D, of shape (n_samples, n_features); got an array of shape "
            f"{X.shape}. Reshape it, e.g. X.reshape(-1, 1) for a single feature."
        )
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D; got an array of shape {y.shape}.")
    sources = {"X": X, "y": y}
    if sample_weight is not None:
        sample_weight = _as_source(sample_weight, "sample_weight")
        if sample_weight.ndim != 1:
            raise ValueError(
                f"sample_weight must be 1-D; got an array of shape {sample_weight.shape}."
            )
        sources["sample_weight"] = sample_weight
    n_samples = X.shape[0]
    for name, source in sources.items():
        if source.shape[0] != n_samples:
            raise ValueError(
                f"X and {name} have different numbers of rows: {n_samples} and "
                f"{source.shape[0]}."
            )
    if n_samples == 0:
        raise ValueError("X has 0 rows; fit_stream needs at least one.")

    fit_params = inspect.signature(estimator.partial_fit).parameters
    any_keyword = any(p.kind == p.VAR_KEYWORD for p in fit_params.values())
    if sample_weight is not None and "sample_weight" not in fit_params and not any_keyword:
        raise TypeError(
            f"{type(estimator).__name__}.partial_fit does not take sample_weight."
        )
    takes_classes = "classes" in fit_params or (any_keyword and _is_classifier(estimator))
    pass_classes = takes_classes and not hasattr(estimator, "classes_")
    if pass_classes and classes is None:
        classes = _classes_of(y)

    bounds = _block_bounds(sources, n_samples, block_rows)
    blocks = {name: _Blocks(source, bounds) for name, source in sources.items()}
    rng = check_random_state(random_state)
    n_blocks = len(bounds) - 1
    for _ in range(epochs):
        order = rng.permutation(n_blocks) if shuffle else np.arange(n_blocks)
        for start in range(0, n_blocks, buffer_blocks):
            # (in file order within a buffer: contiguous reads; the rows are shuffled anyway)
            ids = np.sort(order[start:start + buffer_blocks])
            rows = _buffer_permutation(bounds, ids, rng if shuffle else None)
            buffer = _read_buffer(blocks, ids, rows)
            kwargs = {}
            if "sample_weight" in buffer:
                kwargs["sample_weight"] = buffer["sample_weight"]
            if pass_classes:
                kwargs["classes"] = classes
                pass_classes = False
            estimator.partial_fit(buffer["X"], buffer["y"], **kwargs)
            del buffer
    return estimator


def _check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
    return int(value)


def _is_classifier(estimator):
    try:
        return is_classifier(estimator)
    except AttributeError:  # (scikit-learn 1.7+, an object without scikit-learn's tags)
        return False


def _is_dask_array(a):
    da = sys.modules.get("dask.array")  # (a Dask array exists only once dask.array is imported)
    return da is not None and isinstance(a, da.Array)


def _as_source(a, name):
    """A Dask array or a numpy array (a memmap for a path), never a copy of an array."""
    if isinstance(a, (str, os.PathLike)):
        try:
            a = np.load(a, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise ValueError(f"{name}: could not memory-map {os.fspath(a)!r} as a .npy file: "
                             f"{e}") from e
        if not isinstance(a, np.ndarray):  # an .npz archive
            raise ValueError(f"{name}: expected a .npy file holding one array.")
        return a
    if _is_dask_array(a):
        if a.ndim and any(np.isnan(c) for c in a.chunks[0]):
            raise ValueError(
                f"{name} is a Dask array with unknown chunk sizes (nan), as after boolean "
                f"indexing or DataFrame.values; call {name}.compute_chunk_sizes() first (or "
                f"to_dask_array(lengths=True) on a Dask DataFrame)."
            )
        return a
    if sp.issparse(a):
        raise TypeError(f"{name} is a sparse matrix; fit_stream reads dense arrays only.")
    if type(a).__module__.startswith(("dask.dataframe", "dask_expr")):
        # numpy.asarray would compute the whole frame into memory
        raise TypeError(
            f"{name} is a Dask DataFrame or Series; pass {name}.to_dask_array(lengths=True), "
            f"which fit_stream reads block by block."
        )
    if isinstance(a, np.ndarray):
        return a
    return np.asarray(a)


def _classes_of(y):
    """The classes in y, read with one pass (a 2-D y holds label indicators: its columns)."""
    if y.ndim == 2 and y.shape[1] > 1:
        return np.arange(y.shape[1])
    if _is_dask_array(y):
        import dask.array as da

        return da.unique(y).compute()
    rows = max(1, _DEFAULT_BLOCK_BYTES // max(1, y.itemsize))
    return np.unique(np.concatenate(
        [np.unique(np.asarray(y[start:start + rows])) for start in range(0, y.shape[0], rows)]
    ))


def _block_bounds(sources, n_samples, block_rows):
    """Row boundaries [0, ..., n_samples] of the blocks."""
    if block_rows is None:
        dask_sources = [s for s in sources.values() if _is_dask_array(s)]
        if dask_sources:
            # (empty chunks, as filtering leaves them, would make empty partial_fit calls)
            return np.unique(np.concatenate([[0], np.cumsum(dask_sources[0].chunks[0])]).astype(np.int64))
        X = sources["X"]
        row_bytes = max(1, X.itemsize * X.shape[1])
        block_rows = max(1, _DEFAULT_BLOCK_BYTES // row_bytes)
    return np.append(np.arange(0, n_samples, block_rows, dtype=np.int64), n_samples)


class _Blocks:
    """Block i of one array (rows bounds[i]:bounds[i+1]) as a numpy view or a Dask block."""

    def __init__(self, source, bounds):
        self.dask = _is_dask_array(source)
        if self.dask:
            chunks = tuple(int(c) for c in np.diff(bounds))
            if tuple(source.chunks[0]) != chunks:
                source = source.rechunk({0: chunks})  # (lazy; rows only)
        self.source = source
        self.bounds = bounds

    def block(self, i):
        if self.dask:
            return self.source.blocks[int(i)]
        return self.source[self.bounds[i]:self.bounds[i + 1]]


def _buffer_permutation(bounds, ids, rng):
    """For the rows of blocks `ids` read one after another: where each goes in the buffer."""
    n_rows = int(sum(bounds[i + 1] - bounds[i] for i in ids))
    if rng is None:
        return np.arange(n_rows)
    return np.argsort(rng.permutation(n_rows))


def _read_buffer(blocks, ids, rows):
    """The blocks `ids` of every array, their rows placed at `rows` in fresh arrays: one block
    in memory at a time beside the buffer."""
    buffer = {}
    offset = 0
    for i in ids:
        parts = {name: b.block(i) for name, b in blocks.items()}
        lazy = [name for name, b in blocks.items() if b.dask]
        if lazy:  # (computed together: X and y may share their inputs)
            import dask

            parts.update(zip(lazy, dask.compute(*(parts[name] for name in lazy))))
        for name, part in parts.items():
            part = np.asarray(part)
            if name not in buffer:
                buffer[name] = np.empty((rows.shape[0],) + part.shape[1:], dtype=part.dtype)
            buffer[name][rows[offset:offset + part.shape[0]]] = part
        offset += part.shape[0]
    return buffer
