"""COCO instances loader on the real 50-image val2017 sample in ../shared/data/coco_tiny.

Each convention is checked against the raw JSON, independently of the loader's own code path
where possible: boxes, masks inside boxes, crowd RLE areas, the union rule, the difficult rule.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.annotations import box_mask
from bench.data.coco import CocoInstances, coco
from bench.data.images import ImageDecodeError
from bench.data.registry import load_dataset
from bench.data.annotations import pointing_difficult

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOT = SHARED / "coco_tiny"
JSON = ROOT / "annotations" / "instances_val2017.json"

pytestmark = pytest.mark.skipif(
    not JSON.is_file(), reason=f"shared COCO sample not found at {ROOT} (see shared/data/SOURCES.md)"
)


@pytest.fixture(scope="module")
def raw():
    data = json.loads(JSON.read_text())
    anns = defaultdict(list)
    for a in data["annotations"]:
        anns[a["image_id"]].append(a)
    return data, anns


@pytest.fixture(scope="module")
def dataset():
    return coco(ROOT, "val2017")


def test_counts_and_order_follow_the_json(dataset, raw):
    data, anns = raw
    with_anns = [img["id"] for img in data["images"] if anns[img["id"]]]
    assert len(dataset) == len(with_anns) == 48
    assert dataset.skipped == {"no_targets": 2}
    assert [info["id"] for info, _ in dataset.records] == with_anns
    assert len(dataset.class_names) == 80 and dataset.class_names[0] == "person"
    assert dataset.manifest["name"] == "coco2017-val"


def test_registry_factory_and_limit():
    ds = load_dataset("coco", root=str(ROOT), split="val2017", limit=5)
    assert len(ds) == 5 and isinstance(ds, CocoInstances)


def test_every_sample_against_the_raw_annotations(dataset, raw):
    data, anns = raw
    cats = {c["id"]: c["name"] for c in data["categories"]}
    for i in range(len(dataset)):
        info, _ = dataset.records[i]
        s = dataset[i]
        h, w = info["height"], info["width"]
        assert s.image.shape == (3, h, w) and s.image.dtype == torch.float32
        img = s.image.numpy()
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert s.image_id == str(info["id"])
        per_class = defaultdict(list)
        for a in anns[info["id"]]:
            per_class[a["category_id"]].append(a)
        assert [t.label for t in s.targets] == [cats[c] for c in sorted(per_class)]
        for t, cat in zip(s.targets, sorted(per_class)):
            solid = [a for a in per_class[cat] if not a["iscrowd"]]
            assert t.mask.dtype == torch.bool and t.mask.shape == (h, w)
            assert t.instances.shape == (len(solid), h, w)
            # COCO [x, y, w, h] -> xyxy.
            want = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                     a["bbox"][1] + a["bbox"][3]] for a in solid]
            np.testing.assert_allclose(t.boxes.numpy(), np.array(want).reshape(-1, 4), atol=1e-4)
            for inst, box in zip(t.instances, want):
                # Every mask pixel lies inside the pixels its box covers.
                c0, r0 = math.floor(box[0]), math.floor(box[1])
                c1, r1 = math.ceil(box[2]), math.ceil(box[3])
                inst = inst.numpy()
                total = np.count_nonzero(inst)
                assert total > 0 and np.count_nonzero(inst[r0:r1, c0:c1]) == total
            union = t.instances.numpy().any(axis=0)
            assert not (union & ~t.mask.numpy()).any()  # the mask contains every instance
            if len(solid) == len(per_class[cat]):
                assert (t.mask.numpy() == union).all()  # ... and is their union
        # The pointing-game difficult rule (the scoring core's), recomputed here.
        for t in s.targets:
            small = np.count_nonzero(t.mask.numpy()) < 0.25 * h * w
            assert pointing_difficult(t, s.targets) == (small and len(s.targets) > 1)


def test_polygon_area_matches_the_annotation(dataset, raw):
    # COCO's `area` of a polygon is its geometric area; the rasterised mask agrees closely.
    data, anns = raw
    s = dataset[0]  # image 397133, first annotation: a bottle (category 44), one polygon
    bottle = next(t for t in s.targets if t.label == "bottle")
    ann = next(a for a in anns[397133] if a["category_id"] == 44)
    assert ann["bbox"] == [217.62, 240.54, 38.99, 57.75]
    assert abs(int(bottle.instances[0].sum()) - ann["area"]) / ann["area"] < 0.05


def test_crowd_rle_policy(raw):
    data, anns = raw
    crowd = next(a for a in data["annotations"] if a["iscrowd"] and a["image_id"] == 87038)
    include = CocoInstances(ROOT, "val2017")
    exclude = CocoInstances(ROOT, "val2017", crowd="exclude")
    idx = next(i for i, (info, _) in enumerate(include.records) if info["id"] == 87038)
    person_in = next(t for t in include[idx].targets if t.label == "person")
    idx_ex = next(i for i, (info, _) in enumerate(exclude.records) if info["id"] == 87038)
    person_ex = next(t for t in exclude[idx_ex].targets if t.label == "person")
    crowd_pixels = person_in.mask & ~person_ex.mask
    # For RLE, COCO's area is exactly the pixel count; the crowd region is in the "include" mask
    # (minus any overlap with the solid instances) and never an instance.
    assert int(crowd_pixels.sum()) <= crowd["area"]
    assert int(crowd_pixels.sum()) > 0.9 * crowd["area"]
    assert person_in.instances.shape[0] == person_ex.instances.shape[0]
    assert torch.equal(person_ex.mask, person_ex.instances.any(dim=0))


def test_single_class_image_is_never_difficult(dataset):
    idx = next(i for i, (info, _) in enumerate(dataset.records) if info["id"] == 6818)
    s = dataset[idx]
    assert [t.label for t in s.targets] == ["toilet"] and not s.targets[0].difficult


def test_classes_filter_and_unknown_class():
    ds = CocoInstances(ROOT, "val2017", classes=["boat", "train"])
    labels = {t.label for i in range(len(ds)) for t in ds[i].targets}
    assert labels == {"boat", "train"}
    with pytest.raises(ValueError, match="unknown classes"):
        CocoInstances(ROOT, "val2017", classes=["boaat"])


def test_box_mask_covers_exactly_the_box_pixels():
    m = box_mask(np.array([[1.5, 2.0, 4.0, 3.2]]), 6, 6)
    want = np.zeros((6, 6), bool)
    want[2:4, 1:4] = True  # rows 2..3 (ceil 3.2 = 4), cols 1..3
    assert (m == want).all()


def test_a_corrupt_image_is_named(tmp_path, raw):
    data, anns = raw
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    first = data["images"][0]
    keep = {**data, "images": [first], "annotations": anns[first["id"]]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(keep))
    src = (ROOT / "val2017" / first["file_name"]).read_bytes()
    (root / "val2017" / first["file_name"]).write_bytes(src[: len(src) // 3])
    ds = CocoInstances(root, "val2017", manifest=None)
    assert ds.manifest is None
    with pytest.raises(ImageDecodeError, match=first["file_name"]):
        ds[0]
    shutil.rmtree(root)


def test_dataset_pickles_for_dataloader_workers(dataset):
    import pickle

    again = pickle.loads(pickle.dumps(dataset))
    a, b = dataset[1], again[1]
    assert a.image_id == b.image_id and [t.label for t in a.targets] == [t.label for t in b.targets]
