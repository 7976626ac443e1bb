"""From the Sample stream to what the model and the metrics consume.

Decoding and preprocessing run in DataLoader workers (:class:`PreparedSamples`); the main
process turns a batch into one model input tensor and, per group of equal image size, one
:class:`bench.metrics.TruthBatch` on the device.

Bad input policy (what the README's "Guarantees" states):

- A sample whose loading raises ``OSError`` or ``ValueError`` (a missing, truncated, corrupt or
  oversized image file, an annotation that breaks its format, a mask of the wrong size) is
  skipped: :class:`Prepared` carries the error, the engine records it in ``skipped.jsonl`` and
  the run goes on. Any other exception is a bug and stops the run (rows written so far stay).
- A target with no ground truth at all (:func:`target_problem`: an empty mask, e.g. from boxes
  outside the image or of zero area, or an empty segmentation; non-finite box coordinates) is
  skipped and recorded the same way; the image's other targets are scored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.sample import Sample, Target
from bench.metrics.base import TruthBatch


@dataclass
class Prepared:
    """A sample ready for the engine: the model input instead of the full image."""

    index: int
    image_id: str
    size: tuple[int, int]
    input: torch.Tensor | None
    targets: list[Target] = field(default_factory=list)
    fixations: torch.Tensor | None = None
    density: torch.Tensor | None = None
    other_fixations: torch.Tensor | None = None
    error: str | None = None  # why this sample could not be loaded (it is skipped, not fatal)
    digest: str | None = None  # :func:`sample_digest` of what the model and metrics see


class PreparedSamples(Dataset):
    """Wraps a dataset of Samples: loads sample ``indices[k]`` and preprocesses it."""

    def __init__(self, dataset: Dataset, preprocess: Callable[[torch.Tensor], torch.Tensor], indices: Sequence[int], skip_errors: bool = True):
        self.dataset = dataset
        self.preprocess = preprocess
        self.indices = list(indices)
        self.skip_errors = skip_errors

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Prepared:
        index = self.indices[k]
        try:
            sample: Sample = self.dataset[index]
            _check_sample(sample)
            model_input = self.preprocess(sample.image)
            digest = sample_digest(model_input, sample)
        except (OSError, ValueError) as exc:
            # Bad input is recorded and skipped; anything else is a bug and propagates.
            if not self.skip_errors:
                raise
            image_id = _image_id(self.dataset, index)
            return Prepared(index, image_id, (0, 0), None, error=f"{type(exc).__name__}: {exc}")
        return Prepared(
            index=index,
            image_id=sample.image_id,
            size=sample.size,
            input=model_input,
            targets=sample.targets,
            fixations=sample.fixations,
            density=sample.density,
            other_fixations=getattr(sample, "other_fixations", None),
            digest=digest,
        )


def _image_id(dataset: Dataset, index: int) -> str:
    """The id of a sample that failed to load, without loading it: from the dataset's
    ``image_id(index)`` method or ``image_ids`` sequence where it has one, else ``"#<index>"``."""
    try:
        if callable(getattr(dataset, "image_id", None)):
            return str(dataset.image_id(index))
        ids = getattr(dataset, "image_ids", None)
        if ids is not None:
            return str(ids[index])
    except (IndexError, KeyError, TypeError, ValueError):
        pass
    return f"#{index}"


def _check_sample(sample: Sample) -> None:
    img = sample.image
    if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"{sample.image_id}: image must be a 3xHxW tensor, got {getattr(img, 'shape', type(img))}")
    h, w = sample.size
    for t in sample.targets:
        if tuple(t.mask.shape) != (h, w):
            raise ValueError(f"{sample.image_id}: mask of {t.label!r} is {tuple(t.mask.shape)}, image is {(h, w)}")


def _tensor_bytes(t: torch.Tensor | None) -> bytes:
    if t is None:
        return b"-"
    t = torch.as_tensor(t).detach().cpu().contiguous()
    if t.dtype == torch.bool:
        # Bit-packed: hashing a 12-megapixel mask costs what hashing 1.5 MB does.
        return str(tuple(t.shape)).encode() + np.packbits(t.numpy().reshape(-1)).tobytes()
    return str((tuple(t.shape), str(t.dtype))).encode() + t.numpy().tobytes()


def sample_digest(model_input: torch.Tensor, sample: Sample) -> str:
    """sha256 (first 16 hex digits) of what a run consumes from one sample: the model input
    after preprocessing and all ground truth. Two runs that read the same digests scored the
    same data, whatever files or loader versions it came from; the run's provenance combines
    them into one data hash per model."""
    h = hashlib.sha256()
    h.update(sample.image_id.encode())
    h.update(_tensor_bytes(model_input))
    for t in sample.targets:
        h.update(b"|target|" + t.label.encode() + bytes([bool(t.difficult)]))
        for part in (t.mask, t.instances, t.boxes):
            h.update(_tensor_bytes(part))
        for name in sorted(t.context):
            h.update(name.encode() + _tensor_bytes(t.context[name]))
    for part in (sample.fixations, sample.density, getattr(sample, "other_fixations", None)):
        h.update(_tensor_bytes(part))
    return h.hexdigest()[:16]


def target_problem(target: Target, prepared: "Prepared") -> str | None:
    """Why ``target`` cannot be scored, or None. A target needs some ground truth: a mask pixel,
    or (gaze data) a fixation or a density map; boxes must have finite coordinates."""
    boxes = target.boxes
    if boxes is not None and len(boxes) and not bool(torch.isfinite(torch.as_tensor(boxes)).all()):
        return f"target {target.label!r} has non-finite box coordinates"
    if bool(target.mask.any()):
        return None
    if prepared.fixations is not None and len(prepared.fixations):
        return None
    if prepared.density is not None and bool((torch.as_tensor(prepared.density) > 0).any()):
        return None
    return (
        f"target {target.label!r} has an empty ground-truth mask (boxes outside the image or "
        "of zero area, or an empty segmentation)"
    )


def unscored_metrics(prepared: "Prepared", columns) -> str | None:
    """Why some metric columns cannot score this sample though its other columns can, or None:
    the columns that need fixation points, where the data gives a density map only (MIT1003's
    benchmark layout). Their values are undefined (NaN) and the reason is recorded once per
    (sample, target), so a leaderboard says why those cells are empty."""
    if prepared.fixations is not None:
        return None
    labels = [c.label for c in columns if "fixations" in c.info.requires]
    if not labels:
        return None
    return f"{', '.join(labels)} not scored (no fixation points in the data, only a density map)"


class PreparedBatch(list):
    """A batch: the :class:`Prepared` samples in batch order (it is a list), plus the model
    inputs of the loaded ones stacked once into ``inputs`` (N x C x h x w; ``input_rows`` maps a
    batch position to its row; each sample's ``input`` becomes a view of that row). Stacking
    happens in the DataLoader worker, and a pinning DataLoader (CUDA) pins this one tensor, so
    the engine's upload is one asynchronous copy. ``inputs`` is None when the inputs differ in
    shape (a preprocessing without a fixed size)."""

    inputs: torch.Tensor | None = None
    input_rows: dict[int, int]

    def pin_memory(self) -> "PreparedBatch":
        # Called by DataLoader(pin_memory=True) in its pinning thread.
        if self.inputs is not None:
            self.inputs = self.inputs.pin_memory()
            for pos, row in self.input_rows.items():
                self[pos].input = self.inputs[row]
        return self


def collate_prepared(batch: list[Prepared]) -> PreparedBatch:
    out = PreparedBatch(batch)
    loaded = [pos for pos, p in enumerate(batch) if p.input is not None]
    out.input_rows = {pos: row for row, pos in enumerate(loaded)}
    shapes = {tuple(batch[pos].input.shape) for pos in loaded}
    if len(shapes) == 1:
        out.inputs = torch.stack([batch[pos].input for pos in loaded])
        for pos, row in out.input_rows.items():
            out[pos].input = out.inputs[row]
    return out


def fixation_map(points: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
    """Bool HxW with the fixated pixels set. A point (x, y) marks pixel (row round(y), column
    round(x)), rounding halves up; points outside the image are dropped."""
    h, w = size
    out = torch.zeros((h, w), dtype=torch.bool)
    if points is None or len(points) == 0:
        return out
    p = torch.floor(torch.as_tensor(points, dtype=torch.float64) + 0.5).long()
    ok = (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
    p = p[ok]
    out[p[:, 1], p[:, 0]] = True
    return out


@dataclass
class Job:
    """One (sample, target) pair to attribute and score: ``item`` is the sample's position in
    the batch; ``candidates`` the model outputs that stand for the target's class (None: every
    output, the model's top prediction; empty: no model, e.g. saved maps)."""

    item: int
    target: Target
    candidates: list[int] | None = field(default_factory=list)


def truth_for(jobs: list[Job], batch: list[Prepared], requires: set[str], device: torch.device) -> TruthBatch:
    """Stack the ground truth the metrics require (:data:`bench.metrics.base.TRUTH_FIELDS`) for
    jobs sharing one image size; ``masks`` always."""

    def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(tensors).to(device, non_blocking=True)

    masks = stack([j.target.mask.bool() for j in jobs])
    truth = TruthBatch(masks=masks, labels=[j.target.label for j in jobs])
    if "context" in requires:
        truth.context = stack([j.target.context_union().bool() for j in jobs])
    if "instances" in requires:
        inst = [j.target.instances if j.target.instances is not None else j.target.mask[None] for j in jobs]
        k = max(int(t.shape[0]) for t in inst)
        h, w = masks.shape[-2:]
        padded = torch.zeros((len(jobs), k, h, w), dtype=torch.bool)
        for n, t in enumerate(inst):
            padded[n, : t.shape[0]] = t.bool()
        truth.instances = padded.to(device, non_blocking=True)
        # Built on the host, copied without blocking: a blocking copy would wait for the device.
        truth.instance_counts = torch.tensor([int(t.shape[0]) for t in inst]).to(device, non_blocking=True)
    if "fixations" in requires:
        truth.fixations = stack([fixation_map(batch[j.item].fixations, batch[j.item].size) for j in jobs])
    if "other_fixations" in requires:
        truth.other_fixations = stack(
            [fixation_map(batch[j.item].other_fixations, batch[j.item].size) for j in jobs]
        )
    if "density" in requires:
        dens = []
        for j in jobs:
            d = batch[j.item].density
            if d is None:
                raise ValueError(f"{batch[j.item].image_id}: a density metric needs a density map; the dataset gives none")
            dens.append(torch.as_tensor(d, dtype=torch.float32))
        truth.density = stack(dens)
    return truth
