"""Leaderboard renderers: every format shows mean, CI and n per cell, marks the best and the
ties the same way, and the per-class breakdown follows the leaderboard's own conventions."""

from __future__ import annotations

import html.parser
import io
import math
import re

import numpy as np
import pandas as pd
import pytest

from bench.report import render
from bench.report.breakdown import class_cells
from bench.report.leaderboard import Leaderboard, compute

METRICS = {
    "hit_rate": {"name": "pointing_game", "higher_is_better": True, "aggregate": "class_mean", "params": {"tolerance": 15.0}},
    "leak_age": {"name": "leakage", "higher_is_better": False, "aggregate": "mean", "params": {}},
}


def _cell(model, method, metric, est, low, high, n, rank, subset="all", n_undef=0):
    return dict(model=model, method=method, subset=subset, metric=metric, estimate=est, low=low, high=high, n=n, n_undefined=n_undef, rank=rank, text="")


@pytest.fixture()
def lb() -> Leaderboard:
    """Hand-made cells: on hit_rate a and b tie for best (1, 1, 3); on leak_age a is best alone
    and b, c tie behind it (1, 2, 2). Method names carry characters every format must escape."""
    cells = pd.DataFrame(
        [
            _cell("m:one", "a_cam", "hit_rate", 0.7, 0.6, 0.8, 40, 1),
            _cell("m:one", "b|x", "hit_rate", 0.65, 0.55, 0.75, 40, 1),
            _cell("m:one", "c&_%", "hit_rate", 0.1, 0.05, 0.2, 40, 3),
            _cell("m:one", "a_cam", "leak_age", 0.2, 0.15, 0.25, 31, 1, n_undef=9),
            _cell("m:one", "b|x", "leak_age", 0.4, 0.3, 0.5, 30, 2, n_undef=10),
            _cell("m:one", "c&_%", "leak_age", 0.45, float("nan"), float("nan"), 1, 2, n_undef=39),
            _cell("m:one", "a_cam", "hit_rate", 0.5, 0.3, 0.7, 12, 1, subset="difficult"),
            _cell("m:one", "b|x", "hit_rate", 0.25, 0.1, 0.4, 12, 2, subset="difficult"),
            _cell("m:one", "c&_%", "hit_rate", float("nan"), float("nan"), float("nan"), 0, 3, subset="difficult"),
        ]
    )
    facts = {"m:one": {"accuracy_own_distribution": 0.95, "reliance": 0.5, "reliance_n": 10}}
    return Leaderboard(cells, METRICS, facts, {"no targets in this image": 3}, 0.95, title="demo_run")


def test_best_and_tie_flags_follow_the_ranks(lb):
    marked = render.mark(lb.cells).set_index(["subset", "metric", "method"])
    assert marked.loc[("all", "hit_rate", "a_cam"), "best"] and marked.loc[("all", "hit_rate", "b|x"), "best"]
    assert marked.loc[("all", "hit_rate", "a_cam"), "tied"] and marked.loc[("all", "hit_rate", "b|x"), "tied"]
    assert not marked.loc[("all", "hit_rate", "c&_%"), "best"] and not marked.loc[("all", "hit_rate", "c&_%"), "tied"]
    assert marked.loc[("all", "leak_age", "a_cam"), "best"] and not marked.loc[("all", "leak_age", "a_cam"), "tied"]
    assert marked.loc[("all", "leak_age", "b|x"), "tied"] and marked.loc[("all", "leak_age", "c&_%"), "tied"]
    assert not marked.loc[("all", "leak_age", "b|x"), "best"]
    # Ties never cross comparisons: rank 1 on "difficult" is alone there.
    assert not marked.loc[("difficult", "hit_rate", "a_cam"), "tied"]


def test_tables_per_subset_then_per_class(lb):
    by_class = lb.cells[lb.cells.subset == "all"].assign(**{"class": "boat"})
    tables = render.leaderboard_tables(lb, by_class)
    assert [t.title for t in tables] == [render.SUBSET_TITLES["all"], render.SUBSET_TITLES["difficult"], "Per class: m:one"]
    assert tables[0].keys == ["model", "method"] and tables[2].keys == ["class", "method"]
    assert [k for k, _ in tables[0].rows] == [("m:one", "a_cam"), ("m:one", "b|x"), ("m:one", "c&_%")]
    assert tables[2].per_class and tables[2].rows[0][0] == ("boat", "a_cam")


def test_markdown(lb):
    md = render.render_markdown(lb)
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert header == "| model | method | hit_rate ↑ | leak_age ↓ |"
    row_a = next(line for line in lines if line.startswith("| m:one | a_cam |"))
    assert "**0.700**† [0.600, 0.800] n=40" in row_a  # best and tied
    assert "**0.200** [0.150, 0.250] n=31" in row_a  # best alone: no tie mark
    row_b = next(line for line in lines if "b\\|x" in line)  # the pipe is escaped
    assert row_b.count(" | ") == 3 and "0.400† [0.300, 0.500] n=30" in row_b
    row_c = next(line for line in lines if line.startswith("| m:one | c&\\_% |"))  # "_" after "&" could open emphasis
    assert "0.450† n=1" in row_c  # one image: no CI, still n
    assert "a_cam" in row_a and "a\\_cam" not in md  # intraword underscores stay readable
    assert "**Bold**: best" in md and "Not scored: 3 × no targets in this image" in md
    assert "hit_rate ↑: pointing_game(tolerance=15.0), mean of per-class means" in md
    assert "reliance on context 0.500" in md


def test_text(lb):
    text = render.render_text(lb)
    assert "0.700 [0.600, 0.800]*† n=40" in text
    assert "0.100 [0.050, 0.200] n=40" in text
    assert "n/a n=0" in text  # the undefined difficult cell
    assert "[Difficult subset" in text


