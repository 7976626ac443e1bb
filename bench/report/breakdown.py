"""Breakdowns of a leaderboard: the same cells, computed on each class's rows alone, and (for
runs that record them, see :mod:`bench.data.strata`) on each object-area bin's and each
instance-count bin's rows alone.

The overall leaderboard (:func:`bench.report.leaderboard.compute`) answers "which method is
best"; the breakdown answers "for which classes". Each class's cells are computed by the same
function on the rows of that class, so estimates, bootstrap CIs (over images) and tie-aware ranks
follow exactly the same conventions. Within one class a class-averaged metric (the pointing
game's mean of per-class hit rates) is simply the mean over that class's rows, so every metric is
aggregated as a plain mean here and no "difficult" subset is split off. Strata follow the same
rule: a stratum's cells are the leaderboard of its rows.

A breakdown frame has a ``class`` column holding the group (a class name, or a stratum's bin
label such as ``"area 10-30%"`` or ``"2 instances"``); when strata are present it also has a
``breakdown`` column saying which grouping a cell belongs to (``"class"``, ``"object_area"``,
``"instance_count"``). Runs without strata get exactly the per-class frame they always had.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench import results
from bench.report.leaderboard import compute, load_results

CLASS_COLUMN = "class"
BREAKDOWN_COLUMN = "breakdown"


def class_cells(
    df: pd.DataFrame,
    columns: dict[str, dict[str, Any]],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Leaderboard cells per (class, model, method, metric), subset "all", with a ``class``
    column (the dataset class, i.e. the rows' ``target``). Classes come out sorted by name."""
    if df.empty or "target" not in df.columns:
        return pd.DataFrame()
    per_row = {name: {**meta, "aggregate": "mean"} for name, meta in columns.items()}
    parts = []
    for label in sorted(df["target"].dropna().astype(str).unique()):
        cells = compute(df[df["target"].astype(str) == label], per_row, confidence=confidence, n_resamples=n_resamples, seed=seed)
        if cells.empty:
            continue
        parts.append(cells.assign(**{CLASS_COLUMN: label}))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def strata_cells(
    df: pd.DataFrame,
    columns: dict[str, dict[str, Any]],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Leaderboard cells per (stratum bin, model, method, metric) for every stratum the rows
    record (:data:`bench.data.strata.STRATA`), bins in their natural order, with ``class`` = the
    bin's label and ``breakdown`` = the stratum's name. Empty when the rows record none."""
    from bench.data.strata import STRATA, stratum_bins

    per_row = {name: {**meta, "aggregate": "mean"} for name, meta in columns.items()}
    parts = []
    for name in STRATA:
        if df.empty or name not in df.columns:
            continue
        bins, labels = stratum_bins(name, df[name])
        for label in labels:
            sub = df[bins == label]
            if sub.empty:
                continue
            cells = compute(sub, per_row, confidence=confidence, n_resamples=n_resamples, seed=seed)
            if not cells.empty:
                parts.append(cells.assign(**{CLASS_COLUMN: label, BREAKDOWN_COLUMN: name}))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def breakdown_cells(
    df: pd.DataFrame,
    columns: dict[str, dict[str, Any]],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-class cells, then per-stratum cells where the rows record strata (see module doc)."""
    by_class = class_cells(df, columns, confidence=confidence, n_resamples=n_resamples, seed=seed)
    strata = strata_cells(df, columns, confidence=confidence, n_resamples=n_resamples, seed=seed)
    if strata.empty:
        return by_class
    if by_class.empty:
        return strata
    return pd.concat([by_class.assign(**{BREAKDOWN_COLUMN: "class"}), strata], ignore_index=True)


def only_classes(cells: pd.DataFrame | None) -> pd.DataFrame | None:
    """The per-class part of a breakdown frame (what per-class figures draw)."""
    if cells is None or cells.empty or BREAKDOWN_COLUMN not in cells.columns:
        return cells
    return cells[cells[BREAKDOWN_COLUMN] == "class"].drop(columns=[BREAKDOWN_COLUMN])


def run_seed(path: Path) -> int:
    """The bootstrap seed a run's leaderboard uses: its config's seed (0 if unknown)."""
    config = Path(path) / results.CONFIG_JSON
    if config.exists():
        try:
            return int(json.loads(config.read_text()).get("seed", 0))
        except (ValueError, TypeError, AttributeError):
            return 0
    return 0


def load_class_cells(path: Path, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int | None = None) -> pd.DataFrame:
    """The breakdown (per class, and per stratum where the rows record strata) of the results
    directory ``path``, from its rows alone."""
    path = Path(path)
    if not (path / results.SCORES).exists():
        return pd.DataFrame()
    df, columns = load_results(path)
    return breakdown_cells(df, columns, confidence=confidence, n_resamples=n_resamples, seed=run_seed(path) if seed is None else seed)
