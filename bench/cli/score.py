"""``groundbench score MAPS_DIR --dataset NAME ...``: score saved maps (from ``run --save-maps``
or from another tool) through the same metric code as a run, into a results directory."""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

DESCRIPTION = """Score saved attribution maps (from run --save-maps or another tool) into a results directory.

The maps go through the same metric code as a run; the results directory is a run's (rows,
leaderboard, figures, report.html)."""

LAYOUT = """maps layout: MAPS_DIR/<model>/<method>/ holds, in any mix:
  one map per file, <image_id>__<target>.EXT, of shape H x W or 1 x H x W (or H x W x 1);
  batch files NAME.EXT of N maps (N x H x W or N x 1 x H x W) with an index: NAME.index.csv
  beside it (header image_id,target; one line per row), NAME.index.json (a list of
  [image_id, target]), or inside it (.npz arrays maps, image_ids, targets; a .pt dict with them).
EXT: .npy, .npz, .pt/.pth (torch.load with weights_only=True), 8- or 16-bit grayscale .png
(values / 255 or / 65535). Maps at another resolution than the image are resized bilinearly.
Names use bench.maps_io.safe_name: characters outside A-Za-z0-9._=,[]+- become _<hex>_ (e.g.
"harbor:contextual" -> "harbor_3a_contextual"). A file that gives no map (another format, a
batch without index, a map of no (image, target) of the dataset) is recorded in skipped.jsonl
and counted. A run directory made with --save-maps can be given as MAPS_DIR; with no
--dataset/--config its own config.toml is used.

Examples:
  groundbench score results/harbor-default --name rescored
  groundbench score results/harbor-default --name rescored --quiet
  groundbench score my_maps --dataset harbor --dataset-param split=test --dataset-param n=440 \\
      --dataset-param seed=1 --dataset-param size=96 --metric pointing_game:tolerance=6.0 --metric leakage"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score saved attribution maps (from --save-maps or another tool) into a results directory",
        description=DESCRIPTION,
        epilog=LAYOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("maps_dir", metavar="MAPS_DIR", help="folder of <model>/<method>/ map files (see below), or a run directory with maps/")
    p.add_argument("--config", help="take [dataset] and [[metrics]] from this run config (TOML)")
    p.add_argument("--dataset", help="registered dataset name (see its manifest); overrides --config's")
    p.add_argument("--dataset-param", action="append", default=[], metavar="KEY=VALUE", help="dataset parameter (repeat); VALUE is read as TOML (6, 0.5, true, \"x\") else as a string")
    p.add_argument("--metric", action="append", default=[], metavar="NAME[:KEY=VALUE,...]", help="metric column (repeat), e.g. pointing_game:tolerance=6.0; label=... renames the column")
    p.add_argument("--out", default="results", help="parent directory of the results (default: results)")
    p.add_argument("--name", help="results directory name (default: scored-<MAPS_DIR name>)")
    p.add_argument("--device", default="cpu", help="where metrics run: cpu, cuda, auto (default cpu)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="samples per batch (default: the run config's batch size, else 32)",
    )
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers that load the dataset (default 0)")
    p.add_argument("--seed", type=int, help="bootstrap seed of the leaderboard (default: the config's, else 0)")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only errors, groundbench's warnings, where the results are and how many map "
        "files were not used (no leaderboard, no notes, no warnings of other packages)",
    )
    p.set_defaults(func=main)


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_pairs(text: str, what: str) -> dict[str, Any]:
    out = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what}: expected KEY=VALUE, got {part!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def parse_metric(text: str):
    from bench.config import Component

    name, _, rest = text.partition(":")
    params = parse_pairs(rest, f"--metric {text}")
    label = params.pop("label", None)
    return Component(name.strip(), params, str(label) if label is not None else None)


def _from_config(path: Path):
    """Dataset, metrics, seed, batch size and the (models, method labels) order of a run config."""
    from bench.config import load_config
    from bench.methods import create_method

    # Only [dataset] and [[metrics]] are used: no model is built, so no code can run.
    cfg = load_config(path, allow_code=True)
    methods = [m.label or create_method(m.name, **m.params).label for m in cfg.methods]
    return cfg.dataset, list(cfg.metrics), cfg.seed, cfg.batch_size, ([m.name for m in cfg.models], methods)


def main(args: argparse.Namespace) -> int:
    from bench import results
    from bench.config import Component, ConfigError
    from bench.engine import RunError
    from bench.report.leaderboard import build
    from bench.report.render import render_text
    from bench.report.write import write_tables
    from bench import results
    from bench.results import ResultsDirError
    from bench.saved_maps import MAPS_SUBDIR, ScoreError, score_maps

    maps_dir = Path(args.maps_dir)
    config = Path(args.config) if args.config else None
    if config is None and not args.dataset:
        # A run directory (or its maps/ folder) carries its own config.
        for candidate in (maps_dir / results.CONFIG, maps_dir.parent / results.CONFIG):
            if candidate.exists() and (candidate.parent / MAPS_SUBDIR).is_dir():
                config = candidate
                if not args.quiet:
                    print(f"using {config} for the dataset and metrics", file=sys.stderr)
                break
    try:
        dataset, metrics, seed, batch_size, order = _from_config(config) if config else (None, [], 0, 32, None)
        if args.dataset:
            dataset = Component(args.dataset, {})
        if dataset is None:
            raise ValueError("say which dataset the maps belong to: --dataset NAME or --config RUN.toml")
        params = {}
        for item in args.dataset_param:
            params.update(parse_pairs(item, f"--dataset-param {item}"))
        dataset = Component(dataset.name, {**dataset.params, **params})
        if args.metric:
            metrics = [parse_metric(m) for m in args.metric]
        if args.seed is not None:
            seed = args.seed
        base = maps_dir.name if maps_dir.name != MAPS_SUBDIR else maps_dir.parent.name
        name = args.name or re.sub(r"[^A-Za-z0-9._-]", "_", f"scored-{base}")[: results.NAME_MAX]
        problem = results.check_run_name(name)
        if problem is not None:
            raise ValueError(f"--name {problem}")
        out = Path(args.out) / name
        summary = score_maps(
            maps_dir,
            dataset,
            metrics,
            out,
            name=name,
            seed=seed,
            device=args.device,
            batch_size=args.batch_size or batch_size,
            num_workers=args.num_workers,
            order=order,
        )
        lb = build(out, seed=seed)
        write_tables(lb, out)
    except (ConfigError, ScoreError, RunError, ResultsDirError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing dataset file, a full or read-only disk
        where = f"{exc.filename}: " if exc.filename and str(exc.filename) not in str(exc) else ""
        print(f"error: {where}{exc.strerror if where else exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(render_text(lb))
    print(f"results: {out}  ({summary.rows_written} rows from {len(summary.map_sets)} map sets, {summary.seconds:.1f} s)")
    if summary.unused:
        print(f"{summary.unused} map files not used (no (image, target) of the dataset, or not maps): recorded in {out / 'skipped.jsonl'}")
    return 0
