"""The human ceiling in a leaderboard (:mod:`bench.ceiling` computes it): a reference row, and
each method's score as a fraction of the way from the centre prior to the ceiling.

- **Reference row** ("human ceiling"), printed in every model's table of the "all" subset: per
  metric, the mean over images of the image's ceiling, with the leaderboard's 95% bootstrap CI
  over images. It is the same for every model, and it is not ranked (it is not a method).
- **Fraction of the way** (its own table): per model, method and fixation-based metric,
  ``(M - C) / (H - C)`` with M, C, H the means, over the images where all three are defined, of
  the method's score, the centre prior row's score and the ceiling (a method's rows of one image
  averaged first). 0 is the centre prior, 1 the human ceiling; below 0 is worse than the centre
  prior. The direction needs no care: for a lower-is-better metric both differences change sign.
  CI: BCa bootstrap over images of the same ratio (percentile where BCa is undefined), seeded.
  The centre prior row is the method whose registered name is ``center`` (the first, if
  several). Density metrics (CC, KL, SIM) get no fraction: their ceiling is scored against one
  observer's blurred fixations, the rows against all observers' density (module docstring of
  :mod:`bench.ceiling`), so the three numbers would not measure one thing.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from bench import results
from bench.ceiling import LABEL
from bench.report.stats import bootstrap_ci

FRACTION_SUBSET = "fraction_of_ceiling"
CENTER_METHOD = "center"
CELL_COLUMNS = ["model", "method", "subset", "metric", "estimate", "low", "high", "n", "n_undefined", "rank"]


def load(path: Path) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """The committed ceiling rows (row stream ``ceiling``) and ``ceiling.json`` of a results
    directory (None where absent)."""
    rd = results.ResultsDir(path)
    info_file = rd / results.CEILING
    info = json.loads(info_file.read_text()) if info_file.exists() else None
    rows = rd.committed_rows(results.CEILING_ROWS) if rd.stream_path(results.CEILING_ROWS).exists() else []
    return (pd.DataFrame(rows) if rows else None), info


def reference_cells(
    ceiling: pd.DataFrame | None,
    columns: dict[str, dict[str, Any]],
    models: list[str],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The "human ceiling" row of every model's "all" table (module docstring)."""
    cells = []
    if ceiling is None or ceiling.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    for metric in columns:
        if metric not in ceiling.columns:
            continue
        values = ceiling[metric].astype(float).to_numpy()
        est, low, high = bootstrap_ci(
            values, clusters=ceiling["image_id"].to_numpy(), confidence=confidence, n_resamples=n_resamples, seed=seed
        )
        n = int(np.isfinite(values).sum())
        if n == 0:
            continue
        for model in models:
            cells.append(
                {"model": model, "method": LABEL, "subset": "all", "metric": metric, "estimate": est, "low": low,
                 "high": high, "n": n, "n_undefined": int(len(values) - n), "rank": math.nan}
            )
    return pd.DataFrame(cells, columns=CELL_COLUMNS)


def center_labels(models_info: dict[str, Any]) -> dict[str, str]:
    """Per model, the label of its centre prior row (a method registered as ``center``)."""
    out = {}
    for model, info in models_info.items():
        for label, described in (info.get("methods") or {}).items():
            if isinstance(described, dict) and described.get("name") == CENTER_METHOD:
                out[model] = label
                break
    return out


