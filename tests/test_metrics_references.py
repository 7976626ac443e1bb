"""Agreement with independent references, to 1e-6, on random and on real inputs:
NSS, AUC-Judd, shuffled AUC, CC, KL and SIM against pysaliency (the MIT-compatible functions),
mass accuracy, rank accuracy and top-k intersection against Quantus; plus Quantus's empty-mask
pointing-game bug and groundbench's answer to it.

pysaliency's package ``__init__`` imports ``pkg_resources`` (gone from setuptools >= 81) and a
dozen heavy modules, so the tests load only the two modules that hold its metric code:
``metrics.py`` (NumPy only) and the compiled ``roc_cython`` extension (its ROC), straight from
the installed package's folder. Both call ``np.trapz``, which NumPy 2.4 removed: the tests put
``np.trapezoid`` (the same function) under that name for the duration of each test.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.metrics import (
    auc_judd,
    cc,
    kl_div,
    mass_accuracy,
    nss,
    pointing_game,
    rank_accuracy,
    shuffled_auc,
    sim,
    top_k_intersection,
)
from bench.metrics.base import TruthBatch, METRICS

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOL = 1e-6


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pysal():
    spec = importlib.util.find_spec("pysaliency")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pysaliency is not installed (pip install --no-deps pysaliency==0.2.22)")
    root = spec.submodule_search_locations[0]
    ext = glob.glob(os.path.join(root, "roc_cython*.so")) + glob.glob(os.path.join(root, "roc_cython*.pyd"))
    if not ext:
        pytest.skip(f"pysaliency at {root} has no compiled roc_cython extension")
    return _load("_pysaliency_metrics", os.path.join(root, "metrics.py")), _load("roc_cython", ext[0])


@pytest.fixture(autouse=True)
def _numpy_trapz(monkeypatch):
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


@pytest.fixture(scope="module")
def quantus():
    q = pytest.importorskip("quantus", reason="Quantus is not installed (see the test extras)")
    return q


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real sample data not found at {path} (shared/ beside the checkout)")
    return path


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _gray(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)


def _real_prediction(gray: np.ndarray) -> np.ndarray:
    """A real, continuous saliency-like map from an image: blurred local contrast times a
    centre prior. Continuous values, so ties are as rare as in a model's output."""
    from scipy.ndimage import gaussian_filter

    h, w = gray.shape
    contrast = np.abs(gray - gaussian_filter(gray, 8))
    ys, xs = np.mgrid[0:h, 0:w]
    centre = np.exp(-(((ys - h / 2) / (h / 3)) ** 2 + ((xs - w / 2) / (w / 3)) ** 2) / 2)
    return gaussian_filter(contrast, 6) * centre


def _pysaliency_row(pysal, smap, fix, other, dens):
    met, roc = pysal
    ys, xs = np.nonzero(fix)
    out = {
        "nss_ddof0": float(np.mean(met.NSS(smap, xs, ys))),
        "auc_judd": roc.general_roc(smap[fix].astype(float), smap[~fix].astype(float), judd=1)[0],
    }
    if other is not None:
        out["sauc_exact"] = roc.general_roc(smap[fix].astype(float), smap[other].astype(float), judd=0)[0]
    if dens is not None:
        out["cc"] = met.CC(smap, dens)
        out["kl"] = met.MIT_KLDiv(smap, dens)
        out["sim"] = met.SIM(smap, dens)
    return out


def _ours(maps, fix, other, dens):
    out = {"nss_ddof0": nss(maps, fix, ddof=0), "auc_judd": auc_judd(maps, fix)}
    if other is not None:
        out["sauc_exact"] = shuffled_auc(maps, fix, other, step=None)
    if dens is not None:
        out["cc"] = cc(maps, dens)
        out["kl"] = kl_div(maps, dens)
        out["sim"] = sim(maps, dens)
    return out


def _has_ties(smap: np.ndarray) -> bool:
    return np.unique(smap).size < smap.size


