"""A dataset file whose checksum does not match its manifest is reported, naming the file and
both hashes, and the command fails; the data on disk is left as it is (``verify`` reads, it
never deletes a user's files). A corrupt *download* is deleted before it takes its final name
and nothing is extracted: see ``test_data_fetch.py::test_corrupted_download_fails_and_leaves_nothing``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from bench.cli import data as data_cli
from bench.data.fetch import verify
from bench.data.manifest import load_manifest

GOOD, BAD = b"the published bytes\n", b"the published bytes, edited\n"


def _manifest(tmp: Path) -> Path:
    path = tmp / "toyset.toml"
    path.write_text(
        'name = "toyset"\nlicense = "test data"\ncitation = "none (test fixture)"\n'
        "[[files]]\n"
        'url = "https://example.org/toyset/labels.txt"\n'
        'path = "labels.txt"\n'
        f'sha256 = "{hashlib.sha256(GOOD).hexdigest()}"\n'
        f"size = {len(GOOD)}\n"
        "[[files]]\n"
        'url = "https://example.org/toyset/other.txt"\n'
        'path = "other.txt"\n'
        f'sha256 = "{hashlib.sha256(b"x").hexdigest()}"\n'
    )
    return path


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_checksum_mismatch_is_reported_with_both_hashes_and_data_left_alone(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    # Same size as the published file, different bytes: only the hash can tell.
    edited = BAD[: len(GOOD)]
    (root / "labels.txt").write_bytes(edited)
    (root / "other.txt").write_bytes(b"x")

    report = verify(load_manifest(manifest), root)
    assert not report.ok
    bad = [f for f in report.findings if not f.ok]
    assert [(f.item, f.status) for f in bad] == [("labels.txt", "mismatch")]
    assert bad[0].detail == (
        f"sha256 {hashlib.sha256(edited).hexdigest()} != manifest {hashlib.sha256(GOOD).hexdigest()}"
    )
    assert [f.status for f in report.findings if f.item == "other.txt"] == ["ok"]

    assert _cli(["data", "verify", str(manifest), "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] labels.txt: mismatch - sha256" in out and "result: FAILED (1 of 2 checks)" in out
    assert (root / "labels.txt").read_bytes() == edited  # nothing deleted or rewritten

    (root / "labels.txt").write_bytes(GOOD)
    assert _cli(["data", "verify", str(manifest), "--root", str(root)]) == 0
    assert "result: OK" in capsys.readouterr().out
