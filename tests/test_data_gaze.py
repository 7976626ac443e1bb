"""Gaze loaders: OSIE, MIT1003 and SALICON on the real samples in ../shared/data; CAT2000 and the
SALICON 2017 .mat format on fixtures written here in their official formats. Every coordinate
convention is checked against the raw files read independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from bench.data.annotations import DatasetFormatError
from bench.data.gaze import (
    OSIE_BLUR,
    SALICON_BLUR,
    TOP1,
    GazeDataset,
    GazeRecord,
    cat2000,
    fixated_pixels,
    mit1003,
    osie,
    salicon,
)
from bench.data.images import load_gray
from bench.data.registry import DATASETS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared sample data not found at {path} (see shared/data/SOURCES.md)")
    return path


def test_all_gaze_loaders_are_registered():
    import bench.data  # noqa: F401  (the package registers its loaders)

    for name in ("coco", "coco_panoptic", "voc", "osie", "mit1003", "salicon", "cat2000"):
        assert name in DATASETS


# -- OSIE ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def osie_raw():
    mat = need(SHARED / "osie_dev" / "fixations.mat")
    entries = scipy.io.loadmat(mat)["fixations"]
    raw = {}
    for e in entries[:, 0]:
        e = e[0, 0]
        name = str(e["img"][0])
        subjects = e["subjects"][:, 0]  # a 15x1 cell of 1x1 structs
        xs = np.concatenate([s[0, 0]["fix_x"].ravel() for s in subjects])
        ys = np.concatenate([s[0, 0]["fix_y"].ravel() for s in subjects])
        raw[name] = (xs, ys)
    return raw


@pytest.fixture(scope="module")
def osie_ds():
    return osie(need(SHARED / "osie_dev"))


def test_osie_points_are_the_1_based_raw_minus_one(osie_ds, osie_raw):
    assert len(osie_ds) == 100 and osie_ds.skipped == {"missing_image": 600}
    assert osie_ds.manifest["name"] == "osie" and osie_ds.class_names == [TOP1]
    s = osie_ds[0]
    assert s.image_id == "1001" and s.image.shape == (3, 600, 800)
    xs, ys = osie_raw["1001.jpg"]
    assert len(xs) == 141  # 15 observers pooled
    np.testing.assert_allclose(s.fixations[:, 0].numpy(), xs - 1, atol=1e-4)
    np.testing.assert_allclose(s.fixations[:, 1].numpy(), ys - 1, atol=1e-4)
    t = s.targets[0]
    assert t.label == TOP1 and t.mask.shape == (600, 800)
    rows = np.floor(ys - 1 + 0.5).astype(int)
    cols = np.floor(xs - 1 + 0.5).astype(int)
    assert np.count_nonzero(t.mask.numpy()) == len(set(zip(rows, cols)))
    assert t.mask.numpy()[rows, cols].all()


def test_osie_every_point_lands_inside_the_800x600_image(osie_ds, osie_raw):
    # With x and y swapped, points up to 799 would fall outside the 600 rows and be dropped.
    total = 0
    for i in range(len(osie_ds)):
        pts, size = osie_ds.points(i)
        assert size == (600, 800)
        xs, _ = osie_raw[f"{osie_ds.records[i].image_id}.jpg"]
        assert len(pts) == len(xs)
        assert (pts[:, 0] >= 0).all() and (pts[:, 0] < 799.5).all()
        assert (pts[:, 1] >= 0).all() and (pts[:, 1] < 599.5).all()
        total += len(pts)
    assert total > 10_000


def test_osie_density_is_the_documented_blur(osie_ds):
    from scipy import ndimage

    s = osie_ds[0]
    fixated = s.targets[0].mask.numpy().astype(np.float64)
    want = ndimage.gaussian_filter(fixated, 24, mode="constant", truncate=3.5)
    want = (want - want.min()) / (want.max() - want.min())
    np.testing.assert_allclose(s.density.numpy(), want, atol=1e-6)
    assert float(s.density.max()) == 1.0 and float(s.density.min()) == 0.0


@pytest.mark.parametrize("blur", [OSIE_BLUR, SALICON_BLUR])
def test_sparse_and_dense_blur_paths_agree(blur, monkeypatch):
    from bench.data import gaze

    fixated = np.zeros((50, 70), bool)
    fixated[[0, 10, 49, 25], [0, 33, 69, 1]] = True
    sparse = blur(fixated)
    monkeypatch.setattr(gaze, "SPARSE_BLUR_POINTS", 0)
    np.testing.assert_allclose(sparse, blur(fixated), atol=1e-6)


def test_blur_parameters_by_hand():
    one = np.zeros((600, 800), bool)
    one[300, 400] = True
    d = OSIE_BLUR(one)
    assert d[300, 400] == 1.0
    assert abs(d[300, 424] - np.exp(-0.5)) < 1e-3  # one sigma = 24 px
    assert abs(d[348, 400] - np.exp(-2.0)) < 1e-3  # two sigmas
    assert d[300, 400 + 85] == 0.0  # window 7 sigma wide (radius 3.5 sigma = 84 px), zero padded
    d = SALICON_BLUR(one)
    assert abs(d[300, 419] - np.exp(-0.5)) < 1e-3  # one sigma = 19 px


def test_shuffled_auc_negatives_come_from_ten_other_images(osie_ds):
    s = osie_ds[3]
    again = osie_ds[3].other_fixations
    assert s.other_fixations is not None and np.array_equal(s.other_fixations, again)
    owners = {}
    for j in range(len(osie_ds)):
        pts, _ = osie_ds.points(j)
        for p in np.round(pts.astype(np.float64), 3):
            owners.setdefault(tuple(p), set()).add(j)
    sources = set()
    for p in np.round(s.other_fixations.numpy().astype(np.float64), 3):
        found = owners[tuple(p)]  # same 800x600 size: rescaling is the identity
        assert found != {3}
        sources |= found - {3}
    assert 10 <= len(sources) <= 12  # 10 images (a point may repeat across images)
    other_seed = osie(SHARED / "osie_dev", seed=1)[3].other_fixations
    assert not np.array_equal(other_seed, s.other_fixations)


def test_negatives_are_rescaled_by_pixel_centres(tmp_path):
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "b.png")
    records = [
        GazeRecord("a", tmp_path / "a.png", points=np.array([[0, 0], [19, 9]], np.float32)),
        GazeRecord("b", tmp_path / "b.png", points=np.array([[5, 5]], np.float32)),
    ]
    ds = GazeDataset(records, blur=None, manifest=None)
    # x' = (x + 0.5) * 40 / 20 - 0.5: pixel 0 -> 0.5, pixel 19 -> 38.5.
    assert ds[1].other_fixations.tolist() == [[0.5, 0.5], [38.5, 18.5]]
    assert ds[0].other_fixations.tolist() == [[2.25, 2.25]]


# -- MIT1003 -------------------------------------------------------------------------------------


def test_mit1003_density_maps():
    root = need(SHARED / "mit1003_dev")
    ds = mit1003(root)
    assert len(ds) == 50 and ds.missing == {"density": 0, "points": 50}
    s = ds[0]
    name = ds.records[0].image.name
    want = np.asarray(Image.open(root / "fixation_maps" / name).convert("L"), np.float32) / 255
    np.testing.assert_array_equal(s.density.numpy(), want)
    assert s.density.shape == s.image.shape[1:] == (768, 1024)
    assert s.fixations is None and s.other_fixations is None
    assert not s.targets[0].mask.numpy().any()


def test_mit1003_binary_fixation_locations():
    root = need(SHARED / "mit1003_dev" / "demo_i210")
    ds = mit1003(root)
    assert len(ds) == 1 and ds.missing == {"density": 0, "points": 0}
    s = ds[0]
    locs = scipy.io.loadmat(root / "FIXATIONLOCS" / "i210.mat")["fixations"]
    rows, cols = np.nonzero(locs)
    assert len(rows) == 259
    assert s.image.shape == (3, 675, 1024) and locs.shape == (675, 1024)
    assert sorted(map(tuple, s.fixations.numpy().astype(int))) == sorted(zip(cols, rows))
    assert (s.targets[0].mask.numpy() == (locs > 0)).all()
    np.testing.assert_array_equal(s.density.numpy(), load_gray(root / "FIXATIONMAPS" / "i210.jpg"))


# -- SALICON -------------------------------------------------------------------------------------


def test_salicon_points_are_row_col_1_based():
    root = need(SHARED / "salicon_sample")
    raw = json.loads((root / "annotations" / "fixations_train2014examples.json").read_text())
    ds = salicon(root, split="train2014examples")
    assert len(ds) == 10
    i = next(k for k, r in enumerate(ds.records) if r.image_id == "COCO_train2014_000000123855")
    s = ds[i]
    assert s.image.shape == (3, 480, 640)
    first = next(a for a in raw["annotations"] if a["image_id"] == 123855)
    assert first["fixations"][0] == [242, 314]  # [row, col], 1-based
    assert s.fixations[0].tolist() == [313.0, 241.0]  # x = col - 1, y = row - 1
    n_raw = sum(len(a["fixations"]) for a in raw["annotations"] if a["image_id"] == 123855)
    # Read as [x, y], rows up to 480 would be columns and columns up to 640 rows: points with a
    # "row" >= 480 would leave the image. Read correctly, none is dropped.
    assert len(s.fixations) == n_raw
    assert float(s.fixations[:, 1].max()) <= 479 and float(s.fixations[:, 0].max()) <= 639
    assert s.density is not None and s.density.shape == (480, 640)


def test_salicon_2017_mat_format(tmp_path):
    root = tmp_path / "salicon"
    (root / "fixations" / "val").mkdir(parents=True)
    (root / "images" / "val").mkdir(parents=True)
    name = "COCO_val2014_000000000042"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "images" / "val" / f"{name}.jpg")
    gaze = np.zeros((2, 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    gaze[0, 0] = (np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([1, 2]), np.array([[5.0, 3.0]]))
    gaze[1, 0] = (np.array([[3.0, 3.0]]), np.array([1]), np.array([[40.0, 30.0], [41.0, 1.0]]))
    scipy.io.savemat(root / "fixations" / "val" / f"{name}.mat",
                     {"gaze": gaze, "image": name, "resolution": np.array([30, 40])})
    s = salicon(root, split="val")[0]
    # [x, y], 1-based -> 0-based; (41, 1) is outside the 40-pixel width and dropped.
    assert s.fixations.tolist() == [[4.0, 2.0], [39.0, 29.0]]
    mouse = salicon(root, split="val", points="location")[0]
    assert mouse.fixations.tolist() == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]


# -- CAT2000 -------------------------------------------------------------------------------------


@pytest.fixture
def cat_root(tmp_path):
    base = tmp_path / "cat" / "trainSet"
    for cat, names in (("Action", ["001", "002"]), ("Art", ["001"])):
        for sub in ("Stimuli", "FIXATIONMAPS", "FIXATIONLOCS"):
            (base / sub / cat).mkdir(parents=True)
        for n in names:
            Image.fromarray(np.full((30, 40, 3), 50, np.uint8)).save(base / "Stimuli" / cat / f"{n}.jpg")
            Image.fromarray(np.full((30, 40), 255, np.uint8)).save(base / "FIXATIONMAPS" / cat / f"{n}.jpg")
            locs = np.zeros((30, 40), np.uint8)
            locs[3, 5] = locs[10, 20] = 1
            if cat == "Art":
                locs[29, 39] = 1
            scipy.io.savemat(base / "FIXATIONLOCS" / cat / f"{n}.mat", {"fixLocs": locs})
    (base / "Stimuli" / "Action" / "Output").mkdir()
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(base / "Stimuli" / "Action" / "Output" / "001.jpg")
    return tmp_path / "cat"


def test_cat2000_fixation_locations(cat_root):
    ds = cat2000(cat_root)
    assert [r.image_id for r in ds.records] == ["Action/001", "Action/002", "Art/001"]
    s = ds[2]
    assert sorted(s.fixations.tolist()) == [[5.0, 3.0], [20.0, 10.0], [39.0, 29.0]]  # x=col, y=row
    assert s.targets[0].mask.numpy()[[3, 10, 29], [5, 20, 39]].all()
    assert np.count_nonzero(s.targets[0].mask.numpy()) == 3
    assert s.density is not None and float(s.density.min()) > 0.99
    assert len(s.other_fixations) == 4  # the two other images, two points each


def test_cat2000_missing_locations_are_named(cat_root):
    (cat_root / "trainSet" / "FIXATIONLOCS" / "Art" / "001.mat").unlink()
    with pytest.raises(FileNotFoundError, match="Art/001.mat"):
        cat2000(cat_root)


def test_size_mismatch_between_image_and_gaze_is_named(cat_root):
    locs = np.zeros((20, 40), np.uint8)
    scipy.io.savemat(cat_root / "trainSet" / "FIXATIONLOCS" / "Art" / "001.mat", {"fixLocs": locs})
    with pytest.raises(DatasetFormatError, match="001.jpg"):
        cat2000(cat_root)[2]


def test_fixated_pixels_round_half_up_and_drop_outside():
    pts = np.array([[0.49, 0.5], [2.5, 1.49], [-0.6, 0.0], [3.6, 0.0]], np.float32)
    m = fixated_pixels(pts, 3, 4)
    assert sorted(zip(*np.nonzero(m))) == [(1, 0), (1, 3)]


def test_datasets_pickle_for_dataloader_workers(cat_root):
    # Workers started with "spawn" (macOS, Windows) receive the dataset pickled.
    import pickle

    ds = cat2000(cat_root)
    again = pickle.loads(pickle.dumps(ds))
    assert again[2].fixations.tolist() == ds[2].fixations.tolist()
    i210 = SHARED / "mit1003_dev" / "demo_i210"
    if i210.is_dir():
        mit = pickle.loads(pickle.dumps(mit1003(i210)))
        assert len(mit[0].fixations) == 259
