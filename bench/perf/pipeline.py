"""The pipeline: the real engine from JPEG files to score rows, at steady state."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.perf.resnet import SPEC as RESNET50_SPEC
from bench.perf.timing import StageTimer

PIPELINE_TRUTH = ("masks", "instances", "context")  # what the COCO-layout folder gives


def pipeline_metrics() -> list[dict[str, Any]]:
    """Every registered metric the image folder has the ground truth for, with its defaults."""
    from bench.metrics import METRICS

    return [{"name": n} for n in METRICS.names() if set(METRICS.get(n).requires) <= set(PIPELINE_TRUTH)]


def model_entry(model: str) -> dict[str, Any]:
    if model == "resnet50":
        return {"spec": RESNET50_SPEC, "target_layer": "layer4", "class_map": "imagenet", "input_size": 224}
    if model == "effnet-lite0":
        return {"spec": "effnet-lite0", "class_map": "imagenet"}
    raise ValueError(f"perf: unknown model {model!r} (resnet50, effnet-lite0)")


def pipeline_config(model: str, method: dict[str, Any], data_root: Path, n_images: int, batch_size: int,
                    device: str, workers: int, autocast: str) -> dict[str, Any]:
    return {
        "name": "perf",
        "seed": 0,
        "device": device,
        "batch_size": batch_size,
        "num_workers": workers,
        "autocast": autocast,
        "dataset": {"name": "coco", "root": str(data_root), "split": "perf", "limit": n_images, "manifest": ""},
        "models": [model_entry(model)],
        "methods": [method],
        "metrics": pipeline_metrics(),
    }


@dataclass
class PipelineResult:
    images_per_s: float
    images: int
    batches: int
    stage_shares: dict[str, float]
    rows: int


def measure_pipeline(cfg_data: dict[str, Any], out_dir: Path, device: torch.device, *, sync_stages: bool) -> PipelineResult:
    """Steady-state images/s of :func:`bench.engine.run_config` (batches after the first) and
    the share of that time in each stage."""
    from bench.config import parse_config
    from bench.engine import run_config

    cfg = parse_config(cfg_data, allow_code=True)  # groundbench's own benchmark configs
    timer = StageTimer(device, sync=sync_stages)
    stamps: list[float] = []
    totals: dict[str, float] = {}

    def on_batch(batch_no: int) -> None:
        stamps.append(time.perf_counter())
        if batch_no == 0:
            timer.reset()  # stage times over the same batches as the rate
        # What follows the last batch (the loader's shutdown) is outside the rate: stop here.
        totals.clear()
        totals.update(timer.totals)

    if out_dir.exists():
        shutil.rmtree(out_dir)
    summary = run_config(cfg, out_dir=out_dir, progress=False, on_batch=on_batch, timer=timer)
    n = int(cfg_data["dataset"]["limit"])
    bs = cfg.batch_size
    if len(stamps) < 2:
        raise ValueError(f"perf: need at least 2 batches for a steady-state rate, got {len(stamps)} ({n} images at batch {bs})")
    steady_images = n - min(bs, n)
    wall = stamps[-1] - stamps[0]
    shares = {k: v / wall for k, v in totals.items()}
    return PipelineResult(steady_images / wall, steady_images, len(stamps) - 1, shares, summary.rows_written)
