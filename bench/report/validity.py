"""Which grounding score can be trusted: does a method's per-row score track what the model
measurably relies on?

For every (model, method), the Spearman rank correlation over (image, target) rows between a
grounding score and the row's measured reliance (:mod:`bench.interventions`):

- ``leakage`` against **context reliance** (drop when the context is removed, minus the drop
  when a same-area control region is): a method whose leakage is high exactly where the model
  uses the context is telling the truth about it;
- ``pointing_game`` and ``energy_pointing_game`` (mass on the object) against **object
  reliance** (object drop minus its control's).

Conventions:

- Rows are joined on (model, image_id, target); a row enters a cell only where both the score
  and the reliance are defined (NaN on either side drops it; the count left out is reported).
- The correlation is ``scipy.stats.spearmanr``'s: Pearson correlation of mid-ranks (ties get
  the mean of their ranks). Undefined (NaN) when either side is constant or fewer than 3 rows
  remain.
- The confidence interval resamples *images* (an image's rows together, as every leaderboard
  CI here: :mod:`bench.report.stats`), BCa via ``scipy.stats.bootstrap``, seeded; where BCa
  degenerates, the percentile interval of the same resamples. A resample with duplicated
  images is ranked as the duplicated data (:func:`weighted_spearman`), exactly what
  ``spearmanr`` gives on the rows repeated.
- ``n`` is the number of rows in the cell. Below ``min_rows`` (default 30) the cell is
  **inconclusive**: it is shown, marked, and never read as evidence either way.
- A cell *tracks* when its CI lies above 0, is *inverse* when it lies below 0, and is *flat*
  otherwise (and conclusive).
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.stats


MIN_ROWS = 30
# (grounding score column, reliance column) pairs the table reports, in order, where present.
PAIRS = (
    ("leakage", "context_reliance"),
    ("pointing_game", "object_reliance"),
    ("energy_pointing_game", "object_reliance"),
)
_MAX_ENTRIES = 4_000_000  # resamples x rows in one vectorised batch (~32 MB of float64)


def _seeded(seed: int) -> dict:
    # scipy >= 1.15 takes `rng`; older releases only `random_state`.
    key = "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"
    return {key: np.random.default_rng(seed)}


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho with its bootstrap CI; ``n`` rows from ``n_images`` images; ``verdict``:
    "tracks", "inverse", "flat", "inconclusive" (n < min_rows) or "undefined"."""

    rho: float
    low: float
    high: float
    n: int
    n_images: int
    verdict: str


