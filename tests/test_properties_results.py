"""Property tests of the row files (``bench/results.py``): whatever the rows hold and wherever a
write is cut, reading gives back exactly the complete rows, never a partial one, and a resumed
writer continues cleanly after the cut."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench import results

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(["model", "method", "target", "reason", "score", "sample"]), st.text(max_size=8))
rows_strategy = st.lists(st.dictionaries(keys, values, max_size=6), max_size=8)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def expected(row: dict) -> dict:
    """What reading gives back: null (None or a non-finite float) is NaN for scores, None for
    the name columns."""
    out = {}
    for k, v in row.items():
        undefined = v is None or (isinstance(v, float) and not math.isfinite(v))
        out[k] = (None if k in results.TEXT_COLUMNS else math.nan) if undefined else v
    return out


def same(a: list[dict], b: list[dict]) -> bool:
    norm = lambda rows: [{k: ("NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]  # noqa: E731
    return norm(a) == norm(b)


def _write(path: Path, rows: list[dict]) -> None:
    path.unlink(missing_ok=True)
    with results.RowWriter(path) as w:
        for row in rows:  # one durable write per row, as the engine does per batch
            w.write([row])


@SETTINGS
@given(rows=rows_strategy)
def test_rows_round_trip(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    _write(path, rows)
    assert same(results.read_rows(path), [expected(r) for r in rows])
    assert path.read_bytes().count(b"\n") == len(rows)  # one line per row, whatever the strings hold


@SETTINGS
@given(rows=rows_strategy.filter(bool), more=rows_strategy, cut=st.floats(0, 1))
def test_any_cut_reads_as_the_complete_rows_and_a_resumed_writer_continues(tmp_path, rows, more, cut):
    path = tmp_path / "rows.jsonl"
    _write(path, rows)
    data = path.read_bytes()
    keep = int(cut * len(data))
    path.write_bytes(data[:keep])  # what SIGKILL during a write can leave
    complete = data[:keep].count(b"\n")
    assert same(results.read_rows(path), [expected(r) for r in rows[:complete]])
    with results.RowWriter(path) as w:
        w.write(more)
    assert same(results.read_rows(path), [expected(r) for r in rows[:complete] + more])


@SETTINGS
@given(rows=rows_strategy.filter(bool), junk=st.binary(min_size=1, max_size=30))
def test_damage_before_the_last_line_is_an_error_not_data(tmp_path, rows, junk):
    junk = junk.replace(b"\n", b" ")
    assume(junk.strip())  # a blank line is skipped, not damage
    try:
        assume(not isinstance(json.loads(junk), dict))  # a JSON object would be a valid row
    except ValueError:
        pass
    path = tmp_path / "rows.jsonl"
    _write(path, rows)
    path.write_bytes(junk + b"\n" + path.read_bytes())
    with pytest.raises(ValueError, match=r"rows\.jsonl: line 1 is not a valid row"):
        results.read_rows(path)
