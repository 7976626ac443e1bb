"""bf16 autocast (``autocast = "bf16"``) changes the numbers a little and the conclusions not at
all: on the harbor suite (its scenes, both models, its metrics) no leaderboard estimate moves by
more than bf16 rounding can move it, and every decisive fp32 ordering of two methods (Wilcoxon
p < 0.001) keeps its direction and its significance.

Methods: the suite's Grad-CAM and vanilla gradient (the two kinds of model pass: backward to a
layer, backward to the input) and its center and random baselines (no model pass: their rows
must not move at all). The suite's other methods are the same passes at many times the cost.

Why not "every rank stays": a rank ties methods whose neighbour comparison has p >= 0.05, and a
comparison sitting near 0.05 can cross it when one binary pointing hit flips. That happened on
CI's CPU (Grad-CAM vs. the best method on the contextual model's pointing game, rank 1 -> 2)
and not here: bf16 rounding differs by CPU instruction set. Such a flip is not a change of
conclusion; losing a decisive ordering is.
"""

from __future__ import annotations

import itertools
import tomllib

import numpy as np

import pytest
import torch

from bench import results
from bench.config import default_config_path
from bench.config import parse_config
from bench.engine import run_config
from bench.report.leaderboard import build, load_results
from bench.report.stats import paired_test

# bf16 keeps 8 mantissa bits: a map moves by ~1e-2 relative. Energy ratios move by < 1e-3 on
# the suite. The pointing game scores the argmax alone, and a vanilla gradient map has many
# near-equal peaks, so a few hits flip: 0.595 -> 0.629 here. Bounds keep a margin for other CPUs
# (bf16 kernels differ by instruction set); beyond them, something else changed.
MAX_ESTIMATE_SHIFT = {"pointing_game": 0.08}
MAX_CONTINUOUS_SHIFT = 0.01
# An fp32 comparison this decisive (Wilcoxon p) must keep its order and significance under bf16.
DECISIVE = 0.001
ALPHA = 0.05

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

    # Every decisive fp32 ordering survives bf16, and no estimate moves by more than bf16 can.
    lb_a, lb_b = build(full, seed=0), build(half, seed=0)
    cells = ["model", "subset", "metric", "method"]
    est_a = lb_a.cells.set_index(cells)["estimate"].to_dict()
    est_b = lb_b.cells.set_index(cells)["estimate"].to_dict()
    assert est_a.keys() == est_b.keys() and len(est_a) >= 2 * 3 * len(METHODS)
    moved = {
        k: (est_a[k], est_b[k])
        for k in est_a
        if not abs(est_a[k] - est_b[k]) <= MAX_ESTIMATE_SHIFT.get(k[2], MAX_CONTINUOUS_SHIFT)
    }
    assert not moved, f"estimates (fp32, bf16) moved by more than bf16 rounding explains: {moved}"

    df_a, columns = load_results(full)
    df_b, _ = load_results(half)
    checked = 0
    flipped = []
    for (model, subset, metric), _ in lb_a.cells.groupby(["model", "subset", "metric"], sort=False):
        meta = columns[metric]
        wa, wb = _wide(df_a, model, subset, metric), _wide(df_b, model, subset, metric)
        for x, y in itertools.combinations(wa.columns, 2):
            kw = dict(
                clusters=wa.index.get_level_values(0).to_numpy(),
                classes=wa.index.get_level_values(1).to_numpy(),
                aggregate=meta.get("aggregate", "mean"),
                n_resamples=200,
            )
            ra = paired_test(wa[x].to_numpy(float), wa[y].to_numpy(float), **kw)
            if not ra.p_wilcoxon < DECISIVE:
                continue
            checked += 1
            rb = paired_test(wb[x].to_numpy(float), wb[y].to_numpy(float), **kw)
            if np.sign(ra.difference) != np.sign(rb.difference) or not rb.p_wilcoxon < ALPHA:
                flipped.append((model, subset, metric, x, y, ra.difference, ra.p_wilcoxon, rb.difference, rb.p_wilcoxon))
    assert checked >= 2 * len(METHODS), "too few decisive comparisons for this test to mean anything"
    assert not flipped, f"decisive fp32 orderings that bf16 lost or made insignificant: {flipped}"


def _wide(df, model, subset, metric):
    rows = df[df.model == model]
    if subset == "difficult":
        rows = rows[rows["difficult"].astype(bool)]
    wide = rows.pivot_table(index=["image_id", "target"], columns="method", values=metric, aggfunc="first", dropna=False)
    return wide[[m for m in METHODS if m in wide.columns]]
