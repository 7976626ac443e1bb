"""Overlap and coverage of the object by the map (docs/design.md, "Metric definitions").

Shared conventions, pinned by tests/test_metrics_overlap.py:

- ``maps`` float BxHxW, ``masks`` bool BxHxW on the same device; one value per sample (float64,
  float32 on MPS), NaN where undefined.
- Empty mask: NaN (nothing to find; the leaderboard excludes and counts it, never a hit).
- A map holding NaN or +-Inf: NaN.
- Ties in the map: a cut "the n highest pixels" that falls inside a group of equal values gives
  the tied pixels the remaining slots in proportion, i.e. the exact expectation under random
  tie-breaking, whatever the pixel order. So a constant (or all-zero) map scores chance: rank
  accuracy and top-k intersection equal the mask's area fraction. (Quantus breaks ties by
  ``np.argsort`` order instead, which depends on the pixel order.)
- "Positive mass" is the map's positive part, ``relu(map)``.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

from bench.metrics.base import (
    check_pair,
    constant_maps,
    nan_where,
    nonfinite_maps,
    register_metric,
    work_dtype,
)
from bench.metrics.ranking import RankedMaps, SortedMaps, by_chunks, count_true, expected_top_n_hits, use_histogram


def _prepared(maps: torch.Tensor, masks: torch.Tensor):
    """Flattened maps in the work dtype with NaN/Inf rows zeroed (their scores are NaN), flat
    masks, mask areas, and the B bool of undefined rows (empty mask or NaN/Inf map)."""
    check_pair(maps, masks)
    bad = nonfinite_maps(maps)
    flat = maps.flatten(1).to(work_dtype(maps))
    # On the CPU, reading `bad` costs nothing and saves a copy of every map when none is bad.
    if flat.device.type != "cpu" or bool(bad.any()):
        flat = torch.where(bad[:, None], torch.zeros_like(flat), flat)
    gt = masks.flatten(1)
    area = count_true(gt)
    return flat, gt, area, bad | (area == 0)


def _top_n_fraction(flat, gt, n, denom):
    def run(flat, gt, n, denom):
        return expected_top_n_hits(flat, gt, n) / denom.clamp(min=1).to(flat.dtype)

    return by_chunks(run, (flat, gt, n, denom), flat.shape[1])


@register_metric(
    "rank_accuracy",
    higher_is_better=True,
    requires=("masks",),
    description="fraction of the |object| highest pixels inside the object (Arras et al.)",
)
def rank_accuracy(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance rank accuracy (Arras et al., 2022): of the K = |mask| highest-valued pixels, the
    fraction inside the mask, in [0, 1]. Signed values are ranked as they are.

    Ties at the K-th value share the remaining slots in proportion (a constant map scores the
    mask's area fraction K / HW). NaN where the mask is empty or the map holds NaN/Inf.
    """
    flat, gt, area, undefined = _prepared(maps, masks)
    return nan_where(_top_n_fraction(flat, gt, area, area), undefined)


