"""A run's results directory: what is in it, how it is written, how it is read back.

``results/<run-name>/`` holds

- ``config.toml``: the resolved config;
- ``provenance.json``: versions, device, git commit, seeds, data and config hashes;
- ``models.json``: facts about each model (for the harbor suite: clean accuracy and measured
  reliance on context);
- ``scores.jsonl``: one JSON object per (model, method, image, target): the score rows,
  append-only, one durable write (flush + fsync) per batch;
- ``skipped.jsonl``: samples or targets not scored, each with the reason (``sample`` null: an
  image the dataset loader left out itself, e.g. one with no target or a broken record);
- ``progress.jsonl``: per finished batch, its sample indices and their data digests, written
  after the batch's rows are durable (what a resumed run trusts); a record with
  ``loader_drops`` marks a model's loader-drop skip records durable the same way;
- ``leaderboard.*``: rendered tables, always recomputable from the rows alone;
- ``.groundbench-results`` (:data:`MARKER`): written when groundbench creates the folder. Only a
  folder holding it is ever deleted by groundbench (``run --fresh``, ``merge --force``), so a
  mistyped name or ``--out`` can never remove anything groundbench did not write;
- ``.groundbench-lock`` (:data:`LOCK`): the file a writing process holds an exclusive
  ``flock`` on (:class:`ResultsLock`). A second process that wants to write the folder fails at
  once, naming the holder; the kernel drops the lock when the holder exits, however it exits
  (SIGKILL included), so a lock is never stale.

A (model, method, image, target) appears in ``scores.jsonl`` at most once; a file with a
repeated key (two processes that wrote one folder, rows appended by hand) is an error on read
(:func:`check_unique_keys`), never averaged in.

Rows are JSON lines so that a torn last line (a run killed mid-write) is detectable: it does
not parse, or it lacks the newline that ends every complete row. Such a tail is dropped on
read and truncated away before a resumed run appends.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

SCORES = "scores.jsonl"
SKIPPED = "skipped.jsonl"
PROVENANCE = "provenance.json"
MODELS = "models.json"
CONFIG = "config.toml"
MARKER = ".groundbench-results"
LOCK = ".groundbench-lock"
# Files groundbench keeps when it empties a folder for ``--fresh``: the lock being held.
KEEP_ON_FRESH = frozenset({LOCK, MARKER})

# A run name is one path component: letters, digits, '.', '_', '-' (not starting with '.' or
# '-'), at most NAME_MAX characters, so it can never point outside the output folder, hide a
# folder, read as an option, or exceed a filesystem's 255-byte name limit.
NAME_MAX = 120
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


class ResultsDirError(RuntimeError):
    """A results folder cannot be used as asked (not one groundbench made, or in use)."""


def check_run_name(name: object) -> str | None:
    """Why ``name`` cannot be a run name (see :data:`NAME_MAX`), or None when it can."""
    if not isinstance(name, str):
        return f"must be a string, got {name!r}"
    if not name:
        return "is empty"
    if len(name) > NAME_MAX:
        return f"is {len(name)} characters long; at most {NAME_MAX}"
    if not _NAME.fullmatch(name):
        return (
            f"{name!r} is not one folder name of safe characters (letters, digits, '.', '_', '-', "
            "not starting with '.' or '-'); put the parent folder in output_dir / --out"
        )
    return None

KEY_COLUMNS = ("model", "method", "image_id", "target")
# Columns that hold names or indices, not scores: null there reads back as None (e.g. the
# target of a skipped sample, the sample of an image the loader left out); anywhere else null
# is an undefined score and reads back as NaN.
TEXT_COLUMNS = frozenset({*KEY_COLUMNS, "reason", "sample"})


def _clean(value: Any) -> Any:
    # JSON has no NaN: undefined scores are written as null and read back as NaN.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode_row(row: dict[str, Any]) -> str:
    return json.dumps({k: _clean(v) for k, v in row.items()}, separators=(",", ":"), allow_nan=False)


class RowWriter:
    """Appends JSON lines; each :meth:`write` is one flushed, fsynced append."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        truncate_torn_tail(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        text = "".join(encode_row(r) + "\n" for r in rows)
        if not text:
            return
        self._fh.write(text)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_torn_tail(path: Path) -> int:
    """Cut a last line that lacks its newline (a write interrupted mid-row). Returns the
    number of bytes removed."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return 0
        # Walk back to the last newline; everything after it is the torn row.
        pos = size - 1
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            buf = fh.read(pos - start)
            nl = buf.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                fh.truncate(keep)
                return size - keep
            pos = start
        fh.truncate(0)
        return size


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All complete rows; a torn last line is ignored, a corrupt line elsewhere is an error.
    null reads back as NaN, except in :data:`TEXT_COLUMNS` where it stays None."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    rows = []
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{path}: line {number} is not a valid row ({exc}); only the last line of a file "
                "may be torn by an interrupted write, so this file was damaged otherwise"
            ) from exc
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {number} is not a valid row (a JSON {type(row).__name__}, not an object)")
        rows.append({k: (math.nan if v is None and k not in TEXT_COLUMNS else v) for k, v in row.items()})
    del tail  # no trailing newline: torn by an interrupted write, never data
    return rows


def check_unique_keys(rows: list[dict[str, Any]], path: Path) -> None:
    """Refuse score rows in which a (model, method, image_id, target) appears twice: each is one
    measurement, and a repeated one would be averaged in as if it were another image."""
    seen: dict[tuple, int] = {}
    for number, row in enumerate(rows, 1):
        key = tuple(row.get(k) for k in KEY_COLUMNS)
        if key in seen:
            dupes = sum(1 for r in rows if tuple(r.get(k) for k in KEY_COLUMNS) == key)
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(KEY_COLUMNS, key))
            raise ValueError(
                f"{path}: the row ({shown}) appears {dupes} times (rows {seen[key]} and {number}); "
                "each (model, method, image, target) is one measurement and must appear once. "
                "Two processes wrote into this folder, or rows were added by hand: run it again "
                "with --fresh"
            )
        seen[key] = number


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see :func:`write_text`)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file, fsynced, then renamed over ``path``, so a reader (or a
    resumed run) sees the old content or the new, never a mix."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """:func:`write_text` for bytes. The temporary file has a name of its own (two writers never
    share one) and is removed when the write fails (a full or read-only disk leaves nothing)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


