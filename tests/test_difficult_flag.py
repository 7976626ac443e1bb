"""The leaderboard's "difficult" flag (TorchRay's pointing-game subset), pinned by hand: the
target covers strictly less than 1/4 of the image, and another class with at least one
ground-truth pixel is present. The run and map re-scoring share this one rule."""

from __future__ import annotations

import torch

from bench.data.annotations import pointing_difficult
from bench.data.sample import Target


def _target(label: str, pixels: int, h: int = 4, w: int = 4) -> Target:
    mask = torch.zeros(h * w, dtype=torch.bool)
    mask[:pixels] = True
    return Target(label=label, mask=mask.reshape(h, w))


def test_small_target_with_another_present_class_is_difficult():
    small, other = _target("cat", 3), _target("dog", 8)  # 3/16 < 1/4
    assert pointing_difficult(small, [small, other])
    assert not pointing_difficult(other, [small, other])  # 8/16 is not small


def test_a_quarter_exactly_is_not_small():
    quarter, other = _target("cat", 4), _target("dog", 1)  # 4/16 == 1/4: strict <
    assert not pointing_difficult(quarter, [quarter, other])


def test_alone_or_beside_an_empty_class_is_not_difficult():
    small = _target("cat", 1)
    assert not pointing_difficult(small, [small])
    empty = _target("dog", 0)  # no ground-truth pixel: not "present"
    assert not pointing_difficult(small, [small, empty])