def _compare(pysal, maps, fix, other=None, dens=None):
    ours = _ours(_t(maps), _t(fix), None if other is None else _t(other), None if dens is None else _t(dens))
    compared = set()
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for b in range(maps.shape[0]):
            ref = _pysaliency_row(
                pysal,
                maps[b],
                fix[b],
                None if other is None else other[b],
                None if dens is None else dens[b],
            )
            if _has_ties(maps[b]):
                # AUC-Judd with ties is our expectation over MIT's jitter, checked against
                # repeated jitter in test_auc_judd_matches_pysaliency_jitter_on_average_over_ties
                ref.pop("auc_judd")
            for name, value in ref.items():
                assert float(ours[name][b]) == pytest.approx(value, abs=TOL), (name, b)
                compared.add(name)
    return compared


def test_gaze_metrics_match_pysaliency_on_random_maps(pysal):
    rng = np.random.default_rng(0)
    b, h, w = 6, 48, 64
    maps = rng.random((b, h, w))
    maps[1] -= 0.5  # signed map: KL shifts it by its minimum, as pysaliency's MIT_KLDiv
    maps[2] = rng.normal(size=(h, w)) ** 2
    maps[:, 0, 0] = 0.0  # a zero minimum: MIT's SIM and pysaliency's agree (see sim's docstring)
    maps[1, 0, 0] = maps[1].min()
    fix = rng.random((b, h, w)) < 0.03
    other = rng.random((b, h, w)) < 0.06
    dens = rng.random((b, h, w)) ** 4
    dens[:, :6] = 0.0
    assert _compare(pysal, maps, fix, other, dens) == {"nss_ddof0", "auc_judd", "sauc_exact", "cc", "kl", "sim"}


def test_nss_ddof_is_the_only_difference_from_pysaliency(pysal):
    rng = np.random.default_rng(1)
    maps = rng.random((2, 30, 40))
    fix = rng.random((2, 30, 40)) < 0.05
    n = 30 * 40
    ratio = nss(_t(maps), _t(fix), ddof=0) / nss(_t(maps), _t(fix))
    assert torch.allclose(ratio, torch.full_like(ratio, np.sqrt(n / (n - 1))), atol=1e-12)


def test_auc_judd_matches_pysaliency_jitter_on_average_over_ties(pysal):
    # A map with many ties (8 levels): our exact expectation vs MIT's jitter, redrawn 400 times
    # with pysaliency's ROC: the Monte Carlo mean must agree within its standard error.
    _, roc = pysal
    rng = np.random.default_rng(2)
    smap = np.floor(rng.random((12, 15)) * 8)
    fix = rng.random((12, 15)) < 0.2
    ours = float(auc_judd(_t(smap[None]), _t(fix[None]))[0])
    draws = []
    for _ in range(400):
        jittered = smap + rng.random(smap.shape) / 1e7
        draws.append(roc.general_roc(jittered[fix], jittered[~fix], judd=1)[0])
    draws = np.asarray(draws)
    assert abs(draws.mean() - ours) < 4 * draws.std(ddof=1) / np.sqrt(len(draws)) + 1e-9
    # and the ties matter: pysaliency without jitter counts ties as above, a different number
    no_jitter = roc.general_roc(smap[fix], smap[~fix], judd=1)[0]
    assert abs(no_jitter - ours) > 1e-3


def _osie(n_images: int):
    """(gray images, bool fixation maps) of the first OSIE dev images, 600x800."""
    import scipy.io as sio

    root = _need(DATA / "osie_dev")
    mat = sio.loadmat(root / "fixations.mat", squeeze_me=True, struct_as_record=False)["fixations"]
    grays, fixes = [], []
    for entry in mat[:n_images]:
        gray = _gray(root / "stimuli" / entry.img)
        fix = np.zeros(gray.shape, dtype=bool)
        for subject in np.atleast_1d(entry.subjects):
            # OSIE: 1-based x = column, y = row; to 0-based pixels, rounding halves up
            x = np.floor(np.atleast_1d(subject.fix_x) - 1 + 0.5).astype(int)
            y = np.floor(np.atleast_1d(subject.fix_y) - 1 + 0.5).astype(int)
            ok = (x >= 0) & (x < gray.shape[1]) & (y >= 0) & (y < gray.shape[0])
            fix[y[ok], x[ok]] = True
        grays.append(gray)
        fixes.append(fix)
    return np.stack(grays), np.stack(fixes)


