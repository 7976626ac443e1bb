"""``groundbench perf``: how close a run comes to the speed of the model, and how flat its memory.

The physical limit of a run is the model passes its method needs (Grad-CAM: one forward and one
backward to the target layer per batch; RISE: ``n_masks`` forwards per image). Everything else a
run does (decode and resize images from disk, attribute, upsample maps to each image, score
every metric, write the rows) should hide behind those passes. This module measures, in one
process and one run, for a ResNet-50 (defined here, random weights: speed does not depend on
them) and EfficientNet-Lite0 at 224x224, per method and batch size:

1. **limit**: the method's model passes alone, on inputs already on the device;
2. **pipeline**: the real engine (:func:`bench.engine.run_config`) on a folder of COCO-sized
   JPEGs (640x480, polygon masks, COCO layout, read by the ``coco`` loader in DataLoader
   workers), every applicable registered metric, rows written to disk;

and prints images/s of both, their ratio, and the share of the pipeline's time in each engine
stage (:class:`StageTimer`, the engine's ``timer`` hook). Both are steady-state rates: the first
batch (worker start-up, allocator warm-up, lazy initialisation) is not counted.

It also prints the peak resident memory of a small and a large harbor run (memory must not grow
with the number of samples), the metrics' per-sample cost beside Quantus's equivalents (through
``benchmarks/metrics_bench.py`` where the source checkout has it and Quantus is installed), and
the host synchronisations found in the loop (:class:`SyncDetector`: device-agnostic, so it
runs on a CPU too; on CUDA, also ``torch.cuda.set_sync_debug_mode``).

Timing conventions: on CUDA the throughput pass never synchronises except where the engine does
(once per batch, for the score rows); stage shares come from a second pass whose timer
synchronises at every stage boundary, because without that a stage's time is only the host's
time to queue its kernels. On a CPU the one pass gives both.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

STAGES = ("load", "prepare", "resolve", "attribute", "upsample", "metrics", "to_host", "rows", "write")
RESNET50_SPEC = "python:bench.perf:resnet50"
PIPELINE_TRUTH = ("masks", "boxes", "instances", "context")  # what the COCO-layout folder gives


# -- a ResNet-50 without torchvision ---------------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), torchvision's layout and names."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    """ResNet-50 (He et al. 2016; 25.6 M parameters, 4.1 GFLOPs at 224x224) with torchvision's
    module names, so ``layer4`` is the usual Grad-CAM layer (2048 x 7 x 7 at 224x224)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, layers = 64, []
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * Bottleneck.expansion
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(seed: int = 0, num_classes: int = 1000) -> nn.Module:
    """A ResNet-50 with random weights drawn from ``seed`` (He initialisation; the last BN of
    each residual branch scaled to 0.2 so that activations stay in range through 16 blocks), in
    eval mode. Model spec: ``python:bench.perf:resnet50``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet50(num_classes)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, Bottleneck):
                nn.init.constant_(m.bn3.weight, 0.2)
    return model.eval()


# -- stage timing ------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA, MPS); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class StageTimer:
    """The engine's ``timer`` hook: wall time per stage, summed over batches.

    ``sync=False`` (default) never touches the device, so timing does not change what it
    measures; on an asynchronous device a stage's time is then the host's time to queue its
    work, and the wait lands in whichever stage first needs a result (``to_host``).
    ``sync=True`` synchronises the device at every stage boundary: each stage gets its own
    device time, at the cost of the overlap between stages.
    """

    def __init__(self, device: torch.device | str = "cpu", sync: bool = False):
        self.device = torch.device(device)
        self.sync = sync
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.sync:
            synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                synchronize(self.device)
            self.totals[name] += time.perf_counter() - t0
            self.calls[name] += 1

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def shares(self, wall: float) -> dict[str, float]:
        """Each stage's time as a fraction of ``wall`` (the rest is loop overhead)."""
        return {k: v / wall for k, v in self.totals.items()} if wall > 0 else {}


