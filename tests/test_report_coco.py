"""The COCO sample config (real photos, real model) writes every table format and figure, and its
saved maps re-score to exactly its rows. A few images keep it fast; the full sample runs the
same code."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import results
from bench.cli import main as cli

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "coco_sample.toml"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    from bench.config import load_config
    from bench.engine import run_config
    from bench.report.leaderboard import build
    from bench.report.write import write_tables

    if not CONFIG.exists():
        pytest.skip(f"{CONFIG} not found")
    root = SHARED_DATA / "coco_tiny"
    if not root.is_dir():
        pytest.skip(f"real sample data not found at {root} (CI has ../shared beside the checkout)")
    cfg = load_config(CONFIG, {"save_maps": True, "device": "cpu", "dataset": {"root": str(root), "limit": 8}})
    out = tmp_path_factory.mktemp("coco") / cfg.name
    try:
        run_config(cfg, out_dir=out, progress=False)
    except ImportError as exc:  # the model's weights package is an optional extra
        pytest.skip(f"model for {CONFIG.name} unavailable: {exc}")
    write_tables(build(out, seed=cfg.seed, n_resamples=400), out)
    return out


def test_coco_run_writes_every_table_and_figure(coco_run):
    for name in ("leaderboard.txt", "leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "report.html"):
        assert (coco_run / name).stat().st_size > 300, name
    figures = {p.stem for p in (coco_run / "figures").glob("*.png")}
    # The config's iou@0.25/0.5/0.75 columns are drawn as one IoU-threshold curve.
    assert {"overlays", "bars", "curve_iou_threshold"} <= figures
    assert not (coco_run / "figures" / "NOTES.txt").exists()
    rows = results.read_rows(coco_run / results.SCORES)
    if any(r["difficult"] for r in rows):
        assert "bars_difficult" in figures
        assert "Difficult subset" in (coco_run / "leaderboard.md").read_text()
    md = (coco_run / "leaderboard.md").read_text()
    assert "### Per class: " in md and "| class | method |" in md


def test_coco_saved_maps_rescore_to_the_runs_rows(coco_run, tmp_path):
    assert cli(["score", str(coco_run), "--out", str(tmp_path), "--name", "rescored"]) == 0
    key = lambda r: (r["model"], r["method"], r["image_id"], r["target"])  # noqa: E731
    ran = {key(r): r for r in results.read_rows(coco_run / results.SCORES)}
    scored = {key(r): r for r in results.read_rows(tmp_path / "rescored" / results.SCORES)}
    assert ran and scored.keys() == ran.keys()
    assert len({r["image_id"] for r in ran.values()}) > 1
    for k, row in ran.items():
        other = scored[k]
        for col, value in row.items():
            if col == "output":
                continue
            same = value == other[col] or (isinstance(value, float) and math.isnan(value) and math.isnan(other[col]))
            assert same, (k, col, value, other[col])
