"""Gaze metrics (MIT saliency benchmark definitions): conventions pinned by hand-computed cases.
Agreement with pysaliency on random and real data is in test_metrics_references.py."""

import math

import pytest
import torch

from bench.metrics import METRICS, TruthBatch, auc_judd, cc, kl_div, nss, shuffled_auc, sim
from bench.metrics.gaze import MATLAB_EPS


def _m(values, h=1):
    return torch.tensor(values, dtype=torch.float64).reshape(1, h, -1)


def _f(values, h=1):
    return torch.tensor(values, dtype=torch.bool).reshape(1, h, -1)


def test_nss_by_hand_with_matlab_std():
    m, f = _m([0, 0, 0, 4]), _f([0, 0, 0, 1])
    # mean 1; deviations -1 -1 -1 3: var 12/3 = 4 (N-1), std 2: (4 - 1) / 2
    assert nss(m, f).item() == pytest.approx(1.5)
    assert nss(m, f, ddof=0).item() == pytest.approx(3 / math.sqrt(3))  # pysaliency's ddof
    # the mean over fixated pixels: (-1/2 + 3/2) / 2
    assert nss(m, _f([1, 0, 0, 1])).item() == pytest.approx(0.5)


def test_nss_degenerate_cases():
    assert nss(torch.full((1, 2, 2), 7.0), _f([1, 0, 0, 0], h=2)).item() == 0.0  # constant: chance
    assert math.isnan(nss(_m([0, 1, 2, 3]), _f([0, 0, 0, 0])).item())  # no fixation
    assert math.isnan(nss(_m([0, math.nan, 2, 3]), _f([1, 0, 0, 0])).item())


def test_auc_judd_by_hand():
    # positives 0.9, 0.5; negatives 0.1, 0.6, 0.2. Thresholds 0.9 -> (0, 1/2), 0.5 -> (1/3, 1):
    # area 1/3 * (1/2 + 1)/2 + 2/3 * 1 = 11/12
    m = _m([0.9, 0.5, 0.1, 0.6, 0.2])
    f = _f([1, 1, 0, 0, 0])
    assert auc_judd(m, f).item() == pytest.approx(11 / 12)
    # monotone transforms do not change it (only the order counts)
    assert auc_judd(m * 100 - 3, f).item() == pytest.approx(11 / 12)


def test_auc_judd_ties_are_the_expectation_over_mit_jitter():
    # values 1, 1, 0 with the first fixated. The jitter orders the tied pair at random:
    # positive first -> ROC (0,0),(0,1),(1,1): AUC 1; negative first -> (0,0),(1/2,1),(1,1):
    # 3/4. Expected 7/8.
    assert auc_judd(_m([1, 1, 0]), _f([1, 0, 0])).item() == pytest.approx(0.875)
    # constant map with P fixations: (P/2 + 1) / (P + 1), 3/4 for one fixation
    assert auc_judd(torch.zeros(1, 3, 3), _f([1, 0, 0, 0, 0, 0, 0, 0, 0], h=3)).item() == pytest.approx(0.75)
    two = _f([1, 1, 0, 0, 0, 0, 0, 0, 0], h=3)
    assert auc_judd(torch.zeros(1, 3, 3), two).item() == pytest.approx(2 / 3)


def test_auc_judd_undefined_cases():
    assert math.isnan(auc_judd(_m([1, 2, 3]), _f([0, 0, 0])).item())
    assert math.isnan(auc_judd(_m([1, 2, 3]), _f([1, 1, 1])).item())  # no negative
    assert math.isnan(auc_judd(_m([1, math.inf, 3]), _f([1, 0, 0])).item())


def test_shuffled_auc_mit_grid_by_hand():
    m = _m([0, 0.25, 0.5, 0.75, 1.0])
    pos = _f([0, 0, 0, 1, 1])
    neg = _f([1, 0, 1, 0, 0])
    # step 0.5: thresholds 1 -> (fp 0, tp 1/2), .5 -> (1/2, 1), 0 -> (1, 1):
    # area 1/2 * (1/2 + 1)/2 + 1/2 * 1 = 7/8
    assert shuffled_auc(m, pos, neg, step=0.5).item() == pytest.approx(0.875)
    # every value a threshold: every positive above every negative
    assert shuffled_auc(m, pos, neg, step=None).item() == pytest.approx(1.0)
    # the MIT grid normalises the map first: any affine rescaling gives the same
    assert shuffled_auc(m * 7 + 2, pos, neg, step=0.5).item() == pytest.approx(0.875)
    # exact mode counts ties 1/2: one positive tied with the only negative
    assert shuffled_auc(_m([1, 1, 0]), _f([1, 0, 0]), _f([0, 1, 0]), step=None).item() == pytest.approx(0.5)


