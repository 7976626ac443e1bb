"""Writes a leaderboard's rendered tables into a results directory."""

from __future__ import annotations

from pathlib import Path

from bench import results
from bench.report.leaderboard import Leaderboard, render_text


def write_tables(lb: Leaderboard, out: Path) -> list[Path]:
    out = Path(out)
    written = []
    path = out / "leaderboard.txt"
    results.write_text(path, render_text(lb))
    written.append(path)
    path = out / "leaderboard_cells.csv"
    results.write_text(path, lb.cells.to_csv(index=False))
    written.append(path)
    return written
