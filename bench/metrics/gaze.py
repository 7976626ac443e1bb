"""Gaze metrics: how well a map predicts where people look (docs/design.md, "Metric definitions").

Definitions follow the MIT saliency benchmark's MATLAB code (cvzoya/saliency,
``code_forMetrics``: NSS.m, AUC_Judd.m, AUC_shuffled.m, CC.m, KLdiv.m, similarity.m) unless a
docstring says otherwise, and each docstring names where pysaliency (the Python reference)
differs. Shared conventions, pinned by tests/test_metrics_gaze.py:

- ``maps`` float BxHxW; ``fixation_maps`` bool BxHxW with the fixated pixels set (several
  fixations on one pixel count once, as in MIT's binary fixation maps); ``densities`` float
  BxHxW. All at the same resolution: MIT's code resizes the map to the fixation map first, the
  engine does that before scoring. Pixel (row y, column x), 0-based.
- Every value is computed in float64, as MIT's MATLAB code (float32 on MPS), and returned one
  per sample.
- NaN where undefined: no fixated pixel (MIT returns NaN too), every pixel fixated (no negative
  for AUC), an all-zero or NaN/Inf density, or a map holding NaN/Inf.
- A constant map (all-zero included) prefers no location; it is the uniform prediction and
  scores chance: NSS 0, CC 0, AUC-Judd (P/2 + 1)/(P + 1) for P fixations (MIT's jittered
  value in expectation), shuffled AUC 0.5, KL and SIM those of the uniform density. MIT's code
  gives NaN there for NSS, CC, SIM (0/0), or 0 for SIM of an all-zero map; pysaliency gives 0
  for NSS and CC and the uniform density for KL and SIM, as here.
"""

from __future__ import annotations

import torch

from bench.metrics.base import (
    check_pair,
    constant_maps,
    nan_where,
    nonfinite_maps,
    register_metric,
    exact_dtype,
)
from bench.metrics.ranking import by_chunks, count_true, positives_above_and_tied

# MATLAB's eps (2^-52), the regulariser of MIT's KLdiv.m. pysaliency's MIT_KLDiv writes it as
# 2.2204e-16, which differs only where the map is 0 on a pixel with positive density.
MATLAB_EPS = 2.0**-52


def _flat_maps(maps: torch.Tensor):
    """Flat maps in the work dtype with NaN/Inf rows zeroed, and the B bool of those rows."""
    bad = nonfinite_maps(maps)
    flat = maps.flatten(1).to(exact_dtype(maps))
    return torch.where(bad[:, None], torch.zeros_like(flat), flat), bad


def _check_density(maps: torch.Tensor, densities: torch.Tensor) -> None:
    if maps.ndim != 3:
        raise ValueError(f"maps must be BxHxW, got shape {tuple(maps.shape)}")
    if densities.shape != maps.shape:
        raise ValueError(f"densities shape {tuple(densities.shape)} != maps shape {tuple(maps.shape)}")
    if not densities.is_floating_point():
        raise TypeError(f"densities must be a float tensor, got {densities.dtype}")
    if densities.device != maps.device:
        raise ValueError(f"densities on {densities.device} but maps on {maps.device}")


@register_metric(
    "nss",
    higher_is_better=True,
    requires=("fixations",),
    description="normalized scanpath saliency (MIT; std with ddof=1)",
)
def nss(maps: torch.Tensor, fixation_maps: torch.Tensor, *, ddof: int = 1) -> torch.Tensor:
    """Normalized scanpath saliency: the map standardised to mean 0 and standard deviation 1
    over all pixels, averaged over the fixated pixels.

    ``ddof=1`` divides the variance by N - 1, as MATLAB's ``std`` in MIT's NSS.m; pysaliency's
    ``NSS`` uses NumPy's default ``ddof=0``, giving values larger by sqrt(N / (N - 1)) (a
    factor 1.00001 at 224x224). A constant map scores 0 (MIT: NaN). NaN where no pixel is
    fixated or the map holds NaN/Inf.
    """
    check_pair(maps, fixation_maps, "fixation_maps")
    flat, bad = _flat_maps(maps)
    fix = fixation_maps.flatten(1)
    n_fix = count_true(fix).to(flat.dtype)
    mean = flat.mean(dim=1)
    std = flat.std(dim=1, correction=ddof) if flat.shape[1] > ddof else torch.zeros_like(mean)
    at_fix = (flat * fix).sum(dim=1) / n_fix.clamp(min=1)
    flat_map = constant_maps(maps) | ~(std > 0)
    score = (at_fix - mean) / torch.where(flat_map, torch.ones_like(std), std)
    score = torch.where(flat_map, torch.zeros_like(score), score)
    return nan_where(score, bad | (n_fix == 0))


