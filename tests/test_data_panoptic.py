"""COCO panoptic loader: the real panopticapi sample (2 val2017 photos) and a boat-on-water
scene written here in the official format (JSON + RGB id PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.annotations import DatasetFormatError
from bench.data.manifest import load_manifest
from bench.data.panoptic import CocoPanoptic, read_segment_ids, rgb_to_id
from bench.data.annotations import pointing_difficult

HERE = Path(__file__).resolve().parent
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE = SHARED / "coco_panoptic_sample"
CATEGORIES = json.loads(
    (HERE / "fixtures" / "coco_panoptic" / "panoptic_coco_categories.json").read_text()
)
SAMPLE_LAYOUT = dict(
    annotations="panoptic_examples.json", masks="panoptic_examples", images="input_images"
)


def needs_sample():
    if not (SAMPLE / "panoptic_examples.json").is_file():
        pytest.skip(f"shared panoptic sample not found at {SAMPLE} (see shared/data/SOURCES.md)")


def test_rgb_to_id_is_panopticapi_encoding():
    rgb = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [7, 3, 2]]], dtype=np.uint8)
    assert rgb_to_id(rgb).tolist() == [[1, 256, 65536, 7 + 3 * 256 + 2 * 65536]]


def test_real_sample_segments_match_their_areas():
    needs_sample()
    data = json.loads((SAMPLE / "panoptic_examples.json").read_text())
    for ann in data["annotations"]:
        ids = read_segment_ids(SAMPLE / "panoptic_examples" / ann["file_name"])
        for seg in ann["segments_info"]:
            # The JSON's `area` is the segment's pixel count: the decoding is exact.
            assert np.count_nonzero(ids == seg["id"]) == seg["area"]


def test_real_sample_things_are_targets_and_stuff_is_context():
    needs_sample()
    ds = CocoPanoptic(SAMPLE, manifest=load_manifest("coco2017-val"), **SAMPLE_LAYOUT)
    assert len(ds) == 2 and len(ds.class_names) == 80
    by_id = {s.image_id: s for s in (ds[0], ds[1])}
    horse_image = by_id["439180"]
    assert [t.label for t in horse_image.targets] == ["person", "truck", "horse"]
    horse = horse_image.targets[2]
    data = json.loads((SAMPLE / "panoptic_examples.json").read_text())
    ann = next(a for a in data["annotations"] if a["image_id"] == 439180)
    ids = read_segment_ids(SAMPLE / "panoptic_examples" / ann["file_name"])
    grass_ids = [s["id"] for s in ann["segments_info"] if s["category_id"] == 193]  # grass-merged
    horse_segs = [s for s in ann["segments_info"] if s["category_id"] == 19]
    assert set(horse.context) == {"grass"}  # horse -> grass, dirt; this photo has no dirt
    assert (horse.context["grass"].numpy() == np.isin(ids, grass_ids)).all()
    assert not (horse.context["grass"].numpy() & horse.mask.numpy()).any()
    # One of the 12 horse segments is a crowd: in the mask (crowd="include"), not an instance.
    assert len(horse_segs) == 12 and sum(s["iscrowd"] for s in horse_segs) == 1
    assert horse.instances.shape[0] == 11 and horse.boxes.shape == (11, 4)
    assert np.count_nonzero(horse.mask.numpy()) == sum(s["area"] for s in horse_segs)
    no_crowd = CocoPanoptic(SAMPLE, manifest=None, crowd="exclude", **SAMPLE_LAYOUT)
    horse_ex = next(t for t in no_crowd[1].targets if t.label == "horse")
    assert np.count_nonzero(horse_ex.mask.numpy()) == sum(
        s["area"] for s in horse_segs if not s["iscrowd"]
    )
    # person has no context pair in the manifest; truck -> road, absent here (gravel).
    assert horse_image.targets[0].context == {} and horse_image.targets[1].context == {}
    ball = next(t for t in by_id["142238"].targets if t.label == "sports ball")
    assert set(ball.context) == {"grass"}
    assert pointing_difficult(ball, by_id["142238"].targets)  # tiny, with a person present


def test_without_manifest_there_is_no_context():
    needs_sample()
    ds = CocoPanoptic(SAMPLE, manifest=None, **SAMPLE_LAYOUT)
    assert all(t.context == {} for i in range(len(ds)) for t in ds[i].targets)


def _id_png(ids: np.ndarray, path: Path) -> None:
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(path)


@pytest.fixture
def boat_scene(tmp_path):
    """A 40x30 harbour: sky (rows 0-9), sea (rows 10-19), river (rows 20-29), and a boat
    (rows 8-14, cols 10-24) covering part of the sky and the sea."""
    name = {c["name"]: c["id"] for c in CATEGORIES}
    ids = np.zeros((30, 40), dtype=np.int64)
    ids[0:10] = 1001
    ids[10:20] = 1002
    ids[20:30] = 1003
    ids[8:15, 10:25] = 2000
    root = tmp_path / "pan"
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
    (root / "val2017").mkdir()
    _id_png(ids, root / "annotations" / "panoptic_val2017" / "000000000001.png")
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(root / "val2017" / "000000000001.jpg")
    segs = [
        {"id": 1001, "category_id": name["sky-other-merged"], "iscrowd": 0},
        {"id": 1002, "category_id": name["sea"], "iscrowd": 0},
        {"id": 1003, "category_id": name["river"], "iscrowd": 0},
        {"id": 2000, "category_id": name["boat"], "iscrowd": 0, "bbox": [10, 8, 15, 7]},
    ]
    for s in segs:
        s["area"] = int((ids == s["id"]).sum())
        s.setdefault("bbox", [0, 0, 40, 30])
    data = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "height": 30, "width": 40}],
        "annotations": [{"image_id": 1, "file_name": "000000000001.png", "segments_info": segs}],
        "categories": CATEGORIES,
    }
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(data))
    return root, ids


def test_boat_on_water_context(boat_scene):
    root, ids = boat_scene
    ds = CocoPanoptic(root, "val2017", manifest=load_manifest("coco2017-val"))
    s = ds[0]
    assert [t.label for t in s.targets] == ["boat"]
    boat = s.targets[0]
    assert (boat.mask.numpy() == (ids == 2000)).all()
    assert boat.boxes.tolist() == [[10.0, 8.0, 25.0, 15.0]]
    assert set(boat.context) == {"water"}  # sky is not a boat region
    assert (boat.context["water"].numpy() == np.isin(ids, [1002, 1003])).all()
    assert not pointing_difficult(boat, s.targets)  # the only class in the image


def test_manifest_typo_is_an_error_naming_the_manifest(boat_scene, tmp_path):
    root, _ = boat_scene
    text = load_manifest("coco2017-val").path.read_text().replace('"water-other"', '"water-othr"')
    bad = tmp_path / "coco2017-val.toml"
    bad.write_text(text)
    with pytest.raises(DatasetFormatError, match="water-othr"):
        CocoPanoptic(root, "val2017", manifest=load_manifest(bad))


def test_png_size_mismatch_names_the_file(boat_scene):
    root, ids = boat_scene
    _id_png(ids[:, :20], root / "annotations" / "panoptic_val2017" / "000000000001.png")
    ds = CocoPanoptic(root, "val2017", manifest=None)
    with pytest.raises(DatasetFormatError, match="000000000001.png"):
        ds[0]


CONFIG = HERE.parent / "configs" / "coco_panoptic_sample.toml"


@pytest.fixture
def harbour_photo(tmp_path):
    """A 160x224 harbour in the official COCO panoptic layout: textured sky above a textured
    sea, a boat on the sea (hull and sail), and its panoptic segments (boat: thing; sky, sea:
    stuff). ``ids`` is the segment-id image the PNG holds."""
    rng = np.random.default_rng(0)
    h, w = 160, 224
    name = {c["name"]: c["id"] for c in CATEGORIES}
    ids = np.full((h, w), 1001, dtype=np.int64)  # sky
    ids[70:] = 1002  # sea
    yy, xx = np.mgrid[0:h, 0:w]
    hull = (yy >= 80) & (yy < 100) & (xx >= 60 + (yy - 80) // 2) & (xx < 150 - (yy - 80) // 2)
    sail = (yy >= 30) & (yy < 80) & (xx >= 100) & (xx < 100 + (yy - 30))
    ids[hull | sail] = 2000
    img = np.zeros((h, w, 3), np.float64)
    img[ids == 1001] = (135, 190, 235)
    sea = ids == 1002
    img[sea] = (20, 70, 140)
    img[sea] += (25 * np.sin(xx[sea] / 4.0 + yy[sea] / 2.0))[:, None]
    img[hull] = (120, 60, 20)
    img[sail] = (240, 240, 235)
    img += rng.normal(0, 6, img.shape)
    root = tmp_path / "harbour"
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
    (root / "val2017").mkdir()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "val2017" / "000000000007.jpg", quality=95)
    _id_png(ids, root / "annotations" / "panoptic_val2017" / "000000000007.png")
    ys, xs = np.nonzero(ids == 2000)
    segs = [
        {"id": 1001, "category_id": name["sky-other-merged"], "iscrowd": 0},
        {"id": 1002, "category_id": name["sea"], "iscrowd": 0},
        {"id": 2000, "category_id": name["boat"], "iscrowd": 0,
         "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]},
    ]
    for s in segs:
        s["area"] = int((ids == s["id"]).sum())
        s.setdefault("bbox", [0, 0, w, h])
    data = {
        "images": [{"id": 7, "file_name": "000000000007.jpg", "height": h, "width": w}],
        "annotations": [{"image_id": 7, "file_name": "000000000007.png", "segments_info": segs}],
        "categories": CATEGORIES,
    }
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(data))
    return root, ids


def test_the_panoptic_config_reports_boat_leakage_onto_water(harbour_photo, tmp_path):
    """The shipped panoptic config, pointed at an official-layout directory with a boat on the
    sea, scores leakage onto water for the boat target; the uniform map's leakage is, by hand,
    the share of the image that is water and not boat."""
    from bench import results
    from bench.config import load_config
    from bench.engine import run_config
    from bench.report.breakdown import load_class_cells

    root, ids = harbour_photo
    # The official layout, in place of the sample's file names the config carries.
    layout = {"root": str(root), "annotations": "annotations/panoptic_val2017.json",
              "masks": "annotations/panoptic_val2017", "images": "val2017"}
    methods = [{"name": "gradcam"}, {"name": "center"}, {"name": "uniform"}]
    cfg = load_config(CONFIG, {"device": "cpu", "dataset": layout, "methods": methods})
    out = tmp_path / "run"
    try:
        run_config(cfg, out_dir=out, progress=False)
    except ImportError as exc:  # the model's weights package is an optional extra
        pytest.skip(f"model for {CONFIG.name} unavailable: {exc}")
    rows = results.read_rows(out / results.SCORES)
    assert {r["target"] for r in rows} == {"boat"}
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"gradcam", "center", "uniform"}
    water_not_boat = (ids == 1002).sum() / ids.size
    assert by_method["uniform"]["leakage"] == pytest.approx(water_not_boat, abs=1e-6)
    for r in rows:
        assert 0.0 <= r["leakage"] <= 1.0, r
    cells = load_class_cells(out, n_resamples=200)
    boat = cells[(cells["class"] == "boat") & (cells.metric == "leakage")]
    assert sorted(boat.method) == ["center", "gradcam", "uniform"]
    assert boat.estimate.notna().all()
