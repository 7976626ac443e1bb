"""Similarity measures of the sanity checks: Spearman against scipy, SSIM against scikit-image,
and hand-computed cases pinning every convention in bench.sanity.similarity's docstring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from bench.sanity.similarity import (
    MEASURES,
    average_ranks,
    compare,
    spearman,
    spearman_abs,
    ssim,
    ssim_abs,
    structural_similarity,
    to_size,
)

skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is in the test extras")


def _pair(seed: int, shape=(5, 24, 31), ties: bool = False):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g)
    b = 0.6 * a + 0.8 * torch.randn(shape, generator=g)
    if ties:
        a, b = (a * 2).round(), (b * 2).round()
    return a, b


# -- Spearman ----------------------------------------------------------------------------------


def test_spearman_hand_case():
    # ranks 1 2 3 4 against 1 3 2 4: rho = 1 - 6 * 2 / (4 * 15) = 0.8
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    b = torch.tensor([[[10.0, 30.0], [20.0, 40.0]]])
    assert spearman(a, b).item() == pytest.approx(0.8, abs=1e-7)


def test_spearman_ties_take_their_average_rank():
    # a's ranks: 1.5 1.5 3 4; b's: 1 2 3 4. Pearson of the ranks = 4.5 / sqrt(4.5 * 5).
    a = torch.tensor([[[1.0, 1.0], [2.0, 3.0]]])
    b = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert average_ranks(a.flatten(1)).tolist() == [[1.5, 1.5, 3.0, 4.0]]
    assert spearman(a, b).item() == pytest.approx(4.5 / math.sqrt(4.5 * 5), abs=1e-7)


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_matches_scipy(ties):
    a, b = _pair(0, ties=ties)
    ours = spearman(a, b)
    for i in range(a.shape[0]):
        ref = scipy.stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
        ref_abs = scipy.stats.spearmanr(a[i].abs().flatten().numpy(), b[i].abs().flatten().numpy()).statistic
        assert spearman_abs(a, b)[i].item() == pytest.approx(ref_abs, abs=1e-6)


def test_spearman_undefined_and_extremes():
    a, _ = _pair(1, shape=(4, 9, 9))
    b = a.clone()
    b[1] = 3.0  # constant: no ranking (scipy gives NaN too)
    b[2, 4, 4] = float("nan")
    b[3] = -a[3]
    r = spearman(a, b)
    assert r[0].item() == pytest.approx(1.0, abs=1e-7)
    assert math.isnan(r[1].item()) and math.isnan(r[2].item())
    assert r[3].item() == pytest.approx(-1.0, abs=1e-7)
    # With absolute values a map and its negation are the same map.
    assert spearman_abs(a[3:], -a[3:]).item() == pytest.approx(1.0, abs=1e-7)


# -- SSIM --------------------------------------------------------------------------------------


def test_ssim_one_window_by_hand():
    # A 7x7 map is one window. x: 25 ones and 24 zeros; y = 1 - x. With N = 49 and sample
    # covariances: ux = 25/49, uy = 24/49, vx = vy = (49/48) * (25/49) * (24/49),
    # vxy = -(49/48) * (25/49) * (24/49) (x * y = 0 everywhere), data range 1.
    x = torch.zeros(49, dtype=torch.float64)
    x[:25] = 1
    x = x.reshape(1, 7, 7)
    y = 1 - x
    ux, uy = 25 / 49, 24 / 49
    v = (49 / 48) * ux * uy
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * ux * uy + c1) * (-2 * v + c2)) / ((ux**2 + uy**2 + c1) * (2 * v + c2))
    assert structural_similarity(x, y, data_range=1.0).item() == pytest.approx(expected, rel=1e-12)
    # Two constants a, b: no variance, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = torch.full((1, 7, 7), 1.0, dtype=torch.float64), torch.full((1, 7, 7), 0.5, dtype=torch.float64)
    assert structural_similarity(a, b, 1.0).item() == pytest.approx((1 + c1) / (1.25 + c1), rel=1e-12)


@pytest.mark.parametrize("shape", [(3, 7, 7), (4, 30, 41), (2, 96, 96)])
def test_ssim_matches_scikit_image(shape):
    """Normalised as the docstring says, then skimage's structural_similarity with its defaults
    (7x7 uniform window, sample covariance) and the stated data range."""
    a, b = _pair(2, shape=shape)
    for fn, absolute in ((ssim_abs, True), (ssim, False)):
        ours = fn(a, b)
        for i in range(shape[0]):
            x, y = a[i].double().numpy(), b[i].double().numpy()
            if absolute:
                x, y = np.abs(x), np.abs(y)
            x, y = x / np.abs(x).max(), y / np.abs(y).max()
            ref = skimage_metrics.structural_similarity(x, y, data_range=1.0 if absolute else 2.0)
            assert ours[i].item() == pytest.approx(ref, abs=1e-6), (fn.__name__, i)


def test_ssim_conventions():
    a, _ = _pair(3, shape=(4, 12, 12))
    b = a.clone()
    b[1] = 0.0  # nothing to normalise by
    b[2, 0, 0] = float("inf")
    b[3] = 5 * a[3]  # a scaled copy is the same map after normalisation
    for fn in (ssim, ssim_abs):
        s = fn(a, b)
        assert s[0].item() == pytest.approx(1.0, abs=1e-6)
        assert math.isnan(s[1].item()) and math.isnan(s[2].item())
        assert s[3].item() == pytest.approx(1.0, abs=1e-6)
    # Equal constant maps: SSIM 1, Spearman undefined.
    ones = torch.ones(2, 9, 9)
    assert ssim_abs(ones, ones).tolist() == pytest.approx([1.0, 1.0])
    assert torch.isnan(spearman(ones, ones)).all()
    # A map and its negation: the same map with absolute values, not without.
    assert ssim_abs(a[:1], -a[:1]).item() == pytest.approx(1.0, abs=1e-6)
    assert ssim(a[:1], -a[:1]).item() < 0.5
    with pytest.raises(ValueError, match="at least 7 x 7"):
        ssim(torch.rand(1, 6, 20), torch.rand(1, 6, 20))
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.rand(1, 8, 8), torch.rand(1, 8, 9))


def test_rows_are_independent_of_their_batch():
    a, b = _pair(4, shape=(6, 16, 16), ties=True)
    whole = compare(a, b)
    for i in range(6):
        alone = compare(a[i : i + 1], b[i : i + 1])
        for name in MEASURES:
            assert alone[name].item() == pytest.approx(whole[name][i].item(), abs=1e-6), name


def test_compare_names_and_resize():
    a, b = _pair(5, shape=(2, 10, 10))
    assert set(compare(a, b, ["ssim"])) == {"ssim"}
    with pytest.raises(ValueError, match="unknown similarity measure"):
        compare(a, b, ["pearson"])
    assert to_size(torch.rand(3, 7, 7), (96, 80)).shape == (3, 96, 80)
