"""Information gain and log-likelihood (Kümmerer, Wallis & Bethge, PNAS 2015): a map read as a
probability density over the image's pixels, scored by how probable it makes the fixations, in
bits per fixation.

**The density rule** (:func:`bench.density.map_density`: a negative minimum subtracted,
normalised, ``uniform_mix`` eps of the uniform density mixed in, default 0.01). eps is part of
the score's definition (the leaderboard prints it); 0 < eps <= 1.

**Scores**, one per (image, target) row, over the fixated pixels F (several fixations on one
pixel count once, as in every gaze metric here):

- ``log_likelihood``: mean over F of log2(p(x) N), bits per fixation above the uniform density
  (exactly 0 for a constant map);
- ``information_gain``: mean over F of log2 p(x) - log2 b(x), b the centre prior
  (:func:`bench.density.center_prior`, ``sigma`` as the ``center`` method's default) made a density by
  the same rule: bits per fixation above the centre-bias baseline. It is exactly 0 for the
  centre prior's own map at the image's resolution. (A run's ``center`` row is the prior at the
  model's input size resized to the image, so its gain is within rounding of 0, not exactly 0.)

Both are NaN where no pixel is fixated or the map holds NaN/Inf, and computed in float64.

**Where pysaliency (0.2.22) differs**, each pinned by tests/test_metrics_information.py:

- units and origin: pysaliency's ``log_likelihood`` is in nats and absolute (mean log p);
  ``log_likelihood`` here is (pysaliency's + ln N) / ln 2, i.e. pysaliency's
  ``information_gain`` over its default ``UniformModel``;
- averaging: pysaliency's default ``average='fixation'`` pools the fixations of all images; a
  row here is one image, and the leaderboard's mean over rows is pysaliency's
  ``average='image'``;
- fixation to pixel: pysaliency reads pixel (int(y), int(x)), truncating (a pixel covers
  [j, j + 1)); here a point is a pixel centre rounded half up (the data layer's convention).
  Both give the same pixel for integer coordinates;
- repeated pixels: pysaliency scores every fixation, here each fixated pixel once;
- the density: pysaliency's ``convert_saliency_map_to_density(s, minimum_value=m)`` adds m in
  the map's units; eps here is a share of probability, independent of the map's scale. They
  give the same density when m = eps S / ((1 - eps) N), S the shifted map's sum;
- the baseline: the MIT/Tübingen benchmark's centre bias is a Gaussian KDE of the other images'
  fixations (pysaliency's ``CrossvalidatedBaselineModel``); here it is the fixed Gaussian of the
  ``center`` row, so that the gain is over the row printed beside it.
"""

from __future__ import annotations

import math

import torch

from bench.density import DEFAULT_SIGMA, DEFAULT_UNIFORM_MIX, center_prior, check_mix, density_times_n, map_density
from bench.metrics.base import check_pair, nan_where, nonfinite_maps, register_metric
from bench.metrics.ranking import count_true


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    return float(sigma)


def check_params(params: dict) -> None:
    """The metric contract's range check (``register_metric(check=...)``): run with the config,
    before anything runs."""
    check_mix(params["uniform_mix"])
    if "sigma" in params:
        _check_sigma(params["sigma"])


def _mean_log2_at(pn: torch.Tensor, fix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of log2(pn) over each row's fixated pixels, and the row's fixated-pixel count."""
    n_fix = count_true(fix).to(pn.dtype)
    logs = torch.where(fix, torch.log2(torch.where(fix, pn, torch.ones_like(pn))), torch.zeros_like(pn))
    return logs.sum(dim=1) / n_fix.clamp(min=1), n_fix


@register_metric(
    "log_likelihood",
    higher_is_better=True,
    requires=("fixations",),
    description="log-likelihood of the fixations under the map as a density, bits per fixation above uniform (Kümmerer et al. 2015)",
    check=check_params,
)
def log_likelihood(
    maps: torch.Tensor, fixation_maps: torch.Tensor, *, uniform_mix: float = DEFAULT_UNIFORM_MIX
) -> torch.Tensor:
    """Bits per fixated pixel above the uniform density: mean over fixated pixels of
    log2(p(x) N), p the density rule's (module docstring). 0 for a constant map; NaN where no
    pixel is fixated or the map holds NaN/Inf."""
    check_pair(maps, fixation_maps, "fixation_maps")
    mean, n_fix = _mean_log2_at(density_times_n(maps, uniform_mix), fixation_maps.flatten(1))
    return nan_where(mean, nonfinite_maps(maps) | (n_fix == 0))


def baseline_density_times_n(
    h: int, w: int, *, sigma: float = DEFAULT_SIGMA, uniform_mix: float = DEFAULT_UNIFORM_MIX,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """1 x N: the centre prior's density times N, by the same rule and from the same float32
    map as the ``center`` method's, so that the two are bit-identical at one resolution."""
    return density_times_n(center_prior(h, w, sigma, device=device)[None], uniform_mix)


@register_metric(
    "information_gain",
    higher_is_better=True,
    requires=("fixations",),
    description="information gain over the centre prior, bits per fixation (Kümmerer et al. 2015)",
    check=check_params,
)
def information_gain(
    maps: torch.Tensor,
    fixation_maps: torch.Tensor,
    *,
    sigma: float = DEFAULT_SIGMA,
    uniform_mix: float = DEFAULT_UNIFORM_MIX,
) -> torch.Tensor:
    """Bits per fixated pixel above the centre prior: mean over fixated pixels of
    log2 p(x) - log2 b(x) (module docstring). Exactly 0 for the centre prior's own map; NaN
    where no pixel is fixated or the map holds NaN/Inf."""
    check_pair(maps, fixation_maps, "fixation_maps")
    _check_sigma(sigma)
    _, h, w = maps.shape
    base = baseline_density_times_n(h, w, sigma=sigma, uniform_mix=uniform_mix, device=maps.device)
    fix = fixation_maps.flatten(1)
    pn = density_times_n(maps, uniform_mix)
    n_fix = count_true(fix).to(pn.dtype)
    ones = torch.ones_like(pn)
    # log2 of each density separately, then the difference: equal densities give exactly 0.
    gain = torch.log2(torch.where(fix, pn, ones)) - torch.log2(torch.where(fix, base.expand_as(pn), ones))
    mean = torch.where(fix, gain, torch.zeros_like(gain)).sum(dim=1) / n_fix.clamp(min=1)
    return nan_where(mean, nonfinite_maps(maps) | (n_fix == 0))