def _midranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based) of ``values`` (N) in samples where row i appears ``weights[r, i]``
    times (R x N), as ``scipy.stats.rankdata(method="average")`` gives on the repeated data."""
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    group = np.cumsum(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]]) - 1  # per sorted position
    group_w = np.add.reduceat(weights[:, order], starts, axis=1)  # R x n_groups
    below = np.cumsum(group_w, axis=1) - group_w
    mid = below + (group_w + 1.0) / 2.0
    ranks = np.empty_like(weights, dtype=np.float64)
    ranks[:, order] = mid[:, group]
    return ranks


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman's rho for each row of ``weights`` (R x N non-negative integer multiplicities of
    the N rows): equal to ``spearmanr`` on the data with row i repeated ``weights[r, i]`` times.
    NaN where either side is constant in a sample."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    rx, ry = _midranks(x, weights), _midranks(y, weights)
    total = weights.sum(axis=1, keepdims=True)
    total = np.where(total > 0, total, 1.0)
    dx = rx - (weights * rx).sum(axis=1, keepdims=True) / total
    dy = ry - (weights * ry).sum(axis=1, keepdims=True) / total
    cov = (weights * dx * dy).sum(axis=1)
    vx = (weights * dx * dx).sum(axis=1)
    vy = (weights * dy * dy).sum(axis=1)
    # Two distinct mid-ranks differ by at least 1, so a sample that is not constant has a
    # weighted rank variance of at least 1/2; a constant one has 0 up to rounding.
    valid = (vx > 0.25) & (vy > 0.25)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = cov / np.sqrt(vx * vy)
    return np.where(valid, np.clip(rho, -1.0, 1.0), np.nan)


def spearman_ci(
    x,
    y,
    clusters,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    min_rows: int = MIN_ROWS,
) -> Correlation:
    """Spearman's rho between ``x`` and ``y`` (rows with a NaN on either side dropped) with a
    bootstrap CI over ``clusters`` (image ids), and the verdict (module docstring)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    clusters = np.asarray(clusters).ravel()
    if not (x.shape == y.shape == clusters.shape):
        raise ValueError(f"x, y and clusters must have one entry per row: {x.shape}, {y.shape}, {clusters.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, clusters = x[keep], y[keep], clusters[keep]
    n = int(x.size)
    _, cluster_idx = np.unique(clusters, return_inverse=True)
    g = int(cluster_idx.max()) + 1 if n else 0
    if n < 3:
        return Correlation(math.nan, math.nan, math.nan, n, g, "undefined")
    rho = float(weighted_spearman(x, y, np.ones((1, n)))[0])
    if not math.isfinite(rho):
        return Correlation(math.nan, math.nan, math.nan, n, g, "undefined")
    low = high = math.nan
    if g >= 2:

        def statistic(idx, axis=-1):
            idx = np.asarray(idx)
            lead, m = idx.shape[:-1], idx.shape[-1]
            flat = idx.reshape(-1, m).astype(np.int64)
            r = flat.shape[0]
            counts = np.bincount((flat + g * np.arange(r)[:, None]).ravel(), minlength=r * g).reshape(r, g)
            out = np.empty(r)
            step = max(1, _MAX_ENTRIES // max(n, 1))
            for s in range(0, r, step):
                out[s : s + step] = weighted_spearman(x, y, counts[s : s + step][:, cluster_idx])
            return out.reshape(lead)

        kwargs = dict(n_resamples=n_resamples, vectorized=True, confidence_level=confidence, **_seeded(seed))
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore")
            res = scipy.stats.bootstrap((np.arange(g),), statistic, method="BCa", **kwargs)
            low, high = res.confidence_interval
            if not (np.isfinite(low) and np.isfinite(high)):
                finite = res.bootstrap_distribution[np.isfinite(res.bootstrap_distribution)]
                if finite.size:
                    alpha = (1 - confidence) / 2
                    low, high = np.quantile(finite, [alpha, 1 - alpha])
        low, high = float(low), float(high)
    if n < min_rows:
        verdict = "inconclusive"
    elif not (math.isfinite(low) and math.isfinite(high)):
        verdict = "undefined"
    elif low > 0:
        verdict = "tracks"
    elif high < 0:
        verdict = "inverse"
    else:
        verdict = "flat"
    return Correlation(rho, low, high, n, g, verdict)


def validity_table(
    scores: pd.DataFrame,
    reliance: pd.DataFrame,
    *,
    pairs=PAIRS,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    min_rows: int = MIN_ROWS,
) -> pd.DataFrame:
    """One row per (model, method, score, reliance): rho, low, high, n, n_images, n_undefined,
    verdict. ``scores``: score rows (model, method, image_id, target and metric columns);
    ``reliance``: reliance rows of *one* removal mode (model, image_id, target,
    ``context_reliance``, ``object_reliance``). Pairs whose score column is absent are left out."""
    columns = ["model", "method", "score", "reliance", "rho", "low", "high", "n", "n_images", "n_undefined", "verdict"]
    if scores.empty or reliance.empty:
        return pd.DataFrame(columns=columns)
    if "mode" in reliance.columns and reliance["mode"].nunique() > 1:
        raise ValueError(f"reliance rows of one removal mode expected, got {sorted(reliance['mode'].unique())}")
    keys = ["model", "image_id", "target"]
    rel_cols = sorted({r for _, r in pairs if r in reliance.columns})
    rel = reliance[keys + rel_cols].drop_duplicates(subset=keys)
    joined = scores.merge(rel, on=keys, how="left")
    out = []
    for (model, method), df in joined.groupby(["model", "method"], sort=False):
        for score, rel_col in pairs:
            if score not in df.columns or rel_col not in df.columns:
                continue
            x, y = df[score].astype(float).to_numpy(), df[rel_col].astype(float).to_numpy()
            c = spearman_ci(x, y, df["image_id"].to_numpy(), confidence=confidence, n_resamples=n_resamples, seed=seed, min_rows=min_rows)
            out.append({"model": model, "method": method, "score": score, "reliance": rel_col, **asdict(c), "n_undefined": int(len(df) - c.n)})
    return pd.DataFrame(out, columns=columns)
