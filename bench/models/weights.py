"""Getting a model's code and weights onto the machine safely: optional imports that fail with
the pip line to run, weight files read as tensors only (``weights_only=True``: no code in a
weights file ever runs) and loaded strictly, and sha256 provenance."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict")


class MissingPackageError(ImportError):
    """A model spec needs a package that is not installed (or does not import)."""


def import_optional(module: str, *, spec: str, install: str) -> ModuleType:
    """Import ``module`` or fail with the pip line that provides it."""
    try:
        return importlib.import_module(module)
    # Not only ImportError: a package built for another torch fails with RuntimeError/OSError.
    except Exception as exc:  # noqa: BLE001
        raise MissingPackageError(
            f"model {spec!r} needs the Python module {module!r}, which is not importable "
            f"({type(exc).__name__}: {exc}); install it with: {install}"
        ) from exc


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path, *, what: str, key: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors from ``path`` with ``torch.load(weights_only=True)``.

    A plain state dict is used as is. A training checkpoint (a dict whose values are not all
    tensors) gives the state dict under ``key``, or else under the first of
    ``state_dict`` / ``model`` / ``model_state_dict`` that it has.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types; name the file
        raise ValueError(
            f"{what}: cannot read {path} with torch.load(weights_only=True) (a pickled module or "
            f"custom objects are refused; save model.state_dict() instead): {exc}"
        ) from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: {path} holds a {type(obj).__name__}, not a state dict")
    if key is not None:
        if key not in obj:
            raise ValueError(f"{what}: {path} has no key {key!r} (keys: {sorted(map(str, obj))[:10]})")
        obj = obj[key]
    elif not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = next((k for k in CHECKPOINT_KEYS if isinstance(obj.get(k), dict)), None)
        if found is None:
            raise ValueError(
                f"{what}: {path} is a dict but not a state dict, and has none of the keys "
                f"{CHECKPOINT_KEYS}; name the one holding the weights with state_dict_key"
            )
        obj = obj[found]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{what}: the weights selected in {path} are not a name -> tensor dict")
    return obj


def load_state_dict_file(
    module: nn.Module, path: Path, *, what: str, key: str | None = None
) -> None:
    """Load ``path`` into ``module`` with ``strict=True``: every key present and of its shape."""
    state = read_state_dict(path, what=what, key=key)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{what}: weights {path} do not match the architecture: {exc}") from exc
