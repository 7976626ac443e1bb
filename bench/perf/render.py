"""The benchmark's report as text (the terminal) and as JSON data."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from bench.perf.timing import STAGES

if TYPE_CHECKING:
    from bench.perf.benchmark import PerfReport, Row

SHORT = {"load": "load", "prepare": "prep", "resolve": "resolve", "attribute": "attr", "upsample": "upsmpl",
         "metrics": "metrics", "to_host": "host", "rows": "rows", "write": "write"}


def format_row(r: Row) -> str:
    shares = " ".join(f"{r.stages.get(s, 0.0) * 100:6.1f}" for s in STAGES)
    return (f"{r.model:13s} {r.method:8s} {r.batch_size:5d} {r.targets_per_image:5.2f} {r.limit:8.2f} {r.method_only:8.2f} "
            f"{r.pipeline:8.2f} {r.ratio:6.2f}  {shares}")


def render(report: PerfReport) -> str:
    lines = [f"groundbench perf — {report.device}; torch {report.environment['torch']}",
             "settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items()),
             "",
             "images/s (steady state): limit = the method's model passes alone; method = the method call alone (both for",
             "the same (image, target) pairs as the pipeline: tgt/img of them per image); pipeline = JPEG files to score",
             "rows through the engine; ratio = pipeline / limit; stage shares in % of pipeline time",
             f"{'model':13s} {'method':8s} {'batch':>5s} {'tgt/i':>5s} {'limit':>8s} {'method':>8s} {'pipeline':>8s} {'ratio':>6s}  "
             + " ".join(f"{SHORT[s]:>6s}" for s in STAGES)]
    lines += [format_row(r) for r in report.rows]
    lines += [f"note: {n}" for n in report.notes]
    if report.syncs:
        lines.append("\nhost synchronisations in the loop besides the one score copy per batch:")
        for key, sites in report.syncs.items():
            lines.append(f"  {key}: " + (sites if isinstance(sites, str) else (", ".join(sorted(set(sites))) or "none")))
    if report.memory:
        m = report.memory
        (a, b), (ra, rb) = m["samples"], m["peak_rss_mb"]
        lines.append(f"\npeak resident memory, {m['suite']}: {a} samples {ra:.0f} MiB, {b} samples {rb:.0f} MiB ({m['growth'] * 100:+.1f}%)")
    if isinstance(report.metrics, str) and report.metrics:
        lines.append(f"\nmetrics vs Quantus: {report.metrics}")
    elif report.metrics:
        lines.append(f"\nmetrics, ms per sample on the CPU ({report.settings.get('metrics_batch', 64)} maps at 640x480; Quantus where it has the metric)")
        lines.append(f"{'metric':22s} {'groundbench':>12s} {'quantus':>10s} {'speedup':>8s}")
        for m in report.metrics:
            q = f"{m['quantus_ms']:10.3f}" if math.isfinite(m["quantus_ms"]) else f"{'-':>10s}"
            x = f"{m['speedup']:7.1f}x" if math.isfinite(m["speedup"]) else f"{'-':>8s}"
            lines.append(f"{m['metric']:22s} {m['groundbench_ms']:12.3f} {q} {x}")
        total = sum(m["groundbench_ms"] for m in report.metrics)
        lines.append(f"{'all of them':22s} {total:12.3f}")
    return "\n".join(lines)


def to_json(report: PerfReport) -> dict[str, Any]:
    return asdict(report)
