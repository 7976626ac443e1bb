"""bench.report.stats: bootstrap CIs over images, paired tests, ranks with ties. Every expected
number below is worked out by hand in the comment beside it."""

import math
import warnings

import numpy as np
import pytest

from bench.report.stats import aggregate_values, bootstrap_ci, paired_test, rank_methods


def test_mean_and_class_mean_estimates_by_hand():
    # rows: a=1, a=0, b=1, plus a NaN row that is dropped
    values = [1.0, 0.0, 1.0, float("nan")]
    classes = ["a", "a", "b", "b"]
    assert aggregate_values(values) == pytest.approx(2 / 3)  # (1 + 0 + 1) / 3
    # per class: a = 0.5, b = 1.0 -> mean over classes 0.75 (TorchRay pointing accuracy)
    assert aggregate_values(values, classes, "class_mean") == pytest.approx(0.75)
    assert math.isnan(aggregate_values([float("nan")] * 3))


def test_two_images_bootstrap_distribution_by_hand():
    # Image 0 holds three rows of class a worth 1; image 1 one row of class b worth 0.
    # Resamples of two images: {0,0} p=1/4, {0,1} p=1/2, {1,1} p=1/4.
    values = [1.0, 1.0, 1.0, 0.0]
    clusters = [0, 0, 0, 1]
    classes = ["a", "a", "a", "b"]
    # mean over rows: {0,0} -> 1, {0,1} -> 3/4, {1,1} -> 0; the 2.5/97.5 percentiles are 0 and 1
    est, low, high = bootstrap_ci(values, clusters, method="percentile")
    assert (est, low, high) == (0.75, 0.0, 1.0)
    # class mean: a class absent from a resample is left out: {0,0} -> 1, {1,1} -> 0, {0,1} -> .5
    est, low, high = bootstrap_ci(values, clusters, classes, "class_mean", method="percentile")
    assert (est, low, high) == (0.5, 0.0, 1.0)


def test_an_image_is_resampled_whole():
    rng = np.random.default_rng(3)
    per_image = rng.normal(size=60)
    ids = np.arange(60)
    # Ten identical rows per image: every resample of images gives the same mean as resampling
    # the one-row-per-image table, so with the same seed the intervals are identical ...
    clustered = bootstrap_ci(np.repeat(per_image, 10), np.repeat(ids, 10))
    assert clustered == pytest.approx(bootstrap_ci(per_image, ids), abs=1e-12)
    # ... while pretending the 600 rows are independent shrinks the interval by about sqrt(10).
    naive = bootstrap_ci(np.repeat(per_image, 10), np.arange(600))
    ratio = (clustered[2] - clustered[1]) / (naive[2] - naive[1])
    assert 2.5 < ratio < 4.0


def test_percentile_and_bca_match_normal_theory():
    rng = np.random.default_rng(7)
    x = rng.normal(loc=2.0, scale=3.0, size=400)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(x.size)
    for method in ("percentile", "BCa"):
        est, low, high = bootstrap_ci(x, np.arange(x.size), n_resamples=4000, method=method)
        assert est == pytest.approx(x.mean())
        assert low == pytest.approx(x.mean() - half, abs=0.06 * half)
        assert high == pytest.approx(x.mean() + half, abs=0.06 * half)


def test_seeded_and_confidence_monotone():
    rng = np.random.default_rng(0)
    x = rng.random(200)
    ids = np.arange(200)
    assert bootstrap_ci(x, ids, seed=5) == bootstrap_ci(x, ids, seed=5)
    assert bootstrap_ci(x, ids, seed=5) != bootstrap_ci(x, ids, seed=6)
    _, l90, h90 = bootstrap_ci(x, ids, confidence=0.90)
    _, l99, h99 = bootstrap_ci(x, ids, confidence=0.99)
    assert l99 < l90 < h90 < h99


def test_degenerate_inputs():
    nan = float("nan")
    assert all(math.isnan(v) for v in bootstrap_ci([nan, nan], [0, 1]))
    est, low, high = bootstrap_ci([0.2, 0.4], [7, 7])  # one image: no sampling variability
    assert est == pytest.approx(0.3) and math.isnan(low) and math.isnan(high)
    assert bootstrap_ci([1.0, 1.0, 1.0, nan], [0, 1, 2, 3]) == (1.0, 1.0, 1.0)
    # 39 hits of 40: the percentile interval's low end is 37/40 (3 misses have bootstrap
    # probability ~8%, 4 misses ~2%), BCa corrects it down towards the exact binomial 0.868.
    est, low, high = bootstrap_ci([1.0] * 39 + [0.0], np.arange(40), method="percentile")
    assert (est, low, high) == (39 / 40, 37 / 40, 1.0)
    est, low, high = bootstrap_ci([1.0] * 39 + [0.0], np.arange(40))
    assert 0.84 < low < 0.87 and high == 1.0


