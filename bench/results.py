"""A run's results directory: its files, how they are written, how they are read back. This
module owns the directory: every file name, the header, the row id columns and the durable row
streams are defined here and nowhere else (docs/design.md, "The results directory").

``results/<run-name>/`` holds

- ``config.toml`` and ``config.json``: the resolved config (TOML to read, JSON to compare);
- ``columns.json``: each metric column's label, metric, parameters, direction and aggregation;
- ``provenance.json``: versions, device, git commit, seeds, data and config hashes;
- ``models.json``: facts about each model (for the harbor suite: clean accuracy and measured
  reliance on context) and each method's resolved parameters;
- the **row streams**, one JSON line per row, append-only, one durable write (flush + fsync)
  per batch: ``scores.jsonl`` (one row per (model, method, image, target)), ``skipped.jsonl``
  (samples, targets or methods not scored, each with the reason), ``sanity.jsonl`` (a run with
  ``[sanity]``: the sanity checks' rows, :mod:`bench.sanity.rows`), and any stream a later
  feature registers (:func:`register_stream`);
- ``progress.jsonl``: per finished batch, its model, sample indices and their data digests,
  written after every stream's rows of that batch are durable. It is the done-mark: a row
  counts once its (model, sample) is in it. A record with ``loader_drops`` marks a model's
  loader-drop skip records (``sample`` null: an image the dataset loader left out itself, e.g.
  one with no target or a broken record) durable the same way (:meth:`BatchWriter.commit_drops`);
- gaze runs: ``ceiling.jsonl``, the human ceiling's row stream (one row per image, written with
  the first model's batches), and ``ceiling.json`` (:data:`CEILING`), what the ceiling is or why
  the data gives none (:mod:`bench.ceiling`);
- ``maps/`` (``--save-maps``): every scored map, see :mod:`bench.maps_io`;
- ``leaderboard.*``, ``figures/``, ``report.html``: rendered, always recomputable from the rows;
- ``.groundbench-results`` (:data:`MARKER`): written when groundbench creates the folder. Only a
  folder holding it is ever deleted by groundbench (``run --fresh``, ``merge --force``), so a
  mistyped name or ``--out`` can never remove anything groundbench did not write;
- ``.groundbench-lock`` (:data:`LOCK`): the file a writing process holds an exclusive
  ``flock`` on (:class:`ResultsLock`). A second process that wants to write the folder fails at
  once, naming the holder; the kernel drops the lock when the holder exits, however it exits
  (SIGKILL included), so a lock is never stale.

Row streams obey one set of rules, so a new stream gets resume, sharding and merging for free:
every row carries ``model`` (str) and ``sample`` (the dataset index, int; null only for a
loader's drop record); a batch's rows of every stream are written before the batch is marked
done (:meth:`BatchWriter.commit`); a resumed run drops the rows of samples not marked done from
every stream (:meth:`ResultsDir.drop_unfinished`), skip records included, so a skip is never
recorded twice; a shard writes every stream in its own directory and ``groundbench merge``
concatenates each in single-run order (:mod:`bench.merge`). Rows count only as long as the
score rows file exists: with ``scores.jsonl`` deleted by hand nothing is done
(:meth:`ResultsDir.done`), and the run starts over.

A (model, method, image, target) appears in ``scores.jsonl`` at most once; a file with a
repeated key (two processes that wrote one folder, rows appended by hand) is an error on read
(:func:`check_unique_keys`), never averaged in.

Rows are JSON lines so that a torn last line (a run killed mid-write) is detectable: it does
not parse, or it lacks the newline that ends every complete row. Such a tail is dropped on
read and truncated away before a resumed run appends.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import socket
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# -- the files -------------------------------------------------------------------------------------

CONFIG = "config.toml"
CONFIG_JSON = "config.json"
COLUMNS = "columns.json"
PROVENANCE = "provenance.json"
MODELS = "models.json"
RELIANCE = "reliance.jsonl"
SCORES = "scores.jsonl"
SKIPPED = "skipped.jsonl"
PROGRESS = "progress.jsonl"
SANITY = "sanity.jsonl"
MAPS = "maps"
CEILING = "ceiling.json"  # gaze runs: what the human ceiling is, or why there is none (bench.ceiling)
CEILING_ROWS_FILE = "ceiling.jsonl"
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

# -- the rows --------------------------------------------------------------------------------------

# The columns every score row starts with, in this order; the metric columns (columns.json
# labels) follow. ``output``: the model output the method attributed (null for saved maps);
# ``difficult``: the pointing game's "difficult" subset (bench.data.annotations.pointing_difficult);
# ``map_invalid``: the map held a NaN or Inf.
ROW_ID_COLUMNS = ("model", "method", "sample", "image_id", "target", "output", "difficult", "map_invalid")
KEY_COLUMNS = ("model", "method", "image_id", "target")
# Columns that hold names or indices, not scores: null there reads back as None (e.g. the
# target of a skipped sample, the sample of an image the loader left out, the other class of a
# sanity row that has none); anywhere else null is an undefined score and reads back as NaN.
TEXT_COLUMNS = frozenset({*KEY_COLUMNS, "reason", "sample", "test", "layer", "other", "error"})


def score_row(
    model: str, method: str, sample: int, image_id: str, target: str, output: int | None,
    difficult: bool, map_invalid: bool, scores: Mapping[str, float],
) -> dict[str, Any]:
    """One score row: the id columns in :data:`ROW_ID_COLUMNS` order, then ``scores`` (metric
    column label -> value, NaN where undefined) in column order."""
    row = {
        "model": model, "method": method, "sample": sample, "image_id": image_id, "target": target,
        "output": output, "difficult": difficult, "map_invalid": map_invalid,
    }
    row.update(scores)
    return row


def skip_record(model: str, sample: int | None, image_id: str, target: str | None, reason: str, method: str | None = None) -> dict[str, Any]:
    """One ``skipped.jsonl`` record: a sample (``target`` None), a target, or, with ``method``,
    one method's failure on a target; ``sample`` None: an image the loader left out."""
    rec = {"model": model, "sample": sample, "image_id": image_id, "target": target, "reason": reason}
    if method is not None:
        rec["method"] = method
    return rec


