"""Leakage onto correlated context: how much of a map explains the object by what surrounds it
(the boat explained by the water). Context regions come from the dataset manifest.

Shared conventions: the context region is ``context & ~object`` (a pixel that is both is
object, never leakage); NaN where that region is empty (no context in the image), where the
object mask is empty (no object whose explanation could leak: excluded and counted, like every
empty mask), or where the map holds NaN/Inf; "mass" is the map's positive part.
"""

from __future__ import annotations

import torch

from bench.metrics.base import (
    MapStats,
    check_pair,
    empty_masks,
    mass_fraction,
    nan_where,
    nonfinite_maps,
    positive_mass,
    register_metric,
    without_overflow,
    work_dtype,
)
from bench.metrics.ranking import count_true


def _region(maps, object_masks, context_masks) -> torch.Tensor:
    check_pair(maps, object_masks, "object_masks")
    check_pair(maps, context_masks, "context_masks")
    return context_masks & ~object_masks


@register_metric(
    "leakage",
    higher_is_better=False,
    requires=("masks", "context"),
    description="positive mass on context outside the object / total positive mass",
)
def leakage(
    maps: torch.Tensor, object_masks: torch.Tensor, context_masks: torch.Tensor, *, stats: MapStats | None = None
) -> torch.Tensor:
    """Positive mass on ``context & ~object`` over total positive mass (float B in [0, 1]).

    NaN where undefined: no context pixels outside the object, an empty object mask, no
    positive mass (all-zero or all-negative map), or a NaN/Inf map.
    """
    region = _region(maps, object_masks, context_masks)
    stats = stats if stats is not None else MapStats(maps)
    frac, no_mass = mass_fraction(maps, region, stats)
    undefined = no_mass | empty_masks(region) | empty_masks(object_masks) | stats.nonfinite
    return nan_where(frac, undefined)


@register_metric(
    "context_pointing_rate",
    higher_is_better=False,
    requires=("masks", "context"),
    description="rate at which the map's argmax falls on the context outside the object",
)
def context_pointing_rate(
    maps: torch.Tensor, object_masks: torch.Tensor, context_masks: torch.Tensor, *, stats: MapStats | None = None
) -> torch.Tensor:
    """1.0 where the map's argmax pixel lies on ``context & ~object``, else 0.0 (float B; its
    mean over samples is the rate). No tolerance: the argmax pixel itself must be context.

    Argmax ties go to the first maximum in row-major order (as the pointing game). NaN where the
    region or the object mask is empty, and where the map is constant (all-zero included) or
    holds NaN/Inf: such a map points nowhere, and scoring it 0 would reward a failed map on a
    lower-is-better metric.
    """
    region = _region(maps, object_masks, context_masks)
    stats = stats if stats is not None else MapStats(maps)
    ys, xs = stats.argmax
    b = maps.shape[0]
    on_context = region[torch.arange(b, device=maps.device), ys, xs]
    undefined = stats.invalid | empty_masks(region) | empty_masks(object_masks)
    return nan_where(on_context.to(work_dtype(maps)), undefined)


@register_metric(
    "density_ratio",
    higher_is_better=False,
    requires=("masks", "context"),
    description="mean positive map value on context / on the object (NaN where the object gets none)",
)
def density_ratio(maps: torch.Tensor, object_masks: torch.Tensor, context_masks: torch.Tensor) -> torch.Tensor:
    """Mean positive map value per pixel on ``context & ~object`` over the mean on the object
    (float B in [0, inf]): 1 means context pixels get as much attribution as object pixels, 2
    twice as much. Unlike :func:`leakage` it does not grow with the context's area.

    +inf where the object gets no positive mass but the context does (all evidence on context);
    as a registered score (a mean over rows cannot hold +inf) that row is undefined, NaN, and
    counted by the leaderboard, while leakage and context_pointing_rate still score it at their
    worst. NaN where the region or the object mask is empty, the map has no positive mass on either, or
    the map holds NaN/Inf. Maps large enough to overflow the sums are rescaled first (the ratio
    does not change).
    """
    region = _region(maps, object_masks, context_masks)
    dt = work_dtype(maps)
    pos = without_overflow(positive_mass(maps.to(dt)).flatten(1)).view(maps.shape)
    n_ctx = count_true(region.flatten(1)).to(dt)
    n_obj = count_true(object_masks.flatten(1)).to(dt)
    mean_ctx = (pos * region).flatten(1).sum(dim=1) / n_ctx.clamp(min=1)
    mean_obj = (pos * object_masks).flatten(1).sum(dim=1) / n_obj.clamp(min=1)
    ratio = torch.where(mean_obj > 0, mean_ctx / torch.where(mean_obj > 0, mean_obj, 1.0), torch.inf)
    undefined = (n_ctx == 0) | (n_obj == 0) | ((mean_ctx == 0) & (mean_obj == 0)) | nonfinite_maps(maps)
    return nan_where(ratio, undefined)
