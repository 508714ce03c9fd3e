"""The GEMM is compiled once per instruction set; no code built for AVX-512 or AVX2 may be
reachable from anything else, or the module would crash with an illegal instruction on a CPU
without them. Shared inline code (the fusedmlp headers, any standard-library template) could
be merged by the linker with another instruction set's copy: check the built module's machine
code, function by function."""

import glob
import os
import re
import shutil
import subprocess

import pytest

import fusedmlp


@pytest.fixture(scope="module")
def functions():
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the instruction-set kernels exist on x86-64 only")
    path = glob.glob(os.path.join(os.path.dirname(fusedmlp._cpu.__file__), "_cpu*.so"))[0]
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", path], capture_output=True,
                         text=True, check=True).stdout
    funcs, name = {}, None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            name = m.group(1)
            funcs[name] = []
        elif name is not None and "\t" in line:
            funcs[name].append(line)
    return funcs


def registers(lines):
    text = "\n".join(lines)
    return {"zmm": "%zmm" in text, "ymm": "%ymm" in text}


def test_wide_registers_only_inside_their_instruction_sets(functions):
    offenders = []
    for name, lines in functions.items():
        regs = registers(lines)
        if "isa_avx512" in name:
            continue
        if "isa_avx2" in name:
            if regs["zmm"]:
                offenders.append(("zmm outside avx512", name))
            continue
        if regs["zmm"] or regs["ymm"]:
            offenders.append(("ymm/zmm outside the instruction-set namespaces", name))
    assert not offenders, offenders[:10]


def test_each_instruction_set_is_present(functions):
    names = " ".join(functions)
    assert "isa_avx512" in names and "isa_avx2" in names and "isa_generic" in names
    avx512 = [n for n in functions if "isa_avx512" in n and "Kernel" in n]
    assert any(registers(functions[n])["zmm"] for n in avx512)
