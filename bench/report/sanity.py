"""The sanity table and the cascading-randomisation figure, from sanity rows alone.

A run with a ``[sanity]`` section writes one row per (model, method, image, target) and test to
``sanity.jsonl`` (:mod:`bench.sanity.rows`). This module turns them into

- per (model, method): the similarity of the maps after full (cascading) randomisation, per
  measure; the similarity of the random-target map to the target's; the class-sensitivity
  columns (pointing and mass on the own class and on the other classes of the image, and the
  gap own - other); each a mean with a 95% bootstrap CI over images (an image's rows resampled
  together, :func:`bench.report.stats.bootstrap_ci`) and n;
- the verdict: a method **fails** the model-randomisation check when its mean ``spearman_abs``
  (Spearman rank correlation of the absolute maps) after the last cascading step is above
  :data:`FAIL_ABOVE` = 0.5: with every weight re-initialised its maps still rank the pixels much
  as the trained model's do, so they say little about what the model learned (Adebayo et al.'s
  criterion, as a number). Undefined (``n/a``) where the measure is undefined (a constant map);
- the cascading curves: per (model, method, layer step) the mean similarity and its CI, with
  step 0 the trained model (similarity 1 by definition), for :func:`cascade_figure`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import results
from bench.report.stats import bootstrap_ci

SANITY = results.SANITY
FAIL_MEASURE = "spearman_abs"
FAIL_ABOVE = 0.5
MEASURE_NAMES = ("spearman_abs", "spearman", "ssim_abs", "ssim")
CLASS_COLUMNS = ("pointing_own", "pointing_other", "mass_own", "mass_other")


@dataclass
class SanityTable:
    """``cells``: model, method, quantity, estimate, low, high, n. ``verdicts``: model, method,
    similarity (the :data:`FAIL_MEASURE` after full randomisation), fails (True, False, or None
    when undefined). ``curves``: model, method, mode, step, layer, measure, estimate, low, high,
    n. ``steps``: model -> layer names top down."""

    cells: pd.DataFrame
    verdicts: pd.DataFrame
    curves: pd.DataFrame
    steps: dict[str, list[str]] = field(default_factory=dict)
    measure: str = FAIL_MEASURE
    threshold: float = FAIL_ABOVE


def load_rows(path: Path) -> pd.DataFrame:
    """The sanity rows of a results directory (empty when the run had no ``[sanity]``)."""
    return pd.DataFrame(results.read_rows(Path(path) / SANITY))


def _cell(values: np.ndarray, images: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float, float, int, int]:
    est, low, high = bootstrap_ci(values, clusters=images, confidence=confidence, n_resamples=n_resamples, seed=seed)
    n = int(np.isfinite(values).sum())
    return est, low, high, n, int(values.size - n)


def summarise(
    rows: pd.DataFrame,
    *,
    measure: str = FAIL_MEASURE,
    threshold: float = FAIL_ABOVE,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> SanityTable:
    """Aggregate sanity rows (see the module doc)."""
    cells, curves, verdicts = [], [], []
    steps: dict[str, list[str]] = {}
    if rows.empty:
        empty = pd.DataFrame()
        return SanityTable(empty, empty, empty, steps, measure, threshold)
    order = list(dict.fromkeys(rows["method"]))
    for model, mdf in rows.groupby("model", sort=False):
        cascade = mdf[mdf["test"] == "cascading"]
        if not cascade.empty:
            layers = cascade.drop_duplicates("step").sort_values("step")
            steps[model] = layers["layer"].tolist()
        for method in order:
            r = mdf[mdf["method"] == method]
            if r.empty:
                continue

            def add(quantity: str, values, images) -> tuple[float, float, float, int, int]:
                cell = _cell(np.asarray(values, dtype=float), np.asarray(images), confidence, n_resamples, seed)
                cells.append({"model": model, "method": method, "quantity": quantity, "estimate": cell[0], "low": cell[1], "high": cell[2], "n": cell[3], "n_undefined": cell[4]})
                return cell

            verdict_value = math.nan
            for mode in ("cascading", "independent"):
                tr = r[r["test"] == mode]
                if tr.empty:
                    continue
                for (step, layer), sdf in tr.groupby(["step", "layer"], sort=True):
                    for name in MEASURE_NAMES:
                        if name not in sdf:
                            continue
                        est, low, high, n, _ = _cell(sdf[name].to_numpy(dtype=float), sdf["image_id"].to_numpy(), confidence, n_resamples, seed)
                        curves.append({"model": model, "method": method, "mode": mode, "step": int(step), "layer": layer, "measure": name, "estimate": est, "low": low, "high": high, "n": n})
                if mode == "cascading":
                    last = tr[tr["step"] == tr["step"].max()]
                    for name in MEASURE_NAMES:
                        if name in last:
                            cell = add(f"randomised:{name}", last[name], last["image_id"])
                            if name == measure:
                                verdict_value = cell[0]
            rt = r[r["test"] == "random_target"]
            for name in MEASURE_NAMES:
                if not rt.empty and name in rt:
                    add(f"random_target:{name}", rt[name], rt["image_id"])
            cls = r[r["test"] == "class_sensitivity"]
            if not cls.empty:
                for name in CLASS_COLUMNS:
                    add(f"class:{name}", cls[name], cls["image_id"])
                for kind in ("pointing", "mass"):
                    gap = cls[f"{kind}_own"].to_numpy(dtype=float) - cls[f"{kind}_other"].to_numpy(dtype=float)
                    add(f"class:{kind}_gap", gap, cls["image_id"])
            if not r[r["test"] == "cascading"].empty:
                fails = None if math.isnan(verdict_value) else bool(verdict_value > threshold)
                verdicts.append({"model": model, "method": method, "similarity": verdict_value, "fails": fails})
    return SanityTable(pd.DataFrame(cells), pd.DataFrame(verdicts), pd.DataFrame(curves), steps, measure, threshold)


def build(path: Path, **kwargs: Any) -> SanityTable:
    """The sanity table of one results directory, from its ``sanity.jsonl``, with the run's
    ``[sanity] fail_above`` (``config.json``) as the threshold unless one is given."""
    rows = load_rows(path)
    if "threshold" not in kwargs and not rows.empty and (Path(path) / results.CONFIG_JSON).exists():
        sanity = results.ResultsDir(path).config().get("sanity") or {}
        if "fail_above" in sanity:
            kwargs["threshold"] = float(sanity["fail_above"])
    return summarise(rows, **kwargs)


# -- in the leaderboard ------------------------------------------------------------------------

# quantity -> (leaderboard column, higher is better, what it is)
LEADERBOARD_COLUMNS = {
    "randomised:spearman_abs": (
        "sanity: Spearman |.| randomised", False,
        "spearman_abs of the trained and the fully re-initialised model's maps (last cascading step)",
    ),
    "class:pointing_own": ("sanity: pointing, own class", True, "pointing game of class A's map on A, images with 2+ scored classes"),
    "class:pointing_other": ("sanity: pointing, other class", False, "pointing game of class A's map on another class B of the image (B outside A)"),
}
SANITY_KEY = "sanity"


def leaderboard_parts(table: SanityTable) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], dict[tuple[str, str], str]]:
    """What the leaderboard shows of the sanity checks: cells in its own layout (subset "all",
    unranked) for :data:`LEADERBOARD_COLUMNS`, their column metadata (``"sanity": True`` marks
    them), and per (model, method) the verdict (``FAIL``, ``pass``, ``n/a``) of its sanity
    column."""
    if table.cells.empty:
        return pd.DataFrame(), {}, {}
    picked = table.cells[table.cells["quantity"].isin(list(LEADERBOARD_COLUMNS))]
    cells = pd.DataFrame(
        {
            "model": picked["model"],
            "method": picked["method"],
            "subset": "all",
            "metric": [LEADERBOARD_COLUMNS[q][0] for q in picked["quantity"]],
            "estimate": picked["estimate"],
            "low": picked["low"],
            "high": picked["high"],
            "n": picked["n"],
            "n_undefined": picked["n_undefined"],
            "rank": np.nan,
        }
    ).reset_index(drop=True)
    present = set(picked["quantity"])
    meta = {
        label: {
            "name": what,
            "label": label,
            "higher_is_better": higher,
            "aggregate": "mean",
            "params": {"fail_above": table.threshold} if q.startswith("randomised") else {},
            "sanity": True,
        }
        for q, (label, higher, what) in LEADERBOARD_COLUMNS.items()
        if q in present
    }
    flags = {}
    for v in table.verdicts.itertuples():
        flags[(v.model, v.method)] = "n/a" if v.fails is None else ("FAIL" if v.fails else "pass")
    return cells, meta, flags


# -- rendering ---------------------------------------------------------------------------------

TABLE_COLUMNS = (
    ("randomised:spearman_abs", "Spearman |.| randomised"),
    ("randomised:ssim_abs", "SSIM |.| randomised"),
    ("random_target:spearman_abs", "Spearman |.| random class"),
    ("class:pointing_own", "pointing own class"),
    ("class:pointing_other", "pointing other class"),
    ("class:pointing_gap", "pointing gap"),
    ("class:mass_gap", "mass gap"),
)


def _fmt(row: pd.Series | None) -> str:
    if row is None or not math.isfinite(row["estimate"]):
        return "n/a"
    ci = f" [{row['low']:.3f}, {row['high']:.3f}]" if math.isfinite(row["low"]) and math.isfinite(row["high"]) else ""
    return f"{row['estimate']:.3f}{ci} n={int(row['n'])}"


def table_frame(table: SanityTable) -> pd.DataFrame:
    """One row per (model, method): the check's verdict and the :data:`TABLE_COLUMNS` present."""
    if table.cells.empty:
        return pd.DataFrame()
    present = [(q, label) for q, label in TABLE_COLUMNS if (table.cells["quantity"] == q).any()]
    verdict = {(v.model, v.method): v.fails for v in table.verdicts.itertuples()} if not table.verdicts.empty else {}
    out = []
    for (model, method), group in table.cells.groupby(["model", "method"], sort=False):
        by_q = {r["quantity"]: r for _, r in group.iterrows()}
        fails = verdict.get((model, method))
        row = {"model": model, "method": method, "randomisation check": "n/a" if fails is None else ("FAIL" if fails else "pass")}
        for q, label in present:
            row[label] = _fmt(by_q.get(q))
        out.append(row)
    return pd.DataFrame(out)


