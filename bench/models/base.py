"""Model adapters: a spec string becomes a :class:`ModelBundle` (docs/design.md, "Model adapter").

Spec forms: ``PREFIX:REST`` (``harbor:contextual``, ``torchvision:resnet50``,
``python:pkg.mod:factory``) or a bare name (``effnet-lite0``). The prefix (or the bare name)
picks an adapter from the registry; third-party adapters join through the entry-point group
``groundbench.models``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from bench.data.sample import TOP1
from bench.registry import Registry


@dataclass
class ClassMap:
    """Which model outputs stand for each dataset class.

    A dataset class with several outputs (COCO ``boat`` <- ImageNet ``canoe``, ``speedboat``,
    ...) becomes, per image, the mapped output with the highest logit on that image. A class
    with no outputs cannot be represented: its targets are skipped and counted, never scored
    against a wrong class.

    The special label ``"<top-1>"`` (:data:`TOP1`, used by gaze datasets, which have no class)
    stands for every output, so the rule picks the model's own top prediction; it needs
    ``num_outputs``. ``name`` says where the map came from (e.g. ``"imagenet->coco"``).
    """

    outputs: dict[str, list[int]]
    rule: str = "max_logit"
    num_outputs: int | None = None
    name: str = ""

    def indices(self, label: str) -> list[int]:
        if label == TOP1:
            if self.num_outputs is None:
                raise ValueError(
                    f"class map {self.name or '(unnamed)'} does not know the model's number of "
                    f"outputs, so it cannot resolve {TOP1!r}"
                )
            return list(range(self.num_outputs))
        return list(self.outputs.get(label, []))


@dataclass
class ModelBundle:
    """module: nn.Module in eval mode. preprocess: image 3xHxW float [0,1] at original size ->
    model input 3xhxw; it must cover the whole image (resize, no crop) so a map at input
    resolution resizes back onto the whole image. info: facts about the model written to the
    run's results (e.g. clean accuracy, measured reliance on context)."""

    spec: str
    module: nn.Module
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    target_layer: str | None
    class_map: ClassMap
    info: dict[str, Any] = field(default_factory=dict)


ModelFactory = Callable[..., ModelBundle]

MODEL_ADAPTERS: Registry[ModelFactory] = Registry("model adapter", "groundbench.models")


def split_spec(spec: str) -> tuple[str, str]:
    prefix, sep, rest = spec.partition(":")
    return (prefix, rest) if sep else (spec, "")


CODE_PREFIX = "python"


def spec_runs_code(spec: str, params: dict[str, Any] | None = None) -> str | None:
    """The spec that imports and calls Python code named by the config (``python:pkg.mod:f``,
    directly or as a ``file:`` spec's ``arch``), or None: every other spec runs installed code
    only. :mod:`bench.config` refuses such a spec unless code is allowed."""
    prefix, _ = split_spec(spec)
    if prefix == CODE_PREFIX:
        return f"model spec {spec!r}"
    arch = (params or {}).get("arch")
    if prefix == "file" and isinstance(arch, str) and split_spec(arch)[0] == CODE_PREFIX:
        return f"the arch {arch!r} of model spec {spec!r}"
    return None


def load_model(spec: str, *, seed: int = 0, progress: bool = True, **params: Any) -> ModelBundle:
    """Resolve a model spec; ``params`` are the config's extra keys for that model.
    ``progress``: let an adapter that trains or downloads (``harbor:``) show a progress bar."""
    import inspect

    prefix, rest = split_spec(spec)
    adapter = MODEL_ADAPTERS.get(prefix)
    try:
        takes_progress = "progress" in inspect.signature(adapter).parameters
    except (TypeError, ValueError):
        takes_progress = False
    if takes_progress and "progress" not in params:
        params = {**params, "progress": progress}
    try:
        bundle = adapter(rest, seed=seed, **params)
    except TypeError as exc:
        if "keyword argument" not in str(exc):
            raise
        # An unknown parameter from a config: say which model it was for.
        raise ValueError(f"model {spec!r}: bad parameters {sorted(params)}: {exc}") from exc
    bundle.module.eval()
    return bundle
