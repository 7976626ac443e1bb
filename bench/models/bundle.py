"""Assembling a :class:`ModelBundle`: the class map a config asks for, what the provenance
records about it, and bundles for built-in ImageNet classifiers and for arbitrary modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench.models.base import ClassMap, ModelBundle
from bench.models.class_maps import load_class_map, mapped_and_unmapped
from bench.models.probe import probe_module
from bench.models.transforms import ResizeNormalize
from bench.models.weights import file_sha256

IMAGENET_OUTPUTS = 1000


def class_map_for(source: str | None, num_outputs: int) -> ClassMap:
    """The class map a config asked for (``"coco"``, ``"voc"``, ``"imagenet"``, a JSON path).

    ``None`` (a model that is not an ImageNet-1k classifier and no map given) gives an empty map
    that still answers ``"<top-1>"``: every dataset class is then skipped and counted.
    """
    if source is None:
        return ClassMap({}, num_outputs=num_outputs, name="none")
    return load_class_map(source, num_outputs=num_outputs)


def class_map_info(cmap: ClassMap) -> dict[str, Any]:
    """What a run's provenance records about the class map."""
    mapped, unmapped = mapped_and_unmapped(cmap)
    return {
        "class_map": cmap.name,
        "class_map_rule": cmap.rule,
        "classes_mapped": len(mapped),
        "classes_unmapped": unmapped,
    }


def imagenet_bundle(
    spec: str,
    module: nn.Module,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    target_layer: str | None,
    *,
    class_map: str | None,
    info: dict[str, Any],
    weights_file: Path | None = None,
) -> ModelBundle:
    """Bundle of a built-in ImageNet-1k classifier (1000 outputs, known target layer).
    ``weights_file``: the file the weights came from, recorded by name and sha256 so that a
    result names the exact weights it was computed with."""
    cmap = class_map_for(class_map, IMAGENET_OUTPUTS)
    info = {**info, "num_outputs": IMAGENET_OUTPUTS, **class_map_info(cmap)}
    if weights_file is not None:
        info["weights_file"] = weights_file.name
        info["weights_sha256"] = file_sha256(weights_file)
    module.eval()
    return ModelBundle(spec, module, preprocess, target_layer, cmap, info)


AUTO = "auto"


def module_bundle(
    spec: str,
    module: nn.Module,
    *,
    input_size: tuple[int, int],
    mean,
    std,
    target_layer: str | None,
    class_map: str | None,
    info: dict[str, Any],
    imagenet_default: bool,
) -> ModelBundle:
    """Bundle of an arbitrary classifier: probe it for its number of outputs and default layer
    (:mod:`bench.models.probe`), preprocess by resizing the whole image. ``class_map="auto"``:
    the COCO map for a 1000-output model when ``imagenet_default`` (a zoo model), else none."""
    module.eval()
    probe = probe_module(module, input_size)
    layer = target_layer if target_layer is not None else probe.target_layer
    if class_map == AUTO:
        class_map = "coco" if imagenet_default and probe.num_outputs == IMAGENET_OUTPUTS else None
    cmap = class_map_for(class_map, probe.num_outputs)
    info = {
        **info,
        "num_outputs": probe.num_outputs,
        "input_size": list(input_size),
        "mean": list(mean),
        "std": list(std),
        "preprocess": "whole image resized to input_size (no crop), (x - mean) / std",
        "target_layer_source": "given" if target_layer is not None else (
            "auto: last spatial feature map before the head" if layer else "none found"
        ),
        **class_map_info(cmap),
    }
    preprocess = ResizeNormalize(input_size, tuple(mean), tuple(std))
    return ModelBundle(spec, module, preprocess, layer, cmap, info)


def no_rest(spec: str, rest: str) -> None:
    if rest:
        raise ValueError(f"model spec {spec!r} takes no ':...' part, got {spec}:{rest}")