@register_metric(
    "auc_judd",
    higher_is_better=True,
    requires=("fixations",),
    description="AUC-Judd (MIT), ties by their expectation over MIT's jitter",
)
def auc_judd(maps: torch.Tensor, fixation_maps: torch.Tensor) -> torch.Tensor:
    """AUC-Judd (MIT's AUC_Judd.m): fixated pixels are positives, every other pixel a negative;
    the ROC's thresholds are the map values at the fixations (plus the end points (0, 0) and
    (1, 1)); the area is by the trapezoid rule.

    Ties: MIT adds uniform noise of 1e-7 to the map ("jitter", on by default, unseeded) so that
    equal values fall in random order. Here equal values are handled exactly by the *expected*
    AUC over that random order, so the score is deterministic and equals MIT's whenever the map
    has no ties, and MIT's average over many jitters otherwise. (Values closer than 1e-7 but not
    equal keep their order here; MIT's jitter may swap them.) pysaliency's ``AUC_Judd`` draws one
    seeded jitter of the same size (``jitter=False`` counts ties as above the threshold). In
    closed form: a negative with g positives above it and t positives equal to it contributes
    (g + 1/2 + t/2) / P, less 1 / (2P(t + 1)) where g + t = P, averaged over negatives.

    A constant map scores (P/2 + 1)/(P + 1) (chance for this ROC, 0.75 for one fixation). NaN
    where no pixel or every pixel is fixated, or the map holds NaN/Inf.
    """
    check_pair(maps, fixation_maps, "fixation_maps")
    flat, bad = _flat_maps(maps)
    fix = fixation_maps.flatten(1)

    def run(flat, fix):
        dt = flat.dtype
        p = fix.sum(dim=1, keepdim=True).to(dt)
        negatives = count_true(~fix).to(dt)
        above, tied = (c.to(dt) for c in positives_above_and_tied(flat, fix))
        pc = p.clamp(min=1)
        credit = (above + 0.5 + tied / 2) / pc
        credit = credit - torch.where(above + tied == p, 0.5 / (pc * (tied + 1)), torch.zeros_like(credit))
        return (credit * ~fix).sum(dim=1) / negatives.clamp(min=1)

    auc = by_chunks(run, (flat, fix), flat.shape[1])
    n_fix = count_true(fix)
    return nan_where(auc, bad | (n_fix == 0) | (n_fix == fix.shape[1]))


@register_metric(
    "shuffled_auc",
    higher_is_better=True,
    requires=("fixations", "other_fixations"),
    description="shuffled AUC (MIT), negatives = other images' fixations, in expectation",
)
def shuffled_auc(
    maps: torch.Tensor,
    fixation_maps: torch.Tensor,
    other_fixation_maps: torch.Tensor,
    *,
    step: float | None = 0.1,
) -> torch.Tensor:
    """Shuffled AUC (MIT's AUC_shuffled.m, after Borji): positives are this image's fixated
    pixels, negatives the pixels fixated on *other* images (``other_fixation_maps``), which
    discounts the centre bias shared by all images.

    MIT min-max normalises the map to [0, 1], sweeps thresholds 0, step, 2 step, ... (step 0.1)
    and averages the trapezoid AUC over 100 random subsets of the negatives, each as large as
    the positives. The AUC is linear in the false-positive rates, whose mean over random subsets
    is the rate over all negatives: this function returns that exact expectation (MIT's value up
    to its sampling noise), deterministically. ``step=None`` uses every map value as a
    threshold, the exact Mann-Whitney AUC (ties count 1/2): that is pysaliency's ``sAUC``, which
    also takes every other-image fixation as a negative.

    A constant map scores 0.5. A pixel fixated on this and other images is both a positive and
    a negative, as in both references. NaN where either fixation map is empty or the map holds
    NaN/Inf.
    """
    check_pair(maps, fixation_maps, "fixation_maps")
    check_pair(maps, other_fixation_maps, "other_fixation_maps")
    if step is not None and not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1] or None, got {step!r}")
    flat, bad = _flat_maps(maps)
    dt = flat.dtype
    pos = fixation_maps.flatten(1)
    neg = other_fixation_maps.flatten(1)
    n_pos = count_true(pos).to(dt)
    n_neg = count_true(neg).to(dt)
    undefined = bad | (n_pos == 0) | (n_neg == 0)
    if step is None:

        def run(flat, pos, neg):
            above, tied = (c.to(dt) for c in positives_above_and_tied(flat, pos))
            return ((above + tied / 2) * neg).sum(dim=1)

        wins = by_chunks(run, (flat, pos, neg), flat.shape[1])
        return nan_where(wins / (n_pos * n_neg).clamp(min=1), undefined)

    lo = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - lo
    norm = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, 1.0), torch.zeros_like(flat))
    # Thresholds k * step as MATLAB's 0:step:max; those above the map's maximum add (0, 0)
    # points, which add no area, so the grid can run to 1 for every map.
    n_steps = int(torch.floor(torch.tensor(1.0 / step, dtype=torch.float64) + 1e-9).item())
    tp = [torch.ones_like(n_pos)]  # rates at thresholds ascending from 0, where all pass
    fp = [torch.ones_like(n_neg)]
    for k in range(1, n_steps + 1):  # a loop over thresholds; every step is batched
        above = norm >= k * step
        tp.append(count_true(above & pos).to(dt) / n_pos.clamp(min=1))
        fp.append(count_true(above & neg).to(dt) / n_neg.clamp(min=1))
    zeros = torch.zeros_like(n_pos)
    tp = torch.stack([zeros, *reversed(tp), torch.ones_like(n_pos)], dim=1)
    fp = torch.stack([zeros, *reversed(fp), torch.ones_like(n_neg)], dim=1)
    auc = ((fp[:, 1:] - fp[:, :-1]) * (tp[:, 1:] + tp[:, :-1]) / 2).sum(dim=1)
    return nan_where(auc, undefined)


