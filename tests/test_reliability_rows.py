"""The row files (``bench/results.py``) and what a resumed run does with what it finds.

- Every write is one flushed, fsynced append of whole lines; a torn last line (no newline) is
  never read as data and is cut away before the next append.
- A damaged line anywhere else is not a torn write: reading stops with an error naming the file
  and the line, and a resumed run refuses to touch the folder.
- A resumed run must have the same config (``num_workers``, ``output_dir`` aside) and the same
  code (package versions, git commit) as the session that wrote the rows; otherwise it stops
  before changing anything.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from bench import results
from bench.config import parse_config
from bench.engine import RunError, run_config

CONFIG = {
    "name": "rows", "seed": 0, "device": "cpu", "batch_size": 8,
    "dataset": {"name": "harbor", "split": "test", "n": 16, "seed": 1, "size": 96},
    "models": [{"spec": "harbor:contextual"}],
    "methods": [{"name": "gradcam"}],
    "metrics": [{"name": "pointing_game", "tolerance": 6.0}],
}


# -- the file format ---------------------------------------------------------------------------


def test_rows_round_trip_and_undefined_scores_read_back_as_nan(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = [
        {"model": "m", "target": "boat", "score": 0.25, "hit": True, "n": 3},
        {"model": "m", "target": None, "score": math.nan, "ratio": math.inf, "reason": None},
    ]
    with results.RowWriter(path) as w:
        w.write(rows)
    assert path.read_text().splitlines()[1] == '{"model":"m","target":null,"score":null,"ratio":null,"reason":null}'
    back = results.read_rows(path)
    assert back[0] == rows[0]
    assert back[1]["target"] is None and back[1]["reason"] is None  # names stay None
    assert math.isnan(back[1]["score"]) and math.isnan(back[1]["ratio"])  # scores are NaN


def test_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "s.jsonl"
    with results.RowWriter(path) as w:
        w.write([{"i": 0}, {"i": 1}])
    with open(path, "ab") as fh:
        fh.write(b'{"i":2,"sco')  # what SIGKILL in the middle of a write leaves
    assert results.read_rows(path) == [{"i": 0}, {"i": 1}]
    with results.RowWriter(path) as w:  # a resumed run opens the file again
        w.write([{"i": 2}])
    assert path.read_bytes() == b'{"i":0}\n{"i":1}\n{"i":2}\n'


def test_torn_tail_that_parses_is_still_not_data(tmp_path):
    # A complete JSON object without its newline is as torn as half of one.
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"i":0}\n{"i":1}')
    assert results.read_rows(path) == [{"i": 0}]
    assert results.truncate_torn_tail(path) == len(b'{"i":1}')
    assert path.read_bytes() == b'{"i":0}\n'


@pytest.mark.parametrize("damage", [b'{"i":1,,}\n', b"[1, 2]\n", b"\xff\xfe\n"])
def test_damaged_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path, damage):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"i":0}\n' + damage + b'{"i":2}\n')
    with pytest.raises(ValueError, match=rf"{path.name}: line 2 is not a valid row"):
        results.read_rows(path)


def test_atomic_writes_leave_no_temporary_file(tmp_path):
    results.write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    results.write_text(tmp_path / "b.txt", "text\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.txt"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1, 2], "b": 1}


# -- what a resumed run accepts --------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rows") / "rows"
    run_config(parse_config(CONFIG, source="rows-test"), out_dir=out, progress=False)
    return out


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    out = tmp_path / "rows"
    shutil.copytree(finished, out)
    return out


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".jsonl"}


def test_damaged_scores_file_stops_the_resume_and_changes_nothing(copy):
    lines = (copy / "scores.jsonl").read_bytes().split(b"\n")
    lines[3] = b"#" + lines[3][1:]  # a flipped byte, not a torn tail
    (copy / "scores.jsonl").write_bytes(b"\n".join(lines))
    before = _snapshot(copy)
    with pytest.raises(ValueError, match=r"scores\.jsonl: line 4 is not a valid row"):
        run_config(parse_config(CONFIG, source="rows-test"), out_dir=copy, resume=True, progress=False)
    assert _snapshot(copy) == before


def test_resume_refuses_rows_written_by_other_code(copy):
    prov = json.loads((copy / "provenance.json").read_text())
    prov["identity"]["packages"]["torch"] = "1.0.0"
    prov["identity"]["git_commit"] = "0" * 40
    results.write_json(copy / "provenance.json", prov)
    before = _snapshot(copy)
    with pytest.raises(RunError, match=r"holds rows written by other code \(packages: .*; git_commit: .*--fresh"):
        run_config(parse_config(CONFIG, source="rows-test"), out_dir=copy, resume=True, progress=False)
    assert _snapshot(copy) == before


def test_resume_refuses_a_different_config_but_not_more_workers(copy):
    before = _snapshot(copy)
    other = {**CONFIG, "batch_size": 4}  # batch composition can change the last bits of a score
    with pytest.raises(RunError, match="holds results of a different config"):
        run_config(parse_config(other, source="rows-test"), out_dir=copy, resume=True, progress=False)
    assert _snapshot(copy) == before
    workers = {**CONFIG, "num_workers": 1, "output_dir": "elsewhere"}
    summary = run_config(parse_config(workers, source="rows-test"), out_dir=copy, resume=True, progress=False)
    assert summary.rows_written == 0 and summary.resumed_samples == 16
    assert _snapshot(copy)["scores.jsonl"] == before["scores.jsonl"]


def test_a_new_run_into_a_folder_with_results_needs_resume(copy):
    with pytest.raises(RunError, match="already holds results; use --resume"):
        run_config(parse_config(CONFIG, source="rows-test"), out_dir=copy, resume=False, progress=False)
