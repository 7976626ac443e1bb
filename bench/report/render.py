"""Leaderboard renderers: terminal text, Markdown, CSV, LaTeX (booktabs) and HTML.

Every renderer reads the same :class:`Table` list, built from a
:class:`~bench.report.leaderboard.Leaderboard` (and, optionally, its per-class breakdown from
:mod:`bench.report.breakdown`), so the formats never disagree. Conventions, stated in every
rendered legend:

- A cell is ``estimate [low, high] n=N``: the metric's aggregate (mean over rows, or mean of
  per-class means for class-averaged metrics such as the pointing game), its 95% bootstrap CI
  over images, and N, the number of (image, target) rows where the metric is defined.
- **Best**: rank 1 within the comparison (same model, subset, metric and, in a breakdown, class):
  the best estimate and every method not significantly different from it. Bold in Markdown,
  LaTeX and HTML; ``*`` in the terminal.
- **Tie** (``†``): the method shares its rank with at least one other method; ranks come from
  :func:`bench.report.stats.rank_methods`: each rank's leader is the best method not already
  ranked, and a method shares the leader's rank when a paired bootstrap of the difference of the
  cell's own estimate (images resampled, BCa, the cells' seed), Holm-adjusted over that
  leader's comparisons, gives p >= alpha. There is no chaining through neighbours.
- Arrows give each metric's direction (↑ higher is better, ↓ lower is better).

CSV is the machine-readable form: one line per cell with full precision and the flags above.
"""

from __future__ import annotations

import html
import io
import re
import math
from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd

from bench.report import validity
from bench.report.leaderboard import Leaderboard, model_facts_lines

SUBSET_TITLES = {
    "all": "All (image, class) pairs",
    "difficult": "Difficult subset (class area below 1/4 of the image, another class present)",
}
TIE = "†"
BREAKDOWN_TITLES = {"object_area": "object area", "instance_count": "instance count"}


@dataclass(frozen=True)
class Cell:
    estimate: float
    low: float
    high: float
    n: int
    n_undefined: int
    rank: float
    best: bool
    tied: bool

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


@dataclass
class Table:
    """One rendered table: key columns (e.g. model, method), one column per metric."""

    anchor: str
    title: str
    keys: list[str]
    metrics: list[str]
    rows: list[tuple[tuple[str, ...], dict[str, Cell]]]
    per_class: bool = False


# ---------------------------------------------------------------------------------------------
# From leaderboard cells to tables


def comparison_keys(cells: pd.DataFrame) -> list[str]:
    """The columns that define one comparison between methods (one ranking)."""
    return [c for c in ("run", "model", "subset", "breakdown", "class", "metric") if c in cells.columns]


