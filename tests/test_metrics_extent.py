"""Extent and its precision: the conventions of bench/metrics/extent.py, each pinned by a case
computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from bench.metrics import METRICS, TruthBatch, extent


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)[None]


def _m(rows):
    return torch.tensor(rows, dtype=torch.bool)[None]


def test_hand_computed_case():
    # peak 4, half of it 2: highlighted = the 4, and both 2s (ties at the cut are in) = 3 pixels.
    maps = _t([[0.0, 1.0, 2.0], [4.0, 2.0, 0.0]])
    masks = _m([[0, 1, 1], [1, 0, 0]])
    # object pixels (0,1) (0,2) (1,0); highlighted among them: (0,2) and (1,0).
    recall, precision = extent(maps, masks)
    assert recall.item() == pytest.approx(2 / 3) and precision.item() == pytest.approx(2 / 3)
    truth = TruthBatch(masks=masks)
    assert METRICS.get("extent").score(maps, truth).item() == pytest.approx(2 / 3)
    assert METRICS.get("extent_precision").score(maps, truth).item() == pytest.approx(2 / 3)
    # fraction = 0.25: cut at 1, so the 1 joins: recall 3/3, precision 3/4.
    r, p = extent(maps, masks, fraction=0.25)
    assert (r.item(), p.item()) == (1.0, 0.75)
    # fraction = 1: only the peak.
    r, p = extent(maps, masks, fraction=1.0)
    assert (r.item(), p.item()) == (pytest.approx(1 / 3), 1.0)


def test_a_map_peaking_on_one_part_has_full_coverage_but_low_extent():
    # The case: the map peaks on one part of the object and keeps the rest just above
    # the background. Rank-based coverage is 1; extent sees one pixel of four.
    maps = _t([[1.0, 0.2, 0.2, 0.2, 0.1, 0.1]])
    masks = _m([[1, 1, 1, 1, 0, 0]])
    assert METRICS.get("coverage").score(maps, TruthBatch(masks=masks)).item() == 1.0
    r, p = extent(maps, masks)
    assert (r.item(), p.item()) == (0.25, 1.0)


def test_threshold_comparison_is_exact_and_inclusive():
    # 0.1 * 3 is not representable; a float32 value just below the real product must not count,
    # the float32 value just above it must.
    peak = torch.tensor(3.0)
    cut = 0.1 * 3.0  # float64 product of the python floats: what "fraction * peak" means
    below = torch.nextafter(torch.tensor(cut, dtype=torch.float32), torch.tensor(0.0))
    above = torch.tensor(cut, dtype=torch.float32)
    if above.double() < cut:
        above = torch.nextafter(above, torch.tensor(1.0))
    maps = torch.stack([peak, below, above])[None, None]  # 1 x 1 x 3
    masks = torch.ones_like(maps, dtype=torch.bool)
    assert below.double() < cut <= above.double()
    r, _ = extent(maps, masks, fraction=0.1)
    assert r.item() == pytest.approx(2 / 3)


def test_degenerate_maps_and_masks():
    masks = _m([[1, 0], [0, 0]])
    # constant positive map: everything highlighted.
    r, p = extent(_t([[2.0, 2.0], [2.0, 2.0]]), masks)
    assert (r.item(), p.item()) == (1.0, 0.25)
    # all zero / all negative: nothing highlighted: extent 0, precision undefined.
    for rows in ([[0.0, 0.0], [0.0, 0.0]], [[-1.0, -2.0], [-3.0, -1.0]]):
        r, p = extent(_t(rows), masks)
        assert r.item() == 0.0 and math.isnan(p.item())
    # NaN or Inf anywhere: both undefined.
    for bad in (math.nan, math.inf, -math.inf):
        r, p = extent(_t([[1.0, bad], [0.0, 0.0]]), masks)
        assert math.isnan(r.item()) and math.isnan(p.item())
    # empty mask: both undefined.
    r, p = extent(_t([[1.0, 0.0], [0.0, 0.0]]), _m([[0, 0], [0, 0]]))
    assert math.isnan(r.item()) and math.isnan(p.item())
    # negative values below a positive peak never count, whatever the fraction.
    r, p = extent(_t([[1.0, -5.0], [0.0, 0.0]]), _m([[0, 1], [0, 0]]), fraction=0.0)
    assert (r.item(), p.item()) == (0.0, 0.0)


def test_batched_rows_are_independent_and_scale_free():
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 7, 9, generator=gen)
    masks = torch.rand(5, 7, 9, generator=gen) > 0.6
    r, p = extent(maps, masks)
    for i in range(5):
        ri, pi = extent(maps[i : i + 1] * 4.0, masks[i : i + 1])
        assert torch.equal(ri, r[i : i + 1]) and torch.equal(pi, p[i : i + 1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="fraction"):
        extent(_t([[1.0]]), _m([[1]]), fraction=1.5)
    with pytest.raises(ValueError, match="shape"):
        extent(_t([[1.0, 2.0]]), _m([[1]]))
    with pytest.raises(ValueError, match="no parameter"):
        METRICS.get("extent").validate_params({"fractio": 0.5})
