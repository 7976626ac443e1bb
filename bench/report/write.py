"""Writes a leaderboard's rendered outputs into a results directory.

``write_tables(lb, out)`` writes, from the rows alone:

- ``leaderboard.txt`` (terminal), ``.md`` (Markdown), ``.csv`` (one line per cell, full
  precision), ``.tex`` (LaTeX booktabs), ``.html`` (self-contained page): the main tables per
  subset and the per-class breakdown per model (and per object area and instance count, for
  runs that record them);
- ``figures/*.png``: overlays, bar charts with CIs, curves, leakage against reliance, whichever
  apply (:func:`bench.report.figures.run_figures`);
- ``report.html``: the one-file report of this run (:mod:`bench.report.html`).

A figure that cannot be drawn (e.g. the dataset is not on this machine to draw overlays from)
is reported on stderr and in ``figures/NOTES.txt``; the tables are always written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench import results
from bench.report.leaderboard import Leaderboard

FIGURES = "figures"
TABLE_FILES = ("leaderboard.txt", "leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html")


def write_table_files(lb: Leaderboard, out: Path, by_class: pd.DataFrame | None) -> list[Path]:
    from bench.report import render

    out = Path(out)
    texts = {
        "leaderboard.txt": render.render_text(lb, by_class),
        "leaderboard.md": render.render_markdown(lb, by_class),
        "leaderboard.csv": render.render_csv(lb, by_class),
        "leaderboard.tex": render.render_latex(lb, by_class),
        "leaderboard.html": render.render_html(lb, by_class),
    }
    if not lb.reliance.empty:  # a run with [reliance]: every mode and class, full precision
        from bench.report.validity import render_csv as measured_csv

        texts["reliance.csv"], texts["validity.csv"] = measured_csv(lb.reliance, lb.validity)
    written = []
    for name, text in texts.items():
        results.write_text(out / name, text)
        written.append(out / name)
    return written + write_sanity_files(out, confidence=lb.confidence)


def write_sanity_files(out: Path, *, confidence: float = 0.95) -> list[Path]:
    """A run with sanity checks: the sanity table as ``sanity.txt``, ``.md`` and ``.csv`` (every
    cell and curve point, full precision) beside the leaderboard; nothing otherwise. Bootstrap
    seeded with the run's seed, as the leaderboard."""
    from bench.report import sanity
    from bench.report.breakdown import run_seed

    table = sanity.build(out, confidence=confidence, seed=run_seed(out))
    if table.cells.empty:
        return []
    texts = {
        "sanity.txt": sanity.render_text(table),
        "sanity.md": sanity.render_markdown(table),
        "sanity.csv": sanity.render_csv(table),
    }
    for name, text in texts.items():
        results.write_text(Path(out) / name, text)
    return [Path(out) / name for name in texts]


def write_figures(figs: list, notes: list[str], out: Path) -> list[Path]:
    """Write rendered figures (:func:`bench.report.figures.run_figures`) as ``out/figures/*.png``
    and the notes on figures that could not be drawn as ``figures/NOTES.txt``."""
    folder = Path(out) / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for f in figs:
        path = folder / f"{f.name}.png"
        results.write_bytes(path, f.png)
        written.append(path)
    # Overlays come in a number of figures that depends on the run: none left from an earlier one.
    for stale in folder.glob("overlays_*.png"):
        if stale not in written:
            stale.unlink()
    notes_file = folder / "NOTES.txt"
    if notes:
        results.write_text(notes_file, "\n".join(notes) + "\n")
    elif notes_file.exists():
        notes_file.unlink()
    return written


def write_tables(lb: Leaderboard, out: Path, *, figures: bool = True, allow_code: bool = False) -> list[Path]:
    """Write every table format, the figures and ``report.html`` into the results directory
    ``out`` (see the module doc). Returns the files written. ``figures=False`` skips the
    figures (a few seconds: the overlays load the models) and writes a report without them.
    ``allow_code``: the overlays may rebuild models whose spec runs Python code."""
    from bench.report.breakdown import breakdown_cells, run_seed
    from bench.report.figures import run_figures
    from bench.report.html import RunReport, render_report
    from bench.report.leaderboard import load_results

    out = Path(out)
    rows, columns = load_results(out)  # read once, for the breakdown and the overlays
    by_class = breakdown_cells(rows, columns, confidence=lb.confidence, seed=run_seed(out))
    written = write_table_files(lb, out, by_class)
    figs, notes = run_figures(lb, out, by_class, rows, allow_code=allow_code) if figures else ([], [])
    for note in notes:
        print(f"warning: figure {note}", file=sys.stderr)
    if figures:
        written += write_figures(figs, notes, out)
    run = RunReport.from_parts(out, lb, by_class, figs, notes)
    path = out / "report.html"
    results.write_text(path, render_report([run], title=f"groundbench report: {lb.title}"))
    written.append(path)
    return written