# -- a folder of COCO-sized JPEGs ----------------------------------------------------------------


def perf_classes(k: int = 10) -> list[str]:
    """``k`` ImageNet class names, so that the ``imagenet`` class map gives each one output (the
    pipeline then needs no extra forward pass to pick among several outputs)."""
    from bench.models.class_maps import imagenet_identity_map

    names = [n for n in imagenet_identity_map().outputs if not (n[:1] == "n" and n[1:].isdigit())]
    return names[:: max(1, len(names) // k)][:k]


def _polygon(rng: np.random.Generator, h: int, w: int) -> tuple[list[float], list[float]]:
    """A random star-shaped polygon (24 vertices) and its xywh box, inside the image."""
    cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
    r = rng.uniform(0.08, 0.3) * min(h, w)
    angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    radii = r * rng.uniform(0.6, 1.0, size=24)
    xs = np.clip(cx + radii * np.cos(angles), 0, w - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, h - 1)
    poly = np.stack([xs, ys], 1).reshape(-1).round(2).tolist()
    box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]
    return poly, box


def write_image_folder(root: Path, n: int, *, size: tuple[int, int] = (480, 640), seed: int = 0, split: str = "perf") -> Path:
    """Write ``n`` JPEGs (quality 90, ``size`` = (h, w)) with 1-3 polygon objects each, in the
    COCO layout the ``coco`` loader reads (``root/<split>/*.jpg``,
    ``root/annotations/instances_<split>.json``). Images are smooth gradients, shapes and noise:
    photo-like enough that JPEG decoding costs what it costs on photos. Reuses a folder that
    already holds the same ``n``, ``size`` and ``seed``."""
    from PIL import Image, ImageDraw

    root = Path(root)
    ann_file = root / "annotations" / f"instances_{split}.json"
    stamp = {"n": n, "size": list(size), "seed": seed}
    if ann_file.exists():
        try:
            if json.loads(ann_file.read_text()).get("info", {}).get("groundbench_perf") == stamp:
                return root
        except ValueError:
            pass
    (root / split).mkdir(parents=True, exist_ok=True)
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = perf_classes()
    h, w = size
    images, anns = [], []
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx / w * rng.uniform(0.3, 1) + yy / h * rng.uniform(0.3, 1))[..., None] / 2
        pixels = c0 * (1 - t) + c1 * t + rng.normal(0, 6, (h, w, 3))
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            poly, box = _polygon(rng, h, w)
            cat = int(rng.integers(len(classes)))
            draw.polygon(poly, fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat + 1, "segmentation": [poly],
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        name = f"{i + 1:06d}.jpg"
        img.save(root / split / name, quality=90)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
    data = {"info": {"groundbench_perf": stamp}, "images": images, "annotations": anns,
            "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}
    ann_file.write_text(json.dumps(data))
    return root


def targets_per_image(root: Path, first: int, last: int, split: str = "perf") -> float:
    """Mean number of targets (distinct classes) of images ``first`` .. ``last - 1`` of the
    folder: the engine attributes one (image, target) pair per target, so the model passes a
    pipeline image needs are this many times those of one input."""
    data = json.loads((Path(root) / "annotations" / f"instances_{split}.json").read_text())
    ids = [img["id"] for img in data["images"][first:last]]
    classes: dict[int, set[int]] = {i: set() for i in ids}
    for ann in data["annotations"]:
        if ann["image_id"] in classes:
            classes[ann["image_id"]].add(ann["category_id"])
    return sum(len(c) for c in classes.values()) / max(1, len(ids))


# -- host synchronisations, found on any device ------------------------------------------------------

# Reading a tensor's values on the host: on an accelerator each waits for the device's queue.
_HOST_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__",
               "__repr__", "__format__", "equal", "allclose"}
# Operations whose output shape depends on the data: the host must wait to learn the shape.
_DATA_SHAPED = {"nonzero", "masked_select", "unique", "unique_consecutive", "argwhere"}


@dataclass
class SyncSite:
    op: str
    where: str  # file:line function of the nearest groundbench frame


class SyncDetector(TorchFunctionMode):
    """Records every operation that would make the host wait for the device, on any device.

    Tensors count as *on the device* when they are the model's parameters, come from
    ``.to(...)``/``.cuda()`` or a factory call given a ``device``, or are computed from such
    tensors. A host read of one (``.item()``, ``.tolist()``, ``.cpu()``, ``bool()``/``int()``/
    ``float()``, ...) or a data-dependent shape (``nonzero``, boolean-mask indexing, ``unique``)
    is a synchronisation point on CUDA; here it is recorded with the groundbench line that did
    it. Tensors built on the host from host data (sample masks) are free to read.
    """

    def __init__(self, model: nn.Module | None = None):
        super().__init__()
        self._device_ids: set[int] = set()
        self._keep: list[torch.Tensor] = []  # keeps ids unique while the detector lives
        self.sites: list[SyncSite] = []
        if model is not None:
            for t in [*model.parameters(), *model.buffers()]:
                self._mark(t)

    def _mark(self, t: Any) -> None:
        if isinstance(t, torch.Tensor):
            self._device_ids.add(id(t))
            self._keep.append(t)
        elif isinstance(t, (list, tuple)):
            for x in t:
                self._mark(x)

    def _on_device(self, args: Any) -> bool:
        if isinstance(args, torch.Tensor):
            return id(args) in self._device_ids
        if isinstance(args, (list, tuple)):
            return any(self._on_device(a) for a in args)
        if isinstance(args, dict):
            return any(self._on_device(a) for a in args.values())
        return False

    def _record(self, op: str) -> None:
        where = "?"
        root = str(Path(__file__).resolve().parent)
        for frame in reversed(traceback.extract_stack()[:-2]):
            if frame.filename.startswith(root) and not frame.filename.endswith("perf.py"):
                where = f"{Path(frame.filename).relative_to(Path(root).parent)}:{frame.lineno} {frame.name}"
                break
        self.sites.append(SyncSite(op, where))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        on_device = self._on_device(args) or self._on_device(kwargs)
        if on_device and (name in _HOST_READS or name in _DATA_SHAPED):
            self._record(name)
        elif on_device and name in ("__getitem__", "__setitem__", "index_put_", "index_put"):
            index = args[1] if len(args) > 1 else None
            parts = index if isinstance(index, (tuple, list)) else (index,)
            if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
                self._record(f"{name}[bool mask]")
        elif on_device and name == "where" and len(args) == 1:
            self._record("where(cond)")
        out = func(*args, **kwargs)
        if name in _HOST_READS:
            return out  # the copy is on the host now
        uploads = name in ("to", "cuda") or kwargs.get("device") is not None
        if uploads or on_device:
            self._mark(out)
        return out

    def report(self, allowed: tuple[str, ...] = ("_to_host",)) -> list[SyncSite]:
        """The sites not in an ``allowed`` function (the engine's one score copy per batch)."""
        return [s for s in self.sites if not any(s.where.endswith(" " + a) for a in allowed)]


@dataclass
class SyncCheck:
    batches: int
    sites: list[SyncSite]  # synchronisations besides the one score copy per batch
    cuda_syncs: int | None = None  # what torch.cuda's sync debug mode counted in the loop (CUDA only)


def find_syncs(cfg_data: dict[str, Any], out_dir: Path) -> SyncCheck:
    """Run ``cfg_data`` with each batch's scoring under a :class:`SyncDetector` (and, on CUDA,
    ``torch.cuda.set_sync_debug_mode("warn")``, counting what it reports). Model parameters
    count as device tensors."""
    from bench import engine
    from bench.config import parse_config

    cfg = parse_config(cfg_data, allow_code=True)  # groundbench's own benchmark configs
    cuda = engine.resolve_device(cfg.device).type == "cuda"
    detectors: list[SyncDetector] = []
    batches: list[int] = []
    caught: list[warnings.WarningMessage] = []
    original = engine._score_batch

    def watched(cfg_, bundle, model, *args, **kwargs):
        det = SyncDetector(model)
        detectors.append(det)
        with det, warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                return original(cfg_, bundle, model, *args, **kwargs)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode(0)
                caught.extend(w for w in seen if "synchroniz" in str(w.message).lower())

    if out_dir.exists():
        shutil.rmtree(out_dir)
    engine._score_batch = watched
    try:
        engine.run_config(cfg, out_dir=out_dir, progress=False, on_batch=batches.append)
    finally:
        engine._score_batch = original
    sites = [s for d in detectors for s in d.report()]
    copies = sum(1 for d in detectors if len(d.report()) < len(d.sites))
    if copies != len(detectors):  # every batch with jobs copies its scores once
        sites.append(SyncSite(f"score copy in only {copies} of {len(detectors)} batches", "bench/engine.py _to_host"))
    return SyncCheck(len(batches), sites, len(caught) if cuda else None)


# -- the limit: the method's model passes alone ----------------------------------------------------------


def model_passes(method_name: str, params: dict[str, Any], model: nn.Module, layer: str | None,
                 inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    """One call = the model passes ``method_name`` needs for the batch ``inputs`` and nothing
    else: Grad-CAM-like methods one forward (layer output kept) and one backward to the target
    layer; RISE ``n_masks`` forwards per image in chunks of ``internal_batch_size``."""
    from bench.methods import create_method
    from bench.methods.base import resolve_layer

    method = create_method(method_name, **params)
    if method.family == "cam":
        module, _act = resolve_layer(model, params.get("layer") or layer)
        grads = getattr(method, "uses_gradients", True)

        def cam_passes() -> None:
            kept: list[torch.Tensor] = []
            handle = module.register_forward_hook(lambda _m, _i, out: kept.append(out))
            try:
                with torch.set_grad_enabled(grads):
                    logits = model(inputs)
                    if grads:
                        torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), kept[0])
            finally:
                handle.remove()

        return cam_passes
    if method_name == "rise":
        n, chunk = int(method.params["n_masks"]), int(method.params["internal_batch_size"])
        total = inputs.shape[0] * n
        sizes = [min(chunk, total - s) for s in range(0, total, chunk)]
        pool = inputs[torch.arange(chunk, device=inputs.device) % inputs.shape[0]]

        @torch.no_grad()
        def rise_passes() -> None:
            for size in sizes:
                model(pool[:size])

        return rise_passes
    raise ValueError(f"perf: no model-pass limit defined for method {method_name!r} (gradcam-like or rise)")


