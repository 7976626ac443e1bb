"""``groundbench run [CONFIG]``: run a config (default: the embedded harbor suite)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.config import default_config_path


def _shard_arg(text: str) -> tuple[int, int]:
    """``--shard K/N`` through :func:`bench.sharding.parse_shard`, the one shard parser."""
    from bench.sharding import ShardError, parse_shard

    try:
        return parse_shard(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


DESCRIPTION = """Run a benchmark config (default: the embedded harbor suite) and write its results.

Every model, method and metric of the config is run on the dataset; score rows are written as
they are computed, then the leaderboard, figures and report.html. The same command resumes an
interrupted run."""

EPILOG = """Examples:
  groundbench run
  groundbench run configs/coco_sample.toml --root ~/data/coco --device cuda
  groundbench run my.toml --quiet --name trial-2       prints only errors and where the results are
  groundbench run my.toml --shard 0/4                  one of 4 shards; then groundbench merge"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a benchmark config (default: the embedded harbor suite)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="TOML run config; omitted: the embedded harbor suite")
    p.add_argument("--out", help="parent directory for results (default: the config's output_dir, 'results')")
    p.add_argument("--name", help="run name (default: the config's name)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides the config)")
    p.add_argument("--batch-size", type=int, help="override the config's batch size")
    p.add_argument("--num-workers", type=int, help="DataLoader workers for decoding")
    p.add_argument(
        "--root",
        help="dataset root in the dataset's official layout (replaces [dataset] root; the "
        "config's own layout keys, e.g. a sample's annotations file name, are then not used)",
    )
    p.add_argument(
        "--shard",
        type=_shard_arg,
        help="run only samples i with i %% N == K (K/N); default: RANK/WORLD_SIZE (torchrun) or "
        "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (Slurm array) when set; combine shards with "
        "groundbench merge",
    )
    p.add_argument("--save-maps", action="store_true", help="also save every map as .npy at original resolution")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="delete earlier results of this run name first (only in a folder groundbench created)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (scoring, model training, and the bars of the adapters' libraries)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only errors, groundbench's warnings and the line saying where the results are "
        "(no progress bars, no leaderboard, no notes, no warnings of other packages)",
    )
    p.add_argument(
        "--allow-code",
        action="store_true",
        help="allow python:package.module:factory model specs, which import and run that code "
        "(without it a config that names one is refused)",
    )
    p.set_defaults(func=main)


def overrides_from(args: argparse.Namespace) -> dict:
    over: dict = {}
    for key in ("name", "device", "batch_size", "num_workers"):
        value = getattr(args, key, None)
        if value is not None:
            over[key] = value
    if getattr(args, "out", None):
        over["output_dir"] = args.out
    if getattr(args, "save_maps", False):
        over["save_maps"] = True
    return over


def main(args: argparse.Namespace) -> int:
    from bench import results
    from bench.config import ConfigError, load_config
    from bench.engine import RunError, run_config
    from bench.report.leaderboard import build
    from bench.report.render import render_text
    from bench.report.write import write_tables
    from bench.sharding import ShardError, resolve_shard, shard_dir_name

    path = Path(args.config) if args.config else default_config_path()
    try:
        cfg = load_config(path, overrides_from(args), allow_code=args.allow_code, root=getattr(args, "root", None))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in [] if args.quiet else cfg.notes:
        print(f"note: {note}", file=sys.stderr)
    out = Path(cfg.output_dir) / cfg.name
    try:
        shard = resolve_shard(args.shard)
    except ShardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if shard:
        out = out / shard_dir_name(shard)
    lock = results.ResultsLock(out)
    try:
        # The lock before anything is written or deleted; --fresh only in a marked folder.
        if args.fresh and not results.is_results_dir(out):
            results.empty_dir(out)  # refuses a folder holding files without the marker
        results.check_claimable(out)
        lock.acquire()
        if args.fresh:
            results.empty_dir(out)
        summary = run_config(cfg, out_dir=out, resume=True, shard=shard, progress=not (args.no_progress or args.quiet), lock=lock)
        lb = build(out, seed=cfg.seed)
        text = render_text(lb)
        written = write_tables(lb, out, allow_code=args.allow_code)
    except (RunError, results.ResultsDirError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        if lock.held:
            print(_kept(out, resumable=getattr(exc, "resumable", not isinstance(exc, ValueError))), file=sys.stderr)
        return 1
    finally:
        lock.release()
    if not args.quiet:
        print(text)
        sanity_text = [p for p in written if p.name == "sanity.txt"]  # a run with [sanity]
        if sanity_text:
            print()
            print(sanity_text[0].read_text(), end="")
    print(f"results: {out}  ({summary.rows_written} rows this run, {summary.seconds:.1f} s)")
    if shard and not args.quiet:
        print(f"shard {shard[0]}/{shard[1]}: when every shard is done, `groundbench merge {out.parent} -o OUT`")
    if summary.failed_methods:
        for msg in summary.failed_methods:
            print(f"error: {msg}", file=sys.stderr)
        print(f"the rows of the other methods are kept in {out}", file=sys.stderr)
        return 1
    return 0


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.filename:
        # A read-only or full disk, a name too long for the filesystem: say which file and why.
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def _kept(out: Path, resumable: bool) -> str:
    from bench import results

    scores = out / results.SCORES
    if not (scores.exists() and scores.stat().st_size):
        return "no score rows were written"
    if resumable:
        return f"rows written so far are kept in {out}; the same command resumes"
    return f"rows written so far are kept in {out}"
