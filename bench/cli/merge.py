"""``groundbench merge SHARD_DIR... -o OUT``: combine a sharded run into one results directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


DESCRIPTION = """Combine the shards of a run (--shard K/N, torchrun, Slurm array) into one results directory.

Each SHARD_DIR is a shard's results directory or a run directory holding shard-K-of-N
subdirectories. The merged rows and leaderboard are those of a single-process run of the same
config."""

EPILOG = """Examples:
  groundbench merge results/coco-sample -o results/coco-sample-merged
  groundbench merge results/a/shard-0-of-2 results/a/shard-1-of-2 -o results/a-merged --quiet"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="combine the shards of a run (--shard K/N, torchrun, Slurm array) into one results directory",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shard_dirs", nargs="+", metavar="SHARD_DIR", help="a shard's results directory, or a run directory holding shard-K-of-N subdirectories")
    p.add_argument("-o", "--out", required=True, help="the merged results directory to write")
    p.add_argument("--allow-partial", action="store_true", help="merge even if some shards are missing")
    p.add_argument("--force", action="store_true", help="replace OUT if it already holds files")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only errors and the line saying where the merged results are (no leaderboard)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bench.merge import MergeError, merge_shards
    from bench.report.breakdown import run_seed
    from bench.report.leaderboard import build
    from bench.report.render import render_text
    from bench.report.write import write_tables

    try:
        summary = merge_shards(args.shard_dirs, args.out, allow_partial=args.allow_partial, overwrite=args.force)
    except (MergeError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(summary.out_dir)
    lb = build(out, seed=run_seed(out))
    write_tables(lb, out)
    if not args.quiet:
        print(render_text(lb))
    note = f"; shards missing: {summary.missing}" if summary.missing else ""
    print(f"merged {len(summary.shards)} shards into {out}  ({summary.rows} rows{note})")
    return 0
