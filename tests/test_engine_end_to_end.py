"""A tiny config runs end to end; the leaderboard is recomputed from the rows alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import results
from bench.config import ConfigError, parse_config
from bench.engine import run_config
from bench.report.leaderboard import build
from bench.report.render import render_text

TINY = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "batch_size": 8,
    "dataset": {"name": "harbor", "split": "test", "n": 30, "seed": 1},
    "models": [{"spec": "harbor:contextual"}, {"spec": "harbor:object_only"}],
    "methods": [{"name": "gradcam"}, {"name": "center"}, {"name": "random"}],
    "metrics": [
        {"name": "pointing_game", "tolerance": 6.0},
        {"name": "energy_pointing_game"},
        {"name": "leakage"},
    ],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = parse_config(TINY)
    summary = run_config(cfg, out_dir=out, progress=False)
    return cfg, summary, out


def test_rows_cover_every_model_method_and_target(tiny_run):
    cfg, summary, out = tiny_run
    rows = results.read_rows(out / results.SCORES)
    with_target = sum(1 for i in range(30) if i % 22 < 18)  # 4 of every 22 scenes are empty
    assert len(rows) == summary.rows_written == 2 * 3 * with_target
    assert {r["model"] for r in rows} == {"harbor:contextual", "harbor:object_only"}
    assert {r["method"] for r in rows} == {"gradcam", "center", "random"}
    keys = {(r["model"], r["method"], r["image_id"], r["target"]) for r in rows}
    assert len(keys) == len(rows), "no duplicated rows"
    for r in rows:
        assert 0.0 <= r["energy_pointing_game"] <= 1.0
        assert r["pointing_game"] in (0.0, 1.0)
    skipped = results.read_rows(out / results.SKIPPED)
    assert len(skipped) == 2 * (30 - with_target)
    assert all(s["reason"] == "no targets in this image" for s in skipped)


def test_results_directory_holds_config_provenance_and_model_facts(tiny_run):
    cfg, _summary, out = tiny_run
    prov = json.loads((out / results.PROVENANCE).read_text())
    assert prov["identity"]["seed"] == 0
    assert prov["identity"]["packages"]["torch"]
    assert prov["config"] == cfg.to_dict()
    assert prov["environment"]["device"] == "cpu"
    models = json.loads((out / results.MODELS).read_text())
    assert models["harbor:contextual"]["info"]["reliance"] > models["harbor:object_only"]["info"]["reliance"]
    assert models["harbor:contextual"]["methods"]["gradcam"]["params"]["layer"] == "features"
    import tomllib

    assert tomllib.loads((out / results.CONFIG).read_text())["dataset"]["n"] == 30


def test_center_baseline_is_the_same_for_both_models(tiny_run):
    _cfg, _summary, out = tiny_run
    rows = results.read_rows(out / results.SCORES)
    by = {}
    for r in rows:
        if r["method"] == "center":
            by.setdefault(r["image_id"], []).append(r["energy_pointing_game"])
    assert all(len(v) == 2 and v[0] == v[1] for v in by.values())


def test_leaderboard_recomputed_from_rows_equals_the_runs_own(tiny_run):
    _cfg, _summary, out = tiny_run
    first = render_text(build(out))
    # Recompute from a copy holding only the rows and the column metadata.
    import shutil

    copy = out.parent / "rows-only"
    copy.mkdir()
    shutil.copy(out / results.SCORES, copy / results.SCORES)
    shutil.copy(out / "columns.json", copy / "columns.json")
    again = build(copy)
    lb = build(out)
    assert again.cells.drop(columns=[]).equals(lb.cells)
    # The CLI prints the same table.
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "leaderboard", str(out)], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == first.strip()
    assert "gradcam" in first and "leakage" in first and "reliance on context" in first


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="did you mean 'gradcam'"):
        parse_config({**TINY, "methods": [{"name": "gradcma"}]})
    with pytest.raises(ConfigError, match="did you mean 'pointing_game'"):
        parse_config({**TINY, "metrics": [{"name": "pointing_gme"}]})
    with pytest.raises(ConfigError, match="unknown key 'batchsize'"):
        parse_config({**TINY, "batchsize": 3})
    with pytest.raises(ConfigError, match="'batch_size' must be int"):
        parse_config({**TINY, "batch_size": "8"})
    with pytest.raises(ConfigError, match="tolerance"):
        parse_config({**TINY, "metrics": [{"name": "pointing_game", "tolerence": 3}]})


def test_cli_lists_methods_and_metrics():
    out = subprocess.run([sys.executable, "-m", "bench", "methods"], capture_output=True, text=True, check=True).stdout
    for name in ("gradcam", "center", "random"):
        assert name in out
    assert "cam" in out and "baseline" in out
    out = subprocess.run([sys.executable, "-m", "bench", "metrics"], capture_output=True, text=True, check=True).stdout
    for name in ("pointing_game", "energy_pointing_game", "leakage"):
        assert name in out
    assert "class_mean" in out
