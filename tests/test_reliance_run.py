"""Measured reliance and the faithfulness metrics inside a run (bench/reliance.py, the
``reliance`` row stream, the registered deletion / average_drop columns): rows per (model,
image, target, mode), resume after a kill, shards that merge to the single run, the leaderboard's
reliance and validity sections, and, on the harbor object-only model, Grad-CAM's deletion AUC
below the random map's."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from bench import results
from bench.config import ConfigError, parse_config
from bench.engine import run_config
from bench.interventions import FIELDS
from bench.merge import merge_shards
from bench.report.leaderboard import build
from bench.report.render import render_latex, render_markdown, render_text
from bench.scoring import score_batch
from bench.sharding import shard_dir_name

N = 24
TINY = {
    "name": "tiny-reliance",
    "seed": 0,
    "device": "cpu",
    "batch_size": 8,
    "dataset": {"name": "harbor", "split": "test", "n": N, "seed": 1},
    "models": [{"spec": "harbor:object_only"}],
    "methods": [{"name": "gradcam"}, {"name": "random"}],
    "metrics": [{"name": "pointing_game", "tolerance": 6.0}, {"name": "leakage"}, {"name": "average_drop"}],
    "reliance": {"modes": ["mean", "blur"]},
}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("reliance") / "single"
    run_config(parse_config(TINY), out_dir=out, progress=False)
    return out


def _lines(path):
    return path.read_text().splitlines()


def test_one_row_per_job_and_mode_with_every_field(single):
    scores = results.read_rows(single / results.SCORES)
    rows = results.read_rows(single / results.RELIANCE)
    jobs = {(r["sample"], r["target"]) for r in scores}
    assert len(rows) == 2 * len(jobs) and jobs
    assert {(r["sample"], r["target"], r["mode"]) for r in rows} == {(s, t, m) for s, t in jobs for m in ("mean", "blur")}
    for r in rows:
        assert set(FIELDS) <= set(r) and r["model"] == "harbor:object_only"
    # The output the maps explain is the one the reliance is measured for.
    out = {(r["sample"], r["target"]): r["output"] for r in scores}
    assert all(r["output"] == out[(r["sample"], r["target"])] for r in rows)
    # Harbor scenes with a counterfactual (no context) give NaN context reliance, counted, never 0.
    frame = pd.DataFrame(rows)
    no_context = frame["area_context"] == 0
    assert no_context.any() and frame.loc[no_context, "context_reliance"].isna().all()
    assert frame.loc[~no_context, "context_reliance"].notna().all()
    info = json.loads((single / results.MODELS).read_text())["harbor:object_only"]
    assert info["measured_reliance"]["modes"] == ["mean", "blur"] and info["measured_reliance"]["passes_per_target"] == 9


def test_killed_run_resumes_to_identical_reliance_rows(single, tmp_path):
    out = tmp_path / "killed"
    calls = {"n": 0}

    def dies_on_the_second_batch(run, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process dies while scoring batch 2: nothing of it is written
        return score_batch(run, batch)

    with pytest.raises(KeyboardInterrupt):
        run_config(parse_config(TINY), out_dir=out, progress=False, scorer=dies_on_the_second_batch)
    assert 0 < len(_lines(out / results.RELIANCE)) < len(_lines(single / results.RELIANCE))
    run_config(parse_config(TINY), out_dir=out, resume=True, progress=False)
    assert _lines(out / results.RELIANCE) == _lines(single / results.RELIANCE)
    assert _lines(out / results.SCORES) == _lines(single / results.SCORES)


def test_three_shards_merge_to_the_single_run(single, tmp_path):
    cfg = parse_config(TINY)
    for k in range(3):
        run_config(cfg, out_dir=tmp_path / "sharded" / shard_dir_name((k, 3)), shard=(k, 3), progress=False)
    merged = tmp_path / "merged"
    merge_shards([tmp_path / "sharded"], merged)
    assert _lines(merged / results.RELIANCE) == _lines(single / results.RELIANCE)
    a, b = build(single, n_resamples=300), build(merged, n_resamples=300)
    pd.testing.assert_frame_equal(a.cells, b.cells)
    pd.testing.assert_frame_equal(a.reliance, b.reliance)
    pd.testing.assert_frame_equal(a.validity, b.validity)


def test_leaderboard_shows_reliance_and_validity_in_every_format(single):
    lb = build(single, n_resamples=300)
    assert set(lb.reliance["mode"]) == {"mean", "blur"} and "all" in set(lb.reliance["class"])
    pairs = set(zip(lb.validity["score"], lb.validity["reliance"]))
    assert pairs == {("leakage", "context_reliance"), ("pointing_game", "object_reliance")}
    assert (lb.validity["n"] < 30).any() and (lb.validity.loc[lb.validity["n"] < 30, "verdict"].isin(["inconclusive", "undefined"])).all()
    text = render_text(lb)
    assert "measured reliance (mean removal" in text and "[validity: mean removal]" in text and "[validity: blur removal]" in text
    assert "leakage ~ context_reliance" in text
    assert "Validity (mean removal)" in render_markdown(lb) and r"\caption{Validity (mean removal)" in render_latex(lb)
    assert "average_drop" in lb.metrics and lb.metrics["average_drop"]["requires"] == ["model"]


def test_reliance_section_is_validated_with_the_file_named():
    bad = copy.deepcopy(TINY)
    bad["reliance"] = {"modes": ["mean", "texture"]}
    with pytest.raises(ConfigError, match=r"cfg\.toml: \[reliance\] modes"):
        parse_config(bad, source="cfg.toml")
    bad["reliance"] = {"mode": ["mean"]}
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config(bad, source="cfg.toml")
    assert "reliance" not in parse_config({k: v for k, v in TINY.items() if k != "reliance"}).to_dict()


def test_gradcam_deletion_beats_the_random_map_on_the_object_only_model(tmp_path):
    """Deletion AUC (lower is better) of Grad-CAM below the random map's on harbor's
    object-only model, paired over the same rows (README, "Does the map tell the truth")."""
    from bench.report.stats import paired_test

    cfg = parse_config({
        **{k: v for k, v in TINY.items() if k != "reliance"},
        "name": "deletion", "dataset": {"name": "harbor", "split": "test", "n": 66, "seed": 1},
        "metrics": [{"name": "deletion", "steps": 10}],
    })
    run_config(cfg, out_dir=tmp_path, progress=False)
    df = pd.DataFrame(results.read_rows(tmp_path / results.SCORES))
    wide = df.pivot_table(index=["image_id", "target"], columns="method", values="deletion")
    test = paired_test(wide["gradcam"].to_numpy(), wide["random"].to_numpy(), clusters=wide.index.get_level_values(0).to_numpy())
    print(f"deletion AUC (10 steps), harbor:object_only, n={len(wide)}: gradcam {wide['gradcam'].mean():.3f}, random {wide['random'].mean():.3f}, difference {test.difference:.3f} [{test.low:.3f}, {test.high:.3f}]")
    assert len(wide) >= 50 and np.isfinite(wide.to_numpy()).all()
    assert test.difference < -0.05 and test.high < 0, test
