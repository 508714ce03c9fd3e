"""Engine selection: the compiled trainers behind the estimators.

An engine trains and evaluates one network layout in one compute dtype. Every engine has
the same three calls, each one call into native code with the GIL released:

- ``run_epoch(X, Y, sample_weight, order, params, optimizer, hyper)``: a whole epoch of
  mini-batch training over the rows ``order``; returns ``{"accumulated_loss", "samples_seen"}``.
- ``loss_grad(X, Y, sample_weight, params, alpha, grad)``: the full-batch loss, gradient
  written into ``grad`` (the L-BFGS path).
- ``predict(X, params)``: the network's output with the output activation applied.

``X`` is a 2-D float32/float64 numpy array with any strides (converted while batches are
gathered, not copied as a whole: see as_engine_input for the exceptions) or a CSR matrix; ``Y`` and ``sample_weight`` are
C-contiguous arrays of the compute dtype.
"""

import functools
import importlib
import math
import numbers
import os
import sys
import warnings

import numpy as np
import scipy.sparse as sp

from . import _cpu

DEVICES = ("cpu", "cuda", "auto")

# FUSEDMLP_CUDA_SIMULATOR=1 runs device="cuda" on the CUDA engine compiled for the CPU
# simulator (fusedmlp._cuda_sim): the whole device path, kernels included, without a GPU.
# For tests and development; it is slow.
SIMULATOR_ENV = "FUSEDMLP_CUDA_SIMULATOR"


def _cuda_module():
    if os.environ.get(SIMULATOR_ENV) == "1":
        from . import _cuda_sim

        return _cuda_sim
    try:
        from . import _cuda
    except ImportError:
        return None
    return _cuda


# The NVIDIA driver each CUDA major release's runtime needs (Linux, with minor-version
# compatibility); the CUDA engine links its runtime statically, so this is the one requirement.
MIN_DRIVER = {11: "R450", 12: "R525", 13: "R580"}


def _version_text(v):
    return f"{v // 1000}.{v % 1000 // 10}"


def cuda_status(module):
    """(usable devices, why there are none or None, whether the reason is a problem to report):
    no driver or no GPU is a machine without CUDA, a driver too old for the engine's runtime or
    any other runtime error is a problem the user can fix."""
    status = module.device_status()
    if status["count"] > 0:
        return status["count"], None, False
    runtime = status["runtime_version"]
    driver = status["driver_version"]
    if driver == 0:
        return 0, "no NVIDIA driver is installed", False
    if status["error_name"] in ("", "cudaErrorNoDevice"):
        return 0, "the NVIDIA driver reports no CUDA device", False
    reason = f"the CUDA runtime reports {status['error_text']} ({status['error_name']})"
    # (an older minor release of the same major is fine: minor-version compatibility)
    if status["error_name"] == "cudaErrorInsufficientDriver" or driver // 1000 < runtime // 1000:
        reason += (
            f": the installed NVIDIA driver supports CUDA {_version_text(driver)}, and fusedmlp's CUDA "
            f"engine is built with CUDA {_version_text(runtime)}, which needs driver "
            f"{MIN_DRIVER.get(runtime // 1000, 'for CUDA ' + str(runtime // 1000))} or newer. Update the "
            "driver, or install a fusedmlp built with an older CUDA toolkit"
        )
    return 0, reason, True


_reported = set()


def _report_once(reason):
    if reason not in _reported:
        _reported.add(reason)
        warnings.warn(f"fusedmlp cannot use the GPU: {reason}.", RuntimeWarning, stacklevel=3)


def cuda_available():
    """Whether the CUDA engine was built and a CUDA device is usable now. When a GPU is present
    but unusable (a driver too old for the engine's CUDA runtime, a runtime error), also warns
    once with the runtime's reason."""
    try:
        from . import _cuda
    except ImportError:
        return False
    count, reason, problem = cuda_status(_cuda)
    if problem:
        _report_once(reason)
    return count > 0


def check_n_threads(n_threads):
    """n_threads as an int: None or a positive integer (also when set after fit, which
    scikit-learn's parameter validation does not see)."""
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or n_threads < 1:
        raise ValueError(
            f"The 'n_threads' parameter must be None or an int in the range [1, inf); got "
            f"{n_threads!r}."
        )
    return int(n_threads)


