"""fusedmlp: scikit-learn's multilayer perceptrons and Perceptron, trained in fused C++ and
CUDA kernels.

Change one import line::

    from fusedmlp import MLPClassifier, MLPRegressor, Perceptron

and the same code trains the same models, faster. See ``help(fusedmlp.MLPClassifier)``.
"""

import os as _os

from . import _cpu
from ._engine import cuda_available
from ._multilayer_perceptron import MLPClassifier, MLPRegressor
from ._perceptron import Perceptron

__version__ = "0.1.0"

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "Perceptron",
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
