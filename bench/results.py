"""A run's results directory: what is in it, how it is written, how it is read back.

``results/<run-name>/`` holds

- ``config.toml``: the resolved config;
- ``provenance.json``: versions, device, git commit, seeds, data and config hashes;
- ``models.json``: facts about each model (for the harbor suite: clean accuracy and measured
  reliance on context);
- ``scores.jsonl``: one JSON object per (model, method, image, target): the score rows,
  append-only, one durable write (flush + fsync) per batch;
- ``skipped.jsonl``: samples or targets not scored, each with the reason;
- ``progress.jsonl``: per finished batch, its sample indices and their data digests, written
  after the batch's rows are durable (what a resumed run trusts);
- ``leaderboard.*``: rendered tables, always recomputable from the rows alone.

Rows are JSON lines so that a torn last line (a run killed mid-write) is detectable: it does
not parse, or it lacks the newline that ends every complete row. Such a tail is dropped on
read and truncated away before a resumed run appends.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

SCORES = "scores.jsonl"
SKIPPED = "skipped.jsonl"
PROVENANCE = "provenance.json"
MODELS = "models.json"
CONFIG = "config.toml"
CONFIG_JSON = "config.json"
COLUMNS = "columns.json"
PROGRESS = "progress.jsonl"

KEY_COLUMNS = ("model", "method", "image_id", "target")
# Columns that hold names, not numbers: null there reads back as None (e.g. the target of a
# skipped sample); anywhere else null is an undefined score and reads back as NaN.
TEXT_COLUMNS = frozenset({*KEY_COLUMNS, "reason"})


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
