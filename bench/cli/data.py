"""``groundbench data list | fetch NAME | verify NAME``: the shipped datasets, downloading them, and
checking a dataset directory (downloaded, or a copy of one's own) against its manifest.

Without ``--root`` a dataset lives in ``$GROUNDBENCH_DATA/NAME`` when that variable is set, else
in the platform cache folder (``~/.cache/groundbench/NAME`` on Linux).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.data.fetch import FetchError, default_root, fetch, verify
from bench.data.manifest import ManifestError, list_manifests, load_manifest

ROOT_HELP = "dataset directory (default: $GROUNDBENCH_DATA/NAME, else the cache folder)"
WHERE = (
    "Without --root a dataset lives in $GROUNDBENCH_DATA/NAME when that variable is set, else in\n"
    "the platform cache folder (~/.cache/groundbench/NAME on Linux)."
)


def _root(args: argparse.Namespace, name: str) -> Path:
    if args.root:
        return Path(args.root).expanduser()
    env = os.environ.get("GROUNDBENCH_DATA")
    return Path(env).expanduser() / name if env else default_root(name)


def _size(entries) -> str:
    sizes = [e.size for e in entries]
    if not sizes or any(s is None for s in sizes):
        return "size unknown" if sizes else "nothing to download"
    return f"{sum(sizes) / 1e6:,.0f} MB"


def cmd_list(args: argparse.Namespace) -> int:
    for name in list_manifests():
        try:
            m = load_manifest(name)
        except ManifestError as exc:
            print(f"{name}: INVALID ({exc})")
            continue
        loaders = ", ".join(m.loaders) or "-"
        files = f"{len(m.files)} file(s), {_size(m.files)}"
        print(f"{name:14s} {m.title}  [loaders: {loaders}; {files}]")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.name)
        root = _root(args, manifest.name)
        print(f"fetching {manifest.name} into {root} ({len(manifest.files)} file(s), "
              f"{_size(manifest.files)})")
        print(f"license: {manifest.license}")
        result = fetch(
            manifest, root, force_extract=args.force_extract,
            keep_archives=not args.delete_archives, progress=not args.no_progress, log=print,
        )
    except (ManifestError, FetchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.unverified:
        print(f"note: {len(result.unverified)} file(s) have no published checksum; their sha256 "
              f"is recorded in {root / '.downloads' / 'fetched.json'} and checked by verify")
    report = verify(manifest, root)
    print(report.render())
    print(f"cite: {manifest.citation}")
    return 0 if report.ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.name)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = verify(manifest, _root(args, manifest.name))
    print(report.render(verbose=args.verbose))
    return 0 if report.ok else 1


def register(subparsers) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser(
        "data", help="list, fetch and verify datasets",
        description="List the shipped dataset manifests, download a dataset, or check a dataset "
        "directory.\n\n" + WHERE,
        epilog="Examples:\n  groundbench data list\n  groundbench data fetch osie\n"
        "  groundbench data verify coco2017-val --root ~/data/coco",
        formatter_class=raw,
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    listing = actions.add_parser(
        "list", help="the shipped dataset manifests",
        description="List the shipped dataset manifests: title, loaders, files and download size.",
        epilog="Example:\n  groundbench data list", formatter_class=raw,
    )
    listing.set_defaults(func=cmd_list)

    get = actions.add_parser(
        "fetch", help="download (cached, resumable, checksummed) and extract",
        description="Download a dataset (cached, resumable, checksummed) and extract it.\n\n" + WHERE,
        epilog="Examples:\n  groundbench data fetch osie\n"
        "  groundbench data fetch mit1003 --root ~/data/mit1003 --delete-archives",
        formatter_class=raw,
    )
    get.add_argument("name", help="manifest name (see data list) or path to a manifest .toml")
    get.add_argument("--root", help=ROOT_HELP)
    get.add_argument("--force-extract", action="store_true", help="extract archives again")
    get.add_argument("--delete-archives", action="store_true",
                     help="delete each archive once extracted (saves disk; not downloaded again)")
    get.add_argument("--no-progress", action="store_true", help="no download progress bars")
    get.set_defaults(func=cmd_fetch)

    check = actions.add_parser(
        "verify", help="check files, hashes and counts",
        description="Check a dataset directory against its manifest: files, hashes and counts.\n\n" + WHERE,
        epilog="Examples:\n  groundbench data verify osie\n"
        "  groundbench data verify coco2017-val --root ~/data/coco --verbose",
        formatter_class=raw,
    )
    check.add_argument("name", help="manifest name (see data list) or path to a manifest .toml")
    check.add_argument("--root", help=ROOT_HELP)
    check.add_argument("--verbose", action="store_true", help="list every check, not only failures")
    check.set_defaults(func=cmd_verify)

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
