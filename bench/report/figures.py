"""Figures of a leaderboard (matplotlib, Agg canvas, no pyplot state).

- :func:`overlay_figures` / :func:`overlay_grid`: per model, a grid of methods (rows) x a few
  scenes (columns), each map over its image with the ground truth drawn on top (object mask
  contour, context region, boxes, fixations), the map's argmax marked and the scores under each
  panel; the samples and their maps come from :mod:`bench.report.examples`.
- :func:`bar_chart`: one panel per metric, estimate and CI per method (bars) and model (colour).
- :func:`curve_chart`: metric-vs-parameter curves (the IoU-threshold curve) for every
  :func:`curve_families` group: columns of one metric that differ only in one numeric parameter,
  e.g. ``iou`` at ``threshold`` = 0.1, 0.2, ...
- :func:`leakage_vs_reliance`: measured leakage (and every other context metric) against the
  models' measured reliance on context (``models.json`` facts of the harbor suite), per model
  and method, and per class where the breakdown and per-class reliance exist.

Every function returns a :class:`matplotlib.figure.Figure` (or None when its data is absent);
:func:`png_bytes` renders one.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from bench.report.examples import Example
from bench.report.leaderboard import Leaderboard

PALETTE = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#000000", "#EE7733", "#009988"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
OBJECT_COLOR = "#00FF66"
CONTEXT_COLOR = "#00E5FF"
BOX_COLOR = "#FFD700"
FIX_COLOR = "#FF2D2D"


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _arrow(meta: dict[str, Any]) -> str:
    return "↑" if meta.get("higher_is_better", True) else "↓"


def _short(model: str, limit: int = 40) -> str:
    return model if len(model) <= limit else "…" + model[-(limit - 1):]


# ---------------------------------------------------------------------------------------------
# Overlays


def _map_rgba(m: np.ndarray, cmap) -> tuple[np.ndarray | None, str]:
    """The map's positive part scaled to its maximum, as RGBA whose opacity grows with the value
    (low values stay see-through so the image remains visible); None with a note where the map
    has nothing to show."""
    if not np.isfinite(m).all():
        return None, "invalid map (NaN/Inf)"
    pos = np.clip(m, 0, None)
    peak = float(pos.max())
    if peak <= 0 or float(m.max()) == float(m.min()):
        return None, "constant map"
    norm = pos / peak
    rgba = cmap(norm)
    rgba[..., 3] = 0.15 + 0.6 * norm
    return rgba, ""


def _outline(ax, region: np.ndarray, color: str, lw: float, ls: str = "-") -> None:
    """Contour of a bool region, closed along the image border (padding with a false frame)."""
    if not region.any():
        return
    padded = np.pad(region.astype(float), 1)
    h, w = padded.shape
    ax.contour(np.arange(w) - 1, np.arange(h) - 1, padded, levels=[0.5], colors=[color], linewidths=lw, linestyles=ls)


def _draw_truth(ax, ex: Example, *, boxes: bool, shade_context: bool, fixations: bool) -> None:
    t = ex.target
    mask = t.mask.numpy().astype(bool)
    ctx = (t.context_union() & ~t.mask).numpy().astype(bool)
    if shade_context and ctx.any():
        tint = np.zeros((*ctx.shape, 4))
        tint[ctx] = (0.0, 0.9, 1.0, 0.28)
        ax.imshow(tint, interpolation="nearest")
    _outline(ax, ctx, CONTEXT_COLOR, 1.1, "--")
    _outline(ax, mask, OBJECT_COLOR, 1.4)
    if boxes and t.boxes is not None and len(t.boxes):
        for x0, y0, x1, y1 in np.asarray(t.boxes, dtype=float):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=BOX_COLOR, lw=1.0, ls=(0, (3, 2))))
    if fixations and ex.fixations is not None and len(ex.fixations):
        ax.scatter(ex.fixations[:, 0], ex.fixations[:, 1], s=4, c=FIX_COLOR, linewidths=0)
    h, w = mask.shape
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)


# A figure is at most this many scenes wide: at a 1280-pixel-wide page every panel then keeps
# at least 150 pixels (tests/test_report_overlays_browser.py measures it in Chromium).
OVERLAY_COLUMNS = 5
PANEL_INCHES = 2.0
LABEL_INCHES = 1.1  # the method names left of the first column


def _panel_scores(ex: Example, key: tuple[str, str], shown: list[str]) -> str:
    scores = ex.scores.get(key, {})
    parts = [f"{k} {v:.2f}" if math.isfinite(v) else f"{k} n/a" for k, v in scores.items() if k in shown]
    return "\n".join(parts)


def overlay_grid(examples: list[Example], model: str, methods: list[str], metrics: dict[str, dict[str, Any]], *, panel: float = PANEL_INCHES) -> Figure:
    """One model's maps on a few scenes. Columns: the scenes (at most :data:`OVERLAY_COLUMNS`
    read at page width); first row: each image with its ground truth; then one row per method:
    the map overlaid, the object contour, the context region (dashed) and the map's argmax (+),
    and under the panel that (scene, method)'s scores (up to three metrics)."""
    from matplotlib import colormaps

    cmap = colormaps["jet"]
    shown = list(metrics)[:3]
    ncols, nrows = len(examples), 1 + len(methods)
    # Room under each panel for its score lines.
    row_h = panel + 0.16 * max(1, len(shown)) + 0.1
    fig = new_figure(LABEL_INCHES + panel * ncols, row_h * nrows + 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for c, ex in enumerate(examples):
        rgb = ex.rgb
        ax = axes[0][c]
        ax.imshow(rgb, interpolation="nearest")
        _draw_truth(ax, ex, boxes=True, shade_context=True, fixations=True)
        ax.set_title(f"{ex.image_id}\n{ex.target.label}", fontsize=8)
        if c == 0:
            ax.set_ylabel("image +\nground truth", fontsize=8)
        for r, method in enumerate(methods, start=1):
            ax = axes[r][c]
            ax.imshow(rgb, interpolation="nearest")
            m = ex.maps.get((model, method))
            note = "no map"
            if m is not None:
                rgba, note = _map_rgba(m, cmap)
                if rgba is not None:
                    ax.imshow(rgba, interpolation="nearest")
                    y, x = np.unravel_index(int(np.nanargmax(m)), m.shape)
                    ax.plot(
                        [x], [y], marker="+", ms=11, mew=2.2, color="white",
                        path_effects=[patheffects.withStroke(linewidth=3.5, foreground="black")],
                    )
            _draw_truth(ax, ex, boxes=False, shade_context=False, fixations=True)
            if note:
                ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="white",
                        bbox=dict(facecolor="black", alpha=0.6, lw=0))
            ax.set_xlabel(_panel_scores(ex, (model, method), shown), fontsize=7)
            if c == 0:
                ax.set_ylabel(_wrap(method, 16), fontsize=8)
    for row in axes:
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    # A legend entry only for what some panel shows.
    handles = [Line2D([], [], color=OBJECT_COLOR, lw=1.6, label="object mask")]
    if any(bool((ex.target.context_union() & ~ex.target.mask).any()) for ex in examples):
        handles.append(Patch(fc=(0.0, 0.9, 1.0, 0.28), ec=CONTEXT_COLOR, ls="--", label="context (shaded in the first row)"))
    if any(ex.target.boxes is not None and len(ex.target.boxes) for ex in examples):
        handles.append(Patch(fill=False, ec=BOX_COLOR, ls="--", label="boxes"))
    handles.append(Line2D([], [], marker="+", color="black", ls="", ms=9, mew=2, label="map argmax"))
    if any(ex.fixations is not None and len(ex.fixations) for ex in examples):
        handles.append(Line2D([], [], marker="o", color=FIX_COLOR, ls="", ms=4, label="fixations"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize=8, frameon=False)
    sources = sorted({s for ex in examples for (mo, _), s in ex.source.items() if mo == model})
    fig.suptitle(
        f"{_short(model)}: where each method looks\n(maps {', '.join(sources) or 'missing'}; colour: positive part, scaled to each map's peak)",
        fontsize=9,
    )
    return fig


def _wrap(text: str, width: int) -> str:
    """Break a long method label (``rise[cell=12,n_masks=250]``) at its commas and brackets."""
    if len(text) <= width:
        return text
    out, line = [], ""
    for token in text.replace("[", "[\0").replace(",", ",\0").split("\0"):
        if line and len(line) + len(token) > width:
            out.append(line)
            line = ""
        line += token
    return "\n".join(out + [line])


def overlay_figures(examples: list[Example], pairs: list[tuple[str, str]], metrics: dict[str, dict[str, Any]], *, max_columns: int = OVERLAY_COLUMNS) -> list[tuple[str, str, Figure]]:
    """The overlays of a run as figures that read at page width: one per model and group of
    at most ``max_columns`` scenes (groups of even size): (name, model, figure), the names
    ``overlays``, ``overlays_2``, ..."""
    models = list(dict.fromkeys(m for m, _ in pairs))
    groups = math.ceil(len(examples) / max_columns) if examples else 0
    size = math.ceil(len(examples) / groups) if groups else 0
    out = []
    for model in models:
        methods = [me for mo, me in pairs if mo == model]
        for g in range(groups):
            chunk = examples[g * size:(g + 1) * size]
            name = "overlays" if not out else f"overlays_{len(out) + 1}"
            out.append((name, model, overlay_grid(chunk, model, methods, metrics)))
    return out


def panel_boxes(fig: Figure) -> list[tuple[float, float, float, float]]:
    """Each panel's box in a figure already rendered (:func:`png_bytes`) as fractions of the
    image: (left, top, width, height), top-left origin. The report writes them beside the image
    so a browser can measure the panels' displayed size."""
    boxes = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.images:
            continue
        pos = ax.get_position()
        boxes.append((round(pos.x0, 5), round(1 - pos.y1, 5), round(pos.width, 5), round(pos.height, 5)))
    return boxes


# ---------------------------------------------------------------------------------------------
# Bars


def bar_chart(lb: Leaderboard, subset: str = "all", metrics: list[str] | None = None) -> Figure | None:
    """One panel per metric: bars per method, one colour per model, 95% CI whiskers, a star
    over rank-1 (best or tied with best) bars."""
    cells = lb.cells[lb.cells.subset == subset] if not lb.cells.empty else lb.cells
    if cells.empty:
        return None
    metrics = [m for m in (metrics or list(lb.metrics)) if m in set(cells.metric)]
    if not metrics:
        return None
    models = list(dict.fromkeys(cells.model))
    methods = list(dict.fromkeys(cells.method))
    width = max(4.2, 0.55 * len(methods) * max(1, len(models)) + 1.5)
    # At most about 16 inches wide, so that the text stays legible when the page scales it.
    ncols = max(1, min(3, len(metrics), int(16.5 // width)))
    nrows = math.ceil(len(metrics) / ncols)
    fig = new_figure(max(7.0, width * ncols), 3.3 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    bar_w = 0.8 / max(1, len(models))
    for ax, metric in zip(axes, metrics):
        meta = lb.metrics.get(metric, {})
        sub = cells[cells.metric == metric]
        for mi, model in enumerate(models):
            rows = sub[sub.model == model].set_index("method").reindex(methods)
            x = np.arange(len(methods)) + (mi - (len(models) - 1) / 2) * bar_w
            est = rows["estimate"].to_numpy(dtype=float)
            low = rows["low"].to_numpy(dtype=float)
            high = rows["high"].to_numpy(dtype=float)
            err = np.vstack([np.where(np.isfinite(low), est - low, 0), np.where(np.isfinite(high), high - est, 0)])
            ax.bar(x, np.nan_to_num(est), bar_w * 0.92, color=PALETTE[mi % len(PALETTE)], label=_short(model))
            ax.errorbar(x, est, yerr=np.clip(err, 0, None), fmt="none", ecolor="black", elinewidth=1, capsize=2.5)
            best = rows["rank"].to_numpy(dtype=float) == 1
            tops = np.where(np.isfinite(high), high, est)
            ax.scatter(x[best], tops[best], marker="*", s=60, color="black", zorder=3, clip_on=False)
        ax.set_xticks(np.arange(len(methods)), methods, rotation=30 if len(methods) > 4 else 0, ha="right" if len(methods) > 4 else "center", fontsize=8)
        agg = "class mean" if meta.get("aggregate") == "class_mean" else "mean"
        ax.set_title(f"{metric} {_arrow(meta)} ({agg})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.margins(y=0.12)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    handles = [Patch(color=PALETTE[i % len(PALETTE)], label=_short(m)) for i, m in enumerate(models)]
    handles.append(Line2D([], [], marker="*", color="black", ls="", ms=9, label="rank 1 (best or tied with best)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8, frameon=False)
    conf = int(round(lb.confidence * 100))
    fig.suptitle(f"{lb.title}: estimate with {conf}% bootstrap CI ({subset})", fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------
# Curves


@dataclass(frozen=True)
class CurveFamily:
    """Columns of one metric that differ only in the numeric parameter ``param``."""

    name: str
    param: str
    points: tuple[tuple[float, str], ...]  # (parameter value, column label), sorted by value


def curve_families(metrics: dict[str, dict[str, Any]], min_points: int = 3) -> list[CurveFamily]:
    """Groups of metric columns forming a curve (e.g. ``iou`` at several ``threshold``s)."""
    by_name: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for label, meta in metrics.items():
        by_name.setdefault(str(meta.get("name", label)), []).append((label, dict(meta.get("params") or {})))
    out = []
    for name, cols in by_name.items():
        if len(cols) < min_points:
            continue
        keys = set().union(*(p.keys() for _, p in cols))
        varying = [k for k in sorted(keys) if len({repr(p.get(k)) for _, p in cols}) > 1]
        if len(varying) != 1:
            continue
        param = varying[0]
        values = [p.get(param) for _, p in cols]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        points = tuple(sorted((float(v), label) for v, (label, _) in zip(values, cols)))
        out.append(CurveFamily(name, param, points))
    return out


def curve_chart(lb: Leaderboard, family: CurveFamily, subset: str = "all") -> Figure | None:
    cells = lb.cells[lb.cells.subset == subset] if not lb.cells.empty else lb.cells
    labels = [label for _, label in family.points]
    cells = cells[cells.metric.isin(labels)]
    if cells.empty:
        return None
    models = list(dict.fromkeys(cells.model))
    methods = list(dict.fromkeys(cells.method))
    fig = new_figure(4.6 * len(models), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(models), squeeze=False)).ravel()
    xs = np.array([v for v, _ in family.points])
    for ax, model in zip(axes, models):
        for k, method in enumerate(methods):
            sub = cells[(cells.model == model) & (cells.method == method)].set_index("metric").reindex(labels)
            est = sub["estimate"].to_numpy(dtype=float)
            color = PALETTE[k % len(PALETTE)]
            ax.plot(xs, est, marker="o", ms=3, color=color, label=method)
            ax.fill_between(xs, sub["low"].to_numpy(dtype=float), sub["high"].to_numpy(dtype=float), color=color, alpha=0.18, lw=0)
        ax.set_xlabel(family.param)
        ax.set_ylabel(family.name)
        ax.set_title(_short(model), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{family.name} against {family.param} (bands: bootstrap CI)", fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------
# Leakage against reliance (harbor)


def context_metrics(lb: Leaderboard) -> list[str]:
    return [m for m, meta in lb.metrics.items() if "context" in (meta.get("requires") or [])]


# One style per method: 20 distinct colours (matplotlib's tab20, strong shade first) and 9
# markers; 9 and 20 share no factor, so the (colour, marker) pair repeats only after 180 methods.
METHOD_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h"]
MODEL_FILLS = ["full", "none", "left", "bottom", "right", "top"]


def method_style(k: int) -> dict[str, Any]:
    """Colour and marker of the k-th method: every method its own pair."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    j = k % 20
    shade = 2 * j if j < 10 else 2 * (j - 10) + 1  # the ten strong shades before the light ones
    return {"color": tab20[shade], "marker": METHOD_MARKERS[k % len(METHOD_MARKERS)]}


def leakage_vs_reliance(lb: Leaderboard, by_class: pd.DataFrame | None = None) -> Figure | None:
    """Each context metric (leakage, ...) against each model's reliance on context measured by
    intervention. Top row: one point per (model, method) with CI whiskers, lines join a
    method's points. Bottom row (where the breakdown and per-class reliance exist): one point per
    (model, class), with Spearman's rho per method over those points. Every method has its own
    colour and marker (:func:`method_style`); legends sit outside the axes, right of them."""
    from scipy.stats import spearmanr

    reliance = {m: float(f["reliance"]) for m, f in lb.facts.items() if isinstance(f, dict) and f.get("reliance") is not None}
    metrics = context_metrics(lb)
    if len(reliance) < 2 or not metrics or lb.cells.empty:
        return None
    cells = lb.cells[(lb.cells.subset == "all") & lb.cells.model.isin(reliance)]
    methods = list(dict.fromkeys(cells.method))
    per_class = by_class is not None and not by_class.empty and any(
        any(k.startswith("reliance_") and k != "reliance_n" for k in lb.facts[m]) for m in reliance
    )
    nrows = 2 if per_class else 1
    legend_w = 2.2 + 0.06 * max((len(m) for m in methods), default=0)
    fig = new_figure(max(7.0, 5.2 * len(metrics)) + legend_w * (2 if per_class else 1), 4.2 * nrows + 0.6)
    axes = fig.subplots(nrows, len(metrics), squeeze=False)
    models = sorted(reliance, key=reliance.get)
    for c, metric in enumerate(metrics):
        ax = axes[0][c]
        meta = lb.metrics.get(metric, {})
        for k, method in enumerate(methods):
            sub = cells[(cells.metric == metric) & (cells.method == method)].set_index("model").reindex(models)
            x = np.array([reliance[m] for m in models])
            est = sub["estimate"].to_numpy(dtype=float)
            err = np.vstack([est - sub["low"].to_numpy(dtype=float), sub["high"].to_numpy(dtype=float) - est])
            style = method_style(k)
            ax.errorbar(x, est, yerr=np.nan_to_num(np.clip(err, 0, None)), ms=6, capsize=3, lw=1.2,
                        mec="black", mew=0.4, label=method, **style)
        top = ax.secondary_xaxis("top")
        top.set_xticks([reliance[m] for m in models], [_short(m) for m in models], fontsize=8)
        ax.set_xlabel("measured reliance on context (drop in target probability)")
        ax.set_ylabel(f"{metric} {_arrow(meta)}")
        ax.set_title(f"{metric}: per model", fontsize=10)
        ax.grid(alpha=0.3)
        if per_class:
            _per_class_panel(axes[1][c], lb, by_class, metric, methods, models, spearmanr)
    handles = [
        Line2D([], [], ls="-", lw=1.2, ms=6, mec="black", mew=0.4, label=method, **method_style(k))
        for k, method in enumerate(methods)
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False, title="method", title_fontsize=8)
    fig.suptitle("Context metrics from the maps against reliance on context measured by intervention", fontsize=11)
    return fig


def validity_scatter(rows: pd.DataFrame, lb: Leaderboard, reliance_rows: pd.DataFrame, score: str = "leakage", against: str = "context_reliance") -> Figure | None:
    """Per-row ``score`` of each method against the row's measured ``against`` (the first removal
    mode of the run's reliance rows), one panel per model, one colour per method; the legend
    gives each method's Spearman rho and n from the validity table."""
    if reliance_rows.empty or score not in rows.columns or lb.validity.empty:
        return None
    mode = reliance_rows["mode"].iloc[0]
    rel = reliance_rows[reliance_rows["mode"] == mode][["model", "image_id", "target", against]].drop_duplicates(["model", "image_id", "target"])
    joined = rows.merge(rel, on=["model", "image_id", "target"], how="inner")
    joined = joined[np.isfinite(joined[score].astype(float)) & np.isfinite(joined[against].astype(float))]
    if joined.empty:
        return None
    models = list(dict.fromkeys(joined["model"]))
    methods = list(dict.fromkeys(rows["method"]))
    fig = new_figure(max(6.0, 4.6 * len(models)), 4.6)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    table = lb.validity[(lb.validity["mode"] == mode) & (lb.validity["score"] == score) & (lb.validity["reliance"] == against)]
    for ax, model in zip(axes, models):
        for k, method in enumerate(methods):
            sub = joined[(joined["model"] == model) & (joined["method"] == method)]
            if sub.empty:
                continue
            cell = table[(table["model"] == model) & (table["method"] == method)]
            tag = f" (rho {cell['rho'].iloc[0]:.2f}, n={int(cell['n'].iloc[0])})" if not cell.empty and math.isfinite(cell["rho"].iloc[0]) else ""
            label = method if not method.startswith("_") else f" {method}"
            ax.scatter(sub[against].astype(float), sub[score].astype(float), s=9, alpha=0.55, color=PALETTE[k % len(PALETTE)], marker=MARKERS[k % len(MARKERS)], label=label + tag)
        ax.set_xlabel(f"measured {against.replace('_', ' ')} ({mode} removal, minus control)")
        ax.set_ylabel(f"{score} {_arrow(lb.metrics.get(score, {}))}")
        ax.set_title(_short(model), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best", frameon=False)
    fig.suptitle(f"Per-row {score} against the model's measured {against.replace('_', ' ')}", fontsize=11)
    return fig


def _per_class_panel(ax, lb: Leaderboard, by_class: pd.DataFrame, metric: str, methods: list[str], models: list[str], spearmanr) -> None:
    sub = by_class[(by_class.metric == metric) & by_class.model.isin(models)]
    handles = []
    for k, method in enumerate(methods):
        style = method_style(k)
        xs, ys = [], []
        for mi, model in enumerate(models):
            rows = sub[(sub.method == method) & (sub.model == model)]
            for r in rows.to_dict("records"):
                rel = lb.facts[model].get(f"reliance_{r['class']}")
                if rel is None or not math.isfinite(r["estimate"]):
                    continue
                xs.append(float(rel))
                ys.append(float(r["estimate"]))
                ax.plot([rel], [r["estimate"]], ls="", ms=6, mec=style["color"], mew=1.0,
                        fillstyle=MODEL_FILLS[mi % len(MODEL_FILLS)], **style)
        rho = spearmanr(xs, ys).statistic if len(xs) >= 3 and len(set(ys)) > 1 else float("nan")
        handles.append(Line2D([], [], ls="", ms=6, label=f"{method} (ρ={rho:.2f}, {len(xs)} pts)", **style))
    for mi, model in enumerate(models):
        handles.append(Line2D([], [], ls="", marker="o", color="gray", mec="black", ms=6,
                              fillstyle=MODEL_FILLS[mi % len(MODEL_FILLS)], label=f"model: {_short(model, 28)}"))
    ax.set_xlabel("measured reliance on context, per class")
    ax.set_ylabel(f"{metric} {_arrow(lb.metrics.get(metric, {}))}")
    ax.set_title(f"{metric}: per (model, class)", fontsize=10)
    ax.grid(alpha=0.3)
    # Outside the axes, right of them: the legend never covers a point.
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)


# ---------------------------------------------------------------------------------------------
# The figure set of one results directory


@dataclass
class RenderedFigure:
    name: str  # file stem under figures/
    caption: str
    png: bytes
    # Overlay panels as (left, top, width, height) fractions of the image (:func:`panel_boxes`).
    panels: list[tuple[float, float, float, float]] | None = None


def run_figures(
    lb: Leaderboard,
    run_dir,
    by_class: pd.DataFrame | None = None,
    rows: pd.DataFrame | None = None,
    *,
    examples: int = 4,
    dpi: int = 110,
    allow_code: bool = False,
) -> tuple[list[RenderedFigure], list[str]]:
    """Every figure that applies to the run, rendered to PNG, and notes on those that could not
    be drawn (a figure never stops the others). ``allow_code``: overlays may rebuild models
    whose spec runs Python code (see :mod:`bench.config`)."""
    from pathlib import Path

    from bench.report import examples as ex_mod
    from bench.report.breakdown import only_classes
    from bench.report.leaderboard import load_results

    run_dir = Path(run_dir)
    figs: list[RenderedFigure] = []
    notes: list[str] = []
    conf = int(round(lb.confidence * 100))
    # The score rows' own columns (a run with sanity checks adds columns that are not in them).
    scored = {k: v for k, v in lb.metrics.items() if not v.get("sanity")}

    def add(name: str, caption: str, make) -> None:
        try:
            fig = make()
        except Exception as exc:  # noqa: BLE001 - one figure's failure is reported, not fatal
            notes.append(f"{name}: not drawn ({type(exc).__name__}: {exc})")
            return
        if fig is not None:
            figs.append(RenderedFigure(name, caption, png_bytes(fig, dpi)))

    if examples > 0:
        caption = (
            "Maps of {model} on a few test images (one per class in turn); rows: methods, columns: "
            "images. Green: object mask; dashed cyan: context region; dashed yellow: boxes; red dots: "
            "fixations; +: the map's argmax. Under each panel: that image's scores."
        )
        try:
            df = rows if rows is not None else load_results(run_dir)[0]
            chosen = ex_mod.collect(run_dir, df, list(scored), examples, allow_code=allow_code)
            pairs = list(dict.fromkeys(zip(df["model"], df["method"])))
            for name, model, fig in overlay_figures(chosen, pairs, scored) if chosen else []:
                png = png_bytes(fig, dpi)  # renders, so that panel_boxes reads the final layout
                figs.append(RenderedFigure(name, caption.format(model=model), png, panel_boxes(fig)))
        except Exception as exc:  # noqa: BLE001 - one figure's failure is reported, not fatal
            notes.append(f"overlays: not drawn ({type(exc).__name__}: {exc})")

    families = curve_families(scored)
    # Columns of a curve are drawn as the curve, not as one bar panel each.
    on_curves = {label for fam in families for _, label in fam.points}
    bar_metrics = [m for m in scored if m not in on_curves]
    for subset in dict.fromkeys(lb.cells["subset"]) if not lb.cells.empty else []:
        add(
            "bars" if subset == "all" else f"bars_{subset}",
            f"Estimate and {conf}% bootstrap CI per metric ({subset}); star: rank 1 (best or statistically tied with best).",
            lambda subset=subset: bar_chart(lb, subset, bar_metrics) if bar_metrics else None,
        )
    for fam in families:
        add(
            f"curve_{fam.name}_{fam.param}",
            f"{fam.name} as a function of {fam.param}, per model and method, with {conf}% bootstrap CI bands.",
            lambda fam=fam: curve_chart(lb, fam),
        )
    if not lb.validity.empty:
        from bench.report.validity import load_reliance

        add(
            "validity_leakage",
            "Each method's per-row leakage against the row's measured context reliance (drop in the target's "
            "probability when the context is removed, minus the drop for a same-area control region), one "
            "point per (image, target). A leakage score that can be trusted rises with it; the legend "
            "gives Spearman's rho (the validity table has its CI).",
            lambda: validity_scatter(rows if rows is not None else load_results(run_dir)[0], lb, load_reliance(run_dir)),
        )
    add(
        "leakage_vs_reliance",
        "Context metrics measured from the maps against each model's reliance on context measured by "
        "intervention (repainting the context). A trustworthy leakage score rises with true reliance.",
        lambda: leakage_vs_reliance(lb, only_classes(by_class)),
    )
    if any(v.get("sanity") for v in lb.metrics.values()):
        from bench.report.sanity import build as sanity_table
        from bench.report.sanity import cascade_figure

        table = sanity_table(run_dir, confidence=lb.confidence)
        add(
            "sanity_cascading",
            f"Model-parameter randomisation (Adebayo et al. 2018): mean Spearman rank correlation of |map| "
            f"between the trained model and the model whose layers are re-initialised from the output layer "
            f"down to the step on the x axis, one line per method, {conf}% bootstrap CI bands; dashed: the "
            f"failing threshold ({table.threshold:g}). A map that ignores the model stays at 1.",
            lambda: cascade_figure(table),
        )
    return figs, notes