def fraction_cells(
    scores: pd.DataFrame,
    ceiling: pd.DataFrame | None,
    info: dict[str, Any] | None,
    centers: dict[str, str],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each method's fraction of the way from the centre prior to the ceiling (module
    docstring), on the fixation-based metrics ``info["comparable"]``."""
    cells = []
    if ceiling is None or ceiling.empty or not info or scores.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    metrics = [m for m in info.get("comparable", []) if m in scores.columns and m in ceiling.columns]
    ceil = ceiling.set_index("image_id")
    for model, mdf in scores.groupby("model", sort=False):
        center = centers.get(model)
        if center is None or metrics == []:
            continue
        per_image = mdf.groupby(["method", "image_id"], sort=False)[metrics].mean()
        if center not in per_image.index.get_level_values(0):
            continue
        base = per_image.loc[center]
        for method in dict.fromkeys(mdf["method"]):
            if method == center:
                continue
            mine = per_image.loc[method]
            for metric in metrics:
                frame = pd.DataFrame({"m": mine[metric], "c": base[metric]}).join(ceil[metric].rename("h"), how="inner")
                frame = frame[np.isfinite(frame.to_numpy(dtype=float)).all(axis=1)]
                est, low, high = ratio_ci(frame["m"].to_numpy(float), frame["c"].to_numpy(float), frame["h"].to_numpy(float),
                                          confidence=confidence, n_resamples=n_resamples, seed=seed)
                cells.append(
                    {"model": model, "method": method, "subset": FRACTION_SUBSET, "metric": metric, "estimate": est,
                     "low": low, "high": high, "n": int(len(frame)), "n_undefined": int(len(mine) - len(frame)),
                     "rank": math.nan}
                )
    return pd.DataFrame(cells, columns=CELL_COLUMNS)


def ratio_ci(m: np.ndarray, c: np.ndarray, h: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 2000,
             seed: int = 0) -> tuple[float, float, float]:
    """(mean(m) - mean(c)) / (mean(h) - mean(c)) over paired images, and its bootstrap CI over
    images (BCa, else percentile). NaN where undefined (no image, or the ceiling equals the
    centre prior); no interval from a single image."""
    g = len(m)
    if g == 0:
        return math.nan, math.nan, math.nan
    span = float(h.mean() - c.mean())
    est = float(m.mean() - c.mean()) / span if span != 0 else math.nan
    if g < 2 or not math.isfinite(est):
        return est, math.nan, math.nan

    def statistic(idx, axis=-1):
        idx = np.asarray(idx)
        lead, k = idx.shape[:-1], idx.shape[-1]
        flat = idx.reshape(-1, k).astype(np.int64)
        r = flat.shape[0]
        w = np.bincount((flat + g * np.arange(r)[:, None]).ravel(), minlength=r * g).reshape(r, g).astype(float)
        return ((w @ m - w @ c) / (w @ h - w @ c)).reshape(lead)

    params = inspect.signature(scipy.stats.bootstrap).parameters
    rng = {("rng" if "rng" in params else "random_state"): np.random.default_rng(seed)}
    kwargs = dict(n_resamples=n_resamples, vectorized=True, confidence_level=confidence, **rng)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        res = scipy.stats.bootstrap((np.arange(g),), statistic, method="BCa", **kwargs)
        low, high = res.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):
            res = scipy.stats.bootstrap((np.arange(g),), statistic, method="percentile", bootstrap_result=res,
                                        **{**kwargs, "n_resamples": 0})
            low, high = res.confidence_interval
    return est, float(low), float(high)


def notes(info: dict[str, Any] | None, has_fractions: bool) -> list[str]:
    """Footer lines: what the ceiling row is, or why the run has none."""
    if not info:
        return []
    if not info.get("computed"):
        return [f"{LABEL}: not computed: {info.get('reason', 'unknown reason')}"]
    blur = info.get("blur") or {}
    how = (
        f"Gaussian sigma {blur.get('sigma'):g} px, {blur.get('mode')} borders, window +-{blur.get('truncate'):g} sigma"
        if isinstance(blur, dict) and "sigma" in blur else str(blur)
    )
    lines = [
        f"{LABEL}: leave one observer out: the other observers' fixated pixels blurred as the dataset's "
        f"density ({how}), scored against the left-out observer; mean over observers per image, "
        "95% bootstrap CI over images; not ranked",
    ]
    density = [c for c in info.get("columns", []) if c not in info.get("comparable", [])]
    if density:
        lines.append(
            f"{LABEL} on {', '.join(density)}: against one observer's blurred fixations, not the all-observer "
            "density the methods are scored against: a lower bound, and no fraction is given"
        )
    for label, why in (info.get("not_scored") or {}).items():
        lines.append(f"{LABEL} on {label}: not scored ({why})")
    if has_fractions:
        lines.append(
            "fraction of the way: (method - centre prior) / (human ceiling - centre prior) per metric, on the images "
            "where all three are defined; 0 = centre prior, 1 = human ceiling"
        )
    return lines
