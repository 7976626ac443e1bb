"""Regenerate the committed reference results: ``python results/regenerate.py``.

One reference per shipped config that runs offline: the embedded default suite
(``bench/suites/harbor.toml``) and every ``configs/*.toml``. Each is run exactly as a user runs
it, ``groundbench run [CONFIG] --fresh --no-progress`` from a folder whose ``../shared/data`` is
the data (the path the shipped configs name), and its results directory replaces
``results/reference/<name>/`` (``<name>``: the config's run name). Beside the run's own
provenance (``provenance.json``: versions, device, git commit, data hashes) the script writes
``reference.json``: which config, the command, the data folder, when, and how long it took.

Options::

    --only NAME[,NAME]   only these references (run names; default: all)
    --data DIR           the folder the configs call ../shared/data (default: the one beside
                         this checkout, i.e. ../shared/data from the repository root)
    --tables-only        do not run anything: re-render every table of the committed
                         references from their committed rows (after a change to the report
                         code that moves no score)
    --list               print the references and their configs, run nothing
    --check [DIR]        run every config into a scratch folder and compare, byte for byte, its
                         score rows, skip records and tables with ``DIR/<name>/`` (default: the
                         committed references) instead of replacing anything: did a change move
                         a score? ``--ignore-columns A,B`` leaves out row columns removed on
                         purpose (compared after dropping them from the old rows)

A reference whose run fails (data missing, say) is reported and left as it was; the script then
exits 1. ``tests/test_reference_results.py`` checks that every committed table re-renders from
its committed rows, and that every shipped config has a reference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCES = REPO / "results" / "reference"
# What a run writes that the reference leaves out: the one-file report embeds every figure
# (megabytes), and the overlays are redrawn from the data by `groundbench report`.
# The results marker and the writer's lock (bench/results.py) belong to a run's own folder, not
# to a committed copy of it.
NOT_COMMITTED = ("report.html", "figures/overlays.png", "maps", ".groundbench-results", ".groundbench-lock")


def shipped_configs() -> dict[str, Path | None]:
    """Run name -> config file (None: the embedded default suite), in a stable order."""
    out: dict[str, Path | None] = {"harbor-default": None}
    for path in sorted((REPO / "configs").glob("*.toml")):
        name = tomllib.loads(path.read_text(encoding="utf-8")).get("name", path.stem)
        if name in out:
            raise SystemExit(f"{path}: run name {name!r} is taken by another shipped config")
        out[name] = path
    return out


def run_one(name: str, config: Path | None, data: Path, log, check: Path | None = None, ignore: tuple[str, ...] = ()) -> dict:
    """Run one config in a scratch folder and move its results into results/reference/<name>
    (``check``: compare them with ``check/<name>/`` instead, see :func:`compare`)."""
    with tempfile.TemporaryDirectory(prefix="groundbench-reference-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        (Path(tmp) / "shared").mkdir()
        (Path(tmp) / "shared" / "data").symlink_to(data.resolve(), target_is_directory=True)
        cmd = [sys.executable, "-m", "bench", "run", *([str(config)] if config else []), "--fresh", "--no-progress"]
        shown = "groundbench run " + (str(config.relative_to(REPO)) if config else "") + " --fresh --no-progress"
        log(f"{name}: {shown.strip()}")
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: the run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        produced = work / "results" / name
        if not (produced / "scores.jsonl").exists():
            raise RuntimeError(f"{name}: the run wrote no {produced / 'scores.jsonl'}")
        if check is not None:
            problems = compare(check / name, produced, ignore)
            for line in problems:
                log(f"{name}: {line}")
            return {"printed": proc.stdout.splitlines()[-1] if proc.stdout else "", "same": not problems}
        for rel in NOT_COMMITTED:
            target = produced / rel
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        dest = REFERENCES / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(produced, dest)
    info = {
        "name": name,
        "config": str(config.relative_to(REPO)) if config else "bench/suites/harbor.toml (the embedded default)",
        "command": shown.strip() + "  (from the repository root)",
        "data": "../shared/data (relative to the folder the run started in)" if config else "none (synthetic, generated)",
        "regenerated_by": "python results/regenerate.py",
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(seconds, 1),
        "printed": proc.stdout.splitlines()[-1] if proc.stdout else "",
    }
    (dest / "reference.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


# What --check compares: the rows byte for byte, and the tables the run printed and wrote.
COMPARED_ROWS = ("scores.jsonl", "skipped.jsonl")
COMPARED_TABLES = ("leaderboard.txt", "leaderboard.csv")


def compare(old: Path, new: Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Differences between two results directories of the same config: each row file line by
    line, byte for byte, after dropping the ``ignore`` columns from the old rows (re-encoded
    exactly as the run encodes rows), and each table file whole. Empty: identical."""
    sys.path.insert(0, str(REPO))
    from bench.results import encode_row

    problems = []
    for name in COMPARED_ROWS:
        a, b = old / name, new / name
        if not a.exists():
            problems.append(f"{name}: not in {old}")
            continue
        old_lines = a.read_bytes().decode().splitlines()
        new_lines = b.read_bytes().decode().splitlines() if b.exists() else []
        if ignore:
            old_lines = [encode_row({k: v for k, v in json.loads(line).items() if k not in ignore}) for line in old_lines]
        if len(old_lines) != len(new_lines):
            problems.append(f"{name}: {len(old_lines)} rows before, {len(new_lines)} now")
        diff = [n for n, (x, y) in enumerate(zip(old_lines, new_lines), 1) if x != y]
        if diff:
            problems.append(f"{name}: {len(diff)} rows differ, first at line {diff[0]}:\n  before {old_lines[diff[0] - 1]}\n  now    {new_lines[diff[0] - 1]}")
    for name in COMPARED_TABLES:
        a, b = old / name, new / name
        if a.exists() and (not b.exists() or a.read_bytes() != b.read_bytes()):
            problems.append(f"{name}: differs")
    return problems


