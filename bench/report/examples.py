"""The few samples a report shows as overlays, and their maps.

Which samples: a deterministic, diverse pick from the score rows (:func:`choose`): classes in
turn (most frequent first), for each the first image (lowest sample index) whose target every
(model, method) scored with every metric defined, so that a context-bearing target (a boat on
water, with a defined leakage) is preferred over one without. The pick never looks at the scores'
values: the examples are not chosen to flatter any method.

Which maps: a run made with ``save_maps`` has every map it scored under ``maps/``; those exact
arrays are used. Otherwise the maps of the chosen samples are recomputed from the run's resolved
config (``config.json``) through the scoring core the run used (:mod:`bench.scoring`): the same
dataset, model adapter, method parameters, per-item seeds and autocast, the target output the
run recorded in its rows (or the class map's max-logit rule where a row has none), and the same
bilinear resize to the original image size. ``tests/test_report_figures.py`` pins that
recomputed maps equal saved ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench import results
from bench.data.sample import Target
from bench.maps_io import map_path


@dataclass
class Example:
    """One (image, target) with everything an overlay panel draws."""

    sample: int
    image_id: str
    image: torch.Tensor  # 3xHxW float in [0, 1], as the dataset gives it
    target: Target
    fixations: np.ndarray | None = None  # Nx2 (x = column, y = row)
    maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (model, method) -> HxW
    scores: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    source: dict[tuple[str, str], str] = field(default_factory=dict)  # "saved" | "recomputed"

    @property
    def rgb(self) -> np.ndarray:
        """HxWx3 float array in [0, 1] for display."""
        return self.image.permute(1, 2, 0).clamp(0, 1).numpy()


def choose(rows: pd.DataFrame, metrics: list[str], k: int = 4) -> list[tuple[int, str, str]]:
    """Up to ``k`` (sample index, image id, target) picks, classes in turn (see module doc)."""
    if rows.empty:
        return []
    pairs = rows.groupby(["model", "method"], sort=False).ngroups
    present = [m for m in metrics if m in rows.columns]
    keyed = rows.assign(_defined=rows[present].notna().all(axis=1) if present else True)
    per_key = keyed.groupby(["sample", "image_id", "target"], sort=True).agg(count=("method", "size"), defined=("_defined", "all"))
    per_key = per_key[per_key["count"] == pairs].reset_index()
    if per_key.empty:
        return []
    # Prefer fully defined targets; among them, lowest sample index first.
    per_key = per_key.sort_values(["defined", "sample"], ascending=[False, True], kind="stable")
    order = per_key["target"].value_counts().index.tolist()
    order.sort(key=lambda c: (-int((per_key["target"] == c).sum()), str(c)))
    queues = {c: per_key[per_key["target"] == c].itertuples(index=False) for c in order}
    picks: list[tuple[int, str, str]] = []
    seen_images: set[str] = set()
    while len(picks) < k and queues:
        for c in list(queues):
            nxt = next((r for r in queues[c] if r.image_id not in seen_images), None)
            if nxt is None:
                del queues[c]
                continue
            picks.append((int(nxt.sample), str(nxt.image_id), str(nxt.target)))
            seen_images.add(str(nxt.image_id))
            if len(picks) == k:
                break
    return picks


def _config(run_dir: Path, allow_code: bool = False):
    from bench.config import parse_config

    return parse_config(_config_data(run_dir), source=str(Path(run_dir) / results.CONFIG_JSON), allow_code=allow_code)


def _config_data(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / results.CONFIG_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; the run's resolved config says how to rebuild its samples")
    return json.loads(path.read_text())


def _dataset_from_config(data: dict[str, Any]) -> Any:
    from bench.data.registry import load_dataset

    dataset = dict(data["dataset"])
    return load_dataset(dataset.pop("name"), **dataset)


def _map_folders(run_dir: Path, data: dict[str, Any]) -> dict[tuple[str, str], Path]:
    """Where the maps of each (model, method) are: the folders a ``groundbench score`` results
    directory records, else (a run) ``maps/`` by :func:`bench.maps_io.map_path`'s layout."""
    folders = {}
    for model, method, folder in data.get("map_sets", []):
        folders[(model, method)] = Path(folder)
    return folders


