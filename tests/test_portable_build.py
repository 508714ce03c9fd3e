"""The CPU engine off x86: the sources build for aarch64 (the portable kernels and the
flush-to-zero path), and the portable GEMM computes the right numbers there. Runs where an
aarch64 cross compiler and qemu-aarch64 are installed (.ci/run installs them when it can)."""

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pybind11
import pytest

ROOT = Path(__file__).resolve().parents[1]
CXX = "aarch64-linux-gnu-g++"
FLAGS = ["-std=c++17", "-O2", "-fopenmp", "-fvisibility=hidden", f"-I{ROOT / 'csrc' / 'include'}",
         f"-I{ROOT / 'csrc'}"]


@pytest.fixture(scope="module")
def cross():
    if shutil.which(CXX) is None:
        pytest.skip(f"{CXX} is not installed")
    return CXX


@pytest.mark.parametrize("source", ["cpu/gemm/gemm_generic.cpp", "cpu/gemm/dispatch.cpp", "cpu/dense.cpp",
                                    "cpu/trainer.cpp", "cpu/perceptron.cpp", "bindings/cpu_module.cpp",
                                    "bindings/perceptron_bindings.cpp"])
def test_sources_compile_for_aarch64(cross, source, tmp_path):
    includes = [f"-I{sysconfig.get_paths()['include']}", f"-I{pybind11.get_include()}"]
    result = subprocess.run([cross, *FLAGS, *includes, "-fPIC", "-c", str(ROOT / "csrc" / source), "-o",
                             str(tmp_path / "out.o")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_portable_gemm_is_right_on_aarch64(cross, tmp_path):
    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-aarch64 is not installed")
    exe = tmp_path / "gemm_check"
    built = subprocess.run([cross, *FLAGS, "-static", str(ROOT / "tests" / "portable" / "gemm_check.cpp"),
                            str(ROOT / "csrc" / "cpu" / "gemm" / "dispatch.cpp"),
                            str(ROOT / "csrc" / "cpu" / "gemm" / "gemm_generic.cpp"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    run = subprocess.run(["qemu-aarch64", str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "generic: 0 of" in run.stdout, run.stdout + run.stderr
