"""The CUDA path scores what the CPU path scores, with one host synchronisation per batch.

Skipped where CUDA is absent (the CPU tests pin the same code: ``test_perf_harness``)."""

from __future__ import annotations

import math

import pytest
import torch

from bench import results
from bench.config import parse_config
from bench.engine import run_config
from bench.perf import find_syncs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available here")

TINY = {
    "name": "cuda-check",
    "seed": 0,
    "batch_size": 8,
    "dataset": {"name": "harbor", "split": "test", "n": 24, "seed": 1},
    "models": [{"spec": "harbor:contextual"}],
    "methods": [{"name": "gradcam"}, {"name": "center"}, {"name": "rise", "n_masks": 50}],
    "metrics": [{"name": "pointing_game", "tolerance": 6.0}, {"name": "energy_pointing_game"}, {"name": "leakage"}],
}


def test_cuda_rows_match_cpu_rows(tmp_path):
    rows = {}
    for device in ("cpu", "cuda"):
        run_config(parse_config({**TINY, "device": device}), out_dir=tmp_path / device, progress=False)
        rows[device] = results.read_rows(tmp_path / device / results.SCORES)
    a, b = rows["cpu"], rows["cuda"]
    assert [(r["method"], r["image_id"], r["target"], r["output"]) for r in a] == [
        (r["method"], r["image_id"], r["target"], r["output"]) for r in b
    ]
    hits = [x["pointing_game"] == y["pointing_game"] for x, y in zip(a, b)]
    assert sum(hits) >= 0.95 * len(hits)  # an argmax tie may break differently on the GPU
    for x, y in zip(a, b):
        for col in ("energy_pointing_game", "leakage"):
            if math.isnan(x[col]):
                assert math.isnan(y[col])
            else:
                assert y[col] == pytest.approx(x[col], abs=1e-3)


def test_one_synchronisation_per_batch_on_cuda(tmp_path):
    cfg = {**TINY, "device": "cuda", "methods": [{"name": "gradcam"}, {"name": "center"}]}
    check = find_syncs(cfg, tmp_path / "sync")
    assert check.sites == []
    assert check.cuda_syncs == check.batches, f"{check.cuda_syncs} synchronising calls in {check.batches} batches"


def test_bf16_autocast_runs_on_cuda(tmp_path):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    run_config(parse_config({**TINY, "device": "cuda", "autocast": "bf16"}), out_dir=tmp_path / "bf16", progress=False)
    assert results.read_rows(tmp_path / "bf16" / results.SCORES)
