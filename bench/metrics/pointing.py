"""Pointing game (Zhang et al., ECCV 2016; TorchRay protocol) and its energy variant
(Wang et al., Score-CAM, CVPRW 2020)."""

from __future__ import annotations

import math
import numbers

import torch

from bench.metrics.base import (
    MapStats,
    argmax_points,  # noqa: F401  (re-exported: it lived here)
    check_pair,
    empty_masks,
    mass_fraction,
    nan_where,
    register_alias,
    register_metric,
)


@register_metric(
    "pointing_game",
    higher_is_better=True,
    requires=("masks",),
    aggregate="class_mean",
    description="argmax within `tolerance` px of the object (TorchRay protocol)",
    check=lambda params: check_tolerance(params["tolerance"]),
)
def pointing_game(
    maps: torch.Tensor, masks: torch.Tensor, tolerance: float = 15.0, *, stats: MapStats | None = None
) -> torch.Tensor:
    """Hit (bool B) if a ground-truth pixel lies at Euclidean distance strictly below
    ``tolerance`` pixels from the map's argmax, at the maps' (original image) resolution.

    Conventions: distance between pixel centres, strict ``<`` (tolerance 1 means the argmax pixel
    itself must be ground truth; tolerance 0 can never hit); ties in the argmax go to the first
    in row-major order; a constant, all-zero, NaN- or Inf-containing map is a miss; an empty mask
    is a miss here (the registered metric scores it NaN so it is excluded and counted, never a
    hit). Only a (2r+1)^2 window around each argmax is read, so memory does not grow with the
    image (a 4000x3000 mask costs nothing extra). ``stats``: the maps' shared intermediates.

    ``tolerance`` must be a finite number >= 0 (ValueError otherwise). A tolerance beyond the
    image diagonal is the diagonal: no two pixel centres are that far apart, so the disk already
    covers the whole image and the result is the same.
    """
    check_pair(maps, masks)
    check_tolerance(tolerance)
    stats = stats if stats is not None else MapStats(maps)
    b, h, w = maps.shape
    tolerance = min(float(tolerance), math.hypot(h, w))
    r = max(0, math.ceil(tolerance) - 1)
    ys, xs = stats.argmax
    # The disk is built in float64 on the host (a few hundred entries): tolerance**2 must not
    # be rounded to float32, or a point at distance just under the tolerance could miss.
    host = torch.arange(-r, r + 1, dtype=torch.float64)
    disk = ((host[:, None] ** 2 + host[None, :] ** 2) < tolerance**2).to(maps.device)
    off = torch.arange(-r, r + 1, device=maps.device)
    rows = ys[:, None] + off[None, :]  # B x (2r+1)
    cols = xs[:, None] + off[None, :]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    bidx = torch.arange(b, device=maps.device)[:, None, None]
    window = masks[bidx, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
    hit = (window & inside & disk[None]).flatten(1).any(dim=1)
    return hit & ~stats.invalid


def check_tolerance(tolerance: object) -> None:
    """ValueError unless ``tolerance`` is a finite real number >= 0 (pixels)."""
    ok = isinstance(tolerance, numbers.Real) and not isinstance(tolerance, bool)
    if not ok or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"pointing game tolerance must be a finite number of pixels >= 0, got {tolerance!r}")


@register_metric(
    "energy_pointing_game",
    higher_is_better=True,
    requires=("masks",),
    description="positive map mass inside the object / total positive mass",
)
def energy_pointing_game(maps: torch.Tensor, masks: torch.Tensor, *, stats: MapStats | None = None) -> torch.Tensor:
    """Share of the map's positive energy inside the mask: sum(relu(m) * gt) / sum(relu(m)),
    in [0, 1] (Wang et al., Score-CAM). Relevance mass accuracy (Arras et al., 2022) is the
    same number: ``mass_accuracy`` is this function under that name, registered as an alias.

    NaN where undefined: no positive mass (all-zero or all-negative map), a NaN/Inf map, or an
    empty mask. A constant positive map scores the mask's area fraction. Quantus's mass
    accuracy sums the raw (signed) map instead of its positive part, so the two agree on
    non-negative maps only; on signed maps Quantus's ratio can leave [0, 1].
    """
    check_pair(maps, masks)
    stats = stats if stats is not None else MapStats(maps)
    frac, no_mass = mass_fraction(maps, masks, stats)
    return nan_where(frac, no_mass | empty_masks(masks) | stats.nonfinite)


# Relevance mass accuracy (Arras et al., 2022) is the energy pointing game's number.
mass_accuracy = energy_pointing_game
register_alias(
    "mass_accuracy",
    of="energy_pointing_game",
    description="positive mass inside the object / total positive mass (Arras et al.)",
)
