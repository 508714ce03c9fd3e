"""pytest plugin loaded by tests/sanitizers/run.sh: makes `import fusedmlp` take the sanitized
copy in $FUSEDMLP_SANITIZED_PKG, and stops the run before any test if it does not.

PYTHONPATH alone is not enough: an editable install (scikit-build-core) puts an import finder in
front of sys.path that redirects fusedmlp to the source tree and its unsanitized _cpu.
"""

import importlib.machinery
import os
import sys

import pytest

PKG = os.path.realpath(os.environ["FUSEDMLP_SANITIZED_PKG"])


def _elsewhere(finder):
    """Whether a finder would take fusedmlp from anywhere but the sanitized copy."""
    if finder is importlib.machinery.PathFinder or not hasattr(finder, "find_spec"):
        return False
    spec = finder.find_spec("fusedmlp", None)
    return spec is not None and not os.path.realpath(spec.origin or "").startswith(PKG + os.sep)


sys.meta_path[:] = [finder for finder in sys.meta_path if not _elsewhere(finder)]

try:
    import fusedmlp._cpu
except ImportError as error:
    raise pytest.UsageError(f"the sanitized fusedmlp in {PKG} does not import: {error}") from error

CPU = os.path.realpath(fusedmlp._cpu.__file__)
if not CPU.startswith(os.path.join(PKG, "fusedmlp") + os.sep):
    raise pytest.UsageError(f"fusedmlp._cpu is {CPU}, not the sanitized build in {PKG}")


def pytest_report_header(config):
    return f"sanitized engine: {CPU}"
