"""The same config run twice on the CPU gives byte-identical score rows, and the provenance
records what that depends on: seeds, versions, the config, and hashes of the data.

The two runs are separate processes with different ``PYTHONHASHSEED`` (so nothing may depend on
set or dict-of-str iteration order) started from different working folders with the same
relative ``--out``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.batching import sample_digest
from bench.data.sample import Sample, Target

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
name = "det"
seed = 0               # the run seed also seeds harbor model training: 0 reuses the cached nets
device = "cpu"
batch_size = 8

[dataset]
name = "harbor"
split = "test"
n = 24
seed = 1
size = 96

[[models]]
spec = "harbor:contextual"

[[methods]]
name = "gradcam"

[[methods]]
name = "random"        # stochastic: seeded per (image, target, method)

[[metrics]]
name = "pointing_game"
tolerance = 6.0

[[metrics]]
name = "leakage"
"""


def _run(cwd: Path, config: Path, hash_seed: str) -> Path:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(config), "--out", "results", "--no-progress"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "results" / "det"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("determinism")
    config = base / "det.toml"
    config.write_text(CONFIG)
    return _run(base / "a", config, "1"), _run(base / "b", config, "2")


def test_same_config_twice_gives_byte_identical_rows_and_tables(two_runs):
    a, b = two_runs
    assert (a / "scores.jsonl").stat().st_size > 1000
    tables = sorted(p.name for p in a.glob("leaderboard.*"))
    assert "leaderboard.txt" in tables
    for name in ["scores.jsonl", "skipped.jsonl", "config.toml", "models.json", *tables]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_provenance_records_what_the_numbers_depend_on(two_runs):
    a, b = two_runs
    pa, pb = (json.loads((d / "provenance.json").read_text()) for d in two_runs)
    ident = pa["identity"]
    # seeds: the run's, and the dataset's (in the recorded config)
    assert ident["seed"] == 0 and pa["config"]["seed"] == 0 and pa["config"]["dataset"]["seed"] == 1
    # versions
    assert ident["torch"] == torch.__version__
    assert ident["python"] == sys.version.split()[0]
    for pkg in ("groundbench", "torch", "numpy"):
        assert pkg in ident["packages"], pkg
    assert "git_commit" in ident
    # the config, as resolved, and its hash
    assert pa["config"]["methods"] == [{"name": "gradcam"}, {"name": "random"}]
    assert len(ident["config_sha256"]) == 64 and len(ident["manifest_sha256"]) == 64
    # the data: one hash per model over every sample's model input and ground truth
    assert pa["data"]["harbor:contextual"]["samples"] == 24
    assert len(pa["data"]["harbor:contextual"]["sha256"]) == 64
    # what can change numbers on the CPU: device and thread count
    assert pa["environment"]["device"] == "cpu" and pa["environment"]["torch_threads"] >= 1
    # two runs of one config: the same identity, data and environment; only the times differ
    assert pa["identity"] == pb["identity"]
    assert pa["data"] == pb["data"]
    assert pa["environment"] == pb["environment"]
    assert {k for k in pa if pa[k] != pb.get(k)} <= {"started_utc"}


def _sample(image: torch.Tensor, mask: torch.Tensor, label: str = "boat") -> Sample:
    return Sample(image=image, image_id="x", targets=[Target(label, mask, boxes=torch.tensor([[1.0, 1, 3, 3]]))])


def test_data_hash_sees_any_change_in_input_or_ground_truth():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 8, 8, generator=g)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 2:5] = True
    base = sample_digest(image, _sample(image, mask))
    assert sample_digest(image.clone(), _sample(image.clone(), mask.clone())) == base  # content, not identity
    nudged = image.clone()
    nudged[1, 4, 4] += 1e-7
    flipped = mask.clone()
    flipped[0, 0] = True
    assert len({
        base,
        sample_digest(nudged, _sample(nudged, mask)),
        sample_digest(image, _sample(image, flipped)),
        sample_digest(image, _sample(image, mask, label="car")),
    }) == 4
