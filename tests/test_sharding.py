"""Sharded runs merge into exactly the single-process run: same rows, same order, same
leaderboard; shard selection from torchrun / Slurm environment variables."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from bench import results
from bench.config import parse_config
from bench.engine import run_config, shard_indices
from bench.merge import MergeError, merge_shards
from bench.report.leaderboard import build
from bench.sharding import ShardError, local_device_index, parse_shard, resolve_shard, shard_dir_name, shard_from_env

N_SAMPLES = 40
TINY = {
    "name": "tiny-shards",
    "seed": 0,
    "device": "cpu",
    "batch_size": 8,  # 40 samples: 5 single-run batches; shards of 14/13/13 batch differently
    "dataset": {"name": "harbor", "split": "test", "n": N_SAMPLES, "seed": 1},
    "models": [{"spec": "harbor:object_only"}, {"spec": "harbor:contextual"}],
    "methods": [{"name": "gradcam"}, {"name": "center"}, {"name": "random"}],
    "metrics": [{"name": "pointing_game", "tolerance": 6.0}, {"name": "energy_pointing_game"}, {"name": "leakage"}],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    cfg = parse_config(TINY)
    single = root / "single"
    run_config(cfg, out_dir=single, progress=False)
    shard_root = root / "sharded"
    for k in range(3):
        run_config(cfg, out_dir=shard_root / shard_dir_name((k, 3)), shard=(k, 3), progress=False)
    return root, single, shard_root


def _lines(path):
    return (path).read_text().splitlines()


def test_merged_rows_are_the_single_run_rows_in_the_same_order(runs):
    root, single, shard_root = runs
    merged = root / "merged"
    summary = merge_shards([shard_root], merged)
    assert summary.missing == [] and len(summary.shards) == 3
    # Byte-identical score rows: same values, same keys, same order.
    assert _lines(merged / results.SCORES) == _lines(single / results.SCORES)
    skipped_single = sorted(_lines(single / results.SKIPPED))
    assert sorted(_lines(merged / results.SKIPPED)) == skipped_single and skipped_single
    # Each shard really scored only its own samples.
    for k in range(3):
        rows = results.read_rows(shard_root / shard_dir_name((k, 3)) / results.SCORES)
        assert {r["sample"] for r in rows} <= set(shard_indices(N_SAMPLES, (k, 3)))


def test_merged_leaderboard_is_identical_to_the_single_run(runs):
    root, single, shard_root = runs
    merged = root / "merged-lb"
    merge_shards([shard_root / shard_dir_name((k, 3)) for k in (2, 0, 1)], merged)  # any order
    a = build(single, seed=0, n_resamples=500)
    b = build(merged, seed=0, n_resamples=500)
    pd.testing.assert_frame_equal(a.cells, b.cells)
    assert a.skipped == b.skipped and a.facts == b.facts
    prov = json.loads((merged / results.PROVENANCE).read_text())
    assert [m["shard"] for m in prov["merged_from"]] == [[0, 3], [1, 3], [2, 3]]
    single_prov = json.loads((single / results.PROVENANCE).read_text())
    if "data" in single_prov:  # one data hash over all samples, as a single run records it
        assert prov["data"] == single_prov["data"]


def test_merge_refuses_missing_duplicate_and_unfinished_shards(runs, tmp_path):
    _root, _single, shard_root = runs
    dirs = [shard_root / shard_dir_name((k, 3)) for k in range(3)]
    with pytest.raises(MergeError, match="missing"):
        merge_shards(dirs[:2], tmp_path / "a")
    partial = merge_shards(dirs[:2], tmp_path / "b", allow_partial=True)
    assert partial.missing == [2]
    with pytest.raises(MergeError, match="given twice"):
        merge_shards([dirs[0], dirs[0], dirs[1], dirs[2]], tmp_path / "c")
    # A shard whose last batch never became durable is unfinished.
    broken = tmp_path / "broken" / shard_dir_name((1, 3))
    shutil.copytree(dirs[1], broken)
    lines = _lines(broken / "progress.jsonl")
    (broken / "progress.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(MergeError, match="unfinished"):
        merge_shards([dirs[0], broken, dirs[2]], tmp_path / "d")
    with pytest.raises(MergeError, match="not empty"):
        merge_shards(dirs, tmp_path / "b")


def test_merge_refuses_shards_of_different_configs(runs, tmp_path):
    _root, _single, shard_root = runs
    other = tmp_path / shard_dir_name((0, 3))
    shutil.copytree(shard_root / shard_dir_name((0, 3)), other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["seed"] = 7
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MergeError, match="different config"):
        merge_shards([other, shard_root / shard_dir_name((1, 3)), shard_root / shard_dir_name((2, 3))], tmp_path / "m")


def test_merge_command_line(runs, tmp_path):
    from bench.cli import main

    _root, single, shard_root = runs
    assert main(["merge", str(shard_root), "-o", str(tmp_path / "cli")]) == 0
    assert _lines(tmp_path / "cli" / results.SCORES) == _lines(single / results.SCORES)
    assert (tmp_path / "cli" / "leaderboard.txt").exists()
    assert main(["merge", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "x")]) == 1


# -- shard selection ---------------------------------------------------------------------------


def test_shard_from_torchrun_environment():
    assert shard_from_env({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "2"}) == (2, 4)
    assert shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: no sharding
    assert shard_from_env({}) is None
    with pytest.raises(ShardError, match="together"):
        shard_from_env({"RANK": "1"})
    with pytest.raises(ShardError, match="0 <= K < N"):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ShardError, match="not an integer"):
        shard_from_env({"RANK": "x", "WORLD_SIZE": "4"})


def test_shard_from_slurm_array_environment():
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0"}
    assert shard_from_env(env) == (3, 8)
    # --array=1-8: ids start at 1
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}) == (0, 8)
    # --array=0-30:10 -> ids 0, 10, 20, 30
    step = {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "10"}
    assert shard_from_env({**step, "SLURM_ARRAY_TASK_ID": "20"}) == (2, 4)
    with pytest.raises(ShardError, match="grid"):
        shard_from_env({**step, "SLURM_ARRAY_TASK_ID": "15"})
    with pytest.raises(ShardError, match="COUNT"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1"})


def test_torchrun_inside_a_slurm_array_nests_shards():
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "RANK": "1", "WORLD_SIZE": "2"}
    assert shard_from_env(env) == (3, 6)
    # every (array task, rank) pair gets a distinct shard, and they cover 0..5
    got = {
        shard_from_env({"SLURM_ARRAY_TASK_ID": str(a), "SLURM_ARRAY_TASK_COUNT": "3", "RANK": str(r), "WORLD_SIZE": "2"})
        for a in range(3)
        for r in range(2)
    }
    assert got == {(k, 6) for k in range(6)}


def test_command_line_shard_wins_over_environment_and_is_validated():
    assert resolve_shard((1, 3), {"RANK": "0", "WORLD_SIZE": "2"}) == (1, 3)
    assert resolve_shard(None, {"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    assert parse_shard("0/4") == (0, 4)
    with pytest.raises(ShardError):
        parse_shard("4/4")
    with pytest.raises(ShardError):
        parse_shard("a/b")


def test_local_device_follows_local_rank():
    assert local_device_index({"LOCAL_RANK": "3"}, device_count=4) == 3
    assert local_device_index({"LOCAL_RANK": "5"}, device_count=4) == 1
    assert local_device_index({"SLURM_LOCALID": "1"}, device_count=2) == 1
    assert local_device_index({}, device_count=8) == 0


def test_run_command_takes_its_shard_from_the_environment(tmp_path, monkeypatch):
    """`groundbench run` under a launcher writes shard-K-of-N without --shard."""
    from bench.cli import main

    config = tmp_path / "tiny.toml"
    import tomli_w

    small = {**TINY, "dataset": {**TINY["dataset"], "n": 6}, "models": TINY["models"][:1], "methods": TINY["methods"][1:2]}
    config.write_text(tomli_w.dumps(small))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["run", str(config), "--out", str(tmp_path / "res"), "--no-progress"]) == 0
    shard_dir = tmp_path / "res" / "tiny-shards" / "shard-1-of-2"
    rows = results.read_rows(shard_dir / results.SCORES)
    assert rows and {r["sample"] for r in rows} <= {1, 3, 5}
    assert json.loads((shard_dir / results.PROVENANCE).read_text())["shard"] == [1, 2]
