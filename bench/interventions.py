"""Measured reliance: how much the model's output for a target depends on a region, by removing
the region from the model's input and running the model again.

For each (image, target) with an object mask and, where the dataset has one, a context region,
:func:`measure_reliance` runs the model on intervened copies of the input and records the drop
in the target's softmax probability and in its logit (``original - intervened``: positive when
the removal hurts the target):

- ``context``: the region ``context & ~object`` removed (a pixel that is both is object);
- ``object``: the object removed;
- ``control_context`` / ``control_object``: a *control* region of the same number of pixels as
  the removed one, drawn outside both object and context (:func:`control_regions`), removed the
  same way. Where the image has fewer such free pixels than the region holds (on harbor the
  water is often half the scene), the control is every free pixel: the largest control the
  image allows, smaller than the region, so its drop understates the damage of removing that
  much and the reliance is an upper bound there; each row records the controls' areas
  (``area_control_context``, ``area_control_object``) so such rows can be told apart. It says how much removing that much of *any* part of the image costs, so that
  ``context - control_context`` (the **context reliance**) and ``object - control_object`` (the
  **object reliance**) measure the evidence in the region, not the damage of the edit.

Conventions (pinned by ``tests/test_interventions.py``):

- Everything happens in the model's input space, after preprocessing: the masks come in already
  transformed by the model's own resize and crop (:class:`bench.models.input_space.InputSpace`),
  and the removal edits the model input itself. Removal modes (:data:`REMOVAL_MODES`):

  - ``"mean"``: every pixel of the region becomes the image's mean colour *outside* the region
    (per channel, over the input's pixels not in the region; over all pixels if the region is
    the whole input). The colour of what is left, so no new colour enters the image.
  - ``"blur"``: every pixel of the region becomes the same pixel of a Gaussian blur of the whole
    input (standard deviation ``blur_sigma`` times the input's shorter side, kernel cut at 3
    standard deviations, borders replicated). Texture is gone; coarse colour stays, and at the
    region's border the blur mixes in neighbouring (object) pixels, as blurring a photo does.

  Pixels outside the region are never changed (exactly equal to the input).
- The target output is the one the maps explain: the job's resolved output index (for a class
  with several outputs, the one with the highest logit on the original input).
- Undefined is NaN, never 0, and counted by whoever aggregates: the context drops where the
  target has no context pixel outside the object in input space (an image with no water under
  its boat), the object drops where the object vanishes in input space (coverage below half a
  pixel everywhere), a control drop where no pixel is free (outside object and context); each reliance is NaN where either of its drops is.
- Every forward pass is batched over the jobs (chunks of at most ``max_batch`` images), on
  the inputs' device, under ``torch.no_grad``: ``1 + 4 * len(modes)`` passes per job.
  Nothing is copied to the host.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

REMOVAL_MODES = ("mean", "blur")
# The parts each mode records, in row order.
PARTS = ("context", "object", "control_context", "control_object")
DEFAULT_BLUR_SIGMA = 0.05  # of the input's shorter side: 11 px at 224, 5 px on the 96 px harbor


@dataclass(frozen=True)
class RelianceConfig:
    """The ``[reliance]`` section of a run config: measure every (model, image, target)'s
    reliance on its context and object by removal (``modes``, in :data:`REMOVAL_MODES`; the
    first is the one the leaderboard's validity table and footer show, every mode is written),
    with a blur of ``blur_sigma`` times the input's shorter side."""

    modes: tuple[str, ...] = REMOVAL_MODES
    blur_sigma: float = DEFAULT_BLUR_SIGMA

    def to_dict(self) -> dict[str, Any]:
        return {"modes": list(self.modes), "blur_sigma": self.blur_sigma}


def parse_reliance(raw: Any) -> RelianceConfig:
    """A :class:`RelianceConfig` from the config's ``[reliance]`` table; ``ValueError`` naming
    the key and the problem otherwise."""
    if not isinstance(raw, dict):
        raise ValueError(f"[reliance] must be a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"modes", "blur_sigma"})
    if unknown:
        raise ValueError(f"[reliance] has unknown key(s) {unknown}; it takes modes, blur_sigma")
    modes = raw.get("modes", list(REMOVAL_MODES))
    if isinstance(modes, str) or not isinstance(modes, list) or not modes or not all(isinstance(m, str) for m in modes):
        raise ValueError(f"[reliance] modes must be a non-empty list of names from {list(REMOVAL_MODES)}, got {modes!r}")
    bad = [m for m in modes if m not in REMOVAL_MODES]
    if bad or len(set(modes)) != len(modes):
        raise ValueError(f"[reliance] modes {modes!r}: each must be one of {list(REMOVAL_MODES)}, once")
    sigma = raw.get("blur_sigma", DEFAULT_BLUR_SIGMA)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (0 < float(sigma) < 1):
        raise ValueError(f"[reliance] blur_sigma must be a number in (0, 1) (a fraction of the input's shorter side), got {sigma!r}")
    return RelianceConfig(tuple(modes), float(sigma))


def control_draw(run_seed: int, image_id: str, target: str) -> float:
    """The uniform number in [0, 1) that places a (image, target)'s control region: a hash of
    the run seed, image and target, so it does not depend on batch, shard or resume."""
    digest = hashlib.sha256(f"control|{run_seed}|{image_id}|{target}".encode()).digest()
    return int.from_bytes(digest[:7], "little") / 2.0**56


def gaussian_blur(inputs: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of Bx3xhxw inputs, ``sigma`` in pixels, kernel radius
    ``ceil(3 sigma)``, borders replicated (so a constant image stays constant)."""
    if sigma <= 0:
        return inputs.clone()
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=inputs.device, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma * sigma))
    kernel = (kernel / kernel.sum()).to(inputs.dtype)
    c = inputs.shape[1]
    out = F.pad(inputs, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def blur_pixels(sigma_fraction: float, size: tuple[int, int]) -> float:
    """The blur's standard deviation in pixels for an input of ``size``."""
    return float(sigma_fraction) * min(size)


def mean_outside(inputs: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Bx3x1x1: each image's mean colour over its pixels outside ``regions`` (over all pixels
    where the region is the whole input)."""
    keep = (~regions)[:, None].to(inputs.dtype)
    n = keep.sum(dim=(2, 3), keepdim=True)
    outside = (inputs * keep).sum(dim=(2, 3), keepdim=True) / n.clamp(min=1)
    return torch.where(n > 0, outside, inputs.mean(dim=(2, 3), keepdim=True))


def remove(
    inputs: torch.Tensor,
    regions: torch.Tensor,
    mode: str,
    *,
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    blurred: torch.Tensor | None = None,
) -> torch.Tensor:
    """``inputs`` (Bx3xhxw, model input space) with bool ``regions`` (Bxhxw) removed by ``mode``
    (module docstring); pixels outside the regions are returned unchanged. ``blurred`` may pass
    a precomputed :func:`gaussian_blur` of the inputs."""
    if regions.shape != (inputs.shape[0], *inputs.shape[2:]) or regions.dtype != torch.bool:
        raise ValueError(f"regions must be bool Bxhxw matching inputs {tuple(inputs.shape)}, got {regions.dtype} {tuple(regions.shape)}")
    if mode == "mean":
        fill = mean_outside(inputs, regions).expand_as(inputs)
    elif mode == "blur":
        fill = blurred if blurred is not None else gaussian_blur(inputs, blur_pixels(blur_sigma, inputs.shape[2:]))
    else:
        raise ValueError(f"unknown removal mode {mode!r}; choose from {list(REMOVAL_MODES)}")
    return torch.where(regions[:, None], fill, inputs)


def control_regions(free: torch.Tensor, areas: torch.Tensor, draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, a region of exactly ``min(areas[i], free pixels)`` pixels inside ``free[i]``
    (bool Bxhxw): the free pixels nearest (Euclidean, between pixel centres) to a seed pixel, ties
    to the lower row-major index. The seed is the ``floor(draws[i] * n_free)``-th free pixel in
    row-major order (``draws`` float B in [0, 1)), so the region is a compact blob clipped to the
    free pixels, placed by the draw.

    Returns (regions bool Bxhxw, ok bool B); ``ok`` is False, and the region empty, where the
    image has no free pixel or ``areas[i]`` is 0. Where it has fewer free pixels than
    ``areas[i]``, the region is all of them."""
    b, h, w = free.shape
    flat = free.flatten(1)
    n_free = flat.sum(dim=1)
    areas = torch.minimum(areas.to(n_free.dtype), n_free)
    ok = areas > 0
    # The seed: the k-th free pixel, k = floor(draw * n_free), found by a cumulative count.
    k = torch.floor(draws.to(torch.float64) * n_free.to(torch.float64)).long().clamp(min=0)
    k = torch.minimum(k, (n_free - 1).clamp(min=0))
    rank_in_free = torch.cumsum(flat.long(), dim=1) - 1
    seed = ((rank_in_free == k[:, None]) & flat).float().argmax(dim=1)
    sy, sx = (seed // w).to(torch.float64), (seed % w).to(torch.float64)
    ys = torch.arange(h, device=free.device, dtype=torch.float64)
    xs = torch.arange(w, device=free.device, dtype=torch.float64)
    d2 = (ys[None, :, None] - sy[:, None, None]) ** 2 + (xs[None, None, :] - sx[:, None, None]) ** 2
    # Distance first, row-major index second: a unique key per pixel (exact in float64 for any
    # image below 2**26 pixels), so exactly `area` pixels fall below the cut.
    key = d2.flatten(1) * (h * w) + torch.arange(h * w, device=free.device, dtype=torch.float64)
    key = torch.where(flat, key, torch.full_like(key, math.inf))
    ordered = key.sort(dim=1).values
    cut = ordered.gather(1, (areas.long() - 1).clamp(min=0, max=h * w - 1)[:, None])
    regions = (key <= cut) & flat & ok[:, None]
    return regions.view(b, h, w), ok


@dataclass
class RelianceResult:
    """One removal mode's measurements for B jobs (float tensors B on the inputs' device, NaN
    where undefined, see the module docstring).

    prob, logit: the target's softmax probability and logit on the original input.
    drop_prob[part], drop_logit[part]: original minus intervened, per part of :data:`PARTS`.
    area[part]: the removed region's share of the input's pixels, per part (a control's equals
    its region's unless the free pixels are fewer, module docstring).
    """

    mode: str
    prob: torch.Tensor
    logit: torch.Tensor
    drop_prob: dict[str, torch.Tensor] = field(default_factory=dict)
    drop_logit: dict[str, torch.Tensor] = field(default_factory=dict)
    area: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def context_reliance(self) -> torch.Tensor:
        """drop_prob(context) - drop_prob(control_context): NaN where either is."""
        return self.drop_prob["context"] - self.drop_prob["control_context"]

    @property
    def object_reliance(self) -> torch.Tensor:
        """drop_prob(object) - drop_prob(control_object): NaN where either is."""
        return self.drop_prob["object"] - self.drop_prob["control_object"]


@torch.no_grad()
def forward_in_chunks(model: torch.nn.Module, inputs: torch.Tensor, max_batch: int) -> torch.Tensor:
    """The model's outputs (logits) for ``inputs``, ``max_batch`` images per forward pass."""
    outs = []
    for start in range(0, inputs.shape[0], max(1, int(max_batch))):
        chunk = inputs[start : start + max_batch].contiguous(memory_format=torch.channels_last)
        outs.append(model(chunk).float())
    return torch.cat(outs) if outs else inputs.new_zeros((0, 0))


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax probability, logit) of ``targets`` (long B) in float32 logits BxK."""
    logits = logits.float()
    z = logits.gather(1, targets[:, None])[:, 0]
    p = logits.softmax(dim=1).gather(1, targets[:, None])[:, 0]
    return p, z


@torch.no_grad()
def measure_reliance(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    objects: torch.Tensor,
    contexts: torch.Tensor,
    draws: torch.Tensor,
    modes: tuple[str, ...] = REMOVAL_MODES,
    *,
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    max_batch: int = 256,
) -> dict[str, RelianceResult]:
    """Measured reliance of ``model`` for B jobs (module docstring), one result per mode.

    inputs: Bx3xhxw model inputs; targets: long B output indices; objects, contexts: bool Bxhxw
    masks *in input space* (all-false context where the target has none); draws: float B in
    [0, 1) placing the control regions (:func:`control_draw`; one draw serves both controls of a
    job, so its two control regions grow from the same seed pixel)."""
    for m in modes:
        if m not in REMOVAL_MODES:
            raise ValueError(f"unknown removal mode {m!r}; choose from {list(REMOVAL_MODES)}")
    b = inputs.shape[0]
    if objects.shape != (b, *inputs.shape[2:]) or contexts.shape != objects.shape:
        raise ValueError(
            f"objects {tuple(objects.shape)} and contexts {tuple(contexts.shape)} must be bool "
            f"Bxhxw in the input space of inputs {tuple(inputs.shape)}"
        )
    objects, contexts = objects.bool(), contexts.bool()
    context_region = contexts & ~objects
    free = ~objects & ~contexts
    n_pixels = float(objects[0].numel())
    area_ctx = context_region.flatten(1).sum(dim=1)
    area_obj = objects.flatten(1).sum(dim=1)
    ctrl_ctx, ok_ctx = control_regions(free, area_ctx, draws)
    ctrl_obj, ok_obj = control_regions(free, area_obj, draws)
    regions = {"context": context_region, "object": objects, "control_context": ctrl_ctx, "control_object": ctrl_obj}
    defined = {"context": area_ctx > 0, "object": area_obj > 0, "control_context": ok_ctx, "control_object": ok_obj}

    # One block of B intervened copies per (mode, part), each through the model in chunks of
    # max_batch: the passes are batched over jobs, and memory holds one block, not all of them.
    # Undefined pairs still run (their region is empty, so the copy equals the input): leaving
    # them out would need their count on the host, a synchronisation per batch. Their results
    # are masked to NaN.
    blurred = None
    if "blur" in modes:
        blurred = gaussian_blur(inputs, blur_pixels(blur_sigma, inputs.shape[2:]))
    p0, z0 = target_scores(forward_in_chunks(model, inputs, max_batch), targets)
    nan = torch.full_like(p0, math.nan)
    out: dict[str, RelianceResult] = {}
    for mode in modes:
        res = RelianceResult(mode, p0, z0)
        for part in PARTS:
            edited = remove(inputs, regions[part], mode, blur_sigma=blur_sigma, blurred=blurred)
            p, z = target_scores(forward_in_chunks(model, edited, max_batch), targets)
            res.drop_prob[part] = torch.where(defined[part], p0 - p, nan)
            res.drop_logit[part] = torch.where(defined[part], z0 - z, nan)
        for part in PARTS:
            res.area[part] = regions[part].flatten(1).sum(dim=1).float() / n_pixels
        out[mode] = res
    return out


# The numbers of one reliance row, in order (:func:`pack`); ids (model, sample, image, target,
# output, mode) are added by whoever writes the rows.
FIELDS = (
    "prob",
    "logit",
    *(f"drop_prob_{p}" for p in PARTS),
    *(f"drop_logit_{p}" for p in PARTS),
    "context_reliance",
    "object_reliance",
    "context_reliance_logit",
    "object_reliance_logit",
    *(f"area_{p}" for p in PARTS),
)


def pack(results: dict[str, RelianceResult]) -> torch.Tensor:
    """Modes x B x len(:data:`FIELDS`) float32 on the results' device: every number of every
    row in one tensor, so the rows cost one device-to-host copy."""
    per_mode = []
    for res in results.values():
        cols = [res.prob, res.logit]
        cols += [res.drop_prob[p] for p in PARTS] + [res.drop_logit[p] for p in PARTS]
        cols += [
            res.context_reliance,
            res.object_reliance,
            res.drop_logit["context"] - res.drop_logit["control_context"],
            res.drop_logit["object"] - res.drop_logit["control_object"],
            *(res.area[p] for p in PARTS),
        ]
        per_mode.append(torch.stack([c.float() for c in cols], dim=1))
    return torch.stack(per_mode)