def test_bca_falls_back_to_percentile_where_undefined():
    # Two images per class: leaving out any one image keeps both classes, so every jackknife
    # class mean is 0.5 and BCa's acceleration is 0/0. Resamples lacking class b (prob 1/16)
    # give 1, lacking a give 0: the percentile interval is (0, 1).
    args = ([1.0, 1.0, 0.0, 0.0], [0, 1, 2, 3], ["a", "a", "b", "b"], "class_mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci(*args) == bootstrap_ci(*args, method="percentile") == (0.5, 0.0, 1.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="class_mean.*classes"):
        bootstrap_ci([1.0, 0.0], [0, 1], aggregate="class_mean")
    with pytest.raises(ValueError, match="clusters has 1 entries but values has 2"):
        bootstrap_ci([1.0, 0.0], [0])
    with pytest.raises(ValueError, match="Inf"):
        bootstrap_ci([1.0, float("inf")], [0, 1])
    with pytest.raises(ValueError, match="aggregate"):
        bootstrap_ci([1.0, 0.0], [0, 1], aggregate="median")
    with pytest.raises(ValueError, match="share rows"):
        paired_test([1.0], [1.0, 2.0])


def test_paired_identical_methods_are_not_different():
    x = np.random.default_rng(1).random(50)
    res = paired_test(x, x.copy())
    assert res.difference == 0.0 and (res.low, res.high) == (0.0, 0.0)
    assert res.p_wilcoxon == 1.0 and res.p_bootstrap == 1.0


def test_paired_consistent_improvement_by_hand():
    rng = np.random.default_rng(2)
    b = rng.random(30)
    gain = 0.1 + 0.01 * rng.random(30)  # every row improves
    clusters = np.repeat(np.arange(10), 3)  # ten images of three rows
    res = paired_test(b + gain, b, clusters, n_resamples=999)
    assert res.difference == pytest.approx(gain.mean())
    assert res.low > 0 and res.n_clusters == 10 and res.n_rows == 30
    # Wilcoxon on the ten per-image differences, all positive: exact two-sided p = 2 / 2^10
    assert res.p_wilcoxon == pytest.approx(2 / 1024)
    # every resampled difference is > 0: p = 2 * (1 + 0) / (999 + 1)
    assert res.p_bootstrap == pytest.approx(2 / 1000)


def test_paired_drops_rows_where_either_is_nan():
    nan = float("nan")
    a = [1.0, 0.0, nan, 1.0]
    b = [0.0, 0.0, 100.0, nan]
    res = paired_test(a, b)
    assert res.n_rows == 2 and res.difference == pytest.approx(0.5)  # (1 - 0 + 0 - 0) / 2


def test_paired_class_mean_difference():
    # class a rows: diffs 1, 0 -> 0.5 ; class b: diff -1 -> mean over classes -0.25
    res = paired_test([1.0, 0.0, 0.0], [0.0, 0.0, 1.0], classes=["a", "a", "b"], aggregate="class_mean")
    assert res.difference == pytest.approx(-0.25)


def test_ranks_tie_where_not_significant():
    rng = np.random.default_rng(4)
    n = 200
    base = rng.random(n)
    scores = {
        "gradcam": base + 0.3,
        "gradcam_noisy": base + 0.3 + 1e-3 * rng.normal(size=n),  # indistinguishable
        "random": base,  # 0.3 worse on every row
    }
    ranked = rank_methods(scores, n_resamples=500)
    ranks = {r.name: r.rank for r in ranked}
    assert ranks["gradcam"] == ranks["gradcam_noisy"] == 1
    assert ranks["random"] == 3  # competition ranking: 1, 1, 3
    assert ranked[1].leader == ranked[0].name and ranked[1].p_value > 0.05
    assert ranked[-1].leader == "random" and math.isnan(ranked[-1].p_value)  # leads its own rank
    # lower is better flips the order
    ranked = rank_methods(scores, higher_is_better=False, n_resamples=200)
    assert [r.name for r in ranked][0] == "random" and ranked[0].rank == 1
    assert [r.rank for r in ranked] == [1, 2, 2]


def test_nan_methods_come_last():
    # a > b by 0.02, b > c by 0.02 (each within noise), a > c by 0.04; plus an undefined method
    rng = np.random.default_rng(5)
    n = 40
    noise = lambda: 0.2 * rng.normal(size=n)  # noqa: E731
    scores = {"a": 0.54 + noise(), "b": 0.52 + noise(), "c": 0.50 + noise(), "none": [float("nan")] * n}
    ranked = rank_methods(scores, n_resamples=200)
    assert [r.name for r in ranked][-1] == "none" and ranked[-1].rank == 4
    assert math.isnan(ranked[-1].p_value)


def test_class_mean_leaderboard_scale_is_fast():
    # 5,000 images, ~2.4 rows each, 80 classes, BCa with 2,000 resamples: a few matrix products.
    rng = np.random.default_rng(6)
    clusters = np.repeat(np.arange(5000), 3)[:12000]
    classes = rng.integers(0, 80, clusters.size)
    hits = (rng.random(clusters.size) < 0.7).astype(float)
    est, low, high = bootstrap_ci(hits, clusters, classes, "class_mean")
    assert low < est < high and high - low < 0.03


def test_rounding_differences_share_the_leaders_rank():
    # CAM and Grad-CAM on a global-pooling CNN: the same maps by different float32 arithmetic.
    # A difference of 2e-7 on every row is consistent, so without the tolerance the paired
    # bootstrap calls it significant; within SCORE_RTOL it is the same value.
    rng = np.random.default_rng(7)
    n = 60
    base = 0.3 + 0.5 * rng.random(n)
    scores = {"cam": base, "gradcam": base - 2e-7, "worse": base - 1e-3}
    ranked = {r.name: r for r in rank_methods(scores, n_resamples=500)}
    assert ranked["cam"].rank == ranked["gradcam"].rank == 1
    assert ranked["gradcam"].p_value == 1.0
    # 1e-3 below on every row is far above rounding: a rank of its own (competition ranking).
    assert ranked["worse"].rank == 3
    # The estimates are the values as computed, not snapped.
    assert ranked["gradcam"].estimate == pytest.approx(float(np.mean(base)) - 2e-7, abs=1e-12)
    assert ranked["gradcam"].estimate < ranked["cam"].estimate