def collect(run_dir: Path, rows: pd.DataFrame, metrics: list[str], k: int = 4, *, device: str | None = None, allow_code: bool = False) -> list[Example]:
    """The chosen examples of a results directory, with a map per (model, method): saved maps
    where present, recomputed otherwise (see module doc). A model whose spec runs Python code
    (``python:``) is rebuilt only with ``allow_code``; otherwise it is an error that names the
    spec (the results folder may come from someone else)."""
    run_dir = Path(run_dir)
    picks = choose(rows, metrics, k)
    if not picks:
        return []
    data = _config_data(run_dir)
    dataset = _dataset_from_config(data)
    folders = _map_folders(run_dir, data)
    examples = []
    for index, image_id, label in picks:
        sample = dataset[index]
        if str(sample.image_id) != image_id:
            raise ValueError(
                f"{run_dir}: sample {index} is {sample.image_id!r} now but the rows say {image_id!r}; "
                "the dataset changed since the run"
            )
        target = next((t for t in sample.targets if t.label == label), None)
        if target is None:
            raise ValueError(f"{run_dir}: image {image_id!r} has no target {label!r} any more")
        fix = None if sample.fixations is None else np.asarray(sample.fixations, dtype=np.float64)
        examples.append(Example(index, image_id, sample.image, target, fix))

    pairs = list(dict.fromkeys(zip(rows["model"], rows["method"])))
    metric_cols = [m for m in metrics if m in rows.columns]
    indexed = rows.set_index(["model", "method", "image_id", "target"])
    missing: dict[str, list[tuple[Example, str]]] = {}
    scanned: dict[tuple[str, str], Any] = {}
    for ex in examples:
        for model, method in pairs:
            key = (model, method, ex.image_id, ex.target.label)
            if key in indexed.index:
                row = indexed.loc[key]
                row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
                ex.scores[(model, method)] = {m: float(row[m]) for m in metric_cols}
            saved = _saved_map(folders, scanned, run_dir, model, method, ex)
            if saved is not None:
                ex.maps[(model, method)] = saved
                ex.source[(model, method)] = "saved"
            else:
                missing.setdefault(model, []).append((ex, method))
    if missing and not data.get("map_sets"):
        _recompute(run_dir, rows, missing, device, allow_code)
    return examples


def _saved_map(folders, scanned, run_dir: Path, model: str, method: str, ex: Example) -> np.ndarray | None:
    """The saved map of (model, method) on ``ex`` as H x W float32 at the image's size, read as
    ``groundbench score`` reads it (:mod:`bench.map_files`: every format, 1 x H x W, batch
    files), or None where there is none. ``scanned`` caches each folder's scan."""
    from bench.map_files import MapReader, as_single, read_file, scan_folder
    from bench.scoring import resize_to

    if (model, method) in folders:
        if (model, method) not in scanned:
            scanned[(model, method)] = (scan_folder(folders[(model, method)])[0], MapReader())
        entries, reader = scanned[(model, method)]
        entry = entries.get((ex.image_id, ex.target.label))
        if entry is None:
            return None
        arr = reader.read(entry)
    else:
        path = map_path(run_dir / results.MAPS, model, method, ex.image_id, ex.target.label)
        if not path.exists():
            return None
        arr = as_single(read_file(path), path)
    size = tuple(ex.image.shape[-2:])
    if arr.shape != size:
        arr = resize_to(torch.from_numpy(np.ascontiguousarray(arr)), size).numpy()
    return np.asarray(arr, dtype=np.float32)


