"""The metrics' per-sample cost beside Quantus's equivalents."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from bench.perf.pipeline import pipeline_metrics


def metrics_vs_quantus(batch: int = 64, size: tuple[int, int] = (480, 640), repeats: int = 3) -> list[dict[str, Any]] | str:
    """Per-sample cost on this machine's CPU of every metric the pipeline scores, on ``batch``
    maps of ``size``, beside Quantus's equivalent where it has one. Reuses
    ``benchmarks/metrics_bench.py`` (its batch builder, timer and Quantus adapters); a string
    says why it could not run."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "metrics_bench.py"
    if not path.exists():
        return f"skipped: {path} not found (a source checkout has it)"
    spec = importlib.util.spec_from_file_location("groundbench_metrics_bench", path)
    bench_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_mod)
    from bench.metrics import METRICS

    try:
        import quantus  # noqa: F401

        have_quantus = True
    except ImportError:
        have_quantus = False
    maps, truth = bench_mod.make_batch(batch, *size)
    out = []
    for name in [m["name"] for m in pipeline_metrics()]:
        info = METRICS.get(name)
        ours = bench_mod.best_time(lambda: info.score(maps, truth, **info.defaults), repeats) / batch
        theirs = math.nan
        if have_quantus and name in bench_mod.QUANTUS:
            runner = bench_mod.quantus_timer(name, maps, truth)
            if runner is not None:
                theirs = bench_mod.best_time(runner, repeats) / batch
        out.append({"metric": name, "groundbench_ms": ours * 1e3, "quantus_ms": theirs * 1e3, "speedup": theirs / ours})
    return out