def test_shuffled_auc_degenerate_cases():
    pos, neg = _f([1, 0, 0, 0]), _f([0, 1, 1, 0])
    assert shuffled_auc(torch.full((1, 1, 4), 3.0), pos, neg).item() == pytest.approx(0.5)
    assert shuffled_auc(torch.full((1, 1, 4), 3.0), pos, neg, step=None).item() == pytest.approx(0.5)
    assert math.isnan(shuffled_auc(_m([1, 2, 3, 4]), pos, _f([0, 0, 0, 0])).item())
    assert math.isnan(shuffled_auc(_m([1, 2, 3, 4]), _f([0, 0, 0, 0]), neg).item())
    with pytest.raises(ValueError, match="step"):
        shuffled_auc(_m([1, 2, 3, 4]), pos, neg, step=0)


def test_cc_by_hand():
    m = _m([1, 2, 3])
    assert cc(m, _m([2, 4, 6])).item() == pytest.approx(1.0)
    assert cc(m, _m([3, 2, 1])).item() == pytest.approx(-1.0)
    assert cc(m, _m([1, 0, 1])).item() == pytest.approx(0.0, abs=1e-12)
    assert cc(torch.zeros(1, 1, 3), _m([1, 2, 3])).item() == 0.0  # constant map: chance
    assert math.isnan(cc(m, _m([2, 2, 2])).item())  # constant density: nothing to correlate
    assert math.isnan(cc(m, torch.zeros(1, 1, 3)).item())


def test_kl_by_hand():
    # uniform map vs all density on one pixel: 1 * log(eps + 1 / (1/2 + eps)) = log 2
    assert kl_div(_m([1, 1]), _m([1, 0])).item() == pytest.approx(math.log(2))
    assert kl_div(_m([1, 3]), _m([2, 6])).item() == pytest.approx(0.0, abs=1e-12)
    # a constant or all-zero map is the uniform distribution
    assert kl_div(torch.zeros(1, 1, 2), _m([1, 0])).item() == pytest.approx(math.log(2))
    # a negative map is shifted by its minimum: [-1, 1] -> [0, 2] -> [0, 1]
    expected = 0.25 * math.log(MATLAB_EPS + 0.25 / MATLAB_EPS) + 0.75 * math.log(MATLAB_EPS + 0.75)
    assert kl_div(_m([-1, 1]), _m([1, 3])).item() == pytest.approx(expected)
    assert math.isnan(kl_div(_m([1, 2]), torch.zeros(1, 1, 2)).item())


def test_sim_by_hand_with_mit_min_max():
    assert sim(_m([0, 1]), _m([0, 1])).item() == pytest.approx(1.0)
    assert sim(_m([1, 0]), _m([0, 1])).item() == pytest.approx(0.0)
    # a positive floor is removed first (MIT): [1, 2] -> [0, 1]; pysaliency would keep
    # [1/3, 2/3] and score 2/3
    assert sim(_m([1, 2]), _m([0, 1])).item() == pytest.approx(1.0)
    assert sim(_m([0, 1, 3]), _m([0, 1, 1])).item() == pytest.approx(0.25 + 0.5)
    # constant map: uniform, half the mass on each of two pixels vs [0, 1]
    assert sim(torch.zeros(1, 1, 2), _m([0, 1])).item() == pytest.approx(0.5)
    assert math.isnan(sim(_m([0, 1]), torch.zeros(1, 1, 2)).item())


@pytest.mark.parametrize("fn", [cc, kl_div, sim])
def test_density_metrics_undefined_for_nonfinite_inputs(fn):
    assert math.isnan(fn(_m([0, math.nan, 1]), _m([0, 1, 1])).item())
    assert math.isnan(fn(_m([0, 2, 1]), _m([0, math.inf, 1])).item())


def test_float32_inputs_are_scored_in_float64():
    torch.manual_seed(0)
    m = torch.rand(2, 30, 30)
    d = torch.rand(2, 30, 30)
    f = torch.rand(2, 30, 30) > 0.95
    for out in (nss(m, f), auc_judd(m, f), cc(m, d), kl_div(m, d), sim(m, d)):
        assert out.dtype == torch.float64
    assert torch.allclose(cc(m, d), cc(m.double(), d.double()), atol=1e-12)


def test_registered_gaze_scores():
    torch.manual_seed(1)
    m = torch.rand(2, 10, 12)
    fix = torch.rand(2, 10, 12) > 0.9
    other = torch.rand(2, 10, 12) > 0.8
    dens = torch.rand(2, 10, 12)
    truth = TruthBatch(masks=torch.zeros(2, 10, 12, dtype=torch.bool), fixations=fix,
                       other_fixations=other, density=dens)
    expect = {"nss": True, "auc_judd": True, "shuffled_auc": True, "cc": True, "kl_div": False, "sim": True}
    for name, higher in expect.items():
        info = METRICS.get(name)
        assert info.higher_is_better is higher, name
        out = info.score(m, truth)
        assert out.shape == (2,) and torch.isfinite(out).all(), name
    assert METRICS.get("nss").defaults == {"ddof": 1}
    assert METRICS.get("shuffled_auc").defaults == {"step": 0.1}
    with pytest.raises(ValueError, match="truth.other_fixations"):
        METRICS.get("shuffled_auc").score(m, TruthBatch(masks=truth.masks, fixations=fix))
    with pytest.raises(ValueError, match="truth.density"):
        METRICS.get("cc").score(m, TruthBatch(masks=truth.masks))
