"""Host synchronisations in the run loop, found on any device (a CPU included)."""

from __future__ import annotations

import shutil
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

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
        root = str(Path(__file__).resolve().parents[1])  # the bench package
        own = str(Path(__file__).resolve().parent)  # the perf package's frames are the detector's
        for frame in reversed(traceback.extract_stack()[:-2]):
            if frame.filename.startswith(root) and not frame.filename.startswith(own):
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

    def report(self, allowed: tuple[str, ...] = ("to_host",)) -> list[SyncSite]:
        """The sites not in an ``allowed`` function (the scoring core's one score copy per
        batch, :func:`bench.scoring.to_host`)."""
        return [s for s in self.sites if not any(s.where.endswith(" " + a) for a in allowed)]


@dataclass
class SyncCheck:
    batches: int
    sites: list[SyncSite]  # synchronisations besides the one score copy per batch
    cuda_syncs: int | None = None  # what torch.cuda's sync debug mode counted in the loop (CUDA only)


def find_syncs(cfg_data: dict[str, Any], out_dir: Path) -> SyncCheck:
    """Run ``cfg_data`` with each batch's scoring (:func:`bench.scoring.score_batch`, the call
    the engine makes per batch) under a :class:`SyncDetector` (and, on CUDA,
    ``torch.cuda.set_sync_debug_mode("warn")``, counting what it reports). Model parameters
    count as device tensors."""
    from bench import engine, scoring
    from bench.config import parse_config

    cfg = parse_config(cfg_data, allow_code=True)  # groundbench's own benchmark configs
    cuda = engine.resolve_device(cfg.device).type == "cuda"
    detectors: list[SyncDetector] = []
    batches: list[int] = []
    caught: list[warnings.WarningMessage] = []

    def watched(run: scoring.ModelRun, batch) -> scoring.BatchResult:
        det = SyncDetector(run.module)
        detectors.append(det)
        with det, warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                return scoring.score_batch(run, batch)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode(0)
                caught.extend(w for w in seen if "synchroniz" in str(w.message).lower())

    if out_dir.exists():
        shutil.rmtree(out_dir)
    engine.run_config(cfg, out_dir=out_dir, progress=False, on_batch=batches.append, scorer=watched)
    sites = [s for d in detectors for s in d.report()]
    copies = sum(1 for d in detectors if len(d.report()) < len(d.sites))
    if copies != len(detectors):  # every batch with jobs copies its scores once
        sites.append(SyncSite(f"score copy in only {copies} of {len(detectors)} batches", "bench/scoring.py to_host"))
    return SyncCheck(len(batches), sites, len(caught) if cuda else None)
