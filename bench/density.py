"""A map as a probability density over its pixels, and the centre prior: the two things the
information gain (:mod:`bench.metrics.information`) and the ``center`` and ``center_product``
methods (:mod:`bench.methods.baselines`) must compute identically, so that the centre prior's
information gain over itself is exactly 0. They live below both layers for that reason.

**The centre prior** (:func:`center_prior`): one isotropic Gaussian at the image centre, in
coordinates normalised to the image side (so it is anisotropic in pixels on a non-square image).
Pixel (row i, column j) of an h x w map sits at ``((i + 0.5) / h - 0.5, (j + 0.5) / w - 0.5)``;
the value is ``exp(-(u^2 + v^2) / (2 sigma^2))`` with ``sigma`` a fraction of the side.
pysaliency's ``GaussianSaliencyMapModel`` puts pixel j at ``j / w`` instead of its centre, half
a pixel off.

**The density rule** (:func:`map_density`), for a map s of N pixels:

1. shift: if the minimum is negative, subtract it (pysaliency's
   ``convert_saliency_map_to_density`` and this package's KL divergence do the same); a
   non-negative map keeps its zeros;
2. normalise: q = s / sum(s); a constant map (all-zero included) is the uniform density 1/N;
3. regularise: p = (1 - eps) q + eps / N with eps = ``uniform_mix`` (default 0.01): one
   hundredth of the mass spread evenly, so that a fixation where the map is 0 costs
   log2(eps) = -6.64 bits against the uniform density instead of minus infinity; 0 < eps <= 1.

Computed in float64 (float32 on MPS, which has none); a map holding NaN/Inf becomes the uniform
density here, and every score of it is NaN (the callers mark it).
"""

from __future__ import annotations

import torch

DEFAULT_UNIFORM_MIX = 0.01
DEFAULT_SIGMA = 0.25  # the ``center`` method's default


def check_mix(uniform_mix: float) -> float:
    """``uniform_mix`` as a float, or ValueError unless a number in (0, 1]."""
    if isinstance(uniform_mix, bool) or not isinstance(uniform_mix, (int, float)) or not 0.0 < float(uniform_mix) <= 1.0:
        raise ValueError(f"uniform_mix must be a number in (0, 1], got {uniform_mix!r}")
    return float(uniform_mix)


def center_prior(h: int, w: int, sigma: float, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """float32 h x w, peak 1 at the centre (module docstring)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h - 0.5
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w - 0.5
    s = float(sigma)
    return torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * s * s))


def density_times_n(maps: torch.Tensor, uniform_mix: float = DEFAULT_UNIFORM_MIX) -> torch.Tensor:
    """B x N: the density rule's p(x) times N (1 everywhere for the uniform density), with
    NaN/Inf rows uniform (module docstring). Written as ``1 + (1 - eps)(qN - 1)`` so that a
    uniform q gives exactly 1."""
    eps = check_mix(uniform_mix)
    flat = maps.flatten(1)
    hi, lo = flat.amax(dim=1), flat.amin(dim=1)
    bad = ~(torch.isfinite(hi) & torch.isfinite(lo))
    flat = flat.to(torch.float32 if maps.device.type == "mps" else torch.float64)
    flat = torch.where(bad[:, None], torch.zeros_like(flat), flat)
    n = flat.shape[1]
    shifted = flat - flat.amin(dim=1, keepdim=True).clamp(max=0)
    total = shifted.sum(dim=1, keepdim=True)
    uniform = (hi == lo)[:, None] | bad[:, None] | ~(total > 0)
    qn = torch.where(uniform, torch.ones_like(shifted), shifted * n / torch.where(uniform, 1.0, total))
    return 1.0 + (1.0 - eps) * (qn - 1.0)


def map_density(maps: torch.Tensor, uniform_mix: float = DEFAULT_UNIFORM_MIX) -> torch.Tensor:
    """The density rule (module docstring): B x H x W, each map summing to 1."""
    b, h, w = maps.shape
    return (density_times_n(maps, uniform_mix) / (h * w)).reshape(b, h, w)
