"""A run killed with SIGKILL and started again ends with exactly the rows and the leaderboard of
a run that was never interrupted.

Each case starts a real ``python -m bench run CONFIG`` in a subprocess and kills it at a
different moment: from outside once some batches are durable (whatever the run is doing right
then), and from inside at the two moments that matter most (a batch's score rows durable but
not yet marked done in ``progress.jsonl``; a score row torn half-way through its write). The
run is then resumed with the same command and compared byte for byte with the uninterrupted
reference: ``scores.jsonl`` (same rows, same order), ``skipped.jsonl``, and the rendered
leaderboard.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
NAME = "resume"
N, BATCH = 40, 4  # ten batches
BATCHES = N // BATCH
CONFIG = f"""
name = "{NAME}"
seed = 0
device = "cpu"
batch_size = {BATCH}

[dataset]
name = "harbor"
split = "test"
n = {N}
seed = 1
size = 96

[[models]]
spec = "harbor:contextual"

[[methods]]
name = "gradcam"

[[methods]]
name = "random"          # stochastic: its per-item seeds must survive a resume

[[metrics]]
name = "pointing_game"
tolerance = 6.0

[[metrics]]
name = "leakage"
"""

ROW_FILES = ("scores.jsonl", "skipped.jsonl")


def compared_files(reference: Path) -> list[str]:
    """The row files and every rendered leaderboard table (``leaderboard.*``)."""
    tables = sorted(p.name for p in reference.glob("leaderboard.*"))
    assert "leaderboard.txt" in tables
    return [*ROW_FILES, *tables]

# Runs inside the subprocess: bench.results.RowWriter.write is wrapped so that the process
# SIGKILLs itself at a chosen write, then the ordinary CLI runs.
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from bench import results
    from bench.cli import main

    mode, target, nth, config, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    original = results.RowWriter.write
    calls = {}

    def write(self, rows):
        rows = list(rows)
        if self.path.name != target or not rows:
            return original(self, rows)
        calls[target] = calls.get(target, 0) + 1
        if calls[target] < nth:
            return original(self, rows)
        if mode == "before":          # die before this write: earlier files are durable
            os.kill(os.getpid(), signal.SIGKILL)
        text = "".join(results.encode_row(r) + "\\n" for r in rows)
        self._fh.write(text[: len(text) // 2])   # "torn": half a write reaches the disk
        self._fh.flush()
        os.fsync(self._fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    results.RowWriter.write = write
    sys.exit(main(["run", config, "--out", out, "--no-progress"]))
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _progress_lines(run_dir: Path) -> int:
    path = run_dir / "progress.jsonl"
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


def _kill_from_outside(config: Path, out: Path, after_batches: int) -> None:
    """Start the real CLI and SIGKILL it as soon as ``after_batches`` batches are durable."""
    log = out / "stderr.txt"  # a file, not a pipe: a full pipe would block the run
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench", "run", str(config), "--out", str(out), "--no-progress"],
            cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=err,
        )
        deadline = time.monotonic() + 300
        try:
            while _progress_lines(out / NAME) < after_batches:
                if proc.poll() is not None:
                    pytest.fail(f"run ended (rc {proc.returncode}) before it could be killed: {log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail("run made no progress in 300 s")
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _kill_from_inside(config: Path, out: Path, mode: str, target: str, nth: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, mode, target, str(nth), str(config), str(out)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def _resume(config: Path, out: Path) -> None:
    # The same command a user types again; in-process to save the interpreter start-up.
    assert cli_main(["run", str(config), "--out", str(out), "--no-progress"]) == 0


def _assert_same_as_reference(run_dir: Path, reference: Path) -> None:
    for name in compared_files(reference):
        got, want = (run_dir / name).read_bytes(), (reference / name).read_bytes()
        assert got == want, f"{name} differs from the uninterrupted run"
    keys = [
        (r["model"], r["method"], r["sample"], r["target"])
        for r in map(json.loads, (run_dir / "scores.jsonl").read_text().splitlines())
    ]
    assert len(keys) == len(set(keys)), "duplicated score rows"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume-config") / "resume.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    assert cli_main(["run", str(config), "--out", str(out), "--no-progress"]) == 0
    rows = (out / NAME / "scores.jsonl").read_text().splitlines()
    assert len(rows) > 50  # 36 images with a target x 2 methods
    return out / NAME


def test_killed_from_outside_mid_run_resumes_to_identical_results(config, reference, tmp_path):
    _kill_from_outside(config, tmp_path, after_batches=3)
    run_dir = tmp_path / NAME
    done = _progress_lines(run_dir)
    assert 3 <= done < BATCHES, f"the kill landed after {done} of {BATCHES} batches"
    _resume(config, tmp_path)
    _assert_same_as_reference(run_dir, reference)


def test_killed_after_rows_are_durable_but_before_the_batch_is_marked_done(config, reference, tmp_path):
    # Batch 3's rows reach scores.jsonl; the process dies before progress.jsonl says so.
    _kill_from_inside(config, tmp_path, "before", "progress.jsonl", 3)
    run_dir = tmp_path / NAME
    assert _progress_lines(run_dir) == 2
    on_disk = [json.loads(x) for x in (run_dir / "scores.jsonl").read_text().splitlines()]
    assert max(r["sample"] for r in on_disk) >= 2 * BATCH  # rows of the unfinished batch exist
    _resume(config, tmp_path)
    _assert_same_as_reference(run_dir, reference)


def test_torn_row_and_a_second_kill_still_resume_to_identical_results(config, reference, tmp_path):
    run_dir = tmp_path / NAME
    # First session: half of batch 5's score rows are written, then SIGKILL.
    _kill_from_inside(config, tmp_path, "torn", "scores.jsonl", 5)
    assert not (run_dir / "scores.jsonl").read_bytes().endswith(b"\n"), "no torn row was left"
    assert _progress_lines(run_dir) == 4
    # Second session resumes, then dies with half a progress record written (its 3rd batch).
    _kill_from_inside(config, tmp_path, "torn", "progress.jsonl", 3)
    assert not (run_dir / "progress.jsonl").read_bytes().endswith(b"\n")
    assert _progress_lines(run_dir) == 6
    _resume(config, tmp_path)
    _assert_same_as_reference(run_dir, reference)
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert len(prov["resumed_utc"]) == 2  # both restarts are on record


def test_resuming_a_finished_run_changes_nothing(config, reference, tmp_path):
    import shutil

    shutil.copytree(reference, tmp_path / NAME)
    names = compared_files(reference)
    before = {n: (tmp_path / NAME / n).read_bytes() for n in names}
    _resume(config, tmp_path)
    assert {n: (tmp_path / NAME / n).read_bytes() for n in names} == before
