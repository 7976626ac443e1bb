"""Validity statistics (bench.report.validity): Spearman's rho of a grounding score against
measured reliance, with a bootstrap CI over images, n, and the inconclusive mark."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bench.report.validity import spearman_ci, validity_table, weighted_spearman


def test_weighted_spearman_is_spearmanr_on_the_repeated_rows():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, 30).astype(float)  # many ties
    y = x + rng.normal(size=30)
    w = rng.integers(0, 3, (6, 30))
    ours = weighted_spearman(x, y, w)
    for r in range(6):
        expected = scipy.stats.spearmanr(np.repeat(x, w[r]), np.repeat(y, w[r])).statistic
        assert ours[r] == pytest.approx(expected, abs=1e-12)
    # a constant side is undefined, never 0
    assert math.isnan(weighted_spearman(np.ones(5), np.arange(5.0), np.ones((1, 5)))[0])


def test_estimate_n_ci_and_verdicts():
    rng = np.random.default_rng(1)
    x = rng.normal(size=80)
    y = x + rng.normal(size=80)
    images = np.arange(80) // 2  # two rows an image
    c = spearman_ci(x, y, images, n_resamples=500)
    assert c.rho == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    assert c.low < c.rho < c.high and c.n == 80 and c.n_images == 40
    assert c.verdict == "tracks"
    assert spearman_ci(x, -y, images, n_resamples=500).verdict == "inverse"
    assert spearman_ci(x, rng.normal(size=80), images, n_resamples=500).verdict == "flat"
    # below 30 rows: shown with its n, never read as evidence
    few = spearman_ci(x[:20], y[:20], images[:20], n_resamples=200)
    assert few.n == 20 and few.verdict == "inconclusive" and math.isfinite(few.rho)
    # NaN on either side drops the row
    y_nan = y.copy()
    y_nan[:50] = np.nan
    assert spearman_ci(x, y_nan, images, n_resamples=200).n == 30


def test_the_ci_resamples_images_not_rows():
    # Each image repeats one (x, y) pair 10 times: 8 images are 80 rows, but only 8 draws.
    rng = np.random.default_rng(2)
    xs, ys = rng.normal(size=8), rng.normal(size=8)
    x, y, images = np.repeat(xs, 10), np.repeat(ys, 10), np.repeat(np.arange(8), 10)
    by_image = spearman_ci(x, y, images, n_resamples=1000)
    by_row = spearman_ci(x, y, np.arange(80), n_resamples=1000)
    assert by_image.rho == pytest.approx(by_row.rho)
    assert (by_image.high - by_image.low) > 2 * (by_row.high - by_row.low)


def test_validity_table_joins_rows_of_one_mode():
    rng = np.random.default_rng(3)
    n = 40
    ids = [f"img{i}" for i in range(n)]
    reliance = pd.DataFrame({"model": "m", "image_id": ids, "target": "boat", "mode": "mean",
                             "context_reliance": rng.normal(size=n), "object_reliance": rng.normal(size=n)})
    leak = reliance["context_reliance"].to_numpy() + 0.1 * rng.normal(size=n)
    scores = pd.concat([
        pd.DataFrame({"model": "m", "method": "good", "image_id": ids, "target": "boat", "leakage": leak, "pointing_game": 1.0}),
        pd.DataFrame({"model": "m", "method": "noise", "image_id": ids, "target": "boat", "leakage": rng.normal(size=n), "pointing_game": 1.0}),
    ])
    table = validity_table(scores, reliance, n_resamples=300)
    leak_rows = table[table.score == "leakage"].set_index("method")
    assert leak_rows.loc["good", "verdict"] == "tracks" and leak_rows.loc["good", "n"] == n
    assert leak_rows.loc["noise", "verdict"] in ("flat", "tracks", "inverse")
    # a constant score (pointing game all hits) is undefined against anything
    assert set(table[table.score == "pointing_game"].verdict) == {"undefined"}
    assert "energy_pointing_game" not in set(table.score)
    with pytest.raises(ValueError, match="one removal mode"):
        validity_table(scores, pd.concat([reliance, reliance.assign(mode="blur")]))


def test_reliance_summary_counts_undefined_rows_and_splits_classes():
    from bench.report.reliance import reliance_summary

    rows = pd.DataFrame({
        "model": "m", "mode": "mean", "image_id": ["a", "b", "c", "d"], "target": ["boat", "boat", "car", "car"],
        "context_reliance": [0.5, np.nan, 0.1, 0.3], "object_reliance": [0.2, 0.4, 0.0, 0.2],
    })
    s = reliance_summary(rows, quantities=("context_reliance", "object_reliance"), n_resamples=200).set_index(["class", "quantity"])
    assert s.loc[("all", "context_reliance"), "estimate"] == pytest.approx(0.3)
    assert s.loc[("all", "context_reliance"), ["n", "n_undefined"]].tolist() == [3, 1]
    assert s.loc[("boat", "context_reliance"), "estimate"] == pytest.approx(0.5)
    assert s.loc[("car", "object_reliance"), "estimate"] == pytest.approx(0.1)
