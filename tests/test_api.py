"""The Python API (bench.api, also ``import bench; bench.run(...)``): run a config given as a
dict or a path and get the results directory; the leaderboard as a DataFrame equal to the
command line's; the rows; the registries; and the README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import bench
from bench import api
from bench.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "name": "api-small",
    "seed": 0,
    "device": "cpu",
    "batch_size": 16,
    "dataset": {"name": "harbor", "split": "test", "n": 12, "seed": 1},
    "models": [{"spec": "harbor:contextual"}],
    "methods": [{"name": "gradcam"}, {"name": "center"}],
    "metrics": [{"name": "pointing_game", "tolerance": 6.0}, {"name": "leakage"}],
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return bench.run(SMALL, out=tmp_path_factory.mktemp("api"))


def test_run_a_dict_gives_the_results_directory(small_run):
    assert small_run.name == "api-small" and small_run.is_dir()
    for name in ("scores.jsonl", "provenance.json", "leaderboard.csv", "report.html"):
        assert (small_run / name).exists(), name


def test_leaderboard_is_a_dataframe_of_cells_equal_to_the_written_table(small_run):
    lb = bench.leaderboard(small_run)
    assert isinstance(lb, pd.DataFrame)
    assert list(lb.columns) == ["subset", "model", "method", "metric", "estimate", "low", "high", "n", "n_undefined", "rank"]
    assert set(lb["method"]) == {"gradcam", "center"} and set(lb["metric"]) == {"pointing_game", "leakage"}
    assert (lb["subset"] == "all").all()
    assert (lb["low"] <= lb["estimate"]).all() and (lb["estimate"] <= lb["high"]).all()
    # The same cells as the CLI's leaderboard (same rows, same seeded bootstrap).
    from bench.report.leaderboard import build

    cells = build(small_run, seed=0).cells
    cells = cells[cells.subset == "all"].reset_index(drop=True)
    pd.testing.assert_frame_equal(lb, cells[lb.columns].reset_index(drop=True))
    pivot = lb.pivot_table(index="method", columns="metric", values="estimate")
    assert pivot.shape == (2, 2)


def test_rows_are_the_score_rows(small_run):
    df = bench.rows(small_run)
    assert {"model", "method", "image_id", "target", "pointing_game", "leakage"} <= set(df.columns)
    assert set(df["method"]) == {"gradcam", "center"}


def test_run_a_path_and_a_config_error(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[dataset]\nname = "harbor"\n[[models]]\nspec = "harbor:contextual"\n[[methods]]\nname = "gradcm"\n[[metrics]]\nname = "pointing_game"\n')
    with pytest.raises(ConfigError, match="did you mean 'gradcam'"):
        bench.run(config, out=tmp_path)
    assert not (tmp_path / "c").exists()  # nothing written for a config that does not validate


def test_list_methods_and_metrics():
    methods = bench.list_methods()
    assert {"gradcam", "rise", "captum:NAME", "pytorch_grad_cam:NAME"} <= set(methods["name"])
    assert methods.set_index("name").loc["gradcam", "family"] == "cam"
    metrics = bench.list_metrics()
    row = metrics.set_index("name").loc["leakage"]
    assert not row["higher_is_better"] and "context" in row["requires"]
    # bench.methods / bench.metrics stay the subpackages
    import bench.methods as methods_pkg

    assert bench.methods is methods_pkg


def test_package_exports_the_api():
    for name in bench.API:
        assert getattr(bench, name) is getattr(api, name)
    with pytest.raises(AttributeError):
        bench.no_such_thing  # noqa: B018


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python API example, executed as written (results under a temporary cwd)."""
    pytest.importorskip("captum.attr")
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "the README has no API example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md (api-example)", "exec"), namespace)
    printed = capsys.readouterr().out
    assert (tmp_path / "results" / "notebook" / "scores.jsonl").exists()
    assert "pointing_game" in printed and "leakage" in printed
    rows = namespace["rows"]
    assert len(rows) == len(namespace["maps"]) > 0
    assert rows["skipped"].isna().all() and rows["pointing_game"].notna().all()
    # Captum's LayerGradCam with its ReLU is Grad-CAM: the same pointing game as the run's rows.
    ran = bench.rows(tmp_path / "results" / "notebook")
    ours = ran[ran.method == "gradcam"].set_index(["image_id", "target"])["pointing_game"].sort_index()
    theirs = rows.set_index(["image_id", "target"])["pointing_game"].sort_index()
    pd.testing.assert_series_equal(ours, theirs, check_names=False)
