"""Gaze runs end to end on small fixtures written here in the official formats (OSIE's
``fixations.mat`` with per-subject fixations; MIT1003's benchmark layout, density maps only):
the human ceiling's rows beside the score rows, resumed and sharded like them; the leaderboard's
ceiling row and fraction table; the ``center_product`` row; and why the fixation metrics are not
scored on density-only data. The model is the cached harbor CNN (any model works: the labels
are its top-1 class)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from bench import ceiling, results
from bench.config import parse_config
from bench.data.registry import load_dataset
from bench.engine import run_config
from bench.merge import merge_shards
from bench.report.leaderboard import build
from bench.report.render import render_csv, render_text
from bench.scoring import metric_columns
from bench.sharding import shard_dir_name

GAZE = ["nss", "auc_judd", "shuffled_auc", "cc", "kl_div", "sim", "information_gain", "log_likelihood"]
FIXATION_BASED = ["nss", "auc_judd", "shuffled_auc", "information_gain", "log_likelihood"]
N_IMAGES, OBSERVERS, SIZE = 5, 4, (60, 80)


def write_osie(root: Path, seed: int = 0) -> Path:
    """OSIE's layout: ``fixations.mat`` (per image ``img``; per subject ``fix_x``, ``fix_y``,
    1-based) and ``stimuli/``. Observers look near one spot per image, each with some spread."""
    rng = np.random.default_rng(seed)
    (root / "stimuli").mkdir(parents=True)
    h, w = SIZE
    entries = np.empty((N_IMAGES,), dtype=object)
    for i in range(N_IMAGES):
        name = f"{1001 + i}.png"
        Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)).save(root / "stimuli" / name)
        spot = rng.uniform([10, 10], [w - 10, h - 10])
        subjects = np.empty((OBSERVERS,), dtype=object)
        for k in range(OBSERVERS):
            pts = np.clip(spot + rng.normal(0, 6, size=(5, 2)), 1, [w, h])
            subjects[k] = {"fix_x": pts[:, 0], "fix_y": pts[:, 1], "fix_duration": np.full(5, 200.0)}
        entries[i] = {"img": name, "subjects": subjects}
    scipy.io.savemat(root / "fixations.mat", {"fixations": entries})
    return root


def config(root: Path, **extra) -> dict:
    return {
        "name": "gaze-tiny",
        "seed": 0,
        "device": "cpu",
        "batch_size": 2,
        "dataset": {"name": "osie", "root": str(root), "shuffle_images": 3},
        "models": [{"spec": "harbor:object_only"}],
        "methods": [{"name": "gradcam"}, {"name": "center"}, {"name": "center_product", "method": "gradcam"}],
        "metrics": [{"name": n} for n in GAZE],
        **extra,
    }


@pytest.fixture(scope="module")
def gaze_run(tmp_path_factory):
    root = write_osie(tmp_path_factory.mktemp("osie"))
    out = tmp_path_factory.mktemp("run") / "single"
    cfg = parse_config(config(root))
    run_config(cfg, out_dir=out, progress=False)
    return root, cfg, out


def test_the_ceiling_rows_are_the_per_image_leave_one_out_scores(gaze_run):
    root, cfg, out = gaze_run
    rows = results.read_rows(out / results.CEILING_ROWS_FILE)
    assert [r["sample"] for r in rows] == list(range(N_IMAGES))
    assert all(r["method"] == ceiling.LABEL and r["observers"] == OBSERVERS for r in rows)
    info = json.loads((out / results.CEILING).read_text())
    assert info["computed"] and info["blur"] == {"kind": "gaussian", "sigma": 24.0, "mode": "constant", "truncate": 3.5}
    assert info["columns"] == GAZE and info["comparable"] == FIXATION_BASED
    ds = load_dataset("osie", root=str(root), shuffle_images=3)
    columns = metric_columns(cfg.metrics)
    for r in rows[:2]:
        observers, size = ds.observer_points(r["sample"])
        want = ceiling.score_image(observers, size, ds.blur, columns, ds.other_fixations(r["sample"], *size))
        for label in GAZE:
            assert r[label] == pytest.approx(want[label], abs=1e-12), label
    # the score rows are untouched by it: one per (method, image)
    assert len(results.read_rows(out / results.SCORES)) == 3 * N_IMAGES


def test_center_row_gains_nothing_over_the_centre_prior(gaze_run):
    _, _, out = gaze_run
    rows = [r for r in results.read_rows(out / results.SCORES) if r["method"] == "center"]
    # resized from the model's input to the image: within rounding of the exact 0
    assert all(abs(r["information_gain"]) < 1e-3 for r in rows)
    product = [r for r in results.read_rows(out / results.SCORES) if r["method"] == "center_product[gradcam]"]
    assert len(product) == N_IMAGES and all(math.isfinite(r["information_gain"]) for r in product)


def test_leaderboard_prints_the_ceiling_row_and_the_fraction_of_the_way(gaze_run):
    _, _, out = gaze_run
    lb = build(out, n_resamples=200)
    refs = lb.references
    assert set(refs["method"]) == {ceiling.LABEL} and set(refs["metric"]) == set(GAZE)
    assert refs["rank"].isna().all()
    frac = lb.fractions
    assert set(frac["method"]) == {"gradcam", "center_product[gradcam]"}
    assert set(frac["metric"]) == set(FIXATION_BASED)
    # the fraction is (method - centre) / (ceiling - centre) over the images
    scores = results.read_rows(out / results.SCORES)
    ceil = {r["image_id"]: r["nss"] for r in results.read_rows(out / results.CEILING_ROWS_FILE)}
    m = np.mean([r["nss"] for r in scores if r["method"] == "gradcam"])
    c = np.mean([r["nss"] for r in scores if r["method"] == "center"])
    h = np.mean(list(ceil.values()))
    cell = frac[(frac.method == "gradcam") & (frac.metric == "nss")].iloc[0]
    assert cell["estimate"] == pytest.approx((m - c) / (h - c))
    text = render_text(lb)
    assert "human ceiling" in text and "Fraction of the way from the centre prior (0) to the human ceiling (1)" in text
    assert "leave one observer out" in text and "sigma 24 px" in text
    assert "human ceiling on cc, kl_div, sim" in text
    csv = render_csv(lb)
    assert csv.count(ceiling.LABEL) == len(GAZE) and "fraction_of_ceiling" in csv


def test_a_resumed_run_finishes_the_ceiling_where_it_stopped(gaze_run, tmp_path):
    _, cfg, out = gaze_run
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)
    data = (copy / results.CEILING_ROWS_FILE).read_bytes()
    lines = data.split(b"\n")
    # killed while writing the second batch's ceiling rows: the first batch (samples 0, 1) is
    # marked done, the second's score rows are written but not marked, its ceiling row torn
    progress = (copy / results.PROGRESS).read_bytes().split(b"\n")
    (copy / results.PROGRESS).write_bytes(progress[0] + b"\n")
    (copy / results.CEILING_ROWS_FILE).write_bytes(b"\n".join(lines[:2]) + b"\n" + lines[2][:20])
    run_config(cfg, out_dir=copy, resume=True, progress=False)
    assert (copy / results.CEILING_ROWS_FILE).read_bytes() == data
    assert (copy / results.SCORES).read_bytes() == (out / results.SCORES).read_bytes()
    # an unfinished batch's ceiling rows are dropped like its score rows, never kept twice
    assert [r["sample"] for r in results.ResultsDir(copy).committed_rows(results.CEILING_ROWS)] == list(range(N_IMAGES))


def test_shards_merge_into_the_single_runs_ceiling(gaze_run, tmp_path):
    _, cfg, out = gaze_run
    for k in range(2):
        run_config(cfg, out_dir=tmp_path / "sharded" / shard_dir_name((k, 2)), shard=(k, 2), progress=False)
    merged = tmp_path / "merged"
    merge_shards([tmp_path / "sharded"], merged)
    assert (merged / results.CEILING_ROWS_FILE).read_bytes() == (out / results.CEILING_ROWS_FILE).read_bytes()
    assert (merged / results.CEILING).read_text() == (out / results.CEILING).read_text()


def test_human_ceiling_false_skips_it(gaze_run, tmp_path):
    root, _, _ = gaze_run
    cfg = parse_config(config(root, human_ceiling=False, methods=[{"name": "center"}]))
    assert cfg.to_dict()["human_ceiling"] is False
    assert "human_ceiling" not in parse_config(config(root)).to_dict()  # default: as configs always resolved
    run_config(cfg, out_dir=tmp_path / "off", progress=False)
    assert not (tmp_path / "off" / results.CEILING_ROWS_FILE).exists()
    assert not (tmp_path / "off" / results.CEILING).exists()


def test_density_only_data_says_why_fixation_metrics_and_the_ceiling_are_missing(tmp_path):
    # MIT1003's benchmark layout as the sample ships it: stimuli/ and fixation_maps/, no points.
    rng = np.random.default_rng(1)
    root = tmp_path / "mit"
    (root / "stimuli").mkdir(parents=True)
    (root / "fixation_maps").mkdir()
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)).save(root / "stimuli" / f"{name}.png")
        Image.fromarray(rng.integers(0, 255, size=(40, 50), dtype=np.uint8)).save(root / "fixation_maps" / f"{name}.png")
    cfg = parse_config({
        "name": "mit-tiny", "device": "cpu", "batch_size": 2,
        "dataset": {"name": "mit1003", "root": str(root)},
        "models": [{"spec": "harbor:object_only"}],
        "methods": [{"name": "center"}],
        "metrics": [{"name": n} for n in ("nss", "cc", "information_gain")],
    })
    out = tmp_path / "run"
    run_config(cfg, out_dir=out, progress=False)
    rows = results.read_rows(out / results.SCORES)
    assert len(rows) == 2
    assert all(math.isnan(r["nss"]) and math.isnan(r["information_gain"]) and math.isfinite(r["cc"]) for r in rows)
    skipped = results.read_rows(out / results.SKIPPED)
    why = "nss, information_gain not scored (no fixation points in the data, only a density map)"
    assert [s["reason"] for s in skipped] == [why, why]
    info = json.loads((out / results.CEILING).read_text())
    assert not info["computed"] and "mit1003 data does not record which observer" in info["reason"]
    assert not (out / results.CEILING_ROWS_FILE).exists()
    text = render_text(build(out, n_resamples=100))
    assert f"2 × {why}" in text
    assert "human ceiling: not computed: the mit1003 data does not record which observer" in text


def test_scoring_saved_maps_brings_the_same_ceiling(gaze_run, tmp_path):
    from bench.config import Component
    from bench.saved_maps import score_maps

    root, _, out = gaze_run
    cfg = parse_config(config(root, save_maps=True, methods=[{"name": "center"}]))
    run_config(cfg, out_dir=tmp_path / "saved", progress=False)
    scored = tmp_path / "scored"
    score_maps(
        tmp_path / "saved" / "maps",
        Component("osie", {"root": str(root), "shuffle_images": 3}),
        [Component(n) for n in GAZE],
        scored,
    )
    assert (scored / results.CEILING_ROWS_FILE).read_bytes() == (out / results.CEILING_ROWS_FILE).read_bytes()
    assert "human ceiling" in render_text(build(scored, n_resamples=100))
