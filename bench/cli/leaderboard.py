"""``groundbench leaderboard RESULTS_DIR``: re-render the table from the score rows alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="render the leaderboard of a results directory from its rows",
        description=(
            "Render the leaderboard of a results directory from its score rows alone.\n\n"
            "Estimates, bootstrap confidence intervals and ranks are recomputed from scores.jsonl;\n"
            "with --write the tables, figures and report.html are written again as a run writes them."
        ),
        epilog=(
            "Examples:\n"
            "  groundbench leaderboard results/harbor-default\n"
            "  groundbench leaderboard results/harbor-default --confidence 0.99 --write"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a results directory (written by run, score or merge)")
    p.add_argument("--confidence", type=float, default=0.95, help="bootstrap CI level (default 0.95)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default: the run's config seed, as the run used)")
    p.add_argument(
        "--write",
        action="store_true",
        help="also write the tables (leaderboard.*), figures and report.html into RESULTS_DIR, as a run does",
    )
    p.add_argument(
        "--allow-code",
        action="store_true",
        help="with --write: let the overlays rebuild models whose spec is python:package.module:factory",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bench.report.breakdown import run_seed
    from bench.report.leaderboard import build
    from bench.report.render import render_text
    from bench.report.write import write_tables

    path = Path(args.results_dir)
    seed = run_seed(path) if args.seed is None else args.seed
    try:
        lb = build(path, confidence=args.confidence, seed=seed)
        if args.write:
            write_tables(lb, path, allow_code=args.allow_code)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a read-only or full disk under --write
        print(f"error: {exc.filename or path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(render_text(lb))
    return 0