def measure_limit(bundle, method_name: str, params: dict[str, Any], batch_size: int, device: torch.device,
                  *, autocast: str = "none", iters: int = 3, seed: int = 0) -> float:
    """Images/s of the method's model passes alone (:func:`model_passes`), after one warm-up."""
    model = bundle.module.to(device).to(memory_format=torch.channels_last)
    h, w = bundle.preprocess.size if hasattr(bundle.preprocess, "size") else (224, 224)
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch_size, 3, h, w, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    num = int(bundle.info.get("num_outputs", 1000))
    targets = torch.randint(0, num, (batch_size,), generator=g).to(device)
    run = model_passes(method_name, params, model, bundle.target_layer, inputs, targets)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast == "bf16" else contextlib.nullcontext
    with ctx():
        run()
    synchronize(device)
    t0 = time.perf_counter()
    with ctx():
        for _ in range(iters):
            run()
    synchronize(device)
    return batch_size * iters / (time.perf_counter() - t0)


def measure_method(bundle, method_name: str, params: dict[str, Any], batch_size: int, device: torch.device,
                   *, autocast: str = "none", iters: int = 3, seed: int = 0) -> float:
    """Images/s of the attribution method itself (its model passes plus its own work: hooks,
    channel weighting, RISE's masks) on inputs already on the device; no data, no metrics."""
    from bench.methods import create_method

    model = bundle.module.to(device).to(memory_format=torch.channels_last)
    h, w = bundle.preprocess.size if hasattr(bundle.preprocess, "size") else (224, 224)
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch_size, 3, h, w, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, int(bundle.info.get("num_outputs", 1000)), (batch_size,), generator=g).to(device)
    method = create_method(method_name, **params).with_model_defaults(bundle.target_layer)
    seeds = list(range(batch_size))
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast == "bf16" else contextlib.nullcontext
    with ctx():
        method(model, inputs, targets, seeds=seeds)
    synchronize(device)
    t0 = time.perf_counter()
    with ctx():
        for _ in range(iters):
            method(model, inputs, targets, seeds=seeds)
    synchronize(device)
    return batch_size * iters / (time.perf_counter() - t0)