def top_k_intersection(maps: torch.Tensor, masks: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k intersection (Theiner et al., 2021): of the ``k`` highest-valued pixels, the fraction
    inside the mask, in [0, 1]. ``k`` is a pixel count, 1 <= k <= H*W.

    Ties at the k-th value share the remaining slots in proportion. NaN where the mask is empty
    or the map holds NaN/Inf.
    """
    flat, gt, area, undefined = _prepared(maps, masks)
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= flat.shape[1]:
        raise ValueError(f"k must be an integer in [1, {flat.shape[1]}] (pixels per map), got {k!r}")
    kk = torch.full_like(area, int(k))
    return nan_where(_top_n_fraction(flat, gt, kk, kk), undefined)


@register_metric(
    "coverage",
    higher_is_better=True,
    requires=("masks",),
    description="fraction of the object inside the map's top-|object| positive pixels",
)
def coverage(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Fraction of the object's pixels inside the top-q of the map, q = the object's area
    fraction (the seed's "incomplete highlighting" failure), counting only pixels the map
    highlights (value > 0), in [0, 1].

    With K = |mask|: the expected number of mask pixels among the K highest-valued *positive*
    pixels, over K. It equals :func:`rank_accuracy` when the K highest pixels are all positive
    and is lower when the map highlights fewer than K pixels: a map that lights up a quarter of
    the object and nothing else covers at most 0.25. Ties share slots in proportion; an all-zero
    or all-negative map covers 0. NaN where the mask is empty or the map holds NaN/Inf.
    """
    flat, gt, area, undefined = _prepared(maps, masks)
    if use_histogram(flat):
        return nan_where(by_chunks(_coverage_by_histogram, (flat, gt, area), flat.shape[1]), undefined)
    positive = flat > 0
    # Non-positive pixels may fill slots of the top K, but never count as covering the object.
    ranked_values = torch.where(positive, flat, torch.zeros_like(flat))
    return nan_where(_top_n_fraction(ranked_values, gt & positive, area, area), undefined)


def _coverage_by_histogram(flat, gt, area):
    """Coverage from the histogram of the map itself: where the map has at least K = |mask|
    positive pixels, the K highest are all positive and coverage is rank accuracy (same
    counts, same arithmetic); otherwise every positive pixel is among them and the rest are
    ties at zero that never cover: the count of positive mask pixels. The sum below is the
    one :func:`expected_top_n_hits` makes of those counts (hits tied at zero add 0 * share)."""
    ranked = RankedMaps(flat, gt)
    n = area.clamp(0, flat.shape[1])
    hits = ranked.top_n(n.clamp(min=1)).expected_hits(n, flat.dtype)
    n_pos, inside_pos = ranked.positives()
    hits = torch.where(n_pos >= n, hits, inside_pos.to(flat.dtype))
    hits = torch.where(n > 0, hits, torch.zeros_like(hits))
    return hits / area.clamp(min=1).to(flat.dtype)


def iou_curve(
    maps: torch.Tensor,
    masks: torch.Tensor,
    thresholds: Sequence[float] | torch.Tensor,
    *,
    mode: Literal["max_fraction", "top_fraction"] = "max_fraction",
) -> torch.Tensor:
    """B x T: IoU between the mask and the map binarised at each threshold.

    ``mode="max_fraction"`` (CAM localisation, Zhou et al. 2016): threshold t in [0, 1] keeps
    the pixels with ``value >= t * max(map)`` and ``value > 0`` (inclusive ``>=``; t = 0 keeps
    every positive pixel). A map with no positive value keeps nothing: IoU 0.
    ``mode="top_fraction"``: threshold q in [0, 1] keeps the round(q * H * W) highest pixels
    (round half to even, as ``torch.round``); ties at the cut enter in proportion, giving the
    IoU of the expected intersection.
    NaN rows where the mask is empty or the map holds NaN/Inf. Cost: one pass per threshold
    ("max_fraction"), 32 per threshold ("top_fraction").
    """
    flat, gt, area, undefined = _prepared(maps, masks)
    th = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
    if th.numel() == 0 or not bool(((th >= 0) & (th <= 1)).all()):
        raise ValueError(f"thresholds must be a non-empty sequence in [0, 1], got {thresholds!r}")
    if mode not in ("max_fraction", "top_fraction"):
        raise ValueError(f'mode must be "max_fraction" or "top_fraction", got {mode!r}')
    n_pix = flat.shape[1]
    dt = flat.dtype
    area_f = area.to(dt)
    columns = []
    if mode == "max_fraction":
        peak = flat.amax(dim=1, keepdim=True).clamp(min=0).double()
        positive = flat > 0
        for t in th.tolist():  # a loop over thresholds; each step is batched
            cut = t * peak  # in float64; rounded up to the maps' dtype, >= stays exact
            keep = positive & (flat >= (cut if dt == torch.float64 else _ceil_to(cut, dt)))
            inter = count_true(keep & gt).to(dt)
            columns.append(inter / (area_f + count_true(keep).to(dt) - inter).clamp(min=1))
    else:
        for q in th.tolist():
            n = torch.full_like(area, int(round(q * n_pix)))
            inter = by_chunks(lambda f, g, k: expected_top_n_hits(f, g, k), (flat, gt, n), n_pix)
            columns.append(inter / (area_f + n.to(dt) - inter).clamp(min=1))
    curve = torch.stack(columns, dim=1)
    return torch.where(undefined[:, None], torch.full_like(curve, float("nan")), curve)


def _ceil_to(cut: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The smallest ``dtype`` value >= each float64 ``cut``, so that for ``dtype`` values v,
    ``v >= result`` is exactly ``v >= cut``."""
    low = cut.to(dtype)
    return torch.where(low.double() < cut, torch.nextafter(low, torch.full_like(low, torch.inf)), low)


@register_metric(
    "best_iou",
    higher_is_better=True,
    requires=("masks",),
    description="highest IoU of the object and the map over every threshold",
)
def best_iou(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The highest IoU between the mask and ``{value >= s}`` over every threshold s > 0: the
    supremum of :func:`iou_curve` ("max_fraction") over all t in (0, 1], computed exactly from
    one sort of each map (the costliest metric here). A cut never splits a group of equal
    values. In [0, 1]; 0 for a map with no positive value; a constant positive map scores the
    mask's area fraction. NaN where the mask is empty or the map holds NaN/Inf.
    """
    flat, gt, area, undefined = _prepared(maps, masks)
    if use_histogram(flat):
        return nan_where(by_chunks(_best_iou_by_histogram, (flat, gt, area), flat.shape[1]), undefined)
    return nan_where(by_chunks(_best_iou_by_sort, (flat, gt, area), flat.shape[1]), undefined)


def _best_iou_by_histogram(flat, gt, area):
    inter, union = RankedMaps(flat, gt).best_cut(area)
    return inter.to(flat.dtype) / union.to(flat.dtype)


def best_iou_by_sort(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """:func:`best_iou` by its definition: one full sort of each map, every cut between groups
    of equal positive values evaluated. The reference the fast path is tested and timed
    against, and the path on accelerators and for float64 maps."""
    flat, gt, area, undefined = _prepared(maps, masks)
    return nan_where(by_chunks(_best_iou_by_sort, (flat, gt, area), flat.shape[1]), undefined)


def _best_iou_by_sort(flat, gt, area):
    dt = flat.dtype
    ranked = SortedMaps(flat, gt)
    n = flat.shape[1]
    # Cut before ascending position j: the region is positions j..N-1, valid where the
    # value there is positive and starts a group of equal values.
    valid = ranked.first & (ranked.values > 0)
    count = (n - torch.arange(n, device=flat.device, dtype=torch.int64)).to(dt)[None, :]
    inter = ranked.suffix[:, :n].to(dt)
    iou = inter / (area[:, None].to(dt) + count - inter).clamp(min=1)
    iou = torch.where(valid, iou, torch.zeros_like(iou))
    return iou.amax(dim=1)


@register_metric(
    "instance_recall",
    higher_is_better=True,
    requires=("instances",),
    description="fraction of instances whose peak reaches half the map's peak",
)
def instance_recall(maps: torch.Tensor, instance_masks: torch.Tensor) -> torch.Tensor:
    """Fraction of a class's instances that the map finds (the seed's "highlights only one of the
    objects" failure): an instance counts when its peak map value reaches half the map's global
    peak, ``max(map[instance]) >= 0.5 * max(map)`` (inclusive), with a positive global peak.

    ``instance_masks`` bool BxKxHxW; all-false masks are padding and are ignored. In [0, 1].
    A map with no positive value, or a constant map (it prefers no instance), finds none: 0.
    NaN where the sample has no non-empty instance or the map holds NaN/Inf.
    """
    if instance_masks.ndim != 4:
        raise ValueError(f"instance_masks must be BxKxHxW, got shape {tuple(instance_masks.shape)}")
    b, k, h, w = instance_masks.shape
    check_pair(maps, torch.zeros((b, h, w), dtype=torch.bool, device=instance_masks.device), "instance_masks[:, k]")
    if instance_masks.dtype != torch.bool:
        raise TypeError(f"instance_masks must be bool, got {instance_masks.dtype}")
    bad = nonfinite_maps(maps)
    dt = work_dtype(maps)
    safe = torch.where(bad[:, None, None], torch.zeros_like(maps), maps).to(dt)
    peak = safe.flatten(1).amax(dim=1)
    found = torch.zeros(b, dtype=dt, device=maps.device)
    present = torch.zeros(b, dtype=dt, device=maps.device)
    # A loop over instance slots, not samples: each step is batched, and memory stays BxHxW.
    for i in range(k):
        inst = instance_masks[:, i]
        nonempty = inst.flatten(1).any(dim=1)
        inst_peak = torch.where(inst, safe, torch.full_like(safe, -torch.inf)).flatten(1).amax(dim=1)
        found += (nonempty & (inst_peak >= 0.5 * peak)).to(dt)
        present += nonempty.to(dt)
    recall = found / present.clamp(min=1)
    recall = torch.where((peak > 0) & ~constant_maps(maps), recall, torch.zeros_like(recall))
    return nan_where(recall, bad | (present == 0))


@register_metric(
    "top_k_intersection",
    higher_is_better=True,
    requires=("masks",),
    description="fraction of the k highest pixels inside the object (Theiner et al.)",
)
def top_k_within(maps: torch.Tensor, masks: torch.Tensor, k: int = 1000) -> torch.Tensor:
    """:func:`top_k_intersection` with ``k`` capped at the map's pixel count: a config's k
    (default 1000) larger than an image means the whole image there, not an error."""
    return top_k_intersection(maps, masks, min(int(k), maps.shape[-1] * maps.shape[-2]))


@register_metric(
    "iou",
    higher_is_better=True,
    requires=("masks",),
    description="IoU of the object and the map binarised at `threshold` (see iou_curve)",
)
def iou(maps: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5, mode: str = "max_fraction") -> torch.Tensor:
    """IoU of the mask and the map binarised at one ``threshold``: the column of
    :func:`iou_curve` (same conventions, same ``mode``s) at that threshold, float B."""
    return iou_curve(maps, masks, [threshold], mode=mode)[:, 0]
