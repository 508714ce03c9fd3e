"""Checks that run before anything else touches a user's input.

scipy lets a user build a sparse matrix whose index arrays point outside its own arrays (a
negative or too large index, row pointers that decrease or overrun). scipy's C++ conversions
(``tocsr()``, ``tocoo()``, ``sum_duplicates()``), which scikit-learn's validation calls, then
write out of bounds and corrupt the heap. These checks read the index arrays with numpy only,
modify nothing, and raise a ValueError naming what is wrong before any conversion runs.
"""

import numpy as np
import scipy.sparse as sp

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _index_array(a, what, name):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} is not a valid sparse matrix: its {what} are not 1-D.")
    if a.dtype.kind not in "iu":
        raise ValueError(
            f"{name} is not a valid sparse matrix: its {what} have dtype {a.dtype}, not an "
            "integer type."
        )
    return a


def _check_in_range(a, bound, what, name):
    if a.size and (a.min() < 0 or a.max() >= bound):
        raise ValueError(
            f"{name} is not a valid sparse matrix: a {what} index is out of range "
            f"(valid: 0 to {bound - 1}, found {a.min()} to {a.max()})."
        )


def _check_compressed(X, name, n_major, n_minor, n_values):
    indptr = _index_array(X.indptr, "index pointers (indptr)", name)
    indices = _index_array(X.indices, "indices", name)
    if indptr.shape[0] != n_major + 1:
        raise ValueError(
            f"{name} is not a valid sparse matrix: it has {indptr.shape[0]} index pointers "
            f"(indptr) for {n_major} {'rows' if X.format != 'csc' else 'columns'}; expected "
            f"{n_major + 1}."
        )
    if indptr[0] != 0:
        raise ValueError(
            f"{name} is not a valid sparse matrix: its index pointers (indptr) start at "
            f"{indptr[0]}, not 0."
        )
    if n_major and np.any(indptr[1:] < indptr[:-1]):
        raise ValueError(
            f"{name} is not a valid sparse matrix: its index pointers (indptr) decrease."
        )
    nnz = int(indptr[-1])
    if indices.shape[0] != n_values:
        raise ValueError(
            f"{name} is not a valid sparse matrix: it has {indices.shape[0]} indices for "
            f"{n_values} stored values."
        )
    if nnz > indices.shape[0]:
        raise ValueError(
            f"{name} is not a valid sparse matrix: its index pointers (indptr) end at {nnz}, "
            f"past its {indices.shape[0]} stored values."
        )
    _check_in_range(indices[:nnz], n_minor, "column" if X.format != "csc" else "row", name)


def check_sparse_structure(X, name="X"):
    """Raise ValueError if the sparse matrix or array X has index arrays that do not describe
    a matrix of its shape. Anything that is not a scipy sparse container passes unchecked."""
    if not sp.issparse(X):
        return
    shape = X.shape
    if len(shape) != 2:
        return  # scikit-learn's validation rejects it with its own message
    n_rows, n_cols = (int(s) for s in shape)
    if n_rows < 0 or n_cols < 0:
        raise ValueError(f"{name} is not a valid sparse matrix: its shape {shape} is negative.")
    fmt = X.format
    data = np.asarray(X.data) if fmt not in ("lil", "dok") else None
    if fmt == "csr":
        if data.ndim != 1:
            raise ValueError(f"{name} is not a valid sparse matrix: its data are not 1-D.")
        _check_compressed(X, name, n_rows, n_cols, data.shape[0])
    elif fmt == "csc":
        if data.ndim != 1:
            raise ValueError(f"{name} is not a valid sparse matrix: its data are not 1-D.")
        _check_compressed(X, name, n_cols, n_rows, data.shape[0])
    elif fmt == "bsr":
        r, c = X.blocksize
        if r < 1 or c < 1 or n_rows % r or n_cols % c or data.ndim != 3 or data.shape[1:] != (r, c):
            raise ValueError(
                f"{name} is not a valid sparse matrix: its blocks of shape {data.shape[1:]} "
                f"do not tile its shape {shape}."
            )
        _check_compressed(X, name, n_rows // r, n_cols // c, data.shape[0])
    elif fmt == "coo":
        coords = getattr(X, "coords", None) or (X.row, X.col)
        row = _index_array(coords[0], "row indices", name)
        col = _index_array(coords[1], "column indices", name)
        if data.ndim != 1 or not (row.shape[0] == col.shape[0] == data.shape[0]):
            raise ValueError(
                f"{name} is not a valid sparse matrix: it has {row.shape[0]} row indices, "
                f"{col.shape[0]} column indices and {data.shape[0]} stored values."
            )
        _check_in_range(row, n_rows, "row", name)
        _check_in_range(col, n_cols, "column", name)
    elif fmt == "dia":
        offsets = _index_array(X.offsets, "diagonal offsets", name)
        if data.ndim != 2 or data.shape[0] != offsets.shape[0]:
            raise ValueError(
                f"{name} is not a valid sparse matrix: it has {offsets.shape[0]} diagonal "
                f"offsets for data of shape {data.shape}."
            )
    elif fmt == "lil":
        rows = X.rows
        if len(rows) != n_rows or len(X.data) != n_rows:
            raise ValueError(
                f"{name} is not a valid sparse matrix: it lists {len(rows)} rows for "
                f"{n_rows}."
            )
        for cols, values in zip(rows, X.data):
            if len(cols) != len(values):
                raise ValueError(
                    f"{name} is not a valid sparse matrix: a row has {len(cols)} column "
                    f"indices for {len(values)} values."
                )
            if cols:
                _check_in_range(_index_array(cols, "column indices", name), n_cols, "column",
                                name)
    elif fmt == "dok":
        keys = list(dict.keys(X)) if isinstance(X, dict) else list(X.keys())
        if keys:
            ij = np.asarray(keys)
            if ij.ndim != 2 or ij.shape[1] != 2:
                raise ValueError(f"{name} is not a valid sparse matrix: its keys are not (i, j).")
            _check_in_range(_index_array(ij[:, 0], "row indices", name), n_rows, "row", name)
            _check_in_range(_index_array(ij[:, 1], "column indices", name), n_cols, "column",
                            name)


def check_float32_range(values, name, dtype_param="dtype"):
    """Raise ValueError when a float array's finite values lie beyond float32's range, which
    a float32 model cannot represent (they would become infinite)."""
    if values is None:
        return
    data = values.data if sp.issparse(values) else values
    data = np.asarray(data)
    if data.dtype.kind != "f" or data.dtype.itemsize <= 4 or data.size == 0:
        return
    if np.max(data) > FLOAT32_MAX or np.min(data) < -FLOAT32_MAX:
        raise ValueError(
            f"{name} has values beyond the float32 range (|value| > {FLOAT32_MAX:.4g}), which "
            f"a model computing in float32 cannot represent. Fit with {dtype_param}='float64' "
            "or scale the data."
        )