def resolve_device(device):
    """The device an estimator's ``device`` parameter selects."""
    if device not in DEVICES:
        raise ValueError(f"The 'device' parameter must be one of {DEVICES}; got {device!r}.")
    if device == "cpu":
        return "cpu"
    module = _cuda_module()
    if module is None:
        count, reason, problem = 0, "this fusedmlp was built without the CUDA engine (see docs/cuda.md)", False
    else:
        count, reason, problem = cuda_status(module)
    if device == "auto":
        if problem:
            _report_once(reason)
        return "cuda" if count > 0 else "cpu"
    if count == 0:
        raise ValueError(
            f"device='cuda' was requested but no usable CUDA device was found: {reason}. "
            "fusedmlp.cuda_available() is False; use device='cpu' or device='auto'."
        )
    return "cuda"


# device="auto" trains on the GPU only when the CPU engine is estimated to need at least
# AUTO_GPU_MIN_MACS multiply-adds for the call (about 20 ms on two cores of the benchmark machine,
# which run about 5e10 a second): below that, the GPU's fixed costs (the CUDA context of a new
# process, copying the data, a host synchronisation per epoch, launch latency) are estimated to
# outweigh what it saves. An estimate, not a GPU measurement (docs/cuda.md); the environment
# variable FUSEDMLP_AUTO_GPU_MIN_MACS replaces it (tools/gpu-check.sh measures the crossover).
AUTO_GPU_MIN_MACS = 1e9


def auto_gpu_min_macs():
    """device='auto''s threshold: FUSEDMLP_AUTO_GPU_MIN_MACS when set, else AUTO_GPU_MIN_MACS."""
    text = os.environ.get("FUSEDMLP_AUTO_GPU_MIN_MACS", "").strip()
    if not text:
        return AUTO_GPU_MIN_MACS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # (NaN included)
        raise ValueError(
            "FUSEDMLP_AUTO_GPU_MIN_MACS must be a number of multiply-adds >= 0 (e.g. 1e9); "
            f"got {text!r}."
        )
    return value


def training_macs(n_samples, layer_units, epochs):
    """Multiply-adds of `epochs` epochs over n_samples rows: the forward product, the weight
    gradient and the data gradient of every layer."""
    weights = sum(a * b for a, b in zip(layer_units[:-1], layer_units[1:]))
    return 3.0 * n_samples * weights * epochs


def activations():
    """The engines' activation registry: one dict per activation (name, derivative, hidden,
    in_sklearn, glorot_factor)."""
    return _cpu.activations()


def losses():
    """The engines' loss registry: one dict per loss (name, canonical_output, regression)."""
    return _cpu.losses()


def shuffled_indices(indices, bit_generator):
    """indices shuffled as numpy.random.RandomState.shuffle shuffles arange(len(indices)), with
    the same draws from the same numpy BitGenerator (the caller holds its lock). numpy's MT19937
    (every RandomState seeded by a number) is drawn inline once its state's layout is confirmed
    (the first call), any other generator through its function pointers."""
    capsule = bit_generator.capsule
    return _cpu.shuffled_indices(indices, capsule, type(bit_generator) is np.random.MT19937
                                 and _mt19937_layout_matches(bit_generator, capsule))


_MT19937_LAYOUT = []  # [whether it matches], once known


def _mt19937_layout_matches(bit_generator, capsule):
    if not _MT19937_LAYOUT:
        state = bit_generator.state["state"]
        _MT19937_LAYOUT.append(bool(_cpu._mt19937_layout_matches(
            capsule, np.ascontiguousarray(state["key"], dtype=np.uint32), int(state["pos"]))))
    return _MT19937_LAYOUT[0]


def default_threads():
    """The team size of n_threads=None: OpenMP's current limit (OMP_NUM_THREADS, threadpoolctl,
    joblib's and Dask's worker limits), capped as scikit-learn caps its own OpenMP code at the
    CPUs this process may use (affinity mask, container quota: joblib.cpu_count()) unless
    OMP_NUM_THREADS says otherwise."""
    return _cpu.default_threads(_usable_cpus())  # (one call: read per prediction)


@functools.lru_cache(maxsize=1)
def _usable_cpus():
    """joblib.cpu_count(), read once: it reads the cgroup files (tens of microseconds, as long
    as a one-row prediction)."""
    from joblib import cpu_count

    return cpu_count()


def make_engine(device, dtype, layer_units, activation, n_threads, loss, out_activation="",
                options=None):
    """A trainer for one layout and head (the loss, its output activation, '' for the loss's
    canonical one) and its options: the loss's, the hidden activation's (by its registry
    name) and ``dropout`` (one rate or one per hidden layer). ``n_threads=None``: see
    default_threads()."""
    units = [int(u) for u in layer_units]
    options = {} if options is None else options
    if device == "cuda":
        module = _cuda_module()
        cls = module.TrainerF32 if dtype == np.float32 else module.TrainerF64
        return cls(units, activation, loss, out_activation, options)
    # the engine runs at most 64 threads; larger requests (any positive int is accepted,
    # as for n_jobs) mean "as many as it runs"
    threads = default_threads() if n_threads is None else min(check_n_threads(n_threads), 64)
    cls = _cpu.TrainerF32 if dtype == np.float32 else _cpu.TrainerF64
    return cls(units, activation, loss, threads, out_activation, options)


