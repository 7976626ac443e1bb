"""Test support for the report tests: one small harbor run shared by the test session, and a
headless-Chromium driver speaking the DevTools protocol over a pipe (no websocket library)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

TINY = {
    "name": "tiny-report",
    "seed": 0,
    "device": "cpu",
    "batch_size": 16,
    "save_maps": True,
    "dataset": {"name": "harbor", "split": "test", "n": 30, "seed": 1},
    "models": [{"spec": "harbor:contextual"}, {"spec": "harbor:object_only"}],
    "methods": [{"name": "gradcam"}, {"name": "center"}, {"name": "random"}],
    "metrics": [
        {"name": "pointing_game", "tolerance": 6.0},
        {"name": "energy_pointing_game"},
        {"name": "leakage"},
    ],
}


def tiny_run(base: Path) -> Path:
    """A finished tiny harbor run with saved maps under ``base`` (made once, then reused)."""
    from bench.config import parse_config
    from bench.engine import run_config
    from bench.report.leaderboard import build
    from bench.report.write import write_tables

    out = Path(base) / "tiny-report"
    if not (out / "report.html").exists():
        if out.exists():
            shutil.rmtree(out)
        cfg = parse_config(TINY)
        run_config(cfg, out_dir=out, progress=False)
        write_tables(build(out, seed=cfg.seed, n_resamples=400), out)
    return out


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """Headless Chromium driven through ``--remote-debugging-pipe``: JSON messages separated
    by NUL bytes, Chromium reading fd 3 and writing fd 4."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000):
        self.profile = tempfile.mkdtemp(prefix="gb-chromium-")
        self._log = os.path.join(tempfile.mkdtemp(prefix="gb-chromium-log-"), "stderr.txt")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]

        def wire() -> None:
            # In the child: the pipe ends on fds 3 and 4 (inheritable). Moved above 10 first, so
            # that an end that already sits on 3 or 4 is not overwritten by the other.
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self._log, "wb"),  # a file, never a pipe nobody drains
            preexec_fn=wire,
            close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, name: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == name:
                return ev
        while True:
            ev = self._read(deadline)
            self.events.append(ev)
            if ev.get("method") == name:
                return ev

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe: " + self.stderr_tail())
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def stderr_tail(self) -> str:
        try:
            return Path(self._log).read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
        shutil.rmtree(os.path.dirname(self._log), ignore_errors=True)


PAGE_PROBE = """JSON.stringify({
  title: document.title,
  tables: document.querySelectorAll('table.lb').length,
  cells: document.querySelectorAll('table.lb td.num').length,
  bestCells: document.querySelectorAll('table.lb td.best').length,
  images: Array.from(document.images).map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, scheme: i.src.split(':')[0]})),
  external: Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href')).filter(u => !(u.startsWith('data:') || u.startsWith('#'))),
  scripts: document.scripts.length,
  text: document.body.innerText.slice(0, 20000)
})"""


def inspect_page(binary: str, html_file: Path, screenshot: Path) -> dict[str, Any]:
    """Load ``html_file`` in headless Chromium; return console/log errors, exceptions, network
    requests that left the file, what the page holds, and save a full-page PNG screenshot."""
    browser = Chromium(binary)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": Path(html_file).resolve().as_uri()}, session=session)
        browser.wait_event("Page.loadEventFired", timeout=120)
        probe = json.loads(browser.send("Runtime.evaluate", {"expression": PAGE_PROBE, "returnByValue": True}, session=session)["result"]["value"])
        metrics = browser.send("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": 1400, "height": min(float(size["height"]), 16000.0), "scale": 1}
        shot = browser.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}, session=session, timeout=120)
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        events = list(browser.events)
    finally:
        browser.close()
    errors = []
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            errors.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            errors.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            errors.append(f"log: {params['entry'].get('text')} ({params['entry'].get('url')})")
        elif method == "Network.loadingFailed":
            errors.append(f"network: {params.get('errorText')}")
    requests = [
        ev["params"]["request"]["url"]
        for ev in events
        if ev.get("method") == "Network.requestWillBeSent" and not ev["params"]["request"]["url"].startswith(("data:", "file:"))
    ]
    return {"errors": errors, "requests": requests, "page": probe, "screenshot": Path(screenshot)}