def mark(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with boolean ``best`` (rank 1) and ``tied`` (rank shared with another method of
    the same comparison) columns."""
    if cells.empty:
        return cells.assign(best=pd.Series(dtype=bool), tied=pd.Series(dtype=bool))
    out = cells.copy()
    rank = out["rank"].astype(float)
    out["best"] = rank == 1
    keys = comparison_keys(out)
    shared = out.assign(_r=rank).groupby(keys + ["_r"], dropna=True, sort=False)["method"].transform("size")
    out["tied"] = (shared.reindex(out.index).fillna(1) > 1) & rank.notna()
    return out


def _cell(r: dict[str, Any]) -> Cell:
    return Cell(
        float(r["estimate"]),
        float(r["low"]),
        float(r["high"]),
        int(r["n"]),
        int(r["n_undefined"]),
        float(r["rank"]),
        bool(r["best"]),
        bool(r["tied"]),
    )


def make_table(cells: pd.DataFrame, keys: list[str], metrics: list[str], *, anchor: str, title: str, per_class: bool = False) -> Table:
    """Pivot marked cells into rows keyed by ``keys`` (in first-seen order)."""
    cells = cells if "best" in cells.columns else mark(cells)
    rows: dict[tuple[str, ...], dict[str, Cell]] = {}
    for r in cells.to_dict("records"):
        rows.setdefault(tuple(str(r[k]) for k in keys), {})[r["metric"]] = _cell(r)
    present = [m for m in metrics if any(m in row for row in rows.values())]
    return Table(anchor, title, list(keys), present, list(rows.items()), per_class)


def leaderboard_tables(lb: Leaderboard, by_class: pd.DataFrame | None = None) -> list[Table]:
    """The main table per subset ("all", then "difficult" where present), then one per-class
    breakdown table per model."""
    metrics = list(lb.metrics)
    out = []
    cells = mark(lb.cells)
    # A run with sanity checks: each method's verdict is a key column beside its name.
    keys = ["model", "method", "sanity"] if "sanity" in cells.columns else ["model", "method"]
    for subset in dict.fromkeys(cells["subset"]) if not cells.empty else []:
        part = cells[cells.subset == subset]
        refs = lb.references[lb.references.subset == subset] if not lb.references.empty else lb.references
        if not refs.empty:
            # The human ceiling (gaze runs): a reference row after each model's methods, unranked.
            part = pd.concat([part, mark(refs)], ignore_index=True)
            order = {m: i for i, m in enumerate(dict.fromkeys(part["model"]))}
            part = part.sort_values("model", key=lambda s: s.map(order), kind="stable")
        out.append(
            make_table(
                part.fillna({"sanity": ""}) if "sanity" in keys else part,
                keys,
                metrics,
                anchor=f"subset-{subset}",
                title=SUBSET_TITLES.get(subset, f"Subset: {subset}"),
            )
        )
    if not lb.fractions.empty:
        out.append(
            make_table(
                mark(lb.fractions),
                ["model", "method"],
                metrics,
                anchor="fraction-of-ceiling",
                title="Fraction of the way from the centre prior (0) to the human ceiling (1)",
            )
        )
    if by_class is not None and not by_class.empty:
        bc = mark(by_class)
        if "breakdown" not in bc.columns:
            bc = bc.assign(breakdown="class")
        for kind in dict.fromkeys(bc["breakdown"]):
            part = bc[bc.breakdown == kind]
            for model in dict.fromkeys(part["model"]):
                sub = part[part.model == model]
                if kind == "class":
                    sub = sub.sort_values("class", kind="stable")
                    out.append(
                        make_table(sub, ["class", "method"], metrics, anchor=f"class-{_slug(model)}", title=f"Per class: {model}", per_class=True)
                    )
                    continue
                # Strata keep their bins' natural order (area < 3% before area 3-10%).
                key = BREAKDOWN_TITLES.get(kind, kind)
                out.append(
                    make_table(
                        sub.rename(columns={"class": key}), [key, "method"], metrics,
                        anchor=f"{_slug(kind)}-{_slug(model)}", title=f"Per {key}: {model}", per_class=True,
                    )
                )
    return out


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower()


# ---------------------------------------------------------------------------------------------
# Shared wording


def fmt(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def arrow(meta: dict[str, Any]) -> str:
    return "↑" if meta.get("higher_is_better", True) else "↓"


def legend(lb: Leaderboard, best_mark: str = "Bold") -> str:
    conf = int(round(lb.confidence * 100))
    return (
        f"Cells: estimate [{conf}% bootstrap CI over images] n = (image, target) rows with a defined value. "
        f"{best_mark}: best (rank 1: the best estimate and every method not significantly different from it). "
        f"{TIE}: statistical tie (the method shares its rank with another). Rank rule: each rank's leader is the "
        "best method not yet ranked; a method shares that rank when the difference of the cell's estimate to the "
        "leader is not significant (paired bootstrap over images, BCa, Holm-adjusted over the leader's "
        "comparisons, p >= 0.05); every tie is with the leader, never chained through neighbours. "
        "↑ higher is better, ↓ lower is better."
    )


def metric_lines(lb: Leaderboard) -> list[str]:
    """One line per metric column: direction, aggregation and parameters (and, for a run with
    sanity checks, what its sanity column says)."""
    lines = []
    if "sanity" in lb.cells.columns:
        lines.append(
            "sanity: FAIL where a method's maps on the fully re-initialised model still rank pixels "
            "like the trained model's (mean Spearman |.| above the threshold), pass where not, n/a "
            "where undefined (constant maps); the sanity table and figure have the details"
        )
    for label, meta in lb.metrics.items():
        agg = "mean of per-class means" if meta.get("aggregate") == "class_mean" else "mean over rows"
        params = meta.get("params") or {}
        ptxt = ", ".join(f"{k}={v}" for k, v in params.items())
        name = meta.get("name", label)
        what = f"{name}" + (f"({ptxt})" if ptxt else "")
        lines.append(f"{label} {arrow(meta)}: {what}, {agg}")
    return lines


def skipped_line(lb: Leaderboard, lead: str = "Not scored: ") -> str:
    if not lb.skipped:
        return ""
    return lead + ", ".join(f"{n} × {reason}" for reason, n in sorted(lb.skipped.items()))


# ---------------------------------------------------------------------------------------------
# Terminal text


def _text_cell(c: Cell | None) -> str:
    if c is None:
        return ""
    if not math.isfinite(c.estimate):
        return f"n/a n={c.n}"
    marks = ("*" if c.best else "") + (TIE if c.tied else "")
    ci = f" [{fmt(c.low)}, {fmt(c.high)}]" if c.has_ci else ""
    return f"{fmt(c.estimate)}{ci}{marks} n={c.n}"


def render_text(lb: Leaderboard, by_class: pd.DataFrame | None = None) -> str:
    """The terminal table: one block per table, aligned columns, then metrics, models, skips."""
    out = [f"groundbench leaderboard: {lb.title}", legend(lb, "*")]
    for t in leaderboard_tables(lb, by_class):
        out.append(f"\n[{t.title}]")
        if not t.rows:
            out.append("(no rows)")
            continue
        frame = pd.DataFrame(
            [[*key, *(_text_cell(row.get(m)) for m in t.metrics)] for key, row in t.rows],
            columns=[*t.keys, *(f"{m} {arrow(lb.metrics.get(m, {}))}" for m in t.metrics)],
        )
        out.append(frame.to_string(index=False))
    if lb.cells.empty:
        out.append("\n(no scored rows)")
    out.append("\nmetrics:")
    out.extend(f"  {line}" for line in metric_lines(lb))
    out.extend(f"  {line}" for line in lb.notes)
    facts = model_facts_lines(lb.facts)
    if facts:
        out.append("\nmodels:")
        out.extend(f"  {line}" for line in facts)
    if not lb.reliance.empty:
        out.append(validity.render_text(lb.reliance, lb.validity).rstrip("\n"))
    if lb.skipped:
        out.append("\n" + skipped_line(lb, "not scored: "))  # the terminal footer's wording since the skeleton
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Markdown


_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _md_escape(text: str) -> str:
    # Intraword underscores (pointing_game) never start emphasis in CommonMark/GFM; only
    # underscores at a word boundary need escaping.
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
    return _MD_UNDERSCORE.sub(r"\\_", text)


def _md_cell(c: Cell | None) -> str:
    if c is None:
        return ""
    if not math.isfinite(c.estimate):
        return f"n/a n={c.n}"
    est = f"**{fmt(c.estimate)}**" if c.best else fmt(c.estimate)
    tie = TIE if c.tied else ""
    ci = f" [{fmt(c.low)}, {fmt(c.high)}]" if c.has_ci else ""
    return f"{est}{tie}{ci} n={c.n}"


def markdown_table(t: Table, metrics_meta: dict[str, dict[str, Any]]) -> str:
    head = [*t.keys, *(f"{_md_escape(m)} {arrow(metrics_meta.get(m, {}))}" for m in t.metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":--"] * len(t.keys) + ["--:"] * len(t.metrics)) + "|"]
    for key, row in t.rows:
        lines.append("| " + " | ".join([*(_md_escape(k) for k in key), *(_md_cell(row.get(m)) for m in t.metrics)]) + " |")
    return "\n".join(lines)


def render_markdown(lb: Leaderboard, by_class: pd.DataFrame | None = None, *, heading_level: int = 2) -> str:
    h = "#" * heading_level
    out = [f"{h} groundbench leaderboard: {_md_escape(lb.title)}", "", legend(lb, "**Bold**"), ""]
    tables = leaderboard_tables(lb, by_class)
    for t in tables:
        out += [f"{h}# {_md_escape(t.title)}", ""]
        out += [markdown_table(t, lb.metrics) if t.rows else "(no rows)", ""]
    if not tables:
        out += ["(no scored rows)", ""]
    out += [f"{h}# Metrics", ""] + [f"- {_md_escape(line)}" for line in [*metric_lines(lb), *lb.notes]] + [""]
    facts = model_facts_lines(lb.facts)
    if facts:
        out += [f"{h}# Models", ""] + [f"- {_md_escape(line)}" for line in facts] + [""]
    if not lb.reliance.empty:
        out += [validity.render_markdown(lb.reliance, lb.validity, heading_level=heading_level + 1)]
    if lb.skipped:
        out += [_md_escape(skipped_line(lb)), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# CSV

CSV_COLUMNS = [
    "model",
    "method",
    "subset",
    "class",
    "metric",
    "estimate",
    "low",
    "high",
    "confidence",
    "n",
    "n_undefined",
    "rank",
    "best",
    "tied",
    "higher_is_better",
    "aggregate",
]


def cells_frame(lb: Leaderboard, by_class: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every cell, overall ones (``class`` empty) then per-class ones, with the flags."""
    parts = [mark(lb.cells).assign(**{"class": ""})] if not lb.cells.empty else []
    for extra in (lb.references, lb.fractions):  # gaze runs: the human ceiling, unranked
        if not extra.empty:
            parts.append(mark(extra).assign(**{"class": ""}))
    if by_class is not None and not by_class.empty:
        parts.append(mark(by_class))
    if not parts:
        return pd.DataFrame(columns=CSV_COLUMNS)
    frame = pd.concat(parts, ignore_index=True)
    frame["confidence"] = lb.confidence
    frame["higher_is_better"] = [bool(lb.metrics.get(m, {}).get("higher_is_better", True)) for m in frame["metric"]]
    frame["aggregate"] = [
        ("mean" if c else lb.metrics.get(m, {}).get("aggregate", "mean")) for m, c in zip(frame["metric"], frame["class"])
    ]
    frame["rank"] = frame["rank"].astype("Int64")
    cols = list(CSV_COLUMNS)
    if "sanity" in frame.columns:  # a run with sanity checks: each method's verdict
        frame["sanity"] = frame["sanity"].fillna("")
        cols = [*cols[:2], "sanity", *cols[2:]]
    if "breakdown" in frame.columns:
        # Runs with strata: say which grouping a breakdown cell's ``class`` is ("" overall).
        frame["breakdown"] = frame["breakdown"].fillna("")
        cols.append("breakdown")
    return frame[cols]


def render_csv(lb: Leaderboard, by_class: pd.DataFrame | None = None) -> str:
    buf = io.StringIO()
    # Default float formatting is repr: the CSV reads back to the exact same numbers.
    cells_frame(lb, by_class).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# LaTeX (booktabs)

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _tex_cell(c: Cell | None) -> str:
    if c is None:
        return ""
    if not math.isfinite(c.estimate):
        return f"n/a {{\\scriptsize $n$={c.n}}}"
    est = f"\\textbf{{{fmt(c.estimate)}}}" if c.best else fmt(c.estimate)
    tie = "$^{\\dagger}$" if c.tied else ""
    ci = f"[{fmt(c.low)}, {fmt(c.high)}], " if c.has_ci else ""
    return f"{est}{tie} {{\\scriptsize {ci}$n$={c.n}}}"


def _tex_arrow(meta: dict[str, Any]) -> str:
    return "$\\uparrow$" if meta.get("higher_is_better", True) else "$\\downarrow$"


def latex_table(t: Table, lb: Leaderboard) -> str:
    """One booktabs table; per-class breakdowns are ``longtable`` (they can exceed a page)."""
    spec = "l" * len(t.keys) + "c" * len(t.metrics)
    head = " & ".join([*(latex_escape(k.capitalize()) for k in t.keys), *(f"{latex_escape(m)} {_tex_arrow(lb.metrics.get(m, {}))}" for m in t.metrics)]) + r" \\"
    conf = int(round(lb.confidence * 100))
    caption = (
        f"{latex_escape(lb.title)}: {latex_escape(t.title)}. Mean [{conf}\\% bootstrap CI over images] and $n$ per cell; "
        f"bold: best (rank 1, including methods not significantly different from the best); "
        f"$^\\dagger$: statistical tie (shares the rank of its leader, the best method not yet ranked: paired bootstrap of the "
        f"difference over images, BCa, Holm-adjusted, $p \\geq 0.05$)."
    )
    label = f"tab:groundbench-{_slug(lb.title)}-{t.anchor}"
    body = []
    previous = None
    for key, row in t.rows:
        group = key[0]
        if previous is not None and group != previous:
            body.append(r"\midrule")
        shown = [latex_escape(group) if group != previous else "", *(latex_escape(k) for k in key[1:])]
        body.append(" & ".join([*shown, *(_tex_cell(row.get(m)) for m in t.metrics)]) + r" \\")
        previous = group
    if t.per_class:
        return "\n".join(
            [
                f"\\begin{{longtable}}{{{spec}}}",
                f"\\caption{{{caption}}}\\label{{{label}}}\\\\",
                r"\toprule",
                head,
                r"\midrule",
                r"\endhead",
                *body,
                r"\bottomrule",
                r"\end{longtable}",
            ]
        )
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            f"\\caption{{{caption}}}",
            f"\\label{{{label}}}",
            f"\\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            head,
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
        ]
    )


