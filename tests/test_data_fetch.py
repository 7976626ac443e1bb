"""Fetching and verifying against a local HTTP server on 127.0.0.1 (no network needed).

The server serves in-memory bytes, honours HTTP Range (so resuming is exercised for real),
counts requests, and stops itself after a bounded time even if a test hangs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.data.fetch import DOWNLOADS, FetchError, fetch, safe_extract, verify
from bench.data.manifest import load_manifest


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_HEAD(self):
        self._respond(head=True)

    def do_GET(self):
        self._respond(head=False)

    def _respond(self, head: bool):
        state = self.server.state
        state["requests"].append((self.path, self.headers.get("Range")))
        body = state["files"].get(self.path)
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        if rng and state.get("ranges", True):
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            part = body[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            part = body
            self.send_response(200)
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if not head:
            self.wfile.write(part)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = {"files": {}, "requests": [], "ranges": True}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    watchdog = threading.Timer(120.0, httpd.shutdown)  # a hung test cannot keep it alive
    watchdog.daemon = True
    watchdog.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield base, httpd.state
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def tar_bytes(members: dict[str, bytes], compress: str = "gz", extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compress}") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tf.addfile(info)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(tmp: Path, name: str, body: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nlicense = "test data"\ncitation = "none (test fixture)"\n' + body
    )
    return path


GOOD = {"data/a.txt": b"alpha\n", "data/sub/b.txt": b"beta\n" * 100, "c.txt": b"gamma"}


def archive_manifest(tmp: Path, base: str, blob: bytes, name="toy", digest=None, extra="") -> Path:
    return write_manifest(
        tmp, name,
        f'''
[[files]]
url = "{base}/toy.tar.gz"
path = "toy.tar.gz"
sha256 = "{digest or sha256(blob)}"
size = {len(blob)}
extract_to = "."
{extra}
[[checks]]
glob = "data/**/*.txt"
count = 2
[[checks]]
glob = "c.txt"
count = 1
''',
    )


def leftovers(root: Path) -> list[str]:
    """Anything a failed fetch must not leave: staging folders, partial or temp downloads."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.name.startswith(".extract-") or p.suffix == ".part" or p.name.startswith("tmp")
    )


def test_good_download_extracts_and_verifies(server, tmp_path):
    base, state = server
    blob = tar_bytes(GOOD)
    state["files"]["/toy.tar.gz"] = blob
    manifest = load_manifest(archive_manifest(tmp_path, base, blob))
    root = tmp_path / "root"
    result = fetch(manifest, root)
    for name, data in GOOD.items():
        assert (root / name).read_bytes() == data
    assert (root / DOWNLOADS / "toy.tar.gz").read_bytes() == blob
    assert result.extracted == {"toy.tar.gz": 3}
    assert leftovers(root) == []
    report = verify(manifest, root)
    assert report.ok, report.render()
    assert "result: OK" in report.render()


def test_second_fetch_uses_the_cache(server, tmp_path):
    base, state = server
    blob = tar_bytes(GOOD)
    state["files"]["/toy.tar.gz"] = blob
    manifest = load_manifest(archive_manifest(tmp_path, base, blob))
    root = tmp_path / "root"
    fetch(manifest, root)
    gets = len(state["requests"])
    (root / "c.txt").write_bytes(b"edited by the user")
    messages = []
    result = fetch(manifest, root, log=messages.append)
    assert len(state["requests"]) == gets  # nothing downloaded again
    assert result.extracted == {}  # and nothing extracted again
    assert any("already extracted" in m for m in messages)
    assert (root / "c.txt").read_bytes() == b"edited by the user"


def test_deleted_archives_are_not_downloaded_again(server, tmp_path):
    base, state = server
    blob = tar_bytes(GOOD)
    state["files"]["/toy.tar.gz"] = blob
    manifest = load_manifest(archive_manifest(tmp_path, base, blob))
    root = tmp_path / "root"
    fetch(manifest, root, keep_archives=False)
    assert not (root / DOWNLOADS / "toy.tar.gz").exists()
    gets = len(state["requests"])
    messages = []
    fetch(manifest, root, log=messages.append)
    assert len(state["requests"]) == gets
    assert messages == ["toy.tar.gz: already extracted (archive not kept)"]
    report = verify(manifest, root)
    assert report.ok and report.findings[0].status == "not kept"


