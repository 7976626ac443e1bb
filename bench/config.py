"""Run configuration: one TOML file, read as data (never evaluated), validated up front.

::

    name = "harbor-default"      # results go to <output_dir>/<name>/
    seed = 0
    device = "auto"              # auto | cpu | cuda | cuda:N
    batch_size = 64
    num_workers = 0              # DataLoader workers for decoding (0: in the main process)
    output_dir = "results"
    save_maps = false            # also write every map at original resolution (.npy)
    autocast = "none"            # "bf16": model passes in bfloat16 autocast (faster on GPUs)
    strata = []                  # per-target row fields for the breakdown: "object_area", "instance_count"
    human_ceiling = true         # gaze data with per-observer fixations: the inter-observer
                                 # ceiling row (bench/ceiling.py); false skips its cost

    [dataset]                    # name picks a registered loader; other keys are its parameters
    name = "harbor"
    split = "test"

    [[models]]                   # one table per model; extra keys go to its adapter
    spec = "harbor:contextual"

    [[methods]]                  # one table per method setting; extra keys are its parameters
    name = "gradcam"

    [[metrics]]                  # extra keys are the metric's parameters; `label` renames its column
    name = "pointing_game"
    tolerance = 6

    [sanity]                     # optional: sanity checks of the methods (bench.sanity.config)
    tests = ["cascading", "random_target"]
    [reliance]                   # optional: measured reliance by intervention (bench.interventions)
    modes = ["mean", "blur"]

Unknown keys, wrong types, and unknown dataset, model adapter, method or metric names are errors
that name the file and the key, with a did-you-mean suggestion where one is close. So are
dataset parameters the loader does not take (for loaders with a fixed parameter list), method and
metric parameters out of their range, a ``name`` that is not one safe folder name, a negative
``seed`` and a device groundbench cannot run on. All of this is checked before anything runs or
is written.

What a config can do: it is data, never evaluated, and the code it can reach is the installed
code (groundbench and the plug-ins of its entry-point groups) with one exception: a
``python:package.module:factory`` model spec (also as a ``file:`` spec's ``arch``) imports that
module and calls the factory, which can do anything. Such a config is refused unless the caller
allows code (``allow_code``; ``groundbench run --allow-code``), so running a config received
from someone else runs none of their code unless the command line says so.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.interventions import RelianceConfig, parse_reliance
from bench.registry import check_params
from bench.results import check_run_name
from bench.sanity.config import SanityConfig, parse_sanity


DEFAULT_SUITE = "harbor"


def default_config_path() -> Path:
    """The embedded default suite (``bench/suites/harbor.toml``): what ``groundbench run``
    runs when given no config."""
    from importlib import resources

    return Path(str(resources.files("bench").joinpath("suites", f"{DEFAULT_SUITE}.toml")))


class ConfigError(ValueError):
    """The config file is invalid; the message names the file and the problem."""


@dataclass
class Component:
    """A named, parameterised part of a run: a dataset, model, method or metric."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    def to_dict(self, key: str = "name") -> dict[str, Any]:
        out: dict[str, Any] = {key: self.name, **self.params}
        if self.label:
            out["label"] = self.label
        return out