def test_gaze_metrics_match_pysaliency_on_real_osie_fixations(pysal):
    grays, fixes = _osie(4)
    maps = np.stack([_real_prediction(g) for g in grays])
    # shuffled negatives: the fixations of the other images (real centre bias)
    other = np.stack([fixes[[j for j in range(len(fixes)) if j != i]].any(axis=0) for i in range(len(fixes))])
    assert not any(_has_ties(m) for m in maps)  # so AUC-Judd is compared on every image
    assert _compare(pysal, maps, fixes, other) == {"nss_ddof0", "auc_judd", "sauc_exact"}


def test_gaze_metrics_match_pysaliency_on_real_mit1003_maps(pysal):
    import scipy.io as sio
    from PIL import Image

    root = _need(DATA / "mit1003_dev" / "demo_i210")
    gray = _gray(root / "ALLSTIMULI" / "i210.jpg")
    fix = sio.loadmat(root / "FIXATIONLOCS" / "i210.mat")["fixations"].astype(bool)
    dens = np.asarray(Image.open(root / "FIXATIONMAPS" / "i210.jpg").convert("L"), dtype=np.float64)
    pred = _real_prediction(gray)
    # second prediction: another real image's human density, as a model would predict it
    stim = sorted((DATA / "mit1003_dev" / "fixation_maps").glob("*"))[0]
    other_density = np.asarray(Image.open(stim).convert("L").resize(gray.shape[::-1]), dtype=np.float64)
    maps = np.stack([pred, other_density + 1.0])  # +1 keeps KL clear of pysaliency's rounded eps
    maps[:, 0, 0] = 0.0  # ... and a zero minimum keeps MIT's SIM and pysaliency's equal
    assert dens.min() == 0.0
    compared = _compare(pysal, maps, np.stack([fix, fix]), dens=np.stack([dens, dens]))
    assert compared == {"nss_ddof0", "auc_judd", "cc", "kl", "sim"}


def test_shuffled_auc_default_is_mit_split_average_in_expectation():
    # MIT's AUC_shuffled.m, transcribed loop for loop: 100 random subsets of the negatives.
    rng = np.random.default_rng(3)
    smap = rng.random((20, 25)) ** 2
    fix = rng.random((20, 25)) < 0.1
    other = rng.random((20, 25)) < 0.3
    s = (smap - smap.min()) / (smap.max() - smap.min())
    sth = s[fix]
    ind = np.flatnonzero(other.ravel())
    m = min(len(sth), len(ind))
    aucs = []
    for _ in range(2000):
        cur = s.ravel()[rng.permutation(ind)[:m]]
        top = max(sth.max(), cur.max())
        th = np.arange(0, top + 1e-12, 0.1)[::-1]
        tp = np.r_[0, [(sth >= t).mean() for t in th], 1]
        fp = np.r_[0, [(cur >= t).mean() for t in th], 1]
        aucs.append(np.trapezoid(tp, fp))
    aucs = np.asarray(aucs)
    ours = float(shuffled_auc(_t(smap[None]), _t(fix[None]), _t(other[None]))[0])
    assert abs(aucs.mean() - ours) < 4 * aucs.std(ddof=1) / np.sqrt(len(aucs))


# ---------------------------------------------------------------- Quantus


def _quantus_scores(quantus, maps: np.ndarray, masks: np.ndarray, k: int):
    a = maps[:, None].astype(np.float32)
    s = masks[:, None].astype(np.float32)
    kw = dict(model=None, x_batch=np.zeros_like(a), y_batch=np.zeros(len(a), dtype=int), a_batch=a, s_batch=s)
    common = dict(disable_warnings=True, normalise=False, abs=False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return {
            "mass": np.asarray(quantus.RelevanceMassAccuracy(**common)(**kw), dtype=float),
            "rank": np.asarray(quantus.RelevanceRankAccuracy(**common)(**kw), dtype=float),
            "topk": np.asarray(quantus.TopKIntersection(k=k, **common)(**kw), dtype=float),
        }


def _ours_overlap(maps: np.ndarray, masks: np.ndarray, k: int):
    m = _t(maps.astype(np.float32))
    g = _t(masks)
    return {
        "mass": mass_accuracy(m, g).numpy(),
        "rank": rank_accuracy(m, g).numpy(),
        "topk": top_k_intersection(m, g, k).numpy(),
    }


def _assert_no_ties_at_cuts(maps: np.ndarray, masks: np.ndarray, k: int):
    # Quantus breaks ties by argsort order; the comparison is exact only without ties at a cut.
    flat = maps.astype(np.float32).reshape(len(maps), -1)
    for row, mask in zip(flat, masks.reshape(len(masks), -1)):
        desc = np.sort(row)[::-1]
        for n in {int(mask.sum()), k}:
            if 0 < n < len(desc):
                assert desc[n - 1] != desc[n], "test input has a tie at a cut"


def test_overlap_metrics_match_quantus_on_random_maps(quantus):
    rng = np.random.default_rng(4)
    b, h, w = 8, 32, 40
    maps = rng.random((b, h, w))
    masks = np.zeros((b, h, w), dtype=bool)
    for i in range(b):
        y0, x0 = rng.integers(0, 20, 2)
        masks[i, y0 : y0 + 1 + rng.integers(1, 12), x0 : x0 + 1 + rng.integers(1, 20)] = True
    _assert_no_ties_at_cuts(maps, masks, 50)
    ref = _quantus_scores(quantus, maps, masks, 50)
    ours = _ours_overlap(maps, masks, 50)
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], atol=TOL, err_msg=name)


