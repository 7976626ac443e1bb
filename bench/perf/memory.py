"""Memory: peak resident memory of a harbor run in a fresh process (flat in the number of samples).

``python -m bench.perf.memory rss CONFIG_JSON OUT_DIR`` is the subprocess :func:`peak_rss_mb` starts.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any


def harbor_memory_config(n: int, quick: bool, device: str = "cpu") -> dict[str, Any]:
    """The harbor suite with ``n`` test scenes on ``device`` (``quick``: one model, Grad-CAM
    only, batches of 16 so that a small run has enough batches for the allocator's high-water
    mark to settle)."""
    import tomllib

    from bench.config import default_config_path

    data = tomllib.loads(default_config_path().read_text())
    data["dataset"]["n"] = n
    data["device"] = device
    if quick:
        data["batch_size"] = 16
        data["models"] = data["models"][:1]
        data["methods"] = [m for m in data["methods"] if m["name"] == "gradcam"]
    return data


def peak_rss_mb(cfg_data: dict[str, Any], out_dir: Path, *, threads: int | None = None, timeout: float = 3600) -> float:
    """Peak resident memory (MiB, :func:`own_peak_rss_mb`) of a fresh process that runs ``cfg_data``.
    A subprocess, so that each size starts from the same baseline."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.perf.memory", "rss", json.dumps(cfg_data), str(out_dir)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"perf: memory probe failed:\n{proc.stderr[-4000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def _rss_probe(cfg_json: str, out_dir: str) -> None:
    from bench.config import parse_config
    from bench.engine import run_config

    summary = run_config(parse_config(json.loads(cfg_json), allow_code=True), out_dir=Path(out_dir), progress=False)
    print(json.dumps({"peak_rss_mb": own_peak_rss_mb(), "rows": summary.rows_written}))


def own_peak_rss_mb() -> float:
    """This process's peak resident memory in MiB. On Linux ``VmHWM`` (the high-water mark of
    this program's own memory): ``ru_maxrss`` would not do in a subprocess, since Linux carries
    the parent's peak over ``fork`` and ``exec``. Elsewhere ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024 / 1024 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "rss":
        warnings.simplefilter("ignore")
        _rss_probe(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python -m bench.perf.memory rss CONFIG_JSON OUT_DIR  (the benchmark is `groundbench perf`)")
