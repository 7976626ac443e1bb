"""Pointing game and energy pointing game: every convention pinned by a hand-computed case."""

import math

import pytest
import torch

from bench.metrics import METRICS, TruthBatch, energy_pointing_game, pointing_game


def _peak_map(h, w, y, x, value=1.0):
    m = torch.zeros(1, h, w)
    m[0, y, x] = value
    return m


def _mask(h, w, *pixels):
    g = torch.zeros(1, h, w, dtype=torch.bool)
    for y, x in pixels:
        g[0, y, x] = True
    return g


def test_tolerance_is_a_strict_euclidean_distance_between_pixel_centres():
    m = _peak_map(20, 20, 10, 10)
    g = _mask(20, 20, (10, 13))  # 3 px to the right
    assert not pointing_game(m, g, tolerance=3).item()  # 3 < 3 is false
    assert pointing_game(m, g, tolerance=3.01).item()
    g = _mask(20, 20, (13, 14))  # a 3-4-5 triangle: distance 5
    assert not pointing_game(m, g, tolerance=5).item()
    assert pointing_game(m, g, tolerance=5.001).item()
    g = _mask(20, 20, (11, 11))  # diagonal neighbour, distance sqrt(2)
    assert not pointing_game(m, g, tolerance=1.4142).item()
    assert pointing_game(m, g, tolerance=1.4143).item()
    # tolerance just above the distance: 2 < (sqrt(2) + 1e-12)^2, which float32 would round to 2
    assert pointing_game(m, g, tolerance=math.sqrt(2) + 1e-12).item()
    assert not pointing_game(m, g, tolerance=1.41421356).item()  # just below sqrt(2)


def test_tolerance_one_means_the_argmax_pixel_itself_and_zero_never_hits():
    m = _peak_map(8, 8, 3, 4)
    assert pointing_game(m, _mask(8, 8, (3, 4)), tolerance=1).item()
    assert not pointing_game(m, _mask(8, 8, (3, 5)), tolerance=1).item()
    assert not pointing_game(m, _mask(8, 8, (3, 4)), tolerance=0).item()


def test_default_tolerance_is_15_px():
    m = _peak_map(40, 40, 20, 5)
    assert pointing_game(m, _mask(40, 40, (20, 19))).item()  # 14 px
    assert not pointing_game(m, _mask(40, 40, (20, 20))).item()  # 15 px


def test_coordinates_are_row_then_column_on_non_square_maps():
    # H=10, W=30: the peak at row 2, column 25 only exists with (row, col) indexing
    m = _peak_map(10, 30, 2, 25)
    assert pointing_game(m, _mask(10, 30, (2, 25)), tolerance=1).item()
    assert not pointing_game(m, _mask(10, 30, (25 % 10, 2)), tolerance=1).item()


def test_window_is_clipped_at_the_image_border():
    m = _peak_map(12, 12, 0, 0)
    assert pointing_game(m, _mask(12, 12, (0, 5)), tolerance=6).item()
    assert pointing_game(m, _mask(12, 12, (11, 11)), tolerance=16).item()  # 15.56 px
    assert not pointing_game(m, _mask(12, 12, (11, 11)), tolerance=15.5).item()


def test_argmax_ties_go_to_the_first_maximum_in_row_major_order():
    m = torch.zeros(1, 20, 20)
    m[0, 2, 15] = 1.0  # first in row-major order
    m[0, 15, 2] = 1.0
    assert pointing_game(m, _mask(20, 20, (2, 15)), tolerance=1).item()
    assert not pointing_game(m, _mask(20, 20, (15, 2)), tolerance=1).item()


@pytest.mark.parametrize(
    "fill",
    [lambda m: m.fill_(0.0), lambda m: m.fill_(0.7), lambda m: m.__setitem__((0, 3, 3), math.nan),
     lambda m: m.__setitem__((0, 3, 3), math.inf), lambda m: m.__setitem__((0, 3, 3), -math.inf)],
    ids=["all-zero", "constant", "nan", "+inf", "-inf"],
)
def test_degenerate_maps_are_a_miss_even_on_an_all_true_mask(fill):
    m = torch.rand(1, 8, 8)
    fill(m)
    full = torch.ones(1, 8, 8, dtype=torch.bool)
    assert not pointing_game(m, full).item()
    score = METRICS.get("pointing_game").score(m, TruthBatch(masks=full))
    assert score.item() == 0.0  # a miss, counted in the mean, never NaN-excluded


def test_empty_mask_is_never_a_hit_and_is_undefined_in_the_registered_score():
    m = torch.rand(2, 8, 8)
    g = torch.zeros(2, 8, 8, dtype=torch.bool)
    g[0] = True
    assert pointing_game(m, g).tolist() == [True, False]
    score = METRICS.get("pointing_game").score(m, TruthBatch(masks=g))
    assert score[0].item() == 1.0 and math.isnan(score[1].item())


def test_batch_rows_are_independent():
    m = torch.cat([_peak_map(10, 10, 1, 1), _peak_map(10, 10, 8, 8)])
    g = torch.cat([_mask(10, 10, (1, 1)), _mask(10, 10, (1, 1))])
    assert pointing_game(m, g, tolerance=1).tolist() == [True, False]


def test_large_image_uses_a_window_not_a_distance_matrix():
    # 4000x3000: an all-pairs distance matrix would need ~1e14 entries; the window reads 29x29.
    h, w = 3000, 4000
    m = torch.zeros(1, h, w)
    m[0, 2999, 3999] = 1.0
    g = torch.zeros(1, h, w, dtype=torch.bool)
    g[0, 2999 - 10, 3999 - 10] = True  # 14.14 px away
    assert pointing_game(m, g).item()
    g[0] = False
    g[0, 0, 0] = True
    assert not pointing_game(m, g).item()


def test_energy_pointing_game_by_hand():
    m = torch.tensor([[[1.0, 2.0], [3.0, -4.0]]])
    g = torch.tensor([[[True, False], [False, True]]])
    # positive part 1, 2, 3, 0: inside 1 + 0 over 6
    assert energy_pointing_game(m, g).item() == pytest.approx(1 / 6)
    assert energy_pointing_game(torch.full((1, 2, 2), 5.0), g).item() == pytest.approx(0.5)  # area
    assert math.isnan(energy_pointing_game(-torch.ones(1, 2, 2), g).item())  # no positive mass
    assert math.isnan(energy_pointing_game(torch.zeros(1, 2, 2), g).item())
    assert math.isnan(energy_pointing_game(m, torch.zeros_like(g)).item())  # empty mask
    bad = m.clone()
    bad[0, 0, 1] = math.nan
    assert math.isnan(energy_pointing_game(bad, g).item())


def test_pointing_metadata_is_torchray_class_mean():
    info = METRICS.get("pointing_game")
    assert info.aggregate == "class_mean" and info.higher_is_better and info.requires == ("masks",)
    assert info.defaults == {"tolerance": 15.0}


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="BxHxW"):
        pointing_game(torch.rand(8, 8), torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        pointing_game(torch.rand(1, 8, 8), torch.ones(1, 8, 9, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        pointing_game(torch.rand(1, 8, 8), torch.ones(1, 8, 8))
    with pytest.raises(TypeError, match="float"):
        pointing_game(torch.ones(1, 8, 8, dtype=torch.int64), torch.ones(1, 8, 8, dtype=torch.bool))