# ---- arrays on the device ------------------------------------------------------------------

def is_device_array(X):
    """Whether X lives on a CUDA device (CuPy, Numba, PyTorch CUDA tensors, ...): CPU tensors
    have no __cuda_array_interface__."""
    return hasattr(X, "__cuda_array_interface__")


def array_api_compat():
    """array-api-compat, which gives CuPy and PyTorch the array API's namespace (neither has
    __array_namespace__): scikit-learn's copy (1.7 and later), else the distribution, else
    None."""
    try:
        from sklearn.externals import array_api_compat as compat
    except ImportError:
        try:
            import array_api_compat as compat
        except ImportError:
            return None
    return compat


def _is_instance(X, module, cls):
    """isinstance(X, module.cls) without importing the module (not imported: not its array)."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(X, getattr(loaded, cls))


def namespace(X):
    """The array API namespace of a device array (array-api-compat's wrapper of CuPy or
    PyTorch, or the array's own __array_namespace__), or None (an array exposing nothing but
    __cuda_array_interface__, or array-api-compat is missing)."""
    compat = array_api_compat()
    if compat is None:
        return None
    try:
        return compat.array_namespace(X)
    except TypeError:  # not an array of a library it knows
        return None


def cupy_or_none():
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def to_host(a):
    """A device array's values as a numpy array (other inputs unchanged)."""
    if not is_device_array(a):
        return a
    if _is_instance(a, "cupy", "ndarray"):
        return a.get()
    if _is_instance(a, "torch", "Tensor"):
        return a.cpu().numpy()
    if hasattr(a, "copy_to_host"):  # Numba
        return a.copy_to_host()
    return np.asarray(a)


def current_stream(X):
    """The stream device work on X is ordered on: the current stream of X's library for CuPy
    arrays and PyTorch tensors (where their producers and consumers run), else 0 (the
    engine's own stream, after waiting for the stream X's interface names)."""
    if _is_instance(X, "cupy", "ndarray"):
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    if _is_instance(X, "torch", "Tensor"):
        import torch

        return int(torch.cuda.current_stream(X.device).cuda_stream)
    return 0


def sklearn_float_dtype(X):
    """The float dtype scikit-learn's MLPs would convert X to: float32 X stays float32,
    anything else becomes float64."""
    if is_device_array(X):
        return np.float32 if X.__cuda_array_interface__["typestr"] == "<f4" else np.float64
    dtypes = getattr(X, "dtypes", None)  # a DataFrame: check_array's common type of its columns
    if dtypes is not None and not hasattr(X, "dtype"):
        try:
            common = np.result_type(*[np.dtype(d) for d in dtypes])
        except TypeError:  # extension dtypes
            return np.float64
        return np.float32 if common == np.float32 else np.float64
    return np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64


def validate_device_X(est, X, reset):
    """X on a CUDA device: what validate_data checks, done with the array's namespace."""
    if resolve_device(est.device) != "cuda":
        raise TypeError(
            "X is an array on a CUDA device; fit and predict it with device='cuda' (or "
            "'auto'), or pass the data as a numpy array."
        )
    cai = X.__cuda_array_interface__
    if len(cai["shape"]) != 2:
        raise ValueError(
            f"Expected a 2-dimensional array, got an array of shape {tuple(cai['shape'])}."
        )
    if cai["typestr"] not in ("<f4", "<f8"):
        raise TypeError(
            f"X on a CUDA device must be float32 or float64, got {cai['typestr']!r}."
        )
    n_samples, n_features = cai["shape"]
    if n_samples < 1 or n_features < 1:
        raise ValueError(
            f"Found array with {n_samples} sample(s) and {n_features} feature(s) while a "
            "minimum of 1 is required."
        )
    xp = namespace(X)
    finite = (bool(xp.all(xp.isfinite(X))) if xp is not None
              else _cuda_module().all_finite(X))
    if not finite:
        raise ValueError("Input X contains NaN or infinity.")
    if reset:
        est.n_features_in_ = n_features
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif n_features != est.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {est.__class__.__name__} is expecting "
            f"{est.n_features_in_} features as input."
        )
    return X


def _result_namespace(X):
    """(namespace, device) that device results for X are made with: X's own kind on X's
    device, CuPy on the current device for other device arrays when CuPy is installed, or
    (None, None): numpy results."""
    xp = namespace(X)
    if xp is not None:
        return xp, array_api_compat().device(X)
    if cupy_or_none() is not None and array_api_compat() is not None:
        return importlib.import_module(array_api_compat().__name__ + ".cupy"), None
    return None, None


