"""``groundbench report``: one self-contained HTML file, checked in headless Chromium (no console
errors, no request leaving the file, tables and images present) with a screenshot kept as a test
artifact (under the test's tmp dir, and copied to $GROUNDBENCH_ARTIFACTS when set)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from bench.cli import main as cli

from report_support import find_chromium, inspect_page, tiny_run

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The tiny harbor run, and a copy of it without saved maps (its overlays are recomputed)."""
    run = tiny_run(tmp_path_factory.getbasetemp())
    other = tmp_path_factory.mktemp("second") / "tiny-copy"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("maps", "figures", "report.html", "leaderboard.*"))
    return run, other


@pytest.fixture(scope="module")
def report(two_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert cli(["report", str(two_runs[0]), str(two_runs[1]), "-o", str(out), "--examples", "2"]) == 0
    return out


def _keep_artifact(path: Path) -> None:
    target = os.environ.get("GROUNDBENCH_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(target) / path.name)


def test_report_is_one_self_contained_file(report):
    page = report.read_text()
    assert "<script" not in page
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs)
    assert page.count('src="data:image/png;base64,') >= 6  # 2 runs x 3 figures, plus the comparison
    for text in ("Comparison across runs", "Run: tiny-report", "Run: tiny-copy", "Provenance", "git commit", "config sha256", "torch", "device"):
        assert text in page, text
    # The copy has no saved maps: its overlays were recomputed from its config, not skipped.
    assert "not drawn" not in page


@needs_chromium
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "report_screenshot.png"
    result = inspect_page(CHROMIUM, report, shot)
    _keep_artifact(shot)
    assert result["errors"] == []
    assert result["requests"] == []
    page = result["page"]
    assert page["scripts"] == 0 and page["external"] == []
    # per run: the main table and 2 per-class tables; plus the comparison table
    assert page["tables"] == 2 * 3 + 1
    assert page["cells"] > 0 and page["bestCells"] > 0
    images = page["images"]
    # per run: an overlay grid per model (2), bars, leakage against reliance; plus the comparison
    assert len(images) == 2 * 4 + 1
    assert all(i["complete"] and i["w"] > 300 and i["h"] > 100 and i["scheme"] == "data" for i in images)
    for text in ("harbor:contextual", "gradcam", "Comparison across runs", "Provenance", "tiny-copy"):
        assert text in page["text"], text
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] == 1400 and im.size[1] > 2000


@needs_chromium
def test_the_browser_check_catches_broken_pages(tmp_path):
    """The check above can fail: a page with a console error, a script exception, a missing
    image and a network request is reported on every count."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><title>bad</title></head><body><script>console.error("boom"); missingFn();</script>'
        '<img src="missing.png"><img src="http://192.0.2.1/x.png"></body></html>'
    )
    result = inspect_page(CHROMIUM, bad, tmp_path / "bad.png")
    joined = "\n".join(result["errors"])
    assert "console.error" in joined and "missingFn" in joined and "ERR_FILE_NOT_FOUND" in joined
    assert result["requests"] == ["http://192.0.2.1/x.png"]
    assert result["page"]["scripts"] == 1 and len(result["page"]["external"]) == 2


def test_report_cli_errors(tmp_path, capsys):
    assert cli(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")]) == 1
    assert "no scores.jsonl" in capsys.readouterr().err
