"""The README's CPU table from one or more ``groundbench perf --json`` files: per (model,
method, batch) the median over the runs of limit and pipeline images/s, the ratio (median, and
its range when there are several runs) and each stage's share of the pipeline's time, then the
settings each run states (allocator conditions among them).

    groundbench perf --quick --json perf-1.json   # three times, on a quiet machine
    python benchmarks/perf_table.py perf-1.json perf-2.json perf-3.json

Runs on a shared or loaded machine are not comparable: the table says which files it read and
their load average if the run recorded it; it never mixes devices (an error names the file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# README columns: the stages a reader asks about, the rest summed into "other".
COLUMNS = (("attribute %", ("attribute",)), ("metrics %", ("metrics",)), ("load+prep %", ("load", "prepare")))


def load_runs(paths: list[Path]) -> list[dict]:
    runs = []
    for path in paths:
        try:
            run = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SystemExit(f"{path}: not a readable `groundbench perf --json` file ({err})")
        if not isinstance(run, dict) or not isinstance(run.get("rows"), list) or "device" not in run:
            raise SystemExit(f"{path}: no 'rows' and 'device': not written by `groundbench perf --json`")
        runs.append(run)
    devices = {r["device"] for r in runs}
    if len(devices) > 1:
        raise SystemExit("the files come from different devices: " + "; ".join(
            f"{p}: {r['device']}" for p, r in zip(paths, runs)))
    return runs


def table(runs: list[dict]) -> str:
    keyed: dict[tuple, list[dict]] = {}
    for run in runs:
        for row in run["rows"]:
            keyed.setdefault((row["model"], row["method"], int(row["batch_size"])), []).append(row)
    several = len(runs) > 1
    head = ["model", "method", "batch", "limit img/s", "pipeline img/s", "ratio"]
    head += ["ratio range"] if several else []
    head += [name for name, _ in COLUMNS] + ["other %"]
    lines = ["| " + " | ".join(head) + " |", "|:--|:--|" + "--:|" * (len(head) - 2)]
    for (model, method, batch), rows in keyed.items():
        med = lambda f: statistics.median(f(r) for r in rows)  # noqa: E731
        ratios = [r["ratio"] for r in rows]
        shares = [med(lambda r, s=stages: sum(r["stages"].get(x, 0.0) for x in s)) * 100 for _, stages in COLUMNS]
        other = max(0.0, 100.0 - sum(shares))
        cells = [model, method, str(batch), f"{med(lambda r: r['limit']):.2f}", f"{med(lambda r: r['pipeline']):.2f}",
                 f"{statistics.median(ratios):.2f}"]
        cells += [f"{min(ratios):.2f}-{max(ratios):.2f} ({len(rows)} runs)"] if several else []
        cells += [f"{s:.1f}" for s in shares] + [f"{other:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="`groundbench perf --json` outputs")
    args = parser.parse_args(argv)
    runs = load_runs(args.files)
    print(f"{runs[0]['device']}; torch {runs[0].get('environment', {}).get('torch', '?')}; "
          f"{len(runs)} run(s): {', '.join(str(p) for p in args.files)}")
    for path, run in zip(args.files, runs):
        s = run.get("settings", {})
        print(f"- {path}: allocator: {s.get('allocator', 'not stated (a run before the allocator setting)')}; "
              f"load average: {s.get('load_average', 'not recorded')}; "
              f"workers={s.get('workers')}, steady batches={s.get('steady_batches')}, rise masks={s.get('rise_masks')}")
    print()
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
