"""The random-target (random-logit) test: the draw's conventions, and maps that do or do not
depend on the class."""

from __future__ import annotations

import collections

import pytest
import torch

from bench.methods import create_method
from bench.metrics.pointing import pointing_game
from bench.models import load_model
from bench.sanity.checks import map_similarity, random_target_maps
from bench.sanity.random_target import random_other_outputs, random_target_seed

from sanity_support import harbor_batch


def test_draw_excludes_the_class_outputs_and_is_uniform_over_the_rest():
    n = 3000
    targets = torch.full((n,), 1)
    drawn = random_other_outputs(targets, [[1, 2]] * n, 6, seeds=list(range(n))).tolist()
    counts = collections.Counter(drawn)
    assert set(counts) == {0, 3, 4, 5}
    assert all(abs(c - n / 4) < 0.1 * n / 4 for c in counts.values()), counts


def test_draw_is_seeded_and_independent_of_the_batch():
    targets = torch.tensor([3, 0, 7, 3])
    excluded = [[3], [0, 1], None, [3]]
    seeds = [11, 12, 13, 11]
    whole = random_other_outputs(targets, excluded, 10, seeds)
    assert whole[0] == whole[3]  # same seed, same exclusion: same class
    for i in range(4):
        assert random_other_outputs(targets[i : i + 1], excluded[i : i + 1], 10, seeds[i : i + 1]).item() == whole[i].item()
    assert torch.equal(random_other_outputs(targets, excluded, 10, seeds), whole)
    assert random_target_seed(0, "img1", "boat") == random_target_seed(0, "img1", "boat")
    assert random_target_seed(0, "img1", "boat") != random_target_seed(1, "img1", "boat")


def test_top1_target_excludes_only_the_resolved_output():
    """None: the target is the model's own top-1, known on the device; the draw skips it."""
    n = 2000
    targets = torch.arange(n) % 4
    drawn = random_other_outputs(targets, [None] * n, 4, seeds=list(range(n)))
    assert not (drawn == targets).any()
    assert set(drawn.tolist()) == {0, 1, 2, 3}


def test_draw_refuses_impossible_cases():
    with pytest.raises(ValueError, match="no other class"):
        random_other_outputs(torch.tensor([0]), [[0, 1, 2]], 3, [0])
    with pytest.raises(ValueError, match="no other class"):
        random_other_outputs(torch.tensor([0]), [None], 1, [0])
    with pytest.raises(ValueError, match="outside the model's 3 outputs"):
        random_other_outputs(torch.tensor([0]), [[0, 5]], 3, [0])
    with pytest.raises(ValueError, match="one exclusion list and one seed per target"):
        random_other_outputs(torch.tensor([0, 1]), [[0]], 3, [0])


def test_class_dependent_and_class_blind_maps():
    """On the harbor model the gradient's map for a random other class differs from the
    target's; the centre prior's is the same map. The random class's map is scored against the
    target's ground truth with the ordinary metric functions."""
    bundle = load_model("harbor:contextual", progress=False)
    inputs, targets, samples = harbor_batch(bundle, n=8)
    excluded = [bundle.class_map.indices(s.targets[0].label) for s in samples]
    seeds = [random_target_seed(0, s.image_id, s.targets[0].label) for s in samples]
    others = random_other_outputs(targets, excluded, 4, seeds)
    assert not (others == targets).any()
    masks = torch.stack([s.targets[0].mask for s in samples])
    for name, expect_same in (("gradient", False), ("center", True)):
        method = create_method(name).with_model_defaults(bundle.target_layer)
        own = method(bundle.module, inputs, targets)
        other, errors = random_target_maps(method, bundle.module, inputs, others, seeds=None)
        assert errors == {}
        sim = map_similarity(own, other, (96, 96), ["spearman_abs", "ssim_abs"])
        if expect_same:
            assert torch.allclose(sim["spearman_abs"], torch.ones(8), atol=1e-6)
        else:
            assert sim["spearman_abs"].mean() < 0.95
        hits = pointing_game(other, masks, tolerance=6.0)
        assert hits.shape == (8,) and hits.dtype == torch.bool
