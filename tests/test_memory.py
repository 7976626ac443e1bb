"""Memory stays flat as the dataset grows: maps are scored and dropped, never accumulated.

Two fresh processes run the harbor suite (one model, Grad-CAM and all three suite metrics) on
200 and on 2,000 scenes; their peak resident memory (``VmHWM``, see
:func:`bench.perf.own_peak_rss_mb`) must differ by less than 10%. ``groundbench perf`` prints
the same comparison for 500 and 5,000 scenes of the full suite.

Batches of 16: the allocator's high-water mark settles within the first few batches, so both
runs must have more than a few (at 64 per batch, 200 scenes are 4 batches and read a few
percent low, which is warm-up, not growth).
"""

from __future__ import annotations

import sys

import pytest

from bench.perf import harbor_memory_config, peak_rss_mb


@pytest.mark.skipif(sys.platform == "win32", reason="peak memory is read from /proc or the resource module (POSIX)")
def test_peak_memory_does_not_grow_with_the_number_of_samples(tmp_path):
    small_cfg = harbor_memory_config(200, quick=True)
    large_cfg = harbor_memory_config(2000, quick=True)
    small_cfg["batch_size"] = large_cfg["batch_size"] = 16
    assert [m["name"] for m in large_cfg["methods"]] == ["gradcam"] and large_cfg["dataset"]["n"] == 2000
    # One thread: the runs are about memory, and a shared CI machine runs them faster so.
    small = peak_rss_mb(small_cfg, tmp_path / "small", threads=1, timeout=300)
    large = peak_rss_mb(large_cfg, tmp_path / "large", threads=1, timeout=300)
    assert small > 50  # a real measurement (torch alone takes more)
    assert abs(large / small - 1) < 0.10, f"peak RSS {small:.0f} MiB at 200 samples, {large:.0f} MiB at 2,000"