def test_overlap_metrics_match_quantus_on_real_coco_masks(quantus):
    from pycocotools.coco import COCO
    from scipy.ndimage import zoom

    root = _need(DATA / "coco_tiny")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(root / "annotations" / "instances_val2017.json"))
    maps, masks = [], []
    for img_id in coco.getImgIds()[:4]:
        info = coco.loadImgs(img_id)[0]
        gray = _gray(root / "val2017" / info["file_name"])
        pred = _real_prediction(gray)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))
        biggest = max(anns, key=lambda a: a["area"])
        same = [a for a in anns if a["category_id"] == biggest["category_id"]]
        mask = np.any([coco.annToMask(a).astype(bool) for a in same], axis=0)  # class union
        # one size for the batch: 240x320 (nearest for the mask, linear for the map)
        sy, sx = 240 / gray.shape[0], 320 / gray.shape[1]
        maps.append(zoom(pred, (sy, sx), order=1)[:240, :320])
        masks.append(zoom(mask.astype(np.uint8), (sy, sx), order=0)[:240, :320].astype(bool))
    maps, masks = np.stack(maps), np.stack(masks)
    _assert_no_ties_at_cuts(maps, masks, 1000)
    ref = _quantus_scores(quantus, maps, masks, 1000)
    ours = _ours_overlap(maps, masks, 1000)
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], atol=TOL, err_msg=name)


def test_quantus_pointing_game_scores_an_empty_mask_as_a_hit(quantus):
    # Quantus 0.6 writes NaN into a *bool* array for empty masks (`hit[empty] = np.nan`), and
    # bool(NaN) is True: an image without the object counts as a hit.
    rng = np.random.default_rng(5)
    maps = rng.random((2, 16, 16))
    masks = np.zeros((2, 16, 16), dtype=bool)
    masks[0, :4, :4] = True
    masks[0, np.unravel_index(maps[0].argmax(), (16, 16))] = False  # sample 0: a clear miss
    a = maps[:, None].astype(np.float32)
    kw = dict(model=None, x_batch=np.zeros_like(a), y_batch=np.zeros(2, dtype=int), a_batch=a,
              s_batch=masks[:, None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantus.PointingGame(disable_warnings=True, normalise=False, abs=False)(**kw)
    assert bool(q[1]) is True  # the bug: empty mask -> hit
    # groundbench: the plain function says "no hit"; the registered score leaves it undefined
    # (NaN), so the leaderboard excludes and counts it instead of crediting it.
    m, g = _t(maps.astype(np.float32)), _t(masks)
    assert pointing_game(m, g, tolerance=1).tolist() == [False, False]
    score = METRICS.get("pointing_game").score(m, TruthBatch(masks=g), tolerance=1)
    assert score[0].item() == 0.0 and torch.isnan(score[1])
    # Quantus's mass, rank and top-k metrics do return NaN for an empty mask, as we do
    ref = _quantus_scores(quantus, maps, masks, 5)
    ours = _ours_overlap(maps, masks, 5)
    for name in ref:
        assert np.isnan(ref[name][1]) and np.isnan(ours[name][1])