# -- the pipeline: the real engine from JPEG files to score rows -----------------------------------------


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


# -- memory: flat in the number of samples ---------------------------------------------------------------


def harbor_memory_config(n: int, quick: bool, device: str = "cpu") -> dict[str, Any]:
    """The harbor suite with ``n`` test scenes on ``device`` (``quick``: one model, Grad-CAM
    only, batches of 16 so that a small run has enough batches for the allocator's high-water
    mark to settle)."""
    import tomllib

    from bench.cli.run import default_config_path

    data = tomllib.loads(default_config_path().read_text())
    data["dataset"]["n"] = n
    data["device"] = device
    if quick:
        data["batch_size"] = 16
        data["models"] = data["models"][:1]
        data["methods"] = [m for m in data["methods"] if m["name"] == "gradcam"]
    return data


def peak_rss_mb(cfg_data: dict[str, Any], out_dir: Path, *, threads: int | None = None, timeout: float = 3600) -> float:
    """Peak resident memory (MiB, :func:`own_peak_rss_mb`) of a fresh process that runs ``cfg_data``.
    A subprocess, so that each size starts from the same baseline."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.perf", "rss", json.dumps(cfg_data), str(out_dir)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"perf: memory probe failed:\n{proc.stderr[-4000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def _rss_probe(cfg_json: str, out_dir: str) -> None:
    from bench.config import parse_config
    from bench.engine import run_config

    summary = run_config(parse_config(json.loads(cfg_json), allow_code=True), out_dir=Path(out_dir), progress=False)
    print(json.dumps({"peak_rss_mb": own_peak_rss_mb(), "rows": summary.rows_written}))


def own_peak_rss_mb() -> float:
    """This process's peak resident memory in MiB. On Linux ``VmHWM`` (the high-water mark of
    this program's own memory): ``ru_maxrss`` would not do in a subprocess, since Linux carries
    the parent's peak over ``fork`` and ``exec``. Elsewhere ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024 / 1024 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS


