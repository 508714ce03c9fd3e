"""bench/avx2_only.c, the preloaded library that answers every library's CPUID as an AVX2 + FMA
CPU's: the answers are the CPU's less the AVX-512 bits, in threads and child processes too;
fusedmlp, numpy's OpenBLAS and PyTorch pick their AVX2 code under it without being told; the
suite's machine line names it; and a SIGSEGV that is not a CPUID still reaches the program's
handler, or kills the process, as it would without the library."""

import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fusedmlp import _cpu, bench

SOURCE = Path(__file__).resolve().parents[1] / "bench" / "avx2_only.c"

# the bits the library clears: leaf 7 subleaf 0's EBX, ECX, EDX and subleaf 1's EAX, EDX
EBX7 = sum(1 << b for b in (16, 17, 21, 26, 27, 28, 30, 31))
ECX7 = sum(1 << b for b in (1, 6, 11, 12, 14))
EDX7 = sum(1 << b for b in (2, 3, 8, 22, 23, 24, 25))
EAX71 = sum(1 << b for b in (4, 5, 21, 23))
EDX71 = sum(1 << b for b in (4, 5, 8, 10, 19))


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
    subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", str(SOURCE), "-o", str(lib)], check=True)
    probe = run("import ctypes; print(ctypes.CDLL(None).fusedmlp_avx2_only_active())", lib)
    if probe.stdout.strip() != "1":  # e.g. arch_prctl refused by a seccomp filter
        pytest.skip(f"the library did not turn CPUID faulting on: {probe.stderr.strip()}")
    return lib


