"""``groundbench report RESULTS_DIR... -o report.html``: one self-contained HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML file comparing methods across runs and models",
        description=(
            "Write one self-contained HTML report comparing methods across runs and models.\n\n"
            "The file embeds its figures (no network access needed to open it) and holds, for each\n"
            "results directory: leaderboards with CIs, per-class breakdowns, figures and the run's\n"
            "provenance. Every number is recomputed from the score rows."
        ),
        epilog=(
            "Examples:\n"
            "  groundbench report results/harbor-default -o report.html\n"
            "  groundbench report results/coco-sample results/osie-sample -o both.html --examples 0"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR", help="results directories (of run, score or merge)")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default: report.html)")
    p.add_argument("--title", help="page title (default: the run names)")
    p.add_argument("--confidence", type=float, default=0.95, help="bootstrap CI level (default 0.95)")
    p.add_argument(
        "--examples",
        type=int,
        default=4,
        help="images in the overlay grid (saved maps where the run has them, else recomputed); 0: no overlays",
    )
    p.add_argument(
        "--allow-code",
        action="store_true",
        help="let the overlays rebuild models whose spec is python:package.module:factory (runs that code)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bench.report.html import write_report

    for d in args.results_dirs:
        if not Path(d).is_dir():
            print(f"error: {d}: not a directory", file=sys.stderr)
            return 2
    try:
        out = write_report([Path(d) for d in args.results_dirs], Path(args.output), title=args.title, confidence=args.confidence, examples=args.examples, allow_code=args.allow_code)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"report: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
