"""Leakage, context pointing rate and density ratio: conventions pinned by hand-computed cases."""

import math

import pytest
import torch

from bench.metrics import METRICS, TruthBatch, context_pointing_rate, density_ratio, leakage

MAP = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
OBJ = torch.tensor([[[True, False], [False, False]]])


def _g(rows):
    return torch.tensor([rows], dtype=torch.bool)


def test_leakage_by_hand_and_object_pixels_are_never_leakage():
    ctx = _g([[1, 1], [0, 0]])  # overlaps the object at (0, 0): that pixel is object
    assert leakage(MAP, OBJ, ctx).item() == pytest.approx(2 / 10)
    signed = torch.tensor([[[1.0, 2.0], [-3.0, 4.0]]])
    assert leakage(signed, OBJ, _g([[0, 1], [1, 0]])).item() == pytest.approx(2 / 7)  # positive part


def test_leakage_undefined_cases():
    assert math.isnan(leakage(MAP, OBJ, torch.zeros_like(OBJ)).item())  # no context
    assert math.isnan(leakage(MAP, OBJ, OBJ.clone()).item())  # context only on the object
    assert math.isnan(leakage(-MAP, OBJ, _g([[0, 1], [0, 0]])).item())  # no positive mass
    bad = MAP.clone()
    bad[0, 1, 1] = math.inf
    assert math.isnan(leakage(bad, OBJ, _g([[0, 1], [0, 0]])).item())
    # no object, nothing to explain: undefined (excluded and counted), for all three metrics
    no_obj = torch.zeros_like(OBJ)
    for fn in (leakage, context_pointing_rate, density_ratio):
        assert math.isnan(fn(MAP, no_obj, _g([[0, 0], [0, 1]])).item()), fn.__name__


def test_context_pointing_rate_by_hand():
    assert context_pointing_rate(MAP, OBJ, _g([[0, 0], [0, 1]])).item() == 1.0  # argmax (1,1)
    assert context_pointing_rate(MAP, OBJ, _g([[0, 1], [1, 0]])).item() == 0.0
    # argmax on a pixel that is object and context counts as object
    peak_on_object = torch.tensor([[[9.0, 2.0], [3.0, 4.0]]])
    assert context_pointing_rate(peak_on_object, OBJ, _g([[1, 1], [0, 0]])).item() == 0.0
    # ties: first maximum in row-major order, (0, 1) before (1, 0)
    tie = torch.tensor([[[0.0, 5.0], [5.0, 0.0]]])
    assert context_pointing_rate(tie, OBJ, _g([[0, 1], [0, 0]])).item() == 1.0
    assert context_pointing_rate(tie, OBJ, _g([[0, 0], [1, 0]])).item() == 0.0


def test_context_pointing_rate_undefined_for_maps_that_point_nowhere():
    ctx = _g([[0, 1], [1, 1]])
    assert math.isnan(context_pointing_rate(torch.zeros(1, 2, 2), OBJ, ctx).item())
    assert math.isnan(context_pointing_rate(torch.full((1, 2, 2), 3.0), OBJ, ctx).item())
    bad = MAP.clone()
    bad[0, 0, 1] = math.nan
    assert math.isnan(context_pointing_rate(bad, OBJ, ctx).item())
    assert math.isnan(context_pointing_rate(MAP, OBJ, torch.zeros_like(OBJ)).item())


def test_density_ratio_by_hand():
    # object mean 1; context {(0,1), (1,1)} mean (2 + 4) / 2 = 3
    assert density_ratio(MAP, OBJ, _g([[0, 1], [0, 1]])).item() == pytest.approx(3.0)
    # uniform map: ratio 1 whatever the areas (leakage would grow with the context's area)
    assert density_ratio(torch.ones(1, 2, 2), OBJ, _g([[0, 1], [1, 1]])).item() == pytest.approx(1.0)
    no_object_mass = torch.tensor([[[0.0, 2.0], [3.0, 4.0]]])
    assert density_ratio(no_object_mass, OBJ, _g([[0, 1], [0, 0]])).item() == math.inf
    assert math.isnan(density_ratio(torch.zeros(1, 2, 2), OBJ, _g([[0, 1], [0, 0]])).item())
    assert math.isnan(density_ratio(MAP, torch.zeros_like(OBJ), _g([[0, 1], [0, 0]])).item())
    assert math.isnan(density_ratio(MAP, OBJ, torch.zeros_like(OBJ)).item())


def test_registered_leakage_family():
    m = torch.cat([MAP, torch.tensor([[[0.0, 2.0], [3.0, 4.0]]])])
    obj = torch.cat([OBJ, OBJ])
    ctx = torch.cat([_g([[0, 1], [0, 1]]), _g([[0, 1], [0, 1]])])
    truth = TruthBatch(masks=obj, context=ctx)
    for name in ("leakage", "context_pointing_rate", "density_ratio"):
        info = METRICS.get(name)
        assert not info.higher_is_better and info.requires == ("masks", "context"), name
    ratio = METRICS.get("density_ratio").score(m, truth)
    # +inf cannot enter a mean: the registered score leaves that row undefined
    assert ratio[0].item() == pytest.approx(3.0) and math.isnan(ratio[1].item())
    assert METRICS.get("leakage").score(m, truth)[1].item() == pytest.approx(6 / 9)  # (2 + 4) / 9
    # no context in the batch: undefined, not zero leakage
    assert torch.isnan(METRICS.get("leakage").score(m, TruthBatch(masks=obj))).all()
