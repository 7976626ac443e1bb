"""Downloading a manifest's files (pooch) and checking a dataset directory against it.

Layout of a dataset root::

    <root>/                      extracted data and plain files, where the loaders look
    <root>/.downloads/           archives as downloaded (the cache), ``*.part`` partial downloads,
                                 ``fetched.json`` (the sha256 of every file fetched) and one
                                 ``<archive>.extracted.json`` marker per extracted archive

Guarantees:

- **Cache**: a file already present whose hash matches is not downloaded again; an archive whose
  marker matches its hash is not extracted again, nor downloaded again once deleted
  (``keep_archives=False`` / ``--delete-archives`` saves the disk space).
- **Resume**: bytes arrive in ``<name>.part``; after an interrupted download the next fetch asks
  the server for the rest (HTTP Range) and starts over only if the server cannot resume.
- **Checksum**: the whole file is hashed (sha256, or md5 where that is all the publisher gives)
  before it takes its final name; a mismatch deletes it and raises :class:`FetchError`.
  Manifest entries with no published hash are fetched, and their sha256 is recorded in
  ``fetched.json`` so later ``verify`` runs detect any change (trust on first use, reported).
- **Safe extraction**: every member is checked before anything is written. Absolute paths, ``..``
  components, symbolic and hard links, and device or FIFO members refuse the whole archive.
  Members are written into a staging folder inside the target and moved into place only once
  the whole archive (and any nested archive) has been extracted; on any failure the staging
  folder is deleted, so nothing half-extracted is left behind. No member may land in
  ``<root>/.downloads/`` (compared without regard to case): an archive cannot replace
  ``fetched.json``, the hash record that later fetches and ``verify`` trust, nor a marker or
  another download.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from bench.data.manifest import Check, FileEntry, Manifest

DOWNLOADS = ".downloads"
RECORD = "fetched.json"
CHUNK = 1 << 20

Log = Callable[[str], None]


class FetchError(RuntimeError):
    """A download, checksum or extraction failed; the message says which file and why."""


def default_root(name: str) -> Path:
    """Where ``groundbench data fetch NAME`` puts a dataset without ``--root``: the platform
    cache folder (``~/.cache/groundbench/NAME`` on Linux)."""
    import pooch

    return Path(pooch.os_cache("groundbench")) / name


def file_hash(path: Path, alg: str = "sha256") -> str:
    digest = hashlib.new(alg)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_path(root: Path, entry: FileEntry) -> Path:
    """Archives live in the download cache; plain files at their destination."""
    return root / DOWNLOADS / entry.path if entry.is_archive else root / entry.path


# -- download ----------------------------------------------------------------------------------


class ResumableDownloader:
    """A pooch downloader that keeps partial bytes in ``part`` and resumes with HTTP Range.

    pooch calls it with a temporary output file beside the destination and hashes that file
    before moving it into place; this class only moves the finished ``.part`` onto it.
    """

    def __init__(
        self, part: Path, size: int | None = None, timeout: float = 60.0, progress: bool = False
    ):
        self.part = part
        self.size = size
        self.timeout = timeout
        self.progress = progress

    def __call__(self, url: str, output_file, pooch=None, check_only: bool = False):
        import requests

        if check_only:
            response = requests.head(url, allow_redirects=True, timeout=self.timeout)
            return response.status_code == 200
        self.part.parent.mkdir(parents=True, exist_ok=True)
        offset = self.part.stat().st_size if self.part.exists() else 0
        if self.size is not None and offset > self.size:
            self.part.unlink()
            offset = 0
        if not (self.size is not None and offset == self.size):
            self._stream(requests, url, offset)
        out = output_file if isinstance(output_file, (str, os.PathLike)) else output_file.name
        os.replace(self.part, out)

    def _stream(self, requests, url: str, offset: int) -> None:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if offset and response.status_code == 416:
                # The server says the range is past the end: the part file is stale.
                self.part.unlink()
                return self._stream(requests, url, 0)
            response.raise_for_status()
            resumed = offset > 0 and response.status_code == 206
            mode = "ab" if resumed else "wb"
            total = self.size
            if total is None and "Content-Length" in response.headers:
                total = int(response.headers["Content-Length"]) + (offset if resumed else 0)
            bar = None
            if self.progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=total, initial=offset if resumed else 0, unit="B", unit_scale=True,
                    desc=self.part.name.removesuffix(".part"), leave=False,
                )
            try:
                with open(self.part, mode) as f:
                    for chunk in response.iter_content(CHUNK):
                        f.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()


def _read_record(root: Path) -> dict[str, dict]:
    path = root / DOWNLOADS / RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def download(
    entry: FileEntry, root: Path, *, timeout: float = 60.0, progress: bool = False
) -> Path:
    """Fetch one entry into its place under ``root`` (cached, resumable, hash-checked)."""
    import pooch
    import requests

    target = download_path(root, entry)
    part = target.with_name(target.name + ".part")
    downloader = ResumableDownloader(part, size=entry.size, timeout=timeout, progress=progress)
    try:
        pooch.retrieve(
            entry.url,
            known_hash=entry.known_hash,
            fname=target.name,
            path=target.parent,
            downloader=downloader,
        )
    except ValueError as exc:
        raise FetchError(
            f"{entry.url}: checksum mismatch for {target.name}: {exc}. The download was "
            "deleted and nothing was extracted; if it persists the server's copy has changed."
        ) from exc
    except requests.exceptions.RequestException as exc:
        kept = f" ({part.stat().st_size} bytes kept in {part}; fetch again to resume)" if (
            part.exists()
        ) else ""
        raise FetchError(f"{entry.url}: download failed: {exc}{kept}") from exc
    if entry.md5 and entry.sha256:
        # pooch checked the sha256; a manifest giving both promises both.
        got = file_hash(target, "md5")
        if got != entry.md5:
            target.unlink()
            raise FetchError(f"{entry.url}: md5 {got} != manifest md5 {entry.md5}; deleted")
    return target


# -- extraction ----------------------------------------------------------------------------------


def _member_path(name: str, archive: Path) -> PurePosixPath | None:
    """The member's relative path, or None for the archive's own root entry; raises on any
    name that could land outside the target."""
    text = name.replace("\\", "/")
    if "\x00" in text:
        raise FetchError(f"{archive}: refused: member name {name!r} contains a NUL byte")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise FetchError(f"{archive}: refused: member {name!r} has an absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise FetchError(f"{archive}: refused: member {name!r} escapes the target (path traversal)")
    return PurePosixPath(*parts) if parts else None


def _wanted(rel: PurePosixPath, members: tuple[str, ...]) -> bool:
    return not members or any(fnmatch.fnmatchcase(str(rel), m) for m in members)


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> Iterator[tuple[PurePosixPath, object]]:
    for info in zf.infolist():
        rel = _member_path(info.filename, archive)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise FetchError(f"{archive}: refused: member {info.filename!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise FetchError(f"{archive}: refused: member {info.filename!r} is not a regular file")
        if rel is not None and not info.is_dir():
            yield rel, info


def _tar_members(tf: tarfile.TarFile, archive: Path) -> Iterator[tuple[PurePosixPath, object]]:
    for member in tf.getmembers():
        rel = _member_path(member.name, archive)
        if member.issym() or member.islnk():
            raise FetchError(
                f"{archive}: refused: member {member.name!r} is a link (-> {member.linkname!r})"
            )
        if not (member.isfile() or member.isdir()):
            raise FetchError(f"{archive}: refused: member {member.name!r} is a device or FIFO")
        if rel is not None and member.isfile():
            yield rel, member


def _extract_into(archive: Path, dest: Path, members: tuple[str, ...]) -> list[PurePosixPath]:
    """Check every member, then write the wanted ones under ``dest``."""
    if archive.name.lower().endswith(".zip"):
        opened = zipfile.ZipFile(archive)
        listing, read = _zip_members(opened, archive), opened.open
    elif tarfile.is_tarfile(archive):
        opened = tarfile.open(archive, "r:*")
        listing, read = _tar_members(opened, archive), opened.extractfile
    else:
        raise FetchError(f"{archive}: not a zip or tar archive")
    with opened:
        # list() runs every safety check before the first byte is written.
        chosen = [(rel, m) for rel, m in list(listing) if _wanted(rel, members)]
        if members and not chosen:
            raise FetchError(f"{archive}: no member matches {list(members)}")
        for rel, member in chosen:
            out = dest.joinpath(*rel.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            with read(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
    return [rel for rel, _ in chosen]


def _move_tree(staging: Path, dest: Path) -> None:
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        out = dest / src.relative_to(staging)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, out)


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it, compared case-insensitively (a case-insensitive
    filesystem would write ``.DOWNLOADS/fetched.json`` over the record)."""
    p = str(path.resolve()).casefold()
    f = str(folder.resolve()).casefold()
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    members: tuple[str, ...] = (),
    nested: tuple[str, ...] = (),
    protect: Path | None = None,
) -> list[PurePosixPath]:
    """Extract ``archive`` into ``dest`` under the guarantees in the module docstring; returns
    the relative paths written (nested archives replaced by their content). ``protect``: a
    folder no member may be written into (the download cache); such an archive is refused
    whole, before anything reaches ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        written = _extract_into(archive, staging, members)
        for inner in nested:
            inner_path = staging / inner
            if not inner_path.is_file():
                raise FetchError(f"{archive}: nested archive {inner!r} is not in the archive")
            parent = PurePosixPath(inner).parent
            inner_written = _extract_into(inner_path, inner_path.parent, ())
            inner_path.unlink()
            written = [w for w in written if str(w) != inner] + [parent / w for w in inner_written]
        if protect is not None:
            for rel in written:
                if _inside(dest.joinpath(*rel.parts), protect):
                    raise FetchError(
                        f"{archive}: refused: member {str(rel)!r} would be written into {protect}, "
                        "the download cache and its hash record"
                    )
        _move_tree(staging, dest)
        return written
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise FetchError(f"{archive}: extraction failed, nothing was kept: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- fetch ------------------------------------------------------------------------------------


@dataclass
class FetchResult:
    downloaded: list[Path] = field(default_factory=list)
    extracted: dict[str, int] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)


def _extraction_settings(entry: FileEntry, sha: str) -> dict:
    return {
        "sha256": sha, "extract_to": entry.extract_to, "members": list(entry.members),
        "nested": list(entry.nested),
    }


def _marker(root: Path, entry: FileEntry) -> Path:
    target = download_path(root, entry)
    return target.with_name(target.name + ".extracted.json")


def _already_extracted(root: Path, entry: FileEntry, sha: str | None) -> bool:
    """The archive was extracted with these settings (and, if ``sha`` is given, these bytes)."""
    marker = _marker(root, entry)
    if not marker.is_file():
        return False
    try:
        done = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    want = _extraction_settings(entry, sha or done.get("sha256"))
    return {k: done.get(k) for k in want} == want


def fetch(
    manifest: Manifest,
    root: Path,
    *,
    force_extract: bool = False,
    keep_archives: bool = True,
    timeout: float = 60.0,
    progress: bool = False,
    log: Log | None = None,
) -> FetchResult:
    """Download every file of ``manifest`` into ``root`` and extract the archives.

    With ``keep_archives=False`` each archive is deleted once extracted; its marker stays, so a
    later fetch does not download it again (``verify`` then reports it "not kept" and relies on
    the counts)."""
    say = log or (lambda _msg: None)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    result = FetchResult()
    record = _read_record(root)
    for entry in manifest.files:
        known = entry.sha256 or record.get(entry.path, {}).get("sha256")
        if (
            entry.is_archive
            and not force_extract
            and not download_path(root, entry).exists()
            and _already_extracted(root, entry, known)
        ):
            say(f"{entry.path}: already extracted (archive not kept)")
            continue
        target = download(entry, root, timeout=timeout, progress=progress)
        result.downloaded.append(target)
        sha = entry.sha256 or file_hash(target)
        previous = record.get(entry.path, {}).get("sha256")
        if entry.known_hash is None:
            result.unverified.append(entry.path)
            if previous and previous != sha:
                raise FetchError(
                    f"{target}: sha256 {sha} differs from the one recorded at the first fetch "
                    f"({previous}): the file changed on the server or on disk (it has no "
                    "published hash); delete it and fetch again to accept the new copy"
                )
        record[entry.path] = {"sha256": sha, "url": entry.url, "size": target.stat().st_size}
        _write_json(root / DOWNLOADS / RECORD, record)
        if not entry.is_archive:
            say(f"{entry.path}: ok")
            continue
        if _already_extracted(root, entry, sha) and not force_extract:
            say(f"{entry.path}: already extracted")
        else:
            dest = root / entry.extract_to
            written = safe_extract(target, dest, members=entry.members, nested=entry.nested, protect=root / DOWNLOADS)
            _write_json(_marker(root, entry), {**_extraction_settings(entry, sha),
                                               "files": len(written)})
            result.extracted[entry.path] = len(written)
            say(f"{entry.path}: extracted {len(written)} files into {dest}")
        if not keep_archives:
            target.unlink()
            say(f"{entry.path}: archive deleted after extraction")
    return result


# -- verify ------------------------------------------------------------------------------------


GOOD = ("ok", "not kept", "unverified")


@dataclass
class Finding:
    item: str
    status: str  # ok | not kept | unverified | missing | mismatch | failed
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in GOOD


@dataclass
class VerifyReport:
    manifest: str
    root: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def render(self, verbose: bool = False, per_status: int = 8) -> str:
        """Failures first (at most ``per_status`` lines per kind unless ``verbose``), then
        counts of what passed."""
        lines = [f"verify {self.manifest} in {self.root}"]

        def line(f: Finding) -> str:
            mark = "ok  " if f.ok else "FAIL"
            return f"  [{mark}] {f.item}: {f.status}{' - ' + f.detail if f.detail else ''}"

        statuses = list(dict.fromkeys(f.status for f in self.findings))
        for ok_pass in (False, True):
            for status in statuses:
                group = [f for f in self.findings if f.status == status and f.ok == ok_pass]
                if not group:
                    continue
                if verbose or (not ok_pass and len(group) <= per_status) or (
                    ok_pass and status != "ok" and len(group) <= 2
                ):
                    lines += [line(f) for f in group]
                elif not ok_pass:
                    lines += [line(f) for f in group[:per_status]]
                    lines.append(f"  [FAIL] ... and {len(group) - per_status} more {status}")
                else:
                    why = " (no published hash; --verbose shows each sha256)" if (
                        status == "unverified") else ""
                    lines.append(f"  [ok  ] {len(group)} item(s) {status}{why}")
        bad = sum(not f.ok for f in self.findings)
        lines.append(
            "result: OK" if not bad else f"result: FAILED ({bad} of {len(self.findings)} checks)"
        )
        return "\n".join(lines)


def _check_hash(path: Path, entry: FileEntry, recorded: str | None) -> Finding:
    if entry.sha256:
        got = file_hash(path)
        if got != entry.sha256:
            return Finding(entry.path, "mismatch", f"sha256 {got} != manifest {entry.sha256}")
        return Finding(entry.path, "ok", "sha256 matches the manifest")
    if entry.md5:
        got = file_hash(path, "md5")
        if got != entry.md5:
            return Finding(entry.path, "mismatch", f"md5 {got} != manifest {entry.md5}")
        return Finding(entry.path, "ok", "md5 matches the manifest")
    got = file_hash(path)
    if recorded and got != recorded:
        return Finding(entry.path, "mismatch", f"sha256 {got} != {recorded} recorded at fetch")
    note = "matches the sha256 recorded at fetch" if recorded else f"sha256 {got}"
    return Finding(entry.path, "unverified", f"no published hash; {note}")


def _run_check(check: Check, root: Path) -> Finding:
    if check.glob is not None:
        found = sum(1 for p in root.glob(check.glob) if p.is_file())
    else:
        path = root / check.json
        if not path.is_file():
            return Finding(check.describe(), "missing", f"{path} not found")
        try:
            value = json.loads(path.read_text())[check.key]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            return Finding(check.describe(), "failed", f"cannot read {path}: {exc}")
        found = len(value)
    if check.count is not None and found != check.count:
        return Finding(check.describe(), "mismatch", f"found {found}, expected {check.count}")
    if check.min_count is not None and found < check.min_count:
        return Finding(
            check.describe(), "mismatch", f"found {found}, expected at least {check.min_count}"
        )
    return Finding(check.describe(), "ok", f"found {found}")


def verify(manifest: Manifest, root: Path) -> VerifyReport:
    """Check ``root`` against ``manifest``: downloaded files and their hashes, then the counts
    the extracted data must show. Archives that are not kept (a user's own copy, or a deleted
    cache) are fine when the counts pass."""
    root = Path(root)
    report = VerifyReport(manifest.name, root)
    if not root.is_dir():
        report.findings.append(Finding(str(root), "missing", "dataset root does not exist"))
        return report
    record = _read_record(root)
    for entry in manifest.files:
        path = download_path(root, entry)
        recorded = record.get(entry.path, {}).get("sha256")
        if not path.is_file():
            if entry.is_archive:
                report.findings.append(
                    Finding(entry.path, "not kept", "archive not in the download cache; "
                            "the checks below decide")
                )
            else:
                report.findings.append(Finding(entry.path, "missing", f"{path} not found"))
            continue
        if entry.size is not None and path.stat().st_size != entry.size:
            report.findings.append(
                Finding(
                    entry.path, "mismatch", f"{path.stat().st_size} bytes, expected {entry.size}"
                )
            )
            continue
        report.findings.append(_check_hash(path, entry, recorded))
    for check in manifest.checks:
        report.findings.append(_run_check(check, root))
    return report