def _recompute(run_dir: Path, rows: pd.DataFrame, missing: dict[str, list[tuple[Example, str]]], device: str | None, allow_code: bool = False) -> None:
    from bench.engine import RunError, methods_of, resolve_device
    from bench.models import load_model
    from bench.scoring import ModelRun

    cfg = _config(run_dir, allow_code)
    try:
        dev = resolve_device(device or cfg.device)
    except RunError:
        dev = torch.device("cpu")  # the run's GPU is not here; a few maps are cheap on the CPU
    outputs = {}
    if "output" in rows.columns:
        for r in rows[["model", "image_id", "target", "output"]].itertuples(index=False):
            if r.output is not None and not (isinstance(r.output, float) and math.isnan(r.output)):
                outputs[(r.model, r.image_id, r.target)] = int(r.output)
    methods = methods_of(cfg)
    for model_cfg in cfg.models:
        bundle = load_model(model_cfg.name, seed=cfg.seed, progress=False, **model_cfg.params)
        todo = missing.get(bundle.spec)
        if not todo:
            continue
        run = ModelRun.for_model(bundle, methods, [], dev, seed=cfg.seed, autocast=cfg.autocast)  # maps only, no scores
        bound = dict(run.methods)
        by_method: dict[str, list[Example]] = {}
        for ex, label in todo:
            if label in bound:  # a method the config no longer has: nothing to recompute
                by_method.setdefault(label, []).append(ex)
        for label, exs in by_method.items():
            outs = [outputs.get((bundle.spec, ex.image_id, ex.target.label)) for ex in exs]
            for ex, m in zip(exs, recompute_maps(run, bundle.preprocess, label, exs, outs)):
                ex.maps[(bundle.spec, label)] = m
                ex.source[(bundle.spec, label)] = "recomputed"


def recompute_maps(run, preprocess, label: str, exs: list[Example], outputs: list[int | None]) -> list[np.ndarray]:
    """The maps of method ``label`` of :class:`~bench.scoring.ModelRun` ``run`` for ``exs``, as
    the run made them, through the scoring core: the model input, the target output (the
    run's, else the class map's max-logit rule), the per-item seed, the method under the run's
    autocast, the bilinear resize to the original size. Examples whose model inputs share a
    shape are attributed in one call; a method that fails on an example raises."""
    from bench.batching import Job, Prepared
    from bench.scoring import method_maps, model_inputs, resolve_targets, upsample

    method = dict(run.methods)[label]
    batch = [
        Prepared(ex.sample, ex.image_id, tuple(ex.image.shape[-2:]), preprocess(ex.image), targets=[ex.target])
        for ex in exs
    ]
    result: list[np.ndarray | None] = [None] * len(exs)
    groups: dict[tuple[int, ...], list[int]] = {}
    for n, p in enumerate(batch):
        groups.setdefault(tuple(p.input.shape), []).append(n)
    for members in groups.values():
        sub_batch = [batch[n] for n in members]
        jobs = [Job(k, batch[n].targets[0], candidates=run.candidates(exs[n].target.label)) for k, n in enumerate(members)]
        inputs = model_inputs(sub_batch, jobs, run.device)
        targets = resolve_targets(run, jobs, inputs, given=[outputs[n] for n in members])
        if bool((targets < 0).any()):
            bad = [exs[n].target.label for n, t in zip(members, targets.tolist()) if t < 0]
            raise ValueError(f"{run.spec} has no output for class {bad[0]!r}")
        maps, errors = method_maps(run, label, method, sub_batch, jobs, inputs.per_job, targets)
        if errors:
            n, err = next(iter(errors.items()))
            raise ValueError(f"method {label!r} failed on {exs[members[n]].image_id}: {err}")
        for k, n in enumerate(members):
            up = upsample(maps[k : k + 1], tuple(exs[n].image.shape[-2:]))[0]
            result[n] = up.detach().cpu().numpy().astype(np.float32)
    return result  # type: ignore[return-value]
