"""Score saved maps: ``groundbench score MAPS_DIR``. How a method that lives outside Python (or
outside groundbench) joins a leaderboard.

Layout of ``MAPS_DIR`` (what ``groundbench run --save-maps`` writes under ``<run>/maps/``, see
:mod:`bench.maps_io`)::

    MAPS_DIR/<model>/<method>/<image_id>__<target>.npy

one float array per (image, target): H x W at the image's original resolution (a map at another
resolution is resized bilinearly, as the engine resizes a method's maps). Maps made by other
tools may come in every form :mod:`bench.map_files` reads, in any mix within a method folder:
``.npy``, ``.npz``, ``.pt`` (``weights_only``), 8/16-bit grayscale ``.png``; one map per file
(H x W or 1 x H x W) or batch files of N maps with an index. ``<model>``, ``<method>``,
``<image_id>`` and ``<target>`` are written with :func:`bench.maps_io.safe_name` (characters
outside ``A-Za-z0-9._=,[]+-`` become ``_<hex>_``); the folder names are decoded back into the
rows' ``model`` and ``method`` (safe_name keeps ``_``, so a name that itself reads ``_3a_``
decodes to ``:``; such names are ambiguous).

Scoring goes through the scoring core the run uses (:mod:`bench.scoring`): the same jobs and
skip rules, :func:`bench.scoring.score_maps` on the maps read from disk, the same row layout,
in float32 like the run's score rows. So a run's saved maps score to exactly the run's rows,
with one difference: ``output`` (the model output the method attributed) is not in a map file
and is null here. Both must run the same metric code on the same device type (a
float32 score can differ in its last bit between CPU and GPU kernels); ``groundbench score``
also takes the run's batch size from its config, so that even the batches are the run's.

Bad maps follow the run's policy, skip and record, and scoring goes on: a target without a map
(``no map file``), a map that cannot be read (``map not readable``: not a readable file, not
numeric, not one map, empty), a map of an (image, target) the dataset does not have
(``unmatched map file``) and a file of the folder that gives no map (``map file not used``:
another format, a batch without index, an index without its batch, a second map of one pair)
each become a record in ``skipped.jsonl`` naming the file and the reason; the last two are
counted in :attr:`ScoreSummary.unused` and printed. Images the dataset loader left out are
recorded once per model, as a run records them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from bench import ceiling, provenance, results
from bench.batching import Prepared, PreparedSamples, collate_prepared
from bench.config import Component
from bench.map_files import MAP_SUFFIXES, MapEntry, MapFileError, MapReader, Unused, as_single, read_file, scan_folder
from bench.map_files import decode_name as decode_name
from bench.maps_io import safe_name
from bench.scoring import MetricColumn, ModelRun, ScoringError, expand_jobs, resize_to, score_rows, to_host
from bench.scoring import metric_columns as core_columns
from bench.scoring import score_maps as core_score_maps

MAPS_SUBDIR = results.MAPS


class ScoreError(ValueError):
    """The maps or the scoring request are unusable; the message names the file and problem."""


@dataclass
class MapSet:
    """The maps of one (model, method): a folder of map files (:mod:`bench.map_files`), its
    maps by (image_id, target) and the files that give none."""

    model: str
    method: str
    folder: Path
    entries: dict[tuple[str, str], MapEntry] = field(default_factory=dict, repr=False)
    unused: list[Unused] = field(default_factory=list, repr=False)
    reader: MapReader = field(default_factory=MapReader, repr=False)

    @classmethod
    def scan(cls, model: str, method: str, folder: Path) -> "MapSet":
        entries, unused = scan_folder(folder)
        return cls(model, method, folder, entries, unused)


@dataclass
class ScoreSummary:
    out_dir: Path
    rows_written: int = 0
    skipped: int = 0
    seconds: float = 0.0
    map_sets: list[MapSet] = field(default_factory=list)
    # Files (or batch rows) that gave no scored map: matching no (image, target), or not maps.
    unused: int = 0


def find_map_sets(maps_dir: Path) -> list[MapSet]:
    """Every ``<model>/<method>/`` folder holding map files (``.npy``, ``.npz``, ``.pt``,
    ``.pth``, ``.png``), sorted by folder name, each scanned (:func:`bench.map_files.scan_folder`).
    A run directory (one with a ``maps/`` folder) may be given instead of its ``maps/``."""
    maps_dir = Path(maps_dir)
    if not maps_dir.is_dir():
        raise ScoreError(f"{maps_dir}: not a directory")
    if (maps_dir / MAPS_SUBDIR).is_dir():
        maps_dir = maps_dir / MAPS_SUBDIR
    sets = []
    for model_dir in sorted(p for p in maps_dir.iterdir() if p.is_dir()):
        for method_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if any(p.suffix.lower() in MAP_SUFFIXES for p in method_dir.iterdir() if p.is_file()):
                sets.append(MapSet.scan(decode_name(model_dir.name), decode_name(method_dir.name), method_dir))
    if not sets:
        raise ScoreError(
            f"{maps_dir}: no <model>/<method>/*.npy maps found (nor {', '.join(MAP_SUFFIXES[1:])}; "
            "see `groundbench score --help` for the layout)"
        )
    return sets


def load_map(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """One saved map as float32 HxW (any format :mod:`bench.map_files` reads; 1 x H x W and
    H x W x 1 too); with ``size``, resized bilinearly to it when it differs (as
    :func:`bench.scoring.score_maps` resizes every map). Raises :class:`ScoreError` for a file
    that is not one numeric, non-empty map."""
    try:
        arr = as_single(read_file(path), Path(path))
    except MapFileError as exc:
        raise ScoreError(str(exc)) from exc
    t = torch.from_numpy(np.ascontiguousarray(arr)).float()
    return t if size is None else resize_to(t, size)


def metric_columns(metrics: list[Component]) -> list[MetricColumn]:
    """The run's metric columns (label, metadata, parameters), validated; none needs the model."""
    try:
        cols = core_columns(metrics)
    except ScoringError as exc:
        raise ScoreError(f"{exc}; give --metric NAME (or --config with [[metrics]])" if "no metrics" in str(exc) else str(exc)) from exc
    needs_model = [c.label for c in cols if "model" in c.info.requires]
    if needs_model:
        raise ScoreError(f"metric column(s) {', '.join(needs_model)} need the model; saved maps have none")
    return cols