# -- metrics against Quantus ----------------------------------------------------------------------------


def metrics_vs_quantus(batch: int = 64, size: tuple[int, int] = (480, 640), repeats: int = 3) -> list[dict[str, Any]] | str:
    """Per-sample cost on this machine's CPU of every metric the pipeline scores, on ``batch``
    maps of ``size``, beside Quantus's equivalent where it has one. Reuses
    ``benchmarks/metrics_bench.py`` (its batch builder, timer and Quantus adapters); a string
    says why it could not run."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "metrics_bench.py"
    if not path.exists():
        return f"skipped: {path} not found (a source checkout has it)"
    spec = importlib.util.spec_from_file_location("groundbench_metrics_bench", path)
    bench_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_mod)
    from bench.metrics import METRICS

    try:
        import quantus  # noqa: F401

        have_quantus = True
    except ImportError:
        have_quantus = False
    maps, truth = bench_mod.make_batch(batch, *size)
    out = []
    for name in [m["name"] for m in pipeline_metrics()]:
        info = METRICS.get(name)
        ours = bench_mod.best_time(lambda: info.score(maps, truth, **info.defaults), repeats) / batch
        theirs = math.nan
        if have_quantus and name in bench_mod.QUANTUS:
            runner = bench_mod.quantus_timer(name, maps, truth)
            if runner is not None:
                theirs = bench_mod.best_time(runner, repeats) / batch
        out.append({"metric": name, "groundbench_ms": ours * 1e3, "quantus_ms": theirs * 1e3, "speedup": theirs / ours})
    return out


# -- the whole benchmark -------------------------------------------------------------------------------


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
                                  "steady_batches": opts.batches, "image_size": "640x480 JPEG", "input_size": "224x224"})
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


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


# -- rendering --------------------------------------------------------------------------------------------

SHORT = {"load": "load", "prepare": "prep", "resolve": "resolve", "attribute": "attr", "upsample": "upsmpl",
         "metrics": "metrics", "to_host": "host", "rows": "rows", "write": "write"}


def format_row(r: Row) -> str:
    shares = " ".join(f"{r.stages.get(s, 0.0) * 100:6.1f}" for s in STAGES)
    return (f"{r.model:13s} {r.method:8s} {r.batch_size:5d} {r.targets_per_image:5.2f} {r.limit:8.2f} {r.method_only:8.2f} "
            f"{r.pipeline:8.2f} {r.ratio:6.2f}  {shares}")


def render(report: PerfReport) -> str:
    lines = [f"groundbench perf — {report.device}; torch {report.environment['torch']}",
             "settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items()),
             "",
             "images/s (steady state): limit = the method's model passes alone; method = the method call alone (both for",
             "the same (image, target) pairs as the pipeline: tgt/img of them per image); pipeline = JPEG files to score",
             "rows through the engine; ratio = pipeline / limit; stage shares in % of pipeline time",
             f"{'model':13s} {'method':8s} {'batch':>5s} {'tgt/i':>5s} {'limit':>8s} {'method':>8s} {'pipeline':>8s} {'ratio':>6s}  "
             + " ".join(f"{SHORT[s]:>6s}" for s in STAGES)]
    lines += [format_row(r) for r in report.rows]
    lines += [f"note: {n}" for n in report.notes]
    if report.syncs:
        lines.append("\nhost synchronisations in the loop besides the one score copy per batch:")
        for key, sites in report.syncs.items():
            lines.append(f"  {key}: " + (sites if isinstance(sites, str) else (", ".join(sorted(set(sites))) or "none")))
    if report.memory:
        m = report.memory
        (a, b), (ra, rb) = m["samples"], m["peak_rss_mb"]
        lines.append(f"\npeak resident memory, {m['suite']}: {a} samples {ra:.0f} MiB, {b} samples {rb:.0f} MiB ({m['growth'] * 100:+.1f}%)")
    if isinstance(report.metrics, str) and report.metrics:
        lines.append(f"\nmetrics vs Quantus: {report.metrics}")
    elif report.metrics:
        lines.append(f"\nmetrics, ms per sample on the CPU ({report.settings.get('metrics_batch', 64)} maps at 640x480; Quantus where it has the metric)")
        lines.append(f"{'metric':22s} {'groundbench':>12s} {'quantus':>10s} {'speedup':>8s}")
        for m in report.metrics:
            q = f"{m['quantus_ms']:10.3f}" if math.isfinite(m["quantus_ms"]) else f"{'-':>10s}"
            x = f"{m['speedup']:7.1f}x" if math.isfinite(m["speedup"]) else f"{'-':>8s}"
            lines.append(f"{m['metric']:22s} {m['groundbench_ms']:12.3f} {q} {x}")
        total = sum(m["groundbench_ms"] for m in report.metrics)
        lines.append(f"{'all of them':22s} {total:12.3f}")
    return "\n".join(lines)


def to_json(report: PerfReport) -> dict[str, Any]:
    return asdict(report)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "rss":
        warnings.simplefilter("ignore")
        _rss_probe(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python -m bench.perf rss CONFIG_JSON OUT_DIR  (the benchmark is `groundbench perf`)")
