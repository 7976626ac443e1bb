"""``groundbench leaderboard RESULTS_DIR``: re-render the table from the score rows alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="render the leaderboard of a results directory from its rows")
    p.add_argument("results_dir")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (the run uses its config seed)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bench.report.leaderboard import build
    from bench.report.render import render_text

    try:
        lb = build(Path(args.results_dir), confidence=args.confidence, seed=args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render_text(lb))
    return 0