def score_batch(batch: list[Prepared], map_sets: list[MapSet], columns: list[MetricColumn], device: torch.device) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows and skips of one batch of samples for the map sets of one model, in the run's
    order: the batch's sample and target skips once, then per map set its rows and the targets
    it has no map file for."""
    run = ModelRun(map_sets[0].model, None, None, [(s.method, None) for s in map_sets], columns, device)
    jobs, skips = expand_jobs(run, batch)
    if not jobs:
        return [], skips
    rows: list[dict[str, Any]] = []
    for s in map_sets:
        failures: dict[tuple[int, int], str] = {}
        present, maps = [], []
        for n, job in enumerate(jobs):
            image_id, label = batch[job.item].image_id, job.target.label
            entry = s.entries.get((image_id, label))
            if entry is None:
                expected = f"{safe_name(image_id)}__{safe_name(label)}"
                failures[(0, n)] = f"no map file: {expected}.npy (or .npz, .pt, .png, or a batch row) in {s.folder}"
                continue
            try:
                arr = s.reader.read(entry)
            except MapFileError as exc:
                failures[(0, n)] = f"map not readable: {exc}"
                continue
            maps.append(torch.from_numpy(np.ascontiguousarray(arr)))
            present.append(n)
        values = torch.full((1, len(jobs), len(columns) + 1), float("nan"), device=device)
        if present:
            have = [jobs[n] for n in present]
            # float32 like the run's score table, so that values match its rows bit for bit.
            values[0, present] = core_score_maps(maps, batch, have, columns, device=device)
        host, outputs = to_host(values, None)
        set_rows, set_skips = score_rows(s.model, batch, jobs, [s.method], columns, host, outputs, failures)
        rows += set_rows
        skips += set_skips
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
    rd = results.ResultsDir(out)
    if rd.has_score_rows():
        raise ScoreError(f"{out} already holds score rows; choose another --name/--out or delete it")
    sets = find_map_sets(Path(maps_dir))
    if order is not None:
        models, methods = order
        rank = lambda items, x: items.index(x) if x in items else len(items)  # noqa: E731
        sets.sort(key=lambda s: (rank(models, s.model), s.model, rank(methods, s.method), s.method))
    columns = metric_columns(metrics)
    dev = resolve_device(device)
    ds = load_dataset(dataset.name, **dataset.params)

    results.check_claimable(out)
    with results.ResultsLock(out):
        if rd.has_score_rows():  # written while we loaded
            raise ScoreError(f"{out} already holds score rows; choose another --name/--out or delete it")
        return _score_into(rd, sets, ds, dataset, metrics, columns, dev, name, seed, maps_dir, batch_size, num_workers, t0)


def _score_into(rd, sets, ds, dataset, metrics, columns, dev, name, seed, maps_dir, batch_size, num_workers, t0) -> ScoreSummary:
    out = rd.path
    config = {
        "name": name or out.name,
        "seed": seed,
        "kind": "score",
        "maps_dir": str(Path(maps_dir).resolve()),
        "dataset": dataset.to_dict(),
        "metrics": [m.to_dict() for m in metrics],
        "map_sets": [[s.model, s.method, str(s.folder.resolve())] for s in sets],
    }
    rd.start(config, [c.describe() for c in columns])  # an earlier attempt wrote no row
    results.write_json(out / results.PROVENANCE, provenance.collect(config, dev, getattr(ds, "manifest", None)))
    results.write_json(out / results.MODELS, {s.model: {"info": {}, "maps": str(s.folder.parent)} for s in sets})

    # Gaze data with per-observer fixations: the human ceiling beside the rows, as a run has it.
    ceiling_info = ceiling.info(ds, columns, dataset.name)
    if ceiling_info is not None:
        results.write_json(out / results.CEILING, ceiling_info)
    summary = ScoreSummary(out, map_sets=sets)
    prepared = PreparedSamples(ds, lambda image: torch.empty(0), range(len(ds)))
    with rd.open() as writer:
        for model in dict.fromkeys(s.model for s in sets):
            model_sets = [s for s in sets if s.model == model]
            # Images the loader left out, once per model as a run records them.
            drops = [results.skip_record(model, None, str(d.image_id), None, d.reason) for d in getattr(ds, "dropped", ()) or ()]
            if drops:
                writer.commit_drops(model, drops)
                summary.skipped += len(drops)
            claimed: set[tuple[str, str]] = set()
            failed_images: set[str] = set()
            loader = DataLoader(prepared, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_prepared)
            for batch in loader:
                rows, skips = score_batch(batch, model_sets, columns, dev)
                for p in batch:
                    # A sample's targets account for their maps; a sample that did not load
                    # (its targets unknown) for every map of its image.
                    if p.error is not None:
                        failed_images.add(p.image_id)
                    claimed.update((p.image_id, t.label) for t in p.targets)
                streams = {results.SCORE_ROWS.name: rows, results.SKIP_ROWS.name: skips}
                if model == sets[0].model and ceiling_info is not None and ceiling_info["computed"]:
                    streams[results.CEILING_ROWS.name] = ceiling.rows(ds, columns, batch, model, device=dev)
                writer.commit(model, [p.index for p in batch], [p.digest for p in batch], streams)
                summary.rows_written += len(rows)
                summary.skipped += len(skips)
            strays = [r for s in model_sets for r in _unused(s, claimed, failed_images)]
            if strays:
                writer.commit_drops(model, strays)
                summary.skipped += len(strays)
                summary.unused += len(strays)
    summary.seconds = time.perf_counter() - t0
    return summary


def _unused(s: MapSet, claimed: set[tuple[str, str]], failed_images: set[str]) -> list[dict[str, Any]]:
    """Skip records for what ``s``'s folder holds that gave no map to score: maps of an (image,
    target) the dataset does not have, and files that are not maps (``sample`` null: they
    belong to no sample)."""
    out = []
    for key, entry in sorted(s.entries.items(), key=lambda kv: (str(kv[1].path), kv[1].row or 0)):
        if key in claimed or key[0] in failed_images:
            continue
        where = f"{entry.path}" + (f" row {entry.row}" if entry.row is not None else "")
        reason = f"unmatched map file: {where} matches no (image, target) of the dataset"
        out.append(results.skip_record(s.model, None, key[0], key[1], reason, method=s.method))
    for u in s.unused:
        reason = f"map file not used: {u.path}: {u.reason}"
        out.append(results.skip_record(s.model, None, u.image_id, u.target, reason, method=s.method))
    return out
