"""The crowd suite and the grid mosaics follow every rule of a run: rows streamed batch by
batch, byte-identical reruns, resume after an interruption, shards that merge into the single
run, per-bin breakdowns computed like the leaderboard, and clear errors for bad input."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bench import results
from bench.cli import main as cli_main
from bench.config import ConfigError, parse_config
from bench.engine import run_config
from bench.merge import merge_shards
from bench.report.breakdown import breakdown_cells, strata_cells
from bench.report.leaderboard import build, compute, load_results
from bench.sharding import shard_dir_name
from bench.data.strata import area_labels, count_labels, stratum_bins

N, BATCH = 12, 4
CROWD = {
    "name": "crowd-tiny",
    "seed": 0,
    "device": "cpu",
    "batch_size": BATCH,
    "strata": ["object_area", "instance_count"],
    "dataset": {"name": "crowd", "split": "test", "n": N, "seed": 1},
    "models": [{"spec": "crowd:cnn"}],
    "methods": [
        {"name": "gradcam"},
        {"name": "erase", "base": "gradient", "steps": 2},
        {"name": "random"},
    ],
    "metrics": [
        {"name": "extent"},
        {"name": "extent_precision"},
        {"name": "instance_recall"},
        {"name": "pointing_game", "tolerance": 6.0},
    ],
}
MOSAIC = {
    "name": "mosaic-tiny",
    "seed": 0,
    "device": "cpu",
    "batch_size": 3,
    "dataset": {"name": "mosaic", "sources": [{"name": "harbor", "split": "test", "n": 44, "seed": 1}], "n": 7, "threshold": 0.9},
    "models": [{"spec": "harbor:object_only"}],
    "methods": [{"name": "gradcam"}, {"name": "uniform"}],
    "metrics": [{"name": "grid_pointing"}, {"name": "pointing_game", "tolerance": 1.0}],
}
FILES = ("scores.jsonl", "skipped.jsonl", "leaderboard.csv", "leaderboard.md")


def _lines(path):
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def crowd_single(tmp_path_factory):
    out = tmp_path_factory.mktemp("crowd") / "single"
    sizes = []
    run_config(parse_config(CROWD), out_dir=out, progress=False, on_batch=lambda _b: sizes.append(len(_lines(out / results.SCORES))))
    from bench.report.write import write_tables

    write_tables(build(out), out, figures=False)
    return out, sizes


def test_rows_are_streamed_batch_by_batch_with_strata(crowd_single):
    out, sizes = crowd_single
    per_batch = BATCH * 3  # one target per scene, three methods
    assert sizes == [per_batch * (k + 1) for k in range(N // BATCH)]
    rows = [json.loads(line) for line in _lines(out / results.SCORES)]
    assert len(rows) == N * 3
    assert {r["instance_count"] for r in rows} == {1, 2, 3, 4}
    assert all(0 < r["object_area"] < 1 for r in rows)
    assert {r["method"] for r in rows} == {"gradcam", "erase[base=gradient,steps=2]", "random"}


def test_breakdown_by_area_and_count_is_the_leaderboard_of_each_bin(crowd_single):
    out, _ = crowd_single
    df, columns = load_results(out)
    cells = breakdown_cells(df, columns, n_resamples=200)
    assert set(cells["breakdown"]) == {"class", "object_area", "instance_count"}
    strata = strata_cells(df, columns, n_resamples=200)
    bins, labels = stratum_bins("instance_count", df["instance_count"])
    assert labels == count_labels()
    two = df[bins == "2 instances"]
    per_row = {k: {**v, "aggregate": "mean"} for k, v in columns.items()}
    expected = compute(two, per_row, n_resamples=200).reset_index(drop=True)
    got = strata[strata["class"] == "2 instances"].drop(columns=["class", "breakdown"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    # Bins in natural order, and the rendered tables and CSV carry them.
    order = list(dict.fromkeys(strata[strata.breakdown == "object_area"]["class"]))
    assert order == [label for label in area_labels() if label in order]
    md = (out / "leaderboard.md").read_text()
    assert "### Per object area: crowd:cnn" in md and "### Per instance count: crowd:cnn" in md
    csv = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    assert set(csv["breakdown"]) == {"", "class", "object_area", "instance_count"}


def test_bins_are_closed_below():
    s = pd.Series([0.0, 0.0299, 0.03, 0.1, 0.29999, 0.3, 1.0, math.nan])
    bins, labels = stratum_bins("object_area", s)
    assert bins.tolist()[:7] == [labels[0], labels[0], labels[1], labels[2], labels[2], labels[3], labels[3]]
    assert pd.isna(bins.tolist()[7])
    counts, _ = stratum_bins("instance_count", pd.Series([0, 1, 4, 5, 17]))
    assert counts.tolist() == ["0 instances", "1 instance", "4 instances", "5+ instances", "5+ instances"]


def test_rerun_is_byte_identical_and_shards_merge_into_the_single_run(crowd_single, tmp_path):
    single, _ = crowd_single
    cfg = parse_config(CROWD)
    again = tmp_path / "again"
    run_config(cfg, out_dir=again, progress=False)
    assert (again / results.SCORES).read_bytes() == (single / results.SCORES).read_bytes()
    for k in range(2):
        run_config(cfg, out_dir=tmp_path / "sharded" / shard_dir_name((k, 2)), shard=(k, 2), progress=False)
    merged = tmp_path / "merged"
    merge_shards([tmp_path / "sharded"], merged)
    assert _lines(merged / results.SCORES) == _lines(single / results.SCORES)
    pd.testing.assert_frame_equal(build(merged).cells, build(single).cells)


def test_an_interrupted_run_resumes_to_identical_rows(crowd_single, tmp_path):
    single, _ = crowd_single
    out = tmp_path / "resumed"

    def die(batch_no):
        if batch_no == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_config(parse_config(CROWD), out_dir=out, progress=False, on_batch=die)
    assert 0 < len(_lines(out / results.SCORES)) < N * 3
    summary = run_config(parse_config(CROWD), out_dir=out, resume=True, progress=False)
    assert summary.resumed_samples == 2 * BATCH
    assert (out / results.SCORES).read_bytes() == (single / results.SCORES).read_bytes()


def test_mosaic_run_records_its_tiles_and_resumes_and_shards_identically(tmp_path):
    cfg = parse_config(MOSAIC)
    single = tmp_path / "single"
    run_config(cfg, out_dir=single, progress=False)
    prov = json.loads((single / results.PROVENANCE).read_text())
    rec = prov["model_datasets"]["harbor:object_only"]
    assert rec["threshold"] == 0.9 and rec["grid"] == 2 and len(rec["mosaics"]) == 7
    rows = [json.loads(line) for line in _lines(single / results.SCORES)]
    assert len(rows) == 7 * 2
    uniform = [r for r in rows if r["method"] == "uniform"]
    assert all(r["grid_pointing"] == 0.25 for r in uniform)  # a uniform map: exactly 1/4
    for r in rows:
        m = rec["mosaics"][r["sample"]]
        assert r["target"] == m["classes"][m["target_tile"]]
    for k in range(2):
        run_config(cfg, out_dir=tmp_path / "sharded" / shard_dir_name((k, 2)), shard=(k, 2), progress=False)
    merge_shards([tmp_path / "sharded"], tmp_path / "merged")
    assert _lines(tmp_path / "merged" / results.SCORES) == _lines(single / results.SCORES)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_config(cfg, out_dir=out, progress=False, on_batch=lambda b: (_ for _ in ()).throw(KeyboardInterrupt))
    run_config(cfg, out_dir=out, resume=True, progress=False)
    assert (out / results.SCORES).read_bytes() == (single / results.SCORES).read_bytes()


def test_bad_input_gets_a_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="strata"):
        parse_config({**CROWD, "strata": ["object_size"]})
    with pytest.raises(ConfigError, match="kinds"):
        parse_config({**CROWD, "dataset": {"name": "crowd", "kinds": "crowd2"}})
    # Six test scenes hold two classes (boats in four contexts, then cars): too few for 2x2.
    bad = dict(MOSAIC, dataset={**MOSAIC["dataset"], "sources": [{"name": "harbor", "split": "test", "n": 6, "seed": 1}]})
    config = tmp_path / "bad.toml"
    import tomli_w

    config.write_text(tomli_w.dumps(bad))
    assert cli_main(["run", str(config), "--out", str(tmp_path / "res"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "harbor:object_only classifies images of only" in err and "(threshold 0.9) in harbor(split=test, n=6, seed=1)" in err
    assert "no score rows were written" in err