@dataclass(frozen=True)
class RowStream:
    """One append-only row file of a results directory. ``key``: the columns that identify a row
    (no two rows of a run share them; checked on merge), or () where rows need no identity."""

    name: str
    file: str
    key: tuple[str, ...] = ()


STREAMS: dict[str, RowStream] = {}


def register_stream(name: str, file: str, key: Sequence[str] = ()) -> RowStream:
    """Declare a row stream (e.g. ``register_stream("reliance", "reliance.jsonl", key=("model",
    "sample", "target"))``): the engine, resume and merge then handle it like the score rows."""
    stream = RowStream(name, file, tuple(key))
    if name in STREAMS and STREAMS[name] != stream:
        raise ValueError(f"row stream {name!r} is registered twice, differently")
    if any(s.file == file and s.name != name for s in STREAMS.values()):
        raise ValueError(f"row stream file {file!r} is taken by another stream")
    STREAMS[name] = stream
    return stream


# Measured reliance (a run with ``[reliance]``, bench.reliance): one row per (model, image,
# target, removal mode); declared here so that resume and merge know it in every process.
RELIANCE_ROWS = register_stream("reliance", RELIANCE, key=("model", "sample", "target", "mode"))
SCORE_ROWS = register_stream("scores", SCORES, key=("model", "method", "sample", "target"))
SKIP_ROWS = register_stream("skipped", SKIPPED)
# The [sanity] checks' rows (bench.sanity.rows): declared here, with the directory's other
# files, so that resume and merge know the stream in every process.
SANITY_ROWS = register_stream("sanity", SANITY, key=("model", "method", "sample", "target", "test", "step", "other"))
# Gaze runs: the human ceiling, one row per image (bench.ceiling), written with the first
# model's batches (the ceiling does not depend on the model).
CEILING_ROWS = register_stream("ceiling", CEILING_ROWS_FILE, key=("sample",))


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


# -- the directory ---------------------------------------------------------------------------------