def limits():
    """No core files from the children this module crashes on purpose, and a bounded stack for the
    one that overflows it."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, 8 << 20))


def run(code, lib=None, args=()):
    """code in a new interpreter, with the library preloaded or not; nothing else that picks a
    kernel (a preload of the test's own run, FUSEDMLP_ISA, OPENBLAS_CORETYPE) passed on."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "FUSEDMLP_ISA", "OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY")}
    if lib is not None:
        env["LD_PRELOAD"] = str(lib)
    return subprocess.run([sys.executable, *args, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=limits)


# cpuid(leaf, subleaf) as every library executes it: a function of a few bytes of machine code.
CPUID = r"""
import ctypes, mmap
# mov eax, esi; mov ecx, edx; push rbx; cpuid; mov [rdi], eax; mov [rdi+4], ebx; mov [rdi+8], ecx;
# mov [rdi+12], edx; pop rbx; ret
_code = bytes([0x89, 0xf0, 0x89, 0xd1, 0x53, 0x0f, 0xa2, 0x89, 0x07, 0x89, 0x5f, 0x04, 0x89, 0x4f,
               0x08, 0x89, 0x57, 0x0c, 0x5b, 0xc3])
_buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
_buf.write(_code)
_fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32)(
    ctypes.addressof(ctypes.c_char.from_buffer(_buf)))
def cpuid(leaf, subleaf=0):
    out = (ctypes.c_uint32 * 4)()
    _fn(ctypes.addressof(out), leaf, subleaf)
    return list(out)
"""
LEAF7 = CPUID + "print(*cpuid(7, 0), *cpuid(7, 1))\n"


def leaf7(result):
    assert result.returncode == 0, result.stderr
    v = list(map(int, result.stdout.split()[-8:]))
    return v[:4], v[4:]


def test_cpuid_answers_are_the_cpus_less_avx512(preload):
    (_, rb, rc, rd), (ra1, _, _, rd1) = leaf7(run(LEAF7))
    (_, mb, mc, md), (ma1, _, _, md1) = leaf7(run(LEAF7, preload))
    assert (mb, mc, md) == (rb & ~EBX7, rc & ~ECX7, rd & ~EDX7)
    assert (ma1, md1) == (ra1 & ~EAX71, rd1 & ~EDX71)
    assert mb & (1 << 5) == rb & (1 << 5)  # AVX2 kept


def test_threads_and_child_processes_get_the_masked_answers(preload):
    (_, mb, _, _), _ = leaf7(run(LEAF7, preload))
    child_code = CPUID + "import fusedmlp._cpu as c\nprint(cpuid(7)[1], c.best_isa())\n"
    code = (CPUID + "import threading, subprocess, sys\n"
            "got = []\n"
            "t = threading.Thread(target=lambda: got.append(cpuid(7)[1])); t.start(); t.join()\n"
            f"child = subprocess.run([sys.executable, '-c', {child_code!r}], capture_output=True, "
            "text=True).stdout.split()\n"
            "print(got[0], *child)\n")
    masked = run(code, preload)
    assert masked.returncode == 0, masked.stderr
    ebx, child_ebx, best = masked.stdout.split()
    assert int(ebx) == mb and int(child_ebx) == mb
    if {"avx2", "fma"} <= cpu_flags():
        assert best == "avx2"


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
    first = masked.stdout.splitlines()[0]
    assert "False True" in real.stdout.splitlines()[0]
    assert "avx2_only" not in real.stdout
    best, active, flag, exact = first.split()[:4]
    if {"avx2", "fma"} <= cpu_flags():
        assert best == active == "avx2"
    assert (flag, exact) == ("True", "True")
    assert "CPUID answered without AVX-512 and AMX (bench/avx2_only.c preloaded)" in masked.stdout
    # OpenBLAS's kernel, where numpy uses OpenBLAS: one of its AVX2 kernels, never an AVX-512 one
    if "[]" not in real.stdout.splitlines()[0]:
        assert "[]" not in first
        assert not any(k in first for k in ("SkylakeX", "Cooperlake", "SapphireRapids"))
    # the parent is untouched (unless the tests themselves run under the library)
    if not bench.cpuid_masked():
        assert _cpu.best_isa() == real.stdout.split()[0]


def test_pytorch_picks_avx2(preload):
    pytest.importorskip("torch")
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    masked = run(code, preload)
    assert masked.returncode == 0, masked.stderr
    if {"avx2", "fma"} <= cpu_flags():
        assert masked.stdout.strip() == "AVX2"


CRASH = "import ctypes; ctypes.string_at(0)"


def test_other_faults_reach_the_programs_handler_or_kill(preload):
    # faulthandler's handler (sigaltstack, SA_ONSTACK) gets the fault and reports it
    with_handler = run(CRASH, preload, ("-X", "faulthandler"))
    assert with_handler.returncode == -11
    assert "Segmentation fault" in with_handler.stderr
    # still after a child process, whose start (vfork) resets the child's handlers
    after_child = run("import subprocess; subprocess.run(['true']); " + CRASH, preload, ("-X", "faulthandler"))
    assert after_child.returncode == -11
    assert "Segmentation fault" in after_child.stderr
    # the default action
    assert run(CRASH, preload).returncode == -11
    # a SIGSEGV sent by kill(), with the default action and ignored
    assert run("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", preload).returncode == -11
    ignored = run("import os, signal; signal.signal(signal.SIGSEGV, signal.SIG_IGN); "
                  "os.kill(os.getpid(), signal.SIGSEGV)\n" + LEAF7, preload)
    (_, mb, _, _), _ = leaf7(ignored)
    assert mb & EBX7 == 0  # and CPUID still masked after it


def test_handlers_the_program_installs_leave_cpuid_masked(preload):
    code = ("import signal, faulthandler\n"
            "signal.signal(signal.SIGSEGV, signal.SIG_DFL)\n"
            "faulthandler.enable(); faulthandler.disable()\n"
            "old = signal.signal(signal.SIGSEGV, signal.SIG_DFL)\n" + LEAF7)
    (_, mb, _, _), _ = leaf7(run(code, preload))
    (_, rb, _, _), _ = leaf7(run(LEAF7))
    assert mb == rb & ~EBX7


DEEP = r"""
int deep(volatile int n) {
  volatile char buf[1024];
  buf[0] = (char)n;
  return deep(n + 1) + buf[0];
}
"""


def test_a_stack_overflow_reaches_the_handler_on_its_alternate_stack(preload, tmp_path):
    # faulthandler's handler runs on an alternate stack (SA_ONSTACK): the only stack a handler can
    # run on once the thread's own is exhausted
    src = tmp_path / "deep.c"
    src.write_text(DEEP)
    lib = tmp_path / "deep.so"
    subprocess.run(["gcc", "-O0", "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    code = f"import ctypes; ctypes.CDLL({str(lib)!r}).deep(0)"
    real = run(code, None, ("-X", "faulthandler"))
    assert real.returncode == -11 and "Segmentation fault" in real.stderr, real.stderr
    masked = run(code, preload, ("-X", "faulthandler"))
    assert masked.returncode == -11
    assert "Segmentation fault" in masked.stderr
