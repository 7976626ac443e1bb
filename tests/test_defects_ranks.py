"""Issue 16, item 5: ranks never contradict the confidence intervals they are printed beside.
Each method is tested against the best on the estimator the cell shows (paired bootstrap of the
difference, BCa, images resampled, the cells' seed), Holm-adjusted, with no chaining."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.report.leaderboard import compute
from bench.report.stats import rank_methods

COLUMNS = {"pointing_game": {"aggregate": "class_mean", "higher_is_better": True}}


def _rows(model: str, method: str, per_image: list[tuple[str, str, float]]) -> list[dict]:
    return [
        {"model": model, "method": method, "sample": i, "image_id": img, "target": cls, "difficult": False, "pointing_game": v}
        for i, (img, cls, v) in enumerate(per_image)
    ]


def _disjoint_case() -> pd.DataFrame:
    """The issue's shape: the cell is a mean of per-class means, so a rare class weighs as much
    as a common one. A hits all 6 images of the rare class, where B misses them all; on the
    common class B is a little ahead (10 images B only, 4 A only). Per-image differences are
    +1 ten times and -1 ten times (the old Wilcoxon test: p = 1, one shared rank), while the
    estimates are about 0.75 and 0.28 with disjoint bootstrap CIs."""
    rare = [(f"r{i}", "rare", 1.0) for i in range(6)]
    common_a, common_b = [], []
    for i in range(100):
        a = 1.0 if i < 50 or 90 <= i < 94 else 0.0
        b = 1.0 if i < 60 else 0.0
        common_a.append((f"c{i}", "common", a))
        common_b.append((f"c{i}", "common", b))
    rows = _rows("m", "A", rare + common_a) + _rows("m", "B", [(img, c, 0.0) for img, c, _ in rare] + common_b)
    return pd.DataFrame(rows)


def test_methods_with_disjoint_cis_never_share_rank_1():
    df = _disjoint_case()
    cells = compute(df, COLUMNS, n_resamples=2000, seed=0).set_index("method")
    a, b = cells.loc["A"], cells.loc["B"]
    assert a.low > b.high  # the two CIs printed in the table are disjoint
    assert a["rank"] == 1 and b["rank"] == 2


def test_no_chaining_through_a_noisy_neighbour():
    # A and C differ clearly; B is so noisy that it differs from neither. Chaining (A ~ B,
    # B ~ C) gave all three rank 1; against the best, C is significantly worse.
    rng = np.random.default_rng(0)
    n = 200
    base = rng.random(n)
    noise = rng.normal(0, 1.5, n)
    scores = {
        "A": base + 0.10,
        "B": base + 0.05 + (noise - noise.mean()),  # between A and C on average
        "C": base,
    }
    ranked = {r.name: r for r in rank_methods(scores, n_resamples=1000, seed=0)}
    assert ranked["A"].rank == 1 and ranked["B"].rank == 1  # B: not significantly worse than A
    assert ranked["C"].rank == 3  # C: significantly worse than the best, whatever B does


def test_holm_adjustment_is_step_down_and_monotone():
    from bench.report.stats import holm

    # Hand-computed: p = (0.01, 0.04, 0.03, nan) with m = 3 defined -> sorted 0.01, 0.03, 0.04
    # -> 3 * 0.01 = 0.03, max(0.03, 2 * 0.03) = 0.06, max(0.06, 1 * 0.04) = 0.06.
    out = holm([0.01, 0.04, 0.03, float("nan")])
    assert out[:3] == [0.03, 0.06, 0.06] and math.isnan(out[3])


def test_bca_p_value_is_the_percentile_dual_without_correction_and_floors_at_the_resolution():
    from bench.report.stats import bca_p_value

    dist = np.linspace(-1.0, 3.0, 2000)  # 25% of the resamples below 0
    jack_flat = np.zeros(10)  # no acceleration
    p = bca_p_value(dist, float(np.median(dist)), jack_flat)  # z0 = 0
    assert math.isclose(p, 0.5, rel_tol=1e-3)  # 2 * min(F, 1 - F) with F = 0.25
    assert bca_p_value(np.linspace(0.1, 1.0, 2000), 0.5, jack_flat) == 2 / 2001