def rerender_tables(folder: Path) -> None:
    """Every table file of a results directory, re-rendered from its rows alone."""
    from bench.report.breakdown import breakdown_cells, run_seed
    from bench.report.leaderboard import build, load_results
    from bench.report.write import write_table_files

    seed = run_seed(folder)
    lb = build(folder, seed=seed)
    rows, columns = load_results(folder)
    write_table_files(lb, folder, breakdown_cells(rows, columns, confidence=lb.confidence, seed=seed))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated run names (default: every shipped config)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the folder the configs call ../shared/data")
    p.add_argument("--tables-only", action="store_true", help="re-render the committed tables from the committed rows; run nothing")
    p.add_argument("--list", action="store_true", help="list the references and their configs")
    p.add_argument("--check", nargs="?", type=Path, const=REFERENCES, help="compare fresh runs with DIR/<name>/ (default: the references); replace nothing")
    p.add_argument("--ignore-columns", default="", help="with --check: row columns removed on purpose")
    args = p.parse_args(argv)
    ignore = tuple(c.strip() for c in args.ignore_columns.split(",") if c.strip())

    configs = shipped_configs()
    names = list(configs)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in configs]
        if unknown:
            p.error(f"unknown reference(s) {unknown}; shipped: {', '.join(configs)}")
    if args.list:
        for n in names:
            print(f"{n}: {configs[n].relative_to(REPO) if configs[n] else 'embedded default suite'}")
        return 0
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    failed = []
    for n in names:
        try:
            if args.tables_only:
                log(f"{n}: re-rendering the tables from the committed rows")
                rerender_tables(REFERENCES / n)
            else:
                info = run_one(n, configs[n], args.data, log, check=args.check, ignore=ignore)
                log(f"{n}: {info['printed']}")
                if args.check is not None:
                    log(f"{n}: {'identical' if info['same'] else 'DIFFERENT'} (against {args.check / n})")
                    if not info["same"]:
                        failed.append(n)
        except (RuntimeError, OSError, ValueError) as exc:
            failed.append(n)
            log(f"error: {exc}")
    if failed:
        log(f"{'different' if args.check is not None else 'not regenerated'}: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # the checkout's bench, also when it is not installed
    raise SystemExit(main())
