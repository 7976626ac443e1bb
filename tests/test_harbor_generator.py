"""The harbor scene generator: deterministic, exact masks, the co-occurrence it promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.synthetic import (
    CLASSES,
    GROUNDS,
    HarborScenes,
    context_options,
    home_context,
    intervene,
    make_scene,
)


def test_same_seed_same_scene_and_independent_of_other_indices():
    a = make_scene(3, "train", 17, 0.95, 96)
    b = make_scene(3, "train", 17, 0.95, 96)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.object_mask, b.object_mask)
    # Drawing other scenes first must not change scene 17 (shards and resumes rely on it).
    for i in range(5):
        make_scene(3, "train", i, 0.95, 96)
    c = make_scene(3, "train", 17, 0.95, 96)
    assert np.array_equal(a.image, c.image)
    d = make_scene(4, "train", 17, 0.95, 96)
    assert not np.array_equal(a.image, d.image)


@pytest.mark.parametrize("split,rho", [("train", 0.95), ("train", None), ("test", None)])
def test_masks_partition_the_image_and_are_exact(split, rho):
    for i in range(60):
        s = make_scene(0, split, i, rho, 96)
        parts = [s.object_mask, *s.regions.values()]
        total = np.sum(parts, axis=0)
        assert (total == 1).all(), "object, sky and ground must partition the image"
        assert set(s.regions) == {"sky", s.spec.ground}
        if s.spec.label is None:
            assert not s.object_mask.any()
            continue
        assert s.object_mask.any()
        # The object lies inside the region it was placed in (above or below the horizon).
        horizon = int(np.nonzero(s.regions[s.spec.ground].any(axis=1))[0].min())
        rows = np.nonzero(s.object_mask.any(axis=1))[0]
        if s.spec.context == "sky":
            assert rows.max() < horizon
        else:
            assert rows.min() >= horizon and s.spec.context == s.spec.ground


def test_object_pixels_are_exactly_what_the_intervention_keeps():
    s = make_scene(0, "test", 0, None, 96)  # boat on water (first balanced cell)
    assert s.spec.label == "boat" and s.spec.context == "water"
    edited = intervene(s, "water", "grass", seed=0)
    water = s.regions["water"]
    assert np.array_equal(edited[s.object_mask], s.image[s.object_mask])
    assert np.array_equal(edited[s.regions["sky"]], s.image[s.regions["sky"]])
    assert not np.allclose(edited[water], s.image[water])


def test_training_split_follows_rho():
    counts = {c: [0, 0] for c in CLASSES}
    for i in range(800):
        s = make_scene(0, "train", i, 0.95, 96)
        counts[s.spec.label][0] += s.spec.context == home_context(s.spec.label)
        counts[s.spec.label][1] += 1
    for c, (home, n) in counts.items():
        assert home / n > 0.88, (c, home, n)
    uniform = {c: [0, 0] for c in CLASSES}
    for i in range(800):
        s = make_scene(0, "train", i, None, 96)
        uniform[s.spec.label][0] += s.spec.context == home_context(s.spec.label)
        uniform[s.spec.label][1] += 1
    for c, (home, n) in uniform.items():
        k = len(context_options(c))
        assert abs(home / n - 1 / k) < 0.1, (c, home / n, 1 / k)


def test_test_split_is_balanced_with_counterfactuals():
    ds = HarborScenes("test", n=22 * 2, seed=0)
    cells = [(ds.scene(i).spec.label, ds.scene(i).spec.context) for i in range(len(ds))]
    assert ("boat", "grass") in cells and ("boat", "sand") in cells
    assert (None, "water") in cells  # water with no boat
    expected = {(c, o) for c in CLASSES for o in context_options(c)} | {(None, g) for g in GROUNDS}
    assert set(cells) == expected
    assert all(cells.count(c) == 2 for c in expected)


def test_samples_follow_the_contract():
    ds = HarborScenes("test", n=22, seed=0)
    s = ds[0]
    assert s.image.shape == (3, 96, 96) and s.image.dtype == torch.float32
    assert 0 <= float(s.image.min()) and float(s.image.max()) <= 1
    (t,) = s.targets
    assert t.label == "boat" and t.mask.dtype == torch.bool
    assert set(t.context) == {"water"} and not (t.context["water"] & t.mask).any()
    x0, y0, x1, y1 = t.boxes[0].tolist()
    ys, xs = torch.nonzero(t.mask, as_tuple=True)
    assert (x0, y0, x1, y1) == (xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1)
    # Context only where the manifest pairs it and the region is present: boat on grass has none.
    grass = next(ds[i] for i in range(22) if (ds.scene(i).spec.label, ds.scene(i).spec.context) == ("boat", "grass"))
    assert grass.targets[0].context == {}
    empty = next(ds[i] for i in range(22) if ds.scene(i).spec.label is None)
    assert empty.targets == []


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError, match="rho"):
        make_scene(0, "train", 0, 0.1, 96)
    with pytest.raises(ValueError, match="balanced"):
        HarborScenes("test", rho=0.9)
    with pytest.raises(ValueError, match="split"):
        HarborScenes("validation")
