"""The statistics behind every leaderboard cell (docs/design.md, "Statistics").

A cell is an estimate over score rows: one row per (image, target), so an image with three
classes contributes three rows. Rows of one image are not independent (same photo, same map),
so every resampling here is over *images* (``clusters``): an image drawn into a bootstrap
resample brings all of its rows with it, and an image left out takes all of them away.

Conventions shared by every function:

- NaN values (undefined scores: empty masks, no context, no positive mass) are dropped first.
  In paired comparisons a row is dropped when either method's value is NaN there.
- ``aggregate="mean"`` is the mean over rows. ``aggregate="class_mean"`` is the mean over
  classes of the per-class mean (TorchRay's pointing-game accuracy); a class with no row in a
  resample is left out of that resample's mean over classes.
- Resampling is seeded (``seed``) and reproducible; the same seed gives the same interval.

The bootstrap is vectorised: a resample is summarised as a count vector (how often each image
was drawn), and every statistic is ``counts @ per-image sums`` divided by ``counts @ per-image
row counts``, so 2,000 resamples of a 5,000-image leaderboard are a few matrix products.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
import scipy.stats

Aggregate = Literal["mean", "class_mean"]
Method = Literal["BCa", "percentile"]

# Upper bound on the entries of one resample-count matrix (resamples x images), so memory
# stays near 16 MB whatever the number of images.
_MAX_COUNT_ENTRIES = 2_000_000


@dataclass(frozen=True)
class PairedResult:
    """Comparison of method a against method b on the same rows.

    difference: aggregate(a) - aggregate(b) on the rows valid for both; low/high: its bootstrap
    CI; p_wilcoxon: two-sided Wilcoxon signed-rank p-value on per-image mean differences;
    p_bootstrap: two-sided paired-bootstrap p-value (dual of the percentile CI); p_bca: the
    same test as the dual of the BCa CI (what the leaderboard's ranks use); n_rows /
    n_clusters: what was compared.
    """

    difference: float
    low: float
    high: float
    p_wilcoxon: float
    p_bootstrap: float
    n_rows: int
    n_clusters: int
    p_bca: float = math.nan


@dataclass(frozen=True)
class RankedMethod:
    """One leaderboard row (see :func:`rank_methods`): ``rank`` is shared with the leader of its
    group, the best method not in an earlier group; ``p_value`` is the Holm-adjusted p-value of
    the comparison with that leader (NaN for a leader, and for methods with no defined value);
    ``leader`` names it."""

    name: str
    estimate: float
    rank: int
    p_value: float
    leader: str = ""


class _ClusterTable:
    """Per-image (cluster) sums and row counts, per class: the sufficient statistics of every
    aggregate here."""

    def __init__(self, values, clusters, classes, aggregate: Aggregate):
        values = np.asarray(values, dtype=np.float64).ravel()
        n = values.shape[0]
        clusters = _labels(clusters, n, "clusters")
        if aggregate == "class_mean":
            if classes is None:
                raise ValueError('aggregate="class_mean" needs `classes` (one label per value)')
            classes = _labels(classes, n, "classes")
        elif aggregate == "mean":
            classes = np.zeros(n, dtype=np.int64)
        else:
            raise ValueError(f'aggregate must be "mean" or "class_mean", got {aggregate!r}')
        keep = ~np.isnan(values)
        values, clusters, classes = values[keep], clusters[keep], classes[keep]
        if np.isinf(values).any():
            raise ValueError("values contain +-Inf; scores must be finite or NaN (undefined)")
        _, cluster_idx = np.unique(clusters, return_inverse=True)
        _, class_idx = np.unique(classes, return_inverse=True)
        g = int(cluster_idx.max()) + 1 if n and keep.any() else 0
        c = int(class_idx.max()) + 1 if g else 0
        self.sums = np.zeros((g, c))
        self.counts = np.zeros((g, c))
        np.add.at(self.sums, (cluster_idx, class_idx), values)
        np.add.at(self.counts, (cluster_idx, class_idx), 1.0)
        self.aggregate = aggregate
        self.n_rows = int(values.shape[0])
        self.n_clusters = g
        self.constant = self.n_rows > 0 and bool(np.ptp(values) == 0)

    def statistic(self, weights: np.ndarray) -> np.ndarray:
        """Aggregate for each row of ``weights`` (R x G image multiplicities) -> R."""
        return self._from_totals(weights @ self.sums, weights @ self.counts)

    def jackknife(self) -> np.ndarray:
        """The aggregate with each image left out in turn (G values): the totals minus that
        image's sums, so no G x G matrix is built."""
        return self._from_totals(self.sums.sum(axis=0) - self.sums, self.counts.sum(axis=0) - self.counts)

    def _from_totals(self, s: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Aggregate from per-class sums ``s`` and row counts ``k`` (R x C) -> R."""
        if self.aggregate == "mean":
            total = k.sum(axis=1)
            return np.where(total > 0, s.sum(axis=1) / np.where(total > 0, total, 1.0), np.nan)
        present = k > 0
        per_class = np.where(present, s / np.where(present, k, 1.0), 0.0)
        n_present = present.sum(axis=1)
        return np.where(n_present > 0, per_class.sum(axis=1) / np.maximum(n_present, 1), np.nan)

    def estimate(self) -> float:
        if self.n_clusters == 0:
            return math.nan
        return float(self.statistic(np.ones((1, self.n_clusters)))[0])

    def resampled(self, idx: np.ndarray, axis: int = -1) -> np.ndarray:
        """scipy.stats.bootstrap's vectorised statistic: ``idx`` holds image indices along its
        last axis (a resample, or a jackknife sample one image short)."""
        idx = np.asarray(idx)
        lead, m = idx.shape[:-1], idx.shape[-1]
        flat = idx.reshape(-1, m).astype(np.int64)
        r, g = flat.shape[0], self.n_clusters
        counts = np.bincount((flat + g * np.arange(r)[:, None]).ravel(), minlength=r * g)
        return self.statistic(counts.reshape(r, g).astype(np.float64)).reshape(lead)

    def bootstrap(self, confidence: float, n_resamples: int, seed: int, method: Method):
        if method not in ("BCa", "percentile"):
            raise ValueError(f'method must be "BCa" or "percentile", got {method!r}')
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        g = self.n_clusters
        batch = max(1, min(n_resamples, _MAX_COUNT_ENTRIES // max(g, 1)))
        kwargs = dict(
            n_resamples=n_resamples,
            batch=batch,
            vectorized=True,
            confidence_level=confidence,
            **_rng_kwarg(seed),
        )
        data = (np.arange(g),)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", _DEGENERATE)
            res = scipy.stats.bootstrap(data, self.resampled, method=method, **kwargs)
            low, high = res.confidence_interval
            if method == "BCa" and not (np.isfinite(low) and np.isfinite(high)):
                # BCa is undefined when its jackknife or bias correction degenerates (e.g. a
                # class mean that leaving out any one image does not change): reuse the same
                # resamples for the percentile interval.
                res = scipy.stats.bootstrap(
                    data,
                    self.resampled,
                    method="percentile",
                    bootstrap_result=res,
                    **{**kwargs, "n_resamples": 0},
                )
                low, high = res.confidence_interval
        return float(low), float(high), np.asarray(res.bootstrap_distribution)


_DEGENERATE = getattr(scipy.stats, "DegenerateDataWarning", RuntimeWarning)


def _rng_kwarg(seed: int) -> dict:
    # scipy >= 1.15 takes `rng`; older releases only `random_state`.
    params = inspect.signature(scipy.stats.bootstrap).parameters
    key = "rng" if "rng" in params else "random_state"
    return {key: np.random.default_rng(seed)}


def _labels(labels, n: int, what: str) -> np.ndarray:
    arr = np.asarray(labels).ravel()
    if arr.shape[0] != n:
        raise ValueError(f"{what} has {arr.shape[0]} entries but values has {n}")
    return arr


def aggregate_values(values, classes=None, aggregate: Aggregate = "mean") -> float:
    """The point estimate alone: mean over non-NaN rows, or the mean over classes of per-class
    means. NaN when no row is defined."""
    n = np.asarray(values).size
    return _ClusterTable(values, np.arange(n), classes, aggregate).estimate()


def bootstrap_ci(
    values,
    clusters,
    classes=None,
    aggregate: Aggregate = "mean",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: Method = "BCa",
) -> tuple[float, float, float]:
    """(estimate, low, high): the aggregate of ``values`` and its two-sided ``confidence``
    bootstrap interval, resampling whole images (``clusters``: one image id per value).

    Uses ``scipy.stats.bootstrap`` (``method`` "BCa", its default, or "percentile"), seeded
    with ``seed``. Where BCa is undefined (its jackknife acceleration or bias correction is
    0/0 or infinite), the percentile interval of the same resamples is returned. BCa is the
    default because it is second-order accurate, which matters for hit rates near 0 or 1
    (39 hits of 40: BCa gives low = 0.854, close to the exact Clopper-Pearson 0.868, where
    the percentile interval gives 0.925). NaN values are
    excluded first. Degenerate cases: no defined value gives (nan, nan, nan); a single image
    gives (estimate, nan, nan) since one image says nothing about sampling variability; values
    that are all equal give (estimate, estimate, estimate), as every resample does.
    """
    table = _ClusterTable(values, clusters, classes, aggregate)
    est = table.estimate()
    if table.n_clusters < 2:
        return est, math.nan, math.nan
    if table.constant:
        return est, est, est
    low, high, _ = table.bootstrap(confidence, n_resamples, seed, method)
    return est, low, high


def paired_test(
    a,
    b,
    clusters=None,
    classes=None,
    aggregate: Aggregate = "mean",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    method: Method = "BCa",
) -> PairedResult:
    """Compare two methods scored on the same rows (``a[i]`` and ``b[i]`` are the same image and
    target). Rows where either is NaN are dropped; ``clusters`` (image ids, default: every row
    its own image) make the bootstrap resample whole images.

    - difference, low, high: aggregate(a) - aggregate(b) and its bootstrap CI (for "class_mean"
      this is the class mean of the row differences, identical since the rows are shared).
    - p_bootstrap: two-sided paired-bootstrap p-value, the dual of the percentile interval:
      ``min(1, 2 * min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (R + 1))`` over the R resampled
      differences d*; it is below alpha exactly when the (1 - alpha) percentile CI of the
      difference excludes 0 (up to the +1 that keeps it above 0).
    - p_wilcoxon: ``scipy.stats.wilcoxon`` (two-sided, zero differences discarded, "wilcox")
      on the per-image mean differences, one per image so that the test's independence
      assumption holds; 1.0 when every difference is zero.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a has {a.size} values but b has {b.size}: they must share rows")
    n = a.size
    clusters = np.arange(n) if clusters is None else _labels(clusters, n, "clusters")
    if classes is not None:
        classes = _labels(classes, n, "classes")
    both = ~(np.isnan(a) | np.isnan(b))
    diff = np.where(both, a - b, np.nan)
    table = _ClusterTable(diff, clusters, classes, aggregate)
    est = table.estimate()

    per_image = table.sums.sum(axis=1) / np.maximum(table.counts.sum(axis=1), 1)
    if table.n_clusters == 0 or not np.any(per_image != 0):
        p_w = 1.0 if table.n_clusters else math.nan
    else:
        p_w = float(scipy.stats.wilcoxon(per_image, zero_method="wilcox").pvalue)

    if table.n_clusters < 2:
        return PairedResult(est, math.nan, math.nan, p_w, math.nan, table.n_rows, table.n_clusters, math.nan)
    if table.constant:
        # Every resample repeats the same difference: significant unless it is zero.
        p_b = 1.0 if est == 0 else min(1.0, 2.0 / (n_resamples + 1))
        return PairedResult(est, est, est, p_w, p_b, table.n_rows, table.n_clusters, p_b)
    low, high, dist = table.bootstrap(confidence, n_resamples, seed, method)
    dist = dist[np.isfinite(dist)]
    r = dist.size
    p_b = min(1.0, 2 * min(1 + np.sum(dist <= 0), 1 + np.sum(dist >= 0)) / (r + 1))
    p_bca = bca_p_value(dist, est, table.jackknife())
    return PairedResult(est, low, high, p_w, float(p_b), table.n_rows, table.n_clusters, p_bca)


def bca_p_value(dist: np.ndarray, estimate: float, jackknife: np.ndarray) -> float:
    """Two-sided p-value of "the difference is 0" as the dual of the BCa interval (Efron &
    Tibshirani 1993, ch. 14): the smallest alpha at which the (1 - alpha) BCa interval built
    from the bootstrap differences ``dist``, the observed ``estimate`` and the ``jackknife``
    (leave-one-image-out) values, with scipy's bias correction z0 and acceleration a, has 0 at
    an endpoint. With F the share of ``dist`` below 0 (ties counted half), w = Phi^-1(F) - z0
    and z = w / (1 + a w) - z0, p = 2 min(Phi(z), 1 - Phi(z)). Where BCa is undefined (z0 or a
    not finite, or 1 + a w <= 0) it is the percentile interval's dual, 2 min(F, 1 - F), as the
    cells fall back to the percentile interval. Where every resample lies on one side of 0,
    every interval these resamples can give (their endpoints are resample quantiles) excludes
    0, and p is the resolution of R resamples, 2 / (R + 1)."""
    from scipy.special import ndtr, ndtri

    dist = np.asarray(dist, dtype=np.float64)
    dist = dist[np.isfinite(dist)]
    r = dist.size
    if r == 0 or not math.isfinite(estimate):
        return math.nan
    below = np.sum(dist < 0) + 0.5 * np.sum(dist == 0)
    if below == 0 or below == r:
        return min(1.0, 2.0 / (r + 1))
    f = float(below / r)
    percentile_p = min(1.0, 2.0 * min(f, 1.0 - f))
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = float(ndtri((np.sum(dist < estimate) + np.sum(dist <= estimate)) / (2.0 * r)))
        jack = np.asarray(jackknife, dtype=np.float64)
        d = jack.mean() - jack
        den = 6.0 * float(np.sum(d**2)) ** 1.5
        a = float(np.sum(d**3)) / den if den > 0 else 0.0
    if not (math.isfinite(z0) and math.isfinite(a)):
        return percentile_p
    w = float(ndtri(f)) - z0
    if 1.0 + a * w <= 0:
        return percentile_p
    z = w / (1.0 + a * w) - z0
    return float(min(1.0, 2.0 * min(ndtr(z), 1.0 - ndtr(z))))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error rate): the i-th smallest p-value of m
    becomes max over j <= i of min(1, (m - j + 1) p_(j)). A NaN p-value stays NaN and does not
    count in m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    running = 0.0
    for j, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return out.tolist()


# Relative difference below which two float32 scores of one row are the same value (see
# rank_methods): float32 has a relative precision of 2**-24 ~ 6e-8.
SCORE_RTOL = 1e-6


def _equal_to_rounding(values: np.ndarray, leader: np.ndarray) -> np.ndarray:
    """``values`` with each entry that equals the leader's up to :data:`SCORE_RTOL` replaced by
    the leader's (NaN stays NaN)."""
    close = np.abs(values - leader) <= SCORE_RTOL * np.maximum(np.abs(values), np.abs(leader))
    return np.where(close, leader, values)


def rank_methods(
    scores: Mapping[str, Sequence[float]],
    clusters=None,
    classes=None,
    aggregate: Aggregate = "mean",
    higher_is_better: bool = True,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[RankedMethod]:
    """Order methods best first and rank them, tying the methods that are not significantly
    different from the best.

    ``scores`` maps method name -> values on the same rows (same order, same ``clusters`` and
    ``classes``). Methods are sorted by their estimate (the ``aggregate`` the leaderboard cell
    shows; NaN estimates last, ties by name). Then, in groups:

    1. the best method not yet ranked is the group's *leader*;
    2. every other unranked method is compared with the leader: a paired bootstrap of the
       difference of the aggregate, resampling images (``clusters``), with the cells' seed and
       number of resamples, its p-value the dual of the BCa interval (:func:`paired_test`'s
       ``p_bca``); the p-values of the group are Holm-adjusted (:func:`holm`), so the chance of
       any false "different from the leader" is at most ``alpha``;
    3. the methods whose adjusted p-value is not below ``alpha`` share the leader's rank, which
       is 1 + the number of methods in earlier groups (competition ranking: 1, 1, 3).

    So rank 1 is the best method and every method not significantly different from it. There
    is no chaining: every method that shares a rank was compared with that rank's leader, never
    only with a neighbour (A ~ B and B ~ C do not make A ~ C). Methods whose estimate is NaN
    (no defined value) come last and share one rank, with p_value NaN.

    Scores are computed in float32, so two methods that make the same map by different
    arithmetic (CAM and Grad-CAM on a global-pooling CNN) differ by rounding only. In the
    comparison with the leader, a row's two values count as equal when
    ``|a - b| <= SCORE_RTOL * max(|a|, |b|)`` (:data:`SCORE_RTOL` = 1e-6, about 8 float32 ulps):
    a method equal to the leader on every row gets p_value 1 and shares its rank, where a
    consistent rounding difference would otherwise be "significant". Estimates and their order
    are the values as computed.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    names = list(scores)
    arrays = {k: np.asarray(scores[k], dtype=np.float64).ravel() for k in names}
    sizes = {v.size for v in arrays.values()}
    if len(sizes) > 1:
        raise ValueError(f"every method needs a value for every row; got sizes {sorted(sizes)}")
    estimates = {k: aggregate_values(arrays[k], classes, aggregate) for k in names}
    sign = -1.0 if higher_is_better else 1.0

    def key(name: str):
        e = estimates[name]
        return (math.isnan(e), sign * e if not math.isnan(e) else 0.0, name)

    order = sorted(names, key=key)
    defined = [n for n in order if not math.isnan(estimates[n])]
    ranked: dict[str, RankedMethod] = {}
    left = list(defined)
    while left:
        leader, rest = left[0], left[1:]
        rank = len(ranked) + 1
        ranked[leader] = RankedMethod(leader, estimates[leader], rank, math.nan, leader)
        raw = [
            paired_test(
                arrays[leader],
                _equal_to_rounding(arrays[name], arrays[leader]),
                clusters,
                classes,
                aggregate,
                n_resamples=n_resamples,
                seed=seed,
                method="percentile",  # the same resamples; p_bca adds BCa's corrections itself
            ).p_bca
            for name in rest
        ]
        adjusted = holm(raw)
        tied = [(n, p) for n, p in zip(rest, adjusted) if not p < alpha]
        for name, p in tied:
            ranked[name] = RankedMethod(name, estimates[name], rank, float(p), leader)
        left = [n for n in rest if n not in ranked]
    undefined_rank = len(defined) + 1
    for name in order[len(defined):]:
        ranked[name] = RankedMethod(name, estimates[name], undefined_rank, math.nan, "")
    return [ranked[n] for n in order]
