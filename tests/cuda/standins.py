"""Stand-ins for CuPy 14 arrays and PyTorch CUDA tensors on the CUDA simulator, where device
memory is host memory: the engine reads and writes their host storage in place.

They behave like the real libraries wherever fusedmlp meets them, and no better, so that a
test fails where the real library would:

- CuPy (checked against CuPy v14.2.0: cupy/_core/core.pyx, cupy/_creation/basic.py and
  from_data.py, cupy/cuda/device.pyx, cupy/_core/_kernel.pyx). `cupy.ndarray` has no
  `__array_namespace__` (no CuPy release defines one); `__array__` raises TypeError;
  `__cuda_array_interface__` is version 3 with the current stream (1, the legacy default
  stream, when the current one is the null stream); `.device` is a `cupy.cuda.Device`;
  reductions return 0-d arrays; the module's functions have CuPy's signatures (creation
  functions take no `device=`) and refuse numpy arrays as operands. The module is put in
  `sys.modules` as `cupy`, which is how array_api_compat recognises CuPy arrays and finds the
  module it wraps (`array_api_compat.cupy`).
- PyTorch: real torch tensors (CPU storage) of a subclass that says it is on cuda:0, so that
  array_api_compat, torch's functions and torch's own `__cuda_array_interface__` (version 2,
  no stream) run unchanged. As on a CUDA tensor, `.numpy()` and implicit numpy conversion
  raise TypeError, operations mixing it with CPU tensors (not 0-d) raise torch's device
  error, `.cpu()` copies to a plain CPU tensor, and factory functions given a CUDA device
  (`torch.empty(..., device="cuda")`, `torch.asarray(..., device=...)`) make such tensors.
"""

import functools
import types

import numpy as np

# ---- CuPy 14 ---------------------------------------------------------------------------------


class Device:
    """cupy.cuda.Device (cupy/cuda/device.pyx); the simulator has one device, 0."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)

    def __int__(self):
        return self.id

    def __enter__(self):
        if self.id != 0:
            raise RuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        return self

    def __exit__(self, *args):
        return None

    def use(self):
        return self.__enter__()

    def __repr__(self):
        return "<CUDA Device %d>" % self.id

    def __eq__(self, other):
        return isinstance(other, Device) and self.id == other.id


class Stream:
    """cupy.cuda.Stream: only the null stream (ptr 0) here."""

    def __init__(self, null=False, non_blocking=False, ptds=False):
        if not null:
            raise NotImplementedError("the stand-in has only the null stream")
        self.ptr = 0
        self.device_id = 0


_NULL_STREAM = Stream(null=True)


def get_current_stream(device_id=-1):
    return _NULL_STREAM


class MemoryPointer:
    """cupy.cuda.MemoryPointer: the address and the device of an array's memory."""

    def __init__(self, ptr):
        self.ptr = ptr
        self.device = Device(0)


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind not in "biufc":
        raise ValueError(f"Unsupported dtype {dtype}")  # (cupy/_core/_dtype.pyx)
    return dtype


def _device_array(host):
    """(stand-in only) a host numpy array as the memory of a device array."""
    a = ndarray.__new__(ndarray)
    a._a = host
    return a


def _operand(x):
    """An argument of a CuPy kernel: a device array's memory, or a scalar; numpy arrays are
    refused, as by CuPy (cupy/_core/_kernel.pyx, _scalar.pyx)."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, (list, tuple)):
        return type(x)(_operand(v) for v in x)
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    return x


def _result(r):
    # CuPy's reductions and routines return device arrays, 0-d ones included
    if isinstance(r, (np.ndarray, np.generic)):
        return _device_array(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_result(v) for v in r)
    if isinstance(r, list):
        return [_result(v) for v in r]
    return r


def _kernel(name, np_function):
    """A CuPy ufunc or routine that has numpy's signature; CuPy takes no `device=`."""

    def function(*args, **kwargs):
        if "device" in kwargs:
            raise TypeError(f"{name}() got an unexpected keyword argument 'device'")
        return _result(np_function(*_operand(args), **{k: _operand(v) for k, v in kwargs.items()}))

    function.__name__ = function.__qualname__ = name
    function.__module__ = "cupy"
    return function


