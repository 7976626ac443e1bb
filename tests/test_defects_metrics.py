"""Issue 16, items 9 and 11: metric parameters are validated (the pointing game's tolerance is a
finite number >= 0, and a tolerance beyond the image diagonal costs nothing), and float32 maps
with values near the float32 limit are scored, not turned into NaN by an overflowing sum."""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import ConfigError, load_config
from bench.metrics import METRICS, density_ratio, energy_pointing_game, leakage, mass_accuracy, pointing_game
from defects_support import tiny_config


def _case():
    maps = torch.zeros(1, 8, 8)
    maps[0, 6, 6] = 1.0  # argmax at (6, 6)
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 0, 0] = True  # 6 * sqrt(2) = 8.49 px away
    return maps, masks


@pytest.mark.parametrize("tolerance", [-1.0, -0.5, float("inf"), float("nan")])
def test_tolerance_must_be_finite_and_not_negative(tolerance):
    maps, masks = _case()
    with pytest.raises(ValueError, match="tolerance must be a finite number of pixels >= 0"):
        pointing_game(maps, masks, tolerance=tolerance)
    with pytest.raises(ValueError, match="tolerance"):
        METRICS.get("pointing_game").validate_params({"tolerance": tolerance})


def test_negative_tolerance_is_refused_with_the_config(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("tolerance = 6.0", "tolerance = -3.0"))
    with pytest.raises(ConfigError, match=r"metric 'pointing_game'.*tolerance must be a finite number of pixels >= 0, got -3.0"):
        load_config(cfg)


def test_a_huge_tolerance_is_the_image_diagonal():
    maps, masks = _case()
    assert not bool(pointing_game(maps, masks, tolerance=8.0))  # 8.49 px: a miss at 8
    assert bool(pointing_game(maps, masks, tolerance=9.0))
    # 1e6 px would be a (2e6)^2 disk: capped at the diagonal, the same hit, no allocation.
    assert bool(pointing_game(maps, masks, tolerance=1e6))
    assert bool(pointing_game(maps, masks, tolerance=math.hypot(8, 8)))


def _huge_case():
    """float32 maps at the edge of the float32 range, and the same maps divided by 2^100."""
    maps = torch.full((2, 16, 16), 3.0e38)
    maps[0, :8] = 1.0e38
    maps[1] = torch.finfo(torch.float32).max
    maps[1, :, :4] = 0.0
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True
    context = torch.zeros_like(masks)
    context[:, 8:] = True
    return maps, masks, context


@pytest.mark.parametrize("metric", ["energy", "mass", "leakage", "density_ratio"])
def test_maps_near_the_float32_limit_are_scored_not_nan(metric):
    maps, masks, context = _huge_case()
    assert torch.isfinite(maps).all()
    fn = {
        "energy": lambda m: energy_pointing_game(m, masks),
        "mass": lambda m: mass_accuracy(m, masks),
        "leakage": lambda m: leakage(m, masks, context),
        "density_ratio": lambda m: density_ratio(m, masks, context),
    }[metric]
    got = fn(maps)
    small = fn(maps / 2.0**100)  # exact: a power of two, far from the float32 limits
    assert torch.isfinite(got).all(), got
    assert torch.equal(got, small)


def test_ordinary_maps_are_not_rescaled():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 32, 32, generator=g) * 1e30  # large, but far from overflowing a sum
    masks = torch.rand(4, 32, 32, generator=g) > 0.7
    pos = maps.flatten(1).clamp(min=0)
    by_hand = (pos * masks.flatten(1)).sum(1) / pos.sum(1)
    assert torch.equal(mass_accuracy(maps, masks), by_hand)
