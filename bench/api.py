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
from typing import Any, Mapping

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
