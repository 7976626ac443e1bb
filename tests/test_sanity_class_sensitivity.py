"""Class sensitivity: class A's map scored against class B's mask. Hand cases pin the
conventions of bench.sanity.class_sensitivity; the real COCO photos check them on real masks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bench.sanity import class_sensitivity as cs
from bench.sanity.class_sensitivity import class_sensitivity, cross_class_pairs

COCO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_tiny"


def test_pairs_are_ordered_within_an_image_across_classes():
    images = ["a", "a", "b", "a", "b"]
    labels = ["dog", "cat", "dog", "dog", "dog"]
    first, second = cross_class_pairs(images, labels)
    assert list(zip(first, second)) == [(0, 1), (1, 0), (1, 3), (3, 1)]
    with pytest.raises(ValueError, match="2 image ids but 1 labels"):
        cross_class_pairs(["a", "b"], ["x"])


def _masks():
    a = torch.zeros(20, 20, dtype=torch.bool)
    a[2:8, 2:8] = True  # 36 px
    b = torch.zeros(20, 20, dtype=torch.bool)
    b[12:18, 12:18] = True  # 36 px, far from A
    return a, b


def test_hand_case_class_sensitive_and_blind_maps():
    a, b = _masks()
    sensitive = torch.zeros(2, 20, 20)
    sensitive[0, 5, 5] = 1.0  # map of A peaks in A
    sensitive[0, 15, 15] = 0.25  # with a little mass on B
    sensitive[1, 14, 14] = 1.0  # map of B peaks in B
    blind = torch.zeros(2, 20, 20)
    blind[:, 5, 5] = 1.0  # both maps the same, peaked in A
    blind[:, 15, 15] = 1.0 / 3
    masks = torch.stack([a, b])
    pairs = cross_class_pairs(["img", "img"], ["A", "B"])
    s = class_sensitivity(sensitive, masks, pairs, tolerance=1.0)
    assert s["pointing_own"].tolist() == [1.0, 1.0]
    assert s["pointing_other"].tolist() == [0.0, 0.0]
    assert s["mass_own"].tolist() == pytest.approx([0.8, 1.0])
    assert s["mass_other"].tolist() == pytest.approx([0.2, 0.0])
    z = class_sensitivity(blind, masks, pairs, tolerance=1.0)
    # Row 0 (A's map) looks at A; row 1 (B's map) is the same map, so it looks at A, not B.
    assert z["pointing_own"].tolist() == [1.0, 0.0]
    assert z["pointing_other"].tolist() == [0.0, 1.0]
    assert z["mass_own"].tolist() == pytest.approx([0.75, 0.25])
    assert z["mass_other"].tolist() == pytest.approx([0.25, 0.75])


def test_overlap_counts_for_the_own_class_and_nested_masks_are_undefined():
    a, _ = _masks()
    inner = torch.zeros_like(a)
    inner[4:6, 4:6] = True  # B wholly inside A
    m = torch.zeros(2, 20, 20)
    m[:, 4, 4] = 1.0  # on the overlap
    s = class_sensitivity(m, torch.stack([a, inner]), cross_class_pairs(["i", "i"], ["A", "B"]), tolerance=1.0)
    # A's map on B-outside-A: nothing left, NaN. B's map on A-outside-B: the peak is on B, a miss.
    assert math.isnan(s["pointing_other"][0].item()) and math.isnan(s["mass_other"][0].item())
    assert s["pointing_own"].tolist() == [1.0, 1.0]
    assert s["pointing_other"][1].item() == 0.0


def test_constant_map_is_a_miss_and_chunks_agree(monkeypatch):
    a, b = _masks()
    maps = torch.stack([torch.ones(20, 20), torch.rand(20, 20, generator=torch.Generator().manual_seed(0))])
    masks = torch.stack([a, b])
    pairs = cross_class_pairs(["i", "i"], ["A", "B"])
    whole = class_sensitivity(maps, masks, pairs)
    assert whole["pointing_own"][0].item() == 0.0 and whole["pointing_other"][0].item() == 0.0
    assert whole["mass_own"][0].item() == pytest.approx(36 / 400)
    monkeypatch.setattr(cs, "CHUNK", 1)
    chunked = class_sensitivity(maps, masks, pairs)
    for k in cs.COLUMNS:
        assert torch.equal(whole[k], chunked[k])


@pytest.mark.skipif(not (COCO / "annotations" / "instances_val2017.json").is_file(), reason=f"shared COCO sample not found at {COCO}")
def test_real_photos_oracle_and_class_blind_maps():
    """On the COCO sample's photos with two or more classes: a map that is exactly class A's
    mask scores 1 on A and 0 on every other class (pointing with tolerance 1, mass); a map that
    is the union of all the image's masks (where something is, not which class) scores mass
    |A| / |union| on A and |B - A| / |union| on B, by hand from the mask areas."""
    from bench.data.coco import coco

    data = coco(COCO, "val2017")
    tested = 0
    for i in range(len(data)):
        if tested == 6:  # enough photos; each one costs a decode
            break
        sample = data[i]
        if len({t.label for t in sample.targets}) < 2:
            continue
        masks = torch.stack([t.mask for t in sample.targets])
        labels = [t.label for t in sample.targets]
        pairs = cross_class_pairs([sample.image_id] * len(labels), labels)
        oracle = class_sensitivity(masks.float(), masks, pairs, tolerance=1.0)
        assert (oracle["pointing_own"] == 1).all() and (oracle["mass_own"] == 1).all()
        defined = ~torch.isnan(oracle["pointing_other"])
        assert (oracle["pointing_other"][defined] == 0).all() and (oracle["mass_other"][defined] == 0).all()
        union = masks.any(dim=0)
        blind = union.float().expand_as(masks).clone()
        z = class_sensitivity(blind, masks, pairs, tolerance=1.0)
        total = float(union.sum())
        for p, (a, b) in enumerate(zip(*pairs)):
            assert z["mass_own"][p].item() == pytest.approx(float(masks[a].sum()) / total, rel=1e-5)
            other = float((masks[b] & ~masks[a]).sum())
            if other:
                assert z["mass_other"][p].item() == pytest.approx(other / total, rel=1e-5)
        tested += 1
    assert tested == 6, f"only {tested} sample photos hold two or more classes"