# -- the folder itself: marker and lock ---------------------------------------------------------


def is_results_dir(folder: Path) -> bool:
    """The folder holds the marker groundbench writes into every results folder it creates."""
    return (Path(folder) / MARKER).is_file()


def _holds_files(folder: Path) -> bool:
    return any(p.name not in KEEP_ON_FRESH for p in folder.iterdir())


def check_claimable(folder: Path) -> None:
    """Refuse a ``folder`` that exists, holds files and has no marker: groundbench does not
    write into (let alone later delete) a folder it did not create. Writes nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ResultsDirError(f"{folder} exists and is not a folder")
    if folder.is_dir() and not is_results_dir(folder) and _holds_files(folder):
        raise ResultsDirError(
            f"{folder} already holds files and is not a groundbench results folder (it has no "
            f"{MARKER} marker); choose another run name or --out"
        )


def claim_dir(folder: Path) -> None:
    """Make ``folder`` a results folder: create it (and its parents) if absent and write the
    marker (after :func:`check_claimable`)."""
    folder = Path(folder)
    check_claimable(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not is_results_dir(folder):
        write_json(folder / MARKER, {"created_by": "groundbench", "created_utc": _now()})


def empty_dir(folder: Path) -> None:
    """Delete everything in a results folder except its marker and lock (``--fresh``). Refuses a
    folder without the marker: groundbench deletes only what it created."""
    import shutil

    folder = Path(folder)
    if not folder.is_dir() or not _holds_files(folder):
        return
    if not is_results_dir(folder):
        raise ResultsDirError(
            f"refused to empty {folder} (--fresh, --force): it is not a groundbench results folder "
            f"(no {MARKER} marker), so nothing in it was deleted; remove it yourself if you mean "
            "to, or choose another run name or --out"
        )
    for p in folder.iterdir():
        if p.name in KEEP_ON_FRESH:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultsLock:
    """An exclusive lock on a results folder for as long as one process writes it.

    ``acquire`` opens ``<folder>/.groundbench-lock`` and takes ``fcntl.flock(LOCK_EX | LOCK_NB)``
    on it: a second process fails at once with :class:`ResultsDirError` naming the holder (pid,
    host, start time and command, which the holder writes into the file). The kernel releases
    the lock when the holder's file is closed, which it is when the process ends in any way, so
    a killed run never leaves a stale lock. The lock file is kept (deleting it would let a
    third process lock a new file while a second still holds the old one). POSIX only: on a
    system without ``fcntl`` (Windows) the folder is not locked.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self._fd: int | None = None

    def acquire(self) -> "ResultsLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            os.close(fd)
            try:
                info = json.loads(holder)
                who = f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started_utc')}: {info.get('command')}"
            except ValueError:
                who = "another process"
            raise ResultsDirError(
                f"{self.folder} is in use by another groundbench process ({who}); two processes "
                "writing one results folder would write every row twice. Wait for it to finish, "
                "or use another run name or --out"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_utc": _now(), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "ResultsLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
