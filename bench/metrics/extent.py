"""Extent: how much of the object the map highlights, and how much of what it highlights is the
object (the seed's "incomplete highlighting" failure, measured without ranks).

``coverage`` is rank-based (the |object| highest pixels), so a map that peaks on one part of an
object and keeps the rest barely above the background still covers it. Extent asks instead
which pixels the map itself calls important: those at or above a fraction (half, by default)
of its own peak, the rule CAM localisation uses to draw boxes (Zhou et al. 2016).

Conventions, pinned by tests/test_metrics_extent.py:

- ``maps`` float BxHxW, ``masks`` bool BxHxW on the same device; one value per sample, in the
  maps' :func:`~bench.metrics.base.work_dtype`; coordinates play no role.
- The highlighted region is ``{p : map[p] >= fraction * peak and map[p] > 0}``, ``peak`` the
  map's maximum. The comparison is inclusive and exact: ``fraction * peak`` is formed in
  float64 and a value v counts when ``v >= fraction * peak`` holds for the real numbers (no
  rounding of the threshold to the maps' dtype). Ties at the threshold are all in.
- ``extent`` = |highlighted ∩ object| / |object|; ``extent_precision`` = |highlighted ∩
  object| / |highlighted|; both in [0, 1].
- A map with no positive value (all zero, all negative) highlights nothing: extent 0,
  precision NaN (no highlighted pixel to be right or wrong about).
- A constant positive map highlights every pixel: extent 1, precision = the object's area
  fraction. No normalisation is needed or applied: the region is scale-invariant.
- An empty mask, or a map holding NaN or +-Inf: NaN for both (excluded and counted by the
  leaderboard, never a hit).
"""

from __future__ import annotations

import torch

from bench.metrics.base import (
    check_pair,
    nan_where,
    nonfinite_maps,
    register_metric,
    work_dtype,
)


def _at_least(cut: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The smallest ``dtype`` value >= each float64 ``cut``: for ``dtype`` values v, ``v >=
    result`` holds exactly when ``v >= cut`` does."""
    if dtype == torch.float64:
        return cut
    low = cut.to(dtype)
    return torch.where(low.double() < cut, torch.nextafter(low, torch.full_like(low, torch.inf)), low)


def highlighted(maps: torch.Tensor, fraction: float = 0.5) -> torch.Tensor:
    """Bool B x (H*W): the pixels at or above ``fraction`` of the map's peak, and positive (see
    the module conventions). NaN/Inf maps highlight nothing."""
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    bad = nonfinite_maps(maps)
    flat = maps.flatten(1).to(work_dtype(maps))
    flat = torch.where(bad[:, None], torch.zeros_like(flat), flat)
    peak = flat.amax(dim=1, keepdim=True)
    cut = _at_least(float(fraction) * peak.double(), flat.dtype)
    return (flat > 0) & (flat >= cut)


def extent(maps: torch.Tensor, masks: torch.Tensor, fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(extent, precision) per map, see the module conventions: the fraction of the object's
    pixels at or above ``fraction`` of the map's peak, and the fraction of those pixels that
    lie on the object."""
    check_pair(maps, masks)
    keep = highlighted(maps, fraction)
    gt = masks.flatten(1)
    dt = work_dtype(maps)
    inter = (keep & gt).sum(dim=1).to(dt)
    area = gt.sum(dim=1).to(dt)
    lit = keep.sum(dim=1).to(dt)
    undefined = nonfinite_maps(maps) | (area == 0)
    recall = nan_where(inter / area.clamp(min=1), undefined)
    precision = nan_where(inter / lit.clamp(min=1), undefined | (lit == 0))
    return recall, precision


@register_metric(
    "extent",
    higher_is_better=True,
    requires=("masks",),
    description="fraction of the object at or above `fraction` of the map's peak",
)
def extent_recall(maps: torch.Tensor, masks: torch.Tensor, fraction: float = 0.5) -> torch.Tensor:
    """The ``extent`` column: :func:`extent`'s first value."""
    return extent(maps, masks, fraction)[0]


@register_metric(
    "extent_precision",
    higher_is_better=True,
    requires=("masks",),
    description="fraction of the pixels at or above `fraction` of the map's peak that are object",
)
def extent_precision(maps: torch.Tensor, masks: torch.Tensor, fraction: float = 0.5) -> torch.Tensor:
    """The ``extent_precision`` column: :func:`extent`'s second value."""
    return extent(maps, masks, fraction)[1]
