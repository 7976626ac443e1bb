"""Combine the results directories of a sharded run into one, as if one process had run it.

Each shard (``groundbench run --shard K/N``, or a torchrun rank / Slurm array task, see
:mod:`bench.sharding`) wrote its own row streams (``scores.jsonl``, ``skipped.jsonl`` and any
other registered stream, :mod:`bench.results`). :func:`merge_shards` checks that the
shards belong together and cover the dataset, then writes one results directory whose rows are
exactly the rows a single-process run of the same config writes, in the same order, so its
leaderboard (bootstrap resamples included) is identical.

Row order of a single run: models in config order; within a model, batches of ``batch_size``
consecutive samples; within a batch, methods in config order; within a method, samples in
index order and each sample's targets in dataset order. Rows carry their sample index, so the
order is rebuilt by a stable sort on (model, sample // batch_size, method, sample): one sample's
rows all come from one shard, already in target order.

Every stream is merged the same way: its committed rows (those of samples marked done) from
every shard, in single-run order. Checks, each an error naming the directory: every shard ran
the same config and metric columns; shards are K of the same N, none twice; every shard
finished (its progress log lists all its samples, for every model); no row appears twice (a
stream's ``key`` columns: (model, method, sample, target) for the score rows). A missing
shard is an error unless ``allow_partial`` (the merged leaderboard then covers fewer samples,
and the merged provenance says which shards are missing).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench import results


class MergeError(ValueError):
    """The directories cannot be merged; the message names the directory and the problem."""


@dataclass
class Shard:
    path: Path
    k: int
    n: int
    config: dict[str, Any]
    provenance: dict[str, Any]
    streams: dict[str, list[dict[str, Any]]]  # row stream name -> committed rows
    done: dict[str, set[int]]
    dropped: set[str] = field(default_factory=set)  # models whose loader drops are recorded
    digests: dict[str, dict[int, Any]] = field(default_factory=dict)


@dataclass
class MergeSummary:
    out_dir: Path
    shards: list[Path]
    rows: int = 0
    skipped: int = 0
    missing: list[int] = field(default_factory=list)


def find_shard_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Each path is a shard's results directory, or a run directory holding ``shard-K-of-N``
    subdirectories (what ``groundbench run --shard`` writes)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / results.SCORES).exists():
            found.append(p)
            continue
        subs = sorted(d for d in p.glob("shard-*-of-*") if (d / results.SCORES).exists()) if p.is_dir() else []
        if not subs:
            raise MergeError(f"{p}: neither a shard's results directory ({results.SCORES}) nor a run directory with shard-K-of-N subdirectories")
        found.extend(subs)
    if not found:
        raise MergeError("no shard directories given")
    return found


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise MergeError(f"{path}: missing; is this a complete groundbench results directory?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MergeError(f"{path}: not valid JSON ({exc})") from exc


def read_shard(path: Path) -> Shard:
    path = Path(path)
    config = _read_json(path / results.CONFIG_JSON)
    prov = _read_json(path / results.PROVENANCE)
    shard = prov.get("shard")
    if not shard:
        raise MergeError(f"{path}: not a shard (its provenance has no shard K/N); a single-process run needs no merge")
    k, n = (int(x) for x in shard)
    rd = results.ResultsDir(path)
    done = rd.done()
    digests: dict[str, dict[int, Any]] = {}
    for rec in rd.progress():
        given = rec.get("digests") or [None] * len(rec["samples"])
        digests.setdefault(rec["model"], {}).update(zip((int(i) for i in rec["samples"]), given))
    # Rows of a batch that died before its progress record are not part of the results (a
    # resumed run would drop and redo them); leave them out here too. A record with no sample
    # (an image the loader left out) is committed by its model's loader-drop mark.
    streams = {
        name: rd.committed_rows(stream, done)
        for name, stream in results.STREAMS.items()
        if rd.stream_path(stream).exists() or stream in (results.SCORE_ROWS, results.SKIP_ROWS)
    }
    return Shard(
        path=path, k=k, n=n, config=config, provenance=prov, streams=streams,
        done={m: set(v) for m, v in done.samples.items()}, dropped=set(done.dropped), digests=digests,
    )


def _method_labels(config: dict[str, Any], where: Path) -> list[str]:
    from bench.config import ConfigError, parse_config
    from bench.methods import create_method

    try:
        # Only the method labels are read; no model is built, so no code can run.
        cfg = parse_config(config, source=str(where / results.CONFIG_JSON), allow_code=True)
    except ConfigError as exc:
        raise MergeError(str(exc)) from exc
    return [m.label or create_method(m.name, **m.params).label for m in cfg.methods]


def _order_key(model_rank: dict[str, int], method_rank: dict[str, int], batch_size: int):
    unknown = len(method_rank)

    def key(row: dict[str, Any]) -> tuple:
        if row.get("sample") is None:
            # The loader's drops come first in a model's records, in the order written.
            return (model_rank[row["model"]], -1, -1, -1)
        sample = int(row["sample"])
        # A skip record of a whole sample or target comes before the method failures of its
        # batch (the engine writes them in that order); its method rank is -1.
        method = row.get("method")
        m = -1 if method is None else method_rank.get(method, unknown)
        return (model_rank[row["model"]], sample // batch_size, m, sample)

    return key


def merge_shards(shard_dirs: Iterable[str | Path], out_dir: str | Path, *, allow_partial: bool = False, overwrite: bool = False) -> MergeSummary:
    """Merge shard results directories into ``out_dir`` (module docstring)."""
    dirs = find_shard_dirs(shard_dirs)
    shards = sorted((read_shard(d) for d in dirs), key=lambda s: s.k)
    first = shards[0]
    n = first.n
    seen: dict[int, Path] = {}
    for s in shards:
        if s.n != n:
            raise MergeError(f"{s.path}: shard {s.k}/{s.n}, but {first.path} is shard {first.k}/{first.n}: shards of different splits")
        if s.k in seen:
            raise MergeError(f"shard {s.k}/{n} given twice: {seen[s.k]} and {s.path}")
        seen[s.k] = s.path
        if s.config != first.config:
            raise MergeError(f"{s.path}: ran a different config from {first.path} (compare their config.json)")
        cols = _read_json(s.path / results.COLUMNS)
        if cols != _read_json(first.path / results.COLUMNS):
            raise MergeError(f"{s.path}: metric columns differ from {first.path}")
        if (first.path / results.CEILING).exists() and _read_json(s.path / results.CEILING) != _read_json(first.path / results.CEILING):
            raise MergeError(f"{s.path}: its {results.CEILING} (the human ceiling's definition) differs from {first.path}'s")
    missing = sorted(set(range(n)) - set(seen))
    if missing and not allow_partial:
        raise MergeError(
            f"shards {', '.join(f'{k}/{n}' for k in missing)} missing (have {len(seen)} of {n}); "
            "run them, or merge with --allow-partial"
        )

    models = [m["spec"] for m in first.config.get("models", [])]
    models_done = {m for s in shards for m in s.done}
    for m in sorted(models_done - set(models)):
        models.append(m)  # an adapter that renames its spec: order by first appearance
    model_rank = {m: i for i, m in enumerate(models)}
    method_rank = {m: i for i, m in enumerate(_method_labels(first.config, first.path))}
    batch_size = int(first.config.get("batch_size", 1))

    for s in shards:
        _check_complete(s, models)

    key = _order_key(model_rank, method_rank, batch_size)
    merged: dict[str, list[dict[str, Any]]] = {}
    for name in dict.fromkeys(n for s in shards for n in s.streams):
        rows = [r for s in shards for r in s.streams.get(name, [])]
        for r in rows:
            if r["model"] not in model_rank:
                raise MergeError(f"a row of {results.STREAMS[name].file} names model {r['model']!r}, which no shard's progress log knows")
        rows.sort(key=key)
        _check_unique(rows, results.STREAMS[name])
        merged[name] = rows

    out = Path(out_dir)
    try:
        results.check_claimable(out)
        with results.ResultsLock(out):
            if any(p.name not in results.KEEP_ON_FRESH for p in out.iterdir()):
                if not overwrite:
                    raise MergeError(f"{out} exists and is not empty; choose another -o or pass --force")
                results.empty_dir(out)  # only a folder groundbench made
            results.claim_dir(out)
            _write_merged(out, first, shards, models, merged)
    except results.ResultsDirError as exc:
        raise MergeError(str(exc)) from exc
    n_rows, n_skipped = len(merged.get(results.SCORE_ROWS.name, [])), len(merged.get(results.SKIP_ROWS.name, []))
    return MergeSummary(out, [s.path for s in shards], rows=n_rows, skipped=n_skipped, missing=missing)


def _write_merged(out: Path, first: Shard, shards: list[Shard], models: list[str], merged: dict[str, list[dict[str, Any]]]) -> None:
    missing = sorted(set(range(first.n)) - {s.k for s in shards})
    for name in (results.CONFIG, results.CONFIG_JSON, results.COLUMNS):
        shutil.copyfile(first.path / name, out / name)
    if (first.path / results.CEILING).exists():  # gaze runs: what the human ceiling rows are
        shutil.copyfile(first.path / results.CEILING, out / results.CEILING)
    rd = results.ResultsDir(out)
    for name, rows in merged.items():
        results.write_text(rd.stream_path(name), "".join(results.encode_row(r) + "\n" for r in rows))
    progress = []
    drops = [r for r in merged.get(results.SKIP_ROWS.name, []) if r.get("sample") is None]
    for m in models:
        if any(m in s.dropped for s in shards):
            # As a single run marks them: the loader's drops first, then the model's samples.
            progress.append({"model": m, "samples": [], "loader_drops": sum(1 for r in drops if r["model"] == m)})
        samples = sorted({i for s in shards for i in s.done.get(m, set())})
        digest = {i: d for s in shards for i, d in s.digests.get(m, {}).items()}
        progress.append({"model": m, "samples": samples, "digests": [digest.get(i) for i in samples]})
    results.write_text(out / results.PROGRESS, "".join(results.encode_row(p) + "\n" for p in progress))
    results.write_json(out / results.MODELS, _merge_models(shards))
    prov = dict(first.provenance)
    prov["shard"] = None
    prov["merged_from"] = [
        {"dir": str(s.path), "shard": [s.k, s.n], "environment": s.provenance.get("environment"), "started": s.provenance.get("started")}
        for s in shards
    ]
    prov["missing_shards"] = missing
    prov["dataset_size"] = first.provenance.get("dataset_size")
    if "data" in first.provenance:
        prov["data"] = rd.data_hashes()  # the same hash a single run over these samples records
    results.write_json(out / results.PROVENANCE, prov)


def _check_complete(s: Shard, models: list[str]) -> None:
    size = s.provenance.get("dataset_size")
    expected = set(range(s.k, int(size), s.n)) if size is not None else None
    for m in models:
        have = s.done.get(m, set())
        if expected is None:
            if not have:
                raise MergeError(f"{s.path}: model {m!r} has no finished batch; the shard did not finish (resume it with the same command)")
            continue
        extra = have - expected
        if extra:
            raise MergeError(f"{s.path}: samples {sorted(extra)[:5]} are not in shard {s.k}/{s.n}")
        lack = expected - have
        if lack:
            raise MergeError(
                f"{s.path}: shard {s.k}/{s.n} is unfinished: model {m!r} lacks {len(lack)} of its "
                f"{len(expected)} samples (resume it with the same command)"
            )


def _check_unique(rows: list[dict[str, Any]], stream: results.RowStream) -> None:
    if not stream.key:
        return
    seen = set()
    for r in rows:
        k = tuple(r.get(c) for c in stream.key)
        if k in seen:
            raise MergeError(f"row {k} of {stream.file} appears in more than one shard")
        seen.add(k)


def _merge_models(shards: list[Shard]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for s in shards:
        path = s.path / results.MODELS
        if not path.exists():
            continue
        for spec, info in _read_json(path).items():
            merged.setdefault(spec, info)
    return merged

