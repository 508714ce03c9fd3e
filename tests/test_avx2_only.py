"""bench/avx2_only.c, the preloaded library that answers every library's CPUID as an AVX2 + FMA
CPU's: fusedmlp and numpy's OpenBLAS pick their AVX2 kernels under it without being told, the
suite's machine line names it, the answers are those of the CPU less the AVX-512 bits, and a
SIGSEGV that is not a CPUID still reaches the program's handler or kills the process."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fusedmlp import _cpu

SOURCE = Path(__file__).resolve().parents[1] / "bench" / "avx2_only.c"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.fixture(scope="module")
def preload(tmp_path_factory):
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("CPUID faulting is a Linux x86-64 feature")
    if "cpuid_fault" not in cpu_flags():
        pytest.skip("this CPU or hypervisor offers no CPUID faulting")
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    lib = tmp_path_factory.mktemp("avx2_only") / "avx2_only.so"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", str(SOURCE), "-o", str(lib)],
                   check=True)
    return lib


def run(code, lib=None, args=()):
    env = dict(os.environ)
    env.pop("FUSEDMLP_ISA", None)
    if lib is not None:
        env["LD_PRELOAD"] = str(lib)
    return subprocess.run([sys.executable, *args, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)


# The CPUID answers a C program gets, through the same instruction every library executes.
LEAF7 = r"""
import ctypes, mmap
# mov eax, 7; xor ecx, ecx; push rbx; cpuid; mov [rdi], ebx; mov [rdi+4], ecx; mov [rdi+8], edx;
# pop rbx; ret
code = bytes([0xb8, 7, 0, 0, 0, 0x31, 0xc9, 0x53, 0x0f, 0xa2, 0x89, 0x1f, 0x89, 0x4f, 0x04,
              0x89, 0x57, 0x08, 0x5b, 0xc3])
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
out = (ctypes.c_uint32 * 3)()
ctypes.CFUNCTYPE(None, ctypes.c_void_p)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))(ctypes.addressof(out))
print(*out)
"""


def test_cpuid_answers_are_the_cpus_less_avx512(preload):
    real = run(LEAF7)
    masked = run(LEAF7, preload)
    assert real.returncode == 0 and masked.returncode == 0, (real.stderr, masked.stderr)
    rb, rc, rd = map(int, real.stdout.split())
    mb, mc, md = map(int, masked.stdout.split())
    avx512_ebx = (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31)
    assert mb == rb & ~avx512_ebx
    assert mb & (1 << 5) == rb & (1 << 5)  # AVX2 kept
    assert mc & ~rc == 0 and md & ~rd == 0  # nothing added
    assert mc & ((1 << 1) | (1 << 11)) == 0  # VBMI, VNNI
    assert md & ((1 << 22) | (1 << 24) | (1 << 25)) == 0  # AMX


def test_every_library_in_the_process_picks_avx2(preload):
    code = ("import numpy as np, fusedmlp._cpu as c\n"
            "from threadpoolctl import threadpool_info\n"
            "from fusedmlp import bench\n"
            "rng = np.random.default_rng(0)\n"
            "a, b = rng.standard_normal((300, 200)), rng.standard_normal((200, 100))\n"
            "err = float(abs(a @ b - np.einsum('ik,kj->ij', a, b)).max())\n"
            "arch = [i.get('architecture') for i in threadpool_info() if i['internal_api'] == 'openblas']\n"
            "print(c.best_isa(), c.active_isa(), bench.cpuid_masked(), err < 1e-9, arch)\n"
            "print(bench.machine())\n")
    real = run(code)
    masked = run(code, preload)
    assert real.returncode == 0 and masked.returncode == 0, (real.stderr, masked.stderr)
    assert "False True" in real.stdout.splitlines()[0]
    assert "avx2_only" not in real.stdout
    best, active, flag, exact = masked.stdout.splitlines()[0].split()[:4]
    if "avx2" in cpu_flags() and "fma" in cpu_flags():
        assert best == active == "avx2"
    assert (flag, exact) == ("True", "True")
    assert "CPUID answered without AVX-512" in masked.stdout
    # OpenBLAS's kernel: an AVX2 one (Haswell, Zen), never one of its AVX-512 kernels
    assert not any(k in masked.stdout.splitlines()[0] for k in ("SkylakeX", "Cooperlake", "SapphireRapids"))
    # the parent is untouched
    assert _cpu.best_isa() == real.stdout.split()[0]


def test_child_processes_inherit_the_mask(preload):
    code = ("import subprocess, sys\n"
            "print(subprocess.run([sys.executable, '-c', 'import fusedmlp._cpu as c, fusedmlp.bench as b; "
            "print(c.best_isa(), b.cpuid_masked())'], capture_output=True, text=True).stdout.strip())\n")
    masked = run(code, preload)
    assert masked.returncode == 0, masked.stderr
    assert masked.stdout.split()[-1] == "True"


def test_other_faults_reach_the_programs_handler_or_kill(preload):
    crash = "import ctypes; ctypes.string_at(0)"
    with_handler = run(crash, preload, ("-X", "faulthandler"))
    assert with_handler.returncode == -11
    assert "Segmentation fault" in with_handler.stderr  # faulthandler's report: the chain reached it
    plain = run(crash, preload)
    assert plain.returncode == -11
    # a handler the program installs with signal.signal, then a CPUID: both still work
    code = ("import signal, fusedmlp._cpu as c\n"
            "signal.signal(signal.SIGSEGV, signal.SIG_DFL)\n"
            "import faulthandler; faulthandler.enable(); faulthandler.disable()\n"
            "print(c.best_isa())\n")
    again = run(code, preload)
    assert again.returncode == 0, again.stderr
