"""Sanity checks inside a run: the sanity rows obey the score rows' streaming, resume, shard and
merge rules; the leaderboard shows the verdicts; on real COCO photos the class-sensitivity rows
agree with the run's own scores; a run without [sanity] is untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench import results
from bench.config import ConfigError, parse_config
from bench.engine import RunError, run_config
from bench.merge import merge_shards
from bench.report.leaderboard import build
from bench.report.render import render_text
from bench.report.sanity import build as sanity_build
from bench.sanity.randomisation import weights_sha256
from bench.sharding import shard_dir_name

import sanity_support  # noqa: F401  (registers _test_edges)

# 8 scenes in batches of 4, the checks on the first 6: the single run's covered sub-batches hold
# 4 and 2 jobs, each 2-shard run's one batch 3. None holds a single image: on the CPU a
# one-image batch runs other convolution kernels than a larger one (last-bit differences), for
# score rows as for sanity rows, and the shard test compares bytes.
N, BATCH, IMAGES = 8, 4, 6
SANITY = {
    "name": "sanity-run",
    "seed": 0,
    "device": "cpu",
    "batch_size": BATCH,
    "dataset": {"name": "harbor", "split": "test", "n": N, "seed": 1, "size": 96},
    "models": [{"spec": "harbor:contextual"}],
    "methods": [{"name": "gradient"}, {"name": "smoothgrad", "n_samples": 2}, {"name": "center"}, {"name": "_test_edges"}],
    "metrics": [{"name": "pointing_game", "tolerance": 6.0}, {"name": "leakage"}],
    "sanity": {"max_steps": 3, "images": IMAGES},
}
COCO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_tiny"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sanity-reference") / "run"
    run_config(parse_config(SANITY), out_dir=out, progress=False)
    return out


def test_rows_written_per_test_and_covered_sample(reference):
    rows = results.read_rows(reference / results.SANITY)
    scores = results.read_rows(reference / results.SCORES)
    assert rows and {r["test"] for r in rows} == {"cascading", "independent", "random_target"}
    assert max(r["sample"] for r in rows) < IMAGES <= max(r["sample"] for r in scores)
    info = json.loads((reference / results.MODELS).read_text())["harbor:contextual"]["sanity"]
    steps = [s["name"] for s in info["steps"]]
    assert steps == ["fc", "features"] and info["seed"] == 0 and info["original_weights_sha256"]
    per = {}
    for r in rows:
        per.setdefault((r["method"], r["sample"], r["test"]), []).append(r)
    for (method, sample, test), group in per.items():
        if test in ("cascading", "independent"):
            assert [r["step"] for r in group] == [1, 2] and [r["layer"] for r in group] == steps
        else:
            assert len(group) == 1 and group[0]["random_output"] != group[0]["output"]
    # The model-independent maps pass through every randomisation unchanged.
    for r in rows:
        if r["method"] in ("center", "_test_edges"):
            assert all(abs(r[m] - 1) < 1e-6 for m in ("spearman_abs", "spearman", "ssim_abs", "ssim")), r
    # A random class's map is scored against the target's truth, beside the target map's own score.
    own = {(r["method"], r["sample"], r["target"]): r["pointing_game"] for r in scores}
    for r in rows:
        if r["test"] == "random_target":
            assert r["pointing_game"] == own[(r["method"], r["sample"], r["target"])]
            assert "random:pointing_game" in r and "random:leakage" in r


def test_leaderboard_marks_the_failing_methods(reference):
    lb = build(reference, seed=0, n_resamples=300)
    verdict = dict(zip(lb.cells["method"], lb.cells["sanity"]))
    assert verdict["center"] == "FAIL" and verdict["_test_edges"] == "FAIL"
    assert verdict["gradient"] == "pass"
    text = render_text(lb)
    assert "sanity: Spearman |.| randomised" in text and " FAIL " in text
    table = sanity_build(reference, n_resamples=300)
    fails = {v.method: v.fails for v in table.verdicts.itertuples()}
    assert fails == {"gradient": False, "smoothgrad[n_samples=2]": False, "center": True, "_test_edges": True}


def test_a_run_without_sanity_writes_what_it_always_wrote(tmp_path):
    plain = {k: v for k, v in SANITY.items() if k != "sanity"}
    cfg = parse_config(plain)
    assert "sanity" not in cfg.to_dict()
    out = tmp_path / "plain"
    run_config(cfg, out_dir=out, progress=False)
    assert not (out / results.SANITY).exists()
    lb = build(out, seed=0, n_resamples=200)
    assert "sanity" not in lb.cells.columns and "sanity" not in render_text(lb)


class _Die(Exception):
    pass


@pytest.mark.parametrize("target, torn", [("progress.jsonl", False), ("sanity.jsonl", True)])
def test_interrupted_run_resumes_to_identical_sanity_rows(reference, tmp_path, monkeypatch, target, torn):
    """Batch 2 dies (its sanity rows durable but not marked done; or half a sanity row on disk);
    the same run resumed ends with the uninterrupted run's rows, byte for byte."""
    original = results.RowWriter.write
    calls = {"n": 0}

    def write(self, rows):
        rows = list(rows)
        if self.path.name == target and rows:
            calls["n"] += 1
            if calls["n"] == 2:
                if torn:
                    text = "".join(results.encode_row(r) + "\n" for r in rows)
                    self._fh.write(text[: len(text) // 2])
                    self._fh.flush()
                raise _Die
        return original(self, rows)

    out = tmp_path / "run"
    monkeypatch.setattr(results.RowWriter, "write", write)
    with pytest.raises(_Die):
        run_config(parse_config(SANITY), out_dir=out, progress=False)
    monkeypatch.setattr(results.RowWriter, "write", original)
    if torn:
        assert not (out / results.SANITY).read_bytes().endswith(b"\n")
    else:
        on_disk = results.read_rows(out / results.SANITY)
        assert max(r["sample"] for r in on_disk) >= BATCH  # the unfinished batch's rows exist
    run_config(parse_config(SANITY), out_dir=out, resume=True, progress=False)
    for name in (results.SANITY, results.SCORES):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_shards_merge_into_the_single_run(reference, tmp_path):
    cfg = parse_config(SANITY)
    root = tmp_path / "sharded"
    for k in range(2):
        run_config(cfg, out_dir=root / shard_dir_name((k, 2)), shard=(k, 2), progress=False)
    for k in range(2):
        samples = {r["sample"] for r in results.read_rows(root / shard_dir_name((k, 2)) / results.SANITY)}
        assert samples and all(s % 2 == k for s in samples)
    merged = tmp_path / "merged"
    merge_shards([root], merged)
    assert _lines(merged / results.SANITY) == _lines(reference / results.SANITY)
    a = build(reference, seed=0, n_resamples=300)
    b = build(merged, seed=0, n_resamples=300)
    pd.testing.assert_frame_equal(a.cells, b.cells)


def test_bad_sanity_sections_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="sanity-test: \\[sanity\\] methods: 'gradcam' is not a method of this run"):
        parse_config({**SANITY, "sanity": {"methods": ["gradcam"]}}, source="sanity-test")
    with pytest.raises(ConfigError, match="\\[sanity.steps\\] 'effnet-lite0' is not a model of this run"):
        parse_config({**SANITY, "sanity": {"steps": {"effnet-lite0": ["_fc"]}}}, source="sanity-test")
    cfg = parse_config({**SANITY, "sanity": {"steps": {"harbor:contextual": ["fc", "feature"]}}}, source="sanity-test")
    with pytest.raises(RunError, match="randomisation step 'feature': the model has no such module; did you mean 'features'"):
        run_config(cfg, out_dir=tmp_path / "bad", progress=False)


@pytest.mark.skipif(not (COCO / "annotations" / "instances_val2017.json").is_file(), reason=f"shared COCO sample not found at {COCO}")
def test_class_sensitivity_on_real_photos(tmp_path):
    """EfficientNet-Lite0 on the COCO sample's first 12 photos: every photo with two or more
    scored classes gives one row per ordered class pair, and the "own" pointing of each row is
    the run's own pointing-game score of that (image, class)."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch not installed")
    cfg = parse_config({
        "name": "coco-sanity", "seed": 0, "device": "cpu", "batch_size": 6,
        "dataset": {"name": "coco", "root": str(COCO), "split": "val2017", "crowd": "include", "limit": 12},
        "models": [{"spec": "effnet-lite0"}],
        "methods": [{"name": "gradcam"}, {"name": "center"}],
        "metrics": [{"name": "pointing_game", "tolerance": 15.0}, {"name": "mass_accuracy"}],
        "sanity": {"tests": ["random_target", "class_sensitivity"], "images": 12},
    }, source="coco-sanity")
    out = tmp_path / "coco"
    from bench.models import load_model

    before = weights_sha256(load_model("effnet-lite0").module)
    run_config(cfg, out_dir=out, progress=False)
    scores = [r for r in results.read_rows(out / results.SCORES) if r["sample"] < 12]
    rows = results.read_rows(out / results.SANITY)
    pairs = [r for r in rows if r["test"] == "class_sensitivity"]
    classes: dict[tuple[str, int], set[str]] = {}
    for r in scores:
        classes.setdefault((r["method"], r["sample"]), set()).add(r["target"])
    expected = sum(len(c) * (len(c) - 1) for c in classes.values())
    assert expected > 0 and len(pairs) == expected
    own = {(r["method"], r["sample"], r["target"]): (r["pointing_game"], r["mass_accuracy"]) for r in scores}
    for r in pairs:
        assert r["other"] != r["target"] and r["other"] in classes[(r["method"], r["sample"])]
        point, mass = own[(r["method"], r["sample"], r["target"])]
        assert r["pointing_own"] == point
        assert r["mass_own"] == pytest.approx(mass, rel=1e-6, nan_ok=True)
    assert {r["test"] for r in rows} == {"random_target", "class_sensitivity"}
    lb = build(out, seed=0, n_resamples=200)
    assert {"sanity: pointing, own class", "sanity: pointing, other class"} <= set(lb.metrics)
    assert weights_sha256(load_model("effnet-lite0").module) == before
