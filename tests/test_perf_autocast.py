"""bf16 autocast (``autocast = "bf16"``) changes the numbers a little and the leaderboard not at
all: on the harbor suite (its scenes, both models, its metrics) every method keeps its rank,
ties included, on every metric.

Methods: the suite's Grad-CAM and vanilla gradient (the two kinds of model pass: backward to a
layer, backward to the input) and its center and random baselines (no model pass: their rows
must not move at all). The suite's other methods are the same passes at many times the cost.

bf16 moves model-based scores by up to ~0.01 (activations and gradients keep 8 mantissa bits).
That cannot reorder methods whose difference is significant, but it can flip a Wilcoxon tie
whose p-value sits near 0.05; none does on the suite today. If a change to the suite or its
models puts a comparison there, this test says which.
"""

from __future__ import annotations

import tomllib

import pytest
import torch

from bench import results
from bench.cli.run import default_config_path
from bench.config import parse_config
from bench.engine import run_config
from bench.report.leaderboard import build

METHODS = ("gradcam", "gradient", "center", "random")


@pytest.fixture
def one_thread():
    # Both runs share the setting; one thread is faster on a shared 2-core CI machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def suite(**over) -> dict:
    data = tomllib.loads(default_config_path().read_text())
    data["device"] = "cpu"
    data["methods"] = [m for m in data["methods"] if m["name"] in METHODS]
    data.update(over)
    return data


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bf16_autocast_keeps_the_harbor_rankings(tmp_path, one_thread):
    assert sorted(m["name"] for m in suite()["methods"]) == sorted(METHODS), "the suite lost a method this test uses"
    full = tmp_path / "fp32"
    half = tmp_path / "bf16"
    run_config(parse_config(suite()), out_dir=full, progress=False)
    run_config(parse_config(suite(autocast="bf16")), out_dir=half, progress=False)

    a = results.read_rows(full / results.SCORES)
    b = results.read_rows(half / results.SCORES)
    key = lambda r: (r["model"], r["method"], r["image_id"], r["target"])  # noqa: E731
    assert [key(r) for r in a] == [key(r) for r in b]
    for method in ("gradcam", "gradient"):
        pairs = [(x, y) for x, y in zip(a, b) if x["method"] == method]
        # bf16 really ran: the maps (hence the scores) moved ...
        assert any(x["energy_pointing_game"] != y["energy_pointing_game"] for x, y in pairs), method
    # ... while the baselines, which use no model pass, did not.
    assert all(x == y for x, y in zip(a, b) if x["method"] in ("center", "random"))

    cells = ["model", "subset", "metric", "method"]
    ranks_a = build(full, seed=0).cells.set_index(cells)["rank"].to_dict()
    ranks_b = build(half, seed=0).cells.set_index(cells)["rank"].to_dict()
    assert len(ranks_a) >= 2 * 3 * len(METHODS)
    changed = {k: (ranks_a[k], ranks_b.get(k)) for k in ranks_a if ranks_a[k] != ranks_b.get(k)}
    assert not changed, f"rank (fp32, bf16) changed: {changed}"