def _as_density(flat: torch.Tensor, minmax: bool) -> torch.Tensor:
    """Rows as probability distributions. ``minmax`` subtracts the minimum first (MIT's SIM);
    otherwise the minimum is subtracted only where negative (pysaliency's rule for KL, where
    MIT's code would take the log of a negative number). Rows summing to 0 become uniform."""
    lo = flat.amin(dim=1, keepdim=True)
    shifted = flat - (lo if minmax else lo.clamp(max=0))
    total = shifted.sum(dim=1, keepdim=True)
    uniform = torch.full_like(shifted, 1.0 / shifted.shape[1])
    return torch.where(total > 0, shifted / torch.where(total > 0, total, 1.0), uniform)


def _density_prepared(maps: torch.Tensor, densities: torch.Tensor):
    _check_density(maps, densities)
    flat, bad = _flat_maps(maps)
    dens, bad_d = _flat_maps(densities)
    no_truth = bad_d | ~(dens != 0).any(dim=1)
    return flat, dens, bad | no_truth


@register_metric(
    "cc",
    higher_is_better=True,
    requires=("density",),
    description="Pearson correlation of map and fixation density (MIT)",
)
def cc(maps: torch.Tensor, densities: torch.Tensor) -> torch.Tensor:
    """Pearson's linear correlation between the map and the density over all pixels, in
    [-1, 1] (MIT's CC.m; pysaliency's ``CC`` is the same number).

    A constant map scores 0 (MIT: NaN; pysaliency: 0). NaN where the density is constant
    (all-zero included: no ground truth to correlate with) or either holds NaN/Inf.
    """
    flat, dens, undefined = _density_prepared(maps, densities)
    a = flat - flat.mean(dim=1, keepdim=True)
    b = dens - dens.mean(dim=1, keepdim=True)
    va = (a * a).sum(dim=1)
    vb = (b * b).sum(dim=1)
    flat_map = constant_maps(maps) | (va == 0)
    r = (a * b).sum(dim=1) / torch.sqrt(torch.where(flat_map, torch.ones_like(va), va) * vb.clamp(min=1e-300))
    r = torch.where(flat_map, torch.zeros_like(r), r.clamp(-1, 1))
    return nan_where(r, undefined | (vb == 0))


@register_metric(
    "kl_div",
    higher_is_better=False,
    requires=("density",),
    description="KL divergence of the map from the fixation density (MIT)",
)
def kl_div(maps: torch.Tensor, densities: torch.Tensor) -> torch.Tensor:
    """KL divergence of the map from the density, both as distributions (MIT's KLdiv.m):
    ``sum(Q * log(eps + Q / (P + eps)))``, Q the density, P the map, eps = 2^-52 (MATLAB's
    ``eps``). Lower is better; >= 0 up to the eps terms (> -1e-12).

    Each is divided by its sum. A map with negative values is shifted by its minimum first
    (pysaliency's ``MIT_KLDiv`` rule; MIT's code would take logs of negative numbers); a
    constant map is the uniform distribution (MIT's code leaves an all-zero map at 0, giving
    Q * log(Q / eps) per pixel). pysaliency writes eps as 2.2204e-16, the same number to 4e-5
    relative, which matters only where the map is 0 and the density is not. NaN where the
    density is all-zero or either holds NaN/Inf.
    """
    flat, dens, undefined = _density_prepared(maps, densities)
    p = _as_density(flat, minmax=False)
    q = _as_density(dens, minmax=False)
    kl = (q * torch.log(MATLAB_EPS + q / (p + MATLAB_EPS))).sum(dim=1)
    return nan_where(kl, undefined)


@register_metric(
    "sim",
    higher_is_better=True,
    requires=("density",),
    description="histogram intersection of map and fixation density (MIT)",
)
def sim(maps: torch.Tensor, densities: torch.Tensor) -> torch.Tensor:
    """Similarity (histogram intersection, MIT's similarity.m): both min-max normalised, then
    divided by their sums; ``sum(min(P, Q))`` in [0, 1], 1 for identical distributions.

    pysaliency's ``SIM`` subtracts the minimum only where it is negative, so the two agree when
    each minimum is <= 0 (most densities, and ReLU'd maps) and differ for maps with a positive
    floor, which MIT's normalisation removes on purpose ("so that models that assign a nonzero
    value to every pixel do not get an artificial performance boost"). A constant map is the
    uniform distribution (MIT: NaN, or 0 for an all-zero map). NaN where the density is all-zero
    or either holds NaN/Inf.
    """
    flat, dens, undefined = _density_prepared(maps, densities)
    p = _as_density(flat, minmax=True)
    q = _as_density(dens, minmax=True)
    return nan_where(torch.minimum(p, q).sum(dim=1), undefined)
