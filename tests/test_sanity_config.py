"""The [sanity] config section: defaults, round trip, and a clear error for every bad key."""

from __future__ import annotations

import pytest

from bench.sanity.config import TESTS, SanityConfig, parse_sanity
from bench.sanity.similarity import MEASURES


def test_defaults_and_round_trip():
    cfg = parse_sanity({})
    assert cfg == SanityConfig()
    assert cfg.tests == TESTS and cfg.measures == tuple(MEASURES)
    assert cfg.modes == ("cascading", "independent")
    assert cfg.covers(10**6)
    full = parse_sanity({
        "tests": ["cascading", "class_sensitivity"], "measures": ["spearman_abs", "ssim_abs"], "max_steps": 4,
        "images": 20, "methods": ["gradcam"], "seed": 3, "fail_above": 0.6,
        "steps": {"harbor:contextual": ["fc", ["features.14", "features.15"]]},
    })
    assert full.modes == ("cascading",) and full.covers(19) and not full.covers(20)
    assert parse_sanity(full.to_dict()) == full


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"test": ["cascading"]}, "no key 'test'; did you mean 'tests'"),
        ({"tests": ["cascade"]}, "unknown 'cascade'; did you mean 'cascading'"),
        ({"tests": []}, "non-empty list"),
        ({"measures": ["pearson"]}, "unknown 'pearson'"),
        ({"measures": ["ssim", "ssim"]}, "twice"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1"),
        ({"images": True}, "images must be an integer"),
        ({"fail_above": 2}, "fail_above must be a number in"),
        ({"steps": ["fc"]}, "steps must be a table"),
        ({"steps": {"m": ["fc", 3]}}, "module names"),
        ({"measures": ["ssim"]}, "must include 'spearman_abs'"),
    ],
)
def test_bad_sections_name_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_sanity(raw)