def test_corrupted_download_fails_and_leaves_nothing(server, tmp_path):
    base, state = server
    blob = tar_bytes(GOOD)
    corrupted = bytearray(blob)
    corrupted[len(corrupted) // 2] ^= 0xFF
    state["files"]["/toy.tar.gz"] = bytes(corrupted)
    manifest = load_manifest(archive_manifest(tmp_path, base, blob, extra=""))
    root = tmp_path / "root"
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch(manifest, root)
    assert not (root / DOWNLOADS / "toy.tar.gz").exists()
    assert not (root / "data").exists() and not (root / "c.txt").exists()
    assert leftovers(root) == []
    report = verify(manifest, root)
    assert not report.ok
    assert "FAILED" in report.render()


@pytest.mark.parametrize(
    "kind",
    ["dotdot", "absolute", "symlink", "hardlink", "zip-dotdot", "zip-symlink", "zip-absolute"],
)
def test_unsafe_archive_is_refused_before_anything_is_written(server, tmp_path, kind):
    base, state = server
    good = {"data/a.txt": b"written first in archive order"}
    if kind == "dotdot":
        blob, fname = tar_bytes({**good, "data/../../escaped.txt": b"evil"}), "toy.tar.gz"
    elif kind == "absolute":
        blob, fname = tar_bytes({**good, str(tmp_path / "escaped.txt"): b"evil"}), "toy.tar.gz"
    elif kind in ("symlink", "hardlink"):
        link = tarfile.TarInfo("data/link")
        link.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        link.linkname = str(tmp_path / "escaped.txt")
        blob, fname = tar_bytes(good, extra=[link]), "toy.tar.gz"
    elif kind == "zip-dotdot":
        blob, fname = zip_bytes({**good, "../escaped.txt": b"evil"}), "toy.zip"
    elif kind == "zip-absolute":
        blob, fname = zip_bytes({**good, "/escaped.txt": b"evil"}), "toy.zip"
    else:
        blob, fname = zip_bytes(good, symlinks={"data/link": "../../escaped.txt"}), "toy.zip"
    state["files"][f"/{fname}"] = blob
    manifest = load_manifest(write_manifest(tmp_path, "evil", f'''
[[files]]
url = "{base}/{fname}"
path = "{fname}"
sha256 = "{sha256(blob)}"
extract_to = "."
'''))
    root = tmp_path / "root"
    with pytest.raises(FetchError, match="refused"):
        fetch(manifest, root)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (root / "escaped.txt").exists()
    assert not (root / "data").exists()  # the safe member before the bad one was not kept
    assert leftovers(root) == []
    assert not (root / DOWNLOADS / f"{fname}.extracted.json").exists()


def test_missing_file_on_the_server_is_a_clear_error(server, tmp_path):
    base, _ = server
    manifest = load_manifest(archive_manifest(tmp_path, base, b"never served"))
    with pytest.raises(FetchError, match=r"toy.tar.gz: download failed: 404"):
        fetch(manifest, tmp_path / "root")
    assert leftovers(tmp_path / "root") == []


def test_interrupted_download_resumes_with_range(server, tmp_path):
    base, state = server
    blob = tar_bytes({"data/a.txt": bytes(range(256)) * 4000, "data/b.txt": b"b", "c.txt": b"c"})
    state["files"]["/toy.tar.gz"] = blob
    manifest = load_manifest(archive_manifest(tmp_path, base, blob))
    root = tmp_path / "root"
    part = root / DOWNLOADS / "toy.tar.gz.part"
    part.parent.mkdir(parents=True)
    half = len(blob) // 2
    part.write_bytes(blob[:half])
    fetch(manifest, root)
    assert (root / DOWNLOADS / "toy.tar.gz").read_bytes() == blob
    assert state["requests"][-1] == ("/toy.tar.gz", f"bytes={half}-")
    assert not part.exists()


def test_resume_falls_back_when_the_server_ignores_range(server, tmp_path):
    base, state = server
    blob = tar_bytes(GOOD)
    state["files"]["/toy.tar.gz"] = blob
    state["ranges"] = False
    manifest = load_manifest(archive_manifest(tmp_path, base, blob))
    root = tmp_path / "root"
    part = root / DOWNLOADS / "toy.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    fetch(manifest, root)
    assert (root / DOWNLOADS / "toy.tar.gz").read_bytes() == blob


def test_nested_archive_and_member_filter(server, tmp_path):
    # The shape of COCO's panoptic zip: a JSON and a zip of PNGs inside the outer zip.
    base, state = server
    inner = zip_bytes({"panoptic_val2017/1.png": b"png1", "panoptic_val2017/2.png": b"png2"})
    outer = zip_bytes({
        "annotations/panoptic_val2017.json": b"{}",
        "annotations/panoptic_val2017.zip": inner,
        "annotations/panoptic_train2017.json": b"not wanted",
    })
    state["files"]["/pan.zip"] = outer
    manifest = load_manifest(write_manifest(tmp_path, "pan", f'''
[[files]]
url = "{base}/pan.zip"
path = "pan.zip"
sha256 = "{sha256(outer)}"
extract_to = "."
members = ["annotations/panoptic_val2017.*"]
nested = ["annotations/panoptic_val2017.zip"]
[[checks]]
glob = "annotations/panoptic_val2017/*.png"
count = 2
'''))
    root = tmp_path / "root"
    fetch(manifest, root)
    assert (root / "annotations/panoptic_val2017/2.png").read_bytes() == b"png2"
    assert (root / "annotations/panoptic_val2017.json").exists()
    assert not (root / "annotations/panoptic_val2017.zip").exists()
    assert not (root / "annotations/panoptic_train2017.json").exists()
    assert verify(manifest, root).ok


def test_unhashed_files_are_recorded_and_later_changes_detected(server, tmp_path):
    base, state = server
    for n in (1, 2, 3):
        state["files"][f"/img/{n}.jpg"] = f"image {n}".encode()
    manifest = load_manifest(write_manifest(tmp_path, "tpl", f'''
[[files]]
url = "{base}/img/{{n}}.jpg"
path = "stimuli/{{n}}.jpg"
each = {{ n = [1, 3] }}
[[checks]]
glob = "stimuli/*.jpg"
count = 3
'''))
    assert [f.path for f in manifest.files] == ["stimuli/1.jpg", "stimuli/2.jpg", "stimuli/3.jpg"]
    root = tmp_path / "root"
    result = fetch(manifest, root)
    assert result.unverified == ["stimuli/1.jpg", "stimuli/2.jpg", "stimuli/3.jpg"]
    record = json.loads((root / DOWNLOADS / "fetched.json").read_text())
    assert record["stimuli/2.jpg"]["sha256"] == sha256(b"image 2")
    report = verify(manifest, root)
    assert report.ok and {f.status for f in report.findings[:3]} == {"unverified"}
    (root / "stimuli/2.jpg").write_bytes(b"tampered")
    report = verify(manifest, root)
    assert not report.ok
    assert "stimuli/2.jpg: mismatch" in report.render()


def test_verify_reports_corrupt_cache_and_wrong_counts(server, tmp_path):
    base, state = server
    blob = tar_bytes(GOOD)
    state["files"]["/toy.tar.gz"] = blob
    manifest = load_manifest(archive_manifest(tmp_path, base, blob))
    root = tmp_path / "root"
    fetch(manifest, root)
    cached = root / DOWNLOADS / "toy.tar.gz"
    cached.write_bytes(b"x" * len(blob))
    (root / "data/sub/b.txt").unlink()
    text = verify(manifest, root).render()
    assert "toy.tar.gz: mismatch - sha256" in text
    assert "data/**/*.txt = 2: mismatch - found 1, expected 2" in text
    # A user's own copy without the archive is fine when the counts pass.
    cached.unlink()
    (root / "data/sub/b.txt").write_bytes(b"restored")
    report = verify(manifest, root)
    assert report.ok, report.render()
    assert any(f.status == "not kept" for f in report.findings)


def test_extraction_failure_midway_keeps_nothing(tmp_path):
    # The listing is fine but the second member's bytes are corrupt: the CRC check fails after
    # the first member was already written to the staging folder.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("first.txt", b"1" * 2048)
        zf.writestr("second.txt", b"2" * 5000)
    blob = bytearray(buf.getvalue())
    blob[blob.find(b"2" * 100) + 10] = ord("3")
    archive = tmp_path / "broken.zip"
    archive.write_bytes(bytes(blob))
    dest = tmp_path / "out"
    with pytest.raises(FetchError, match="nothing was kept.*CRC"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []


def test_cli_fetch_and_verify(server, tmp_path, capsys):
    from bench.cli import data as data_cli

    base, state = server
    blob = tar_bytes(GOOD)
    state["files"]["/toy.tar.gz"] = blob
    manifest_file = archive_manifest(tmp_path, base, blob)
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command"))
    root = tmp_path / "root"

    def run(*argv: str) -> int:
        args = parser.parse_args(["data", *argv])
        return args.func(args)

    assert run("fetch", str(manifest_file), "--root", str(root), "--no-progress") == 0
    out = capsys.readouterr().out
    assert "extracted 3 files" in out and "result: OK" in out
    assert run("verify", str(manifest_file), "--root", str(root)) == 0
    (root / "c.txt").unlink()
    assert run("verify", str(manifest_file), "--root", str(root)) == 1
    assert "c.txt = 1: mismatch - found 0" in capsys.readouterr().out
    assert run("verify", str(tmp_path / "nope.toml"), "--root", str(root)) == 1
    assert "manifest file not found" in capsys.readouterr().err
    assert run("list") == 0
    listing = capsys.readouterr().out
    for name in ("coco2017-val", "voc2007-test", "salicon", "mit1003", "osie", "cat2000"):
        assert name in listing
    assert "INVALID" not in listing


@pytest.mark.parametrize("member", [".downloads/fetched.json", "./.downloads/fetched.json", ".DOWNLOADS/fetched.json", ".downloads/toy.tar.gz.extracted.json"])
def test_an_archive_member_cannot_overwrite_the_download_record(server, tmp_path, member):
    # Issue 16, item 13: fetched.json holds the sha256 of files with no published hash, which
    # later fetches and `verify` trust; an archive extracted at the root must not replace it.
    base, state = server
    forged = b'{"toy.tar.gz": {"sha256": "forged"}}'
    blob = tar_bytes({**GOOD, member: forged})
    state["files"]["/toy.tar.gz"] = blob
    manifest = load_manifest(archive_manifest(tmp_path, base, blob))
    root = tmp_path / "root"
    with pytest.raises(FetchError, match=r"refused: member .* would be written into .*\.downloads"):
        fetch(manifest, root)
    record = json.loads((root / DOWNLOADS / "fetched.json").read_text())
    assert record["toy.tar.gz"]["sha256"] == sha256(blob)
    assert not (root / "c.txt").exists() and leftovers(root) == []  # nothing extracted
    assert not (root / ".DOWNLOADS").exists()
