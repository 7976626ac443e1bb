"""Per-class breakdown of a leaderboard: the same cells, computed on each class's rows alone.

The overall leaderboard (:func:`bench.report.leaderboard.compute`) answers "which method is
best"; the breakdown answers "for which classes". Each class's cells are computed by the same
function on the rows of that class, so estimates, bootstrap CIs (over images) and tie-aware ranks
follow exactly the same conventions. Within one class a class-averaged metric (the pointing
game's mean of per-class hit rates) is simply the mean over that class's rows, so every metric is
aggregated as a plain mean here and no "difficult" subset is split off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench import results
from bench.report.leaderboard import compute, load_results

CLASS_COLUMN = "class"


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
    """The per-class breakdown of the results directory ``path``, from its rows alone."""
    path = Path(path)
    if not (path / results.SCORES).exists():
        return pd.DataFrame()
    df, columns = load_results(path)
    return class_cells(df, columns, confidence=confidence, n_resamples=n_resamples, seed=run_seed(path) if seed is None else seed)
