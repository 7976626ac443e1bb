"""``groundbench score``: saved maps re-scored give exactly the run's own score rows; maps from
another tool (other resolution, own folder) join a leaderboard; bad maps fail clearly."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from bench import results
from bench.cli import main as cli
from bench.config import Component
from bench.maps_io import map_path, safe_name
from bench.report.leaderboard import build
from bench.saved_maps import ScoreError, decode_name, find_map_sets, load_map, score_maps

from report_support import TINY, tiny_run

KEY = ("model", "method", "image_id", "target")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory.getbasetemp())


def _by_key(rows):
    return {tuple(r[k] for k in KEY): r for r in rows}


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_rescored_saved_maps_equal_the_runs_rows(run_dir, tmp_path, capsys):
    code = cli(["score", str(run_dir), "--out", str(tmp_path), "--name", "rescored"])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "rescored"
    ran = _by_key(results.read_rows(run_dir / results.SCORES))
    scored = _by_key(results.read_rows(out / results.SCORES))
    assert len(ran) == 2 * 3 * 26 and scored.keys() == ran.keys()
    for key, row in ran.items():
        other = scored[key]
        assert other["output"] is None or math.isnan(other["output"])  # not in a map file
        assert set(other) == set(row)
        diff = {k: (row[k], other[k]) for k in row if k != "output" and not _same(row[k], other[k])}
        assert diff == {}, (key, diff)
    # Same columns, same skips, hence the same leaderboard.
    assert json.loads((out / "columns.json").read_text()) == json.loads((run_dir / "columns.json").read_text())
    assert len(results.read_rows(out / results.SKIPPED)) == len(results.read_rows(run_dir / results.SKIPPED))
    a = build(run_dir, n_resamples=200).cells
    b = build(out, n_resamples=200).cells
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "report.html", "figures/bars.png", "figures/overlays.png"):
        assert (out / name).exists(), name


def _tool_maps(run_dir, root, model="otherTool v2", method="my method"):
    """What another tool would write: half-resolution float64 maps in its own folder, built
    here from the run's saved Grad-CAM maps of harbor:contextual."""
    folder = root / safe_name(model) / safe_name(method)
    folder.mkdir(parents=True)
    src = run_dir / "maps" / safe_name("harbor:contextual") / "gradcam"
    for f in sorted(src.glob("*.npy")):
        m = np.load(f).astype(np.float64)
        np.save(folder / f.name, m[::2, ::2])
    return folder


def test_maps_from_another_tool_join_a_leaderboard(run_dir, tmp_path):
    root = tmp_path / "tool"
    folder = _tool_maps(run_dir, root)
    missing = sorted(folder.glob("*.npy"))[0]
    missing.unlink()
    ds = Component("harbor", dict(TINY["dataset"]))
    ds.params.pop("name")
    metrics = [Component("pointing_game", {"tolerance": 6.0}), Component("leakage", {}, "leak")]
    summary = score_maps(root, ds, metrics, tmp_path / "out")
    rows = results.read_rows(tmp_path / "out" / results.SCORES)
    assert summary.rows_written == len(rows) == 25
    assert {r["model"] for r in rows} == {"otherTool v2"} and {r["method"] for r in rows} == {"my method"}
    assert set(rows[0]) >= {"pointing_game", "leak", "difficult", "map_invalid"}
    skipped = results.read_rows(tmp_path / "out" / results.SKIPPED)
    no_map = [s for s in skipped if s["reason"].startswith("no map file")]
    assert len(no_map) == 1 and no_map[0]["method"] == "my method" and missing.name in no_map[0]["reason"]
    # Half-resolution maps are resized back; the pointing game mostly agrees with the run's.
    ran = {(r["image_id"], r["target"]): r["pointing_game"] for r in results.read_rows(run_dir / results.SCORES) if r["model"] == "harbor:contextual" and r["method"] == "gradcam"}
    agree = np.mean([ran[(r["image_id"], r["target"])] == r["pointing_game"] for r in rows])
    assert agree >= 0.8
    lb = build(tmp_path / "out", n_resamples=200)
    assert set(lb.cells.metric) == {"pointing_game", "leak"}


def test_map_names_decode_back():
    for name in ("harbor:contextual", "otherTool v2", "a/b\\c", "plain-name_1.0", "gradcam[layer=features]"):
        assert decode_name(safe_name(name)) == name
    assert decode_name("harbor_3a_contextual") == "harbor:contextual"
    assert decode_name("x_41_y") == "x_41_y"  # "A" is never encoded, so "_41_" is literal
    # safe_name keeps "_", so a name that itself reads "_<hex of an unsafe char>_" is ambiguous;
    # the folder decodes to the unsafe character (documented in bench.saved_maps).
    assert decode_name(safe_name("x_3a_y")) == "x:y"


def test_bad_maps_and_requests_fail_clearly(run_dir, tmp_path, capsys):
    with pytest.raises(ScoreError, match="no <model>/<method>/\\*.npy maps found"):
        find_map_sets(tmp_path)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 3, 4)))
    with pytest.raises(ScoreError, match="bad.npy: expected a numeric H x W map, got shape \\(2, 3, 4\\)"):
        load_map(bad, (3, 4))
    bad.write_bytes(b"not numpy")
    with pytest.raises(ScoreError, match="bad.npy: not a readable .npy array"):
        load_map(bad, (3, 4))
    np.save(bad, np.ones((1, 3, 4), dtype=np.float32))
    assert tuple(load_map(bad, (6, 8)).shape) == (6, 8)

    maps_copy = tmp_path / "maps"
    shutil.copytree(run_dir / "maps" / safe_name("harbor:object_only"), maps_copy / "m")
    assert cli(["score", str(maps_copy), "--out", str(tmp_path)]) == 2
    assert "--dataset NAME or --config" in capsys.readouterr().err
    assert cli(["score", str(maps_copy), "--dataset", "harbor", "--metric", "pointing_gme", "--out", str(tmp_path)]) == 2
    assert "pointing_game" in capsys.readouterr().err  # did-you-mean
    assert cli(["score", str(maps_copy), "--dataset", "harbor", "--metric", "pointing_game:tolerence=3", "--out", str(tmp_path)]) == 2
    assert "tolerance" in capsys.readouterr().err


def test_saved_map_files_are_where_maps_io_says(run_dir):
    rows = results.read_rows(run_dir / results.SCORES)
    r = rows[0]
    path = map_path(run_dir / "maps", r["model"], r["method"], r["image_id"], r["target"])
    m = np.load(path)
    assert m.dtype == np.float32 and m.ndim == 2
