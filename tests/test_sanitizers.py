"""The CPU engine under AddressSanitizer + UndefinedBehaviorSanitizer: tests/sanitizers/run.sh
builds fusedmlp._cpu (CUDA off) with -fsanitize=address,undefined and runs the GEMM, parity and
bad-input tests on it. Any out-of-bounds access, use after free or undefined behaviour in the
engine ends that run with the sanitizer's report. About 8 minutes on 2 cores, the build included
(482 s alone at 90710eb); marked sanitizer (deselect with -m "not sanitizer")."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sanitizer

SCRIPT = Path(__file__).parent / "sanitizers" / "run.sh"
REPORT_START = re.compile(r"AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:")


def compiler_has_libasan(cxx):
    if shutil.which(cxx) is None:
        return False
    path = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return os.path.isabs(path) and os.path.exists(path)


def first_lines_of_report(output, lines=60):
    """The sanitizer's report from its first line (with the test named just above it), else the
    end of the output."""
    text = output.splitlines()
    start = next((i for i, line in enumerate(text) if REPORT_START.search(line)), None)
    shown = text[max(start - 1, 0):start + lines] if start is not None else text[-lines:]
    return "\n".join(shown)


def test_engine_runs_clean_under_asan_and_ubsan():
    cxx = os.environ.get("CXX", "g++")
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    if not compiler_has_libasan(cxx):
        pytest.skip(f"{cxx} has no AddressSanitizer runtime (libasan.so)")
    pytest.importorskip("pybind11", reason="pybind11 is needed to build the engine")
    # one stream, unbuffered, so a report follows the name of the test that provoked it
    env = dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED="1")
    result = subprocess.run(["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=3600)
    assert result.returncode == 0, first_lines_of_report(result.stdout)
    assert re.search(r"\d+ passed", result.stdout), first_lines_of_report(result.stdout)
