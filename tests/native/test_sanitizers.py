"""Builds the C core with ASan + UBSan and the failing allocator (tests/c) and runs its driver."""

import shutil
import subprocess
from pathlib import Path

import pytest

TESTS_C = Path(__file__).resolve().parent.parent / "c"


@pytest.mark.sanitizers
@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="needs gcc (or cc)")
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_c_core_passes_driver_under_asan_ubsan_with_failing_allocator(tmp_path):
    proc = subprocess.run(["make", "-s", "-C", str(TESTS_C), f"BUILD={tmp_path}"], capture_output=True,
                          text=True, timeout=240)
    if proc.returncode != 0 and "cannot find" in proc.stderr and "asan" in proc.stderr:
        pytest.skip("this compiler has no AddressSanitizer runtime")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: crc32c, murmur3, trie, bloom, riblt" in proc.stdout


@pytest.mark.sanitizers
@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="needs gcc (or cc)")
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_c_core_passes_driver_under_thread_sanitizer(tmp_path):
    """The signature-check pool (csrc/verify.c) is the C core's threaded part: no data race under TSan."""
    proc = subprocess.run(["make", "-s", "-C", str(TESTS_C), "tsan", f"BUILD={tmp_path}"], capture_output=True,
                          text=True, timeout=240)
    if proc.returncode != 0 and "cannot find" in proc.stderr and "tsan" in proc.stderr:
        pytest.skip("this compiler has no ThreadSanitizer runtime")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verify" in proc.stdout and "ok:" in proc.stdout