def test_csv_round_trips_every_cell_exactly(lb):
    by_class = lb.cells[lb.cells.subset == "all"].assign(**{"class": "boat"})
    frame = pd.read_csv(io.StringIO(render.render_csv(lb, by_class)), keep_default_na=False, na_values=[""])
    assert list(frame.columns) == render.CSV_COLUMNS
    assert len(frame) == len(lb.cells) + len(by_class)
    overall = frame[frame["class"].isna()].reset_index(drop=True)
    np.testing.assert_array_equal(overall["estimate"].to_numpy(), lb.cells["estimate"].to_numpy())
    np.testing.assert_array_equal(overall["n"].to_numpy(), lb.cells["n"].to_numpy())
    a = overall[(overall.method == "a_cam") & (overall.metric == "hit_rate") & (overall.subset == "all")].iloc[0]
    assert a["best"] and a["tied"] and a["rank"] == 1 and a["aggregate"] == "class_mean" and a["higher_is_better"]
    # Within one class a class-averaged metric is a plain mean.
    assert set(frame[frame["class"] == "boat"]["aggregate"]) == {"mean"}


def _unescaped_ampersands(line: str) -> int:
    return len(re.findall(r"(?<!\\)&", line))


def test_latex_booktabs(lb):
    by_class = lb.cells[lb.cells.subset == "all"].assign(**{"class": "boat"})
    tex = render.render_latex(lb, by_class)
    assert tex.count(r"\begin{table}") == 2 and tex.count(r"\begin{longtable}") == 1
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 3
    assert r"\usepackage{booktabs}" in tex and r"\usepackage{longtable}" in tex
    body = tex.split(r"\begin{tabular}{llcc}", 1)[1].split(r"\end{tabular}", 1)[0]
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(rows) == 4  # header + 3 methods
    assert all(_unescaped_ampersands(line) == 3 for line in rows)  # 4 columns, escapes excluded
    assert r"c\&\_\%" in tex and r"a\_cam" in tex and r"m:one" in tex
    assert r"\textbf{0.700}$^{\dagger}$ {\scriptsize [0.600, 0.800], $n$=40}" in tex
    assert r"0.100 {\scriptsize [0.050, 0.200], $n$=40}" in tex
    code = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert code.count("{") - code.count(r"\{") == code.count("}") - code.count(r"\}")
    assert "\\label{tab:groundbench-demo-run-subset-all}" in tex


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.errors: list[str] = []

    VOID = {"meta", "link", "img", "br", "hr", "input"}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def test_html_is_well_formed_and_self_contained(lb):
    by_class = lb.cells[lb.cells.subset == "all"].assign(**{"class": "boat"})
    page = render.render_html(lb, by_class)
    parser = _Collector()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags
    assert all(a.get("href", "data:").startswith("data:") for t, a in parser.tags if t == "link")
    tds = [a for t, a in parser.tags if t == "td"]
    assert sum("best" in a.get("class", "") for a in tds) == 2 + 1 + 1 + 2 + 1  # all, difficult, per class
    assert tags.count("table") == 3 and "details" in tags
    assert "b|x" in page and "c&amp;_%" in page
    assert 'title="estimate 0.7; CI [0.6, 0.8]; n=40; undefined rows=0; rank=1"' in page


def test_empty_leaderboard_renders_everywhere():
    empty = Leaderboard(compute(pd.DataFrame(), METRICS), METRICS, title="empty")
    for fn in (render.render_text, render.render_markdown, render.render_latex, render.render_html):
        assert "empty" in fn(empty)
    assert render.render_csv(empty).splitlines() == [",".join(render.CSV_COLUMNS)]


def _rows(n_images: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for cls in (["boat", "car"] if i % 3 else ["boat"]):
            for method, base in (("good", 0.8), ("bad", 0.1)):
                hit = float(rng.random() < base)
                rows.append(
                    dict(model="m", method=method, sample=i, image_id=f"img{i}", target=cls, difficult=cls == "car" and i % 2 == 0, hit_rate=hit, leak_age=float(rng.random()))
                )
    return pd.DataFrame(rows)


def test_class_breakdown_is_the_leaderboard_of_each_class():
    df = _rows()
    cells = class_cells(df, METRICS, n_resamples=200)
    assert set(cells["class"]) == {"boat", "car"}
    assert set(cells["subset"]) == {"all"}  # no difficult split inside a class
    for (cls, method, metric), cell in cells.set_index(["class", "method", "metric"]).iterrows():
        values = df[(df.target == cls) & (df.method == method)][metric]
        assert cell["estimate"] == pytest.approx(values.mean())
        assert cell["n"] == len(values)
        assert cell["low"] <= cell["estimate"] <= cell["high"]
    ranks = cells.set_index(["class", "method", "metric"])["rank"]
    assert ranks[("boat", "good", "hit_rate")] == 1 and ranks[("boat", "bad", "hit_rate")] == 2
    # The same code path as the overall leaderboard: one class alone gives the same cell.
    alone = compute(df[df.target == "car"], {k: {**v, "aggregate": "mean"} for k, v in METRICS.items()}, n_resamples=200)
    mine = cells[cells["class"] == "car"].drop(columns="class").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, alone.reset_index(drop=True))


def test_rendered_per_class_tables_carry_the_breakdown():
    df = _rows()
    lb = Leaderboard(compute(df, METRICS, n_resamples=200), METRICS, title="t")
    md = render.render_markdown(lb, class_cells(df, METRICS, n_resamples=200))
    section = md.split("### Per class: m", 1)[1]
    assert "| class | method |" in section
    assert section.count("| boat |") == 2 and section.count("| car |") == 2
    assert math.isfinite(lb.cells["estimate"].iloc[0])
