"""Command line: ``groundbench`` / ``python -m bench``.

Each subcommand lives in its own module under ``bench/cli/`` and exposes
``register(subparsers)``, which adds its parser (a one-line description, examples in the
epilog) and sets ``func(args) -> int`` as the default. ``bench.cli.output`` is not a command:
it keeps a command's output readable (other packages' warnings once each, ``--quiet``, the
adapters' library progress bars), for the duration of the command only.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from bench import __version__
from bench.cli.output import command_output

COMMAND_MODULES = ["run", "leaderboard", "listing", "data", "report", "score", "merge", "perf"]

EPILOG = """Examples:
  groundbench run                      the default harbor suite, results in results/harbor-default
  groundbench run configs/coco_sample.toml --quiet
  groundbench leaderboard results/harbor-default
  groundbench run --help               each command's options and examples"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="groundbench",
        description="Score where vision models look against ground truth.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"groundbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"bench.cli.{name}").register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM arrived (``kill``, a scheduler's time limit): unwinds like Ctrl-C, so locks are
    released and the user is told what was kept."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    from bench import host_allocator

    host_allocator.configure()  # before the first large tensor: freed batch buffers are reused
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    quiet = bool(getattr(args, "quiet", False))
    progress = not getattr(args, "no_progress", False)
    try:
        with command_output(quiet=quiet, progress=progress):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; rows written so far are kept", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM); rows written so far are kept", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