def render_text(table: SanityTable) -> str:
    """The sanity table for the terminal and ``sanity.txt``."""
    frame = table_frame(table)
    if frame.empty:
        return ""
    lines = [
        "sanity checks (Adebayo et al. 2018)",
        f"Cells: mean [95% bootstrap CI over images] n. FAIL: mean {table.measure} after the last cascading "
        f"step > {table.threshold:g} (the maps of a fully re-initialised model still rank pixels like the trained "
        "model's). Gap: own class - other class of the same image (higher = more class-sensitive).",
        "",
        frame.to_string(index=False),
    ]
    if table.steps:
        lines.append("")
        lines.append("layer steps, top down (cascading randomisation re-initialises 1..k):")
        for model, names in table.steps.items():
            lines.append(f"  {model}: " + ", ".join(f"{i + 1} {n}" for i, n in enumerate(names)))
    return "\n".join(lines) + "\n"


def render_markdown(table: SanityTable) -> str:
    frame = table_frame(table)
    if frame.empty:
        return ""
    cols = list(frame.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join(":--" if c in ("model", "method") else "--:" for c in cols) + "|"]
    for _, r in frame.iterrows():
        out.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(out) + "\n"


def render_csv(table: SanityTable) -> str:
    """Every cell (``quantity``) and every curve point (``mode``, ``step``, ``layer``,
    ``measure``), full precision, with each method's verdict."""
    import io

    verdict = {(v.model, v.method): ("" if v.fails is None else ("FAIL" if v.fails else "pass")) for v in table.verdicts.itertuples()} if not table.verdicts.empty else {}
    parts = []
    if not table.cells.empty:
        parts.append(table.cells.assign(mode="", step=pd.NA, layer="", measure=""))
    if not table.curves.empty:
        parts.append(table.curves.assign(quantity=[f"{m}:{x}" for m, x in zip(table.curves["mode"], table.curves["measure"])]))
    columns = ["model", "method", "verdict", "quantity", "mode", "step", "layer", "measure", "estimate", "low", "high", "n"]
    if not parts:
        return ",".join(columns) + "\n"
    frame = pd.concat(parts, ignore_index=True)
    frame["verdict"] = [verdict.get((m, me), "") for m, me in zip(frame["model"], frame["method"])]
    frame["step"] = frame["step"].astype("Int64")
    buf = io.StringIO()
    frame[columns].to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def cascade_figure(table: SanityTable, measure: str | None = None, mode: str = "cascading"):
    """One panel per model: ``measure`` (default the verdict's) against the layer step, one
    line per method with its CI band; step 0 is the trained model (similarity 1); the dashed
    line is the failing threshold. None when the rows hold no such curve."""
    from bench.report.figures import MARKERS, PALETTE, new_figure

    measure = measure or table.measure
    if table.curves.empty:
        return None
    curves = table.curves[(table.curves["measure"] == measure) & (table.curves["mode"] == mode)]
    if curves.empty:
        return None
    models = list(dict.fromkeys(curves["model"]))
    methods = list(dict.fromkeys(curves["method"]))
    fig = new_figure(max(5.0, 4.6 * len(models)), 4.2)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        layers = table.steps.get(model, [])
        for k, method in enumerate(methods):
            c = curves[(curves["model"] == model) & (curves["method"] == method)].sort_values("step")
            if c.empty:
                continue
            x = np.concatenate([[0], c["step"].to_numpy()])
            y = np.concatenate([[1.0], c["estimate"].to_numpy(dtype=float)])
            lo = np.concatenate([[1.0], c["low"].to_numpy(dtype=float)])
            hi = np.concatenate([[1.0], c["high"].to_numpy(dtype=float)])
            color = PALETTE[k % len(PALETTE)]
            # matplotlib hides legend labels that start with "_"; a method's name may.
            ax.plot(x, y, color=color, marker=MARKERS[k % len(MARKERS)], ms=4, lw=1.4, label=method if not method.startswith("_") else f" {method}")
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.12, lw=0)
        if measure == table.measure:
            ax.axhline(table.threshold, color="#555555", ls="--", lw=0.9)
        ax.set_xticks(range(len(layers) + 1))
        ax.set_xticklabels(["trained"] + layers, rotation=60, ha="right", fontsize=7)
        lows = curves[curves["model"] == model]["low"].to_numpy(dtype=float)
        floor = float(np.nanmin(lows)) if np.isfinite(lows).any() else 0.0
        ax.set_ylim(min(-0.1, floor - 0.05), 1.05)
        ax.set_title(f"{model}: {mode} randomisation", fontsize=9)
        ax.set_ylabel(f"{measure} (original vs randomised map)", fontsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncols=min(4, len(labels)), frameon=False)
    return fig