def render_latex(lb: Leaderboard, by_class: pd.DataFrame | None = None) -> str:
    tables = leaderboard_tables(lb, by_class)
    needs_longtable = any(t.per_class for t in tables)
    out = [
        f"% groundbench leaderboard: {lb.title}",
        "% needs \\usepackage{booktabs}" + (" and \\usepackage{longtable} (per-class tables)" if needs_longtable else ""),
        "% " + legend(lb),
    ]
    out += [f"% {line}" for line in [*metric_lines(lb), *lb.notes]]
    out += [f"% {line}" for line in model_facts_lines(lb.facts)]
    if lb.skipped:
        out.append("% " + skipped_line(lb))
    for t in tables:
        if t.rows:
            out += ["", latex_table(t, lb)]
    if not lb.reliance.empty:
        out += ["", validity.render_latex(lb.reliance, lb.validity).rstrip("\n")]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1400px; padding: 0 1rem; color: #1d232a; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; } h3 { font-size: 1.1rem; margin-top: 1.6rem; }
div.tablewrap { overflow-x: auto; max-width: 100%; }
table.lb { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .9rem; }
table.lb th, table.lb td { padding: .3rem .7rem; border-bottom: 1px solid #e1e4e8; }
table.lb thead th { border-bottom: 2px solid #1d232a; text-align: center; background: #f6f8fa; }
table.lb td.key { text-align: left; white-space: nowrap; }
table.lb td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.lb tr.group-start td { border-top: 2px solid #8c959f; }
td.best .est { font-weight: 700; } td.best { background: #e6f4ea; }
.ci { color: #57606a; font-size: .85em; } .n { color: #8c959f; font-size: .8em; margin-left: .3em; }
.tie { color: #9a6700; font-weight: 700; }
p.legend, ul.meta { color: #424a53; font-size: .9rem; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
figcaption { color: #424a53; font-size: .9rem; margin-top: .3rem; }
details { margin: .8rem 0; } summary { cursor: pointer; font-weight: 600; }
table.prov { border-collapse: collapse; font-size: .85rem; } table.prov td, table.prov th { text-align: left; padding: .15rem .8rem .15rem 0; vertical-align: top; }
pre { background: #f6f8fa; padding: .6rem; overflow-x: auto; font-size: .8rem; }
nav ul { columns: 2; font-size: .9rem; }
"""


def _html_cell(c: Cell | None) -> str:
    if c is None:
        return '<td class="num"></td>'
    cls = "num best" if c.best else "num"
    title = f"estimate {c.estimate!r}; CI [{c.low!r}, {c.high!r}]; n={c.n}; undefined rows={c.n_undefined}; rank={c.rank:g}"
    if not math.isfinite(c.estimate):
        return f'<td class="num" title="{html.escape(title)}">n/a<span class="n">n={c.n}</span></td>'
    tie = f'<span class="tie" title="statistical tie">{TIE}</span>' if c.tied else ""
    ci = f' <span class="ci">[{fmt(c.low)}, {fmt(c.high)}]</span>' if c.has_ci else ""
    return f'<td class="{cls}" title="{html.escape(title)}"><span class="est">{fmt(c.estimate)}</span>{tie}{ci}<span class="n">n={c.n}</span></td>'


def html_table(t: Table, metrics_meta: dict[str, dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in t.keys)
    head += "".join(f"<th>{html.escape(m)} {arrow(metrics_meta.get(m, {}))}</th>" for m in t.metrics)
    body = []
    previous = None
    for key, row in t.rows:
        start = previous is not None and key[0] != previous
        tr = '<tr class="group-start">' if start else "<tr>"
        keys = "".join(f'<td class="key">{html.escape(k)}</td>' for k in key)
        body.append(tr + keys + "".join(_html_cell(row.get(m)) for m in t.metrics) + "</tr>")
        previous = key[0]
    # The wrapper scrolls sideways when a wide table does not fit the page.
    return (
        f'<div class="tablewrap"><table class="lb" id="{html.escape(t.anchor)}"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table></div>'
    )


def html_tables(lb: Leaderboard, by_class: pd.DataFrame | None = None, *, level: int = 3, anchor_prefix: str = "") -> str:
    """The leaderboard as an HTML fragment: legend, main tables, collapsible per-class tables,
    metrics, model facts and what was not scored."""
    out = [f'<p class="legend">{html.escape(legend(lb))}</p>']
    tables = leaderboard_tables(lb, by_class)
    main = [t for t in tables if not t.per_class]
    per_class = [t for t in tables if t.per_class]
    for t in main:
        t.anchor = anchor_prefix + t.anchor
        out.append(f"<h{level}>{html.escape(t.title)}</h{level}>")
        out.append(html_table(t, lb.metrics) if t.rows else "<p>(no rows)</p>")
    if not tables:
        out.append("<p>(no scored rows)</p>")
    for t in per_class:
        t.anchor = anchor_prefix + t.anchor
        out.append(f"<details><summary>{html.escape(t.title)}</summary>{html_table(t, lb.metrics)}</details>")
    out.append('<p class="legend"><strong>Metrics</strong></p><ul class="meta">' + "".join(f"<li>{html.escape(line)}</li>" for line in [*metric_lines(lb), *lb.notes]) + "</ul>")
    facts = model_facts_lines(lb.facts)
    if facts:
        out.append('<p class="legend"><strong>Models</strong></p><ul class="meta">' + "".join(f"<li>{html.escape(line)}</li>" for line in facts) + "</ul>")
    if not lb.reliance.empty:
        out.append(validity.render_html(lb.reliance, lb.validity, level=level))
    if lb.skipped:
        out.append(f'<p class="legend">{html.escape(skipped_line(lb))}</p>')
    return "\n".join(out)


def html_document(title: str, body: Iterable[str]) -> str:
    """A complete, self-contained page: inline style, no scripts, no external resources."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" href="data:,">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{HTML_STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def render_html(lb: Leaderboard, by_class: pd.DataFrame | None = None) -> str:
    title = f"groundbench leaderboard: {lb.title}"
    return html_document(title, [f"<h1>{html.escape(title)}</h1>", html_tables(lb, by_class)])
