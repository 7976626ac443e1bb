"""Leakage onto correlated context: how much of a map explains the object by what surrounds it
(the boat explained by the water). Context regions come from the dataset manifest."""

from __future__ import annotations

import torch

from bench.metrics.base import TruthBatch, check_pair, nan_where, positive_mass, register_metric


def leakage(maps: torch.Tensor, object_masks: torch.Tensor, context_masks: torch.Tensor) -> torch.Tensor:
    """Positive mass on ``context & ~object`` over total positive mass (float B in [0, 1]).

    The object is removed from the context first, so a pixel that is both never counts as
    leakage. NaN where undefined: no context pixels outside the object, no positive mass, or a
    NaN/Inf map.
    """
    check_pair(maps, object_masks, "object_masks")
    check_pair(maps, context_masks, "context_masks")
    region = context_masks & ~object_masks
    pos = positive_mass(maps)
    total = pos.flatten(1).sum(dim=1)
    on_context = (pos * region).flatten(1).sum(dim=1)
    undefined = (total <= 0) | ~region.flatten(1).any(dim=1)
    return nan_where(on_context / total.clamp_min(torch.finfo(pos.dtype).tiny), undefined)


def _context(truth: TruthBatch) -> torch.Tensor:
    if truth.context is None:
        return torch.zeros_like(truth.masks)
    return truth.context


@register_metric(
    "leakage",
    higher_is_better=False,
    requires=("masks", "context"),
    description="positive mass on context outside the object / total positive mass",
)
def _leakage_score(maps: torch.Tensor, truth: TruthBatch):
    return leakage(maps, truth.masks, _context(truth))
