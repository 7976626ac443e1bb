"""Leaderboards from score rows alone: aggregate, bootstrap CIs, ranks with statistical ties.

A results directory's ``scores.jsonl`` plus ``columns.json`` (each metric column's direction and
aggregation) fully determine the leaderboard; ``models.json`` and ``skipped.jsonl`` add the
model facts and the footer of what was not scored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import results
from bench.report.stats import bootstrap_ci, rank_methods
from bench.report.validity import measured

@dataclass
class Leaderboard:
    """``cells``: one row per (model, method, subset, metric) with estimate, low, high, n,
    n_undefined, rank (rendered by :mod:`bench.report.render`). ``facts``: per-model facts. ``skipped``: reason -> count.
    ``reliance``, ``validity``: a run with ``[reliance]``: the measured reliance summary and the
    validity table (:func:`bench.report.validity.measured`); empty otherwise.
    Gaze runs (:mod:`bench.report.ceiling`): ``references``, the human ceiling's cells (same
    columns, not ranked); ``fractions``, each method's fraction of the way from the centre prior
    to the ceiling; ``notes``, what those are or why the run has none."""

    cells: pd.DataFrame
    metrics: dict[str, dict[str, Any]]
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    confidence: float = 0.95
    title: str = ""
    reliance: pd.DataFrame = field(default_factory=pd.DataFrame)
    validity: pd.DataFrame = field(default_factory=pd.DataFrame)
    references: pd.DataFrame = field(default_factory=pd.DataFrame)
    fractions: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)


def load_results(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = Path(path)
    scores = path / results.SCORES
    if not scores.exists():
        raise FileNotFoundError(f"{path}: no {results.SCORES} here; is this a groundbench results directory?")
    rows = results.read_rows(scores)
    results.check_unique_keys(rows, scores)
    columns_file = path / results.COLUMNS
    if not columns_file.exists():
        raise FileNotFoundError(f"{columns_file}: missing; it says how each metric column aggregates")
    columns = {c["label"]: c for c in json.loads(columns_file.read_text())}
    return pd.DataFrame(rows), columns


def compute(
    df: pd.DataFrame,
    columns: dict[str, dict[str, Any]],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Aggregate rows into leaderboard cells.

    Subsets: "all", and "difficult" (the pointing-game subset: class area < 1/4 of the image and
    another class present) for metrics that aggregate per class, when any row is difficult.
    Ranks come from :func:`rank_methods` on the rows every method shares, with the cells' seed
    and number of resamples: rank 1 is the best estimate and every method whose difference from
    it is not significant at ``alpha`` (paired bootstrap of the difference of the cell's own
    aggregate, resampling images, Holm-adjusted over the comparisons with the best); later
    ranks follow the same rule among the methods left.
    """
    cells = []
    if df.empty:
        return pd.DataFrame(columns=["model", "method", "subset", "metric", "estimate", "low", "high", "n", "n_undefined", "rank"])
    method_order = list(dict.fromkeys(df["method"]))
    for model, mdf in df.groupby("model", sort=False):
        for metric, meta in columns.items():
            if metric not in mdf.columns:
                continue
            subsets = {"all": mdf}
            if meta.get("aggregate") == "class_mean" and mdf["difficult"].astype(bool).any():
                subsets["difficult"] = mdf[mdf["difficult"].astype(bool)]
            for subset, sdf in subsets.items():
                per_method = {}
                for method in method_order:
                    r = sdf[sdf.method == method]
                    if r.empty:
                        continue
                    values = r[metric].astype(float).to_numpy()
                    est, low, high = bootstrap_ci(
                        values,
                        clusters=r["image_id"].to_numpy(),
                        classes=r["target"].to_numpy(),
                        aggregate=meta.get("aggregate", "mean"),
                        confidence=confidence,
                        n_resamples=n_resamples,
                        seed=seed,
                    )
                    n_def = int(np.isfinite(values).sum())
                    per_method[method] = (est, low, high, n_def, int(len(values) - n_def))
                ranks = _ranks(sdf, metric, meta, list(per_method), alpha, seed, n_resamples)
                for method, (est, low, high, n, n_undef) in per_method.items():
                    cells.append(
                        {
                            "model": model,
                            "method": method,
                            "subset": subset,
                            "metric": metric,
                            "estimate": est,
                            "low": low,
                            "high": high,
                            "n": n,
                            "n_undefined": n_undef,
                            "rank": ranks.get(method, math.nan),
                        }
                    )
    out = pd.DataFrame(cells)
    return out


