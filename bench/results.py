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
  (samples, targets or methods not scored, each with the reason), and any stream a later
  feature registers (:func:`register_stream`);
- ``progress.jsonl``: per finished batch, its model, sample indices and their data digests,
  written after every stream's rows of that batch are durable. It is the done-mark: a row
  counts once its (model, sample) is in it;
- ``maps/`` (``--save-maps``): every scored map, see :mod:`bench.maps_io`;
- ``leaderboard.*``, ``figures/``, ``report.html``: rendered, always recomputable from the rows.

Row streams obey one set of rules, so a new stream gets resume, sharding and merging for free:
every row carries ``model`` (str) and ``sample`` (the dataset index, int); a batch's rows of
every stream are written before the batch is marked done (:meth:`BatchWriter.commit`); a
resumed run drops the rows of samples not marked done from every stream
(:meth:`ResultsDir.drop_unfinished`); a shard writes every stream in its own directory and
``groundbench merge`` concatenates each in single-run order (:mod:`bench.merge`).

Rows are JSON lines so that a torn last line (a run killed mid-write) is detectable: it does
not parse, or it lacks the newline that ends every complete row. Such a tail is dropped on
read and truncated away before a resumed run appends.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# -- the files -------------------------------------------------------------------------------------

CONFIG = "config.toml"
CONFIG_JSON = "config.json"
COLUMNS = "columns.json"
PROVENANCE = "provenance.json"
MODELS = "models.json"
SCORES = "scores.jsonl"
SKIPPED = "skipped.jsonl"
PROGRESS = "progress.jsonl"
MAPS = "maps"

# -- the rows --------------------------------------------------------------------------------------

# The columns every score row starts with, in this order; the metric columns (columns.json
# labels) follow. ``output``: the model output the method attributed (null for saved maps);
# ``difficult``: the pointing game's "difficult" subset (bench.data.annotations.pointing_difficult);
# ``map_invalid``: the map held a NaN or Inf.
ROW_ID_COLUMNS = ("model", "method", "sample", "image_id", "target", "output", "difficult", "map_invalid")
KEY_COLUMNS = ("model", "method", "image_id", "target")
# Columns that hold names, not numbers: null there reads back as None (e.g. the target of a
# skipped sample); anywhere else null is an undefined score and reads back as NaN.
TEXT_COLUMNS = frozenset({*KEY_COLUMNS, "reason"})


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


def skip_record(model: str, sample: int, image_id: str, target: str | None, reason: str, method: str | None = None) -> dict[str, Any]:
    """One ``skipped.jsonl`` record: a sample (``target`` None), a target, or, with ``method``,
    one method's failure on a target."""
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


SCORE_ROWS = register_stream("scores", SCORES, key=("model", "method", "sample", "target"))
SKIP_ROWS = register_stream("skipped", SKIPPED)


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


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see :func:`write_text`)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file, fsynced, then renamed over ``path``, so a reader (or a
    resumed run) sees the old content or the new, never a mix."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
        """Whether a run has started writing here (its score rows exist)."""
        return (self.path / SCORES).exists()

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
        """The done-marks, in the order written: ``{"model", "samples", "digests"}`` per batch."""
        return read_rows(self.path / PROGRESS)

    def done(self) -> dict[str, set[int]]:
        """Per model, the samples whose batch finished (every stream's rows durable)."""
        done: dict[str, set[int]] = defaultdict(set)
        for rec in self.progress():
            done[rec["model"]].update(int(i) for i in rec["samples"])
        return done

    def committed_rows(self, stream: RowStream | str, done: Mapping[str, set[int]] | None = None) -> list[dict[str, Any]]:
        """The rows of ``stream`` that count: those of samples marked done for their model."""
        done = self.done() if done is None else done
        return [r for r in read_rows(self.stream_path(stream)) if int(r["sample"]) in done.get(r["model"], set())]

    def drop_unfinished(self, done: Mapping[str, set[int]] | None = None) -> int:
        """Rewrite every stream without the rows of samples not marked done (a batch that was
        being written when the run died) and without a torn last line. Returns rows dropped."""
        done = self.done() if done is None else done
        dropped = 0
        for stream in STREAMS.values():
            path = self.stream_path(stream)
            if not path.exists():
                continue
            rows = read_rows(path)
            keep = [r for r in rows if int(r["sample"]) in done.get(r["model"], set())]
            if len(keep) != len(rows) or path.read_bytes()[-1:] not in (b"\n", b""):
                write_text(path, "".join(encode_row(r) + "\n" for r in keep))
            dropped += len(rows) - len(keep)
        return dropped

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

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._progress.close()

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
