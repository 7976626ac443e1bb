"""Dataset registry: a config's ``[dataset] name = ...`` picks a loader factory here.

A factory takes the config's dataset parameters (root, split, ...) and returns a map-style
``torch.utils.data.Dataset`` whose items are :class:`bench.data.Sample`, with attributes
``class_names`` (list of dataset class names) and ``manifest`` (the manifest dict it was built
from, or None). Third-party loaders join through the entry-point group ``groundbench.datasets``.
The built-in loaders register themselves when :mod:`bench.data` imports them; this registry
imports none of them.
"""

from __future__ import annotations

from typing import Any, Callable

from bench.registry import Registry

DatasetFactory = Callable[..., Any]

DATASETS: Registry[DatasetFactory] = Registry("dataset", "groundbench.datasets")


def register_dataset(name: str, *, layout_keys: tuple[str, ...] = ()) -> Callable[[DatasetFactory], DatasetFactory]:
    """Register a loader factory. ``layout_keys``: its parameters that are paths inside the
    dataset root (e.g. ``annotations``); ``groundbench run --root`` drops them from a config,
    since they describe that config's root, and reads the official layout at the new root."""

    def add(factory: DatasetFactory) -> DatasetFactory:
        factory.layout_keys = tuple(layout_keys)  # type: ignore[attr-defined]
        return DATASETS.register(name)(factory)

    return add


def load_dataset(name: str, **params: Any):
    return DATASETS.get(name)(**params)


def manifest_dir():
    """Where the ``data_manifests/*.toml`` files are: the installed package
    ``bench.data_manifests`` (a wheel), or ``data_manifests/`` beside ``bench/`` in a source
    checkout (what Python imports when it runs from the repository root)."""
    from importlib import resources
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "data_manifests"
    if source.is_dir():
        return source
    return Path(str(resources.files("bench.data_manifests")))