@dataclass
class RunConfig:
    name: str
    dataset: Component
    models: list[Component]
    methods: list[Component]
    metrics: list[Component]
    seed: int = 0
    device: str = "auto"
    batch_size: int = 32
    num_workers: int = 0
    output_dir: str = "results"
    save_maps: bool = False
    autocast: str = "none"  # mixed precision for the model passes: "none" or "bf16"
    sanity: SanityConfig | None = None  # the [sanity] section; None: no sanity checks
    reliance: RelianceConfig | None = None  # the [reliance] section; None: no reliance rows
    strata: list[str] = field(default_factory=list)  # row fields for the breakdown (bench.data.strata)
    human_ceiling: bool = True  # gaze data with per-observer fixations: bench/ceiling.py
    source: str = "<dict>"
    # What loading changed and the user should be told (e.g. layout keys --root dropped); not
    # part of the resolved config.
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as TOML-ready data (what the run writes beside its results)."""
        return {
            "name": self.name,
            "seed": self.seed,
            "device": self.device,
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "output_dir": self.output_dir,
            "save_maps": self.save_maps,
            # Only when set, so that configs without it resolve (and hash) as they always did.
            **({"autocast": self.autocast} if self.autocast != "none" else {}),
            **({"strata": list(self.strata)} if self.strata else {}),
            **({"human_ceiling": False} if not self.human_ceiling else {}),
            "dataset": self.dataset.to_dict(),
            "models": [m.to_dict("spec") for m in self.models],
            "methods": [m.to_dict() for m in self.methods],
            "metrics": [m.to_dict() for m in self.metrics],
            # Only when set, like autocast: a config without [sanity] resolves as it always did.
            **({"sanity": self.sanity.to_dict()} if self.sanity is not None else {}),
            **({"reliance": self.reliance.to_dict()} if self.reliance is not None else {}),
        }


_SCALARS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "seed": int,
    "device": str,
    "batch_size": int,
    "num_workers": int,
    "output_dir": str,
    "save_maps": bool,
    "autocast": str,
    "strata": list,
    "human_ceiling": bool,
}
AUTOCAST = ("none", "bf16")
SEED_MAX = 2**63 - 1
_TABLES = ("dataset", "model", "models", "methods", "metrics", "sanity", "reliance")


def _fail(source: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: {msg}")


def _unknown(source: str, where: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return _fail(source, f"unknown key {key!r} in {where}{hint} (known: {', '.join(known)})")


def _component(source: str, where: str, table: Any, key: str = "name") -> Component:
    if not isinstance(table, dict):
        raise _fail(source, f"{where} must be a table, got {type(table).__name__}")
    params = copy.deepcopy(table)
    name = params.pop(key, None)
    if not isinstance(name, str) or not name:
        raise _fail(source, f"{where} needs a string {key!r}")
    label = params.pop("label", None)
    if label is not None and not isinstance(label, str):
        raise _fail(source, f"{where}: 'label' must be a string")
    return Component(name, params, label)


def parse_config(data: dict[str, Any], source: str = "<dict>", default_name: str = "run", *, allow_code: bool = False) -> RunConfig:
    """Validate a config's data and resolve it into a :class:`RunConfig`.

    Method and metric names and parameters are checked against their registries here, before
    anything runs, so a typo costs nothing. ``allow_code``: accept model specs that import and
    run Python code (module docstring); without it they are an error.
    """
    for key in data:
        if key not in _SCALARS and key not in _TABLES:
            raise _unknown(source, "the top level", key, sorted([*_SCALARS, *_TABLES]))
    scalars: dict[str, Any] = {}
    for key, typ in _SCALARS.items():
        if key in data:
            value = data[key]
            ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
            if not ok:
                raise _fail(source, f"{key!r} must be {typ.__name__}, got {value!r}")
            scalars[key] = value
    if scalars.get("batch_size", 1) < 1:
        raise _fail(source, "'batch_size' must be at least 1")
    if scalars.get("num_workers", 0) < 0:
        raise _fail(source, "'num_workers' must be 0 or more")
    if scalars.get("autocast", "none") not in AUTOCAST:
        raise _fail(source, f"'autocast' must be one of {', '.join(map(repr, AUTOCAST))}, got {scalars['autocast']!r}")
    if not 0 <= scalars.get("seed", 0) <= SEED_MAX:
        raise _fail(source, f"'seed' must be an integer in [0, 2**63 - 1], got {scalars['seed']}")
    if "device" in scalars:
        _check_device(source, scalars["device"])
    name = scalars.get("name", default_name)
    problem = check_run_name(name)
    if problem is not None:
        where = "'name'" if "name" in scalars else f"the run name (from the file name; set 'name' in the config): {name!r}"
        raise _fail(source, f"{where} {problem}")
    if "strata" in scalars:
        from bench.data.strata import check_strata

        try:
            check_strata(scalars["strata"])
        except ValueError as exc:
            raise _fail(source, f"'strata': {exc}") from exc

    if "dataset" not in data:
        raise _fail(source, "missing [dataset] table")
    dataset = _component(source, "[dataset]", data["dataset"])
    if "model" in data and "models" in data:
        raise _fail(source, "give either 'model' or [[models]], not both")
    raw_models = data.get("models", [])
    if "model" in data:
        raw_models = [data["model"] if isinstance(data["model"], dict) else {"spec": data["model"]}]
    if not isinstance(raw_models, list) or not raw_models:
        raise _fail(source, "need at least one model ([[models]] with a 'spec')")
    models = [_component(source, f"models[{i}]", m, key="spec") for i, m in enumerate(raw_models)]
    methods = [_component(source, f"methods[{i}]", m) for i, m in enumerate(_list(source, data, "methods"))]
    metrics = [_component(source, f"metrics[{i}]", m) for i, m in enumerate(_list(source, data, "metrics"))]

    _check_dataset(source, dataset)
    _check_models(source, models, allow_code)
    labels = _check_methods(source, methods)
    _check_metrics(source, metrics)
    sanity = _sanity(source, data["sanity"], labels, [m.name for m in models]) if "sanity" in data else None
    try:
        reliance = parse_reliance(data["reliance"]) if "reliance" in data else None
    except ValueError as exc:
        raise _fail(source, str(exc)) from exc
    return RunConfig(
        name=scalars.pop("name", default_name),
        dataset=dataset,
        models=models,
        methods=methods,
        metrics=metrics,
        sanity=sanity,
        reliance=reliance,
        source=source,
        **scalars,
    )


def _sanity(source: str, raw: Any, labels: list[str], models: list[str]) -> SanityConfig:
    try:
        cfg = parse_sanity(raw)
    except ValueError as exc:
        raise _fail(source, str(exc)) from exc
    for label in cfg.methods or ():
        if label not in labels:
            close = difflib.get_close_matches(label, labels, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _fail(source, f"[sanity] methods: {label!r} is not a method of this run{hint} (methods: {', '.join(labels)})")
    for spec in cfg.steps:
        if spec not in models:
            raise _fail(source, f"[sanity.steps] {spec!r} is not a model of this run (models: {', '.join(models)})")
    return cfg


DEVICE_TYPES = ("cpu", "cuda", "mps")


def _check_device(source: str, name: str) -> None:
    if name == "auto":
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise _fail(source, f"'device' must be auto, cpu, cuda, cuda:N or mps, got {name!r}") from exc
    if device.type not in DEVICE_TYPES:
        # meta, xla, ...: torch names them, but no score can be computed there.
        raise _fail(source, f"'device' must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def _list(source: str, data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise _fail(source, f"need at least one entry in [[{key}]]")
    return value


def _check_dataset(source: str, dataset: Component) -> None:
    from bench.data.registry import DATASETS

    try:
        factory = DATASETS.get(dataset.name)
    except KeyError as exc:
        raise _fail(source, f"[dataset]: {exc}") from exc
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no introspectable signature: the loader checks itself
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the loader passes extra keys on; it names a wrong one when it is built
    known = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in dataset.params:
        if key not in known:
            raise _unknown(source, f"[dataset] (loader {dataset.name!r})", key, known)
    defaults = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    try:
        check_params(f"[dataset] (loader {dataset.name!r})", {k: v for k, v in dataset.params.items() if k in defaults}, defaults)
    except ValueError as exc:
        raise _fail(source, str(exc)) from exc


def _check_models(source: str, models: list[Component], allow_code: bool) -> None:
    from bench.models.base import MODEL_ADAPTERS, spec_runs_code, split_spec

    for i, m in enumerate(models):
        prefix, _ = split_spec(m.name)
        try:
            MODEL_ADAPTERS.get(prefix)
        except KeyError as exc:
            raise _fail(source, f"models[{i}] spec {m.name!r}: {exc}") from exc
        code = spec_runs_code(m.name, m.params)
        if code and not allow_code:
            raise _fail(
                source,
                f"models[{i}]: {code} imports a Python module and calls a function of it, which "
                "can run any code; a config alone never runs code. If you trust this config, "
                "allow it on the command line with --allow-code",
            )


def _check_methods(source: str, methods: list[Component]) -> list[str]:
    """The methods' labels, in config order, after checking each method."""
    from bench.methods import create_method

    labels: list[str] = []
    for m in methods:
        try:
            method = create_method(m.name, **m.params)
        except (KeyError, ValueError, TypeError) as exc:
            raise _fail(source, f"method {m.name!r}: {exc}") from exc
        label = m.label or method.label
        if label in labels:
            raise _fail(source, f"method {label!r} appears twice; give one a 'label'")
        labels.append(label)
    return labels


