"""No kernel of the CUDA engine uses local memory for its own variables: ptxas -v must report a
0-byte stack frame and no spill stores or loads for every function in trainer.cu.

A stack frame means a register array indexed at run time (a GEMM's accumulators behind a loop
that was not unrolled) or registers spilled under pressure: both cost local-memory traffic in
the innermost loops, which no simulator test can see. Runs when nvcc is on the PATH; compiles
the device code for one architecture (sm_80 unless FUSEDMLP_PTXAS_ARCH names another), about a
minute on two cores.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"

# sm_80 is compiled by every toolkit the engine builds with (CUDA 11.0 to 13.x)
ARCH = os.environ.get("FUSEDMLP_PTXAS_ARCH", "80")

_PROPERTIES = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")
_ENTRY = re.compile(r"Compiling entry function '([^']+)'")


def parse_ptxas(text):
    """ptxas -v output as {mangled name: {"kernel", "stack", "spill_stores", "spill_loads",
    "registers"}}, for kernels and for the device functions ptxas compiled separately."""
    functions, entries, current = {}, set(), None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            entries.add(m.group(1))
        elif m := _PROPERTIES.search(line):
            current = functions.setdefault(m.group(1), dict.fromkeys(
                ("stack", "spill_stores", "spill_loads", "registers")))
        elif current is not None and (m := _FRAME.search(line)):
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif current is not None and (m := _REGISTERS.search(line)):
            current["registers"] = int(m.group(1))
    for name, props in functions.items():
        props["kernel"] = name in entries
    return functions


def demangle(names):
    """C++ names for mangled ones: cu++filt (the toolkit's), else c++filt, else as they are."""
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if tool is None or not names:
        return dict(zip(names, names))
    result = subprocess.run([tool], input="\n".join(names) + "\n", capture_output=True, text=True)
    readable = result.stdout.splitlines()
    if result.returncode != 0 or len(readable) != len(names):
        return dict(zip(names, names))
    return dict(zip(names, readable))


def offenders(functions):
    """Lines naming each function with a stack frame or spills, demangled."""
    bad = {n: p for n, p in functions.items() if p["stack"] or p["spill_stores"] or p["spill_loads"]}
    readable = demangle(sorted(bad))
    return [f"{readable[n]}: {p['stack']} bytes stack frame, {p['spill_stores']}/{p['spill_loads']} bytes "
            f"spill stores/loads, {p['registers']} registers{'' if p['kernel'] else ' (device function)'}"
            for n, p in sorted(bad.items())]


def cuda_flags():
    """The flags the build gives trainer.cu (csrc/cuda/cuda.cmake), read from there so the two
    cannot drift apart, with Release's -DNDEBUG."""
    cmake = (CSRC / "cuda" / "cuda.cmake").read_text()
    standard = re.search(r"CUDA_STANDARD (\d+)", cmake)
    options = re.search(r"target_compile_options\(_cuda PRIVATE \$<\$<COMPILE_LANGUAGE:CUDA>:([^>]*)>\)", cmake)
    assert standard and options, "csrc/cuda/cuda.cmake no longer sets _cuda's standard and options as expected"
    return [f"-std=c++{standard.group(1)}", *options.group(1).split(), "-DNDEBUG"]


SAMPLE = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z4goodPf' for 'sm_80'
ptxas info    : Function properties for _Z4goodPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 1 barriers, 256 bytes smem
ptxas info    : Function properties for __internal_accurate_pow
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function '_Z3badPd' for 'sm_80'
ptxas info    : Function properties for _Z3badPd
    256 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 136 registers, used 1 barriers, 16512 bytes smem
"""


def test_the_report_parser_names_what_uses_local_memory():
    functions = parse_ptxas(SAMPLE)
    assert set(functions) == {"_Z4goodPf", "__internal_accurate_pow", "_Z3badPd"}
    assert functions["_Z3badPd"] == {"registers": 136, "stack": 256, "spill_stores": 4, "spill_loads": 8,
                                     "kernel": True}
    assert functions["__internal_accurate_pow"]["kernel"] is False
    [line] = offenders(functions)
    name = "bad(double*)" if shutil.which("cu++filt") or shutil.which("c++filt") else "_Z3badPd"
    assert line == f"{name}: 256 bytes stack frame, 4/8 bytes spill stores/loads, 136 registers"


def test_no_kernel_has_a_stack_frame_or_spills(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on the PATH: the kernels' register use is checked where it is")
    command = [nvcc, *cuda_flags(), f"-arch=sm_{ARCH}", "-cubin", "-Xptxas", "-v",
               "-I", str(CSRC / "include"), "-I", str(CSRC), str(CSRC / "cuda" / "trainer.cu"),
               "-o", str(tmp_path / "trainer.cubin")]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{report[-4000:]}"
    functions = parse_ptxas(report)
    kernels = [n for n, p in functions.items() if p["kernel"]]
    # the report was read: every GEMM instantiation is among the kernels, each with its frame
    assert len(kernels) > 100 and sum("gemm_kernel" in n for n in kernels) > 40, report[:2000]
    assert all(p["stack"] is not None for p in functions.values()), report[:2000]
    bad = offenders(functions)
    if bad:
        pytest.fail(f"{len(bad)} of {len(functions)} functions use local memory on sm_{ARCH} "
                    f"(ptxas -v, {seconds:.0f} s):\n" + "\n".join(bad), pytrace=False)