def device_forward(est, X, cast=False):
    """The network's output for X on the device, as a device array of X's kind (see
    _result_namespace)."""
    X = validate_device_X(est, X, reset=False)
    n_rows = X.__cuda_array_interface__["shape"][0]
    out_dtype = est._prediction_dtype(sklearn_float_dtype(X)) if cast else np.float64
    xp, device = _result_namespace(X)
    engine, params, lease = est._prediction_engine("cuda", n_rows)
    try:
        if xp is None:
            return engine.predict(X, params).astype(out_dtype, copy=False)
        out = xp.empty((n_rows, est.n_outputs_), dtype=xp.float64, device=device)
        engine.predict_into(X, params, out, stream=current_stream(X))
    finally:
        if lease is not None:
            lease.release()
    if out_dtype != np.float64:
        out = xp.astype(out, xp.float32)
    return out


def decode_labels_on_device(est, y_pred):
    """Class labels for device outputs: on the device when the labels are numbers (strings
    cannot live there: then a numpy array)."""
    xp = namespace(y_pred)
    if est.out_activation_ == "softmax":
        index = xp.argmax(y_pred, axis=1)
    elif est.n_outputs_ == 1 and len(est.classes_) == 2:
        index = xp.astype(xp.reshape(y_pred, (-1,)) > 0.5, xp.int64)
    else:  # multilabel, or a single class: LabelBinarizer on the host
        host = to_host(y_pred)
        return est._label_binarizer.inverse_transform(
            host.ravel() if est.n_outputs_ == 1 else host
        )
    if np.issubdtype(est.classes_.dtype, np.number):
        classes = xp.asarray(est.classes_, device=array_api_compat().device(y_pred))
        return xp.take(classes, index, axis=0)
    return est.classes_.take(to_host(index))


class _CSR:
    """A CSR matrix's arrays as the engines read them (int64 row pointers)."""

    format = "csr"

    def __init__(self, data, indices, indptr, shape):
        self.data, self.indices, self.indptr, self.shape = data, indices, indptr, shape


# Training gathers X's rows in shuffled order; a row of a column-ordered X is one cache line
# per feature (California housing's 8 features: 8 misses per row instead of one). Up to this
# size such an X is copied to rows once per fit, as small beside the fit's time as its memory.
ROW_COPY_BYTES = 64 << 20


def rows_contiguous(X):
    """Whether each row of a 2-D array is contiguous, rows in increasing addresses."""
    return X.strides[1] == X.itemsize and X.strides[0] >= X.shape[1] * X.itemsize


def as_engine_input(X, device="cpu", gathered=False):
    """X as the engines read it: a device array or the numpy array itself, or CSR arrays
    checked for validity.

    Nothing the user passed is modified or copied, except that CSC becomes CSR, 32-bit row
    pointers become 64-bit, non-native byte order is swapped, the CUDA engine gets a
    C-ordered copy of a host array whose rows are not contiguous (negative strides, or column
    order as DataFrames give: it copies X to the device a chunk of rows at a time, and a chunk
    of a column-ordered X spans nearly all of it), and so does training on the CPU
    (`gathered`: rows read in shuffled order) for such an array of at most ROW_COPY_BYTES.
    """
    if is_device_array(X):
        return X
    if not sp.issparse(X):
        if not X.dtype.isnative:
            X = X.astype(X.dtype.newbyteorder("="))
        if X.ndim == 2 and not rows_contiguous(X) and (
                device == "cuda" or (gathered and X.nbytes <= ROW_COPY_BYTES)):
            X = np.ascontiguousarray(X)
        return X
    X = X.tocsr()
    n_rows, n_cols = X.shape
    indptr = np.ascontiguousarray(X.indptr, dtype=np.int64)
    indices = X.indices
    if indices.dtype not in (np.int32, np.int64):
        indices = indices.astype(np.int64)
    indices = np.ascontiguousarray(indices)
    data = np.ascontiguousarray(X.data, dtype=X.data.dtype.newbyteorder("="))
    if (
        indptr.shape[0] != n_rows + 1
        or indptr[0] != 0
        or np.any(np.diff(indptr) < 0)
        or indptr[-1] > min(data.shape[0], indices.shape[0])
    ):
        raise ValueError("X is not a valid CSR matrix: its row pointers are inconsistent.")
    used = indices[: indptr[-1]]
    if used.size and (used.min() < 0 or used.max() >= n_cols):
        raise ValueError("X is not a valid sparse matrix: a column index is out of range.")
    return _CSR(data, indices, indptr, (n_rows, n_cols))
