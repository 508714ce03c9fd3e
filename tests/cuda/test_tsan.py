"""The CUDA engine's kernels on the simulator under ThreadSanitizer: no data race.

The harness (tests/cuda/tsan/) compiles the engine's own source (cuda/trainer.cu with the
kernels) against the simulator with -fsanitize=thread, launches every kernel as the trainer
does, and must run without a report; its "race" mode launches a kernel with one
__syncthreads() removed, which TSan must report.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "tsan"


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    build = tmp_path_factory.mktemp("tsan")
    configure = subprocess.run(["cmake", "-S", str(HERE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Debug"],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return build / "tsan_harness"


def run(harness, *args):
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1")
    return subprocess.run([str(harness), *args], capture_output=True, text=True, env=env, timeout=900)


def test_kernels_have_no_data_race(harness):
    result = run(harness)
    report = result.stdout + result.stderr
    assert "ThreadSanitizer" not in report, report[:4000]
    assert result.returncode == 0 and "tsan harness ok" in result.stdout, report[:4000]


def test_a_missing_syncthreads_is_reported(harness):
    result = run(harness, "race")
    report = result.stderr
    assert "WARNING: ThreadSanitizer: data race" in report
    assert "racy_tile_sum" in report