def _check_metrics(source: str, metrics: list[Component]) -> None:
    from bench.metrics import METRICS

    labels = set()
    for m in metrics:
        try:
            info = METRICS.get(m.name)
        except KeyError as exc:
            raise _fail(source, f"metric {m.name!r}: {exc}") from exc
        try:
            info.validate_params(m.params)
        except ValueError as exc:
            raise _fail(source, str(exc)) from exc
        label = m.label or m.name
        if label in labels:
            raise _fail(source, f"metric column {label!r} appears twice; give one a 'label'")
        labels.add(label)


def load_config(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    allow_code: bool = False,
    root: str | Path | None = None,
) -> RunConfig:
    """Read a TOML config; ``overrides`` replace top-level keys (and ``dataset`` keys given as
    ``{"dataset": {...}}``) before validation.

    ``root`` (``--root``): the dataset in its official layout at ``root``. It replaces
    ``[dataset] root`` and drops the config's layout keys (the loader's paths relative to the
    root, e.g. a sample's own ``annotations`` file name), which describe the config's root and
    not this one; the dropped keys are listed in ``cfg.notes``. ``allow_code``: see
    :func:`parse_config`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a config file (give the .toml file)") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    for key, value in (overrides or {}).items():
        if key == "dataset" and isinstance(value, dict):
            data.setdefault("dataset", {}).update(value)
        else:
            data[key] = value
    notes = []
    if root is not None:
        dataset = data.setdefault("dataset", {})
        if not isinstance(dataset, dict):
            raise ConfigError(f"{path}: [dataset] must be a table")
        dropped = [k for k in _layout_keys(dataset.get("name")) if k in dataset]
        for key in dropped:
            del dataset[key]
        dataset["root"] = str(root)
        if dropped:
            notes.append(
                f"--root {root}: reading the dataset's official layout there, so the config's "
                f"layout keys {', '.join(dropped)} (paths under its own root) are not used"
            )
    cfg = parse_config(data, source=str(path), default_name=path.stem, allow_code=allow_code)
    cfg.notes.extend(notes)
    return cfg


def _layout_keys(dataset_name: Any) -> tuple[str, ...]:
    """The loader's parameters that are paths inside its root (``layout_keys`` of the factory)."""
    from bench.data.registry import DATASETS

    if not isinstance(dataset_name, str):
        return ()
    try:
        factory = DATASETS.get(dataset_name)
    except KeyError:
        return ()  # parse_config names the unknown loader
    return tuple(getattr(factory, "layout_keys", ()))
