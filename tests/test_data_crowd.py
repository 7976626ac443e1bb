"""The crowd scenes: exact per-instance truth (disjoint, non-empty instances whose union is
every object pixel and nothing else), a balanced test split, purity in (seed, split, index),
and the crowd CNN that learns them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.crowd import (
    GAP,
    KINDS,
    CrowdScenes,
    draw_crowd_spec,
    instance_count,
    make_crowd_scene,
)
from bench.data.registry import load_dataset
from bench.data.synthetic import CLASSES, paint_background, scene_rng
from bench.models import load_model
from bench.data.strata import target_strata


def _background(seed: int, split: str, index: int, size: int) -> np.ndarray:
    """The scene as it was before any object was painted: the same random stream, replayed up
    to the background. Independent of the masks the generator reports."""
    rng = scene_rng(seed, f"crowd-{split}", index)
    spec = draw_crowd_spec(rng, split, index, KINDS)
    img, _, _ = paint_background(rng, spec.ground, size)
    return img


@pytest.mark.parametrize("split", ["test", "train"])
def test_instance_masks_are_exact_disjoint_non_empty_and_cover_every_object_pixel(split):
    for index in range(60):
        scene = make_crowd_scene(3, split, index, 96)
        inst = scene.instances
        assert inst.shape[0] == instance_count(scene.spec.kind)
        assert inst.reshape(len(inst), -1).any(axis=1).all(), "an instance mask is empty"
        assert (inst.sum(axis=0) <= 1).all(), "two instances share a pixel"
        # Union = the pixels painted by objects: exactly where the image differs from its
        # background (objects are flat colours; a texture value never equals one exactly).
        painted = (scene.image != _background(3, split, index, 96)).any(axis=2)
        np.testing.assert_array_equal(scene.object_mask, painted)
        # Boxes are each instance's tight box, and boxes of a crowd keep their distance.
        for m, (x0, y0, x1, y1) in zip(inst, scene.boxes):
            ys, xs = np.nonzero(m)
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_crowd_instances_never_touch():
    for index in range(40):
        scene = make_crowd_scene(0, "test", index, 96)
        if scene.instances.shape[0] < 2:
            continue
        grown = []
        for m in scene.instances:
            g = torch.nn.functional.max_pool2d(torch.from_numpy(m)[None, None].float(), 2 * GAP - 1, 1, GAP - 1)[0, 0] > 0
            grown.append(g.numpy())
        assert (np.sum(grown, axis=0) <= 1).all()


def test_sample_contract_and_strata():
    ds = load_dataset("crowd", split="test", n=10, seed=1)
    for i in range(10):
        s = ds[i]
        (t,) = s.targets
        assert s.image.shape == (3, 96, 96) and s.image.dtype == torch.float32
        assert 0 <= float(s.image.min()) and float(s.image.max()) <= 1
        assert t.instances.dtype == torch.bool and torch.equal(t.mask, t.instances.any(0))
        assert t.boxes.shape == (t.instances.shape[0], 4)
        assert t.context == {}
        strata = target_strata(t, ["object_area", "instance_count"])
        assert strata["instance_count"] == t.instances.shape[0]
        assert strata["object_area"] == pytest.approx(float(t.mask.float().mean()))
        assert s.image_id == f"crowd-test-s1-{i:05d}"


def test_test_split_is_balanced_and_pure():
    ds = CrowdScenes("test", n=2 * len(CLASSES) * len(KINDS), seed=2)
    cells = [(ds.scene(i).spec.label, ds.scene(i).spec.kind) for i in range(len(ds))]
    assert len(set(cells)) == len(CLASSES) * len(KINDS)
    assert all(cells.count(c) == 2 for c in set(cells))
    # Item i is a pure function of (seed, split, index): order of access does not matter.
    a = ds[7]
    _ = [ds[j] for j in (3, 1, 9)]
    b = CrowdScenes("test", n=40, seed=2)[7]
    assert torch.equal(a.image, b.image) and torch.equal(a.targets[0].instances, b.targets[0].instances)
    assert not torch.equal(a.image, CrowdScenes("test", n=40, seed=3)[7].image)


def test_large_objects_reach_a_large_share_of_the_image():
    areas = [make_crowd_scene(1, "test", i, 96).object_mask.mean() for i in range(1, 200, 5)]  # kind "large"
    assert max(areas) > 0.35 and min(areas) > 0.03


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="split"):
        CrowdScenes("dev")
    with pytest.raises(ValueError, match="kinds"):
        CrowdScenes(kinds=["crowd7"])
    with pytest.raises(ValueError, match="size"):
        CrowdScenes(size=32)


def test_crowd_model_learns_every_kind():
    b = load_model("crowd:cnn", progress=False)
    assert b.target_layer == "features" and b.class_map.indices("car") == [1]
    assert b.info["accuracy_balanced_test"] >= 0.90
    assert b.info["accuracy_own_distribution"] >= 0.90
    for kind in KINDS:
        assert b.info[f"accuracy_test_{kind}"] >= 0.85, kind
    with pytest.raises(ValueError, match="unknown crowd model"):
        load_model("crowd:big")
