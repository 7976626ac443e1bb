"""The host allocator setting of the groundbench command (bench/host_allocator.py): glibc's
mmap and trim thresholds raised and exported to children, a user's own setting left alone, and
the perf report's one-line statement of the conditions. Each case runs in a fresh interpreter:
the setting is process-wide."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="the setting applies to glibc on Linux only"
)

PROBE = (
    "import os; from bench import host_allocator as h; print(h.configure()); "
    "print(os.environ.get('MALLOC_MMAP_THRESHOLD_'), os.environ.get('MALLOC_TRIM_THRESHOLD_'))"
)


def _probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "GROUNDBENCH_ALLOCATOR")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_configure_raises_and_exports_both_thresholds():
    described, exported = _probe()
    assert described == "glibc malloc: mmap threshold 1 GiB, trim threshold 1 GiB (set by groundbench)"
    assert exported == f"{1 << 30} {1 << 30}"


def test_a_users_own_setting_is_left_as_it_is():
    described, exported = _probe(MALLOC_MMAP_THRESHOLD_="65536")
    assert described == "glibc malloc: mmap threshold 64 KiB, trim threshold default (from the environment)"
    assert exported == "65536 None"
    described, exported = _probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0")
    assert described == "glibc malloc: GLIBC_TUNABLES=glibc.malloc.trim_threshold=0 (from the environment)"
    assert exported == "None None"


def test_system_keeps_glibcs_defaults():
    described, exported = _probe(GROUNDBENCH_ALLOCATOR="system")
    assert described.startswith("glibc malloc: defaults (") and described.endswith("GROUNDBENCH_ALLOCATOR=system)")
    assert exported == "None None"
