"""Score saved maps: ``groundbench score MAPS_DIR``. How a method that lives outside Python (or
outside groundbench) joins a leaderboard.

Layout of ``MAPS_DIR`` (what ``groundbench run --save-maps`` writes under ``<run>/maps/``, see
:mod:`bench.maps_io`)::

    MAPS_DIR/<model>/<method>/<image_id>__<target>.npy

one float array per (image, target): H x W at the image's original resolution (a map at another
resolution is resized bilinearly, as the engine resizes a method's maps; a leading axis of
length 1 is dropped). ``<model>``, ``<method>``, ``<image_id>`` and ``<target>`` are written with
:func:`bench.maps_io.safe_name` (characters outside ``A-Za-z0-9._=,[]+-`` become ``_<hex>_``);
the folder names are decoded back into the rows' ``model`` and ``method`` (safe_name keeps
``_``, so a name that itself reads ``_3a_`` decodes to ``:``; such names are ambiguous).

Scoring goes through the engine's own pieces: the dataset's samples (:class:`PreparedSamples`),
its target checks (:func:`target_problem`), :func:`truth_for` and each registered metric's
``score``, in float32 like the engine's score rows. So a run's saved maps score to exactly the
run's rows, with one difference: ``output`` (the model output the method attributed) is not in
a map file and is null here. Both must run the same metric code on the same device type (a
float32 score can differ in its last bit between CPU and GPU kernels); ``groundbench score``
also takes the run's batch size from its config, so that even the batches are the run's.
Targets without a map file are recorded in ``skipped.jsonl``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bench import provenance, results
from bench.batching import Job, Prepared, PreparedSamples, collate_prepared, target_problem, truth_for
from bench.config import Component
from bench.data.annotations import pointing_difficult
from bench.maps_io import safe_name
from bench.metrics import METRICS

MAPS_SUBDIR = "maps"
_ENCODED = re.compile(r"_([0-9a-f]{1,6})_")


class ScoreError(ValueError):
    """The maps or the scoring request are unusable; the message names the file and problem."""


@dataclass
class MapSet:
    """The maps of one (model, method): a folder of ``<image_id>__<target>.npy`` files."""

    model: str
    method: str
    folder: Path


@dataclass
class ScoreSummary:
    out_dir: Path
    rows_written: int = 0
    skipped: int = 0
    seconds: float = 0.0
    map_sets: list[MapSet] = field(default_factory=list)


def decode_name(text: str) -> str:
    """Invert :func:`safe_name` where it is unambiguous: ``_<hex>_`` becomes its character
    only where safe_name would have encoded that character."""

    def one(m: re.Match) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if safe_name(ch) != ch else m.group(0)

    return _ENCODED.sub(one, text)


def find_map_sets(maps_dir: Path) -> list[MapSet]:
    """Every ``<model>/<method>/`` folder holding ``.npy`` files, sorted by folder name. A run
    directory (one with a ``maps/`` folder) may be given instead of its ``maps/``."""
    maps_dir = Path(maps_dir)
    if not maps_dir.is_dir():
        raise ScoreError(f"{maps_dir}: not a directory")
    if (maps_dir / MAPS_SUBDIR).is_dir():
        maps_dir = maps_dir / MAPS_SUBDIR
    sets = []
    for model_dir in sorted(p for p in maps_dir.iterdir() if p.is_dir()):
        for method_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if any(method_dir.glob("*.npy")):
                sets.append(MapSet(decode_name(model_dir.name), decode_name(method_dir.name), method_dir))
    if not sets:
        raise ScoreError(f"{maps_dir}: no <model>/<method>/*.npy maps found (see `groundbench score --help` for the layout)")
    return sets


def load_map(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """One saved map as float32 HxW at ``size``; other resolutions are resized bilinearly."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ScoreError(f"{path}: not a readable .npy array ({exc})") from exc
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise ScoreError(f"{path}: expected a numeric H x W map, got shape {arr.shape} dtype {arr.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).float()
    if tuple(t.shape) != tuple(size):
        t = F.interpolate(t[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return t


def metric_columns(metrics: list[Component]):
    """The engine's metric columns (label, metadata, parameters), validated."""
    from bench.engine import MetricColumn

    cols, labels = [], set()
    for m in metrics:
        try:
            info = METRICS.get(m.name)
            info.validate_params(m.params)
        except (KeyError, ValueError) as exc:
            raise ScoreError(f"metric {m.name!r}: {exc}") from exc
        label = m.label or m.name
        if label in labels:
            raise ScoreError(f"metric column {label!r} appears twice; give one a label")
        labels.add(label)
        cols.append(MetricColumn(label, info, dict(m.params)))
    if not cols:
        raise ScoreError("no metrics to score; give --metric NAME (or --config with [[metrics]])")
    return cols


def _row(model: str, method: str, p: Prepared, t, values: list[float], columns) -> dict[str, Any]:
    row = {
        "model": model,
        "method": method,
        "sample": p.index,
        "image_id": p.image_id,
        "target": t.label,
        "output": None,  # the attributed model output is not in a map file
        "difficult": pointing_difficult(t, p.targets),
        "annotated_difficult": bool(t.difficult),
        "map_invalid": bool(values[0]),
    }
    for ci, col in enumerate(columns):
        row[col.label] = values[ci + 1]
    return row


def _skip(model: str, p: Prepared, target: str | None, reason: str, method: str | None = None) -> dict[str, Any]:
    rec = {"model": model, "sample": p.index, "image_id": p.image_id, "target": target, "reason": reason}
    if method is not None:
        rec["method"] = method
    return rec


def score_batch(batch: list[Prepared], map_set: MapSet, columns, requires: set[str], device: torch.device):
    """Rows and skips of one batch of samples for one (model, method), in the engine's order."""
    rows: list[dict[str, Any]] = []
    skips: list[dict[str, Any]] = []
    jobs: list[Job] = []
    paths: list[Path] = []
    for pos, p in enumerate(batch):
        if p.error is not None:
            skips.append(_skip(map_set.model, p, None, f"sample not loaded: {p.error}"))
            continue
        if not p.targets:
            skips.append(_skip(map_set.model, p, None, "no targets in this image"))
            continue
        for t in p.targets:
            path = map_set.folder / f"{safe_name(p.image_id)}__{safe_name(t.label)}.npy"
            if not path.exists():
                skips.append(_skip(map_set.model, p, t.label, f"no map file: {path.name}", map_set.method))
                continue
            problem = target_problem(t, p)
            if problem is not None:
                skips.append(_skip(map_set.model, p, t.label, problem))
                continue
            jobs.append(Job(pos, t))
            paths.append(path)
    if not jobs:
        return rows, skips
    groups: dict[tuple[int, int], list[int]] = {}
    for n, j in enumerate(jobs):
        groups.setdefault(batch[j.item].size, []).append(n)
    # float32 like the engine's score tensor, so that values match its rows bit for bit.
    values = torch.full((len(jobs), len(columns) + 1), float("nan"), device=device)
    for size, members in groups.items():
        truth = truth_for([jobs[n] for n in members], batch, requires, device)
        maps = torch.stack([load_map(paths[n], size) for n in members]).to(device)
        idx = torch.as_tensor(members, device=device)
        values[idx, 0] = (~torch.isfinite(maps).flatten(1).all(dim=1)).float()
        for ci, col in enumerate(columns):
            values[idx, ci + 1] = col.info.score(maps, truth, **col.params).float()
    host = values.cpu().tolist()
    for n, j in enumerate(jobs):
        rows.append(_row(map_set.model, map_set.method, batch[j.item], j.target, host[n], columns))
    return rows, skips


def score_maps(
    maps_dir: Path,
    dataset: Component,
    metrics: list[Component],
    out_dir: Path,
    *,
    name: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    order: tuple[list[str], list[str]] | None = None,
) -> ScoreSummary:
    """Score every map set under ``maps_dir`` against ``dataset`` with ``metrics``; write a
    results directory ``out_dir`` that ``groundbench leaderboard`` / ``report`` read like a
    run's (config, provenance, columns, models, score rows, skipped). ``order``: (models,
    methods) in the order tables should list them (a run's config order); others follow by
    folder name."""
    from bench.data.registry import load_dataset
    from bench.engine import resolve_device

    t0 = time.perf_counter()
    out = Path(out_dir)
    if (out / results.SCORES).exists():
        raise ScoreError(f"{out} already holds score rows; choose another --name/--out or delete it")
    sets = find_map_sets(Path(maps_dir))
    if order is not None:
        models, methods = order
        rank = lambda items, x: items.index(x) if x in items else len(items)  # noqa: E731
        sets.sort(key=lambda s: (rank(models, s.model), s.model, rank(methods, s.method), s.method))
    columns = metric_columns(metrics)
    requires = {r for c in columns for r in c.info.requires}
    dev = resolve_device(device)
    ds = load_dataset(dataset.name, **dataset.params)

    out.mkdir(parents=True, exist_ok=True)
    config = {
        "name": name or out.name,
        "seed": seed,
        "kind": "score",
        "maps_dir": str(Path(maps_dir).resolve()),
        "dataset": dataset.to_dict(),
        "metrics": [m.to_dict() for m in metrics],
        "map_sets": [[s.model, s.method, str(s.folder.resolve())] for s in sets],
    }
    import tomli_w

    results.write_text(out / results.CONFIG, tomli_w.dumps(config))
    results.write_text(out / "config.json", json.dumps(config, sort_keys=True) + "\n")
    results.write_json(out / results.PROVENANCE, provenance.collect(config, dev, getattr(ds, "manifest", None)))
    results.write_json(
        out / "columns.json",
        [{**c.info.describe(), "label": c.label, "params": {**c.info.defaults, **c.params}} for c in columns],
    )
    results.write_json(out / results.MODELS, {s.model: {"info": {}, "maps": str(s.folder.parent)} for s in sets})

    summary = ScoreSummary(out, map_sets=sets)
    prepared = PreparedSamples(ds, lambda image: torch.empty(0), range(len(ds)))
    with results.RowWriter(out / results.SCORES) as scores, results.RowWriter(out / results.SKIPPED) as skipped:
        models = list(dict.fromkeys(s.model for s in sets))
        for model in models:
            model_sets = [s for s in sets if s.model == model]
            loader = DataLoader(prepared, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_prepared)
            for batch in loader:
                for s in model_sets:
                    rows, skips = score_batch(batch, s, columns, requires, dev)
                    scores.write(rows)
                    # Skips of samples and targets once per model, as a run records them; a
                    # missing map file once per method.
                    skipped.write([r for r in skips if "method" in r or s is model_sets[0]])
                    summary.rows_written += len(rows)
                    summary.skipped += sum(1 for r in skips if "method" in r or s is model_sets[0])
    summary.seconds = time.perf_counter() - t0
    return summary
