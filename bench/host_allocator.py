"""The host allocator's settings for the run loop: keep large tensor buffers in the process
instead of handing them back to the system after every batch.

A run allocates the same large tensors every batch (a batch of maps at full image resolution
is tens of MB). glibc's malloc serves blocks above its mmap threshold (dynamic, at most 32 MiB)
with a fresh ``mmap`` and returns them to the system on ``free``, and trims the top of its heap
above the trim threshold; either way the next batch faults every page in again (measured:
hundreds of thousands of minor page faults per 64 images, a third to a half of the metric
time at 640x480). :func:`configure` raises both thresholds to :data:`THRESHOLD` bytes, so that
freed buffers are reused. Peak memory is unchanged: only what the process already used is
kept.

It is a process-wide setting, made once by the ``groundbench`` command before anything is
allocated, and exported through the environment variables glibc reads at start-up
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) so that child processes (the memory
probe of ``groundbench perf``, DataLoader workers started by spawn) run under the same
conditions. Settings the user gave in the environment are left as they are, and
``GROUNDBENCH_ALLOCATOR=system`` keeps glibc's defaults (to measure what the setting is worth).
Elsewhere than glibc on Linux nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

THRESHOLD = 1 << 30  # 1 GiB: far above any per-batch tensor, far below the address space
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _glibc():
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def configure(threshold: int = THRESHOLD) -> str:
    """Set glibc's mmap and trim thresholds to ``threshold`` bytes in this process and its
    future children, unless the environment already sets either (or glibc's tunables); return
    :func:`describe`'s text."""
    user = any(v in os.environ for v in ENV_VARS) or "malloc" in os.environ.get("GLIBC_TUNABLES", "")
    user = user or os.environ.get("GROUNDBENCH_ALLOCATOR") == "system"
    libc = _glibc()
    if libc is None or user:
        return describe()
    if libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)) and libc.mallopt(_M_TRIM_THRESHOLD, int(threshold)):
        for var in ENV_VARS:
            os.environ[var] = str(int(threshold))
        os.environ["GROUNDBENCH_ALLOCATOR"] = "configured"
    return describe()


def describe() -> str:
    """One line for a report: which allocator settings this process runs under."""
    libc = _glibc()
    if libc is None:
        return f"system allocator ({sys.platform}, {platform.libc_ver()[0] or 'not glibc'}): defaults"
    mmap_t, trim_t = (os.environ.get(v) for v in ENV_VARS)
    if mmap_t is None and trim_t is None:
        if "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
            return f"glibc malloc: GLIBC_TUNABLES={os.environ['GLIBC_TUNABLES']} (from the environment)"
        why = ", GROUNDBENCH_ALLOCATOR=system" if os.environ.get("GROUNDBENCH_ALLOCATOR") == "system" else ""
        return f"glibc malloc: defaults (dynamic mmap threshold 128 KiB..32 MiB, trim threshold twice it{why})"
    source = "set by groundbench" if os.environ.get("GROUNDBENCH_ALLOCATOR") == "configured" else "from the environment"
    fmt = lambda v: "default" if v is None else _size(int(v))  # noqa: E731
    return f"glibc malloc: mmap threshold {fmt(mmap_t)}, trim threshold {fmt(trim_t)} ({source})"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"
