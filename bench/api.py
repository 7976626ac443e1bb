"""The Python API for notebooks: what the command line does, as functions that return paths
and pandas DataFrames. Also importable from the package: ``import bench; bench.run(...)``.

- :func:`run`: run a config (a TOML path or a dict, as the ``[dataset]``, ``[[models]]``,
  ``[[methods]]``, ``[[metrics]]`` tables of a config file) and get its results directory;
- :func:`leaderboard`: a results directory's leaderboard cells as a DataFrame (estimate, CI,
  n, rank per subset, model, method and metric), recomputed from its rows;
- :func:`rows`: its score rows (``scores.jsonl``) as a DataFrame;
- :func:`score_maps`: score attribution maps held in memory (a tensor of maps, a dataset and
  the (image, target) of each map) without writing files;
- :func:`list_methods` / :func:`list_metrics`: what is registered, as DataFrames (not
  ``methods`` / ``metrics``: those are the subpackages ``bench.methods`` and ``bench.metrics``).

Errors are the command line's: a bad config raises :class:`bench.config.ConfigError`, a run
that cannot go on :class:`bench.engine.RunError`, each naming the file or setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

ConfigLike = str | Path | Mapping[str, Any]


def load(config: ConfigLike, *, name: str | None = None, out: str | Path | None = None, allow_code: bool = False, root: str | Path | None = None):
    """A :class:`bench.config.RunConfig` from a TOML path or a dict, validated."""
    from bench.config import load_config, parse_config

    overrides: dict[str, Any] = {}
    if name is not None:
        overrides["name"] = name
    if out is not None:
        overrides["output_dir"] = str(out)
    if isinstance(config, Mapping):
        data = {**dict(config), **overrides}
        if root is not None:
            data["dataset"] = {**dict(data.get("dataset", {})), "root": str(root)}
        return parse_config(data, source="<dict>", default_name="run", allow_code=allow_code)
    return load_config(Path(config), overrides, allow_code=allow_code, root=root)


def run(
    config: ConfigLike,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    fresh: bool = False,
    progress: bool = False,
    write_tables: bool = True,
    allow_code: bool = False,
    root: str | Path | None = None,
) -> Path:
    """Run ``config`` (a path or a dict) like ``groundbench run`` and return its results
    directory (``<out or output_dir>/<name>``). As on the command line an interrupted run
    resumes, ``fresh`` starts over (only in a folder groundbench made), and the leaderboard
    files, figures and ``report.html`` are written unless ``write_tables`` is false. A method
    that failed on every row raises :class:`bench.engine.RunError` after the other methods'
    rows are written."""
    from bench import results
    from bench.engine import RunError, run_config
    from bench.report.leaderboard import build
    from bench.report.write import write_tables as write

    cfg = load(config, name=name, out=out, allow_code=allow_code, root=root)
    folder = Path(cfg.output_dir) / cfg.name
    lock = results.ResultsLock(folder)
    try:
        if fresh and not results.is_results_dir(folder):
            results.empty_dir(folder)
        results.check_claimable(folder)
        lock.acquire()
        if fresh:
            results.empty_dir(folder)
        summary = run_config(cfg, out_dir=folder, resume=True, progress=progress, lock=lock)
        if write_tables:
            write(build(folder, seed=cfg.seed), folder, allow_code=allow_code)
    finally:
        lock.release()
    if summary.failed_methods:
        raise RunError("; ".join(summary.failed_methods) + f" (the other methods' rows are in {folder})")
    return folder


def rows(results_dir: str | Path) -> pd.DataFrame:
    """The score rows of a results directory: one row per (model, method, image, target), a
    column per metric (NaN: undefined), plus ``map_invalid`` and the row's identity columns."""
    from bench.report.leaderboard import load_results

    return load_results(Path(results_dir))[0]


