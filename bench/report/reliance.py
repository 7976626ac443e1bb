"""Per-model summaries of measured reliance rows (:mod:`bench.interventions`): mean context and
object reliance per (model, removal mode), overall and per class, each with a 95% bootstrap CI
over images (:func:`bench.report.stats.bootstrap_ci`, the leaderboard's own), n and the count
of undefined rows (no context in the image, no room for a control): NaN rows are counted,
never averaged in as 0."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.stats import bootstrap_ci

QUANTITIES = ("context_reliance", "object_reliance", "drop_prob_context", "drop_prob_object")
ALL_CLASSES = "all"


def reliance_summary(
    rows: pd.DataFrame,
    *,
    quantities=QUANTITIES,
    per_class: bool = True,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (model, mode, class, quantity): estimate (mean over defined rows), low,
    high, n, n_undefined. ``class`` is ``"all"`` for every row of the model, then each target
    class (sorted) when ``per_class``."""
    columns = ["model", "mode", "class", "quantity", "estimate", "low", "high", "n", "n_undefined"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for (model, mode), mdf in rows.groupby(["model", "mode"], sort=False):
        groups = [(ALL_CLASSES, mdf)]
        if per_class:
            groups += [(str(c), cdf) for c, cdf in sorted(mdf.groupby("target"), key=lambda kv: str(kv[0]))]
        for label, df in groups:
            for q in quantities:
                if q not in df.columns:
                    continue
                values = df[q].astype(float).to_numpy()
                est, low, high = bootstrap_ci(
                    values, clusters=df["image_id"].to_numpy(), confidence=confidence, n_resamples=n_resamples, seed=seed
                )
                n = int(np.isfinite(values).sum())
                out.append({"model": model, "mode": mode, "class": label, "quantity": q, "estimate": est,
                            "low": low, "high": high, "n": n, "n_undefined": int(len(values) - n)})
    return pd.DataFrame(out, columns=columns)
