"""Property tests (hypothesis): invariances, ranges, all-true / all-false masks, single-pixel
maps, for every metric at once."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.metrics import (
    auc_judd,
    best_iou,
    cc,
    coverage,
    energy_pointing_game,
    iou_curve,
    kl_div,
    leakage,
    mass_accuracy,
    nss,
    pointing_game,
    rank_accuracy,
    shuffled_auc,
    sim,
    top_k_intersection,
)

FAST = settings(max_examples=60, deadline=None)


@st.composite
def map_and_mask(draw, signed=True, integer=False):
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    n = h * w
    if integer:  # integers: distinct values stay distinct under any positive scaling
        values = draw(st.lists(st.integers(-50 if signed else 0, 100), min_size=n, max_size=n))
    else:
        lo = -10.0 if signed else 0.0
        values = draw(st.lists(st.floats(lo, 10.0, allow_nan=False, width=32), min_size=n, max_size=n))
    bits = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    m = torch.tensor(values, dtype=torch.float64).reshape(1, h, w)
    g = torch.tensor(bits, dtype=torch.bool).reshape(1, h, w)
    return m, g


def _in(x, lo, hi, tol=1e-12):
    v = x.item()
    return math.isnan(v) or (lo - tol <= v <= hi + tol)


@FAST
@given(map_and_mask(integer=True), st.floats(0.01, 100.0), st.floats(0.5, 20.0))
def test_pointing_is_invariant_to_positive_scaling(mg, c, tol):
    m, g = mg
    assert pointing_game(m * c, g, tol).item() == pointing_game(m, g, tol).item()


@FAST
@given(map_and_mask(), st.integers(-6, 6))
def test_ratio_metrics_are_invariant_to_exact_positive_scaling(mg, e):
    m, g = mg
    c = 2.0**e  # exact in floating point, so even ties are preserved
    for fn in (mass_accuracy, rank_accuracy, coverage, best_iou, auc_judd, nss):
        a, b = fn(m, g).item(), fn(m * c, g).item()
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-9, fn.__name__


@FAST
@given(map_and_mask(), st.integers(1, 81))
def test_values_lie_in_their_ranges(mg, k):
    m, g = mg
    k = min(k, m.numel())
    for fn in (mass_accuracy, rank_accuracy, coverage, best_iou, energy_pointing_game, auc_judd):
        assert _in(fn(m, g), 0, 1), fn.__name__
    assert _in(top_k_intersection(m, g, k), 0, 1)
    assert all(_in(v, 0, 1) for v in iou_curve(m, g, [0.0, 0.3, 1.0])[0])
    cov, rank = coverage(m, g).item(), rank_accuracy(m, g).item()
    assert math.isnan(cov) or cov <= rank + 1e-12
    ctx = ~g
    assert _in(leakage(m, g, ctx), 0, 1)
    assert _in(shuffled_auc(m, g, ctx), 0, 1) and _in(shuffled_auc(m, g, ctx, step=None), 0, 1)
    dens = m.abs()
    assert _in(cc(m, dens), -1, 1)
    assert _in(sim(m, dens), 0, 1)
    v = kl_div(m, dens).item()
    assert math.isnan(v) or v > -1e-12


@FAST
@given(map_and_mask())
def test_all_true_masks(mg):
    m, _ = mg
    full = torch.ones_like(m, dtype=torch.bool)
    assert rank_accuracy(m, full).item() == 1.0
    assert top_k_intersection(m, full, 1).item() == 1.0
    positive = (m > 0).sum().item()
    assert coverage(m, full).item() == positive / m.numel()
    assert best_iou(m, full).item() == positive / m.numel()
    mass = mass_accuracy(m, full).item()
    assert mass == 1.0 if positive else math.isnan(mass)
    constant = m.max() == m.min()
    assert pointing_game(m, full).item() is (not constant.item())


@FAST
@given(map_and_mask())
def test_all_false_masks_are_undefined_and_never_hit(mg):
    m, _ = mg
    empty = torch.zeros_like(m, dtype=torch.bool)
    assert not pointing_game(m, empty, 1000.0).item()
    for fn in (mass_accuracy, rank_accuracy, coverage, best_iou, energy_pointing_game, auc_judd, nss):
        assert math.isnan(fn(m, empty).item()), fn.__name__
    assert math.isnan(top_k_intersection(m, empty, 1).item())
    assert math.isnan(shuffled_auc(m, empty, ~empty).item())


@FAST
@given(st.floats(-5, 5, allow_nan=False), st.booleans())
def test_one_pixel_maps(value, inside):
    m = torch.tensor([[[value]]], dtype=torch.float64)
    g = torch.tensor([[[inside]]])
    assert not pointing_game(m, g).item()  # a 1x1 map is constant: it points nowhere
    if inside:
        assert rank_accuracy(m, g).item() == 1.0
        assert mass_accuracy(m, g).item() == 1.0 if value > 0 else math.isnan(mass_accuracy(m, g).item())


@FAST
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_single_bright_pixel_maps(h, w, data):
    y = data.draw(st.integers(0, h - 1))
    x = data.draw(st.integers(0, w - 1))
    gy = data.draw(st.integers(0, h - 1))
    gx = data.draw(st.integers(0, w - 1))
    tol = data.draw(st.floats(0.5, 20))
    m = torch.zeros(1, h, w)
    m[0, y, x] = 1.0
    g = torch.zeros(1, h, w, dtype=torch.bool)
    g[0, gy, gx] = True
    hit = pointing_game(m, g, tol).item()
    if h * w > 1:
        assert hit is (math.hypot(y - gy, x - gx) < tol)
    on = (y, x) == (gy, gx)
    assert mass_accuracy(m, g).item() == float(on)
    assert best_iou(m, g).item() == float(on)
    assert coverage(m, g).item() == float(on)
