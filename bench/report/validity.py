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


# -- a run's measured reliance and validity, and how they are shown --------------------------------


def load_reliance(path) -> pd.DataFrame:
    """The run's reliance rows (``reliance.jsonl``), empty where the run measured none."""
    from pathlib import Path

    from bench import results

    file = Path(path) / results.RELIANCE
    return pd.DataFrame(results.read_rows(file)) if file.exists() else pd.DataFrame()


def measured(path, scores: pd.DataFrame, *, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, validity) of a results directory: the per-model reliance summary
    (:func:`bench.report.reliance.reliance_summary`, every mode, overall and per class) and the
    validity table of every removal mode (:func:`validity_table` with a ``mode`` column), from
    its reliance rows and the score rows ``scores``. Both empty for a run without reliance rows."""
    from bench.report.reliance import reliance_summary

    rel = load_reliance(path)
    if rel.empty:
        return pd.DataFrame(), pd.DataFrame()
    summary = reliance_summary(rel, confidence=confidence, n_resamples=n_resamples, seed=seed)
    parts = []
    for mode in dict.fromkeys(rel["mode"]):
        table = validity_table(scores, rel[rel["mode"] == mode], confidence=confidence, n_resamples=n_resamples, seed=seed)
        parts.append(table.assign(mode=mode))
    validity = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return summary, validity


VERDICT_NOTE = (
    "Spearman rho between each method's per-row score and the row's measured reliance (removal minus a "
    "same-area control), CI over images; tracks: CI above 0; inverse: below 0; flat: CI holds 0; "
    f"inconclusive: fewer than {MIN_ROWS} rows"
)


def _fmt(x: float) -> str:
    return "n/a" if not (isinstance(x, (int, float)) and math.isfinite(x)) else f"{x:.3f}"


def validity_cell(r: dict) -> str:
    """``rho [low, high] n=N verdict`` for one row of the validity table."""
    ci = f" [{_fmt(r['low'])}, {_fmt(r['high'])}]" if math.isfinite(float(r["low"])) else ""
    return f"{_fmt(r['rho'])}{ci} n={int(r['n'])} {r['verdict']}"


def validity_wide(validity: pd.DataFrame, mode: str | None = None) -> pd.DataFrame:
    """One row per (model, method), one column per ``score ~ reliance`` pair, cells as
    :func:`validity_cell`; ``mode``: that removal mode (default: the first)."""
    if validity.empty:
        return pd.DataFrame()
    mode = mode if mode is not None else validity["mode"].iloc[0]
    sub = validity[validity["mode"] == mode]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for r in sub.to_dict("records"):
        rows.setdefault((r["model"], r["method"]), {})[f"{r['score']} ~ {r['reliance']}"] = validity_cell(r)
    frame = pd.DataFrame([{"model": k[0], "method": k[1], **v} for k, v in rows.items()])
    return frame.fillna("")


def summary_lines(summary: pd.DataFrame, mode: str | None = None) -> list[str]:
    """One line per model: mean context and object reliance (``mode``, default the first), with
    CI, n and undefined rows."""
    if summary.empty:
        return []
    mode = mode if mode is not None else summary["mode"].iloc[0]
    sub = summary[(summary["mode"] == mode) & (summary["class"] == "all")]
    lines = []
    for model, df in sub.groupby("model", sort=False):
        parts = []
        for q, name in (("context_reliance", "context"), ("object_reliance", "object")):
            r = df[df["quantity"] == q]
            if r.empty:
                continue
            r = r.iloc[0]
            parts.append(f"{name} reliance {_fmt(r['estimate'])} [{_fmt(r['low'])}, {_fmt(r['high'])}] n={int(r['n'])} (undefined {int(r['n_undefined'])})")
        lines.append(f"{model} ({mode} removal, minus its control): " + "; ".join(parts))
    return lines


def render_text(summary: pd.DataFrame, validity: pd.DataFrame) -> str:
    """The measured reliance and validity sections of the terminal leaderboard (every mode)."""
    if summary.empty:
        return ""
    out = []
    for mode in dict.fromkeys(summary["mode"]):
        out.append(f"\nmeasured reliance ({mode} removal; drop in target probability minus a same-area control's):")
        out.extend(f"  {line}" for line in summary_lines(summary, mode))
    for mode in dict.fromkeys(validity["mode"]) if not validity.empty else []:
        wide = validity_wide(validity, mode)
        if not wide.empty:
            out.append(f"\n[validity: {mode} removal] {VERDICT_NOTE}")
            out.append(wide.to_string(index=False))
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def render_markdown(summary: pd.DataFrame, validity: pd.DataFrame, *, heading_level: int = 3) -> str:
    if summary.empty:
        return ""
    h = "#" * heading_level
    out = [f"{h} Measured reliance", ""]
    for mode in dict.fromkeys(summary["mode"]):
        out += [f"- {_md(line)}" for line in summary_lines(summary, mode)]
    out.append("")
    for mode in dict.fromkeys(validity["mode"]) if not validity.empty else []:
        wide = validity_wide(validity, mode)
        if wide.empty:
            continue
        out += [f"{h} Validity ({mode} removal)", "", _md(VERDICT_NOTE), ""]
        out.append("| " + " | ".join(_md(c) for c in wide.columns) + " |")
        out.append("|" + "|".join([":--"] * 2 + ["--:"] * (len(wide.columns) - 2)) + "|")
        out += ["| " + " | ".join(_md(v) for v in row) + " |" for row in wide.itertuples(index=False)]
        out.append("")
    return "\n".join(out)


def _tex(text: str) -> str:
    return str(text).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("#", r"\#").replace("~", r"$\sim$")


def render_latex(summary: pd.DataFrame, validity: pd.DataFrame) -> str:
    if summary.empty:
        return ""
    out = []
    for mode in dict.fromkeys(summary["mode"]):
        out += [f"% measured reliance: {line}" for line in summary_lines(summary, mode)]
    for mode in dict.fromkeys(validity["mode"]) if not validity.empty else []:
        wide = validity_wide(validity, mode)
        if wide.empty:
            continue
        cols = list(wide.columns)
        out += [
            "",
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{Validity ({_tex(mode)} removal): {_tex(VERDICT_NOTE)}.}}",
            r"\begin{tabular}{ll" + "r" * (len(cols) - 2) + "}",
            r"\toprule",
            " & ".join(_tex(c) for c in cols) + r" \\",
            r"\midrule",
            *(" & ".join(_tex(v) for v in row) + r" \\" for row in wide.itertuples(index=False)),
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
        ]
    return "\n".join(out) + "\n"


def render_html(summary: pd.DataFrame, validity: pd.DataFrame, *, level: int = 3) -> str:
    import html

    if summary.empty:
        return ""
    out = [f"<h{level}>Measured reliance</h{level}>", '<ul class="meta">']
    for mode in dict.fromkeys(summary["mode"]):
        out += [f"<li>{html.escape(line)}</li>" for line in summary_lines(summary, mode)]
    out.append("</ul>")
    for mode in dict.fromkeys(validity["mode"]) if not validity.empty else []:
        wide = validity_wide(validity, mode)
        if wide.empty:
            continue
        out.append(f'<h{level}>Validity ({html.escape(mode)} removal)</h{level}><p class="legend">{html.escape(VERDICT_NOTE)}</p>')
        head = "".join(f"<th>{html.escape(c)}</th>" for c in wide.columns)
        body = "".join(
            "<tr>" + "".join(f'<td class="{"key" if i < 2 else "num"}">{html.escape(str(v))}</td>' for i, v in enumerate(row)) + "</tr>"
            for row in wide.itertuples(index=False)
        )
        out.append(f'<div class="tablewrap"><table class="lb" id="validity-{html.escape(mode)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
    return "\n".join(out)


def render_csv(summary: pd.DataFrame, validity: pd.DataFrame) -> tuple[str, str]:
    """(reliance.csv, validity.csv): every number at full precision, every mode and class."""
    return summary.to_csv(index=False, lineterminator="\n"), validity.to_csv(index=False, lineterminator="\n")