def leaderboard(results_dir: str | Path, *, subset: str | None = "all", confidence: float = 0.95, n_resamples: int = 2000, seed: int | None = None) -> pd.DataFrame:
    """The leaderboard cells of a results directory, recomputed from its rows (bootstrap seeded
    with the run's seed unless ``seed`` is given): one row per (subset, model, method, metric)
    with ``estimate``, ``low`` and ``high`` (the ``confidence`` bootstrap CI), ``n`` (rows with
    a defined value), ``n_undefined`` and ``rank`` (1: best or not significantly different from
    the best). ``subset=None`` keeps every subset (e.g. ``difficult``)."""
    import tomllib

    from bench import results
    from bench.report.leaderboard import build

    folder = Path(results_dir)
    if seed is None:
        config = folder / results.CONFIG
        seed = int(tomllib.loads(config.read_text()).get("seed", 0)) if config.exists() else 0
    cells = build(folder, confidence=confidence, n_resamples=n_resamples, seed=seed).cells
    if subset is not None and not cells.empty:
        cells = cells[cells["subset"] == subset]
    keep = [c for c in ("subset", "model", "method", "metric", "estimate", "low", "high", "n", "n_undefined", "rank") if c in cells.columns]
    return cells[keep].reset_index(drop=True)


def _components(metrics: Sequence[Any]):
    from bench.config import Component

    out = []
    for m in metrics:
        if isinstance(m, Component):
            out.append(m)
        elif isinstance(m, str):
            out.append(Component(m, {}))
        elif isinstance(m, Mapping):
            params = {k: v for k, v in m.items() if k not in ("name", "label")}
            out.append(Component(str(m["name"]), params, m.get("label")))
        else:
            raise TypeError(f"a metric is a name, a dict with 'name' (and parameters), or a Component; got {m!r}")
    return out


def _dataset(dataset: Any):
    if isinstance(dataset, Mapping):
        from bench.data.registry import load_dataset

        params = {k: v for k, v in dataset.items() if k != "name"}
        return load_dataset(str(dataset["name"]), **params)
    return dataset


