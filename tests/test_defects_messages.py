"""Issue 16, item 10: where a traceback used to come, a message that names the file or setting
and the problem; a run that wrote no row leaves nothing that blocks a retry; SIGTERM says what
Ctrl-C says; an error that the same command cannot get past does not claim that it resumes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import results
from bench.cli import main as cli_main
from bench.config import ConfigError, load_config
from bench.data.annotations import DatasetFormatError
from bench.data.gaze import osie
from defects_support import HELD, REPO, _ann, env, tiny_config, write_coco


def test_a_config_path_that_is_a_directory(tmp_path, capsys):
    assert cli_main(["run", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert f"error: {tmp_path}: is a directory, not a config file" in capsys.readouterr().err


@pytest.mark.parametrize("code, text", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")])
def test_a_full_or_read_only_disk_is_a_message_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch, code, text):
    cfg = tiny_config(tmp_path)
    real_fsync = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if "leaderboard.csv" in path:  # the disk fills up while the tables are written
            raise OSError(code, text, path)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert cli_main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{text}" in err and "leaderboard.csv" in err and "Traceback" not in err
    assert "rows written so far are kept" in err
    assert not [p.name for p in (tmp_path / "tiny").rglob("*") if p.name.endswith(".tmp")]


def _v73_mat(path: Path) -> None:
    """A MATLAB v7.3 header (an HDF5 file follows in a real one): scipy refuses such files."""
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    path.write_bytes(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM" + b"\x00" * 512)


def test_an_osie_fixations_file_in_matlab_v73_is_a_message(tmp_path, capsys):
    root = tmp_path / "osie"
    (root / "stimuli").mkdir(parents=True)
    _v73_mat(root / "fixations.mat")
    with pytest.raises(DatasetFormatError, match=r"fixations.mat: a MATLAB v7.3 \(HDF5\) .mat file.*-v7"):
        osie(root, manifest="")
    cfg = tiny_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(
        '[dataset]\nname = "harbor"\nsplit = "test"\nn = 8\nseed = 1\nsize = 96',
        f'[dataset]\nname = "osie"\nroot = "{root}"\nmanifest = ""'))
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "MATLAB v7.3" in capsys.readouterr().err


def test_devices_groundbench_cannot_use(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('device = "cpu"', 'device = "meta"'))
    with pytest.raises(ConfigError, match=r"'device' must be auto, cpu, cuda, cuda:N or mps, got 'meta'"):
        load_config(cfg)
    import torch

    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    cfg.write_text(cfg.read_text().replace('device = "meta"', 'device = "mps"'))
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "device 'mps' asked for, but MPS (Apple GPU) is not available here" in capsys.readouterr().err


def test_seed_and_n_out_of_range_say_so(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("seed = 0", "seed = -1", 1))
    with pytest.raises(ConfigError, match=r"'seed' must be an integer in \[0, 2\*\*63 - 1\], got -1"):
        load_config(cfg)
    cfg = tiny_config(tmp_path, n=-4)
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "harbor n (the number of scenes) must be an integer >= 1, got -4" in capsys.readouterr().err


def test_harbor_nets_take_images_of_different_sizes_in_one_batch(tmp_path):
    from bench.config import parse_config
    from bench.data.synthetic import make_scene
    from bench.engine import run_config

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    images, anns = [], []
    for k, size in enumerate([96, 112, 96, 112]):
        s = make_scene(2, "test", k, None, size)
        assert s.spec.label is not None
        Image.fromarray((s.image * 255).round().astype(np.uint8)).save(root / "val2017" / f"{k}.png")
        images.append({"id": k, "file_name": f"{k}.png", "height": size, "width": size})
        anns.append(_ann(k + 1, k, s))
    write_coco(root, images, anns)
    cfg = parse_config({
        "name": "sizes", "seed": 0, "device": "cpu", "batch_size": 4,
        "dataset": {"name": "coco", "root": str(root), "manifest": ""},
        "models": [{"spec": "harbor:contextual"}],
        "methods": [{"name": "gradcam"}],
        "metrics": [{"name": "pointing_game", "tolerance": 6.0}],
    })
    run_config(cfg, out_dir=tmp_path / "run", progress=False)
    rows = results.read_rows(tmp_path / "run" / results.SCORES)
    assert sorted(r["image_id"] for r in rows) == ["0", "1", "2", "3"]
    assert results.read_rows(tmp_path / "run" / results.SKIPPED) == []


def test_missing_weights_are_a_message_and_leave_nothing_that_blocks_a_retry(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    text = cfg.read_text()
    cfg.write_text(text.replace('spec = "harbor:contextual"', f'spec = "file:{tmp_path / "no" / "weights.pt"}"\narch = "harbor:contextual"'))
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"weights file {tmp_path / 'no' / 'weights.pt'} does not exist" in err and "Traceback" not in err
    assert "no score rows were written" in err
    cfg.write_text(text)  # the weights are found (here: another model under the same run name)
    assert cli_main(["run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert len(results.read_rows(tmp_path / "r" / "tiny" / results.SCORES)) == 8


def test_sigterm_says_what_was_kept_and_exits_143(tmp_path):
    cfg = tiny_config(tmp_path, n=20)
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD, str(tmp_path / "gate"), str(cfg), str(tmp_path / "r")],
        cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    t0 = time.time()
    while not (tmp_path / "waiting").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < 240
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM); rows written so far are kept" in err
    assert "Traceback" not in err


def test_errors_the_same_command_cannot_get_past_do_not_say_it_resumes(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    out = tmp_path / "r"
    assert cli_main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    other = tiny_config(tmp_path, file="other.toml")
    other.write_text(other.read_text().replace("batch_size = 4", "batch_size = 2"))
    assert cli_main(["run", str(other), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "holds results of a different config" in err and "--fresh" in err
    assert "the same command resumes" not in err and f"rows written so far are kept in {out / 'tiny'}" in err
    scores = out / "tiny" / results.SCORES
    lines = scores.read_bytes().split(b"\n")
    lines[1] = b"#" + lines[1][1:]  # a damaged middle line
    scores.write_bytes(b"\n".join(lines))
    assert cli_main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "line 2 is not a valid row" in err and "the same command resumes" not in err
    json.loads(lines[0])  # the rest is untouched
