"""The report's overlays read at page width: ``report.html`` opened in headless Chromium with a
1280-pixel-wide viewport, each overlay image's displayed width measured by the browser and
multiplied by its panels' boxes (written beside the image by the report); every panel must be
at least 150 pixels wide. The screenshot is kept as a test artifact (under the test's tmp dir,
and copied to $GROUNDBENCH_ARTIFACTS when set)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from bench.cli import main as cli

from report_support import Chromium, find_chromium, tiny_run

CHROMIUM = find_chromium()
VIEWPORT = 1280
MIN_PANEL_PX = 150

PROBE = """JSON.stringify(Array.from(document.querySelectorAll('img.overlay')).map(img => {
  const r = img.getBoundingClientRect();
  return {alt: img.alt, complete: img.complete, shown: r.width, natural: img.naturalWidth,
          top: r.top + window.scrollY, panels: JSON.parse(img.dataset.panels)};
}))"""


def _measure(html_file: Path, screenshot: Path) -> list[dict]:
    browser = Chromium(CHROMIUM, width=VIEWPORT, height=900)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": html_file.resolve().as_uri()}, session=session)
        browser.wait_event("Page.loadEventFired", timeout=120)
        found = json.loads(browser.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session)["result"]["value"])
        # The screenshot shows the first overlay figure as the reader sees it.
        top = found[0]["top"] if found else 0
        clip = {"x": 0, "y": max(0.0, top - 40), "width": VIEWPORT, "height": 2400, "scale": 1}
        shot = browser.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}, session=session, timeout=120)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    return found


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_every_overlay_panel_is_at_least_150_px_wide_at_1280(tmp_path_factory, tmp_path):
    run = tiny_run(tmp_path_factory.getbasetemp())
    report = tmp_path / "report.html"
    assert cli(["report", str(run), "-o", str(report), "--examples", "4"]) == 0
    shot = tmp_path / "report_overlays_1280.png"
    found = _measure(report, shot)
    target = os.environ.get("GROUNDBENCH_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(target) / shot.name)
    # The tiny run has two models: one overlay figure each, 4 scenes x (1 + 3 methods) panels.
    assert len(found) == 2
    for img in found:
        assert img["complete"] and img["natural"] > 0
        assert img["shown"] <= VIEWPORT
        assert len(img["panels"]) % (1 + 3) == 0 and len(img["panels"]) >= 2 * (1 + 3)
        widths = [p[2] * img["shown"] for p in img["panels"]]
        assert min(widths) >= MIN_PANEL_PX, f"{img['alt']}: narrowest panel {min(widths):.0f} px"
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] == VIEWPORT


def test_the_panel_measure_fails_for_the_old_strip_layout():
    """The measure can fail: the former layout (one row of 1 + 32 panels per scene, as the
    issue found it) gives panels far under 150 px at this page width."""
    from bench.report import figures

    fig = figures.new_figure(2.1 * 33, 2.1 * 1.08 + 0.9)
    axes = fig.subplots(1, 33, squeeze=False)
    for ax in axes[0]:
        ax.imshow([[0.0, 1.0]])
    png = figures.png_bytes(fig, dpi=110)
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(png)) as im:
        natural = im.size[0]
    shown = min(natural, VIEWPORT - 2 * 16 - 2)
    assert min(b[2] for b in figures.panel_boxes(fig)) * shown < MIN_PANEL_PX
