"""The whole benchmark: every measurement of :mod:`bench.perf` in one report."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bench import host_allocator
from bench.perf.coco_folder import targets_per_image, write_image_folder
from bench.perf.limit import measure_limit, measure_method
from bench.perf.memory import harbor_memory_config, peak_rss_mb
from bench.perf.pipeline import measure_pipeline, model_entry, pipeline_config
from bench.perf.quantus_timing import metrics_vs_quantus
from bench.perf.render import format_row
from bench.perf.syncs import find_syncs


@dataclass
class Row:
    model: str
    method: str
    batch_size: int
    limit: float
    method_only: float
    pipeline: float
    ratio: float
    stages: dict[str, float]
    images: int
    targets_per_image: float = 1.0


@dataclass
class PerfReport:
    device: str
    environment: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] | str = ""
    syncs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PerfOptions:
    device: str = "auto"
    models: tuple[str, ...] = ("resnet50", "effnet-lite0")
    methods: tuple[str, ...] = ("gradcam", "rise")
    batch_sizes: tuple[int, ...] = (1, 16, 64)
    batches: int = 3  # steady-state batches per measurement (one more is the warm-up)
    workers: int | None = None
    autocast: str = "none"
    rise_masks: int | None = None
    memory_sizes: tuple[int, int] = (500, 5000)
    memory_quick: bool = False
    memory: bool = True
    quantus: bool = True
    metrics_batch: int = 64
    metrics_repeats: int = 3
    check_syncs: bool = True
    work_dir: Path | None = None
    threads: int | None = None


def quick_options(**over: Any) -> PerfOptions:
    """A few minutes on two CPU cores: batch sizes 1 and 16, two timed batches, a smaller
    memory comparison (one model, Grad-CAM), RISE with 8 masks."""
    base = dict(batch_sizes=(1, 16), batches=2, memory_sizes=(200, 2000), memory_quick=True, rise_masks=8,
                metrics_batch=16, metrics_repeats=2)
    base.update(over)
    return PerfOptions(**base)


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_name(),
                           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def _method_entry(name: str, rise_masks: int) -> dict[str, Any]:
    if name == "rise":
        return {"name": "rise", "n_masks": rise_masks}
    return {"name": name}


def run_benchmark(opts: PerfOptions, log: Callable[[str], None] = print) -> PerfReport:
    """Measure everything :mod:`bench.perf` describes; ``log`` gets progress lines."""
    from bench.engine import resolve_device
    from bench.methods import METHODS
    from bench.models import load_model

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    workers = opts.workers if opts.workers is not None else min(8, os.cpu_count() or 1)
    rise_masks = opts.rise_masks or (1000 if device.type == "cuda" else 16)
    report = PerfReport(device=_device_name(device), environment=environment(device),
                        settings={"workers": workers, "autocast": opts.autocast, "rise_masks": rise_masks,
                                  "steady_batches": opts.batches, "image_size": "640x480 JPEG", "input_size": "224x224",
                                  # One process measures the limit and the pipeline: the same allocator for both.
                                  "allocator": host_allocator.describe(),
                                  # Timings taken on a busy machine are not comparable: say how busy it was.
                                  "load_average": _load_average()})
    work = Path(opts.work_dir) if opts.work_dir else Path(tempfile.mkdtemp(prefix="groundbench-perf-"))
    own_work = opts.work_dir is None
    try:
        largest = max(opts.batch_sizes) * (opts.batches + 1)
        log(f"writing {largest} JPEGs (640x480) to {work / 'images'} ...")
        data_root = write_image_folder(work / "images", largest)
        for model in opts.models:
            try:
                bundle = load_model(model_entry(model)["spec"], **{k: v for k, v in model_entry(model).items() if k != "spec"})
            except Exception as exc:  # noqa: BLE001 - a missing optional model is reported, not fatal
                report.notes.append(f"{model}: skipped ({type(exc).__name__}: {exc})")
                log(report.notes[-1])
                continue
            for method in opts.methods:
                if method not in METHODS:
                    report.notes.append(f"{method}: skipped (method not registered)")
                    log(report.notes[-1])
                    continue
                entry = _method_entry(method, rise_masks)
                params = {k: v for k, v in entry.items() if k != "name"}
                for bs in opts.batch_sizes:
                    n = bs * (opts.batches + 1)
                    # The engine attributes every (image, target) pair: a batch of bs images is
                    # about bs * k model inputs. The limit runs the same number, per image.
                    k = targets_per_image(data_root, bs, n)
                    jobs = max(1, round(bs * k))
                    limit = measure_limit(bundle, method, params, jobs, device, autocast=opts.autocast, iters=opts.batches) / k
                    alone = measure_method(bundle, method, params, jobs, device, autocast=opts.autocast, iters=opts.batches) / k
                    cfg = pipeline_config(model, entry, data_root, n, bs, str(device), workers, opts.autocast)
                    pipe = measure_pipeline(cfg, work / "run", device, sync_stages=False)
                    stages = pipe.stage_shares
                    if device.type != "cpu":  # a second pass, synchronised per stage, for the shares
                        stages = measure_pipeline(cfg, work / "run", device, sync_stages=True).stage_shares
                    row = Row(model, method, bs, limit, alone, pipe.images_per_s, pipe.images_per_s / limit, stages, pipe.images, k)
                    report.rows.append(row)
                    log(format_row(row))
            del bundle
        if opts.check_syncs:
            report.syncs = _sync_check(opts, data_root, work, device, workers, rise_masks, log)
        if opts.memory:
            small, large = opts.memory_sizes
            log(f"peak resident memory: harbor runs of {small} and {large} samples (subprocesses) ...")
            a = peak_rss_mb(harbor_memory_config(small, opts.memory_quick, str(device)), work / "mem-small", threads=opts.threads)
            b = peak_rss_mb(harbor_memory_config(large, opts.memory_quick, str(device)), work / "mem-large", threads=opts.threads)
            report.memory = {"samples": [small, large], "peak_rss_mb": [a, b], "growth": b / a - 1,
                             "suite": "harbor (1 model, Grad-CAM, batch 16)" if opts.memory_quick else "harbor default suite"}
            log(f"  {small}: {a:.0f} MiB, {large}: {b:.0f} MiB ({(b / a - 1) * 100:+.1f}%)")
        if opts.quantus:
            log(f"metric cost per sample vs Quantus ({opts.metrics_batch} maps, 640x480) ...")
            report.metrics = metrics_vs_quantus(opts.metrics_batch, repeats=opts.metrics_repeats)
            report.settings["metrics_batch"] = opts.metrics_batch
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    return report


def _sync_check(opts, data_root, work, device, workers, rise_masks, log) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for model in opts.models:
        for method in opts.methods:
            cfg = pipeline_config(model, _method_entry(method, min(rise_masks, 4)), data_root, 4, 2, str(device), 0, opts.autocast)
            try:
                check = find_syncs(cfg, work / "sync")
            except Exception as exc:  # noqa: BLE001 - reported beside the table
                found[f"{model}/{method}"] = f"not checked ({type(exc).__name__}: {exc})"
                continue
            found[f"{model}/{method}"] = [f"{s.op} at {s.where}" for s in check.sites]
            cuda = "" if check.cuda_syncs is None else f"; CUDA sync debug mode: {check.cuda_syncs} synchronising calls"
            if check.cuda_syncs is not None:
                found[f"{model}/{method}"].append(f"CUDA sync debug mode counted {check.cuda_syncs} in {check.batches} batches")
            log(f"host synchronisations besides the score copy, {model}/{method}: {len(check.sites)} in {check.batches} batches{cuda}")
    return found


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "unknown"
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min) at start, {os.cpu_count()} CPUs"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
