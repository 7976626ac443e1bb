"""bf16 autocast (``autocast = "bf16"``) speeds up the model passes without changing what the
leaderboard says: on the harbor suite every method keeps its rank on every metric."""

from __future__ import annotations

import tomllib

import pytest

from bench import results
from bench.cli.run import default_config_path
from bench.config import parse_config
from bench.engine import run_config
from bench.report.leaderboard import build


def suite(n: int, **over) -> dict:
    data = tomllib.loads(default_config_path().read_text())
    data["dataset"]["n"] = n
    data["device"] = "cpu"
    data.update(over)
    return data


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bf16_autocast_keeps_the_harbor_rankings(tmp_path):
    n = 220  # 10 full cycles of the suite's (class, context) cells and empty scenes
    full = tmp_path / "fp32"
    half = tmp_path / "bf16"
    run_config(parse_config(suite(n)), out_dir=full, progress=False)
    run_config(parse_config(suite(n, autocast="bf16")), out_dir=half, progress=False)

    a = results.read_rows(full / results.SCORES)
    b = results.read_rows(half / results.SCORES)
    assert [(r["model"], r["method"], r["image_id"], r["target"]) for r in a] == [
        (r["model"], r["method"], r["image_id"], r["target"]) for r in b
    ]
    grad = [(x, y) for x, y in zip(a, b) if x["method"] == "gradcam"]
    # bf16 really ran: Grad-CAM maps (hence scores) moved ...
    assert any(x["energy_pointing_game"] != y["energy_pointing_game"] for x, y in grad)
    # ... while the baselines, which use no model pass, did not.
    assert all(x == y for x, y in zip(a, b) if x["method"] != "gradcam")

    key = ["model", "subset", "metric", "method"]
    ranks_a = build(full, seed=0, n_resamples=500).cells.set_index(key)["rank"]
    ranks_b = build(half, seed=0, n_resamples=500).cells.set_index(key)["rank"]
    assert ranks_a.to_dict() == ranks_b.to_dict()
