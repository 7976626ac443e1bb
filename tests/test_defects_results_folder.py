"""Issue 16, items 1-3: the results folder. A run name is one safe folder name, ``--fresh`` only
empties a folder groundbench made (it holds the results marker), a folder is locked while a run
writes it (a second run fails at once, naming the holder), a repeated score row is an error on
read, and skip records obey the same done-marking as score rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import results
from bench.cli import main as cli_main
from bench.report.leaderboard import build
from defects_support import HELD, REPO, bench_cmd, env, tiny_config

# -- item 1: run names and --fresh -----------------------------------------------------------------


def test_empty_name_with_fresh_deletes_no_other_run(tmp_path, capsys):
    parent = tmp_path / "results"
    other = parent / "other-run"
    other.mkdir(parents=True)
    (other / "scores.jsonl").write_text("precious\n")
    cfg = tiny_config(tmp_path)
    code = cli_main(["run", str(cfg), "--name", "", "--fresh", "--out", str(parent), "--no-progress"])
    assert code == 2
    assert "is empty" in capsys.readouterr().err
    assert (other / "scores.jsonl").read_text() == "precious\n"


@pytest.mark.parametrize("name", ["ABSOLUTE", "../../x", "a/b", "..", ".hidden", "-rf", "x" * 300])
def test_unsafe_run_names_are_refused_before_anything_is_written(tmp_path, name, capsys):
    if name == "ABSOLUTE":
        name = str(tmp_path / "elsewhere" / "other")  # an absolute name: another folder entirely
    cfg = tiny_config(tmp_path / "cfg")
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    code = cli_main(["run", str(cfg), f"--name={name}", "--fresh", "--out", str(tmp_path / "results"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "'name'" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before  # nothing beside either


def test_fresh_refuses_a_folder_without_the_results_marker(tmp_path, capsys):
    target = tmp_path / "results" / "tiny"
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("not groundbench's")
    cfg = tiny_config(tmp_path)
    code = cli_main(["run", str(cfg), "--fresh", "--out", str(tmp_path / "results"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert results.MARKER in err and "nothing in it was deleted" in err
    assert (target / "notes.txt").read_text() == "not groundbench's"
    assert not (target / results.SCORES).exists()


def test_a_run_never_writes_into_a_folder_it_did_not_make(tmp_path, capsys):
    target = tmp_path / "results" / "tiny"
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("not groundbench's")
    cfg = tiny_config(tmp_path)
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "results"), "--no-progress"]) == 1
    assert "not a groundbench results folder" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_fresh_empties_a_folder_groundbench_made(tmp_path):
    cfg = tiny_config(tmp_path)
    out = tmp_path / "results"
    assert cli_main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    run_dir = out / "tiny"
    assert results.is_results_dir(run_dir)
    rows = (run_dir / results.SCORES).read_bytes()
    (run_dir / "stale.txt").write_text("from an earlier session")
    assert cli_main(["run", str(cfg), "--fresh", "--out", str(out), "--no-progress"]) == 0
    assert not (run_dir / "stale.txt").exists()
    assert (run_dir / results.SCORES).read_bytes() == rows
    assert results.is_results_dir(run_dir)


# -- item 2: one writer per folder; duplicates are an error --------------------------------------------

def _start_held(tmp_path: Path, cfg: Path, out: Path) -> subprocess.Popen:
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD, str(gate), str(cfg), str(out)], cwd=REPO, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    t0 = time.time()
    while not (tmp_path / "waiting").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < 240, "the held run never reached its first write"
        time.sleep(0.1)
    return proc


def test_a_second_run_of_the_same_folder_fails_at_once_naming_the_holder(tmp_path):
    cfg = tiny_config(tmp_path, n=20)
    out = tmp_path / "results"
    first = _start_held(tmp_path, cfg, out)
    try:
        t0 = time.time()
        second = subprocess.run(bench_cmd("run", str(cfg), "--out", str(out), "--no-progress"),
                                cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 1, second.stderr[-2000:]
        assert time.time() - t0 < 60  # at once, not after a run's worth of work
        assert f"in use by another groundbench process (pid {first.pid} on " in second.stderr
        assert str(cfg) in second.stderr  # the holder's command line
    finally:
        (tmp_path / "gate").write_text("go")
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    rows = results.read_rows(out / "tiny" / results.SCORES)
    assert len(rows) == 18  # 20 scenes, 2 without an object: each row once
    lb = build(out / "tiny")
    assert set(lb.cells["n"]) == {18}
    assert sum(lb.skipped.values()) == 2


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    cfg = tiny_config(tmp_path, n=20)
    out = tmp_path / "results"
    first = _start_held(tmp_path, cfg, out)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    assert cli_main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert len(results.read_rows(out / "tiny" / results.SCORES)) == 18


def test_duplicate_score_rows_are_an_error_on_read_never_averaged(tmp_path):
    cfg = tiny_config(tmp_path)
    assert cli_main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    scores = tmp_path / "tiny" / results.SCORES
    lines = scores.read_text().splitlines(keepends=True)
    scores.write_text("".join(lines) + lines[0])  # a second writer appended a row again
    key = json.loads(lines[0])
    with pytest.raises(ValueError, match=rf"image_id='{key['image_id']}'.*appears 2 times"):
        build(tmp_path / "tiny")
    assert cli_main(["leaderboard", str(tmp_path / "tiny")]) == 1


# -- item 3: skip records obey the done-marking --------------------------------------------------------


def test_deleting_scores_and_running_again_records_each_skip_once(tmp_path):
    cfg = tiny_config(tmp_path, n=20)
    assert cli_main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    run_dir = tmp_path / "tiny"
    skipped = (run_dir / results.SKIPPED).read_bytes()
    scores = (run_dir / results.SCORES).read_bytes()
    assert len(results.read_rows(run_dir / results.SKIPPED)) == 2
    (run_dir / results.SCORES).unlink()
    assert cli_main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    assert (run_dir / results.SKIPPED).read_bytes() == skipped
    assert (run_dir / results.SCORES).read_bytes() == scores
    assert build(run_dir).skipped == {"no targets in this image": 2}
