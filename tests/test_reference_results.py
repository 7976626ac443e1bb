"""The committed reference results (``results/reference/``): every table re-renders, byte for
byte, from its committed rows alone, and every shipped config has a reference with its
provenance. ``python results/regenerate.py`` makes them (see results/README.md)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from bench import results
from bench.report import render
from bench.report.breakdown import breakdown_cells, run_seed
from bench.report.leaderboard import build, load_results

REPO = Path(__file__).resolve().parents[1]
REFERENCES = REPO / "results" / "reference"
TABLES = {
    "leaderboard.txt": render.render_text,
    "leaderboard.md": render.render_markdown,
    "leaderboard.csv": render.render_csv,
    "leaderboard.tex": render.render_latex,
    "leaderboard.html": render.render_html,
}


def _references() -> list[Path]:
    return sorted(p for p in REFERENCES.iterdir() if p.is_dir())


def test_every_shipped_config_has_a_reference_with_its_provenance():
    names = {"harbor-default"} | {
        tomllib.loads(p.read_text(encoding="utf-8")).get("name", p.stem) for p in (REPO / "configs").glob("*.toml")
    }
    have = {p.name for p in _references()}
    missing = sorted(names - have)
    assert not missing, f"no reference for {missing}: run `python results/regenerate.py --only {','.join(missing)}`"
    for folder in _references():
        for name in (results.SCORES, results.PROVENANCE, results.COLUMNS, results.CONFIG_JSON, "reference.json", *TABLES):
            assert (folder / name).is_file(), f"{folder.name}: {name} missing"
        prov = json.loads((folder / results.PROVENANCE).read_text())
        assert prov["identity"]["git_commit"] and prov["identity"]["packages"]["torch"]
        config = json.loads((folder / results.CONFIG_JSON).read_text())
        assert config["name"] == folder.name  # the folder is the run's own results directory


@pytest.mark.parametrize("folder", _references(), ids=lambda p: p.name)
def test_committed_tables_rerender_from_the_committed_rows(folder):
    seed = run_seed(folder)
    lb = build(folder, seed=seed)
    rows, columns = load_results(folder)
    by_class = breakdown_cells(rows, columns, confidence=lb.confidence, seed=seed)
    for name, render_table in TABLES.items():
        committed = (folder / name).read_text(encoding="utf-8")
        assert render_table(lb, by_class) == committed, (
            f"{folder.name}/{name} is not what its rows render to; if the report code changed on "
            "purpose, `python results/regenerate.py --tables-only` writes the tables again"
        )
