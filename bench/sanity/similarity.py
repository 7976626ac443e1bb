"""How similar two attribution maps are: the measures of Adebayo et al.'s sanity checks.

Every function takes two batches of maps ``a``, ``b`` (B x H x W, same shape; row i of ``a`` is
compared with row i of ``b``) and returns one float per row (B), computed on the maps' device.

- :func:`spearman`: Spearman rank correlation of the two maps' pixel values, ties given their
  average rank (as ``scipy.stats.spearmanr``), i.e. the Pearson correlation of the ranks,
  in [-1, 1].
- :func:`ssim`: mean structural similarity (Wang et al. 2004) with scikit-image's
  ``structural_similarity`` defaults: a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample
  covariances (N - 1 = 48 in the denominator), the mean over the windows that lie wholly inside
  the map (scikit-image pads and then crops those (7 - 1) / 2 = 3 pixels off every border, which
  leaves exactly these windows). Maps smaller than 7 x 7 are refused.

The ``_abs`` / signed variants follow the paper ("with and without absolute values") and its
code's normalisations before SSIM: with absolute values a map becomes ``|m| / max |m|`` (in
[0, 1], ``data_range`` 1); without, ``m / max |m|`` (in [-1, 1], ``data_range`` 2). Spearman is
unchanged by that scaling, so only the absolute value matters to it. For maps that are never
negative (CAM with its ReLU, gradient magnitudes, RISE) the two Spearman values agree and the
two SSIM values differ only through the data range (2 instead of 1 makes the stabilising
constants C1, C2 four times larger, which raises SSIM a little).

Undefined values are NaN: a map holding NaN or Inf; for SSIM, a map that is zero everywhere
(nothing to normalise by); for Spearman, a map that is constant (no ranking; scipy's NaN too).
So two identical non-constant maps score 1 on every measure, and two equal constant maps score
SSIM 1 and Spearman NaN.

Sums run in float64 (float32 on MPS, which has none): a 224 x 224 map's ranks reach 50,176,
whose squares summed in float32 would lose the fourth decimal.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from bench.metrics.base import exact_dtype, nonfinite_maps

WINDOW = 7
K1, K2 = 0.01, 0.03


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"maps must be two B x H x W batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of each row of ``values`` (B x N), ties given the mean of the ranks they
    span (scipy's ``rankdata(method="average")``), as float64 (float32 on MPS)."""
    dtype = exact_dtype(values)
    ordered, order = torch.sort(values, dim=1, stable=True)
    ordered = ordered.contiguous()
    first = torch.searchsorted(ordered, ordered, right=False)
    last = torch.searchsorted(ordered, ordered, right=True)
    tied_rank = (first + last + 1).to(dtype) / 2  # mean of the 1-based ranks first+1 .. last
    ranks = torch.empty_like(tied_rank)
    ranks.scatter_(1, order, tied_rank)
    return ranks


def _pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    den = torch.sqrt((x * x).sum(dim=1) * (y * y).sum(dim=1))
    r = (x * y).sum(dim=1) / den
    return torch.where(den > 0, r.clamp(-1.0, 1.0), torch.full_like(r, float("nan")))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per row (B, float32); NaN where a map is constant or not
    finite. See the module doc."""
    _check(a, b)
    bad = nonfinite_maps(a) | nonfinite_maps(b)
    ra = average_ranks(torch.nan_to_num(a.flatten(1)))
    rb = average_ranks(torch.nan_to_num(b.flatten(1)))
    r = _pearson(ra, rb).float()
    return torch.where(bad, torch.full_like(r, float("nan")), r)


def spearman_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:func:`spearman` of ``|a|`` and ``|b|``."""
    return spearman(a.abs(), b.abs())


def normalise(maps: torch.Tensor, absolute: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(``|m| / max|m|`` or ``m / max|m|``, B bool: undefined (all-zero or not finite))."""
    work = maps.to(exact_dtype(maps))
    peak = work.abs().flatten(1).amax(dim=1)
    undefined = ~torch.isfinite(peak) | (peak == 0)
    scale = torch.where(undefined, torch.ones_like(peak), peak)[:, None, None]
    out = (work.abs() if absolute else work) / scale
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), undefined


def structural_similarity(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM per row of two B x H x W batches, scikit-image's default conventions (module
    doc), in the inputs' dtype."""
    _check(x, y)
    if x.shape[-1] < WINDOW or x.shape[-2] < WINDOW:
        raise ValueError(f"SSIM needs maps of at least {WINDOW} x {WINDOW} pixels, got {tuple(x.shape[-2:])}")
    n = WINDOW * WINDOW
    cov_norm = n / (n - 1)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    stack = torch.stack([x, y, x * x, y * y, x * y], dim=1)  # B x 5 x H x W
    mean = F.avg_pool2d(stack, WINDOW, stride=1)  # only windows wholly inside the map
    ux, uy, uxx, uyy, uxy = mean.unbind(dim=1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of ``a / max|a|`` and ``b / max|b|`` (data range 2) per row (B, float32); NaN where
    a map is all zero or not finite."""
    _check(a, b)
    return _ssim(a, b, absolute=False)


def ssim_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of ``|a| / max|a|`` and ``|b| / max|b|`` (data range 1) per row (B, float32); NaN
    where a map is all zero or not finite."""
    _check(a, b)
    return _ssim(a, b, absolute=True)


def _ssim(a: torch.Tensor, b: torch.Tensor, absolute: bool) -> torch.Tensor:
    na, bad_a = normalise(a, absolute)
    nb, bad_b = normalise(b, absolute)
    s = structural_similarity(na, nb, data_range=1.0 if absolute else 2.0).float()
    return torch.where(bad_a | bad_b, torch.full_like(s, float("nan")), s)


# name -> function; the names are the columns of sanity rows and the [sanity] config's choices.
MEASURES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "spearman_abs": spearman_abs,
    "spearman": spearman,
    "ssim_abs": ssim_abs,
    "ssim": ssim,
}


def compare(a: torch.Tensor, b: torch.Tensor, measures: tuple[str, ...] | list[str] = tuple(MEASURES)) -> dict[str, torch.Tensor]:
    """Every asked measure of ``a`` against ``b``: name -> B values."""
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown similarity measure(s) {unknown}; choose from {list(MEASURES)}")
    return {m: MEASURES[m](a, b) for m in measures}


def to_size(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps resized to ``size`` (bilinear, ``align_corners=False``, as the engine resizes maps
    to images): similarities compare maps of one method at the model input's resolution, so a
    7 x 7 CAM and a 224 x 224 gradient map are measured on the same grid."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.float()
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
