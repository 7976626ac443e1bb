"""Models groundbench does not ship: ``python:package.module:factory`` and ``file:PATH``.

``python:pkg.mod:factory`` imports ``pkg.mod`` and calls ``factory(**kwargs)`` (``kwargs`` from
the config; ``seed`` too when the factory has a ``seed`` parameter). The spec names the code to
run explicitly; nothing from a config is evaluated as code. The factory returns either

- a :class:`ModelBundle` (it knows its own preprocessing, layer and class map; only
  ``target_layer`` and ``class_map`` may still be overridden), or
- an ``nn.Module`` returning B x K logits: it is probed for K and a default target layer
  (:mod:`bench.models.probe`), and preprocessed by resizing the whole image to ``input_size``
  and normalising with ``mean``/``std`` (ImageNet's by default). Its class map is what
  ``class_map`` names, or none (then only ``"<top-1>"`` resolves and dataset classes are
  skipped and counted).

``file:PATH`` loads weights into an architecture named by the ``arch`` parameter, itself a model
spec (``"mobilenet_v2"``, ``"python:pkg.mod:build"``, ``"torchvision:resnet50"``, ...) built with
``arch_params`` and without its own pretrained weights. The file is read with
``torch.load(weights_only=True)`` and loaded with ``strict=True``; a training checkpoint's
weights are taken from ``state_dict_key`` or the usual keys (see
:func:`bench.models.weights.read_state_dict`). The bundle keeps the architecture's
preprocessing, target layer and class map unless ``target_layer`` / ``class_map`` are given.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

from torch import nn

from bench.models.base import MODEL_ADAPTERS, ModelBundle, split_spec
from bench.models.bundle import class_map_for, class_map_info, module_bundle
from bench.models.transforms import IMAGENET_MEAN, IMAGENET_STD, parse_size
from bench.models.weights import file_sha256, load_state_dict_file

_UNSET: Any = object()


def resolve_factory(target: str) -> Callable[..., Any]:
    """``"pkg.mod:attr"`` (``attr`` may be dotted, ``Class.create``) -> the callable."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"python model spec must be 'python:package.module:factory', got 'python:{target}'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"python:{target}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"python:{target}: {module_name} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"python:{target}: {attr!r} is a {type(obj).__name__}, not callable")
    return obj


@MODEL_ADAPTERS.register("python")
def load_python(
    rest: str,
    *,
    seed: int = 0,
    kwargs: dict[str, Any] | None = None,
    input_size: int | list[int] = _UNSET,
    mean: list[float] = _UNSET,
    std: list[float] = _UNSET,
    target_layer: str | None = None,
    class_map: str | None = None,
) -> ModelBundle:
    spec = f"python:{rest}"
    factory = resolve_factory(rest)
    call_kwargs = dict(kwargs or {})
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        params = {}
    if "seed" in params and "seed" not in call_kwargs:
        call_kwargs["seed"] = seed
    made = factory(**call_kwargs)
    if isinstance(made, ModelBundle):
        given = [k for k, v in (("input_size", input_size), ("mean", mean), ("std", std)) if v is not _UNSET]
        if given:
            raise ValueError(
                f"{spec}: the factory returns a ModelBundle with its own preprocessing; "
                f"remove {', '.join(given)} from the model config"
            )
        bundle = dataclasses.replace(made, spec=spec, info={**made.info, "factory": rest})
        if target_layer is not None:
            bundle.target_layer = target_layer
        if class_map is not None:
            num = made.class_map.num_outputs
            if num is None:
                raise ValueError(f"{spec}: the factory's class map does not state num_outputs")
            bundle.class_map = class_map_for(class_map, num)
            bundle.info.update(class_map_info(bundle.class_map))
        bundle.module.eval()
        return bundle
    if not isinstance(made, nn.Module):
        raise TypeError(f"{spec}: the factory returned a {type(made).__name__}, not an nn.Module or ModelBundle")
    return module_bundle(
        spec, made,
        input_size=parse_size(224 if input_size is _UNSET else input_size),
        mean=tuple(IMAGENET_MEAN if mean is _UNSET else mean),
        std=tuple(IMAGENET_STD if std is _UNSET else std),
        target_layer=target_layer, class_map=class_map, info={"factory": rest},
        imagenet_default=False,
    )


@MODEL_ADAPTERS.register("file")
def load_file(
    rest: str,
    *,
    seed: int = 0,
    arch: str | None = None,
    arch_params: dict[str, Any] | None = None,
    state_dict_key: str | None = None,
    target_layer: str | None = None,
    class_map: str | None = None,
) -> ModelBundle:
    spec = f"file:{rest}"
    if not rest:
        raise ValueError("model spec 'file' needs a path: file:path/to/weights.pt")
    if not arch:
        raise ValueError(
            f"{spec}: set the 'arch' parameter to the spec of the architecture the weights are "
            "for, e.g. arch = \"mobilenet_v2\" or arch = \"python:mypkg.nets:build\""
        )
    prefix, arch_rest = split_spec(arch)
    if prefix == "file":
        raise ValueError(f"{spec}: arch {arch!r} is itself a file: spec; name an architecture")
    path = Path(rest).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{spec}: weights file {path} does not exist")
    adapter = MODEL_ADAPTERS.get(prefix)
    params = dict(arch_params or {})
    # Only the file's weights count: skip the architecture's own download/load where it has one.
    if "pretrained" in inspect.signature(adapter).parameters:
        params.setdefault("pretrained", False)
    base = adapter(arch_rest, seed=seed, **params)
    load_state_dict_file(base.module, path, what=spec, key=state_dict_key)
    base.module.eval()
    info = {
        **base.info,
        "arch": arch,
        "weights": "from file",
        "weights_file": str(path),
        "weights_sha256": file_sha256(path),
    }
    bundle = dataclasses.replace(base, spec=spec, info=info)
    if target_layer is not None:
        bundle.target_layer = target_layer
    if class_map is not None:
        num = base.class_map.num_outputs
        if num is None:
            raise ValueError(f"{spec}: arch {arch!r} gives no num_outputs for a class map")
        bundle.class_map = class_map_for(class_map, num)
        bundle.info.update(class_map_info(bundle.class_map))
    return bundle
