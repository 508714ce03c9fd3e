"""fusedmlp: scikit-learn's multilayer perceptrons and Perceptron, trained in fused C++ and
CUDA kernels.

Change one import line::

    from fusedmlp import MLPClassifier, MLPRegressor, Perceptron

and the same code trains the same models, faster. See ``help(fusedmlp.MLPClassifier)``.
"""

import os as _os
import sys as _sys

from . import _cpu, callbacks
from ._archive import FileFormatError
from ._convert import from_sklearn, to_sklearn
from ._engine import cuda_available
from ._lr_finder import LearningRateFinderResult, find_learning_rate
from ._multilayer_perceptron import MLPClassifier, MLPRegressor
from ._onnx import register_onnx_converters
from ._perceptron import Perceptron
from ._persist import load
from .streaming import fit_stream

__version__ = "0.1.0"

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "Perceptron",
    "callbacks",
    "find_learning_rate",
    "fit_stream",
    "LearningRateFinderResult",
    "load",
    "FileFormatError",
    "to_sklearn",
    "from_sklearn",
    "register_onnx_converters",
    "cuda_available",
    "cpu_isa",
    "__version__",
]


def cpu_isa():
    """The instruction set the CPU engine's kernels use ('avx512', 'avx2', 'generic'); the
    Perceptron's screen uses its AVX2 kernels under 'avx512' and 'avx2'."""
    return _cpu.active_isa()


# FUSEDMLP_ISA=avx2 (or generic) forces a lesser instruction set, e.g. to compare kernels.
if _os.environ.get("FUSEDMLP_ISA"):
    _cpu.set_isa(_os.environ["FUSEDMLP_ISA"])


# skl2onnx converts fusedmlp's MLPs once their converters are registered: now if skl2onnx is
# already imported, else as soon as it is (skl2onnx is optional and slow to import).
class _RegisterOnnxOnImport:
    def find_spec(self, name, path=None, target=None):
        if name != "skl2onnx":
            return None
        _sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            _register_onnx_quietly()

        spec.loader.exec_module = exec_and_register
        return spec


def _register_onnx_quietly():
    try:
        register_onnx_converters()
    except Exception as e:  # an incompatible skl2onnx must not break its own import
        import warnings

        warnings.warn(f"fusedmlp could not register its ONNX converters with skl2onnx: {e}")


if "skl2onnx" in _sys.modules:
    _register_onnx_quietly()
else:
    _sys.meta_path.insert(0, _RegisterOnnxOnImport())
