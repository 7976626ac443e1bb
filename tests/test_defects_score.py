"""Issue 16, item 4 (and the empty map of item 10): ``groundbench score`` follows the run's
bad-input policy. An unreadable map, an empty (0 x 0) map and a map file that matches no
(image, target) are each skipped and recorded, and scoring goes on; a folder left without rows
by an earlier attempt does not block the next one."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench import results
from bench.cli import main as cli_main
from bench.maps_io import safe_name
from bench.report.leaderboard import build
from defects_support import tiny_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny run with --save-maps: 8 scenes, each with one object, so 8 maps."""
    tmp = tmp_path_factory.mktemp("defects-score")
    cfg = tiny_config(tmp)
    assert cli_main(["run", str(cfg), "--out", str(tmp), "--save-maps", "--no-progress"]) == 0
    return cfg, tmp / "tiny"


def _maps_copy(run_dir, tmp_path):
    maps = tmp_path / "maps"
    shutil.copytree(run_dir / "maps", maps)
    folder = maps / safe_name("harbor:contextual") / "center"
    files = sorted(folder.glob("*.npy"))
    assert len(files) == 8
    return maps, folder, files


def test_bad_and_stray_maps_are_skipped_and_recorded_and_scoring_goes_on(saved, tmp_path, capsys):
    cfg, run_dir = saved
    maps, folder, files = _maps_copy(run_dir, tmp_path)
    files[0].write_bytes(b"not a numpy file")
    np.save(files[1], np.zeros((0, 0), dtype=np.float32))
    np.save(folder / "harbor-test-s1-99999__boat.npy", np.ones((96, 96), dtype=np.float32))
    code = cli_main(["score", str(maps), "--config", str(cfg), "--out", str(tmp_path), "--name", "rescored"])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "rescored"
    rows = results.read_rows(out / results.SCORES)
    assert len(rows) == 6  # the 6 good maps
    skips = results.read_rows(out / results.SKIPPED)
    reasons = [s["reason"] for s in skips]
    assert any(r.startswith("map not readable: ") and files[0].name in r and "not a readable .npy" in r for r in reasons)
    assert any(r.startswith("map not readable: ") and files[1].name in r and "empty (0 x 0)" in r for r in reasons)
    stray = [s for s in skips if s["reason"].startswith("unmatched map file: ")]
    assert len(stray) == 1 and "harbor-test-s1-99999__boat.npy" in stray[0]["reason"]
    assert stray[0]["image_id"] == "harbor-test-s1-99999" and stray[0]["target"] == "boat"
    footer = build(out).skipped
    assert footer[stray[0]["reason"]] == 1
    assert any(k.startswith("map not readable (2 different reasons") and n == 2 for k, n in footer.items())


def test_a_folder_an_earlier_attempt_left_without_rows_does_not_block(saved, tmp_path, capsys):
    cfg, run_dir = saved
    maps, _, _ = _maps_copy(run_dir, tmp_path)
    args = ["score", str(maps), "--config", str(cfg), "--out", str(tmp_path), "--name", "again"]
    assert cli_main(args) == 0
    (tmp_path / "again" / results.SCORES).write_text("")  # an attempt that died before its first row
    assert cli_main(args) == 0, capsys.readouterr().err
    assert len(results.read_rows(tmp_path / "again" / results.SCORES)) == 8
    assert cli_main(args) == 2  # rows there now: refused, not appended to
    assert "already holds score rows" in capsys.readouterr().err