def _ranks(sdf: pd.DataFrame, metric: str, meta: dict[str, Any], methods: list[str], alpha: float, seed: int, n_resamples: int = 2000) -> dict[str, int]:
    if len(methods) < 2:
        return {m: 1 for m in methods}
    # Paired comparisons need the same rows for every method: align on (image, target).
    wide = sdf.pivot_table(index=["image_id", "target"], columns="method", values=metric, aggfunc="first", dropna=False)
    wide = wide.reindex(columns=methods)
    ranked = rank_methods(
        {m: wide[m].to_numpy(dtype=float) for m in methods},
        clusters=wide.index.get_level_values(0).to_numpy(),
        classes=wide.index.get_level_values(1).to_numpy(),
        aggregate=meta.get("aggregate", "mean"),
        higher_is_better=bool(meta.get("higher_is_better", True)),
        alpha=alpha,
        n_resamples=n_resamples,
        seed=seed,
    )
    return {r.name: r.rank for r in ranked}


def build(path: Path, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Leaderboard:
    """The leaderboard of one results directory, from its files alone."""
    path = Path(path)
    df, columns = load_results(path)
    cells = compute(df, columns, confidence=confidence, n_resamples=n_resamples, seed=seed)
    reliance, validity = measured(path, df, confidence=confidence, n_resamples=n_resamples, seed=seed)
    facts = {}
    models_info: dict[str, Any] = {}
    models_file = path / results.MODELS
    if models_file.exists():
        models_info = json.loads(models_file.read_text())
        facts = {k: v.get("info", {}) for k, v in models_info.items()}
    skipped = skip_counts(results.read_rows(path / results.SKIPPED))
    cells, columns = _with_sanity(path, cells, columns, confidence=confidence, n_resamples=n_resamples, seed=seed)
    lb = Leaderboard(cells, columns, facts, skipped, confidence, title=path.name, reliance=reliance, validity=validity)
    _add_ceiling(lb, path, df, models_info, n_resamples=n_resamples, seed=seed)
    return lb


def _add_ceiling(lb: Leaderboard, path: Path, df: pd.DataFrame, models_info: dict[str, Any], *, n_resamples: int, seed: int) -> None:
    """The human ceiling row, the fractions of the way to it, and their notes (gaze runs)."""
    from bench.report import ceiling

    rows, info = ceiling.load(path)
    models = list(dict.fromkeys(df["model"])) if not df.empty else []
    kw = dict(confidence=lb.confidence, n_resamples=n_resamples, seed=seed)
    lb.references = ceiling.reference_cells(rows, lb.metrics, models, **kw)
    lb.fractions = ceiling.fraction_cells(df, rows, info, ceiling.center_labels(models_info), **kw)
    lb.notes = ceiling.notes(info, not lb.fractions.empty)


def skip_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    """The "not scored" footer: reason -> count. Records are grouped by the reason's kind (the
    text before its first ':', e.g. ``sample not loaded``) so that a thousand missing files make
    one line; a kind whose records all give the same reason shows that whole reason (a method's
    failure with its error), and a kind with several shows its first reason as an example."""
    kinds: dict[str, list[str]] = {}
    for rec in records:
        reason = str(rec.get("reason", "unknown"))
        kinds.setdefault(reason.split(":")[0], []).append(reason)
    out: dict[str, int] = {}
    for kind, reasons in kinds.items():
        distinct = set(reasons)
        label = reasons[0] if len(distinct) == 1 else f"{kind} ({len(distinct)} different reasons; the first: {reasons[0]})"
        out[label] = len(reasons)
    return out


def _with_sanity(path: Path, cells: pd.DataFrame, columns: dict[str, dict[str, Any]], **stats: Any) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """A run with ``[sanity]`` rows: its leaderboard gains the sanity columns (randomised
    similarity, pointing on the own and on another class) and a ``sanity`` key column with each
    method's verdict (:mod:`bench.report.sanity`). A run without them is left as it is."""
    from bench.report.sanity import SANITY_KEY, leaderboard_parts
    from bench.report.sanity import build as sanity_table

    extra, meta, flags = leaderboard_parts(sanity_table(path, **stats))
    if extra.empty and not flags:
        return cells, columns
    out = pd.concat([cells, extra], ignore_index=True) if not extra.empty else cells.copy()
    out[SANITY_KEY] = [flags.get((m, me), "") for m, me in zip(out["model"], out["method"])]
    return out, {**columns, **meta}


def model_facts_lines(facts: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable facts per model: clean accuracy and measured reliance on context."""
    lines = []
    for model, info in facts.items():
        parts = []
        if "accuracy_own_distribution" in info:
            parts.append(f"clean accuracy {info['accuracy_own_distribution']:.3f} on its own training distribution")
        if "accuracy_balanced_test" in info:
            parts.append(f"{info['accuracy_balanced_test']:.3f} on the balanced test split")
        if "reliance" in info:
            parts.append(
                f"reliance on context {info['reliance']:.3f} "
                f"(mean drop in target probability when the context is repainted, n={info.get('reliance_n', '?')})"
            )
        if parts:
            lines.append(f"{model}: " + "; ".join(parts))
    return lines