def _sample_indices(ds: Any, images: list[Any]) -> list[int]:
    """Sample indices of ``images`` (an index, or an image id looked up in the dataset)."""
    wanted = {i for i in images if not isinstance(i, (int, np.integer))}
    found: dict[str, int] = {}
    if wanted:
        lookup = getattr(ds, "image_id", None)
        for index in range(len(ds)):
            image_id = str(lookup(index)) if callable(lookup) else str(ds[index].image_id)
            if image_id in wanted:
                found[image_id] = index
                if len(found) == len(wanted):
                    break
        missing = sorted(map(str, wanted - set(found)))
        if missing:
            raise ValueError(f"image id(s) not in the dataset: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return [int(i) if isinstance(i, (int, np.integer)) else found[str(i)] for i in images]


def score_maps(
    maps: Any,
    dataset: Any,
    targets: Sequence[tuple[Any, str]],
    metrics: Sequence[Any],
    *,
    device: str = "cpu",
    batch_size: int = 64,
) -> pd.DataFrame:
    """Score maps held in memory, without writing files, through the scoring core a run uses
    (:func:`bench.scoring.score_maps`: each map resized bilinearly to its image's size, every
    metric on ``device``).

    ``maps``: N maps, a tensor or array N x H x W (or N x 1 x H x W), or a sequence of N H x W
    maps (any resolution each). ``dataset``: a dataset (``bench.data.registry.load_dataset``)
    or a dict like a config's ``[dataset]`` table. ``targets``: per map its (image, class):
    the image as a sample index or an image id, the class as the dataset's label. ``metrics``:
    names, dicts like a config's ``[[metrics]]`` (``{"name": "pointing_game", "tolerance":
    6.0}``) or :class:`~bench.config.Component` s.

    Returns one row per map, in order: ``sample``, ``image_id``, ``target``, ``map_invalid``
    (NaN or Inf in the map), a column per metric (NaN: undefined), and ``skipped``: why a map
    was not scored (its target has no ground truth), else None."""
    import torch

    from bench.batching import Job, PreparedSamples, target_problem
    from bench.engine import resolve_device
    from bench.metrics.base import MODEL
    from bench.scoring import metric_columns
    from bench.scoring import score_maps as core_score_maps

    columns = metric_columns(_components(metrics))
    needs_model = [c.label for c in columns if MODEL in c.info.requires]
    if needs_model:
        raise ValueError(f"metric column(s) {', '.join(needs_model)} need the model; score maps in a run instead")
    if isinstance(maps, (torch.Tensor, np.ndarray)):
        arr = torch.as_tensor(maps)
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 3:
            raise ValueError(f"maps: expected N x H x W or N x 1 x H x W, got shape {tuple(arr.shape)}")
        per_map = list(arr.float())
    else:
        per_map = [torch.as_tensor(np.asarray(m), dtype=torch.float32).squeeze(0) if np.ndim(m) == 3 else torch.as_tensor(np.asarray(m), dtype=torch.float32) for m in maps]
    if len(per_map) != len(targets):
        raise ValueError(f"{len(per_map)} maps but {len(targets)} (image, target) pairs")
    ds = _dataset(dataset)
    dev = resolve_device(device)
    indices = _sample_indices(ds, [image for image, _ in targets])
    out_rows: list[dict[str, Any]] = []
    for start in range(0, len(per_map), batch_size):
        chunk = range(start, min(start + batch_size, len(per_map)))
        unique = list(dict.fromkeys(indices[n] for n in chunk))
        prepared = PreparedSamples(ds, lambda image: torch.empty(0), unique, skip_errors=False)
        batch = [prepared[k] for k in range(len(unique))]
        position = {index: k for k, index in enumerate(unique)}
        jobs, members, rows = [], [], []
        for n in chunk:
            p = batch[position[indices[n]]]
            label = str(targets[n][1])
            target = next((t for t in p.targets if t.label == label), None)
            if target is None:
                have = ", ".join(sorted({t.label for t in p.targets})) or "none"
                raise ValueError(f"map {n}: image {p.image_id!r} has no target {label!r} (its targets: {have})")
            row = {"sample": p.index, "image_id": p.image_id, "target": label, "map_invalid": None, **{c.label: float("nan") for c in columns}, "skipped": target_problem(target, p)}
            rows.append(row)
            if row["skipped"] is None:
                jobs.append(Job(position[indices[n]], target))
                members.append(len(rows) - 1)
        if jobs:
            values = core_score_maps([per_map[chunk[r]] for r in members], batch, jobs, columns, device=dev).cpu()
            for k, r in enumerate(members):
                rows[r]["map_invalid"] = bool(values[k, 0] > 0)
                for ci, c in enumerate(columns):
                    rows[r][c.label] = float(values[k, ci + 1])
        out_rows += rows
    return pd.DataFrame(out_rows, columns=["sample", "image_id", "target", "map_invalid", *[c.label for c in columns], "skipped"])


def list_methods() -> pd.DataFrame:
    """Registered attribution methods: name, family, whether it needs gradients or a seed,
    default parameters, description. Adapter families (``captum:NAME``,
    ``pytorch_grad_cam:NAME``) are listed with ``family = "adapter"``."""
    from bench.methods import METHODS

    out = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        out.append({
            "name": name, "family": cls.family, "needs_grad": bool(cls.needs_grad),
            "stochastic": bool(cls.stochastic), "defaults": dict(cls.defaults),
            "description": getattr(cls, "description", ""),
        })
    for prefix, description in METHODS.prefixes().items():
        out.append({
            "name": f"{prefix}:NAME", "family": "adapter", "needs_grad": None, "stochastic": None,
            "defaults": {}, "description": description,
        })
    return pd.DataFrame(out)


def list_metrics() -> pd.DataFrame:
    """Registered metrics: name, direction, what they require, how they aggregate, default
    parameters, description."""
    from bench.metrics import METRICS

    out = []
    for name in METRICS.names():
        info = METRICS.get(name)
        out.append({
            "name": name, "higher_is_better": bool(info.higher_is_better), "requires": list(info.requires),
            "aggregate": info.aggregate, "defaults": dict(info.defaults), "description": info.description,
        })
    return pd.DataFrame(out)