class ndarray:
    """cupy.ndarray: the attributes and methods fusedmlp, array_api_compat and the tests use,
    with CuPy 14's signatures (cupy/_core/core.pyx). There is no __array_namespace__."""

    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the stand-in allocates its own memory")
        self._a = np.empty(shape, _check_dtype(dtype), order=order)

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    T = property(lambda self: _device_array(self._a.T))

    @property
    def data(self):
        return MemoryPointer(self._a.ctypes.data if self._a.size else 0)

    @property
    def device(self):
        return self.data.device

    @property
    def __cuda_array_interface__(self):
        stream = get_current_stream().ptr
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "descr": self.dtype.descr,
            "stream": stream if stream != 0 else 1,  # (v3 forbids 0: the legacy default stream)
            "version": 3,
            "strides": None if self._a.flags.c_contiguous else self.strides,
            "data": (self.data.ptr, False),
        }

    def __array__(self, dtype=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        function = _MODULE.__dict__.get(ufunc.__name__)
        if method != "__call__" or function is None:
            return NotImplemented
        return function(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        function = _MODULE.__dict__.get(func.__name__)
        if function is None:
            return NotImplemented
        return function(*args, **kwargs)

    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = _check_dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        return _device_array(self._a.astype(dtype, order=order))

    def reshape(self, *shape, order="C", copy=None):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        source = self._a.copy() if copy else self._a
        return _device_array(source.reshape(shape, order=order))

    def ravel(self, order="C"):
        return _device_array(self._a.ravel(order=order))

    def copy(self, order="C"):
        return _device_array(self._a.copy(order=order))

    def view(self, dtype=None):
        return _device_array(self._a.view() if dtype is None else self._a.view(dtype))

    def take(self, indices, axis=None, out=None):
        if isinstance(indices, ndarray):
            indices = indices._a
        return _result(self._a.take(indices, axis=axis, out=None if out is None else out._a))

    def argmax(self, axis=None, out=None, dtype=None, keepdims=False):
        return _result(self._a.argmax(axis=axis, keepdims=keepdims))

    def all(self, axis=None, out=None, keepdims=False):
        return _result(self._a.all(axis=axis, keepdims=keepdims))

    def any(self, axis=None, out=None, keepdims=False):
        return _result(self._a.any(axis=axis, keepdims=keepdims))

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _result(self._a.sum(axis=axis, dtype=dtype, keepdims=keepdims))

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return _result(self._a.mean(axis=axis, dtype=dtype, keepdims=keepdims))

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index):
        # indices may be device arrays or host ones (CuPy copies the latter to the device)
        if isinstance(index, tuple):
            index = tuple(i._a if isinstance(i, ndarray) else i for i in index)
        elif isinstance(index, ndarray):
            index = index._a
        return _device_array(self._a[index])

    def __setitem__(self, index, value):
        self._a[index] = value._a if isinstance(value, ndarray) else value

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __repr__(self):
        return repr(self._a)


_BINARY = {
    "add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
    "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "and": "bitwise_and",
    "or": "bitwise_or", "xor": "bitwise_xor", "matmul": "matmul",
}
_COMPARISONS = {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                "eq": "equal", "ne": "not_equal"}


def _operators():
    def binary(f):
        return lambda self, other: _result(f(self._a, _operand(other)))

    def reflected(f):
        return lambda self, other: _result(f(_operand(other), self._a))

    for op, name in _BINARY.items():
        setattr(ndarray, f"__{op}__", binary(getattr(np, name)))
        setattr(ndarray, f"__r{op}__", reflected(getattr(np, name)))
    for op, name in _COMPARISONS.items():
        setattr(ndarray, f"__{op}__", binary(getattr(np, name)))
    for op, name in {"neg": "negative", "pos": "positive", "abs": "absolute",
                     "invert": "invert"}.items():
        setattr(ndarray, f"__{op}__", lambda self, f=getattr(np, name): _result(f(self._a)))
    ndarray.__hash__ = None


_operators()


# The module's functions that fusedmlp, array_api_compat's CuPy wrapper (on import) and the
# tests use, with CuPy 14's signatures. Those written out differ from numpy's (no `device=`,
# `like=`); the others are numpy's under CuPy's name, refusing numpy operands.

def empty(shape, dtype=float, order="C"):
    return ndarray(shape, dtype, order=order)


def zeros(shape, dtype=float, order="C"):
    return _device_array(np.zeros(shape, _check_dtype(dtype), order=order))


def ones(shape, dtype=float, order="C"):
    return _device_array(np.ones(shape, _check_dtype(dtype), order=order))


def full(shape, fill_value, dtype=None, order="C"):
    a = np.full(shape, fill_value, dtype=dtype, order=order)
    _check_dtype(a.dtype)
    return _device_array(a)


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    return _device_array(np.empty_like(a._a, dtype=dtype, order=order, shape=shape))


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    return _device_array(np.zeros_like(a._a, dtype=dtype, order=order, shape=shape))


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    return _device_array(np.ones_like(a._a, dtype=dtype, order=order, shape=shape))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        if copy is False and dtype is not None and np.dtype(dtype) != obj.dtype:
            raise ValueError("Unable to avoid copy while creating an array as requested.")
        if not copy and (dtype is None or np.dtype(dtype) == obj.dtype) and obj.ndim >= ndmin:
            return obj
        return _device_array(np.array(obj._a, dtype=dtype, order=order, ndmin=ndmin))
    if hasattr(obj, "__cuda_array_interface__"):
        raise NotImplementedError("the stand-in takes other libraries' device arrays nowhere")
    if copy is False:
        raise ValueError("Unable to avoid copy while creating an array as requested.")
    host = np.array(obj, dtype=dtype, order="C" if order in ("K", "A", None) else order,
                    ndmin=ndmin)  # a host-to-device copy
    _check_dtype(host.dtype)
    return _device_array(host)


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    return array(a, dtype, copy, order, blocking=blocking)


def ascontiguousarray(a, dtype=None):
    if a._a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return _device_array(np.ascontiguousarray(a._a, dtype=dtype))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    if hasattr(a, "__cuda_array_interface__"):
        raise NotImplementedError("the stand-in takes other libraries' device arrays nowhere")
    return np.asarray(a, order=order)


def astype(x, dtype, /, *, copy=True):
    return x.astype(dtype, copy=copy)


def take(a, indices, axis=None, out=None):
    return a.take(indices, axis, out)


def reshape(a, newshape, order="C", *, copy=None):
    return a.reshape(newshape, order=order, copy=copy)


def argmax(a, axis=None, dtype=None, out=None, keepdims=False):
    return a.argmax(axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def ravel(a, order="C"):
    return a.ravel(order)


def get_array_module(*args):
    return _MODULE if any(isinstance(a, ndarray) for a in args) else np


_NUMPY_NAMED = (
    # elementwise (ufuncs)
    "abs absolute add subtract multiply divide true_divide floor_divide remainder power "
    "negative positive exp log log1p log2 log10 expm1 sqrt square tanh sin cos tan arccos "
    "arccosh arcsin arcsinh arctan arctan2 arctanh ceil floor trunc sign isfinite isnan isinf "
    "greater greater_equal less less_equal equal not_equal logical_and logical_or logical_not "
    "bitwise_and bitwise_or bitwise_xor invert left_shift right_shift maximum minimum clip "
    "where "
    # reductions, searching, joining, shapes
    "all any sum prod mean max min amax amin argmin count_nonzero cumsum unique isin "
    "searchsorted sort argsort stack concatenate expand_dims squeeze broadcast_arrays "
    "broadcast_to meshgrid take_along_axis arange linspace eye round around matmul"
).split()
_NUMPY_ALIASES = {"max": "amax", "min": "amin", "round": "round"}
_DTYPES = ("bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 intp float16 float32 "
           "float64 complex64 complex128 integer floating number generic dtype issubdtype "
           "isdtype finfo iinfo nan inf newaxis pi e").split()


def _make_module():
    module = types.ModuleType("cupy", "Stand-in for CuPy 14 on the CUDA simulator.")
    module.__version__ = "14.2.0"
    own = dict(globals())
    for name in ("ndarray", "empty", "zeros", "ones", "full", "empty_like", "zeros_like",
                 "ones_like", "array", "asarray", "ascontiguousarray", "asnumpy", "astype",
                 "take", "reshape", "argmax", "ravel", "get_array_module"):
        setattr(module, name, own[name])
    for name in _NUMPY_NAMED:
        setattr(module, name, _kernel(name, getattr(np, _NUMPY_ALIASES.get(name, name))))
    for name in _DTYPES:
        if hasattr(np, name):  # (isdtype: numpy >= 2, as CuPy 14 needs)
            setattr(module, name, getattr(np, name))
    cuda = types.ModuleType("cupy.cuda")
    cuda.Device, cuda.Stream, cuda.MemoryPointer = Device, Stream, MemoryPointer
    cuda.get_current_stream = get_current_stream
    cuda.device = types.ModuleType("cupy.cuda.device")
    cuda.device.Device = Device
    linalg = types.ModuleType("cupy.linalg")
    linalg.lstsq = _kernel("lstsq", np.linalg.lstsq)
    linalg.__all__ = ["lstsq"]
    fft = types.ModuleType("cupy.fft")
    fft.__all__ = []
    module.cuda, module.linalg, module.fft = cuda, linalg, fft
    for obj in (ndarray, Device, Stream, MemoryPointer):
        obj.__module__ = "cupy" if obj is ndarray else "cupy.cuda"
    return module


_MODULE = _make_module()


def cupy_modules():
    """{name: module} to put in sys.modules for the stand-in to be `import cupy`."""
    m = _MODULE
    return {"cupy": m, "cupy.cuda": m.cuda, "cupy.cuda.device": m.cuda.device,
            "cupy.linalg": m.linalg, "cupy.fft": m.fft}


# ---- PyTorch CUDA tensors ------------------------------------------------------------------


class _TorchStream:
    """torch.cuda.Stream as torch.cuda.current_stream() returns it: the default stream."""

    cuda_stream = 0

    def __init__(self, device):
        self.device = device


@functools.lru_cache(maxsize=None)
def torch_standin():
    """(the CUDA tensor class, a TorchFunctionMode under which torch calls given a CUDA device
    make such tensors, a stand-in for torch.cuda.current_stream)."""
    import torch
    from torch.overrides import TorchFunctionMode

    cuda0 = torch.device("cuda", 0)

    def is_device(value):
        return isinstance(value, (str, torch.device)) or (
            isinstance(value, int) and not isinstance(value, bool))

    def is_cuda_device(device):
        if device is None:
            return False
        if isinstance(device, int):
            return True  # (an int names a CUDA device)
        return torch.device(device).type == "cuda"

    def tensors_in(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from tensors_in(v)
        elif isinstance(value, dict):
            for v in value.values():
                yield from tensors_in(v)

    def target_device(func, args, kwargs):
        """The device a call puts its result on, when it names one."""
        if func is torch.Tensor.cuda:
            return cuda0
        device = kwargs.get("device")
        if func is torch.Tensor.to:
            for a in args[1:]:
                if is_device(a):
                    device = a
                elif isinstance(a, torch.Tensor):
                    device = a.device
        return device

    def same(tensor, *args, **kwargs):
        return tensor

    def on_host(func, args, kwargs):
        """The call with its CUDA device replaced by the host (the simulator's device memory)."""
        if func is torch.Tensor.cuda:
            return same, args[:1], {}
        if func is torch.Tensor.to:
            args = tuple(a for i, a in enumerate(args) if i == 0 or not is_device(a))
        kwargs = {k: v for k, v in kwargs.items() if k != "device"}
        if func is not torch.Tensor.to:
            kwargs["device"] = "cpu"
        return func, args, kwargs

    class CudaTensor(torch.Tensor):
        """A torch tensor that says it is on cuda:0; its storage is the simulator's device
        memory (host memory)."""

        @property
        def device(self):
            return cuda0

        @property
        def is_cuda(self):
            return True

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            kwargs = {} if kwargs is None else kwargs
            if func in (torch.Tensor.numpy, torch.Tensor.__array__):
                raise TypeError(
                    "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to "
                    "copy the tensor to host memory first."
                )
            device = target_device(func, args, kwargs)
            if func is torch.Tensor.cpu or (device is not None and not is_cuda_device(device)):
                with torch._C.DisableTorchFunctionSubclass():
                    return func(*args, **kwargs).clone()  # a device-to-host copy: a CPU tensor
            if is_cuda_device(device):
                func, args, kwargs = on_host(func, args, kwargs)
            if func not in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
                # (indexing takes CPU indices; 0-d CPU tensors mix with CUDA ones)
                for t in tensors_in((args, kwargs)):
                    if not isinstance(t, CudaTensor) and t.dim() > 0:
                        raise RuntimeError(
                            "Expected all tensors to be on the same device, but found at "
                            "least two devices, cuda:0 and cpu!"
                        )
            return super().__torch_function__(func, types, args, kwargs)

    class CudaFactories(TorchFunctionMode):
        """torch calls given a CUDA device (torch.empty(..., device="cuda"), torch.asarray(
        numpy_array, device=...), tensor.cuda(), tensor.to("cuda")) make CudaTensors."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = {} if kwargs is None else kwargs
            if is_cuda_device(target_device(func, args, kwargs)) and not any(
                    isinstance(t, CudaTensor) for t in tensors_in((args, kwargs))):
                func, args, kwargs = on_host(func, args, kwargs)
                return func(*args, **kwargs).clone().as_subclass(CudaTensor)  # host-to-device
            return func(*args, **kwargs)

    def current_stream(device=None):
        return _TorchStream(cuda0 if device is None else torch.device(device))

    return CudaTensor, CudaFactories, current_stream