class ResultsDir:
    """One results directory: the paths of its files, its header, its done-marks and its row
    streams (module doc)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def stream_path(self, stream: RowStream | str) -> Path:
        return self.path / (STREAMS[stream].file if isinstance(stream, str) else stream.file)

    def has_rows(self) -> bool:
        """Whether a run has started writing here (its score rows file exists)."""
        return (self.path / SCORES).exists()

    def has_score_rows(self) -> bool:
        """Whether the score rows file holds anything (an attempt that wrote no row leaves an
        empty one, which never blocks the next)."""
        path = self.path / SCORES
        return path.exists() and path.stat().st_size > 0

    # -- the header ------------------------------------------------------------------------------

    def write_header(self, config: Mapping[str, Any], columns: Sequence[Mapping[str, Any]], provenance: Mapping[str, Any] | None = None) -> None:
        """The files that say what the rows are: the resolved config (``config.toml``,
        ``config.json``: JSON with sorted keys, what resumes and merges compare), the metric
        columns (``columns.json``, a list: the config's column order is the table's) and,
        when given, the provenance."""
        import tomli_w

        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / CONFIG, tomli_w.dumps(dict(config)))
        write_text(self.path / CONFIG_JSON, json.dumps(config, sort_keys=True) + "\n")
        write_json(self.path / COLUMNS, list(columns))
        if provenance is not None:
            write_json(self.path / PROVENANCE, provenance)

    def config(self) -> dict[str, Any]:
        """The resolved config (``config.json``)."""
        return self._json(CONFIG_JSON, "the run's resolved config")

    def columns(self) -> list[dict[str, Any]]:
        """The metric columns (``columns.json``)."""
        return self._json(COLUMNS, "it says how each metric column aggregates")

    def provenance(self) -> dict[str, Any]:
        return self._json(PROVENANCE, "the run's provenance")

    def _json(self, name: str, what: str) -> Any:
        path = self.path / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; {what}")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc

    # -- done-marks ------------------------------------------------------------------------------

    def progress(self) -> list[dict[str, Any]]:
        """The done-marks, in the order written: ``{"model", "samples", "digests"}`` per batch
        (``{"model", "samples": [], "loader_drops": n}`` for a model's loader drops)."""
        return read_rows(self.path / PROGRESS)

    def done(self) -> "Done":
        """What is done: per model, the samples whose batch finished (every stream's rows
        durable), and the models whose loader drops are recorded. Rows are only as done as the
        score rows file: with ``scores.jsonl`` gone (deleted by hand) nothing is, and the run
        starts over instead of skipping samples whose rows no longer exist (and recording their
        skips twice)."""
        done = Done()
        if not self.has_rows():
            return done
        for rec in self.progress():
            done.samples[rec["model"]].update(int(i) for i in rec["samples"])
            if rec.get("loader_drops") is not None:
                done.dropped.add(rec["model"])
        return done

    def committed_rows(self, stream: RowStream | str, done: "Done | None" = None) -> list[dict[str, Any]]:
        """The rows of ``stream`` that count: those marked done (:meth:`Done.committed`)."""
        done = self.done() if done is None else done
        return [r for r in read_rows(self.stream_path(stream)) if done.committed(r)]

    def drop_unfinished(self, done: "Done | None" = None) -> dict[str, list[dict[str, Any]]]:
        """Rewrite every stream without the rows not marked done (a batch that was being written
        when the run died) and without a torn last line. Returns each stream's rows kept. A
        damaged line in the middle of a file raises ValueError before any file is changed."""
        done = self.done() if done is None else done
        read = {s.name: read_rows(self.stream_path(s)) for s in STREAMS.values() if self.stream_path(s).exists()}
        kept = {}
        for name, rows in read.items():
            path = self.stream_path(name)
            keep = [r for r in rows if done.committed(r)]
            if len(keep) != len(rows) or path.read_bytes()[-1:] not in (b"\n", b""):
                write_text(path, "".join(encode_row(r) + "\n" for r in keep))
            kept[name] = keep
        return kept

    def start(self, config: Mapping[str, Any], columns: Sequence[Mapping[str, Any]]) -> None:
        """Begin a run here afresh: claim the folder (:func:`claim_dir`), empty the row streams,
        the done-marks and the models file an earlier attempt that finished no batch may have
        left, and write the header. Never call it on a folder with batches done."""
        claim_dir(self.path)
        for path in [self.stream_path(s) for s in STREAMS.values()] + [self.path / PROGRESS]:
            if path.exists():
                write_text(path, "")
        if (self.path / MODELS).exists():
            (self.path / MODELS).unlink()  # facts of an earlier attempt's models
        self.write_header(config, columns)

    def data_hashes(self) -> dict[str, dict[str, Any]]:
        """Per model: how many samples were read and one sha256 over their digests (the model
        input after preprocessing and all ground truth; :func:`bench.batching.sample_digest`)
        in sample order. Two runs with equal hashes consumed exactly the same data, however it
        was stored or loaded; a sample that failed to load counts with its error instead."""
        per_model: dict[str, dict[int, str]] = defaultdict(dict)
        for rec in self.progress():
            digests = rec.get("digests") or [None] * len(rec["samples"])
            for index, digest in zip(rec["samples"], digests):
                per_model[rec["model"]][int(index)] = digest if isinstance(digest, str) else "-"
        hashed = {}
        for model, digests in per_model.items():
            h = hashlib.sha256()
            for index in sorted(digests):
                h.update(f"{index}:{digests[index]}\n".encode())
            hashed[model] = {"samples": len(digests), "sha256": h.hexdigest()}
        return hashed

    def open(self) -> "BatchWriter":
        """A writer that appends batches to every stream (use as a context manager)."""
        return BatchWriter(self)


@dataclass
class Done:
    """What ``progress.jsonl`` marks done (:meth:`ResultsDir.done`): per model, the samples whose
    batch is durable, and the models whose loader drops are recorded."""

    samples: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    dropped: set[str] = field(default_factory=set)

    @property
    def any(self) -> bool:
        return any(self.samples.values()) or bool(self.dropped)

    def of(self, model: str) -> set[int]:
        """The samples done for ``model``."""
        return self.samples.get(model, set())

    def committed(self, row: Mapping[str, Any]) -> bool:
        """The row (of any stream) belongs to a batch marked done; a loader's drop record
        (``sample`` None) to its model's drop mark."""
        if row.get("sample") is None:
            return row["model"] in self.dropped
        return int(row["sample"]) in self.of(row["model"])


class BatchWriter:
    """Appends each finished batch to the row streams, then marks it done (module doc)."""

    def __init__(self, out: ResultsDir):
        self.out = out
        # The score and skip streams exist from the start, even for a run that scores nothing.
        self._writers = {s.name: RowWriter(out.stream_path(s)) for s in (SCORE_ROWS, SKIP_ROWS)}
        self._progress = RowWriter(out / PROGRESS)

    def _writer(self, name: str) -> RowWriter:
        if name not in self._writers:
            if name not in STREAMS:
                raise KeyError(f"no row stream {name!r} is registered (known: {', '.join(STREAMS)})")
            self._writers[name] = RowWriter(self.out.stream_path(name))
        return self._writers[name]

    def commit(self, model: str, samples: Sequence[int], digests: Sequence[str | None], rows: Mapping[str, Iterable[dict[str, Any]]]) -> None:
        """Write the batch's rows of each stream (``rows``: stream name -> rows; the score and
        skip streams always, so that their files exist), one durable write per stream, and
        only then the done-mark of ``samples`` for ``model``."""
        for name in dict.fromkeys((SCORE_ROWS.name, SKIP_ROWS.name, *rows)):
            self._writer(name).write(rows.get(name, ()))
        self._progress.write([{"model": model, "samples": list(samples), "digests": list(digests)}])

    def commit_drops(self, model: str, records: Sequence[dict[str, Any]]) -> None:
        """Record skip records that belong to no sample (``sample`` None, :func:`skip_record`):
        the images the dataset loader left out, or for saved maps the map files that match no
        image; then mark them done for ``model``, so that a resumed run neither loses nor
        repeats them."""
        self._writer(SKIP_ROWS.name).write(records)
        self._progress.write([{"model": model, "samples": [], "loader_drops": len(records)}])

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._progress.close()

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
